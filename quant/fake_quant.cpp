// PyTorch-compatible fake-quant ops. See fake_quant.hpp; loops in qdq_kernels.hpp.
#include "quant/fake_quant.hpp"

#include "engine/ops/op.hpp"
#include "quant/qdq_kernels.hpp"

#include <cmath>
#include <vector>

namespace qforge::quant {

namespace {

using ops::OpBase;
using ops::SavedTensor;

// x viewed as [outer, channels, inner] around `axis` (channels = 1 for per-tensor).
struct Layout {
  int64_t outer = 1, channels = 1, inner = 1;
};

Layout layout_of(const Shape& shape, int64_t axis) {
  Layout l;
  if (axis < 0) {
    l.inner = shape_numel(shape);
    return l;
  }
  for (int64_t d = 0; d < axis; ++d) l.outer *= shape[d];
  l.channels = shape[axis];
  for (size_t d = axis + 1; d < shape.size(); ++d) l.inner *= shape[d];
  return l;
}

template <class F> void for_each_block(const Layout& l, F&& f) {
  for (int64_t o = 0; o < l.outer; ++o)
    for (int64_t c = 0; c < l.channels; ++c) f(c, (o * l.channels + c) * l.inner, l.inner);
}

template <class F> decltype(auto) visit_fp(const Tensor& t, const char* op, F&& f) {
  if (t.dtype() == DType::f32) return f.template operator()<float>();
  if (t.dtype() == DType::f64) return f.template operator()<double>();
  throw Error(fmt::format("{}: expected an f32 or f64 input, got {} of shape {}", op, dtype_name(t.dtype()),
                          shape_str(t.shape())));
}

void check_range(const char* op, int64_t qmin, int64_t qmax) {
  QFORGE_CHECK(qmin <= qmax, "{}: quant_min ({}) must be <= quant_max ({})", op, qmin, qmax);
  QFORGE_CHECK(qmax - qmin <= (int64_t(1) << 32), "{}: range [{}, {}] wider than 32 bits", op, qmin, qmax);
}

void check_scale(const char* op, float s) {
  QFORGE_CHECK(s > 0 && std::isfinite(s), "{}: scale must be positive and finite, got {}", op, s);
}

// Per-channel float32 parameters for the shared kernels: lo = qmin - z, hi = qmax - z.
detail::QdqParams<double> params_for(float s, double z, int64_t qmin, int64_t qmax) {
  const float inv = 1.0f / s;
  return {static_cast<double>(s), static_cast<double>(inv), static_cast<double>(qmin) - z,
          static_cast<double>(qmax) - z};
}

// Runs f with QdqParams<C>, C = T for narrow grids (the vectorised float path), double for wide ones.
template <class T, class F> void with_params(const detail::QdqParams<double>& p, F&& f) {
  if (p.hi - p.lo <= 65536.0 && std::abs(p.lo) < 1e6 && std::abs(p.hi) < 1e6) {
    f(detail::QdqParams<T>(static_cast<T>(p.scale), static_cast<T>(p.inv), static_cast<T>(p.lo),
                           static_cast<T>(p.hi)));
  } else {
    f(p);
  }
}

std::vector<float> floats_of(const Tensor& t) { return t.detach().to(DType::f32).contiguous().to_vector<float>(); }

// ---- plain ops (integer or float zero points) ------------------------------------------------------

struct FakeQuantOp : OpBase {
  static constexpr const char* kName = "fake_quantize_affine";
  std::vector<float> scale;
  std::vector<double> zp;
  bool float_zp = false;
  int64_t qmin = 0, qmax = 0, axis = -1;
  SavedTensor saved_x;

  Tensor forward(const Tensor& xin) {
    Tensor x = xin.contiguous();
    if (recording) saved_x = x;
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    const Layout l = layout_of(x.shape(), axis);
    visit_fp(x, kName, [&]<class T>() {
      const T* px = x.data<T>();
      T* py = y.data<T>();
      for_each_block(l, [&](int64_t c, int64_t off, int64_t n) {
        if (float_zp) {
          const float inv = 1.0f / scale[c];
          // PyTorch: q = lrint(zp + x*inv) in the input type, then (clamp(q) - zp) * scale in double.
          const T z = static_cast<T>(zp[c]);
          for (int64_t i = 0; i < n; ++i) {
            const double q = std::nearbyint(z + px[off + i] * static_cast<T>(inv));
            const double qc = std::clamp(q, double(qmin), double(qmax));
            py[off + i] = static_cast<T>((qc - static_cast<double>(z)) * static_cast<double>(scale[c]));
          }
          return;
        }
        with_params<T>(params_for(scale[c], zp[c], qmin, qmax),
                       [&](const auto& p) { detail::qdq_forward<detail::Tie::half_even>(px + off, py + off, n, p); });
      });
    });
    return y;
  }

