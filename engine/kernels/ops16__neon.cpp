// 16-bit-activation kernels for the neon ISA: generic/ops16_impl.inc (scalar-pair micro-kernel,
// compiler-vectorised) compiled with this ISA's -march flags (meson).
#include "engine/kernels/isa_kernels16.hpp"

#include <cstring>

namespace qforge::kernels::neon {
#include "engine/kernels/generic/ops16_impl.inc"
}  // namespace qforge::kernels::neon
