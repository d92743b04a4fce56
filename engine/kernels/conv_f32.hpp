// Float kernels for stride-1 convolutions: the shifted-window GEMM (Note [shifted-window GEMM]).
//
// Pure functions, single-threaded (the caller parallelises over samples), one SIMD variant per ISA in its
// own translation unit (conv_f32__<isa>.cpp, from conv_f32_impl.hpp), dispatched on active_isa() like
// the int8 kernels; Isa::ref runs the scalar reference. Results agree across ISAs to float rounding only
// (the summation order within a vector differs), unlike the int8 kernels, which are bit-exact.
//
// Note [shifted-window GEMM]
// Let src be a stack of zero-bordered planes [c, hp, wp] (flat) and compute a stride-1 convolution on the
// *padded-width grid*: output position (oy, ox) is q = oy*wp + ox, and the columns ox >= ow of each grid
// row are junk that the caller drops. Then the im2col column of reduction index k = (c, i, j) is src
// itself, shifted: B[k][q] = src[off[k] + q] with off[k] = c*hp*wp + i*dh*wp + j*dw. The convolution is
// the GEMM Y[o][q] = Σ_k W[o][k] · src[off[k] + q], and the B operand is never materialised: the micro-
// kernel loads B rows straight from the padded input at the offsets (they stay in L1/L2), where im2col
// would write and re-read kh*kw copies of the input. Computing n = (oh-1)*wp + ow grid positions reads
// exactly up to the last element of src. The input gradient of a stride-1 conv is again such a
// convolution (of the zero-bordered output gradient with the flipped, transposed weight), and the weight
// gradient is the same product with the reduction over q: gW[o][k] = Σ_q G[o][q] · src[off[k] + q].
#pragma once

#include "engine/kernels/kernels.hpp"

#include <cstddef>
#include <cstdint>

namespace qforge::kernels {

// Rows per packed weight panel.
inline constexpr int kShiftedPanelRows = 8;

// Floats needed to pack an [m, k] weight for shifted_gemm_f32.
std::size_t shifted_gemm_packed_size(int m, int k) noexcept;

// Packs w [m, k] (row stride ldw) into panels of 8 rows, k-major within a panel:
// packed[(p*k + kk)*8 + r] = w[p*8 + r][kk], rows past m zero.
void pack_shifted_gemm_f32(const float* w, std::int64_t ldw, int m, int k, float* packed) noexcept;

// y[o][q] = Σ_kk W[o][kk] · src[off[kk] + q] for o < m, q < n (y overwritten, row stride ldy), with W
// packed by pack_shifted_gemm_f32. Reads src only at off[kk] + q for q < n.
void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n, float* y,
                      std::int64_t ldy) noexcept;

// gw[o][kk] += Σ_s Σ_{q<n} g_s[o][q] · src_s[off[kk] + q] over `samples` samples, where
// g_s = g + s*g_sample_stride (row stride ldg) and src_s = src + s*src_sample_stride; gw has row stride
// ldgw. Each (o, kk) is reduced over all samples before it is added to gw.
void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, int n,
                            const std::int32_t* off, int k, const float* src, std::int64_t src_sample_stride, float* gw,
                            std::int64_t ldgw) noexcept;

// The variants, for tests and benchmarks (ISAs the CPU lacks must not be called).
struct ShiftedGemmKernels {
  void (*gemm)(const float*, int, int, const std::int32_t*, const float*, int, float*, std::int64_t) noexcept;
  void (*wgrad)(int, const float*, std::int64_t, std::int64_t, int, int, const std::int32_t*, int, const float*,
                std::int64_t, float*, std::int64_t) noexcept;
};
const ShiftedGemmKernels& shifted_gemm_kernels(Isa isa) noexcept;

}  // namespace qforge::kernels
