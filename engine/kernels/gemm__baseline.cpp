// int8 GEMM for the baseline ISA (SSE4.2): qs8_qc8w_gemm_4x4c4_{requant,s32}__baseline.
// Same scheme as gemm__avx2.cpp (Note [vpmaddubsw trap]: widen to int16 + pmaddwd, exact) on 128-bit
// registers: 16 weight bytes = 4 columns × 4 k, split into two int16 halves; tile 4 rows × 4 columns.
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

}  // namespace

#include "engine/kernels/generic/gemm_driver.inc"

}  // namespace qforge::kernels::baseline
