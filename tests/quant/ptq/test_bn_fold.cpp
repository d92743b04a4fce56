// BN folding (backward and forward), fold-to-scale and BN re-estimation.
#include <doctest/doctest.h>

#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/graph_util.hpp"
#include "quant/quantsim.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

TEST_CASE("bn fold: folded zoo models equal the unfolded ones in eval mode") {
  for (const char* name : {"mnist-cnn", "dw-cnn", "resnet-tiny"}) {
    CAPTURE(name);
    auto m = nn::build_zoo_model(name, {}, {.seed = 3});
    perturb_bn(*m, 7);
    const Tensor x = randn({4, 1, 28, 28}, 11);
    const Tensor before = run(*m, x);
    const auto r = fold_all_batch_norms(*m, {x});
    CHECK(r.not_folded.empty());
    CHECK(r.folds.size() == (std::string(name) == "mnist-cnn" ? 2u : std::string(name) == "dw-cnn" ? 5u : 6u));
    CHECK(rel_diff(run(*m, x), before) < 1e-5);
    for (const auto& f : r.folds) CHECK(is_identity_bn(*m->find(f.bn)));
    // Folding again finds nothing left to do.
    CHECK(fold_all_batch_norms(*m, {x}).folds.empty());
  }
}

TEST_CASE("bn fold: captures the BN statistics before folding") {
  auto m = tiny_cnn();
  perturb_bn(*m, 5);
  const auto gamma = m->find("bn1")->raw_param("weight").to_vector<double>();
  const auto r = fold_all_batch_norms(*m, {randn({2, 3, 6, 6}, 1)});
  const BnFold* f = r.find_layer("conv1");
  REQUIRE(f != nullptr);
  CHECK(f->bn == "bn1");
  CHECK(f->gamma == gamma);
}

TEST_CASE("bn fold: BN before a conv with padding 0 folds forward; with padding it is reported") {
  auto make = [](int pad) {
    return spec_model(nlohmann::json::array({
        {{"name", "bn0"}, {"type", "BatchNorm2d"}, {"args", {{"num_features", 3}}}},
        {{"name", "conv"}, {"type", "Conv2d"}, {"args", {{"in_channels", 3}, {"out_channels", 5}, {"kernel_size", 3}, {"padding", pad}, {"bias", false}}}},
    }));
  };
  const Tensor x = randn({2, 3, 7, 7}, 4);
  {
    auto m = make(0);
    perturb_bn(*m, 9);
    const Tensor before = run(*m, x);
    const auto r = fold_all_batch_norms(*m, {x});
    REQUIRE(r.folds.size() == 1);
    CHECK(r.folds[0].bn_before_layer);
    CHECK(m->find("conv")->has_param("bias"));  // created by the fold
    CHECK(rel_diff(run(*m, x), before) < 1e-5);
  }
  {
    auto m = make(1);
    perturb_bn(*m, 9);
    const Tensor before = run(*m, x);
    const auto r = fold_all_batch_norms(*m, {x});
    CHECK(r.folds.empty());
    REQUIRE(r.not_folded.size() == 1);
    CHECK(r.not_folded[0].find("bn0") != std::string::npos);
    CHECK(r.not_folded[0].find("padding") != std::string::npos);
    CHECK(rel_diff(run(*m, x), before) == 0.0);
  }
}

TEST_CASE("reestimate_bn_stats: running statistics become the average of per-batch statistics; undo restores") {
  auto m = spec_model(nlohmann::json::array({
      {{"name", "conv"}, {"type", "Conv2d"}, {"args", {{"in_channels", 2}, {"out_channels", 3}, {"kernel_size", 1}}}},
      {{"name", "bn"}, {"type", "BatchNorm2d"}, {"args", {{"num_features", 3}}}},
  }));
  m->eval();
  const auto old_mean = m->find("bn")->buffer("running_mean").to_vector<double>();
  const auto data = batches({4, 2, 3, 3}, 3, 20);
  auto undo = reestimate_bn_stats(*m, data, 100);
  CHECK_FALSE(m->find("bn")->is_training());  // mode restored
  // Expected: mean over batches of the per-batch channel means / unbiased variances of conv(x).
  std::vector<double> em(3, 0), ev(3, 0);
  for (const auto& x : data) {
    NoGradGuard ng;
    const Tensor y = (*m->find("conv"))(x);
    const auto mu = ops::mean(y, {0, 2, 3}).to_vector<double>();
    const Tensor d = ops::sub(y, ops::mean(y, {0, 2, 3}, true));
    const auto v = ops::sum(ops::mul(d, d), {0, 2, 3}).to_vector<double>();
    for (int c = 0; c < 3; ++c) {
      em[c] += mu[c] / 3;
      ev[c] += v[c] / (y.numel() / 3 - 1) / 3;
    }
  }
  const auto rm = m->find("bn")->buffer("running_mean").to_vector<double>();
  const auto rv = m->find("bn")->buffer("running_var").to_vector<double>();
  for (int c = 0; c < 3; ++c) {
    CHECK(rm[c] == doctest::Approx(em[c]).epsilon(1e-5));
    CHECK(rv[c] == doctest::Approx(ev[c]).epsilon(1e-5));
  }
  undo.restore();
  CHECK(m->find("bn")->buffer("running_mean").to_vector<double>() == old_mean);
  CHECK_THROWS_AS(reestimate_bn_stats(*m, {}, 10), InputError);
}

TEST_CASE("fold to scale: the quantized model is unchanged and the BN is gone") {
  auto m = tiny_cnn();
  perturb_bn(*m, 3);
  const Tensor x = randn({4, 3, 6, 6}, 8);
  quant::QuantSimOptions so;
  so.fold_bn = false;
  so.config = "per_channel";
  quant::QuantSim sim(m, {x}, so);
  sim.compute_encodings([&](nn::Module& mm) { mm(x); });
  const auto bn_enc = sim.quantizer("bn1.output").encodings();
  // Weights only for the numeric comparison: the fold moves the BN's output encoding to the conv (the
  // conv's own output quantizer goes away), which changes activation quantization by design.
  // BN parameters are quantized by this config while the BN is unfolded; AIMET sees through BNs.
  for (const auto& info : sim.quantizers())
    if (info.kind != "param" || info.module.rfind("bn", 0) == 0) info.quantizer->set_enabled(false);
  const Tensor before = run(sim.model(), x);
  CHECK(fold_all_batch_norms_to_scale(sim) == 2);
  CHECK(sim.quantizer("conv1.output").encodings() == bn_enc);
  const Tensor after = run(sim.model(), x);
  CHECK(rel_diff(after, before) < 1e-4);
  CHECK(is_identity_bn(*m->find("bn1")));
  // Training mode: the bypassed BN must not renormalise.
  NoGradGuard ng;
  m->train();
  CHECK(rel_diff(sim.model()(x), after) < 1e-4);
}

TEST_CASE("fold to scale: per-tensor weight encodings are refused") {
  auto m = tiny_cnn();
  perturb_bn(*m, 3);
  const Tensor x = randn({2, 3, 6, 6}, 8);
  quant::QuantSimOptions so;
  so.fold_bn = false;
  quant::QuantSim sim(m, {x}, so);
  sim.compute_encodings([&](nn::Module& mm) { mm(x); });
  CHECK_THROWS_AS(fold_all_batch_norms_to_scale(sim), InputError);
}
