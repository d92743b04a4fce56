// int8 GEMM for aarch64 (armv8-a Advanced SIMD, widening multiplies: qs8_qc8w_gemm_4x8c4_{requant,s32}__neon).
// The kernel is generic/gemm_neon_impl.inc (Note [NEON operand signs]) compiled with this ISA's -march.
#include "engine/kernels/isa_kernels.hpp"

#include <arm_neon.h>

#include <cstring>

namespace qforge::kernels::neon {
#include "engine/kernels/generic/gemm_neon_impl.inc"
}  // namespace qforge::kernels::neon
