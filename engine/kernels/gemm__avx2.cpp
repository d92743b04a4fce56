// int8 GEMM for AVX2: qs8_qc8w_gemm_6x16c2_{requant,s32}__avx2 (exact; no vpmaddubsw).
//
// Note [vpmaddubsw trap]: the obvious AVX2 int8 dot product, vpmaddubsw (u8×s8 pairs → saturated int16),
// is wrong for full-range operands (255·127·2 > 32767). These kernels widen both operands to int16 and
// use vpmaddwd, which is exact (a pair sum is at most 2·255·128 in magnitude).
//
// Note [AVX2 6x16c2 tile]: the weights are widened once, at pack time (GemmWeights::panels16, Note
// [int16 panels] in kernels.hpp): per 16-column panel and per k-pair, 16 columns × (w[2i], w[2i+1]) =
// two ymm. The activations of a chunk of rows are widened to int16 once per call into a stack buffer
// (row-major, K padded to k4 with zeros), so each k-pair step of the 6×16 tile is
//   2 weight loads, 6 vpbroadcastd of an activation pair (pure loads), 12 vpmaddwd, 12 vpaddd
// into 12 ymm accumulators that start at the folded bias (b − z_in·Σw; no row correction is needed since
// the activations are widened with their true sign). The vector ALUs see only vpmaddwd + vpaddd, the
// exact-path peak (benchmarks/kernels peak__avx2.cpp measures the same pair). The epilogue requantizes
// from the registers (generic/requant_avx2.inc, Note [AVX2 requant]) and stores 16 bytes per row.
//
// Blocking: rows are processed in chunks whose widened activations fit the 96 KiB stack buffer (L2); for
// each chunk every panel of the thread's share of N is swept (a panel, k4·32 bytes, is reused by every
// row block of the chunk). Two threads split N when there are enough panels, else M. One- and two-row
// products (GEMV, recurrent steps at batch 1-2) are memory-bound: they read the int8 `panels` (half the
// bytes) with the 4x8c4 kernel below (gemm_driver.inc), which also serves K > kMaxK16.
#include "engine/kernels/isa_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace qforge::kernels::avx2 {
namespace {

#include "engine/kernels/generic/requant_avx2.inc"

// ---------------------------------------------------------------------------------------------------
// 4x8c4 kernel on the int8 panels (GEMV path): 16 weight bytes (4 columns × 4 k, XOR 0x80 undone for s8
// activations) widen to 16 int16, the 4 activation bytes of a k-quad are widened and broadcast, vpmaddwd
// yields per column two partial sums (k0+k1, k2+k3) that a final vphaddd folds.

constexpr int kMr = 4, kNr = 8;

struct MicroArgs {
  const std::uint8_t* a;
  std::int64_t lda;
  int mr;
  const std::int8_t* w;  // first column of the tile in the panel's k-quad row 0
  int quad_stride;
  int k;
};

[[gnu::always_inline]] inline std::uint32_t load_quad_bytes(const std::uint8_t* p, int n) noexcept {
  std::uint32_t v = 0;
  if (n == 4) {
    std::memcpy(&v, p, 4);
  } else {
    for (int i = 0; i < n; ++i) v |= static_cast<std::uint32_t>(p[i]) << (8 * i);
  }
  return v;
}

template <bool S8>
void micro(const MicroArgs& t, std::int32_t* out) noexcept {
  __m256i lo[kMr], hi[kMr];
  for (int r = 0; r < kMr; ++r) lo[r] = hi[r] = _mm256_setzero_si256();
  const int quads = (t.k + 3) / 4;
  for (int q = 0; q < quads; ++q) {
    const std::int8_t* wq = t.w + static_cast<std::int64_t>(q) * t.quad_stride;
    __m128i w0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wq));
    __m128i w1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wq + 16));
    if constexpr (S8) {  // stored as w + 128 (Note [s8 activations on VNNI])
      w0 = _mm_xor_si128(w0, _mm_set1_epi8(static_cast<char>(0x80)));
      w1 = _mm_xor_si128(w1, _mm_set1_epi8(static_cast<char>(0x80)));
    }
    const __m256i wl = _mm256_cvtepi8_epi16(w0), wh = _mm256_cvtepi8_epi16(w1);
    const int nbytes = t.k - 4 * q < 4 ? t.k - 4 * q : 4;
    for (int r = 0; r < kMr; ++r) {
      if (r >= t.mr) break;
      const std::uint32_t v = load_quad_bytes(t.a + r * t.lda + 4 * q, nbytes);
      const __m128i v8 = _mm_cvtsi32_si128(static_cast<int>(v));
      const __m256i av = _mm256_broadcastq_epi64(S8 ? _mm_cvtepi8_epi16(v8) : _mm_cvtepu8_epi16(v8));
      lo[r] = _mm256_add_epi32(lo[r], _mm256_madd_epi16(av, wl));
      hi[r] = _mm256_add_epi32(hi[r], _mm256_madd_epi16(av, wh));
    }
  }
  for (int r = 0; r < kMr; ++r) {
    const __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[r], hi[r]), 0xD8);
    _mm256_store_si256(reinterpret_cast<__m256i*>(out + r * kNr), s);
  }
}

