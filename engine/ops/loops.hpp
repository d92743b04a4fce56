// Internal: element-wise loops over (possibly strided, broadcast) tensors, used by op implementations.
// Contiguous same-shape inputs take a flat loop the compiler vectorises; anything else walks strides.
#pragma once

#include "engine/ops/ops.hpp"

#include <type_traits>

namespace qforge::ops::detail {

inline void check_float(const Tensor& t, const char* op) {
  QFORGE_CHECK(is_floating(t.dtype()), "{}: expected a floating tensor, got {} of shape {}", op,
               dtype_name(t.dtype()), shape_str(t.shape()));
}

inline void check_same_dtype(const Tensor& a, const Tensor& b, const char* op) {
  QFORGE_CHECK(a.dtype() == b.dtype(), "{}: dtype mismatch {} {} vs {} {}", op, dtype_name(a.dtype()),
               shape_str(a.shape()), dtype_name(b.dtype()), shape_str(b.shape()));
}

// Calls f.template operator()<T>() for T = float or double per the tensor's dtype.
template <class F> decltype(auto) visit_float(DType t, const char* op, F&& f) {
  if (t == DType::f32) return f.template operator()<float>();
  if (t == DType::f64) return f.template operator()<double>();
  throw Error(fmt::format("{}: expected f32 or f64, got {}", op, dtype_name(t)));
}

// Strides of `t` viewed with broadcast to `shape` (0 where broadcast).
inline Shape broadcast_strides(const Tensor& t, const Shape& shape) {
  const size_t nd = shape.size(), td = t.shape().size();
  Shape st(nd, 0);
  for (size_t i = 0; i < td; ++i) {
    const size_t o = nd - td + i;
    st[o] = t.shape()[i] == 1 ? 0 : t.strides()[i];
  }
  return st;
}

// out[i] = f(a[i]) for any layout; out is a fresh contiguous tensor (every element written).
template <class T, class F> Tensor unary_map(const Tensor& a, F f) {
  Tensor out = Tensor::uninitialized(a.shape(), a.dtype());
  T* o = out.data<T>();
  const T* base = static_cast<const T*>(a.storage()->data);
  if (a.is_contiguous()) {
    const T* p = base + a.offset();
    const int64_t n = a.numel();
    for (int64_t i = 0; i < n; ++i) o[i] = f(p[i]);
  } else {
    int64_t k = 0;
    for_each_offset(a.shape(), a.strides(), a.offset(), [&](int64_t off) { o[k++] = f(base[off]); });
  }
  return out;
}

// out = f(a, b) with broadcasting; out dtype R (defaults to T); every element written.
template <class T, class R = T, class F> Tensor binary_map(const Tensor& a, const Tensor& b, const char* op, F f) {
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  Tensor out = Tensor::uninitialized(shape, dtype_of_v<R>);
  R* o = out.data<R>();
  const T* pa = static_cast<const T*>(a.storage()->data);
  const T* pb = static_cast<const T*>(b.storage()->data);
  const int64_t n = out.numel();
  if (a.shape() == shape && b.shape() == shape && a.is_contiguous() && b.is_contiguous()) {
    pa += a.offset();
    pb += b.offset();
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], pb[i]);
    return out;
  }
  if (a.shape() == shape && a.is_contiguous() && b.numel() == 1) {
    pa += a.offset();
    const T y = pb[b.offset()];
    for (int64_t i = 0; i < n; ++i) o[i] = f(pa[i], y);
    return out;
  }
  // General case: walk the output index, advancing both input offsets.
  const Shape sa = broadcast_strides(a, shape), sb = broadcast_strides(b, shape);
  const int64_t nd = static_cast<int64_t>(shape.size());
  if (n == 0) return out;
  if (nd == 0) {
    o[0] = f(pa[a.offset()], pb[b.offset()]);
    return out;
  }
  std::vector<int64_t> idx(nd, 0);
  int64_t oa = a.offset(), ob = b.offset();
  const int64_t inner = shape[nd - 1], ia = sa[nd - 1], ib = sb[nd - 1];
  for (int64_t done = 0; done < n; done += inner) {
    for (int64_t i = 0; i < inner; ++i) o[done + i] = f(pa[oa + i * ia], pb[ob + i * ib]);
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        oa += sa[d];
        ob += sb[d];
        break;
      }
      oa -= sa[d] * (shape[d] - 1);
      ob -= sb[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
  return out;
}

}  // namespace qforge::ops::detail
