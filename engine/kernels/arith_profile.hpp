// arith_profile.hpp — the two arithmetic profiles of qforge's integer path (DESIGN.md §7), as data and
// pure functions. A profile is chosen at quantize time (`qforge quantize --target dsp|onnxruntime`), is
// recorded in quantsim.json and in the integer program, and decides every real → integer step of the exact
// simulation and of the int8 runtime (they call the same functions below, so they agree bit for bit under
// either profile):
//
//   dsp           qforge's fixed-point DSP (requant.hpp): per-channel multiplier q·2^(shift−31) from
//                 double(s_in)·double(s_w)/double(s_out), single rounding with ties toward +∞; quantize of
//                 floats by x·(1/s) rounded half up; 15-bit residual-add multipliers; average pooling by an
//                 integer division rounded half up; ReLU6's top = z + round_half_away(6/s).
//   onnxruntime   ONNX Runtime's CPU (MLAS) arithmetic on x86-64 (Note [onnxruntime arithmetic]).
//
// Note [onnxruntime arithmetic] (facts from microsoft/onnxruntime's sources; code written here):
//   - QLinearConv/QLinearMatMul/QGemm output scale (qlinearconv.cc): M_c = X_scale·W_scale[c]/Y_scale in
//     float32, in that order. MlasRequantizeOutput (mlas/lib/quantize.cpp): f = float(acc) (acc already
//     holds the int32 bias), f·M_c in float32, clamp in float to [qmin − z, qmax − z], round half to even
//     (cvtps2dq under the default MXCSR), + z. Carried by Rounding::float_rne with the float32 M_c stored
//     in QuantizedMultiplier (float_multiplier); requantize() evaluates it, so every kernel epilogue, the
//     requant and global-average kernels and the exact simulation follow it unchanged.
//   - QLinearGlobalAveragePool (mlas/lib/qlgavgpool.cpp, x86): Σ x − z_in·count in int32, then the same
//     MlasRequantizeOutput with scale = s_in/(s_out·float(count)) in float32.
//   - QuantizeLinear (MlasQuantizeLinear): x / s (a division), clamp in float to [qmin − z, qmax − z],
//     round half to even, + z (quantize_linear_value). DequantizeLinear: (q − z)·s.
//   - QLinearAdd on x86 with AVX2 (mlas/lib/intrinsics/avx2/qladd_avx2.cpp; used on AVX-512 machines
//     too): r_a = s_a/s_c, r_b = s_b/s_c (float32), fixed = z_c − (r_a·z_a + r_b·z_b), then per element
//     y = saturate(rne(fma(a, r_a, fma(b, r_b, fixed)))) on the raw 8-bit values. This is not invariant
//     under the int8 ↔ uint8 shift, so it is evaluated on the uint8 values ORT sees (Note [uint8 view]).
//     Note [QLinearAdd constant]: the source writes r_a·z_a + r_b·z_b; ORT's x64 build contracts it to
//     fma(r_a, z_a, r_b·z_b). Measured against onnxruntime-node 1.30.0 on this machine (a com.microsoft
//     QLinearAdd node, all 65536 uint8 pairs × 40 random scale/zero-point sets): that form differs in 0
//     outputs, the unfused sum in 4, fma(r_b, z_b, r_a·z_a) in 9. Measured the same way: QuantizeLinear
//     (80000 values over 20 random scale/uint8 zero-point sets, exact ties included; qforge's dsp rule
//     would differ in 350), com.microsoft QLinearGlobalAveragePool (564 outputs, 12 shapes) and QLinearConv
//     (59282 outputs, per-channel, half the layers with power-of-two scales so exact ties occur; the dsp
//     profile differs in 40): 0 differ. Re-run with tests/engine/kernels/ort_arith/run.sh.
//   - QLinearAveragePool (contrib_ops/cpu/qlinear_pool.cc): each tap dequantized to float s_in·(x − z_in),
//     summed in float in window order (rows, then columns; padded taps skipped), divided by the count,
//     then nearbyintf(y / s_out + z_out) on the uint8 zero point, saturated.
//   - A standalone change of encoding or a float activation between QDQ pairs (DQ → [Relu|Clip] → Q): ORT
//     runs DequantizeLinear then QuantizeLinear: rne(float(x − z_in)·s_in / s_out) + z_out, clamped.
// Note [uint8 view]: qforge keeps 8-bit activations as int8 codes q with zero point z (program.hpp Note
// [codes]); ONNX Runtime's x86 integer operators need uint8 activations, so the QDQ export writes
// u = q + 128 with zero point z + 128. Every operation above except QLinearAdd and QLinearAveragePool
// (whose float expressions contain the zero point itself) is invariant under that shift, because it only
// ever sees q − z; those two evaluate their formula on u and z + 128 and subtract 128 from the result.
#pragma once

