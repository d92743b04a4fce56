// Internal: typed OpenBLAS GEMM wrapper and helpers shared by matmul/linear and conv2d.
//
// gemm<T>() is row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C with op = transpose when the
// flag is set, so callers pass strided/transposed views straight through instead of copying them.
//
// Note [BLAS threads inside OpenMP]
// Debian's OpenBLAS is the pthreads build: it runs its own thread pool and knows nothing of OpenMP. Two
// pools on the same cores fight (OpenMP workers spin after a region while OpenBLAS threads want to run,
// and an OpenMP loop calling a threaded GEMM per sample oversubscribes). So qforge has one pool:
// OpenBLAS is set to one thread the first time gemm() runs, and gemm() itself splits a large product
// over OpenMP threads (by rows or columns of C, whichever is longer) when it is not already inside a
// parallel region. Ops that parallelise over samples (conv2d) simply call gemm() from their workers.
#pragma once

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>

namespace qforge::ops::detail {

inline void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                     const float* b, int64_t ldb, float beta, float* c, int64_t ldc) noexcept {
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

inline void gemm_raw(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                     const double* b, int64_t ldb, double beta, double* c, int64_t ldc) noexcept {
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

// One-time switch of OpenBLAS to a single thread (Note [BLAS threads inside OpenMP]).
inline void blas_single_threaded_once() noexcept {
  static const bool done = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)done;
}

// Below this many multiply-adds (~40 us of one core) a GEMM runs on the calling thread: splitting it
// would save less than a parallel region costs.
inline constexpr double kParallelGemmWork = 1 << 22;

// Row-major C[m,n] = alpha * op(A) * op(B) + beta * C, split over OpenMP threads when large.
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) noexcept {
  if (m == 0 || n == 0) return;
  blas_single_threaded_once();
  const int nt = omp_in_parallel() ? 1 : omp_get_max_threads();
  if (nt <= 1 || static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < kParallelGemmWork) {
    gemm_raw(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  const bool split_rows = m >= n;
  const int64_t len = split_rows ? m : n, align = 16;
  const int64_t chunk = ((len + nt - 1) / nt + align - 1) / align * align;
#pragma omp parallel num_threads(nt)
  {
    const int64_t lo = std::min<int64_t>(len, chunk * omp_get_thread_num());
    const int64_t hi = std::min<int64_t>(len, lo + chunk);
    if (hi > lo) {
      if (split_rows)  // rows of C <- rows of op(A)
        gemm_raw(ta, tb, hi - lo, n, k, alpha, ta ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc);
      else  // columns of C <- columns of op(B)
        gemm_raw(ta, tb, m, hi - lo, k, alpha, a, lda, tb ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc);
    }
  }
}

}  // namespace qforge::ops::detail
