// Internal: the fused quantize-dequantize loops behind every fake-quant op (one pass forward, one pass
// backward, no temporaries). Not part of the installed API.
//
// All loops work on a contiguous block of `n` elements with one set of AffineParams (a tensor, or one
// channel of a per-channel tensor). Rounding (Note [Tie rule] in encoding.hpp) is a template parameter:
// Tie::half_up (qforge's quantizers, identical to engine/kernels/quantize.hpp round_half_up) or
// Tie::half_even (the PyTorch-compatible ops); the level is engine/kernels/quantize.hpp grid_level
// (Notes [rint by magic number] and [fake-quant level] there).
#pragma once

#include "engine/kernels/quantize.hpp"
#include "quant/encoding.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace qforge::quant::detail {

// The arithmetic (rounding, clamping, the grid level) is engine/kernels/quantize.hpp's; only the loops
// live here.
using kernels::clamp_to;
using kernels::in_range;
using kernels::rint_small;
using kernels::round_tie;
using Tie = kernels::Tie;

// Per-block parameters in the compute type T.
template <class T> using QdqParams = kernels::GridIn<T>;

template <Tie tie, class T> inline T round_clamped(T x, const QdqParams<T>& p) { return kernels::grid_level<tie>(x, p); }

// Storage type T, compute type C (C = double for bitwidths above 16 so that integers stay exact).
// y = clamp(rint(x * inv), lo, hi) * scale
template <Tie tie, class T, class C>
inline void qdq_forward(const T* __restrict x, T* __restrict y, int64_t n, const QdqParams<C>& p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const C r = round_clamped<tie>(static_cast<C>(x[i]), p);
    y[i] = static_cast<T>(clamp_to(r, p.lo, p.hi) * p.scale);
  }
}

// dx = g where lo <= rint(x * inv) <= hi, else 0 (Note [STE mask] in quantizer.hpp).
template <Tie tie, class T, class C>
inline void qdq_backward_ste(const T* __restrict x, const T* __restrict g, T* __restrict dx, int64_t n,
                             const QdqParams<C>& p) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const C r = round_clamped<tie>(static_cast<C>(x[i]), p);
    dx[i] = static_cast<T>(in_range(r, p.lo, p.hi)) * g[i];
  }
}

// Backward for learnable ranges: dx plus two per-block sums from which every range-learning rule is
// derived (aimet-compat.md §6.2, pytorch-fake-quant.md §5):
//   s_scale = Σ g · (in ? r - x·inv : clamp(r))      (dy/dscale per element, times scale^0)
//   s_out   = Σ g · (1 - in)                          (elements clamped at a bound)
struct GradSums {
  double s_scale = 0, s_out = 0;
};
template <Tie tie, class T, class C>
inline GradSums qdq_backward_learnable(const T* __restrict x, const T* __restrict g, T* __restrict dx, int64_t n,
                                       const QdqParams<C>& p) {
  // Blocks of 4096 accumulate in C, then into double: vectorised and still accurate for big tensors.
  GradSums s;
  for (int64_t b0 = 0; b0 < n; b0 += 4096) {
    const int64_t e = std::min(n, b0 + 4096);
    C a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = b0; i < e; ++i) {
      const C xs = static_cast<C>(x[i]) * p.inv;
      const C r = round_tie<tie>(clamp_to(xs, p.lo - C(1), p.hi + C(1)));
      const C in = in_range(r, p.lo, p.hi);
      const C gi = static_cast<C>(g[i]);
      dx[i] = static_cast<T>(in) * g[i];
      // in range: r - x/s; clamped: the bound (clamp(r))
      a += gi * (in * (r - xs) + (C(1) - in) * clamp_to(r, p.lo, p.hi));
      b += gi * (C(1) - in);
    }
    s.s_scale += static_cast<double>(a);
    s.s_out += static_cast<double>(b);
  }
  return s;
}

// Stochastic rounding: r = floor(x * inv + u), u ~ U[0, 1) given per element; mask written for backward.
template <class T, class C>
inline void qdq_forward_stochastic(const T* __restrict x, const float* __restrict u, T* __restrict y,
                                   uint8_t* __restrict mask, int64_t n, const QdqParams<C>& p) {
  for (int64_t i = 0; i < n; ++i) {
    const C v = clamp_to(static_cast<C>(x[i]) * p.inv, p.lo - C(1), p.hi + C(1));
    const C r = std::floor(v + static_cast<C>(u[i]));
    mask[i] = static_cast<uint8_t>(in_range(r, p.lo, p.hi));
    y[i] = static_cast<T>(clamp_to(r, p.lo, p.hi) * p.scale);
  }
}

// AIMET float quantizer, 16 bits: round to IEEE half precision (ties to even; overflow to inf) and back.
// GCC 12 has no C++ _Float16 on aarch64; its __fp16 is the same IEEE binary16 (fcvt, round to nearest even).
#if defined(__aarch64__)
using Half = __fp16;
#else
using Half = _Float16;
#endif
template <class T> inline void fp16_round_trip(const T* __restrict x, T* __restrict y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(static_cast<float>(static_cast<Half>(static_cast<float>(x[i]))));
}

}  // namespace qforge::quant::detail
