// PyTorch-compatible functional fake quantization (torch.fake_quantize_* and the learnable variants),
// with PyTorch 1.13's names and semantics (reference: pytorch-fake-quant.md).
//
// Forward, all ops: inv = 1.0f/scale (float32); r = rint(x*inv) (ties to even); q = z + r;
// y = (clamp(q, qmin, qmax) - z) * scale; mask = qmin <= q <= qmax on the rounded value. Bit-exact with
// PyTorch for f32 inputs. f64 inputs compute in double with the same float32 scale (for gradcheck).
// Backward of the plain ops: dx = g * mask (STE), no gradient for scale/zero point.
//
// Learnable ops: scale and zero_point are float tensors ([1] or [C]) and receive gradients
// (pytorch-fake-quant.md §5): in range dscale = g*(r - x/s), dzp = 0; clamped dscale = g*(qbound - z),
// dzp = -g*s; both times grad_factor (never dx). By default the backward uses the forward's rounding, so
// its mask equals the forward mask. `torch_compat = true` reproduces PyTorch 1.13's CPU quirks: the
// backward rounds (zb + x/s) with the zero point added *before* rounding, and the per-tensor backward
// zero point is trunc(zp + 0.5) instead of rint(zp).
//
// Argument checks (qforge default, stricter than PyTorch's tensor overload): quant_min <= quant_max,
// scale > 0 and finite, integer zero points within [quant_min, quant_max].
#pragma once

#include "engine/tensor.hpp"

#include <cstdint>

namespace qforge::quant {

Tensor fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point, int64_t quant_min,
                                       int64_t quant_max);

// scale: f32 [C]; zero_point: i32 [C] (integer zero points) or f32 [C] (PyTorch's float_qparams
// formula: q = rint(x*inv + zp), y = (clamp(q) - zp)*scale, zero not exactly representable).
Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                                        int64_t quant_min, int64_t quant_max);

Tensor _fake_quantize_learnable_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                  int64_t quant_min, int64_t quant_max, double grad_factor = 1.0,
                                                  bool torch_compat = false);

Tensor _fake_quantize_learnable_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                   int64_t axis, int64_t quant_min, int64_t quant_max,
                                                   double grad_factor = 1.0, bool torch_compat = false);

}  // namespace qforge::quant
