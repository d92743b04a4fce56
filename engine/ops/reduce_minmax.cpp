// Max/min reductions and argmax.
//
// Over one dimension the input is viewed as [outer, n, inner] (contiguous): each output element picks
// the first extreme along n, and the gradient goes to that single index (PyTorch's max.dim/min.dim).
// Over all elements the result is one value and, like PyTorch 1.13's max()/min(), the gradient is split
// evenly among all elements equal to it. NaN propagates: it counts as the extreme value (first NaN wins).
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cmath>

namespace qforge::ops {

using detail::visit_float;

namespace {

struct DimLayout {
  int64_t outer = 1, n = 1, inner = 1;
  Shape out_shape;
};

DimLayout dim_layout(const Tensor& x, int64_t d, bool keepdim, const char* op) {
  DimLayout l;
  if (x.dim() == 0) return l;  // a 0-d tensor reduces to itself
  for (int64_t i = 0; i < x.dim(); ++i) {
    const int64_t s = x.shape()[i];
    if (i < d) l.outer *= s;
    if (i == d) l.n = s;
    if (i > d) l.inner *= s;
    if (i != d) l.out_shape.push_back(s);
    else if (keepdim) l.out_shape.push_back(1);
  }
  QFORGE_CHECK(l.n > 0, "{}: cannot reduce over dimension {} of size 0 in shape {}", op, d, shape_str(x.shape()));
  return l;
}

// `better(v, best)`: v replaces the current best (strictly more extreme, or the first NaN).
template <class T> bool better(T v, T best, bool is_max) {
  if (best != best) return false;
  if (v != v) return true;
  return is_max ? v > best : v < best;
}

// Fills values (optional) and indices [outer*inner] with the first extreme along n.
template <class T>
void extreme_along(const T* x, const DimLayout& l, bool is_max, T* values, int32_t* index) {
  for (int64_t o = 0; o < l.outer; ++o) {
    const T* base = x + o * l.n * l.inner;
    T* vo = values ? values + o * l.inner : nullptr;
    int32_t* io = index + o * l.inner;
    if (l.inner == 1) {
      T best = base[0];
      int32_t bi = 0;
      for (int64_t j = 1; j < l.n; ++j)
        if (better(base[j], best, is_max)) {
          best = base[j];
          bi = static_cast<int32_t>(j);
        }
      if (vo) vo[0] = best;
      io[0] = bi;
      continue;
    }
    // inner > 1: sweep rows so the inner loop stays contiguous
    std::vector<T> best(base, base + l.inner);
    std::fill(io, io + l.inner, 0);
    for (int64_t j = 1; j < l.n; ++j) {
      const T* row = base + j * l.inner;
      for (int64_t i = 0; i < l.inner; ++i)
        if (better(row[i], best[i], is_max)) {
          best[i] = row[i];
          io[i] = static_cast<int32_t>(j);
        }
    }
    if (vo) std::copy(best.begin(), best.end(), vo);
  }
}

struct MaxDimOp : OpBase {
  static constexpr const char* kName = "max/min";
  bool is_max = true;
  int64_t dim = 0;
  bool keepdim = false;
  Shape in_shape;
  DimLayout layout;
  Tensor index;  // i32 [outer*inner]; not a saved tensor of the graph (op-owned)
  Tensor forward(const Tensor& x) {
    const char* name = is_max ? "max" : "min";
    detail::check_float(x, name);
    in_shape = x.shape();
    layout = dim_layout(x, dim, keepdim, name);
    Tensor xc = x.contiguous();
    Tensor out = Tensor::empty(layout.out_shape, x.dtype());
    index = Tensor::empty({layout.outer * layout.inner}, DType::i32);
    visit_float(x.dtype(), name, [&]<class T>() {
      extreme_along<T>(xc.data<T>(), layout, is_max, out.data<T>(), index.data<int32_t>());
    });
    if (!recording) index = Tensor();
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    Tensor g = g_in.contiguous();
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    visit_float(g.dtype(), kName, [&]<class T>() {
      const T* gp = g.data<T>();
      const int32_t* ip = index.data<int32_t>();
      T* o = gx.data<T>();
      for (int64_t a = 0; a < layout.outer; ++a)
        for (int64_t i = 0; i < layout.inner; ++i) {
          const int64_t k = a * layout.inner + i;
          o[(a * layout.n + ip[k]) * layout.inner + i] = gp[k];
        }
    });
    return {gx};
  }
};

struct MaxAllOp : OpBase {
  static constexpr const char* kName = "max/min(all)";
  bool is_max = true;
  SavedTensor saved_x;
  double value = 0;
  Tensor forward(const Tensor& x) {
    const char* name = is_max ? "max" : "min";
    detail::check_float(x, name);
    QFORGE_CHECK(x.numel() > 0, "{}: cannot reduce an empty tensor of shape {}", name, shape_str(x.shape()));
    Tensor xc = x.contiguous();
    Tensor out = Tensor::empty({}, x.dtype());
    visit_float(x.dtype(), name, [&]<class T>() {
      const T* p = xc.data<T>();
      T best = p[0];
      for (int64_t i = 1, n = xc.numel(); i < n; ++i)
        if (better(p[i], best, is_max)) best = p[i];
      out.data<T>()[0] = best;
      value = static_cast<double>(best);
    });
    if (recording) saved_x = x;
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor x = saved_x.get(kName).contiguous();
    const double gv = g.item();
    Tensor gx = Tensor::zeros(x.shape(), x.dtype());
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T* p = x.data<T>();
      const T v = static_cast<T>(value);
      const bool vnan = std::isnan(value);
      const int64_t n = x.numel();
      auto hit = [&](T e) { return vnan ? e != e : e == v; };
      int64_t count = 0;
      for (int64_t i = 0; i < n; ++i) count += hit(p[i]);
      const T share = static_cast<T>(gv / static_cast<double>(count));
      T* o = gx.data<T>();
      for (int64_t i = 0; i < n; ++i) o[i] = hit(p[i]) ? share : T(0);
    });
    return {gx};
  }
};

Tensor max_min_dim(const Tensor& x, int64_t dim, bool keepdim, bool is_max) {
  MaxDimOp op;
  op.is_max = is_max;
  op.dim = normalize_dim(dim, x.dim(), is_max ? "max" : "min");
  op.keepdim = keepdim;
  return apply(op, x);
}

Tensor max_min_all(const Tensor& x, bool is_max) {
  MaxAllOp op;
  op.is_max = is_max;
  return apply(op, x);
}

}  // namespace

Tensor max(const Tensor& x, int64_t dim, bool keepdim) { return max_min_dim(x, dim, keepdim, true); }
Tensor min(const Tensor& x, int64_t dim, bool keepdim) { return max_min_dim(x, dim, keepdim, false); }
Tensor max(const Tensor& x) { return max_min_all(x, true); }
Tensor min(const Tensor& x) { return max_min_all(x, false); }

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  detail::check_float(x, "argmax");
  const int64_t d = normalize_dim(dim, x.dim(), "argmax");
  const DimLayout l = dim_layout(x, d, keepdim, "argmax");
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(l.out_shape, DType::i32);
  visit_float(x.dtype(), "argmax", [&]<class T>() {
    extreme_along<T>(xc.data<T>(), l, true, static_cast<T*>(nullptr), out.data<int32_t>());
  });
  return out;
}

}  // namespace qforge::ops
