// batch_norm over dim 1 of [N, C] or [N, C, spatial...], forward and backward fused per channel.
//
// The input is viewed as [N, C, S] (S = product of the spatial dims, 1 for [N, C]); channel c has M = N*S
// values. Training normalises with the batch mean and biased variance and updates the running stats in
// place (running = (1 - momentum) * running + momentum * stat, with the unbiased variance M/(M-1) * var,
// exactly as PyTorch). Eval normalises with the running stats. Either way the forward is one affine map
// per channel, y = x * scale + shift, and the backward is one reduction pass (sum g, sum g*(x - mean))
// and one element-wise pass:
//   training: dx = a * (g - sum_g/M) - a * invstd^2 * sum_gx/M * (x - mean),  a = w * invstd
//   eval:     dx = a * g
//   dweight = sum_gx * invstd, dbias = sum_g.
// Channels run in parallel with OpenMP; statistics accumulate in double.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cmath>

namespace qforge::ops {

using detail::visit_float;

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements below which threads cost more than they save

std::vector<double> values_of(const Tensor& t) { return t.defined() ? t.to_vector<double>() : std::vector<double>{}; }

struct BatchNormOp : OpBase {
  static constexpr const char* kName = "batch_norm";
  Tensor running_mean, running_var;
  bool training = true;
  double momentum = 0.1, eps = 1e-5;
  int64_t n = 1, c = 1, s = 1;
  std::vector<double> mean, invstd, w;  // per channel
  SavedTensor saved_x;
  bool has_weight = false;

  void check(const Tensor& x, const Tensor& weight, const Tensor& bias) {
    detail::check_float(x, kName);
    QFORGE_CHECK(x.dim() >= 2, "batch_norm: input must be [N, C] or [N, C, H, W], got {}", shape_str(x.shape()));
    const Shape cs{x.shape()[1]};
    auto check_param = [&](const Tensor& t, const char* what) {
      if (!t.defined()) return;
      QFORGE_CHECK(is_floating(t.dtype()) && t.shape() == cs, "batch_norm: {} must be a floating {} for input {}, got {} {}",
                   what, shape_str(cs), shape_str(x.shape()), dtype_name(t.dtype()), shape_str(t.shape()));
    };
    check_param(weight, "weight");
    check_param(bias, "bias");
    check_param(running_mean, "running_mean");
    check_param(running_var, "running_var");
    if (weight.defined()) detail::check_same_dtype(x, weight, kName);
    if (bias.defined()) detail::check_same_dtype(x, bias, kName);
    QFORGE_CHECK(training || (running_mean.defined() && running_var.defined()),
                 "batch_norm: eval mode needs running_mean and running_var");
    QFORGE_CHECK(!training || x.numel() / x.shape()[1] > 1,
                 "batch_norm: expected more than 1 value per channel when training, got input {}", shape_str(x.shape()));
  }

