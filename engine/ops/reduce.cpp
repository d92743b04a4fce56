// Reductions over axes: sum and mean (max/min/argmax live in reduce_minmax.cpp).
//
// A reduction moves the reduced axes to the end (a permuted view), makes that contiguous, and reduces
// each row of `inner` elements, accumulating in double for f32 inputs (stable sums of large tensors).
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"
#include "engine/ops/reduce_util.hpp"

namespace qforge::ops {

namespace detail {

ReducePlan plan_reduce(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim, const char* op) {
  ReducePlan p;
  const int64_t nd = x.dim();
  std::vector<bool> red(nd, dims_in.empty());
  for (int64_t d : dims_in) {
    const int64_t n = normalize_dim(d, nd, op);
    QFORGE_CHECK(!red[n] || dims_in.empty(), "{}: dimension {} repeated", op, d);
    red[n] = true;
  }
  Shape perm;
  for (int64_t i = 0; i < nd; ++i)
    if (!red[i]) {
      perm.push_back(i);
      p.outer *= x.shape()[i];
      p.out_shape.push_back(x.shape()[i]);
      p.keep_shape.push_back(x.shape()[i]);
    } else {
      p.keep_shape.push_back(1);
    }
  for (int64_t i = 0; i < nd; ++i)
    if (red[i]) {
      perm.push_back(i);
      p.inner *= x.shape()[i];
    }
  if (keepdim) p.out_shape = p.keep_shape;
  p.perm = perm;
  return p;
}

Tensor rows_of(const Tensor& x, const ReducePlan& p) {
  Tensor t = x.detach();
  if (x.dim() > 0) t = t.permute(p.perm);
  return t.contiguous();
}

}  // namespace detail

namespace {

using detail::plan_reduce;
using detail::ReducePlan;

struct SumOp : OpBase {
  static constexpr const char* kName = "sum";
  std::vector<int64_t> dims;
  bool keepdim = false;
  bool is_mean = false;
  Shape in_shape, keep_shape;
  double scale = 1;
  Tensor forward(const Tensor& x) {
    const char* name = is_mean ? "mean" : "sum";
    detail::check_float(x, name);
    const ReducePlan p = plan_reduce(x, dims, keepdim, name);
    in_shape = x.shape();
    keep_shape = p.keep_shape;
    scale = is_mean ? 1.0 / static_cast<double>(std::max<int64_t>(p.inner, 1)) : 1.0;
    if (is_mean) QFORGE_CHECK(p.inner > 0, "mean: reduction over zero elements of shape {}", shape_str(x.shape()));
    Tensor rows = detail::rows_of(x, p);
    Tensor out = Tensor::empty(p.out_shape, x.dtype());
    detail::visit_float(x.dtype(), name, [&]<class T>() {
      const T* r = rows.data<T>();
      T* o = out.data<T>();
      for (int64_t i = 0; i < p.outer; ++i) {
        double acc = 0;
        const T* row = r + i * p.inner;
        for (int64_t j = 0; j < p.inner; ++j) acc += row[j];
        o[i] = static_cast<T>(acc * scale);
      }
    });
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Tensor gk = g.reshape(keep_shape);
    if (scale != 1) gk = mul(gk, scale);
    return {gk.expand(in_shape).contiguous()};
  }
};

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  SumOp op;
  op.dims = dims;
  op.keepdim = keepdim;
  return apply(op, x);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  SumOp op;
  op.dims = dims;
  op.keepdim = keepdim;
  op.is_mean = true;
  return apply(op, x);
}

}  // namespace qforge::ops