// Vectorised epilogue of the 4x8c4 driver: one 8-column row, single rounding (Note [AVX2 requant]).
constexpr bool kHasRequantRow = true;
[[gnu::always_inline]] inline void requant_row(const std::int32_t* t, const GemmWeights& w, int col0,
                                               std::uint8_t* dst) noexcept {
  const __m256i acc = _mm256_add_epi32(_mm256_load_si256(reinterpret_cast<const __m256i*>(t)),
                                       _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w.bias_eff + col0)));
  const RqAvx2 k = rq_avx2_load(w.multiplier + col0, w.shift + col0);
  const __m256i y = rq_avx2_apply(acc, k, _mm256_set1_epi32(w.act_min - w.out_zero_point),
                                  _mm256_set1_epi32(w.act_max - w.out_zero_point),
                                  _mm256_set1_epi64x(static_cast<long long>(w.act_min) - w.out_zero_point),
                                  _mm256_set1_epi64x(static_cast<long long>(w.act_max) - w.out_zero_point),
                                  _mm256_set1_epi32(w.out_zero_point));
  _mm_storel_epi64(reinterpret_cast<__m128i*>(dst), rq_avx2_bytes8(y));
}

#define QFORGE_GEMM_DRIVER_NO_ENTRY_POINTS
#include "engine/kernels/generic/gemm_driver.inc"
#undef QFORGE_GEMM_DRIVER_NO_ENTRY_POINTS

}  // namespace

#include "engine/kernels/gemm_avx2_6x16.inc"

void gemm_requant(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c, std::int64_t ldc,
                  int threads) noexcept {
  if (use_tile16(m, w)) {
    if (w.in_type == ActType::s8)
      run16<true, false>(m, a, lda, w, c, ldc, threads);
    else
      run16<false, false>(m, a, lda, w, c, ldc, threads);
  } else if (w.in_type == ActType::s8) {
    run<true, false>(m, a, lda, w, c, ldc, threads);
  } else {
    run<false, false>(m, a, lda, w, c, ldc, threads);
  }
}

void gemm_s32(int m, const void* a, std::int64_t lda, const GemmWeights& w, std::int32_t* c, std::int64_t ldc,
              int threads) noexcept {
  if (use_tile16(m, w)) {
    if (w.in_type == ActType::s8)
      run16<true, true>(m, a, lda, w, c, ldc, threads);
    else
      run16<false, true>(m, a, lda, w, c, ldc, threads);
  } else if (w.in_type == ActType::s8) {
    run<true, true>(m, a, lda, w, c, ldc, threads);
  } else {
    run<false, true>(m, a, lda, w, c, ldc, threads);
  }
}

}  // namespace qforge::kernels::avx2
