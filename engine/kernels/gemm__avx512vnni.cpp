// int8 GEMM for AVX-512 VNNI: qs8_qc8w_gemm_6x64c4_{requant,s32}__avx512vnni.
//
// Micro-kernel (integer-arithmetic.md §11): up to 6 rows × 64 columns of int32 accumulators (24 zmm), one
// k-quad per step: 4 zmm loads of packed weights, 6 vpbroadcastd of 4 activation bytes, 24 vpdpbusd, and
// nothing else on the two vector ALU ports. vpdpbusd sums u8×s8 products without any intermediate
// saturation, so both weight grids and all activation values are exact. s8 activations are the signed
// operand against weights stored as w + 128 (Note [s8 activations on VNNI] in kernels.hpp): the tile
// subtracts 128·Σ_k x per row, computed with vpdpbusd against a vector of ones once per row chunk. The
// accumulators start at folded bias + row correction. Rows 1–2 use two accumulator sets (even/odd quads)
// to hide the dot-product latency in GEMV. The epilogue requantizes straight from the registers: vpmuldq
// (even/odd lanes) → +2^(t−1) → vpsravq by t = 31 − shift → clamp to [act_min − z, act_max − z] (in 32
// bits after merging the lanes when every shift ≤ 0, else in 64 bits) → + z → vpmovdb (requant.hpp Note
// [single rounding] and Note [zero point and clamp]). Double rounding falls back to the scalar
// requant.hpp path per element.
//
// Note [VNNI tile overhead]: the k-loop runs at ~95% of the vpdpbusd peak even with the weight panel
// streaming from L2 (measured at 96x64x4096), so what separates a GEMM from the peak is the fixed cost
// of each 6x64 tile (set-up, loop entry, epilogue; estimated from 96x64xK runs at roughly 70–130 cycles
// for s32 and ~200 with requantization, against ~3,100 cycles of vpdpbusd for K = 1024) plus cache
// effects of the large shapes. K blocking (partial sums kept in a scratch tile across K blocks of
// 256–512 bytes) was measured and made 1024³ slower (~80% vs ~85% of peak with KC = 256, neutral with
// KC = 512): it pays that fixed cost once per K block and gains nothing on an L2-resident panel. The
// tile therefore keeps all of K in registers and the epilogue never goes through memory. Also measured
// and rejected: vpdpbusd with an embedded {1to16} activation broadcast (~60% of peak: GCC's addressing
// for the "m" operand), weight prefetch 8–16 quads ahead and next-row-block activation prefetch (no
// gain), and splitting N into L2-sized panel groups (no measurable gain at 1024³).
//
// Parallelism: OpenMP over (panel, row-chunk) work items; N panels when there are enough of them, else M.
#include "engine/kernels/isa_kernels.hpp"

#include <immintrin.h>

#include <algorithm>
#include <cstring>

namespace qforge::kernels::avx512vnni {
namespace {

enum class Out { requant, s32 };

#ifndef QFORGE_VNNI_PREFETCH
#define QFORGE_VNNI_PREFETCH 0
#endif
constexpr int kPrefetchQuads = QFORGE_VNNI_PREFETCH;  // weight prefetch distance (k-quads ahead)

[[gnu::always_inline]] inline __m512i load_quad(const std::uint8_t* p) noexcept {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// The last, partial k-quad (n < 4 bytes; the rest reads as 0 and meets zero padding in the weights).
[[gnu::always_inline]] inline __m512i load_quad_partial(const std::uint8_t* p, int n) noexcept {
  return _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1), p));
}

struct TileArgs {
  const std::uint8_t* a;
  std::int64_t lda;
  const std::int8_t* panel;  // start of the panel
  int quad_stride;           // bytes per k-quad row of the panel (w_p·4)
  int full_quads, k_rem;
  const GemmWeights* w;
  int col0;                  // first column of this tile
  void* c;
  std::int64_t ldc;
  const std::int32_t* row_corr;  // [MR] −128·Σ_k x per row (s8 activations)
};

