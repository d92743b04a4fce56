// Internal: typed OpenBLAS GEMM wrapper and helpers shared by matmul/linear and conv2d.
//
// gemm<T>() is row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C with op = transpose when the
// flag is set, so callers pass strided/transposed views straight through instead of copying them.
//
// Note [BLAS threads inside OpenMP]
// Debian's OpenBLAS is the pthreads build: it runs its own thread pool and knows nothing of OpenMP.
// Its idle workers spin with sched_yield for a long while after every threaded call, so with OpenMP
// regions running in between (conv, batch norm, element-wise ops) the two pools fight over the cores:
// measured, a mnist-cnn training epoch took 1.44 s with OpenBLAS threading its GEMMs and 0.90 s
// without. So qforge has one threading runtime, OpenMP: gemm() pins OpenBLAS to a single thread and
// splits a large product itself into one block of output columns (or rows) per OpenMP thread, each a
// single-threaded OpenBLAS call. Inside a parallel region (conv2d and batched matmul call a GEMM per
// sample from every worker) it runs the whole product on the calling thread.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace qforge::ops::detail {

// OpenBLAS runs single-threaded under qforge (Note [BLAS threads inside OpenMP]); a cheap check, so that
// a caller (or a benchmark) that changed the count in between cannot make it fan out inside our regions.
inline void pin_blas_to_one_thread() noexcept {
  if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

// One OpenBLAS call on the calling thread.
inline void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, float beta, float* c, int64_t ldc) noexcept {
  pin_blas_to_one_thread();
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

inline void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                     const double* b, int64_t ldb, double beta, double* c, int64_t ldc) noexcept {
  pin_blas_to_one_thread();
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

// Products below this many multiply-adds run on one thread (a parallel region costs more).
inline constexpr double kParallelGemmWork = 1 << 22;

// Row-major C[m,n] = alpha * op(A) * op(B) + beta * C. See Note [BLAS threads inside OpenMP].
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) noexcept {
  if (m == 0 || n == 0) return;
  // Not inside any parallel region, even a one-thread one (a nested team would be built per call).
  const int threads = omp_get_level() > 0 ? 1 : omp_get_max_threads();
  if (threads <= 1 || double(m) * double(n) * double(k) < kParallelGemmWork) {
    gemm_raw(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  // Split the longer side of C into one block of whole 16-element groups per thread.
  const bool split_n = n >= m;
  const int64_t len = split_n ? n : m, step = (len / threads + 15) / 16 * 16;
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int t = 0; t < threads; ++t) {
    const int64_t lo = std::min(len, t * step), hi = t + 1 == threads ? len : std::min(len, (t + 1) * step);
    if (hi <= lo) continue;
    if (split_n)  // columns [lo, hi) of op(B) and C
      gemm_raw(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
    else  // rows [lo, hi) of op(A) and C
      gemm_raw(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
  }
}

// body(i) for i in [0, count): over `threads` OpenMP threads, or on the calling thread without opening
// a parallel region when threads <= 1 (so that gemm() inside may still split a large product).
template <class F> void for_each_gemm(int64_t count, int threads, F body) {
  if (threads > 1) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < count; ++i) body(i);
  } else {
    for (int64_t i = 0; i < count; ++i) body(i);
  }
}

// Below this many multiply-adds per GEMM, many independent GEMMs are better spread over OpenMP threads
// (one single-threaded GEMM each) than split one by one.
inline constexpr double kSmallGemmWork = 1 << 22;

}  // namespace qforge::ops::detail
