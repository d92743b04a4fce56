// Shifted-window GEMM kernels (conv_f32.hpp) for the avx2 ISA: AVX2+FMA (8 floats, 16 registers).
// Tiles: forward 4 rows × 3 vectors, weight gradient 3 channels × 4 reduction indices.
#include "engine/kernels/conv_f32.hpp"

#include <xsimd/xsimd.hpp>

#include <immintrin.h>

#include <algorithm>
#include <type_traits>

namespace qforge::kernels::avx2 {
#include "engine/kernels/generic/conv_f32_impl.inc"

void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n, float* y,
                      std::int64_t ldy) noexcept {
  shifted_gemm_impl::gemm<xsimd::fma3<xsimd::avx2>, 4, 3>(packed, m, k, off, src, n, y, ldy);
}

void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, int n,
                            const std::int32_t* off, int k, const float* src, std::int64_t src_sample_stride, float* gw,
                            std::int64_t ldgw) noexcept {
  shifted_gemm_impl::wgrad<xsimd::fma3<xsimd::avx2>, 3, 4>(samples, g, ldg, g_sample_stride, m, n, off, k, src, src_sample_stride, gw,
                                            ldgw);
}
}  // namespace qforge::kernels::avx2
