// Buffer layout of the integer runtimes. See layout.hpp.
#include "quant/runtime/layout.hpp"

#include "engine/error.hpp"

#include <fmt/format.h>

namespace qforge::quant::runtime {

namespace {

bool has_value_shape(const Value& v, const Tensor& t) {
  if (!t.defined() || t.dim() != static_cast<int64_t>(v.shape.size()) + 1) return false;
  for (std::size_t d = 0; d < v.shape.size(); ++d)
    if (t.size(static_cast<int64_t>(d) + 1) != v.shape[d]) return false;
  return true;
}

Tensor to_nhwc(const Value& v, Tensor t) { return (is_image(v) ? t.permute({0, 2, 3, 1}) : t).contiguous(); }

}  // namespace

Tensor input_to_buffer_layout(const Value& iv, const Tensor& x, const char* runtime) {
  QFORGE_CHECK(has_value_shape(iv, x), "{}: input must be [N, {}], got {}", runtime, fmt::join(iv.shape, ", "),
               x.defined() ? shape_str(x.shape()) : "undefined");
  return to_nhwc(iv, x.to(DType::f32));
}

Tensor codes_to_buffer_layout(const Value& iv, const Tensor& codes, DType dtype, const char* runtime) {
  QFORGE_CHECK(codes.defined() && codes.dtype() == dtype && codes.dim() == static_cast<int64_t>(iv.shape.size()) + 1,
               "{}: input codes must be {} [N, {}]", runtime, dtype_name(dtype), fmt::join(iv.shape, ", "));
  return to_nhwc(iv, codes);
}

Tensor codes_from_buffer(const Value& v, std::int64_t batch, const void* data, DType dtype) {
  Shape s{batch};
  if (is_image(v)) {
    s.insert(s.end(), {v.shape[1], v.shape[2], v.shape[0]});
    return Tensor::from_buffer(data, s, dtype).permute({0, 3, 1, 2}).contiguous();
  }
  s.insert(s.end(), v.shape.begin(), v.shape.end());
  return Tensor::from_buffer(data, s, dtype);
}

}  // namespace qforge::quant::runtime