  Tensor forward(const Tensor& x_in, const Tensor& weight, const Tensor& bias) {
    check(x_in, weight, bias);
    Tensor x = x_in.contiguous();
    n = x.shape()[0];
    c = x.shape()[1];
    s = x.numel() / std::max<int64_t>(n * c, 1);
    const int64_t m = n * s;
    has_weight = weight.defined();
    w = has_weight ? values_of(weight) : std::vector<double>(c, 1.0);
    std::vector<double> b = bias.defined() ? values_of(bias) : std::vector<double>(c, 0.0);
    mean.assign(c, 0.0);
    invstd.assign(c, 0.0);
    std::vector<double> var(c, 0.0);
    Tensor y = Tensor::uninitialized(x.shape(), x.dtype());  // every element is written below
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T* xp = x.data<T>();
      T* yp = y.data<T>();
      if (training) {
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelMin)
        for (int64_t ch = 0; ch < c; ++ch) {
          double acc = 0;
          for (int64_t i = 0; i < n; ++i) {
            const T* p = xp + (i * c + ch) * s;
#pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < s; ++k) acc += p[k];
          }
          const double mu = acc / static_cast<double>(m);
          double sq = 0;
          for (int64_t i = 0; i < n; ++i) {
            const T* p = xp + (i * c + ch) * s;
#pragma omp simd reduction(+ : sq)
            for (int64_t k = 0; k < s; ++k) {
              const double d = p[k] - mu;
              sq += d * d;
            }
          }
          mean[ch] = mu;
          var[ch] = sq / static_cast<double>(m);
        }
      } else {
        mean = values_of(running_mean);
        var = values_of(running_var);
      }
      for (int64_t ch = 0; ch < c; ++ch) invstd[ch] = 1.0 / std::sqrt(var[ch] + eps);
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelMin)
      for (int64_t ch = 0; ch < c; ++ch) {
        const T scale = static_cast<T>(w[ch] * invstd[ch]);
        const T shift = static_cast<T>(b[ch] - mean[ch] * w[ch] * invstd[ch]);
        for (int64_t i = 0; i < n; ++i) {
          const T* p = xp + (i * c + ch) * s;
          T* q = yp + (i * c + ch) * s;
#pragma omp simd
          for (int64_t k = 0; k < s; ++k) q[k] = p[k] * scale + shift;
        }
      }
    });
    if (training) update_running(var, m);
    running_mean = Tensor();  // not needed by backward; do not keep them alive through the graph
    running_var = Tensor();
    if (recording) saved_x = x_in;
    return y;
  }

  void update_running(const std::vector<double>& var, int64_t m) {
    const double unbias = static_cast<double>(m) / static_cast<double>(m - 1);
    if (running_mean.defined()) {
      std::vector<double> rm = values_of(running_mean);
      for (int64_t ch = 0; ch < c; ++ch) rm[ch] = (1 - momentum) * rm[ch] + momentum * mean[ch];
      running_mean.copy_(Tensor::from_vector(rm, running_mean.shape()));
    }
    if (running_var.defined()) {
      std::vector<double> rv = values_of(running_var);
      for (int64_t ch = 0; ch < c; ++ch) rv[ch] = (1 - momentum) * rv[ch] + momentum * var[ch] * unbias;
      running_var.copy_(Tensor::from_vector(rv, running_var.shape()));
    }
  }

  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor x = saved_x.get(kName).contiguous();
    const Tensor g = g_in.contiguous();
    const int64_t m = n * s;
    std::vector<double> sum_g(c, 0.0), sum_gx(c, 0.0);
    Tensor gx;
    if (needs_grad(0)) gx = Tensor::uninitialized(x.shape(), x.dtype());  // every element is written below
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T* xp = x.data<T>();
      const T* gp = g.data<T>();
      T* op = gx.defined() ? gx.data<T>() : nullptr;
#pragma omp parallel for schedule(static) if (x.numel() >= kParallelMin)
      for (int64_t ch = 0; ch < c; ++ch) {
        double sg = 0, sgx = 0;
        const double mu = mean[ch];
        for (int64_t i = 0; i < n; ++i) {
          const T* p = xp + (i * c + ch) * s;
          const T* q = gp + (i * c + ch) * s;
#pragma omp simd reduction(+ : sg, sgx)
          for (int64_t k = 0; k < s; ++k) {
            sg += q[k];
            sgx += q[k] * (p[k] - mu);
          }
        }
        sum_g[ch] = sg;
        sum_gx[ch] = sgx;
        if (!op) continue;
        const double a = w[ch] * invstd[ch];
        const T mut = static_cast<T>(mu);
        T ga, gxk, gc;
        if (training) {
          const double k = a * invstd[ch] * invstd[ch] * sgx / static_cast<double>(m);
          ga = static_cast<T>(a);
          gxk = static_cast<T>(-k);
          gc = static_cast<T>(-a * sg / static_cast<double>(m));
        } else {
          ga = static_cast<T>(a);
          gxk = T(0);
          gc = T(0);
        }
        for (int64_t i = 0; i < n; ++i) {
          const T* p = xp + (i * c + ch) * s;
          const T* q = gp + (i * c + ch) * s;
          T* r = op + (i * c + ch) * s;
#pragma omp simd
          for (int64_t k = 0; k < s; ++k) r[k] = ga * q[k] + gxk * (p[k] - mut) + gc;
        }
      }
    });
    Tensor gw, gb;
    if (needs_grad(1)) {
      std::vector<double> v(c);
      for (int64_t ch = 0; ch < c; ++ch) v[ch] = sum_gx[ch] * invstd[ch];
      gw = Tensor::from_vector(v, {c}).to(x.dtype());
    }
    if (needs_grad(2)) gb = Tensor::from_vector(sum_g, {c}).to(x.dtype());
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor batch_norm(const Tensor& x, Tensor running_mean, Tensor running_var, const Tensor& weight, const Tensor& bias,
                  bool training, double momentum, double eps) {
  BatchNormOp op;
  op.running_mean = std::move(running_mean);
  op.running_var = std::move(running_var);
  op.training = training;
  op.momentum = momentum;
  op.eps = eps;
  return apply(op, x, weight, bias);
}

}  // namespace qforge::ops
