// Shifted-window GEMM kernels (conv_f32.hpp) for aarch64: Advanced SIMD (4 floats, 32 registers). Used by
// both the neon and the neondot ISA (the dot-product extension has no float part). Without -ffp-contract
// the xsimd `a * b + c` stays an unfused multiply and add (conv_f32_impl.inc fmadd).
// Tiles: forward 8 rows × 2 vectors, weight gradient 4 channels × 4 reduction indices.
#include "engine/kernels/conv_f32.hpp"

#include <arm_neon.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <type_traits>

#define QFORGE_SHIFTED_ARCH xsimd::neon64
#define QFORGE_SHIFTED_TILES 8, 2, 4, 4
namespace qforge::kernels::neon {
#include "engine/kernels/generic/conv_f32_impl.inc"
}  // namespace qforge::kernels::neon
