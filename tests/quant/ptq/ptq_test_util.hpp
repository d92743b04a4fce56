// Small models and helpers shared by the PTQ tests.
#pragma once

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/layers.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"
#include "tests/support/batch_norm.hpp"

#include <cmath>

namespace qforge::ptq_test {

inline Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return ops::mul(Tensor::randn(shape, g), scale);
}

// Non-trivial BN statistics; beta within |beta| < 3|gamma| unless big_beta.
inline void perturb_bn(nn::Module& m, uint64_t seed, bool big_beta = false) {
  testing::perturb_bn(m, seed, {.mean_sd = 0.3, .beta_sd = 0.4, .big_beta = big_beta});
}

// Largest |a - b| relative to max |b|.
inline double rel_diff(const Tensor& a, const Tensor& b) {
  const auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0, d = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    m = std::max(m, std::fabs(y[i]));
    d = std::max(d, std::fabs(x[i] - y[i]));
  }
  return m > 0 ? d / m : d;
}

inline Tensor run(nn::Module& m, const Tensor& x) {
  NoGradGuard ng;
  m.eval();
  return m(x);
}

inline std::shared_ptr<nn::Graph> spec_model(const nlohmann::json& nodes, uint64_t seed = 1) {
  return nn::build_model({{"inputs", {"input"}}, {"nodes", nodes}}, {.seed = seed});
}

// conv(3->8, 3x3, pad 1) -> BN -> ReLU -> conv(8->8) -> BN -> ReLU -> flatten -> linear(8*6*6 -> 4); input [N,3,6,6]
inline std::shared_ptr<nn::Graph> tiny_cnn(uint64_t seed = 1) {
  return spec_model(nlohmann::json::array({
                        {{"name", "conv1"}, {"type", "Conv2d"}, {"args", {{"in_channels", 3}, {"out_channels", 8}, {"kernel_size", 3}, {"padding", 1}}}},
                        {{"name", "bn1"}, {"type", "BatchNorm2d"}, {"args", {{"num_features", 8}}}},
                        {{"name", "relu1"}, {"type", "ReLU"}},
                        {{"name", "conv2"}, {"type", "Conv2d"}, {"args", {{"in_channels", 8}, {"out_channels", 8}, {"kernel_size", 3}, {"padding", 1}}}},
                        {{"name", "bn2"}, {"type", "BatchNorm2d"}, {"args", {{"num_features", 8}}}},
                        {{"name", "relu2"}, {"type", "ReLU"}},
                        {{"name", "flatten"}, {"type", "Flatten"}},
                        {{"name", "fc"}, {"type", "Linear"}, {"args", {{"in_features", 288}, {"out_features", 4}}}},
                    }),
                    seed);
}

inline std::vector<Tensor> batches(const Shape& one, int n, uint64_t seed) {
  std::vector<Tensor> out;
  for (int i = 0; i < n; ++i) out.push_back(randn(one, seed + i));
  return out;
}

// Fraction of samples where the model's argmax equals the reference's (an "accuracy" for tests).
inline double agreement(nn::Module& m, const std::vector<Tensor>& xs, const std::vector<Tensor>& ref_logits) {
  NoGradGuard ng;
  m.eval();
  int64_t same = 0, n = 0;
  for (size_t b = 0; b < xs.size(); ++b) {
    const auto p = ops::argmax(m(xs[b]), 1).to_vector<int32_t>();
    const auto r = ops::argmax(ref_logits[b], 1).to_vector<int32_t>();
    for (size_t i = 0; i < p.size(); ++i) same += p[i] == r[i];
    n += static_cast<int64_t>(p.size());
  }
  return 100.0 * same / n;
}

}  // namespace qforge::ptq_test
