// Element-wise binary layers with broadcasting (Add, Sub, Mul, Div) and Constant (Note [ONNX layers]).
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

namespace qforge::nn {

namespace {
// NumPy broadcasting of two shapes, or nullopt when a dimension pair is neither equal nor 1.
std::optional<Shape> broadcast(const Shape& a, const Shape& b) {
  const size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (size_t i = 0; i < n; ++i) {
    const int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = da == 1 ? db : da;
  }
  return out;
}
}  // namespace

Add::Add() : BroadcastBinary("Add", static_cast<Fn>(&ops::add)) {}
Sub::Sub() : BroadcastBinary("Sub", static_cast<Fn>(&ops::sub)) {}
Mul::Mul() : BroadcastBinary("Mul", static_cast<Fn>(&ops::mul)) {}
Div::Div() : BroadcastBinary("Div", static_cast<Fn>(&ops::div)) {}

std::vector<Tensor> BroadcastBinary::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(inputs.size() == 2, "{}: expects 2 inputs, got {}", type_name(), inputs.size());
  const Tensor& a = inputs[0];
  const Tensor& b = inputs[1];
  QFORGE_CHECK(a.defined() && b.defined(), "{}: an input is undefined", type_name());
  QFORGE_CHECK(broadcast(a.shape(), b.shape()).has_value(), "{}: shapes {} and {} do not broadcast", type_name(),
               shape_str(a.shape()), shape_str(b.shape()));
  QFORGE_CHECK(a.dtype() == b.dtype(), "{}: inputs of dtypes {} and {}", type_name(), dtype_name(a.dtype()),
               dtype_name(b.dtype()));
  return {fn_(a, b)};
}

// ---- Constant -------------------------------------------------------------------------------------

Constant::Constant(const Shape& shape) : Module("Constant"), shape_(shape) {
  for (int64_t d : shape_) QFORGE_CHECK(d >= 0, "Constant: negative dimension in shape {}", shape_str(shape_));
  register_buffer("value", Tensor::zeros(shape_));
}

std::vector<Tensor> Constant::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(inputs.empty(), "Constant: takes no inputs, got {}", inputs.size());
  return {buffer("value")};
}

std::string Constant::extra_repr() const { return fmt::format("shape={}", shape_str(shape_)); }
nlohmann::json Constant::spec_args() const { return {{"shape", shape_}}; }

}  // namespace qforge::nn
