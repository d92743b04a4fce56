// int8 GEMM for the baseline ISA (SSE4.2): qs8_qc8w_gemm_4x4c4_{requant,s32}__baseline.
// Same scheme as the AVX2 GEMV kernel in gemm__avx2.cpp (Note [vpmaddubsw trap]: widen to int16 +
// pmaddwd, exact) on 128-bit registers: 16 weight bytes = 4 columns × 4 k, split into two int16 halves;
// tile 4 rows × 4 columns; requantization epilogue in registers (Note [SSE requant]).
#include "engine/kernels/isa_kernels.hpp"

#include <immintrin.h>

#include <cstring>

namespace qforge::kernels::baseline {
namespace {

constexpr int kMr = 4, kNr = 4;

struct MicroArgs {
  const std::uint8_t* a;
  std::int64_t lda;
  int mr;
  const std::int8_t* w;
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
  __m128i lo[kMr], hi[kMr];
  for (int r = 0; r < kMr; ++r) lo[r] = hi[r] = _mm_setzero_si128();
  const int quads = (t.k + 3) / 4;
  for (int q = 0; q < quads; ++q) {
    __m128i wb = _mm_loadu_si128(reinterpret_cast<const __m128i*>(t.w + static_cast<std::int64_t>(q) * t.quad_stride));
    if constexpr (S8) wb = _mm_xor_si128(wb, _mm_set1_epi8(static_cast<char>(0x80)));  // stored as w + 128
    const __m128i wl = _mm_cvtepi8_epi16(wb), wh = _mm_cvtepi8_epi16(_mm_srli_si128(wb, 8));
    const int nbytes = t.k - 4 * q < 4 ? t.k - 4 * q : 4;
    for (int r = 0; r < kMr; ++r) {
      if (r >= t.mr) break;
      const std::uint32_t v = load_quad_bytes(t.a + r * t.lda + 4 * q, nbytes);
      const __m128i v8 = _mm_cvtsi32_si128(static_cast<int>(v));
      __m128i av = S8 ? _mm_cvtepi8_epi16(v8) : _mm_cvtepu8_epi16(v8);
      av = _mm_unpacklo_epi64(av, av);
      lo[r] = _mm_add_epi32(lo[r], _mm_madd_epi16(av, wl));
      hi[r] = _mm_add_epi32(hi[r], _mm_madd_epi16(av, wh));
    }
  }
  for (int r = 0; r < kMr; ++r) _mm_store_si128(reinterpret_cast<__m128i*>(out + r * kNr), _mm_hadd_epi32(lo[r], hi[r]));
}

// Note [SSE requant]: the AVX2 recipe (Note [AVX2 requant] in generic/requant_avx2.inc) on one xmm of 4
// columns. SSE has no variable per-lane 64-bit shift, so each 64-bit lane pair is shifted twice (by the
// lane 0 and lane 1 counts, psrlq/psllq) and blended.
[[gnu::always_inline]] inline __m128i srl64_var(__m128i x, __m128i t) noexcept {
  return _mm_blend_epi16(_mm_srl_epi64(x, t), _mm_srl_epi64(x, _mm_unpackhi_epi64(t, t)), 0xF0);
}
[[gnu::always_inline]] inline __m128i sll64_var(__m128i x, __m128i t) noexcept {
  return _mm_blend_epi16(_mm_sll_epi64(x, t), _mm_sll_epi64(x, _mm_unpackhi_epi64(t, t)), 0xF0);
}
[[gnu::always_inline]] inline __m128i sra64_var(__m128i x, __m128i t) noexcept {  // floor(x / 2^t)
  const __m128i s = _mm_cmpgt_epi64(_mm_setzero_si128(), x);
  return _mm_xor_si128(srl64_var(_mm_xor_si128(x, s), t), s);
}
[[gnu::always_inline]] inline __m128i clamp64(__m128i x, __m128i lo, __m128i hi) noexcept {
  x = _mm_blendv_epi8(x, lo, _mm_cmpgt_epi64(lo, x));
  return _mm_blendv_epi8(x, hi, _mm_cmpgt_epi64(x, hi));
}

// Vectorised epilogue of the driver: one 4-column row, single rounding.
constexpr bool kHasRequantRow = true;
[[gnu::always_inline]] inline void requant_row(const std::int32_t* t, const GemmWeights& w, int col0,
                                               std::uint8_t* dst) noexcept {
  const __m128i acc = _mm_add_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(t)),
                                    _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.bias_eff + col0)));
  const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.multiplier + col0));
  const __m128i sh = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w.shift + col0));
  const __m128i total = _mm_sub_epi32(_mm_set1_epi32(31), sh);
  const __m128i one = _mm_set1_epi64x(1);
  const __m128i te = _mm_and_si128(total, _mm_set1_epi64x(0xFFFFFFFFll)), to = _mm_srli_epi64(total, 32);
  __m128i pe = _mm_add_epi64(_mm_mul_epi32(acc, q), sll64_var(one, _mm_sub_epi64(te, one)));
  __m128i po = _mm_add_epi64(_mm_mul_epi32(_mm_srli_epi64(acc, 32), _mm_srli_epi64(q, 32)),
                             sll64_var(one, _mm_sub_epi64(to, one)));
  pe = sra64_var(pe, te);
  po = sra64_var(po, to);
  const __m128i lo = _mm_set1_epi64x(static_cast<long long>(w.act_min) - w.out_zero_point);
  const __m128i hi = _mm_set1_epi64x(static_cast<long long>(w.act_max) - w.out_zero_point);
  pe = clamp64(pe, lo, hi);
  po = clamp64(po, lo, hi);
  __m128i y = _mm_add_epi32(_mm_blend_epi16(pe, _mm_slli_epi64(po, 32), 0xCC), _mm_set1_epi32(w.out_zero_point));
  y = _mm_and_si128(y, _mm_set1_epi32(0xFF));
  y = _mm_packus_epi16(_mm_packus_epi32(y, y), y);
  const int v = _mm_cvtsi128_si32(y);
  std::memcpy(dst, &v, 4);
}

}  // namespace

#include "engine/kernels/generic/gemm_driver.inc"

}  // namespace qforge::kernels::baseline
