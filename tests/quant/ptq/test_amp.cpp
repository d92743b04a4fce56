// AMP (quant/ptq/amp.hpp): the greedy walk on synthetic tables, option parsing, layer groups and the
// override file round trip.
#include "quant/ptq/amp.hpp"

#include "engine/error.hpp"
#include "quant/quantsim.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

#include <doctest/doctest.h>

using namespace qforge;
using namespace qforge::quant::ptq;

namespace {

// Candidates W4A8 (0), W8A8 (1), W8A16 (2, top). Accuracy model: additive drops from the table.
AmpTable three_layer_table() {
  AmpTable t;
  t.layers = {"l0", "l1", "l2"};
  t.candidates = parse_amp_candidates("W4A8,W8A8,W8A16");
  t.top = amp_top_candidate(t.candidates);
  t.cost = {{10, 10, 20}, {5, 8, 16}, {1, 2, 4}};
  t.sensitivity = {{80, 89, 90}, {89.5, 89.9, 90}, {70, 89, 90}};
  return t;
}

std::function<double(const std::vector<int>&)> additive(const AmpTable& t, double base) {
  return [&t, base](const std::vector<int>& ch) {
    double a = base;
    for (size_t l = 0; l < ch.size(); ++l) a -= base - t.sensitivity[l][ch[l]];
    return a;
  };
}

std::vector<double> costs(const AmpWalk& w) {
  std::vector<double> c;
  for (const auto& p : w.points) c.push_back(p.cost);
  return c;
}

}  // namespace

TEST_CASE("amp: greedy walk lowers by best drop per saving and follows the known Pareto sequence") {
  const AmpTable t = three_layer_table();
  CHECK(t.top == 2);
  const AmpWalk w = amp_greedy_walk(t, 90, 100, additive(t, 90));
  // l1->W8A8 (0.1/8), l0->W8A8 (1/10), l1->W4A8 (0.4/3), l2->W8A8 (1/2), l2->W4A8 (19/1); l0 W4A8 costs
  // what W8A8 does, so it is never taken.
  CHECK(costs(w) == std::vector<double>{40, 32, 22, 19, 17, 16});
  REQUIRE(w.points.size() == 6);
  CHECK(w.points[1].choice == std::vector<int>{2, 1, 2});
  CHECK(w.points[2].choice == std::vector<int>{1, 1, 2});
  CHECK(w.points[3].choice == std::vector<int>{1, 0, 2});
  CHECK(w.points[4].choice == std::vector<int>{1, 0, 1});
  CHECK(w.points[5].choice == std::vector<int>{1, 0, 0});
  CHECK(w.points[5].accuracy == doctest::Approx(68.5));
  CHECK(w.chosen == 5);
}

TEST_CASE("amp: the walk stops at the first point outside max-drop and chooses the last one within") {
  const AmpTable t = three_layer_table();
  const AmpWalk w = amp_greedy_walk(t, 90, 2.0, additive(t, 90));
  CHECK(costs(w) == std::vector<double>{40, 32, 22, 19, 17});
  CHECK(w.chosen == 3);
  CHECK(w.points[3].within);
  CHECK_FALSE(w.points[4].within);
  CHECK(w.points[w.chosen].accuracy >= 88.0);
  // The top configuration itself outside max-drop: it is the only point and the answer.
  const AmpWalk none = amp_greedy_walk(t, 95, 1.0, additive(t, 90));
  CHECK(none.points.size() == 1);
  CHECK(none.chosen == 0);
}

TEST_CASE("amp: ties go to the larger saving, then the lower layer index; equal inputs give equal walks") {
  AmpTable t;
  t.layers = {"a", "b"};
  t.candidates = parse_amp_candidates("W4A8,W8A8,W8A16");
  t.top = 2;
  t.cost = {{2, 4, 8}, {2, 4, 8}};
  t.sensitivity = {{87, 88, 90}, {87, 88, 90}};  // W4A8: 3/6, W8A8: 2/4 -> equal scores
  const AmpWalk w = amp_greedy_walk(t, 90, 100, additive(t, 90));
  REQUIRE(w.points.size() >= 3);
  CHECK(w.points[1].choice == std::vector<int>{0, 2});  // larger saving (W4A8), layer a first
  CHECK(w.points[2].choice == std::vector<int>{0, 0});
  const AmpWalk again = amp_greedy_walk(t, 90, 100, additive(t, 90));
  CHECK(costs(again) == costs(w));
  for (size_t i = 0; i < w.points.size(); ++i) CHECK(again.points[i].choice == w.points[i].choice);
}