  std::vector<Tensor> backward(const Tensor& gin) {
    const Tensor& x = saved_x.get(kName);
    Tensor g = gin.contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    const Layout l = layout_of(x.shape(), axis);
    visit_fp(x, kName, [&]<class T>() {
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      T* pd = dx.data<T>();
      for_each_block(l, [&](int64_t c, int64_t off, int64_t n) {
        if (float_zp) {
          const float inv = 1.0f / scale[c];
          const T z = static_cast<T>(zp[c]);
          for (int64_t i = 0; i < n; ++i) {
            const double q = std::nearbyint(z + px[off + i] * static_cast<T>(inv));
            pd[off + i] = (q >= double(qmin) && q <= double(qmax)) ? pg[off + i] : T(0);
          }
          return;
        }
        with_params<T>(params_for(scale[c], zp[c], qmin, qmax),
                       [&](const auto& p) { detail::qdq_backward_ste<detail::Tie::half_even>(px + off, pg + off, pd + off, n, p); });
      });
    });
    return {dx};
  }
};

// ---- learnable ops ------------------------------------------------------------------------------

struct LearnableFakeQuantOp : OpBase {
  static constexpr const char* kName = "fake_quantize_learnable_affine";
  std::vector<float> scale;
  std::vector<float> zp_param;  // the float zero-point parameter
  std::vector<double> zf;       // forward integer zero point: clamp(rint(zp))
  int64_t qmin = 0, qmax = 0, axis = -1;
  double grad_factor = 1.0;
  bool torch_compat = false;
  Shape param_shape;
  SavedTensor saved_x;

  Tensor forward(const Tensor& xin, const Tensor& /*scale*/, const Tensor& /*zero_point*/) {
    Tensor x = xin.contiguous();
    if (recording) saved_x = x;
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    const Layout l = layout_of(x.shape(), axis);
    visit_fp(x, kName, [&]<class T>() {
      const T* px = x.data<T>();
      T* py = y.data<T>();
      for_each_block(l, [&](int64_t c, int64_t off, int64_t n) {
        with_params<T>(params_for(scale[c], zf[c], qmin, qmax),
                       [&](const auto& p) { detail::qdq_forward<detail::Tie::half_even>(px + off, py + off, n, p); });
      });
    });
    return y;
  }

  std::vector<Tensor> backward(const Tensor& gin) {
    const Tensor& x = saved_x.get(kName);
    Tensor g = gin.contiguous();
    Tensor dx = Tensor::empty(x.shape(), x.dtype());
    const Layout l = layout_of(x.shape(), axis);
    std::vector<double> ds(l.channels, 0.0), dz(l.channels, 0.0);
    visit_fp(x, kName, [&]<class T>() {
      const T* px = x.data<T>();
      const T* pg = g.data<T>();
      T* pd = dx.data<T>();
      for_each_block(l, [&](int64_t c, int64_t off, int64_t n) {
        if (torch_compat) {
          compat_block<T>(c, px + off, pg + off, pd + off, n, ds[c], dz[c]);
          return;
        }
        detail::GradSums s;
        with_params<T>(params_for(scale[c], zf[c], qmin, qmax), [&](const auto& p) {
          s = detail::qdq_backward_learnable<detail::Tie::half_even>(px + off, pg + off, pd + off, n, p);
        });
        ds[c] += s.s_scale;
        dz[c] += -static_cast<double>(scale[c]) * s.s_out;
      });
    });
    std::vector<float> gs(l.channels), gz(l.channels);
    for (int64_t c = 0; c < l.channels; ++c) {
      gs[c] = static_cast<float>(ds[c] * grad_factor);
      gz[c] = static_cast<float>(dz[c] * grad_factor);
    }
    Tensor tgs = Tensor::from_vector(gs, param_shape), tgz = Tensor::from_vector(gz, param_shape);
    return {needs_grad(0) ? dx : Tensor(), needs_grad(1) ? tgs : Tensor(), needs_grad(2) ? tgz : Tensor()};
  }

