// int8 GEMM for AVX2: qs8_qc8w_gemm_4x8c4_{requant,s32}__avx2.
//
// Note [vpmaddubsw trap]: the obvious AVX2 int8 dot product, vpmaddubsw (u8×s8 pairs → saturated int16),
// is wrong for full-range operands (255·127·2 > 32767), so this kernel widens both operands to int16 and
// uses vpmaddwd (exact: pair sums ≤ 2·255·128). It reads the same packed [k/4][w][4] layout as the VNNI
// kernel: 16 weight bytes (4 columns × 4 k, XOR 0x80 undone for s8 activations) widen to 16 int16, the 4
// activation bytes of a k-quad are sign- or zero-extended and broadcast as 4 int16, and vpmaddwd yields per column two
// partial sums (k0+k1, k2+k3) that a final vphaddd folds. Tile: 4 rows × 8 columns (8 accumulators).
#include "engine/kernels/isa_kernels.hpp"

#include <immintrin.h>

#include <cstring>

namespace qforge::kernels::avx2 {
namespace {

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

}  // namespace

#include "engine/kernels/generic/gemm_driver.inc"

}  // namespace qforge::kernels::avx2