// −128·Σ_k x for `rows` rows of s8 activations (Note [s8 activations on VNNI]), via vpdpbusd with ones.
void row_corrections(const std::uint8_t* a, std::int64_t lda, int rows, int k, std::int32_t* out) noexcept {
  const __m512i ones = _mm512_set1_epi8(1);
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* row = a + r * lda;
    __m512i sum = _mm512_setzero_si512();
    int kk = 0;
    for (; kk + 64 <= k; kk += 64) sum = _mm512_dpbusd_epi32(sum, ones, _mm512_loadu_si512(row + kk));
    if (kk < k) {
      const __mmask64 m = (~0ull) >> (64 - (k - kk));
      sum = _mm512_dpbusd_epi32(sum, ones, _mm512_maskz_loadu_epi8(m, row + kk));
    }
    out[r] = -128 * _mm512_reduce_add_epi32(sum);
  }
}

// acc += u8 operand · s8 operand (4-byte groups). Inline asm with a tied "+v" accumulator: GCC 12 treats
// the vpdpbusd builtin as non-destructive and shuffled/spilled the 24 accumulators on every update.
template <bool S8>
[[gnu::always_inline]] inline void dot(__m512i& acc, __m512i act, __m512i w) noexcept {
  if constexpr (S8)
    __asm__("vpdpbusd %[a], %[w], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [a] "v"(act));  // w (u8) · act (s8)
  else
    __asm__("vpdpbusd %[w], %[a], %[acc]" : [acc] "+v"(acc) : [w] "v"(w), [a] "v"(act));  // act (u8) · w (s8)
}

[[gnu::always_inline]] inline void prefetch_write(const void* p) noexcept {
  __asm__ volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
}

// Store mask of the 16 columns starting at `col` (0 when all are past n).
[[gnu::always_inline]] inline __mmask16 col_mask(int n, int col) noexcept {
  const int valid = n - col;
  return static_cast<__mmask16>(_bzhi_u32(0xFFFFu, static_cast<unsigned>(valid < 0 ? 0 : (valid > 16 ? 16 : valid))));
}

// Single-rounding requantization of 16 int32 accumulators as two 64-bit halves (even and odd lanes):
// (acc * multiplier + 2^(t-1)) >> t with t = 31 - shift (requant.hpp Note [single rounding]).
[[gnu::always_inline]] inline void scale_round(__m512i acc, __m512i mult, __m512i mult_o, __m512i rnd_e, __m512i rnd_o,
                                               __m512i tot_e, __m512i tot_o, __m512i& pe, __m512i& po) noexcept {
  pe = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(acc, mult), rnd_e), tot_e);
  po = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(acc, 32), mult_o), rnd_o), tot_o);
}

template <int MR, int NB, bool S8, Out O>
void tile(const TileArgs& t) noexcept {
  // Note: plain loops over local arrays with compile-time bounds (no lambdas, no references to them, no
  // run-time indices) so that GCC keeps all 24 accumulators in registers from the first vpdpbusd to the
  // last store; a reference to the accumulator array made it spill every update.
  const GemmWeights& w = *t.w;
  // Accumulators start at the folded bias plus the s8 row correction (−128·Σ_k x, zero for u8), so the
  // epilogue is only the requantization. Sums are mod 2^32 in any order (Note [acc wrap]).
  __m512i acc[MR][NB];
  {
    __m512i bias[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) bias[j] = _mm512_loadu_si512(w.bias_eff + t.col0 + 16 * j);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j)
        acc[r][j] = S8 ? _mm512_add_epi32(bias[j], _mm512_set1_epi32(t.row_corr[r])) : bias[j];
    }
  }
  // Prefetch the output tile for writing (PREFETCHW: every AVX-512 CPU has it); the k-loop hides the
  // read-for-ownership of lines that are not in cache (s32 outputs of large GEMMs: ~+1%). Not in the
  // memory-bound GEMV tiles, where it measured ~1% slower.
  if constexpr (MR > 2) {
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      if constexpr (O == Out::s32) {
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) prefetch_write(static_cast<std::int32_t*>(t.c) + r * t.ldc + t.col0 + 16 * j);
      } else {
        prefetch_write(static_cast<std::uint8_t*>(t.c) + r * t.ldc + t.col0);
      }
    }
  }
  const std::uint8_t* arow[MR];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r) arow[r] = t.a + r * t.lda;
  const std::int8_t* wq = t.panel;
  const int stride = t.quad_stride;
  int q = 0;
  if constexpr (MR <= 2) {
    // GEMV-like tiles: a second accumulator set for odd quads hides the vpdpbusd latency.
    __m512i acc2[MR][NB];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc2[r][j] = _mm512_setzero_si512();
    for (; q + 1 < t.full_quads; q += 2) {
      __m512i b0[NB], b1[NB];
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) {
        b0[j] = _mm512_loadu_si512(wq + 64 * j);
        b1[j] = _mm512_loadu_si512(wq + stride + 64 * j);
      }
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        const __m512i a0 = load_quad(arow[r] + 4 * q), a1 = load_quad(arow[r] + 4 * q + 4);
#pragma GCC unroll 4
        for (int j = 0; j < NB; ++j) {
          dot<S8>(acc[r][j], a0, b0[j]);
          dot<S8>(acc2[r][j], a1, b1[j]);
        }
      }
      wq += 2 * stride;
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) acc[r][j] = _mm512_add_epi32(acc[r][j], acc2[r][j]);
  }
