#include "benchmarks/kernels/peak.hpp"

#include <immintrin.h>

namespace qforge::bench::peak::avx2 {

double fma_f32(std::int64_t iters) noexcept {
  __m256 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm256_set1_ps(static_cast<float>(j));
  const __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-7f);
  for (std::int64_t i = 0; i < iters; ++i) {
    for (int j = 0; j < 12; ++j) acc[j] = _mm256_fmadd_ps(acc[j], a, b);
  }
  __m256 s = acc[0];
  for (int j = 1; j < 12; ++j) s = _mm256_add_ps(s, acc[j]);
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  volatile float sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 12 * 8 * 2;
}

// int16-widened u8·s8: one vpmaddwd (16 products) + one vpaddd per step. The multiplicands pass through an
// empty asm each iteration so the compiler cannot hoist the loop-invariant vpmaddwd.
double dot_u8s8(std::int64_t iters) noexcept {
  __m256i a0 = _mm256_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m256i x0 = _mm256_set1_epi16(1), x1 = _mm256_set1_epi16(2), x2 = _mm256_set1_epi16(3);
  __m256i x3 = _mm256_set1_epi16(4), x4 = _mm256_set1_epi16(5), x5 = _mm256_set1_epi16(6);
  const __m256i b = _mm256_set1_epi16(-2);
  for (std::int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(x0, b));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(x1, b));
    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(x2, b));
    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(x3, b));
    a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(x4, b));
    a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(x5, b));
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                     _mm256_add_epi32(a4, a5));
  alignas(32) int out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
  volatile int sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 6 * 16 * 2;
}

double dot_u8s8_maddubs(std::int64_t iters) noexcept {
  __m256i a0 = _mm256_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(2), x2 = _mm256_set1_epi8(3);
  __m256i x3 = _mm256_set1_epi8(4), x4 = _mm256_set1_epi8(5), x5 = _mm256_set1_epi8(6);
  const __m256i b = _mm256_set1_epi8(-2), ones = _mm256_set1_epi16(1);
  for (std::int64_t i = 0; i < iters; ++i) {
    __asm__ volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5));
    a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b), ones));
    a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b), ones));
    a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(x2, b), ones));
    a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(x3, b), ones));
    a4 = _mm256_add_epi32(a4, _mm256_madd_epi16(_mm256_maddubs_epi16(x4, b), ones));
    a5 = _mm256_add_epi32(a5, _mm256_madd_epi16(_mm256_maddubs_epi16(x5, b), ones));
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(_mm256_add_epi32(a0, a1), _mm256_add_epi32(a2, a3)),
                                     _mm256_add_epi32(a4, a5));
  alignas(32) int out[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(out), s);
  volatile int sink = out[0];
  (void)sink;
  return static_cast<double>(iters) * 6 * 32 * 2;
}

}  // namespace qforge::bench::peak::avx2
