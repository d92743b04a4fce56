// quantize.hpp — float ⇄ integer arithmetic, beside requant.hpp (DESIGN.md §7 "The arithmetic, one place").
//
// Everything in qforge that turns a real number into an integer level, or back, uses the functions here:
//   - the rounding primitives (rint by the 1.5·2^23 trick, ties toward +∞ or to even);
//   - the affine grid of a fake-quantizer (AffineGrid: y = clamp(round(x·inv_scale), lo, hi)·scale, with
//     lo = AIMET offset and hi = N + offset) and its level/mask functions, used by the fake-quant loops
//     (quant/qdq_kernels.hpp) and by the recurrent fused op's hidden-state fake-quant (nn/recurrent_seq.cpp);
//   - quantize/dequantize of one value for the integer path (quantize_value / dequantize_value);
//   - bias quantization to int32 at scale s_in·s_w (quantize_bias);
//   - the BatchNorm fold of a Conv/Linear's weights and bias (fold_bn_into_layer).
// Pure functions: no Tensor, no allocation, no exceptions. Like requant.hpp, the inline functions live in
// the per-ISA inline namespace (Note [ODR and per-ISA TUs] in requant.hpp); types outside it.
#pragma once

#include <cmath>
#include <cstdint>

#ifndef QFORGE_KERNELS_ISA_NS
#define QFORGE_KERNELS_ISA_NS isa_generic
#endif

