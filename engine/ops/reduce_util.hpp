// Internal: how a reduction over some axes is laid out (rows of `inner` contiguous elements).
#pragma once

#include "engine/tensor.hpp"

#include <vector>

namespace qforge::ops::detail {

struct ReducePlan {
  Shape perm;        // kept axes first, reduced axes last
  Shape out_shape;   // result shape (keepdim applied)
  Shape keep_shape;  // result shape with reduced axes kept as 1 (for broadcasting back)
  int64_t outer = 1, inner = 1;
};

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim, const char* op);
// x with the reduced axes moved last, contiguous: row i is outer element i.
Tensor rows_of(const Tensor& x, const ReducePlan& p);

}  // namespace qforge::ops::detail
