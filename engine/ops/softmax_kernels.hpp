// Internal: the row kernels shared by softmax/log_softmax (softmax.cpp) and the fused cross_entropy
// (loss.cpp), and a vectorised exp over a contiguous run.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__SSE2__)
#include <xsimd/xsimd.hpp>
#endif

namespace qforge::ops::detail {

// out = log_softmax(x) along n, for contiguous x viewed as [outer, n, inner]. T = float or double.
template <class T> void log_softmax_rows(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);

// Note [Vectorised exp]
// std::exp is a library call the compiler cannot vectorise (glibc's SIMD variants need -ffast-math),
// and it dominates softmax/cross-entropy in f32. exp_shifted runs xsimd's exp (about 1 ulp) on the
// baseline SIMD width for f32; f64 (gradcheck and golden tests) keeps std::exp.
// out[j] = exp(x[j] - shift) for j < n; out may alias x.
template <class T> inline void exp_shifted(const T* x, T* out, int64_t n, T shift) {
  int64_t j = 0;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    using B = xsimd::batch<float>;
    constexpr int64_t w = static_cast<int64_t>(B::size);
    const B s(shift);
    for (; j + w <= n; j += w) xsimd::exp(B::load_unaligned(x + j) - s).store_unaligned(out + j);
  }
#endif
  for (; j < n; ++j) out[j] = std::exp(x[j] - shift);
}

// max_j x[j] for n >= 1. A NaN anywhere may or may not be returned: callers feed x - max through exp
// and a sum, so a NaN in the row makes the whole row NaN either way (PyTorch's result too).
template <class T> inline T row_max(const T* x, int64_t n) {
  int64_t j = 1;
  T m = x[0];
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, float>) {
    using B = xsimd::batch<float>;
    constexpr int64_t w = static_cast<int64_t>(B::size);
    if (n >= 2 * w) {
      B acc = B::load_unaligned(x);
      for (j = w; j + w <= n; j += w) acc = xsimd::max(acc, B::load_unaligned(x + j));
      alignas(64) float lanes[w];
      acc.store_aligned(lanes);
      m = lanes[0];
      for (int64_t k = 1; k < w; ++k) m = lanes[k] > m || lanes[k] != lanes[k] ? lanes[k] : m;
    }
  }
#endif
  for (; j < n; ++j) m = x[j] > m || x[j] != x[j] ? x[j] : m;
  return m;
}

}  // namespace qforge::ops::detail
