// Exact simulation: a Program evaluated with float64 tensor ops on integer codes + requant.hpp.
// See exact.hpp.
#include "quant/runtime/exact.hpp"

#include "engine/autograd.hpp"
#include "engine/error.hpp"
#include "engine/ops/ops.hpp"
#include "quant/runtime/program16.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace qforge::quant::runtime {

namespace kn = qforge::kernels;

namespace {

// Codes are float64 tensors holding integers, [N, shape...] NCHW.
Tensor f64_from(const std::vector<std::int8_t>& v, const Shape& s) {
  std::vector<double> d(v.begin(), v.end());
  return Tensor::from_vector(d, s);
}
Tensor f64_from(const std::vector<std::int32_t>& v) {
  std::vector<double> d(v.begin(), v.end());
  return Tensor::from_vector(d, {static_cast<std::int64_t>(v.size())});
}

// An exactly-integer float64 accumulator -> int32 with the kernels' wrap-around (Note [acc wrap]).
inline std::int32_t acc32(double a) {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::int64_t>(a)));
}

// Note [16-bit codes] (program16.hpp): 16-bit programs keep the exact int64 sum (float64 is exact:
// |acc| < 2^23·K ≪ 2^53) and requantize it with requantize_output64.
inline std::int64_t acc64(double a) { return static_cast<std::int64_t>(a); }

Shape batch_shape(std::int64_t n, const std::vector<std::int64_t>& s) {
  Shape out{n};
  out.insert(out.end(), s.begin(), s.end());
  return out;
}

Tensor requantize_per_channel(const Tensor& acc, const Op& op, const QParams& qo, std::int64_t channels,
                              std::int64_t inner, kn::Rounding rounding, bool wide) {
  Tensor a = acc.contiguous();
  Tensor y = Tensor::uninitialized(a.shape(), DType::f64);
  const double* pa = a.data<double>();
  double* py = y.data<double>();
  const std::int64_t outer = a.numel() / (channels * inner);
  for (std::int64_t o = 0; o < outer; ++o)
    for (std::int64_t c = 0; c < channels; ++c)
      for (std::int64_t i = 0; i < inner; ++i) {
        const std::int64_t k = (o * channels + c) * inner + i;
        py[k] = wide ? kn::requantize_output64(acc64(pa[k]), op.mult[c], qo.zero_point, op.range.min, op.range.max)
                     : kn::requantize_output(acc32(pa[k]), op.mult[c], qo.zero_point, op.range.min, op.range.max, rounding);
      }
  return y;
}

Tensor run_recurrent(const Op& op, const Tensor& x, const QParams& qx, bool wide) {
  const bool lstm = op.kind == OpKind::lstm;
  const std::int64_t N = x.size(0), T = x.size(1), F = x.size(2), H = op.hidden, GH = op.out_c;
  const Tensor wi = f64_from(op.weights, {GH, F}), wh = f64_from(op.weights_hh, {GH, H});
  const Tensor acc_x = ops::linear(ops::add(x, -static_cast<double>(qx.zero_point)), wi, f64_from(op.bias)).contiguous();
  const Tensor bh = lstm ? Tensor() : f64_from(op.bias_hh);
  const std::int32_t zh = op.cell.hidden_zero_point;
  std::vector<double> h(static_cast<std::size_t>(N * H), static_cast<double>(zh));
  std::vector<std::int32_t> c(static_cast<std::size_t>(N * H), 0);
  Tensor out = Tensor::uninitialized({N, T, H}, DType::f64);
  double* po = out.data<double>();
  const double* ax = acc_x.data<double>();
  for (std::int64_t t = 0; t < T; ++t) {
    const Tensor hc = ops::add(Tensor::from_vector(h, {N, H}), -static_cast<double>(zh));
    const Tensor acc_h = ops::linear(hc, wh, bh).contiguous();
    const double* ah = acc_h.data<double>();
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < H; ++j) {
        auto xa = [&](std::int64_t g) { return acc32(ax[(n * T + t) * GH + g * H + j]); };
        auto ha = [&](std::int64_t g) { return acc32(ah[n * GH + g * H + j]); };
        auto pre = [&](std::int64_t g) {
          if (wide)
            return kn::gate_preactivation64(acc64(ax[(n * T + t) * GH + g * H + j]), op.mult[g * H + j],
                                            acc64(ah[n * GH + g * H + j]), op.mult_hh[g * H + j]);
          return kn::gate_preactivation(xa(g), op.mult[g * H + j], ha(g), op.mult_hh[g * H + j]);
        };
        const std::int64_t k = n * H + j;
        std::int32_t hn;
        if (lstm) {
          const std::int32_t ig = kn::sigmoid_q15(pre(0)), fg = kn::sigmoid_q15(pre(1)), gg = kn::tanh_q15(pre(2)),
                             og = kn::sigmoid_q15(pre(3));
          c[k] = kn::lstm_cell_update(ig, fg, gg, c[k], op.cell);
          hn = kn::lstm_hidden(og, c[k], op.cell);
        } else {
          auto rq_x = [&](std::int64_t g) {
            return kn::sat16(wide ? kn::requantize_single64(acc64(ax[(n * T + t) * GH + g * H + j]), op.mult[g * H + j])
                                  : kn::requantize_single(xa(g), op.mult[g * H + j]));
          };
          auto rq_h = [&](std::int64_t g) {
            return kn::sat16(wide ? kn::requantize_single64(acc64(ah[n * GH + g * H + j]), op.mult_hh[g * H + j])
                                  : kn::requantize_single(ha(g), op.mult_hh[g * H + j]));
          };
          const std::int32_t r = kn::sigmoid_q15(kn::sat16(rq_x(0) + rq_h(0)));
          const std::int32_t z = kn::sigmoid_q15(kn::sat16(rq_x(1) + rq_h(1)));
          const std::int32_t nn = kn::gru_candidate(r, rq_x(2), rq_h(2));
          hn = kn::gru_hidden(z, nn, static_cast<std::int32_t>(h[k]), op.cell);
        }
        po[(n * T + t) * H + j] = hn;
      }
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < H; ++j) h[n * H + j] = po[(n * T + t) * H + j];
  }
  return out;
}

