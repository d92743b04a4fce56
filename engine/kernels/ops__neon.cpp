// Non-GEMM kernels for the neon ISA (aarch64): generic/ops_impl.inc compiled with this ISA's -march flags
// (meson); its x86 intrinsic paths are guarded out, the portable loops auto-vectorise for Advanced SIMD.
// conv2d and the recurrent steps call this namespace's GEMM (gemm__neon.cpp).
#include "engine/kernels/isa_kernels.hpp"

#include <arm_neon.h>

#include <cmath>
#include <cstring>
#include <type_traits>

namespace qforge::kernels::neon {
#include "engine/kernels/generic/ops_impl.inc"
}  // namespace qforge::kernels::neon
