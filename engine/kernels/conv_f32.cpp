// Shifted-window GEMM (conv_f32.hpp): weight packing, the scalar reference (Isa::ref) and the dispatch
// to the per-ISA variants on active_isa(). Compiled for the architecture's baseline target only. On
// aarch64 the neon and neondot ISAs share one float variant (dot product is an integer extension).
#include "engine/kernels/conv_f32.hpp"

#include <algorithm>

#define QFORGE_DECLARE_SHIFTED_GEMM(ns)                                                                           \
  namespace qforge::kernels::ns {                                                                                 \
  void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n,     \
                        float* y, std::int64_t ldy) noexcept;                                                     \
  void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, \
                              int n, const std::int32_t* off, int k, const float* src,                            \
                              std::int64_t src_sample_stride, float* gw, std::int64_t ldgw) noexcept;             \
  }
QFORGE_DECLARE_SHIFTED_GEMM(baseline)
QFORGE_DECLARE_SHIFTED_GEMM(avx2)
QFORGE_DECLARE_SHIFTED_GEMM(avx512vnni)
QFORGE_DECLARE_SHIFTED_GEMM(neon)
#undef QFORGE_DECLARE_SHIFTED_GEMM

namespace qforge::kernels {

namespace ref {

void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n, float* y,
                      std::int64_t ldy) noexcept {
  for (int o = 0; o < m; ++o) {
    const float* w = packed + static_cast<std::int64_t>(o / kShiftedPanelRows) * k * kShiftedPanelRows +
                     o % kShiftedPanelRows;
    for (int q = 0; q < n; ++q) {
      float acc = 0.0f;
      for (int kk = 0; kk < k; ++kk) acc += w[kk * kShiftedPanelRows] * src[off[kk] + q];
      y[o * ldy + q] = acc;
    }
  }
}

void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, int n,
                            const std::int32_t* off, int k, const float* src, std::int64_t src_sample_stride, float* gw,
                            std::int64_t ldgw) noexcept {
  for (int o = 0; o < m; ++o)
    for (int kk = 0; kk < k; ++kk) {
      float acc = 0.0f;
      for (int s = 0; s < samples; ++s) {
        const float* gs = g + s * g_sample_stride + o * ldg;
        const float* ss = src + s * src_sample_stride + off[kk];
        for (int q = 0; q < n; ++q) acc += gs[q] * ss[q];
      }
      gw[o * ldgw + kk] += acc;
    }
}

}  // namespace ref

std::size_t shifted_gemm_packed_size(int m, int k) noexcept {
  const std::size_t panels = static_cast<std::size_t>((m + kShiftedPanelRows - 1) / kShiftedPanelRows);
  return panels * static_cast<std::size_t>(k) * kShiftedPanelRows;
}

void pack_shifted_gemm_f32(const float* w, std::int64_t ldw, int m, int k, float* packed) noexcept {
  const int panels = (m + kShiftedPanelRows - 1) / kShiftedPanelRows;
  for (int p = 0; p < panels; ++p)
    for (int kk = 0; kk < k; ++kk)
      for (int r = 0; r < kShiftedPanelRows; ++r) {
        const int o = p * kShiftedPanelRows + r;
        packed[(static_cast<std::int64_t>(p) * k + kk) * kShiftedPanelRows + r] = o < m ? w[o * ldw + kk] : 0.0f;
      }
}

const ShiftedGemmKernels& shifted_gemm_kernels(Isa isa) noexcept {
  // Indexed by Isa; a foreign architecture's ISAs have null entries (never supported, never dispatched).
  static const ShiftedGemmKernels kTables[kNumIsas] = {
      {ref::shifted_gemm_f32, ref::shifted_gemm_wgrad_f32},
#if defined(__x86_64__)
      {baseline::shifted_gemm_f32, baseline::shifted_gemm_wgrad_f32},
      {avx2::shifted_gemm_f32, avx2::shifted_gemm_wgrad_f32},
      {avx512vnni::shifted_gemm_f32, avx512vnni::shifted_gemm_wgrad_f32},
      {nullptr, nullptr},
      {nullptr, nullptr},
#elif defined(__aarch64__)
      {nullptr, nullptr},
      {nullptr, nullptr},
      {nullptr, nullptr},
      {neon::shifted_gemm_f32, neon::shifted_gemm_wgrad_f32},
      {neon::shifted_gemm_f32, neon::shifted_gemm_wgrad_f32},
#endif
  };
  static_assert(kNumIsas == 6, "one entry per Isa");
  return kTables[static_cast<int>(isa)];
}

void shifted_gemm_f32(const float* packed, int m, int k, const std::int32_t* off, const float* src, int n, float* y,
                      std::int64_t ldy) noexcept {
  shifted_gemm_kernels(active_isa()).gemm(packed, m, k, off, src, n, y, ldy);
}

void shifted_gemm_wgrad_f32(int samples, const float* g, std::int64_t ldg, std::int64_t g_sample_stride, int m, int n,
                            const std::int32_t* off, int k, const float* src, std::int64_t src_sample_stride, float* gw,
                            std::int64_t ldgw) noexcept {
  shifted_gemm_kernels(active_isa()).wgrad(samples, g, ldg, g_sample_stride, m, n, off, k, src, src_sample_stride, gw,
                                           ldgw);
}

}  // namespace qforge::kernels
