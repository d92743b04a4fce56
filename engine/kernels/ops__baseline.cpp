// Non-GEMM kernels for the baseline ISA: generic/ops_impl.inc compiled with this ISA's -m flags (meson).
#include "engine/kernels/isa_kernels.hpp"

#include <immintrin.h>

#include <cmath>
#include <cstring>

namespace qforge::kernels::baseline {
#include "engine/kernels/generic/ops_impl.inc"
}  // namespace qforge::kernels::baseline
