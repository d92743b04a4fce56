// Thread count for everything that computes: qforge's OpenMP regions (OpenBLAS always runs single-
// threaded inside them, Note [BLAS threads inside OpenMP] in engine/ops/blas.hpp).
#pragma once

namespace qforge::train {

// Sets OpenMP's thread count; n <= 0 leaves it unchanged. Same seed and same thread count give the same
// bytes.
void set_num_threads(int n);
int num_threads();  // OpenMP's current maximum

}  // namespace qforge::train