#pragma GCC unroll 2
  for (; q < t.full_quads; ++q) {
    __m512i b[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      if constexpr (kPrefetchQuads > 0)
        _mm_prefetch(reinterpret_cast<const char*>(wq + kPrefetchQuads * stride + 64 * j), _MM_HINT_T0);
      b[j] = _mm512_loadu_si512(wq + 64 * j);
    }
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i av = load_quad(arow[r] + 4 * q);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) dot<S8>(acc[r][j], av, b[j]);
    }
    wq += stride;
  }
  if (t.k_rem) {
    __m512i b[NB];
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) b[j] = _mm512_loadu_si512(wq + 64 * j);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const __m512i av = load_quad_partial(arow[r] + 4 * q, t.k_rem);
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) dot<S8>(acc[r][j], av, b[j]);
    }
  }

  // Epilogue, straight from the registers (columns past n are masked out of the stores; bias_eff,
  // multiplier and shift are padded to n_pad, so every load is in bounds).
  if constexpr (O == Out::s32) {
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const __mmask16 mask = col_mask(w.n, t.col0 + 16 * j);
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r)
        _mm512_mask_storeu_epi32(static_cast<std::int32_t*>(t.c) + r * t.ldc + t.col0 + 16 * j, mask, acc[r][j]);
    }
  } else if (w.rounding == Rounding::single) {
    // Note [single rounding] per lane: vpmuldq on even/odd lanes, + 2^(t−1), arithmetic shift by
    // t = 31 − shift. When every shift of the 16 columns is ≤ 0 (t ≥ 31, multipliers < 1: the usual
    // case) the shifted values fit in int32 (|acc·q| < 2^62), so the lanes are merged first and clamped
    // in 32 bits; otherwise they are clamped in 64 bits (Note [zero point and clamp]).
    const __m512i low32 = _mm512_set1_epi64(0xFFFFFFFFll);
    const __m512i one = _mm512_set1_epi64(1);
    const __m512i zp = _mm512_set1_epi32(w.out_zero_point);
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const int col = t.col0 + 16 * j;
      const __mmask16 mask = col_mask(w.n, col);
      const __m512i mult = _mm512_loadu_si512(w.multiplier + col);
      const __m512i shift = _mm512_loadu_si512(w.shift + col);
      const __m512i total = _mm512_sub_epi32(_mm512_set1_epi32(31), shift);
      const __m512i tot_e = _mm512_and_si512(total, low32), tot_o = _mm512_srli_epi64(total, 32);
      const __m512i rnd_e = _mm512_sllv_epi64(one, _mm512_sub_epi64(tot_e, one));
      const __m512i rnd_o = _mm512_sllv_epi64(one, _mm512_sub_epi64(tot_o, one));
      const __m512i mult_o = _mm512_srli_epi64(mult, 32);
      const bool narrow = _mm512_cmpgt_epi32_mask(shift, _mm512_setzero_si512()) == 0;
      if (narrow) {
        const __m512i lo = _mm512_set1_epi32(w.act_min - w.out_zero_point);
        const __m512i hi = _mm512_set1_epi32(w.act_max - w.out_zero_point);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          __m512i pe, po;
          scale_round(acc[r][j], mult, mult_o, rnd_e, rnd_o, tot_e, tot_o, pe, po);
          // odd lanes: the low half of each 64-bit po lane, moved up by vpshufd
          __m512i y = _mm512_mask_shuffle_epi32(pe, 0xAAAA, po, _MM_PERM_CDAB);
          y = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(y, lo), hi), zp);
          _mm_mask_storeu_epi8(static_cast<std::uint8_t*>(t.c) + r * t.ldc + col, mask, _mm512_cvtepi32_epi8(y));
        }
      } else {
        const __m512i lo = _mm512_set1_epi64(static_cast<long long>(w.act_min) - w.out_zero_point);
        const __m512i hi = _mm512_set1_epi64(static_cast<long long>(w.act_max) - w.out_zero_point);
#pragma GCC unroll 8
        for (int r = 0; r < MR; ++r) {
          __m512i pe, po;
          scale_round(acc[r][j], mult, mult_o, rnd_e, rnd_o, tot_e, tot_o, pe, po);
          pe = _mm512_min_epi64(_mm512_max_epi64(pe, lo), hi);
          po = _mm512_min_epi64(_mm512_max_epi64(po, lo), hi);
          __m512i y = _mm512_mask_shuffle_epi32(pe, 0xAAAA, po, _MM_PERM_CDAB);
          y = _mm512_add_epi32(y, zp);
          _mm_mask_storeu_epi8(static_cast<std::uint8_t*>(t.c) + r * t.ldc + col, mask, _mm512_cvtepi32_epi8(y));
        }
      }
    }
  } else if (w.rounding == Rounding::float_rne) {
    // Note [float requantization] (requant.hpp) in registers: vcvtdq2ps, vmulps by the float32 scale held
    // in the multiplier's bits, clamp in float to [act_min − z, act_max − z] (integers, so clamping before
    // the rounding equals clamping after it), vcvtps2dq (ties to even under the default MXCSR), + z.
    const __m512i zp = _mm512_set1_epi32(w.out_zero_point);
    const __m512 lo = _mm512_set1_ps(static_cast<float>(w.act_min - w.out_zero_point));
    const __m512 hi = _mm512_set1_ps(static_cast<float>(w.act_max - w.out_zero_point));
#pragma GCC unroll 4
    for (int j = 0; j < NB; ++j) {
      const int col = t.col0 + 16 * j;
      const __mmask16 mask = col_mask(w.n, col);
      const __m512 scale = _mm512_castsi512_ps(_mm512_loadu_si512(w.multiplier + col));
#pragma GCC unroll 8
      for (int r = 0; r < MR; ++r) {
        __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][j]), scale);
        f = _mm512_min_ps(_mm512_max_ps(f, lo), hi);
        const __m512i y = _mm512_add_epi32(_mm512_cvtps_epi32(f), zp);
        _mm_mask_storeu_epi8(static_cast<std::uint8_t*>(t.c) + r * t.ldc + col, mask, _mm512_cvtepi32_epi8(y));
      }
    }
  } else {
    // Double rounding (gemmlowp): the scalar requant.hpp path per element.
    alignas(64) std::int32_t res[MR][NB * 16];
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
      for (int j = 0; j < NB; ++j) _mm512_store_si512(&res[r][16 * j], acc[r][j]);
    for (int r = 0; r < MR; ++r) {
      auto* dst = static_cast<std::uint8_t*>(t.c) + r * t.ldc;
      for (int i = 0; i < NB * 16 && t.col0 + i < w.n; ++i) {
        const int col = t.col0 + i;
        dst[col] = static_cast<std::uint8_t>(requantize_output(res[r][i], {w.multiplier[col], w.shift[col]},
                                                               w.out_zero_point, w.act_min, w.act_max, w.rounding));
      }
    }
  }
}