  // PyTorch 1.13 CPU backward, quirks included (pytorch-fake-quant.md §5).
  template <class T>
  void compat_block(int64_t c, const T* px, const T* pg, T* pd, int64_t n, double& ds, double& dz) const {
    const float s = scale[c];
    const float inv = 1.0f / s;
    float zb;
    if (axis < 0) {
      zb = static_cast<float>(static_cast<int64_t>(
          std::clamp(zp_param[c] + 0.5f, static_cast<float>(qmin), static_cast<float>(qmax))));
    } else {
      zb = std::clamp(std::nearbyint(zp_param[c]), static_cast<float>(qmin), static_cast<float>(qmax));
    }
    for (int64_t i = 0; i < n; ++i) {
      const T xv = px[i];
      const T gv = pg[i];
      const T qb = std::nearbyint(static_cast<T>(zb) + xv * static_cast<T>(inv));
      if (qb >= T(qmin) && qb <= T(qmax)) {
        pd[i] = gv;
        ds += static_cast<double>(gv * ((qb - static_cast<T>(zb)) * static_cast<T>(s) - xv) * static_cast<T>(inv));
      } else {
        pd[i] = 0;
        ds += static_cast<double>(gv) * (qb < T(qmin) ? double(qmin) - zb : double(qmax) - zb);
        dz += -static_cast<double>(gv) * s;
      }
    }
  }
};

void check_channel_param(const char* op, const char* what, const Tensor& p, int64_t channels) {
  QFORGE_CHECK(p.dim() == 1 && p.numel() == channels, "{}: {} must be 1-D with {} elements, got shape {}", op, what,
               channels, shape_str(p.shape()));
}

}  // namespace

Tensor fake_quantize_per_tensor_affine(const Tensor& x, double scale, int64_t zero_point, int64_t qmin, int64_t qmax) {
  constexpr const char* op = "fake_quantize_per_tensor_affine";
  check_range(op, qmin, qmax);
  QFORGE_CHECK(zero_point >= qmin && zero_point <= qmax, "{}: zero_point {} outside [{}, {}]", op, zero_point, qmin,
               qmax);
  FakeQuantOp o;
  o.scale = {static_cast<float>(scale)};
  check_scale(op, o.scale[0]);
  o.zp = {static_cast<double>(zero_point)};
  o.qmin = qmin;
  o.qmax = qmax;
  return ops::apply(std::move(o), x);
}

Tensor fake_quantize_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                                        int64_t qmin, int64_t qmax) {
  constexpr const char* op = "fake_quantize_per_channel_affine";
  check_range(op, qmin, qmax);
  QFORGE_CHECK(axis >= 0 && axis < x.dim(), "{}: axis {} out of range for input of shape {}", op, axis,
               shape_str(x.shape()));
  const int64_t channels = x.size(axis);
  check_channel_param(op, "scale", scale, channels);
  check_channel_param(op, "zero_point", zero_point, channels);
  FakeQuantOp o;
  o.scale = floats_of(scale);
  for (float s : o.scale) check_scale(op, s);
  o.float_zp = is_floating(zero_point.dtype());
  o.zp = zero_point.detach().to(DType::f64).contiguous().to_vector<double>();
  if (!o.float_zp)
    for (double z : o.zp)
      QFORGE_CHECK(z >= double(qmin) && z <= double(qmax), "{}: zero_point {} outside [{}, {}]", op, z, qmin, qmax);
  o.qmin = qmin;
  o.qmax = qmax;
  o.axis = axis;
  return ops::apply(std::move(o), x);
}

namespace {

Tensor learnable(const char* op, const Tensor& x, const Tensor& scale, const Tensor& zero_point, int64_t axis,
                 int64_t qmin, int64_t qmax, double grad_factor, bool torch_compat) {
  check_range(op, qmin, qmax);
  int64_t channels = 1;
  if (axis >= 0) {
    QFORGE_CHECK(axis < x.dim(), "{}: axis {} out of range for input of shape {}", op, axis, shape_str(x.shape()));
    channels = x.size(axis);
  }
  QFORGE_CHECK(scale.numel() == channels && zero_point.numel() == channels,
               "{}: scale {} and zero_point {} must have {} element(s)", op, shape_str(scale.shape()),
               shape_str(zero_point.shape()), channels);
  QFORGE_CHECK(is_floating(scale.dtype()) && is_floating(zero_point.dtype()),
               "{}: scale and zero_point must be floating tensors", op);
  LearnableFakeQuantOp o;
  o.scale = floats_of(scale);
  for (float s : o.scale) check_scale(op, s);
  o.zp_param = floats_of(zero_point);
  for (float z : o.zp_param)
    o.zf.push_back(std::clamp(static_cast<double>(std::nearbyint(z)), double(qmin), double(qmax)));
  o.qmin = qmin;
  o.qmax = qmax;
  o.axis = axis;
  o.grad_factor = grad_factor;
  o.torch_compat = torch_compat;
  o.param_shape = scale.shape();
  Tensor out = ops::apply(std::move(o), x, scale, zero_point);
  return out;
}

}  // namespace

Tensor _fake_quantize_learnable_per_tensor_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                  int64_t qmin, int64_t qmax, double grad_factor, bool torch_compat) {
  return learnable("_fake_quantize_learnable_per_tensor_affine", x, scale, zero_point, -1, qmin, qmax, grad_factor,
                   torch_compat);
}

Tensor _fake_quantize_learnable_per_channel_affine(const Tensor& x, const Tensor& scale, const Tensor& zero_point,
                                                   int64_t axis, int64_t qmin, int64_t qmax, double grad_factor,
                                                   bool torch_compat) {
  QFORGE_CHECK(axis >= 0, "_fake_quantize_learnable_per_channel_affine: axis must be >= 0, got {}", axis);
  return learnable("_fake_quantize_learnable_per_channel_affine", x, scale, zero_point, axis, qmin, qmax, grad_factor,
                   torch_compat);
}

}  // namespace qforge::quant
