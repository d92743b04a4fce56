// softmax and log_softmax over one dimension, numerically stable (the row maximum is subtracted first).
//
// The input is viewed as [outer, n, inner] (contiguous). Both ops save their output, from which the
// backward is cheap:
//   softmax:     dx = y * (g - sum_n(g * y))
//   log_softmax: dx = g - exp(y) * sum_n(g)
// Per-row sums accumulate in double so f32 rows of many classes stay accurate.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"
#include "engine/ops/softmax_kernels.hpp"

#include <cmath>

namespace qforge::ops {

using detail::visit_float;

namespace detail {

// Shared with loss.cpp: log_softmax of `x` (contiguous [outer, n, inner]) into `out`.
template <class T> void log_softmax_rows(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  std::vector<double> mx(inner), sum(inner);
  for (int64_t o = 0; o < outer; ++o) {
    const T* xb = x + o * n * inner;
    T* ob = out + o * n * inner;
    if (inner == 1) {
      T m = xb[0];
      for (int64_t j = 1; j < n; ++j) m = xb[j] > m || xb[j] != xb[j] ? xb[j] : m;
      double s = 0;
      for (int64_t j = 0; j < n; ++j) s += std::exp(static_cast<double>(xb[j] - m));
      // (x - max) - log(sum) keeps the small difference exact even for huge logits in f32
      const T ls = static_cast<T>(std::log(s));
      for (int64_t j = 0; j < n; ++j) ob[j] = (xb[j] - m) - ls;
      continue;
    }
    for (int64_t i = 0; i < inner; ++i) {
      mx[i] = xb[i];
      sum[i] = 0;
    }
    for (int64_t j = 1; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        const double v = xb[j * inner + i];
        mx[i] = v > mx[i] || v != v ? v : mx[i];
      }
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) sum[i] += std::exp(static_cast<double>(xb[j * inner + i]) - mx[i]);
    for (int64_t i = 0; i < inner; ++i) sum[i] = std::log(sum[i]);
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i)
        ob[j * inner + i] = static_cast<T>((static_cast<double>(xb[j * inner + i]) - mx[i]) - sum[i]);
  }
}

template void log_softmax_rows<float>(const float*, float*, int64_t, int64_t, int64_t);
template void log_softmax_rows<double>(const double*, double*, int64_t, int64_t, int64_t);

}  // namespace detail

namespace {

struct Layout {
  int64_t outer = 1, n = 1, inner = 1;
};

Layout layout_of(const Shape& s, int64_t d) {
  Layout l;
  for (int64_t i = 0; i < static_cast<int64_t>(s.size()); ++i) {
    if (i < d) l.outer *= s[i];
    if (i == d) l.n = s[i];
    if (i > d) l.inner *= s[i];
  }
  return l;
}

struct SoftmaxOp : OpBase {
  static constexpr const char* kName = "softmax";
  bool log = false;
  int64_t dim = 0;
  SavedTensor saved_y;
  Tensor forward(const Tensor& x_in) {
    const char* name = log ? "log_softmax" : "softmax";
    detail::check_float(x_in, name);
    Tensor x = x_in.contiguous();
    const Layout l = layout_of(x.shape(), dim);
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    visit_float(x.dtype(), name, [&]<class T>() {
      T* yp = y.data<T>();
      detail::log_softmax_rows<T>(x.data<T>(), yp, l.outer, l.n, l.inner);
      if (!log)
        for (int64_t i = 0, e = y.numel(); i < e; ++i) yp[i] = std::exp(yp[i]);
    });
    if (recording) saved_y = y;
    return y;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor& y = saved_y.get(kName);
    Tensor g = g_in.contiguous();
    const Layout l = layout_of(y.shape(), dim);
    Tensor gx = Tensor::empty(y.shape(), y.dtype());
    visit_float(y.dtype(), kName, [&]<class T>() {
      const T* yp = y.data<T>();
      const T* gp = g.data<T>();
      T* o = gx.data<T>();
      std::vector<double> acc(l.inner);
      for (int64_t a = 0; a < l.outer; ++a) {
        const int64_t base = a * l.n * l.inner;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j < l.n; ++j)
          for (int64_t i = 0; i < l.inner; ++i) {
            const int64_t k = base + j * l.inner + i;
            acc[i] += log ? static_cast<double>(gp[k]) : static_cast<double>(gp[k]) * yp[k];
          }
        for (int64_t j = 0; j < l.n; ++j)
          for (int64_t i = 0; i < l.inner; ++i) {
            const int64_t k = base + j * l.inner + i;
            const T s = static_cast<T>(acc[i]);
            o[k] = log ? gp[k] - std::exp(yp[k]) * s : yp[k] * (gp[k] - s);
          }
      }
    });
    return {gx};
  }
};

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  SoftmaxOp op;
  op.log = log;
  op.dim = normalize_dim(dim, x.dim(), log ? "log_softmax" : "softmax");
  return apply(op, x);
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_impl(x, dim, true); }

}  // namespace qforge::ops
