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

// Softmax (log = false) or log_softmax (log = true) of contiguous x viewed as [outer, n, inner].
// exp runs in T (f32 exp for f32 tensors), the row sums in double. Rows are independent: OpenMP splits
// them when the tensor is large.
template <class T> void softmax_rows(const T* x, T* out, int64_t outer, int64_t n, int64_t inner, bool log) {
  constexpr int64_t kParallelMin = 1 << 15;
#pragma omp parallel for schedule(static) if (outer * n * inner >= kParallelMin && outer > 1)
  for (int64_t o = 0; o < outer; ++o) {
    const T* xb = x + o * n * inner;
    T* ob = out + o * n * inner;
    if (inner == 1) {
      const T m = row_max<T>(xb, n);
      double sum = 0;
      exp_shifted<T>(xb, ob, n, m);  // ob is scratch for log_softmax
#pragma omp simd reduction(+ : sum)
      for (int64_t j = 0; j < n; ++j) sum += ob[j];
      if (log) {
        // (x - max) - log(sum) keeps the small difference exact even for huge logits in f32
        const T ls = static_cast<T>(std::log(sum));
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) ob[j] = (xb[j] - m) - ls;
      } else {
        const T inv = static_cast<T>(1.0 / sum);
#pragma omp simd
        for (int64_t j = 0; j < n; ++j) ob[j] *= inv;
      }
      continue;
    }
    std::vector<T> mx(xb, xb + inner);
    std::vector<double> sum(inner, 0.0);
    for (int64_t j = 1; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        const T v = xb[j * inner + i];
        mx[i] = v > mx[i] || v != v ? v : mx[i];
      }
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        const T e = std::exp(xb[j * inner + i] - mx[i]);
        if (!log) ob[j * inner + i] = e;
        sum[i] += e;
      }
    if (log) {
      std::vector<T> ls(inner);
      for (int64_t i = 0; i < inner; ++i) ls[i] = static_cast<T>(std::log(sum[i]));
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < inner; ++i) ob[j * inner + i] = (xb[j * inner + i] - mx[i]) - ls[i];
    } else {
      std::vector<T> inv(inner);
      for (int64_t i = 0; i < inner; ++i) inv[i] = static_cast<T>(1.0 / sum[i]);
      for (int64_t j = 0; j < n; ++j)
        for (int64_t i = 0; i < inner; ++i) ob[j * inner + i] *= inv[i];
    }
  }
}

template <class T> void log_softmax_rows(const T* x, T* out, int64_t outer, int64_t n, int64_t inner) {
  softmax_rows<T>(x, out, outer, n, inner, true);
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
      detail::softmax_rows<T>(x.data<T>(), y.data<T>(), l.outer, l.n, l.inner, log);
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
      const bool lg = log;
#pragma omp parallel for schedule(static) if (y.numel() >= (1 << 15) && l.outer > 1)
      for (int64_t a = 0; a < l.outer; ++a) {
        const int64_t base = a * l.n * l.inner;
        if (l.inner == 1) {
          double acc = 0;
          if (lg) {
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < l.n; ++j) acc += gp[base + j];
            const T s = static_cast<T>(acc);
            detail::exp_shifted<T>(yp + base, o + base, l.n, T(0));
#pragma omp simd
            for (int64_t j = 0; j < l.n; ++j) o[base + j] = gp[base + j] - o[base + j] * s;
          } else {
#pragma omp simd reduction(+ : acc)
            for (int64_t j = 0; j < l.n; ++j) acc += static_cast<double>(gp[base + j]) * yp[base + j];
            const T s = static_cast<T>(acc);
#pragma omp simd
            for (int64_t j = 0; j < l.n; ++j) o[base + j] = yp[base + j] * (gp[base + j] - s);
          }
          continue;
        }
        std::vector<double> acc(l.inner, 0.0);
        for (int64_t j = 0; j < l.n; ++j)
          for (int64_t i = 0; i < l.inner; ++i) {
            const int64_t k = base + j * l.inner + i;
            acc[i] += lg ? static_cast<double>(gp[k]) : static_cast<double>(gp[k]) * yp[k];
          }
        for (int64_t j = 0; j < l.n; ++j)
          for (int64_t i = 0; i < l.inner; ++i) {
            const int64_t k = base + j * l.inner + i;
            const T s = static_cast<T>(acc[i]);
            o[k] = lg ? gp[k] - std::exp(yp[k]) * s : yp[k] * (gp[k] - s);
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
