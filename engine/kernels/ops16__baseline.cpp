// 16-bit-activation kernels for the baseline ISA: generic/ops16_impl.inc compiled with this ISA's -m flags (meson).
#include "engine/kernels/isa_kernels16.hpp"

#include <immintrin.h>

#include <cstring>

namespace qforge::kernels::baseline {
#include "engine/kernels/generic/ops16_impl.inc"
}  // namespace qforge::kernels::baseline
