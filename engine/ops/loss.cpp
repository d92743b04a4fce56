// Losses: cross_entropy (fused log_softmax + nll), nll_loss, mse_loss. Reduction is always the mean.
//
// Logits/log-probs are [N, C] or [N, C, d...] (a single sample [C] with a 0-d target also works) and
// are viewed as [outer = N, n = C, inner = prod(d...)]; target is i32 [N, d...].
//
// Note [Cross-entropy as PyTorch 1.13]
// With q the smoothed target distribution q_j = (1 - ls) * [j == t] + ls / C, PyTorch 1.13 computes
//   loss = sum over non-ignored positions of  -sum_j q_j * log_softmax(x)_j,  divided by the number of
//   non-ignored positions (both the nll and the smoothing term use that count; all ignored -> NaN).
// The gradient with respect to the logits of one position is then simply (softmax(x) - q) / count,
// which is what the fused backward computes from the saved log-probabilities.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"
#include "engine/ops/softmax_kernels.hpp"

#include <cmath>
#include <limits>

namespace qforge::ops {

using detail::visit_float;

namespace {

struct ClassLayout {
  int64_t outer = 1, n = 1, inner = 1;
};

// Checks dtypes and shapes of (input, target) and returns the [outer, C, inner] layout.
ClassLayout check_class_input(const Tensor& x, const Tensor& target, const char* op) {
  detail::check_float(x, op);
  QFORGE_CHECK(target.dtype() == DType::i32, "{}: target must be i32, got {} of shape {}", op,
               dtype_name(target.dtype()), shape_str(target.shape()));
  QFORGE_CHECK(x.dim() >= 1, "{}: input must be [N, C] or [N, C, d...], got {}", op, shape_str(x.shape()));
  ClassLayout l;
  Shape want;
  if (x.dim() == 1) {
    l.n = x.shape()[0];
  } else {
    l.outer = x.shape()[0];
    l.n = x.shape()[1];
    want.push_back(x.shape()[0]);
    for (int64_t i = 2; i < x.dim(); ++i) {
      l.inner *= x.shape()[i];
      want.push_back(x.shape()[i]);
    }
  }
  QFORGE_CHECK(target.shape() == want, "{}: input {} needs target of shape {}, got {}", op, shape_str(x.shape()),
               shape_str(want), shape_str(target.shape()));
  return l;
}

// Validates the target values; returns the number of non-ignored positions.
int64_t count_valid(const int32_t* t, int64_t m, int64_t classes, int64_t ignore_index, const char* op) {
  int64_t valid = 0;
  for (int64_t k = 0; k < m; ++k) {
    if (t[k] == ignore_index) continue;
    QFORGE_CHECK(t[k] >= 0 && t[k] < classes, "{}: target {} out of range for {} classes (at position {})", op,
                 t[k], classes, k);
    ++valid;
  }
  return valid;
}

struct CrossEntropyOp : OpBase {
  static constexpr const char* kName = "cross_entropy";
  int64_t ignore_index = -100;
  double smoothing = 0;
  ClassLayout l;
  int64_t valid = 0;
  Tensor lsm;  // log_softmax(logits), computed here (op-owned, no version check needed)
  SavedTensor saved_t;
  Tensor forward(const Tensor& logits, const Tensor& target_in) {
    l = check_class_input(logits, target_in, kName);
    QFORGE_CHECK(smoothing >= 0 && smoothing <= 1, "cross_entropy: label_smoothing must be in [0, 1], got {}",
                 smoothing);
    Tensor x = logits.contiguous();
    Tensor target = target_in.contiguous();
    const int32_t* t = target.data<int32_t>();
    valid = count_valid(t, l.outer * l.inner, l.n, ignore_index, kName);
    Tensor out = Tensor::empty({}, x.dtype());
    lsm = Tensor::empty(x.shape(), x.dtype());
    visit_float(x.dtype(), kName, [&]<class T>() {
      T* lp = lsm.data<T>();
      detail::log_softmax_rows<T>(x.data<T>(), lp, l.outer, l.n, l.inner);
      double nll = 0, smooth = 0;
      for (int64_t o = 0; o < l.outer; ++o)
        for (int64_t i = 0; i < l.inner; ++i) {
          const int32_t c = t[o * l.inner + i];
          if (c == ignore_index) continue;
          const T* row = lp + o * l.n * l.inner + i;
          nll -= row[c * l.inner];
          if (smoothing != 0) {
            double rs = 0;
            if (l.inner == 1) {
#pragma omp simd reduction(+ : rs)
              for (int64_t j = 0; j < l.n; ++j) rs += row[j];
            } else {
              for (int64_t j = 0; j < l.n; ++j) rs += row[j * l.inner];
            }
            smooth -= rs;
          }
        }
      const double loss = ((1 - smoothing) * nll + smoothing / static_cast<double>(l.n) * smooth) /
                          static_cast<double>(valid);
      out.data<T>()[0] = static_cast<T>(loss);
    });
    if (recording) saved_t = target;
    else lsm = Tensor();
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& target = saved_t.get(kName);
    const int32_t* t = target.data<int32_t>();
    Tensor gx = Tensor::zeros(lsm.shape(), lsm.dtype());
    const double scale = g.item() / static_cast<double>(valid);
    visit_float(lsm.dtype(), kName, [&]<class T>() {
      const T* lp = lsm.data<T>();
      T* o = gx.data<T>();
      const T sc = static_cast<T>(scale);
      const T off = static_cast<T>(smoothing / static_cast<double>(l.n));
      const T hit = static_cast<T>(1 - smoothing);
      for (int64_t a = 0; a < l.outer; ++a)
        for (int64_t i = 0; i < l.inner; ++i) {
          const int32_t c = t[a * l.inner + i];
          if (c == ignore_index) continue;
          const int64_t base = a * l.n * l.inner + i;
          if (l.inner == 1) {
            detail::exp_shifted<T>(lp + base, o + base, l.n, T(0));
#pragma omp simd
            for (int64_t j = 0; j < l.n; ++j) o[base + j] = sc * (o[base + j] - off);
            o[base + c] -= sc * hit;
            continue;
          }
          for (int64_t j = 0; j < l.n; ++j) {
            const int64_t k = base + j * l.inner;
            o[k] = sc * (std::exp(lp[k]) - off - (j == c ? hit : T(0)));
          }
        }
    });
    return {gx, Tensor()};
  }
};

struct NllLossOp : OpBase {
  static constexpr const char* kName = "nll_loss";
  int64_t ignore_index = -100;
  ClassLayout l;
  Shape in_shape;
  int64_t valid = 0;
  SavedTensor saved_t;
  Tensor forward(const Tensor& lp_in, const Tensor& target_in) {
    l = check_class_input(lp_in, target_in, kName);
    in_shape = lp_in.shape();
    Tensor lp = lp_in.contiguous();
    Tensor target = target_in.contiguous();
    const int32_t* t = target.data<int32_t>();
    valid = count_valid(t, l.outer * l.inner, l.n, ignore_index, kName);
    Tensor out = Tensor::empty({}, lp.dtype());
    visit_float(lp.dtype(), kName, [&]<class T>() {
      const T* p = lp.data<T>();
      double acc = 0;
      for (int64_t o = 0; o < l.outer; ++o)
        for (int64_t i = 0; i < l.inner; ++i) {
          const int32_t c = t[o * l.inner + i];
          if (c != ignore_index) acc -= p[(o * l.n + c) * l.inner + i];
        }
      out.data<T>()[0] = static_cast<T>(acc / static_cast<double>(valid));
    });
    if (recording) saved_t = target;
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& target = saved_t.get(kName);
    const int32_t* t = target.data<int32_t>();
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    const double v = -g.item() / static_cast<double>(valid);
    visit_float(g.dtype(), kName, [&]<class T>() {
      T* o = gx.data<T>();
      for (int64_t a = 0; a < l.outer; ++a)
        for (int64_t i = 0; i < l.inner; ++i) {
          const int32_t c = t[a * l.inner + i];
          if (c != ignore_index) o[(a * l.n + c) * l.inner + i] = static_cast<T>(v);
        }
    });
    return {gx, Tensor()};
  }
};

struct MseLossOp : OpBase {
  static constexpr const char* kName = "mse_loss";
  SavedTensor diff;  // a - b
  Tensor forward(const Tensor& a, const Tensor& b) {
    detail::check_same_dtype(a, b, kName);
    detail::check_float(a, kName);
    QFORGE_CHECK(a.shape() == b.shape(), "mse_loss: shapes {} and {} differ", shape_str(a.shape()),
                 shape_str(b.shape()));
    Tensor d = visit_float(a.dtype(), kName, [&]<class T>() {
      return detail::binary_map<T>(a, b, kName, [](T p, T q) { return p - q; });
    });
    Tensor out = Tensor::empty({}, a.dtype());
    visit_float(a.dtype(), kName, [&]<class T>() {
      const T* p = d.data<T>();
      double acc = 0;
      const int64_t n = d.numel();
      for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(p[i]) * p[i];
      out.data<T>()[0] = static_cast<T>(n == 0 ? std::numeric_limits<double>::quiet_NaN() : acc / n);
    });
    if (recording) diff = d;
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& d = diff.get(kName);
    const double s = 2.0 * g.item() / static_cast<double>(d.numel());
    Tensor ga = visit_float(d.dtype(), kName, [&]<class T>() {
      const T st = static_cast<T>(s);
      return detail::unary_map<T>(d, [st](T v) { return st * v; });
    });
    Tensor gb;
    if (needs_grad(1)) gb = neg(ga);
    return {needs_grad(0) ? ga : Tensor(), gb};
  }
};

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index, double label_smoothing) {
  CrossEntropyOp op;
  op.ignore_index = ignore_index;
  op.smoothing = label_smoothing;
  return apply(op, logits, target);
}

Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index) {
  NllLossOp op;
  op.ignore_index = ignore_index;
  return apply(op, log_probs, target);
}

Tensor mse_loss(const Tensor& a, const Tensor& b) { return apply(MseLossOp{}, a, b); }

}  // namespace qforge::ops
