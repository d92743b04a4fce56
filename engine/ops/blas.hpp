// Internal: typed OpenBLAS GEMM wrapper and helpers shared by matmul/linear and conv2d.
//
// gemm<T>() is row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C with op = transpose when the
// flag is set, so callers pass strided/transposed views straight through instead of copying them.
//
// Note [BLAS threads inside OpenMP]
// Debian's OpenBLAS is the pthreads build: it runs its own thread pool and knows nothing of OpenMP.
//  * A GEMM called on its own (matmul, linear) is threaded by OpenBLAS. Its workers yield while idle,
//    which keeps them responsive on a busy machine; splitting the same GEMM over OpenMP workers (which
//    spin, then sleep) was measured to stall each call for a scheduler time slice when the cores are
//    oversubscribed (~20 ms for a 64x784x256 product instead of 0.2 ms).
//  * Ops that parallelise over samples with OpenMP (conv2d, batched matmul) call a GEMM per sample from
//    every worker; letting OpenBLAS fan out as well would oversubscribe the cores. Such a region is
//    wrapped in BlasSingleThread, which pins OpenBLAS to one thread and restores the count afterwards.
#pragma once

#include <cblas.h>

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

// Row-major C[m,n] = alpha * op(A) * op(B) + beta * C. See Note [BLAS threads inside OpenMP].
template <class T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
          int64_t ldb, T beta, T* c, int64_t ldc) noexcept {
  if (m == 0 || n == 0) return;
  gemm_raw(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

// Pins OpenBLAS to one thread for the scope of an OpenMP region whose workers call gemm() (only when
// `active`, i.e. the region really runs on several threads); restores the previous count.
class BlasSingleThread {
public:
  explicit BlasSingleThread(bool active) : prev_(active ? openblas_get_num_threads() : 1) {
    if (prev_ > 1) openblas_set_num_threads(1);
  }
  ~BlasSingleThread() {
    if (prev_ > 1) openblas_set_num_threads(prev_);
  }
  BlasSingleThread(const BlasSingleThread&) = delete;
  BlasSingleThread& operator=(const BlasSingleThread&) = delete;

private:
  int prev_;
};

// Below this many multiply-adds per GEMM, many independent GEMMs are better spread over OpenMP threads
// (one single-threaded GEMM each) than threaded one by one.
inline constexpr double kSmallGemmWork = 1 << 22;

}  // namespace qforge::ops::detail
