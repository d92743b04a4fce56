// Shifted-window GEMM kernels (conv_f32.hpp) for the baseline ISA: SSE4.2 (4 floats).
// Tiles: forward 4 rows × 3 vectors, weight gradient 3 channels × 4 reduction indices.
#include "engine/kernels/conv_f32.hpp"

#include <xsimd/xsimd.hpp>

#include <immintrin.h>

#include <algorithm>
#include <type_traits>

namespace qforge::kernels::baseline {
#include "engine/kernels/generic/conv_f32_impl.inc"

void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n, float* y,
                      std::int64_t ldy) noexcept {
  shifted_gemm_impl::gemm<xsimd::sse4_2, 4, 3>(packed, m, k, off, src, n, y, ldy);
}

void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, int n,
                            const std::int32_t* off, int k, const float* src, std::int64_t src_sample_stride, float* gw,
                            std::int64_t ldgw) noexcept {
  shifted_gemm_impl::wgrad<xsimd::sse4_2, 3, 4>(samples, g, ldg, g_sample_stride, m, n, off, k, src, src_sample_stride, gw,
                                            ldgw);
}
}  // namespace qforge::kernels::baseline
