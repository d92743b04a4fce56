// Internal: declares the kernel set every ISA namespace defines (ref; x86-64: baseline, avx2, avx512vnni;
// aarch64: neon, neondot). The registry (registry.cpp) builds one KernelTable per namespace compiled for the
// host architecture from these declarations (declaring a foreign one is harmless: it is never referenced).
#pragma once

#include "engine/kernels/kernels.hpp"

#define QFORGE_DECLARE_ISA_KERNELS(ns)                                                                            \
  namespace qforge::kernels::ns {                                                                                 \
  void gemm_requant(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c, std::int64_t ldc,      \
                    int threads) noexcept;                                                                        \
  void gemm_s32(int m, const void* a, std::int64_t lda, const GemmWeights& w, std::int32_t* c, std::int64_t ldc,  \
                int threads) noexcept;                                                                            \
  void conv2d(const Conv2dWeights& w, const void* x, void* y, void* workspace, int threads) noexcept;            \
  void dwconv3x3(const DwConv3x3Params& p, const void* x, void* y, int threads) noexcept;                        \
  void maxpool2d(const Pool2dParams& p, const void* x, void* y, int threads) noexcept;                           \
  void avgpool2d(const Pool2dParams& p, const void* x, void* y, int threads) noexcept;                           \
  void add(std::int64_t n, const void* a, const void* b, void* y, const AddParams& p, ActType type) noexcept;    \
  void quantize(std::int64_t n, const float* x, void* y, float inv_scale, std::int32_t zero_point,              \
                ActType type) noexcept;                                                                           \
  void dequantize(std::int64_t n, const void* x, float* y, float scale, std::int32_t zero_point,                \
                  ActType type) noexcept;                                                                         \
  void lstm_step(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev,            \
                 std::int64_t ldh, std::int16_t* c, void* h_out, std::int64_t ldo, std::int32_t* workspace,       \
                 int threads) noexcept;                                                                           \
  void gru_step(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev,             \
                std::int64_t ldh, void* h_out, std::int64_t ldo, std::int32_t* workspace, int threads) noexcept;  \
  void requant(std::int64_t n, const void* x, void* y, const RequantParams& p) noexcept;                         \
  void global_avgpool(const GlobalAvgPoolParams& p, const void* x, void* y, int threads) noexcept;              \
  void quantize_linear(std::int64_t n, const float* x, void* y, float scale, std::int32_t zero_point,            \
                       ActType type) noexcept;                                                                    \
  }

QFORGE_DECLARE_ISA_KERNELS(ref)
QFORGE_DECLARE_ISA_KERNELS(baseline)
QFORGE_DECLARE_ISA_KERNELS(avx2)
QFORGE_DECLARE_ISA_KERNELS(avx512vnni)
QFORGE_DECLARE_ISA_KERNELS(neon)
QFORGE_DECLARE_ISA_KERNELS(neondot)
