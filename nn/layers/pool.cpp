// Pooling, Flatten, sequence reshapes, LeakyReLU's repr.
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

namespace qforge::nn {

namespace {
nlohmann::json pj(const Pair& p) { return nlohmann::json::array({p[0], p[1]}); }
std::string pair_repr(const Pair& p) {
  return p[0] == p[1] ? fmt::format("{}", p[0]) : fmt::format("({}, {})", p[0], p[1]);
}
ops::Pool2dParams pool_params(const char* what, Pair k, std::optional<Pair> s, Pair pad) {
  ops::Pool2dParams p;
  p.kernel = k;
  p.stride = s.value_or(k);
  p.padding = pad;
  for (int i = 0; i < 2; ++i)
    QFORGE_CHECK(p.kernel[i] > 0 && p.stride[i] > 0 && p.padding[i] >= 0 && 2 * p.padding[i] <= p.kernel[i],
                 "{}: bad geometry kernel_size=({}, {}) stride=({}, {}) padding=({}, {})", what, p.kernel[0],
                 p.kernel[1], p.stride[0], p.stride[1], p.padding[0], p.padding[1]);
  return p;
}
void check_4d(const Tensor& x, const std::string& what) {
  QFORGE_CHECK(x.dim() == 4, "{}: expected input [N, C, H, W], got {}", what, shape_str(x.shape()));
}
}  // namespace

std::string LeakyReLU::extra_repr() const { return fmt::format("negative_slope={}", slope_); }
nlohmann::json LeakyReLU::spec_args() const { return {{"negative_slope", slope_}}; }

// ---- MaxPool2d / AvgPool2d ------------------------------------------------------------------------

MaxPool2d::MaxPool2d(Pair kernel_size, std::optional<Pair> stride, Pair padding)
    : Module("MaxPool2d"), p_(pool_params("MaxPool2d", kernel_size, stride, padding)) {}

Tensor MaxPool2d::forward_tensor(const Tensor& x) {
  check_4d(x, type_name());
  return ops::max_pool2d(x, p_);
}

std::string MaxPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}, dilation=1, ceil_mode=False", pair_repr(p_.kernel),
                     pair_repr(p_.stride), pair_repr(p_.padding));
}

nlohmann::json MaxPool2d::spec_args() const {
  return {{"kernel_size", pj(p_.kernel)}, {"stride", pj(p_.stride)}, {"padding", pj(p_.padding)}};
}

AvgPool2d::AvgPool2d(Pair kernel_size, std::optional<Pair> stride, Pair padding, bool count_include_pad)
    : Module("AvgPool2d"), p_(pool_params("AvgPool2d", kernel_size, stride, padding)) {
  p_.count_include_pad = count_include_pad;
}

Tensor AvgPool2d::forward_tensor(const Tensor& x) {
  check_4d(x, type_name());
  return ops::avg_pool2d(x, p_);
}

std::string AvgPool2d::extra_repr() const {
  return fmt::format("kernel_size={}, stride={}, padding={}", pair_repr(p_.kernel), pair_repr(p_.stride),
                     pair_repr(p_.padding));
}

nlohmann::json AvgPool2d::spec_args() const {
  return {{"kernel_size", pj(p_.kernel)},
          {"stride", pj(p_.stride)},
          {"padding", pj(p_.padding)},
          {"count_include_pad", p_.count_include_pad}};
}

// ---- AdaptiveAvgPool2d ----------------------------------------------------------------------------

AdaptiveAvgPool2d::AdaptiveAvgPool2d(Pair output_size) : Module("AdaptiveAvgPool2d"), out_(output_size) {
  QFORGE_CHECK(out_[0] > 0 && out_[1] > 0, "AdaptiveAvgPool2d: output_size must be positive, got ({}, {})",
               out_[0], out_[1]);
}

Tensor AdaptiveAvgPool2d::forward_tensor(const Tensor& x) {
  check_4d(x, type_name());
  if (out_ == Pair{1, 1}) return ops::global_avg_pool2d(x);
  return ops::adaptive_avg_pool2d(x, out_);
}

std::string AdaptiveAvgPool2d::extra_repr() const { return "output_size=" + pair_repr(out_); }
nlohmann::json AdaptiveAvgPool2d::spec_args() const { return {{"output_size", pj(out_)}}; }

// ---- Flatten and sequence reshapes ---------------------------------------------------------------

Flatten::Flatten(int64_t start_dim, int64_t end_dim) : Module("Flatten"), start_(start_dim), end_(end_dim) {}

Tensor Flatten::forward_tensor(const Tensor& x) { return ops::flatten(x, start_, end_); }

std::string Flatten::extra_repr() const { return fmt::format("start_dim={}, end_dim={}", start_, end_); }
nlohmann::json Flatten::spec_args() const { return {{"start_dim", start_}, {"end_dim", end_}}; }

Tensor ImageAsSequence::forward_tensor(const Tensor& x) {
  check_4d(x, type_name());
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  if (c == 1) return x.reshape({n, h, w});
  return x.permute({0, 2, 1, 3}).reshape({n, h, c * w});
}

std::vector<Tensor> LastTimeStep::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(!inputs.empty(), "LastTimeStep: no input");
  const Tensor& x = inputs[0];
  QFORGE_CHECK(x.dim() == 3, "LastTimeStep: expected a sequence [{}], got {}", batch_first_ ? "N, T, F" : "T, N, F",
               shape_str(x.shape()));
  const int64_t tdim = batch_first_ ? 1 : 0;
  QFORGE_CHECK(x.size(tdim) > 0, "LastTimeStep: empty sequence {}", shape_str(x.shape()));
  return {x.select(tdim, x.size(tdim) - 1)};
}

std::string LastTimeStep::extra_repr() const { return batch_first_ ? "batch_first=True" : "batch_first=False"; }
nlohmann::json LastTimeStep::spec_args() const { return {{"batch_first", batch_first_}}; }

}  // namespace qforge::nn
