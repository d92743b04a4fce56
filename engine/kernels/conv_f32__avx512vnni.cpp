// Shifted-window GEMM kernels (conv_f32.hpp) for the avx512vnni ISA: AVX-512F (16 floats, 32 registers).
// Tiles: forward 8 rows × 3 vectors, weight gradient 4 channels × 6 reduction indices.
#include "engine/kernels/conv_f32.hpp"

#include <immintrin.h>
#include <xsimd/xsimd.hpp>

#include <algorithm>
#include <type_traits>

#define QFORGE_SHIFTED_ARCH xsimd::avx512f
#define QFORGE_SHIFTED_TILES 8, 3, 4, 6
namespace qforge::kernels::avx512vnni {
#include "engine/kernels/generic/conv_f32_impl.inc"
}  // namespace qforge::kernels::avx512vnni
