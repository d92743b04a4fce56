#include "nn/init.hpp"

#include "engine/autograd.hpp"

#include <cmath>

namespace qforge::nn::init {

namespace {
template <class F> void fill_with(Tensor& t, F&& draw, const char* what) {
  QFORGE_CHECK(t.defined(), "init::{}: undefined tensor", what);
  QFORGE_CHECK(is_floating(t.dtype()), "init::{}: needs a floating tensor, got {}", what, dtype_name(t.dtype()));
  QFORGE_CHECK(t.is_contiguous(), "init::{}: needs a contiguous tensor", what);
  const int64_t n = t.numel();
  if (t.dtype() == DType::f32) {
    float* p = static_cast<float*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<float>(draw());
  } else {
    double* p = static_cast<double*>(t.raw_data());
    for (int64_t i = 0; i < n; ++i) p[i] = draw();
  }
  t.bump_version();
}
}  // namespace

std::pair<int64_t, int64_t> fan_in_out(const Shape& shape) {
  QFORGE_CHECK(shape.size() >= 2, "init: fan in/out needs a tensor of at least 2 dimensions, got {}",
               shape_str(shape));
  int64_t receptive = 1;
  for (size_t i = 2; i < shape.size(); ++i) receptive *= shape[i];
  return {shape[1] * receptive, shape[0] * receptive};
}

void uniform_(Tensor& t, double lo, double hi, Generator& gen) {
  fill_with(t, [&] { return gen.uniform(lo, hi); }, "uniform_");
}

void normal_(Tensor& t, double mean, double std, Generator& gen) {
  fill_with(t, [&] { return mean + std * gen.normal(); }, "normal_");
}

void constant_(Tensor& t, double value) {
  fill_with(t, [&] { return value; }, "constant_");
}

void kaiming_uniform_(Tensor& t, double a, Generator& gen) {
  const auto [fan_in, fan_out] = fan_in_out(t.shape());
  QFORGE_CHECK(fan_in > 0, "init::kaiming_uniform_: zero fan_in for shape {}", shape_str(t.shape()));
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double bound = std::sqrt(3.0) * gain / std::sqrt(static_cast<double>(fan_in));
  uniform_(t, -bound, bound, gen);
}

void default_weight_(Tensor& t, Generator& gen) { kaiming_uniform_(t, std::sqrt(5.0), gen); }

void default_bias_(Tensor& bias, int64_t fan_in, Generator& gen) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(static_cast<double>(fan_in)) : 0.0;
  uniform_(bias, -bound, bound, gen);
}

}  // namespace qforge::nn::init
