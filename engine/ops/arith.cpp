// Broadcasting binary arithmetic: add, sub, mul, div, maximum, minimum, pow, where (+ scalar forms).
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cmath>

namespace qforge::ops {

using detail::binary_map;
using detail::check_same_dtype;
using detail::visit_float;

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t nd = std::max(a.size(), b.size());
  Shape out(nd);
  for (size_t i = 0; i < nd; ++i) {
    const int64_t da = i < nd - a.size() ? 1 : a[i - (nd - a.size())];
    const int64_t db = i < nd - b.size() ? 1 : b[i - (nd - b.size())];
    QFORGE_CHECK(da == db || da == 1 || db == 1, "{}: shapes {} and {} cannot be broadcast", op,
                 shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - static_cast<int64_t>(shape.size());
  QFORGE_CHECK(lead >= 0, "sum_to: cannot reduce {} to {}", shape_str(g.shape()), shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < lead; ++i) dims.push_back(i);
  for (size_t i = 0; i < shape.size(); ++i)
    if (shape[i] == 1 && g.shape()[lead + i] != 1) dims.push_back(lead + static_cast<int64_t>(i));
  NoGradGuard guard;
  Tensor r = sum(g, dims, true);
  return r.reshape(shape);
}

int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op) {
  const int64_t d = dim < 0 ? dim + ndim : dim;
  QFORGE_CHECK(d >= 0 && d < std::max<int64_t>(ndim, 1), "{}: dimension {} out of range for {} dims", op, dim,
               ndim);
  return d;
}

namespace {

struct AddOp : OpBase {
  static constexpr const char* kName = "add";
  Shape sa, sb;
  double alpha = 1;  // out = a + alpha * b (sub uses alpha = -1)
  Tensor forward(const Tensor& a, const Tensor& b) {
    check_same_dtype(a, b, alpha > 0 ? "add" : "sub");
    sa = a.shape();
    sb = b.shape();
    return visit_float(a.dtype(), kName, [&]<class T>() {
      const T al = static_cast<T>(alpha);
      return binary_map<T>(a, b, kName, [al](T x, T y) { return x + al * y; });
    });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Tensor gb;
    if (needs_grad(1)) gb = sum_to(alpha == 1 ? g : mul(g, alpha), sb);
    return {needs_grad(0) ? sum_to(g, sa) : Tensor(), gb};
  }
};

struct MulOp : OpBase {
  static constexpr const char* kName = "mul";
  SavedTensor a, b;
  Shape sa, sb;
  Tensor forward(const Tensor& x, const Tensor& y) {
    check_same_dtype(x, y, kName);
    sa = x.shape();
    sb = y.shape();
    if (recording) {
      if (needs_grad(1)) a = x;
      if (needs_grad(0)) b = y;
    }
    return visit_float(x.dtype(), kName,
                       [&]<class T>() { return binary_map<T>(x, y, kName, [](T p, T q) { return p * q; }); });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Tensor ga, gb;
    if (needs_grad(0)) ga = sum_to(mul(g, b.get(kName)), sa);
    if (needs_grad(1)) gb = sum_to(mul(g, a.get(kName)), sb);
    return {ga, gb};
  }
};

struct DivOp : OpBase {
  static constexpr const char* kName = "div";
  SavedTensor a, b;
  Shape sa, sb;
  Tensor forward(const Tensor& x, const Tensor& y) {
    check_same_dtype(x, y, kName);
    sa = x.shape();
    sb = y.shape();
    if (recording) {
      b = y;
      if (needs_grad(1)) a = x;
    }
    return visit_float(x.dtype(), kName,
                       [&]<class T>() { return binary_map<T>(x, y, kName, [](T p, T q) { return p / q; }); });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& y = b.get(kName);
    Tensor ga, gb;
    if (needs_grad(0)) ga = sum_to(div(g, y), sa);
    if (needs_grad(1)) gb = sum_to(neg(div(mul(g, a.get(kName)), mul(y, y))), sb);
    return {ga, gb};
  }
};

// maximum/minimum: the gradient goes to the selected input; on ties it is split evenly (PyTorch).
struct MaxMinOp : OpBase {
  static constexpr const char* kName = "maximum/minimum";
  bool is_max = true;
  SavedTensor a, b;
  Tensor forward(const Tensor& x, const Tensor& y) {
    check_same_dtype(x, y, is_max ? "maximum" : "minimum");
    if (recording) {
      a = x;
      b = y;
    }
    return visit_float(x.dtype(), kName, [&]<class T>() {
      if (is_max) return binary_map<T>(x, y, "maximum", [](T p, T q) { return p > q || p != p ? p : q; });
      return binary_map<T>(x, y, "minimum", [](T p, T q) { return p < q || p != p ? p : q; });
    });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& x = a.get(kName);
    const Tensor& y = b.get(kName);
    // weight for x: 1 where x wins, 0.5 on ties, 0 where y wins
    Tensor wx = visit_float(x.dtype(), kName, [&]<class T>() {
      const bool mx = is_max;
      return binary_map<T>(x, y, kName, [mx](T p, T q) {
        if (p == q) return T(0.5);
        return (mx ? p > q : p < q) ? T(1) : T(0);
      });
    });
    Tensor ga, gb;
    if (needs_grad(0)) ga = sum_to(mul(g, wx), x.shape());
    if (needs_grad(1)) gb = sum_to(mul(g, add(neg(wx), 1.0)), y.shape());
    return {ga, gb};
  }
};

struct PowOp : OpBase {
  static constexpr const char* kName = "pow";
  SavedTensor a, b, out;
  Tensor forward(const Tensor& x, const Tensor& y) {
    check_same_dtype(x, y, kName);
    Tensor r = visit_float(x.dtype(), kName, [&]<class T>() {
      return binary_map<T>(x, y, kName, [](T p, T q) { return std::pow(p, q); });
    });
    if (recording) {
      a = x;
      b = y;
      if (needs_grad(1)) out = r;
    }
    return r;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& x = a.get(kName);
    const Tensor& y = b.get(kName);
    Tensor ga, gb;
    if (needs_grad(0)) {
      // d/dx x^y = y * x^(y-1); defined as 0 where y == 0 (PyTorch)
      Tensor d = visit_float(x.dtype(), kName, [&]<class T>() {
        return binary_map<T>(x, y, kName, [](T p, T q) { return q == 0 ? T(0) : q * std::pow(p, q - 1); });
      });
      ga = sum_to(mul(g, d), x.shape());
    }
    if (needs_grad(1)) {
      // d/dy x^y = x^y * log(x); 0 where x == 0 and y >= 0 (PyTorch's masked form)
      const Tensor& r = out.get(kName);
      Tensor lx = visit_float(x.dtype(), kName, [&]<class T>() {
        return detail::unary_map<T>(x, [](T p) { return p == 0 ? T(0) : std::log(p); });
      });
      gb = sum_to(mul(g, mul(r, lx)), y.shape());
    }
    return {ga, gb};
  }
};

struct WhereOp : OpBase {
  static constexpr const char* kName = "where";
  SavedTensor cond;
  Shape sa, sb;
  Tensor forward(const Tensor& c, const Tensor& x, const Tensor& y) {
    QFORGE_CHECK(c.dtype() == DType::boolean, "where: condition must be bool, got {}", dtype_name(c.dtype()));
    check_same_dtype(x, y, kName);
    sa = x.shape();
    sb = y.shape();
    if (recording) cond = c;
    const Shape shape = broadcast_shapes(broadcast_shapes(c.shape(), x.shape(), kName), y.shape(), kName);
    Tensor ce = c.expand(shape).contiguous();
    Tensor xe = x.expand(shape).contiguous();
    Tensor ye = y.expand(shape).contiguous();
    return visit_float(x.dtype(), kName, [&]<class T>() {
      Tensor r = Tensor::empty(shape, x.dtype());
      const bool* pc = ce.data<bool>();
      const T* px = xe.data<T>();
      const T* py = ye.data<T>();
      T* o = r.data<T>();
      for (int64_t i = 0, n = r.numel(); i < n; ++i) o[i] = pc[i] ? px[i] : py[i];
      return r;
    });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& c = cond.get(kName);
    Tensor zero = Tensor::zeros({}, g.dtype());
    Tensor ga, gb;
    if (needs_grad(1)) ga = sum_to(where(c, g, zero), sa);
    if (needs_grad(2)) gb = sum_to(where(c, zero, g), sb);
    return {Tensor(), ga, gb};
  }
};

Tensor scalar_like(const Tensor& a, double v) { return Tensor::full({}, v, a.dtype()); }

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return apply(AddOp{}, a, b); }
Tensor sub(const Tensor& a, const Tensor& b) {
  AddOp op;
  op.alpha = -1;
  return apply(op, a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) { return apply(MulOp{}, a, b); }
Tensor div(const Tensor& a, const Tensor& b) { return apply(DivOp{}, a, b); }
Tensor maximum(const Tensor& a, const Tensor& b) { return apply(MaxMinOp{}, a, b); }
Tensor minimum(const Tensor& a, const Tensor& b) {
  MaxMinOp op;
  op.is_max = false;
  return apply(op, a, b);
}
Tensor pow(const Tensor& a, const Tensor& b) { return apply(PowOp{}, a, b); }
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) { return apply(WhereOp{}, cond, a, b); }
Tensor add(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor pow(const Tensor& a, double e) { return pow(a, scalar_like(a, e)); }

Tensor gt(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "gt");
  return visit_float(a.dtype(), "gt", [&]<class T>() { return binary_map<T, bool>(a, b, "gt", [](T p, T q) { return p > q; }); });
}
Tensor lt(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "lt");
  return visit_float(a.dtype(), "lt", [&]<class T>() { return binary_map<T, bool>(a, b, "lt", [](T p, T q) { return p < q; }); });
}
Tensor eq(const Tensor& a, const Tensor& b) {
  check_same_dtype(a, b, "eq");
  return visit_dtype(a.dtype(), [&]<class T>() { return binary_map<T, bool>(a, b, "eq", [](T p, T q) { return p == q; }); });
}

}  // namespace qforge::ops
