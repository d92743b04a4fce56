// Thread count for everything that computes: OpenMP regions and OpenBLAS.
#pragma once

namespace qforge::train {

// Sets both OpenMP's and OpenBLAS's thread counts; n <= 0 leaves them unchanged. Same seed and same
// thread count give the same bytes.
void set_num_threads(int n);
int num_threads();  // OpenMP's current maximum

}  // namespace qforge::train
