// Thread count for everything that computes: qforge's OpenMP regions (OpenBLAS always runs single-
// threaded inside them, Note [BLAS threads inside OpenMP] in engine/ops/blas.hpp).
#pragma once

namespace qforge::train {

// The largest thread count accepted (each OpenMP thread costs a stack; absurd counts used to crash).
inline constexpr int kMaxThreads = 1024;

// Sets OpenMP's thread count; n <= 0 leaves it unchanged; n > kMaxThreads throws InputError. Same seed and same thread count give the same
// bytes.
void set_num_threads(int n);
int num_threads();  // OpenMP's current maximum

}  // namespace qforge::train