#include "engine/kernels/requant.hpp"

#include <bit>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace qforge::kernels {

enum class ArithProfile : std::uint8_t { dsp = 0, onnxruntime = 1 };

constexpr const char* profile_name(ArithProfile p) noexcept { return p == ArithProfile::onnxruntime ? "onnxruntime" : "dsp"; }
constexpr bool parse_profile(std::string_view name, ArithProfile* out) noexcept {
  if (name == "dsp") *out = ArithProfile::dsp;
  else if (name == "onnxruntime") *out = ArithProfile::onnxruntime;
  else return false;
  return true;
}

inline namespace QFORGE_KERNELS_ISA_NS {

// The requantization rounding a profile's conv/linear/global-average layers use.
constexpr Rounding profile_rounding(ArithProfile p) noexcept {
  return p == ArithProfile::onnxruntime ? Rounding::float_rne : Rounding::single;
}

// Per-channel requantization multiplier of a conv/linear layer (s_in·s_w/s_out).
inline QuantizedMultiplier layer_multiplier(ArithProfile p, float s_in, float s_w, float s_out) noexcept {
  if (p == ArithProfile::onnxruntime) return float_multiplier(s_in * s_w / s_out);
  return quantize_multiplier(s_in, s_w, s_out);
}

// Global average pooling multiplier s_in/(count·s_out).
inline QuantizedMultiplier global_average_multiplier(ArithProfile p, float s_in, float s_out, std::int64_t count) noexcept {
  if (p == ArithProfile::onnxruntime) return float_multiplier(s_in / (s_out * static_cast<float>(count)));
  return quantize_multiplier(static_cast<double>(s_in) / (static_cast<double>(count) * static_cast<double>(s_out)));
}

// Fused activation as a clamp: dsp is requant.hpp activation_range; onnxruntime computes ReLU6's top as
// QuantizeLinear of 6.0 (rne(6/s) + z), what DQ → Clip(0, 6) → Q gives.
inline ActivationRange profile_activation_range(ArithProfile p, FusedAct act, float s_out, std::int32_t z_out,
                                                ActType t) noexcept {
  if (p == ArithProfile::dsp || act != FusedAct::relu6) return activation_range(act, s_out, z_out, t);
  ActivationRange r = activation_range(FusedAct::relu, s_out, z_out, t);
  const auto six = static_cast<std::int64_t>(std::nearbyint(6.0f / s_out)) + z_out;
  if (six < r.max) r.max = static_cast<std::int32_t>(six < r.min ? r.min : six);
  return r;
}

// QuantizeLinear of one float: clamp(rne(x / s) + z, qmin, qmax) with the clamp in float before the
// conversion; NaN gives qmin (MLAS's max(NaN, lo) returns lo).
[[gnu::always_inline]] inline std::int32_t quantize_linear_value(float x, float scale, std::int32_t zero_point,
                                                                 std::int32_t qmin, std::int32_t qmax) noexcept {
  float y = x / scale;
  const auto lo = static_cast<float>(qmin - zero_point), hi = static_cast<float>(qmax - zero_point);
  y = y > lo ? y : lo;  // NaN → lo
  y = y < hi ? y : hi;
  return static_cast<std::int32_t>(std::nearbyint(y)) + zero_point;
}

// A profile's quantize of one float (the model input, and every activation quantizer in exact mode).
[[gnu::always_inline]] inline std::int32_t profile_quantize_value(ArithProfile p, float x, float scale,
                                                                  std::int32_t zero_point, std::int32_t qmin,
                                                                  std::int32_t qmax) noexcept {
  if (p == ArithProfile::onnxruntime) return quantize_linear_value(x, scale, zero_point, qmin, qmax);
  return quantize_value(x, 1.0f / scale, zero_point, qmin, qmax);
}

// Residual add parameters of a profile (Note [residual add] / Note [onnxruntime arithmetic]).
inline AddParams add_params_onnxruntime(float s_a, std::int32_t z_a, float s_b, std::int32_t z_b, float s_out,
                                        std::int32_t z_out, ActivationRange range, ActType t) noexcept {
  AddParams p;
  p.method = AddMethod::float_fma;
  p.a_zero_point = z_a;
  p.b_zero_point = z_b;
  p.out_zero_point = z_out;
  p.act_min = range.min;
  p.act_max = range.max;
  const std::int32_t u = t == ActType::s8 ? 128 : 0;  // Note [uint8 view]
  p.code_offset = u;
  p.a_ratio = s_a / s_out;
  p.b_ratio = s_b / s_out;
  const float za = static_cast<float>(z_a + u), zb = static_cast<float>(z_b + u);
  p.fixed = static_cast<float>(z_out + u) - std::fma(p.a_ratio, za, p.b_ratio * zb);  // Note [QLinearAdd constant]
  return p;
}
inline AddParams profile_add_params(ArithProfile prof, float s_a, std::int32_t z_a, float s_b, std::int32_t z_b,
                                    float s_out, std::int32_t z_out, ActivationRange range, ActType t) noexcept {
  if (prof == ArithProfile::onnxruntime) return add_params_onnxruntime(s_a, z_a, s_b, z_b, s_out, z_out, range, t);
  return make_add_params(s_a, z_a, s_b, z_b, s_out, z_out, range);
}

// Average of a pooling window under onnxruntime (Note [onnxruntime arithmetic]): `taps` are the window's
// valid 8-bit codes in window order, the result a code in the same ActType.
struct AvgPoolFloat {
  float in_scale = 1.0f, out_scale = 1.0f;
  std::int32_t in_zero_point = 0, out_zero_point = 0;
  std::int32_t qmin = -128, qmax = 127;
};
[[gnu::always_inline]] inline float average_tap(float sum, std::int32_t x, const AvgPoolFloat& p) noexcept {
  return sum + p.in_scale * static_cast<float>(x - p.in_zero_point);
}
[[gnu::always_inline]] inline std::int32_t average_float_result(float sum, std::int32_t count, const AvgPoolFloat& p,
                                                                ActType t) noexcept {
  const std::int32_t u = t == ActType::s8 ? 128 : 0;  // Note [uint8 view]
  const float y = sum / static_cast<float>(count);
  const float v = y / p.out_scale + static_cast<float>(p.out_zero_point + u);
  const float lo = static_cast<float>(p.qmin + u), hi = static_cast<float>(p.qmax + u);
  const float c = v > lo ? v : lo;
  return static_cast<std::int32_t>(std::nearbyint(c < hi ? c : hi)) - u;
}

// Standalone requantization under onnxruntime: DequantizeLinear then QuantizeLinear.
[[gnu::always_inline]] inline std::int32_t dequantize_quantize_value(std::int32_t x, float in_scale,
                                                                     std::int32_t in_zero_point, float out_scale,
                                                                     std::int32_t out_zero_point, std::int32_t act_min,
                                                                     std::int32_t act_max) noexcept {
  return quantize_linear_value(dequantize_value(x, in_scale, in_zero_point), out_scale, out_zero_point, act_min,
                               act_max);
}

}  // inline namespace QFORGE_KERNELS_ISA_NS
}  // namespace qforge::kernels
