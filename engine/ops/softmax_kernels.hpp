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

}  // namespace qforge::ops::detail
