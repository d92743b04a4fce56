// Internal: the row kernel shared by log_softmax (softmax.cpp) and the fused cross_entropy (loss.cpp).
#pragma once

#include <cstdint>

namespace qforge::ops::detail {

// out = log_softmax(x) along n, for contiguous x viewed as [outer, n, inner]. T = float or double.
template <class T> void log_softmax_rows(const T* x, T* out, int64_t outer, int64_t n, int64_t inner);

}  // namespace qforge::ops::detail
