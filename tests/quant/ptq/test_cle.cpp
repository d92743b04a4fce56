// Cross-layer equalization: ReLU6 swap, CLS sets and formulas, HBA, and models without eligible sets.
#include <doctest/doctest.h>

#include "quant/ptq/cle.hpp"
#include "quant/ptq/graph_util.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

TEST_CASE("cle: dw-cnn FP32 outputs agree within 1e-4 relative once ReLU6 is ReLU; triplets found; ranges equalised") {
  auto m = nn::build_zoo_model("dw-cnn", {}, {.seed = 2});
  perturb_bn(*m, 4);
  const Tensor x = randn({4, 1, 28, 28}, 6);
  // Reference: the same model with only the ReLU6 -> ReLU swap.
  auto ref = nn::clone_model(*m);
  CHECK(replace_relu6_with_relu(*ref, {x}) == 5);
  const Tensor want = run(*ref, x);

  const CleResult r = equalize_model(*m, {x});
  CHECK(r.relu6_replaced == 5);
  CHECK(r.folds.folds.size() == 5);
  REQUIRE(r.sets.size() == 2);
  CHECK(r.sets[0] == std::vector<std::string>{"conv1", "dw1", "pw1"});
  CHECK(r.sets[1] == std::vector<std::string>{"pw1", "dw2", "pw2"});
  CHECK(r.messages.empty());
  CHECK(rel_diff(run(*m, x), want) < 1e-4);
  for (auto& [name, mod] : m->named_modules()) CHECK(mod->type_name() != "ReLU6");

  // After the last set, pw1's output ranges equal dw2's channel ranges and pw2's input ranges.
  const auto r1 = out_channel_absmax(m->find("pw1")->raw_param("weight"));
  const auto r2 = out_channel_absmax(m->find("dw2")->raw_param("weight"));
  const auto r3 = in_channel_absmax(m->find("pw2")->raw_param("weight"), false);
  for (size_t c = 0; c < r1.size(); ++c) {
    CHECK(r1[c] == doctest::Approx(r2[c]).epsilon(1e-5));
    CHECK(r2[c] == doctest::Approx(r3[c]).epsilon(1e-5));
  }
}

TEST_CASE("cle: conv -> conv pair gets sqrt(r1/r2) scaling; outputs unchanged") {
  auto m = tiny_cnn(5);
  perturb_bn(*m, 8);
  const Tensor x = randn({3, 3, 6, 6}, 2);
  const Tensor want = run(*m, x);
  const CleResult r = equalize_model(*m, {x});
  REQUIRE(r.sets.size() == 1);
  CHECK(r.sets[0] == std::vector<std::string>{"conv1", "conv2"});
  CHECK(rel_diff(run(*m, x), want) < 1e-4);
  const auto a = out_channel_absmax(m->find("conv1")->raw_param("weight"));
  const auto b = in_channel_absmax(m->find("conv2")->raw_param("weight"), false);
  for (size_t c = 0; c < a.size(); ++c) CHECK(a[c] == doctest::Approx(b[c]).epsilon(1e-5));
}

TEST_CASE("cle: high-bias absorption moves a large BN shift into the next layer without changing outputs") {
  // conv -> BN -> conv, padding 0 and no activation: c = beta exactly, so the absorption is exact.
  auto m = spec_model(nlohmann::json::array({
      {{"name", "c1"}, {"type", "Conv2d"}, {"args", {{"in_channels", 2}, {"out_channels", 4}, {"kernel_size", 3}}}},
      {{"name", "bn"}, {"type", "BatchNorm2d"}, {"args", {{"num_features", 4}}}},
      {{"name", "c2"}, {"type", "Conv2d"}, {"args", {{"in_channels", 4}, {"out_channels", 3}, {"kernel_size", 3}}}},
  }));
  perturb_bn(*m, 2, true);
  const Tensor x = randn({2, 2, 9, 9}, 3);
  const Tensor want = run(*m, x);
  CleOptions no_hba;
  no_hba.high_bias_absorption = false;
  auto m2 = nn::clone_model(*m);
  equalize_model(*m2, {x}, no_hba);
  const CleResult r = equalize_model(*m, {x});
  CHECK(r.hba_pairs == 1);
  CHECK(rel_diff(run(*m, x), want) < 1e-4);
  // The first layer's bias magnitude dropped (the BN's beta of ~5 went into c2's bias).
  const auto b_hba = m->find("c1")->raw_param("bias").to_vector<double>();
  const auto b_cls = m2->find("c1")->raw_param("bias").to_vector<double>();
  double s_hba = 0, s_cls = 0;
  for (size_t i = 0; i < b_hba.size(); ++i) {
    s_hba += std::fabs(b_hba[i]);
    s_cls += std::fabs(b_cls[i]);
  }
  CHECK(s_hba < 0.5 * s_cls);
}

TEST_CASE("cle: a model without eligible pairs is left unchanged and says so") {
  // mnist-cnn: conv1 -> ReLU -> MaxPool -> conv2 -> ... -> Linear: pooling ends every chain.
  auto m = nn::build_zoo_model("mnist-cnn", {}, {.seed = 1});
  perturb_bn(*m, 1);
  const Tensor x = randn({2, 1, 28, 28}, 1);
  const Tensor want = run(*m, x);
  const CleResult r = equalize_model(*m, {x});
  CHECK_FALSE(r.applied());
  REQUIRE(r.messages.size() == 1);
  CHECK(r.messages[0].find("no eligible") != std::string::npos);
  CHECK(rel_diff(run(*m, x), want) < 1e-5);  // only the BN fold happened
}

TEST_CASE("cle: residual model: only the pairs inside each block are scaled; outputs unchanged") {
  auto m = nn::build_zoo_model("resnet-tiny", {}, {.seed = 3});
  perturb_bn(*m, 5);
  const Tensor x = randn({2, 1, 28, 28}, 4);
  const Tensor want = run(*m, x);
  const CleResult r = equalize_model(*m, {x});
  REQUIRE(r.sets.size() == 2);
  CHECK(r.sets[0] == std::vector<std::string>{"block1.conv1", "block1.conv2"});
  CHECK(r.sets[1] == std::vector<std::string>{"block2.conv1", "block2.conv2"});
  CHECK(rel_diff(run(*m, x), want) < 1e-4);
}