namespace qforge::kernels {

// The tie rule of a rounding to the nearest integer.
enum class Tie : std::uint8_t { half_up, half_even };

// A fake-quantizer's grid in float32 (quant::AffineParams is this type): real x ↦ level
// r = round(x·inv_scale) clamped to [lo, hi], value r·scale. inv_scale = 1.0f/scale computed once in
// float32 (PyTorch's convention); lo = offset (≤ 0), hi = N + offset (integers).
struct AffineGrid {
  float scale = 1.0f;
  float inv_scale = 1.0f;
  float lo = 0.0f, hi = 255.0f;
};

// The same grid in the compute type T of a loop (float, or double for grids wider than 16 bits).
template <class T> struct GridIn {
  T scale, inv, lo, hi;
  explicit GridIn(const AffineGrid& g)
      : scale(static_cast<T>(g.scale)), inv(static_cast<T>(g.inv_scale)), lo(static_cast<T>(g.lo)),
        hi(static_cast<T>(g.hi)) {}
  GridIn(T s, T i, T l, T h) : scale(s), inv(i), lo(l), hi(h) {}
};

inline namespace QFORGE_KERNELS_ISA_NS {

// ---------------------------------------------------------------------------------------------------
// Rounding primitives.
//
// Note [rint by magic number]: (v + 1.5·2^23) − 1.5·2^23 rounds v to the nearest integer with ties to even
// in the default rounding mode, exactly for |v| < 2^22 (float; 2^51 for double). It vectorises on baseline
// x86-64 (no SSE4.1 roundps needed). Callers clamp v into that range first.

[[gnu::always_inline]] inline float rint_small(float v) noexcept {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  return (v + kMagic) - kMagic;
}
[[gnu::always_inline]] inline double rint_small(double v) noexcept {
  constexpr double kMagic = 6755399441055744.0;  // 1.5 * 2^52
  return (v + kMagic) - kMagic;
}

// Branch-free (so loops vectorise): ties toward +∞ bump exact ties that rint took down (v − rint(v) is
// exact whenever it can be 0.5, Sterbenz).
template <Tie tie, class T> [[gnu::always_inline]] inline T round_tie(T v) noexcept {
  const T r = rint_small(v);
  if constexpr (tie == Tie::half_up) return r + static_cast<T>(v - r == T(0.5));
  return r;
}

template <class T> [[gnu::always_inline]] inline T clamp_to(T v, T lo, T hi) noexcept {
  v = v < lo ? lo : v;
  return v > hi ? hi : v;
}

// 1 where lo ≤ r ≤ hi, else 0 (no && in loop bodies: it is control flow).
template <class T> [[gnu::always_inline]] inline T in_range(T r, T lo, T hi) noexcept {
  return static_cast<T>(static_cast<int>(r >= lo) & static_cast<int>(r <= hi));
}

// Round to nearest, ties toward +∞, exactly for every float (libm nearbyint, any magnitude).
[[gnu::always_inline]] inline float round_half_up(float y) noexcept {
  const float r = std::nearbyint(y);
  return (y - r == 0.5f) ? r + 1.0f : r;
}

// ---------------------------------------------------------------------------------------------------
// Fake-quant levels on an AffineGrid.
//
// Note [fake-quant level]: the level of x is round_tie(clamp(x·inv, lo − 1, hi + 1)). The clamp keeps the
// argument inside rint_small's exact range, maps ±∞ to a clamped level (never an undefined integer cast),
// and does not change the level where it matters (anything beyond the bounds is out of range either
// way); the value is clamp(level, lo, hi)·scale and the straight-through mask is in_range(level, lo, hi).

template <Tie tie, class T> [[gnu::always_inline]] inline T grid_level_scaled(T xs, const GridIn<T>& g) noexcept {
  return round_tie<tie>(clamp_to(xs, g.lo - T(1), g.hi + T(1)));
}
template <Tie tie, class T> [[gnu::always_inline]] inline T grid_level(T x, const GridIn<T>& g) noexcept {
  return grid_level_scaled<tie>(x * g.inv, g);
}
// dequantize(quantize(x)) on the grid.
template <Tie tie, class T> [[gnu::always_inline]] inline T grid_fake_quant(T x, const GridIn<T>& g) noexcept {
  return clamp_to(grid_level<tie>(x, g), g.lo, g.hi) * g.scale;
}

// ---------------------------------------------------------------------------------------------------
// Quantize/dequantize of one value for the integer path (requant.hpp's model, real = s·(q − z)).

// Float → code: q = clamp(round_half_up(x·inv_scale) + z, qmin, qmax), inv_scale = 1/s computed once in
// float32 (as PyTorch's fake-quant kernels do). NaN maps to z. The clamp happens in float before the
// conversion so huge values cannot overflow.
[[gnu::always_inline]] inline std::int32_t quantize_value(float x, float inv_scale, std::int32_t zero_point,
                                                          std::int32_t qmin, std::int32_t qmax) noexcept {
  float y = x * inv_scale;
  if (y != y) return zero_point;
  const auto lo = static_cast<float>(qmin - zero_point), hi = static_cast<float>(qmax - zero_point);
  y = y < lo ? lo : (y > hi ? hi : y);
  return static_cast<std::int32_t>(round_half_up(y)) + zero_point;
}

// Code → float: s·(q − z) (the subtraction is exact in int32, the product rounds once).
[[gnu::always_inline]] constexpr float dequantize_value(std::int32_t q, float scale, std::int32_t zero_point) noexcept {
  return scale * static_cast<float>(q - zero_point);
}

// ---------------------------------------------------------------------------------------------------
// Bias quantization: int32 at scale s_acc = s_in·s_w[c] (computed in double from the float32 scales),
// b_q = floor(b/s_acc + 0.5) (ties toward +∞), saturated to int32; a non-finite quotient saturates by
// sign (NaN → 0).
[[gnu::always_inline]] inline std::int32_t quantize_bias(double b, double s_acc) noexcept {
  const double v = std::floor(b / s_acc + 0.5);
  if (v != v) return 0;
  return static_cast<std::int32_t>(v > 2147483647.0 ? 2147483647.0 : (v < -2147483648.0 ? -2147483648.0 : v));
}

// ---------------------------------------------------------------------------------------------------
// BatchNorm folding into the preceding Conv2d/Linear (the one definition; QuantSim's fold and
// quant/ptq's fold_all_batch_norms both call it): per output channel o,
//   s = gamma/sqrt(var + eps);  W'[o, :] = float(W[o, :]·s);  b'[o] = float(beta + (b[o] − mean)·s)
// in double from the float32 weights. w: [channels][inner] row-major, bias: [channels].
[[gnu::always_inline]] inline double bn_fold_scale(double gamma, double var, double eps) noexcept {
  return gamma / std::sqrt(var + eps);
}
inline void fold_bn_into_layer(float* w, std::int64_t channels, std::int64_t inner, float* bias, const double* gamma,
                               const double* beta, const double* mean, const double* var, double eps) noexcept {
  for (std::int64_t o = 0; o < channels; ++o) {
    const double s = bn_fold_scale(gamma[o], var[o], eps);
    for (std::int64_t k = 0; k < inner; ++k) w[o * inner + k] = static_cast<float>(w[o * inner + k] * s);
    bias[o] = static_cast<float>(beta[o] + (bias[o] - mean[o]) * s);
  }
}

}  // inline namespace QFORGE_KERNELS_ISA_NS
}  // namespace qforge::kernels