Tensor run_op(const Program& p, const Op& op, const std::vector<Tensor>& vals) {
  const Value& iv = p.values[op.inputs[0]];
  const Value& ov = p.values[op.output];
  const Tensor& x = vals[op.inputs[0]];
  const std::int64_t N = x.size(0);
  const bool wide = is_16bit(iv.q) || is_16bit(ov.q);
  switch (op.kind) {
    case OpKind::conv2d: {
      const Tensor w = f64_from(op.weights, {op.out_c, op.in_c / op.groups, op.kh, op.kw});
      ops::Conv2dParams cp;
      cp.stride = {op.stride_h, op.stride_w};
      cp.padding = {op.pad_h, op.pad_w};
      cp.dilation = {op.dilation_h, op.dilation_w};
      cp.groups = op.groups;
      const Tensor acc = ops::conv2d(ops::add(x, -static_cast<double>(iv.q.zero_point)), w, f64_from(op.bias), cp);
      return requantize_per_channel(acc, op, ov.q, op.out_c, acc.size(2) * acc.size(3), p.rounding(), wide);
    }
    case OpKind::linear: {
      const Tensor w = f64_from(op.weights, {op.out_c, op.in_c});
      const Tensor acc = ops::linear(ops::add(x, -static_cast<double>(iv.q.zero_point)), w, f64_from(op.bias));
      return requantize_per_channel(acc, op, ov.q, op.out_c, 1, p.rounding(), wide);
    }
    case OpKind::maxpool2d: {
      ops::Pool2dParams pp;
      pp.kernel = {op.kh, op.kw};
      pp.stride = {op.stride_h, op.stride_w};
      pp.padding = {op.pad_h, op.pad_w};
      return ops::max_pool2d(x, pp);
    }
    case OpKind::avgpool2d: {
      const Tensor xc = x.contiguous();
      const std::int64_t C = iv.shape[0], H = iv.shape[1], W = iv.shape[2], OH = ov.shape[1], OW = ov.shape[2];
      Tensor y = Tensor::uninitialized({N, C, OH, OW}, DType::f64);
      const double* px = xc.data<double>();
      double* py = y.data<double>();
      const std::int32_t z = iv.q.zero_point;
      const bool ort = p.profile == kn::ArithProfile::onnxruntime;  // QLinearAveragePool
      const kn::AvgPoolFloat avg{iv.q.scale, ov.q.scale, iv.q.zero_point, ov.q.zero_point, ov.q.qmin, ov.q.qmax};
      for (std::int64_t nc = 0; nc < N * C; ++nc)
        for (std::int64_t oh = 0; oh < OH; ++oh)
          for (std::int64_t ow = 0; ow < OW; ++ow) {
            std::int32_t sum = 0, valid = 0;
            float fsum = 0.0f;
            for (std::int64_t ky = 0; ky < op.kh; ++ky)
              for (std::int64_t kx = 0; kx < op.kw; ++kx) {
                const std::int64_t ih = oh * op.stride_h - op.pad_h + ky, iw = ow * op.stride_w - op.pad_w + kx;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                sum += static_cast<std::int32_t>(px[(nc * H + ih) * W + iw]) - z;
                fsum = kn::average_tap(fsum, static_cast<std::int32_t>(px[(nc * H + ih) * W + iw]), avg);
                ++valid;
              }
            const std::int32_t count = op.count_include_pad ? static_cast<std::int32_t>(op.kh * op.kw) : valid;
            py[(nc * OH + oh) * OW + ow] =
                ort ? kn::average_float_result(fsum, count, avg, kn::ActType::s8) : z + kn::average_value(sum, count);
          }
      return y;
    }
    case OpKind::global_avgpool: {
      const Tensor s = ops::sum(ops::add(x, -static_cast<double>(iv.q.zero_point)), {2, 3}, true).contiguous();
      Tensor y = Tensor::uninitialized(s.shape(), DType::f64);
      for (std::int64_t k = 0; k < s.numel(); ++k)
        y.data<double>()[k] = wide ? kn::requantize_output64(acc64(s.data<double>()[k]), op.m, ov.q.zero_point,
                                                             op.range.min, op.range.max)
                                   : kn::requantize_output(acc32(s.data<double>()[k]), op.m, ov.q.zero_point,
                                                           op.range.min, op.range.max, p.rounding());
      return y;
    }
    case OpKind::add: {
      const Tensor a = x.contiguous(), b = vals[op.inputs[1]].contiguous();
      Tensor y = Tensor::uninitialized(a.shape(), DType::f64);
      for (std::int64_t k = 0; k < a.numel(); ++k)
        y.data<double>()[k] = wide ? kn::add_value64(static_cast<std::int32_t>(a.data<double>()[k]),
                                                     static_cast<std::int32_t>(b.data<double>()[k]), op.add)
                                   : kn::add_value(static_cast<std::int32_t>(a.data<double>()[k]),
                                                   static_cast<std::int32_t>(b.data<double>()[k]), op.add);
      return y;
    }
    case OpKind::requant: {
      const Tensor a = x.contiguous();
      Tensor y = Tensor::uninitialized(a.shape(), DType::f64);
      for (std::int64_t k = 0; k < a.numel(); ++k) {
        const auto q = static_cast<std::int32_t>(a.data<double>()[k]);
        y.data<double>()[k] =
            op.identity ? std::clamp(q, op.range.min, op.range.max)
            : p.profile == kn::ArithProfile::onnxruntime  // DequantizeLinear → QuantizeLinear
                ? kn::dequantize_quantize_value(q, iv.q.scale, iv.q.zero_point, ov.q.scale, ov.q.zero_point,
                                                op.range.min, op.range.max)
                : kn::requantize_output(q - iv.q.zero_point, op.m, ov.q.zero_point, op.range.min, op.range.max);
      }
      return y;
    }
    case OpKind::flatten: return x.reshape({N, ov.numel()});
    case OpKind::image_as_sequence: return x.permute({0, 2, 1, 3}).reshape({N, iv.shape[1], iv.shape[0] * iv.shape[2]});
    case OpKind::last_step: return x.select(1, x.size(1) - 1).contiguous();
    case OpKind::lstm:
    case OpKind::gru: return run_recurrent(op, x.contiguous(), iv.q, wide);
  }
  throw Error("exact simulation: unknown op");
}

