// layout.hpp — how the integer runtimes (runtime.cpp for 8-bit codes, runtime16.cpp for 16-bit codes) move
// tensors between the caller's layout and their buffers. Internal to quant/runtime (not installed).
//
// Program values hold images as [C, H, W] (PyTorch's NCHW per sample); the runtimes' buffers hold them as
// NHWC (kernels.hpp layout conventions). Every other value is stored in its own row-major order.
#pragma once

#include "engine/tensor.hpp"
#include "quant/runtime/program.hpp"

namespace qforge::quant::runtime {

inline bool is_image(const Value& v) { return v.shape.size() == 3; }

// The float input in buffer layout: checks x is [N, value shape...] (message names `runtime`, e.g. "int8
// runtime"), converts to f32, NCHW → NHWC for images, contiguous.
Tensor input_to_buffer_layout(const Value& iv, const Tensor& x, const char* runtime);

// Input codes of `dtype` ([N, value shape...], checked) in buffer layout, contiguous.
Tensor codes_to_buffer_layout(const Value& iv, const Tensor& codes, DType dtype, const char* runtime);

// A copy of `batch` samples of value `v` from a buffer (codes of `dtype`) in the caller's layout.
Tensor codes_from_buffer(const Value& v, std::int64_t batch, const void* data, DType dtype);

}  // namespace qforge::quant::runtime
