// AdaRound: rounding on the grid, lower reconstruction loss than nearest, frozen encodings, AIMET file.
#include <doctest/doctest.h>

#include "quant/ptq/adaround.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

#include <cmath>
#include <filesystem>

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

namespace {

// Every weight is delta * integer within the encoding's range.
void check_on_grid(const Tensor& w, const std::vector<quant::Encoding>& enc) {
  const auto v = w.to_vector<float>();
  const size_t inner = v.size() / enc.size();
  for (size_t i = 0; i < v.size(); ++i) {
    const auto a = quant::affine_params(enc[enc.size() == 1 ? 0 : i / inner]);
    const float q = v[i] * a.inv_scale;
    REQUIRE(std::fabs(q - std::nearbyint(q)) < 1e-3f);
    REQUIRE(std::nearbyint(q) >= a.lo);
    REQUIRE(std::nearbyint(q) <= a.hi);
  }
}

}  // namespace

TEST_CASE("adaround: per-tensor 4-bit rounding beats nearest on the reconstruction loss; weights on the grid") {
  auto m = tiny_cnn(3);
  perturb_bn(*m, 2);
  const auto data = batches({32, 3, 6, 6}, 4, 60);
  AdaroundOptions o;
  o.num_iterations = 1500;
  o.num_samples = 128;
  const auto r = apply_adaround(m, {data[0]}, data, o);
  REQUIRE(r.layers.size() == 3);
  CHECK(r.layers[0].name == "conv1");
  CHECK(r.layers[2].name == "fc");
  for (const auto& l : r.layers) {
    CAPTURE(l.name);
    CHECK_FALSE(l.per_channel);
    CHECK(l.iterations == 1500);
    CHECK(l.loss_adaround < l.loss_nearest);
    CHECK(l.changed > 0.0);
    check_on_grid(m->find(l.name)->raw_param("weight"), r.param_encodings.at(l.name + ".weight"));
  }
  // AIMET's parameter file: weights only, 0.6.1-style entries.
  const auto j = r.encodings_json();
  REQUIRE(j.contains("param_encodings"));
  CHECK(j.size() == 1);
  CHECK(j["param_encodings"]["conv1.weight"][0]["bitwidth"] == 4);
  CHECK(j["param_encodings"]["conv1.weight"][0]["is_symmetric"] == "True");

  // A new sim keeps the AdaRound encodings through calibration; quantizing the rounded weights is exact.
  {
    quant::QuantSim sim(m, {data[0]}, o.sim);
    r.apply_to(sim);
    sim.compute_encodings([&](nn::Module& mm) { mm(data[0]); });
    CHECK(sim.quantizer("conv1.weight").encodings() == r.param_encodings.at("conv1.weight"));
    NoGradGuard ng;
    const Tensor w = m->find("conv2")->raw_param("weight");
    CHECK(rel_diff(sim.quantizer("conv2.weight").forward(w), w) == 0.0);
  }

  // The parameter file loads back through QuantSim's AIMET loader (set_and_freeze_param_encodings).
  const auto path = std::filesystem::temp_directory_path() / "qforge_test_adaround.encodings";
  r.save_encodings(path);
  {
    quant::QuantSim sim2(m, {data[0]}, o.sim);
    quant::LoadEncodingsOptions lo;
    lo.params_only = true;
    lo.partial = true;
    lo.freeze = true;
    sim2.load_encodings(path, lo);
    CHECK(sim2.quantizer("fc.weight").encodings() == r.param_encodings.at("fc.weight"));
    std::filesystem::remove(path);
  }

  // A sim with other weight settings is refused.
  quant::QuantSimOptions pc = o.sim;
  pc.param_bw = 8;
  quant::QuantSim sim3(m, {data[0]}, pc);
  CHECK_THROWS_AS(r.apply_to(sim3), InputError);
}

TEST_CASE("adaround: per-channel encodings have one entry per output channel") {
  auto m = tiny_cnn(4);
  const auto data = batches({16, 3, 6, 6}, 2, 70);
  AdaroundOptions o;
  o.num_iterations = 50;
  o.sim.config = "per_channel";
  const auto r = apply_adaround(m, {data[0]}, data, o);
  CHECK(r.layers[0].per_channel);
  CHECK(r.param_encodings.at("conv1.weight").size() == 8);
  check_on_grid(m->find("conv1")->raw_param("weight"), r.param_encodings.at("conv1.weight"));
}

TEST_CASE("adaround: AIMET defaults and impossible options") {
  AdaroundOptions o;
  CHECK(o.sim.param_bw == 4);
  CHECK(o.iterations() == 15000);  // 4-bit weights
  o.sim.param_bw = 8;
  CHECK(o.iterations() == 10000);
  CHECK(o.reg_param == 0.01);
  CHECK(o.beta_start == 20);
  CHECK(o.beta_end == 2);
  CHECK(o.warm_start == 0.2);
  CHECK(o.lr == 1e-3);
  CHECK(o.batch_size == 32);
  o.sim.param_bw = 16;
  CHECK_THROWS_AS(validate(o), InputError);
  try {
    validate(o);
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("16") != std::string::npos);
  }
  auto m = tiny_cnn();
  CHECK_THROWS_AS(apply_adaround(m, {randn({2, 3, 6, 6}, 1)}, {randn({2, 3, 6, 6}, 1)}, o), InputError);
  AdaroundOptions w;
  w.warm_start = 1.5;
  CHECK_THROWS_AS(validate(w), InputError);
  AdaroundOptions nodata;
  CHECK_THROWS_AS(apply_adaround(m, {randn({2, 3, 6, 6}, 1)}, {}, nodata), InputError);
}