Tensor to_codes(const Tensor& v, const QParams& q) { return v.to(is_16bit(q) ? DType::i16 : DType::i8); }

}  // namespace

std::vector<Tensor> execute_exact_all(const Program& p, const Tensor& x_in) {
  NoGradGuard ng;
  const Value& iv = p.input_value();
  QFORGE_CHECK(x_in.defined() && x_in.dim() == static_cast<int64_t>(iv.shape.size()) + 1,
               "exact simulation: input must be [N, {}], got {}", fmt::join(iv.shape, ", "),
               x_in.defined() ? shape_str(x_in.shape()) : "undefined");
  const Tensor x = x_in.to(DType::f32).contiguous();
  std::vector<Tensor> vals(p.values.size());
  {
    Tensor q = Tensor::uninitialized(x.shape(), DType::f64);
    for (std::int64_t k = 0; k < x.numel(); ++k)
      q.data<double>()[k] =
          kn::profile_quantize_value(p.profile, x.data<float>()[k], iv.q.scale, iv.q.zero_point, iv.q.qmin, iv.q.qmax);
    vals[p.input] = q;
  }
  for (const Op& op : p.ops) {
    vals[op.output] = run_op(p, op, vals);
    QFORGE_CHECK(vals[op.output].shape() == batch_shape(x.size(0), p.values[op.output].shape),
                 "exact simulation: op {} produced {}, expected {}", op.name, shape_str(vals[op.output].shape()),
                 shape_str(batch_shape(x.size(0), p.values[op.output].shape)));
  }
  std::vector<Tensor> out;
  for (std::size_t v = 0; v < vals.size(); ++v)
    out.push_back(vals[v].defined() ? to_codes(vals[v], p.values[v].q) : Tensor());
  return out;
}

Tensor execute_exact_codes(const Program& p, const Tensor& x) { return execute_exact_all(p, x)[p.output]; }

Tensor execute_exact(const Program& p, const Tensor& x) {
  const QParams q = p.output_value().q;
  const Tensor codes = execute_exact_codes(p, x).to(DType::i32).contiguous();
  Tensor out = Tensor::uninitialized(codes.shape(), DType::f32);
  for (std::int64_t k = 0; k < codes.numel(); ++k)
    out.data<float>()[k] = kn::dequantize_value(codes.data<std::int32_t>()[k], q.scale, q.zero_point);
  return out;
}

ExactSim::ExactSim(QuantSim& sim, const LowerOptions& opt) : program_(lower(sim, opt)) {}

Tensor exact_forward(QuantSim& sim, const Tensor& x, const LowerOptions& opt) {
  return execute_exact(lower(sim, opt), x);
}

}  // namespace qforge::quant::runtime