using TileFn = void (*)(const TileArgs&) noexcept;

template <bool S8, Out O, int MR>
constexpr TileFn pick_nb(int nb) {
  switch (nb) {
    case 1: return tile<MR, 1, S8, O>;
    case 2: return tile<MR, 2, S8, O>;
    case 3: return tile<MR, 3, S8, O>;
    default: return tile<MR, 4, S8, O>;
  }
}

template <bool S8, Out O>
TileFn pick(int mr, int nb) {
  switch (mr) {
    case 1: return pick_nb<S8, O, 1>(nb);
    case 2: return pick_nb<S8, O, 2>(nb);
    case 3: return pick_nb<S8, O, 3>(nb);
    case 4: return pick_nb<S8, O, 4>(nb);
    case 5: return pick_nb<S8, O, 5>(nb);
    default: return pick_nb<S8, O, 6>(nb);
  }
}

constexpr int kMr = 6;
constexpr int kMaxChunk = 64;  // row blocks per activation chunk (bounds the row-correction buffer)
constexpr int kMinChunk = 16;  // row blocks each weight panel is reused for once it is in L2 (large K)

// Note [VNNI GEMM blocking]: rows are processed in chunks of ~96 KiB of activations, but at least 16 row
// blocks (96 rows); for each chunk every panel of the thread's share of N is swept, so the weights (the
// whole packed B for N·K ≤ ~1 MiB) stay in L2 and each chunk of A is read from memory once. For large K
// (a 96-row chunk is then > 96 KiB, e.g. K = 4608: 442 KiB, still in L2) the 16-block minimum makes each
// weight panel fetched from L3 serve 16 tiles instead of 3 (512x512x4608: ~68% → ~84% of peak). Two
// threads split N (each core streams its half of the weights from its own L2), or M when there are too
// few panels.
template <bool S8, Out O>
void run(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c, std::int64_t ldc, int threads,
         std::size_t out_elem) noexcept {
  if (m <= 0 || w.n <= 0) return;
  const int panels = (w.n_pad + kPanelWidth - 1) / kPanelWidth;
  const int row_blocks = (m + kMr - 1) / kMr;
  const int chunk = std::clamp(98304 / (kMr * std::max(w.k, 1)), kMinChunk, kMaxChunk);  // row blocks per A chunk
  // Below ~2^21 multiply-adds (a few µs) an OpenMP fork/join costs more than it saves: stay serial.
  if (static_cast<std::int64_t>(m) * w.n * w.k < (std::int64_t{1} << 21)) threads = 1;
  const bool split_n = panels >= 2 * threads || row_blocks < threads;

  auto work = [&](int p0, int p1, int rb_begin, int rb_end) {
    TileArgs t;
    t.lda = lda;
    t.full_quads = w.k / 4;
    t.k_rem = w.k % 4;
    t.w = &w;
    t.ldc = ldc;
    std::int32_t corr[kMaxChunk * kMr];
    for (int rbc = rb_begin; rbc < rb_end; rbc += chunk) {
      const int rbc_end = std::min(rb_end, rbc + chunk);
      if constexpr (S8) {
        const int r0 = rbc * kMr, r1 = std::min(m, rbc_end * kMr);
        row_corrections(static_cast<const std::uint8_t*>(a) + r0 * lda, lda, r1 - r0, w.k, corr);
      }
      for (int p = p0; p < p1; ++p) {
        const int col0 = p * kPanelWidth;
        const int wp = w.n_pad - col0 < kPanelWidth ? w.n_pad - col0 : kPanelWidth;
        t.panel = w.panels + static_cast<std::int64_t>(col0) * w.k4;
        t.quad_stride = wp * 4;
        t.col0 = col0;
        const TileFn full = pick<S8, O>(kMr, wp / 16);
        for (int rb = rbc; rb < rbc_end; ++rb) {
          const int m0 = rb * kMr, mr = m - m0 < kMr ? m - m0 : kMr;
          t.a = static_cast<const std::uint8_t*>(a) + m0 * lda;
          t.c = static_cast<char*>(c) + m0 * ldc * static_cast<std::int64_t>(out_elem);
          t.row_corr = corr + (rb - rbc) * kMr;
          (mr == kMr ? full : pick<S8, O>(mr, wp / 16))(t);
        }
      }
    }
  };
  if (threads > 1) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int i = 0; i < threads; ++i) {
      if (split_n)
        work(panels * i / threads, panels * (i + 1) / threads, 0, row_blocks);
      else
        work(0, panels, row_blocks * i / threads, row_blocks * (i + 1) / threads);
    }
  } else {
    work(0, panels, 0, row_blocks);
  }
}

}  // namespace

void gemm_requant(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c, std::int64_t ldc,
                  int threads) noexcept {
  if (w.in_type == ActType::s8)
    run<true, Out::requant>(m, a, lda, w, c, ldc, threads, 1);
  else
    run<false, Out::requant>(m, a, lda, w, c, ldc, threads, 1);
}

void gemm_s32(int m, const void* a, std::int64_t lda, const GemmWeights& w, std::int32_t* c, std::int64_t ldc,
              int threads) noexcept {
  if (w.in_type == ActType::s8)
    run<true, Out::s32>(m, a, lda, w, c, ldc, threads, 4);
  else
    run<false, Out::s32>(m, a, lda, w, c, ldc, threads, 4);
}

}  // namespace qforge::kernels::avx512vnni
