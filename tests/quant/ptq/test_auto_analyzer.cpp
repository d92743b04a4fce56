// AutoQuant pipeline (stages, early stop) and the quantization analyzer (numbers, JSON, HTML).
#include <doctest/doctest.h>

#include "quant/ptq/auto_quant.hpp"
#include "quant/ptq/quant_analyzer.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

namespace {

struct Setup {
  std::shared_ptr<nn::Graph> model;
  std::vector<Tensor> data, ref;
  EvalCallback eval;
};

Setup setup(uint64_t seed) {
  Setup s;
  s.model = tiny_cnn(seed);
  perturb_bn(*s.model, seed + 1);
  s.data = batches({32, 3, 6, 6}, 3, 100 + seed);
  for (const auto& x : s.data) s.ref.push_back(run(*s.model, x));
  auto data = s.data;
  auto ref = s.ref;
  s.eval = [data, ref](nn::Module& m) { return agreement(m, data, ref); };
  return s;
}

}  // namespace

TEST_CASE("auto_quant: stops at the first stage that meets the target and reports every stage") {
  Setup s = setup(1);
  AutoQuantOptions o;
  o.allowed_drop = 100;  // anything goes: the first scheme meets it
  const auto r = auto_quant(s.model, {s.data[0]}, s.data, s.eval, o);
  CHECK(r.fp32_accuracy == 100.0);
  REQUIRE(r.stages.size() == 2);
  CHECK(r.stages[0].name == "fp32");
  CHECK(r.stages[1].name == "scheme tf/tf");
  CHECK(r.target_met);
  CHECK_FALSE(r.adaround.has_value());
  CHECK(r.to_json()["stages"].size() == 2);
}

TEST_CASE("auto_quant: an unreachable target runs every stage (scheme, activations only) and says why it stopped") {
  Setup s = setup(2);
  AutoQuantOptions o;
  o.allowed_drop = 0;
  o.sim.act_bw = 2;  // activations alone cannot keep 100% agreement
  o.sim.param_bw = 4;
  o.adaround.num_iterations = 20;
  const auto r = auto_quant(s.model, {s.data[0]}, s.data, s.eval, o);
  CHECK_FALSE(r.target_met);
  CHECK(r.stages.size() >= 7);  // fp32, 5 schemes, activations-only
  CHECK(r.stages[6].name == "weights fp32 (activations only)");
  CHECK_FALSE(r.message.empty());
  AutoQuantOptions bad;
  bad.sim.param_bw = 16;
  CHECK_THROWS_AS(auto_quant(s.model, {s.data[0]}, s.data, s.eval, bad), InputError);
}

TEST_CASE("validate_passes: impossible or conflicting combinations are refused with a clear message") {
  PassSelection ok;
  ok.cle = true;
  ok.bias_correction = "analytical";
  CHECK_NOTHROW(validate_passes(ok));
  PassSelection ada16;
  ada16.adaround = true;
  ada16.param_bw = 16;
  CHECK_THROWS_WITH_AS(validate_passes(ada16), doctest::Contains("bitwidth of 16"), InputError);
  PassSelection both;
  both.adaround = true;
  both.param_bw = 4;
  both.bias_correction = "empirical";
  CHECK_THROWS_AS(validate_passes(both), InputError);
  PassSelection autoplus;
  autoplus.auto_quant = true;
  autoplus.cle = true;
  CHECK_THROWS_AS(validate_passes(autoplus), InputError);
  PassSelection badmode;
  badmode.bias_correction = "psychic";
  CHECK_THROWS_AS(validate_passes(badmode), InputError);
}

TEST_CASE("analyzer: accuracies, sweeps, per-layer SQNR, histograms; writes analysis.json and a self-contained HTML page") {
  Setup s = setup(3);
  quant::QuantSimOptions so;
  so.param_bw = 4;
  so.act_bw = 4;
  quant::QuantSim sim(s.model, {s.data[0]}, so);
  sim.compute_encodings([&](nn::Module& m) {
    for (const auto& x : s.data) m(x);
  });
  const int enabled_before = sim.num_enabled();
  const Analysis a = analyze(sim, s.data, s.eval);
  CHECK(sim.num_enabled() == enabled_before);  // flags restored
  CHECK(a.fp32 == 100.0);
  CHECK(a.quantized <= 100.0);
  int swept = 0;
  for (const auto& q : a.quantizers) {
    if (!q.enabled) {
      CHECK(q.acc_only_this < 0);
      continue;
    }
    ++swept;
    CHECK(q.acc_only_this >= 0);
    CHECK(q.acc_without_this >= 0);
    CHECK_FALSE(q.encodings.empty());
    CHECK(q.hist.size() == 64);
  }
  CHECK(swept == enabled_before);
  REQUIRE(a.layers.size() >= 5);
  for (const auto& l : a.layers) {
    CAPTURE(l.name);
    CHECK(l.mse >= 0);
  }
  CHECK(a.layers.back().name == "fc");
  CHECK(std::isfinite(a.layers.back().sqnr_db));
  CHECK(a.layers.back().sqnr_db > 0);

  const auto dir = std::filesystem::temp_directory_path() / "qforge_test_ptq_analyzer";
  std::filesystem::remove_all(dir);
  a.write_report(dir);
  std::ifstream jf(dir / "analysis.json");
  const auto j = nlohmann::json::parse(jf);
  CHECK(j["accuracy"]["fp32"] == 100.0);
  CHECK(j["quantizers"].size() == sim.quantizers().size());
  std::ifstream hf(dir / "analysis.html");
  std::stringstream html;
  html << hf.rdbuf();
  const std::string h = html.str();
  CHECK(h.find("<svg") != std::string::npos);
  CHECK(h.find("http://") == h.find("http://www.w3.org/2000/svg"));  // only the SVG namespace, no fetches
  CHECK(h.find("<script") == std::string::npos);
  std::filesystem::remove_all(dir);
}