TEST_CASE("amp: at equal score and saving the walk keeps more bits (W4A8 costing what W8A8 does)") {
  AmpTable t;
  t.layers = {"a"};
  t.candidates = parse_amp_candidates("W4A8,W8A8,W8A16");
  t.top = 2;
  t.cost = {{5, 5, 9}};
  t.sensitivity = {{90, 90, 90}};
  const AmpWalk w = amp_greedy_walk(t, 90, 1, additive(t, 90));
  REQUIRE(w.points.size() == 2);
  CHECK(w.points[1].choice == std::vector<int>{1});
}

TEST_CASE("amp: bad options are InputError") {
  CHECK_THROWS_AS(parse_amp_candidates("W4A8,W9X"), InputError);
  CHECK_THROWS_AS(parse_amp_candidates("W8A8,W8A8"), InputError);
  CHECK_THROWS_AS(parse_amp_candidates("W1A8"), InputError);
  CHECK_THROWS_AS(parse_amp_candidates("W8A32"), InputError);
  CHECK_THROWS_AS(parse_amp_candidates(""), InputError);
  CHECK_THROWS_AS(parse_amp_cost("flops"), InputError);
  CHECK(parse_amp_cost("bops") == AmpCost::bops);
  const AmpTable t = three_layer_table();
  CHECK_THROWS_AS(amp_greedy_walk(t, 90, -0.5, additive(t, 90)), InputError);
  const auto c = parse_amp_candidates("W8A16,W4A8");
  CHECK(c.size() == 2);
  CHECK(c[0].name() == "W8A16");
  CHECK(amp_top_candidate(c) == 0);
}

TEST_CASE("amp: layer groups and the override file re-load the chosen per-layer bitwidths") {
  const auto cands = parse_amp_candidates("W4A8,W8A8,W8A16");
  const Tensor x = ptq_test::randn({4, 3, 6, 6}, 3);
  auto make = [&] {
    auto sim = std::make_unique<quant::QuantSim>(ptq_test::tiny_cnn(1), std::vector<Tensor>{x});
    return sim;
  };
  auto a = make();
  const std::vector<AmpGroup> groups = amp_groups(*a);
  REQUIRE(groups.size() == 3);
  CHECK(groups[0].layer == "conv1");
  CHECK(groups[1].layer == "conv2");
  CHECK(groups[2].layer == "fc");
  for (const auto& g : groups) CHECK_FALSE(g.params.empty());
  const std::vector<int> choice{0, 2, 1};
  apply_amp_choice(*a, groups, cands, choice);
  const nlohmann::json o = nlohmann::json::parse(amp_override_json(*a, groups, cands, choice).dump());
  CHECK(o["layers"]["conv1"] == "W4A8");
  CHECK(o["layers"]["conv2"] == "W8A16");

  auto b = make();
  CHECK(apply_amp_overrides(*b, o) > 0);
  int params_checked = 0;
  for (const auto& q : b->quantizers()) {
    CHECK(q.quantizer->settings().grid.bitwidth == a->quantizer(q.name).settings().grid.bitwidth);
    if (q.kind == "param" && q.module == "conv1" && q.quantizer->enabled() && !q.quantizer->settings().allow_32) {
      CHECK(q.quantizer->settings().grid.bitwidth == 4);
      ++params_checked;
    }
  }
  CHECK(params_checked == 1);
  for (const auto& n : groups[1].activations) CHECK(b->quantizer(n).settings().grid.bitwidth == 16);
  for (const auto& n : groups[2].activations) CHECK(b->quantizer(n).settings().grid.bitwidth == 8);
  // The encodings follow the overrides after calibration.
  b->compute_encodings([&](nn::Module& m) { m(std::vector<Tensor>{x}); });
  for (const auto& n : groups[1].params) CHECK(b->quantizer(n).encodings().at(0).bitwidth == 8);

  nlohmann::json bad = o;
  bad["ops"]["conv1"]["param_quantizers"]["no.such.quantizer"] = {{"bitwidth", 4}};
  CHECK_THROWS_AS(apply_amp_overrides(*b, bad), InputError);
  nlohmann::json bad_bw = {{"ops", {{"conv1", {{"param_quantizers", {{groups[0].params[0], {{"bitwidth", 1}}}}}}}}}};
  CHECK_THROWS_AS(apply_amp_overrides(*b, bad_bw), InputError);
}
