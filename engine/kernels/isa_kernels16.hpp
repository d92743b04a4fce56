// Internal: the 16-bit-activation kernel set every ISA namespace defines (kernels16.hpp); registry16.cpp
// builds one Kernel16Table per compiled namespace from these declarations.
#pragma once

#include "engine/kernels/kernels16.hpp"

#define QFORGE_DECLARE_ISA_KERNELS16(ns)                                                                         \
  namespace qforge::kernels::ns {                                                                                \
  void gemm16_requant(int m, const std::int16_t* a, std::int64_t lda, const Gemm16Weights& w, std::int16_t* c,   \
                      std::int64_t ldc, int threads) noexcept;                                                   \
  void conv2d16(const Conv2d16Weights& w, const std::int16_t* x, std::int16_t* y, void* workspace,               \
                int threads) noexcept;                                                                           \
  void maxpool2d16(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y, int threads) noexcept;         \
  void avgpool2d16(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y, int threads) noexcept;         \
  void global_avgpool16(const GlobalAvgPoolParams& p, const std::int16_t* x, std::int16_t* y,                    \
                        int threads) noexcept;                                                                   \
  void add16(std::int64_t n, const std::int16_t* a, const std::int16_t* b, std::int16_t* y,                      \
             const AddParams& p) noexcept;                                                                       \
  void requant16(std::int64_t n, const std::int16_t* x, std::int16_t* y, const RequantParams& p) noexcept;       \
  void quantize16(std::int64_t n, const float* x, std::int16_t* y, float inv_scale, std::int32_t zero_point,     \
                  std::int32_t qmin, std::int32_t qmax) noexcept;                                                \
  void dequantize16(std::int64_t n, const std::int16_t* x, float* y, float scale, std::int32_t zero_point) noexcept; \
  void lstm16_step(const Rnn16Weights& w, int batch, const std::int16_t* x, std::int64_t ldx,                    \
                   const std::int16_t* h_prev, std::int64_t ldh, std::int16_t* c, std::int16_t* h_out,          \
                   std::int64_t ldo, std::int16_t* workspace, int threads) noexcept;                             \
  }

QFORGE_DECLARE_ISA_KERNELS16(ref)
QFORGE_DECLARE_ISA_KERNELS16(baseline)
QFORGE_DECLARE_ISA_KERNELS16(avx2)
QFORGE_DECLARE_ISA_KERNELS16(avx512vnni)
QFORGE_DECLARE_ISA_KERNELS16(neon)
QFORGE_DECLARE_ISA_KERNELS16(neondot)
