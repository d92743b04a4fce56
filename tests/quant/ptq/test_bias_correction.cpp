// Bias correction: activation means, empirical and analytical corrections.
#include <doctest/doctest.h>

#include "quant/ptq/bias_correction.hpp"
#include "quant/ptq/graph_util.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

TEST_CASE("bias correction: activation_mean matches a Monte Carlo estimate") {
  Generator g(3);
  const Tensor z = Tensor::randn({200000}, g, DType::f64);
  const auto v = z.to_vector<double>();
  for (auto [mu, sigma] : {std::pair{0.3, 1.2}, std::pair{-1.0, 0.5}, std::pair{4.0, 2.5}}) {
    double relu = 0, relu6 = 0;
    for (double e : v) {
      const double x = mu + sigma * e;
      relu += std::max(x, 0.0);
      relu6 += std::clamp(x, 0.0, 6.0);
    }
    CHECK(activation_mean(mu, sigma, "") == mu);
    CHECK(activation_mean(mu, sigma, "ReLU") == doctest::Approx(relu / v.size()).epsilon(0.01));
    CHECK(activation_mean(mu, sigma, "ReLU6") == doctest::Approx(relu6 / v.size()).epsilon(0.01));
  }
}

namespace {

// Mean over samples of |per-channel mean difference| of the final logits, quantized (weights only) vs FP32.
double logit_mean_shift(std::shared_ptr<nn::Graph> m, std::shared_ptr<nn::Graph> fp, const std::vector<Tensor>& data,
                        const quant::QuantSimOptions& so) {
  quant::QuantSim sim(m, {data[0]}, so);
  for (const auto& i : sim.quantizers())
    if (i.kind != "param") i.quantizer->set_enabled(false);
  sim.compute_encodings([&](nn::Module& mm) { mm(data[0]); });
  std::vector<double> d(4, 0.0);
  for (const auto& x : data) {
    const auto q = ops::mean(run(sim.model(), x), {0}).to_vector<double>();
    const auto f = ops::mean(run(*fp, x), {0}).to_vector<double>();
    for (size_t c = 0; c < d.size(); ++c) d[c] += q[c] - f[c];
  }
  double s = 0;
  for (double v : d) s += std::fabs(v);
  return s;
}

}  // namespace

TEST_CASE("bias correction: empirical correction removes most of the output mean shift of 3-bit weights") {
  auto m = tiny_cnn(9);
  perturb_bn(*m, 3);
  const auto data = batches({16, 3, 6, 6}, 4, 40);
  fold_all_batch_norms(*m, {data[0]});
  auto fp = nn::clone_model(*m);
  quant::QuantSimOptions so;
  so.param_bw = 3;
  const double before = logit_mean_shift(nn::clone_model(*m), fp, data, so);
  BiasCorrectionOptions bo;
  bo.sim = so;
  const auto r = correct_bias(m, {data[0]}, data, bo);
  REQUIRE(r.layers.size() == 3);
  for (const auto& l : r.layers) CHECK(l.method == "empirical");
  const double after = logit_mean_shift(m, fp, data, so);
  CHECK(after < 0.2 * before);
}

TEST_CASE("bias correction: analytical mode corrects layers fed by a folded BN and reports the others") {
  auto m = nn::build_zoo_model("dw-cnn", {}, {.seed = 4});
  perturb_bn(*m, 6);
  const Tensor x = randn({2, 1, 28, 28}, 1);
  const auto before = m->find("dw1")->raw_param("bias").to_vector<double>();
  BiasCorrectionOptions bo;
  bo.mode = BiasCorrectionMode::analytical;
  bo.sim.param_bw = 4;
  const auto r = correct_bias(m, {x}, {}, bo);  // data-free
  REQUIRE(r.layers.size() == 6);
  CHECK(r.layers[0].name == "conv1");
  CHECK(r.layers[0].method.rfind("skipped", 0) == 0);  // input is the image, no BN statistics
  for (size_t i = 1; i < 5; ++i) CHECK(r.layers[i].method == "analytical");
  CHECK(r.layers[5].method.rfind("skipped", 0) == 0);  // fc after pooling
  CHECK(r.messages.size() == 2);
  CHECK(m->find("dw1")->raw_param("bias").to_vector<double>() != before);
  CHECK_THROWS_AS(correct_bias(m, {x}, {}, BiasCorrectionOptions{}), InputError);  // empirical needs data
  CHECK_THROWS_AS(parse_bias_correction_mode("magic"), InputError);
}
