// Internal: typed OpenBLAS GEMM wrapper and helpers shared by matmul/linear and conv2d.
//
// gemm<T>() is row-major C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C with op = transpose when the
// flag is set, so callers pass strided/transposed views straight through instead of copying them.
//
// Note [BLAS threads inside OpenMP]
// Debian's OpenBLAS is the pthreads build: it runs its own thread pool and does not know about OpenMP.
// Ops that parallelise over the batch with OpenMP (conv2d) call a small GEMM per sample from every
// OpenMP thread; letting OpenBLAS also fan out would oversubscribe the cores. BlasSingleThread pins
// OpenBLAS to one thread for the scope of such a region and restores the previous count afterwards.
#pragma once

#include <cblas.h>

#include <cstdint>

namespace qforge::ops::detail {

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float beta, float* c, int64_t ldc) noexcept {
  if (m == 0 || n == 0) return;
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

inline void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a, int64_t lda,
                 const double* b, int64_t ldb, double beta, double* c, int64_t ldc) noexcept {
  if (m == 0 || n == 0) return;
  cblas_dgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, static_cast<int>(m),
              static_cast<int>(n), static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
              beta, c, static_cast<int>(ldc));
}

// See Note [BLAS threads inside OpenMP].
class BlasSingleThread {
public:
  explicit BlasSingleThread(bool active = true) : prev_(active ? openblas_get_num_threads() : 0) {
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

}  // namespace qforge::ops::detail
