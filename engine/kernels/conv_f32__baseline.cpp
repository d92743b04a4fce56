// Shifted-window GEMM kernels (conv_f32.hpp) for the baseline ISA: SSE4.2 (4 floats, 16 registers, no FMA).
// Tiles: forward 4 rows × 3 vectors, weight gradient 3 channels × 4 reduction indices.
#include "engine/kernels/conv_f32.hpp"

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <type_traits>

#define QFORGE_SHIFTED_ARCH xsimd::sse4_2
#define QFORGE_SHIFTED_TILES 4, 3, 3, 4
namespace qforge::kernels::baseline {
#include "engine/kernels/generic/conv_f32_impl.inc"
}  // namespace qforge::kernels::baseline
