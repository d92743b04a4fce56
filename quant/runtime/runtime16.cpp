// Integer runtime for 16-bit-activation programs. See runtime16.hpp and program16.hpp.
#include "quant/runtime/runtime16.hpp"

#include "quant/runtime/layout.hpp"

#include "engine/error.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

namespace qforge::quant::runtime {

namespace kn = qforge::kernels;

struct Runtime16::Prepared {
  kn::PackedConv2d16 conv;
  std::size_t conv_ws = 0;
  kn::PackedGemm16 gemm, gi, gh;
};

namespace {
kn::Gemm16Layer gemm_layer(const std::vector<std::int8_t>& w, std::int64_t n, std::int64_t k, const std::int32_t* bias,
                           std::int32_t z_in, const kn::QuantizedMultiplier* m, std::int32_t z_out,
                           kn::ActivationRange r) {
  kn::Gemm16Layer l;
  l.weights = w.data();
  l.n = static_cast<int>(n);
  l.k = static_cast<int>(k);
  l.bias = bias;
  l.in_zero_point = z_in;
  l.multipliers = m;
  l.per_channel = true;
  l.out_zero_point = z_out;
  l.range = r;
  return l;
}
}  // namespace

Runtime16::Runtime16(Program program, int threads) : p_(std::move(program)), threads_(threads) {
  if (p_.profile != kn::ArithProfile::dsp)
    throw Error(fmt::format("int16 runtime: 16-bit activations need the dsp arithmetic profile, the program has '{}'",
                            kn::profile_name(p_.profile)));
  for (const Op& op : p_.ops) {
    auto p = std::make_unique<Prepared>();
    const Value& in = p_.values.at(op.inputs.at(0));
    const Value& out = p_.values.at(op.output);
    switch (op.kind) {
      case OpKind::conv2d: {
        kn::Conv2dShape s;
        s.in_c = static_cast<int>(op.in_c);
        s.in_h = static_cast<int>(in.shape[1]);
        s.in_w = static_cast<int>(in.shape[2]);
        s.out_c = static_cast<int>(op.out_c);
        s.kernel_h = static_cast<int>(op.kh);
        s.kernel_w = static_cast<int>(op.kw);
        s.stride_h = static_cast<int>(op.stride_h);
        s.stride_w = static_cast<int>(op.stride_w);
        s.pad_top = s.pad_bottom = static_cast<int>(op.pad_h);
        s.pad_left = s.pad_right = static_cast<int>(op.pad_w);
        s.dilation_h = static_cast<int>(op.dilation_h);
        s.dilation_w = static_cast<int>(op.dilation_w);
        s.groups = static_cast<int>(op.groups);
        p->conv = kn::PackedConv2d16(s, op.weights.data(), op.bias.data(), in.q.zero_point, op.mult.data(),
                                     out.q.zero_point, op.range);
        p->conv_ws = p->conv.workspace_bytes();
        break;
      }
      case OpKind::linear:
        p->gemm = kn::PackedGemm16(gemm_layer(op.weights, op.out_c, op.in_c, op.bias.data(), in.q.zero_point,
                                              op.mult.data(), out.q.zero_point, op.range));
        break;
      case OpKind::lstm: {
        // Gate GEMMs requantize to Q3.12 (z 0, full int16 range): gate_preactivation64's two roundings.
        const kn::ActivationRange full{-32768, 32767};
        p->gi = kn::PackedGemm16(
            gemm_layer(op.weights, op.out_c, op.in_c, op.bias.data(), in.q.zero_point, op.mult.data(), 0, full));
        p->gh = kn::PackedGemm16(gemm_layer(op.weights_hh, op.out_c, op.hidden, nullptr, op.cell.hidden_zero_point,
                                            op.mult_hh.data(), 0, full));
        break;
      }
      case OpKind::gru:
        throw Error(fmt::format("int16 runtime: op '{}' (gru) has no 16-bit kernel yet", op.name));
      case OpKind::add:
        if (op.add.method != kn::AddMethod::fixed_point)
          throw Error(fmt::format("int16 runtime: op '{}' (add) needs fixed-point add parameters", op.name));
        break;
      default: break;
    }
    prepared_.push_back(std::move(p));
  }
}

Runtime16::~Runtime16() = default;

void Runtime16::ensure_buffers(std::int64_t batch) {
  if (batch == batch_ && buf_.size() == p_.values.size()) return;
  buf_.assign(p_.values.size(), {});
  for (std::size_t v = 0; v < p_.values.size(); ++v)
    buf_[v].resize(static_cast<std::size_t>(batch * p_.values[v].numel()));
  std::size_t ws = 64;
  for (std::size_t i = 0; i < p_.ops.size(); ++i) {
    ws = std::max(ws, prepared_[i]->conv_ws);
    if (p_.ops[i].kind == OpKind::lstm)
      ws = std::max(ws, static_cast<std::size_t>(batch * p_.ops[i].hidden) * (8 + 1 + 1) * sizeof(std::int16_t));
  }
  workspace_.assign(ws + 64, 0);
  batch_ = batch;
}

void Runtime16::quantize_input(const Tensor& x_in) {
  const Value& iv = p_.input_value();
  const Tensor x = input_to_buffer_layout(iv, x_in, "int16 runtime");
  ensure_buffers(x.size(0));
  kn::active_kernels16().quantize(x.numel(), x.data<float>(), buf_[p_.input].data(), 1.0f / iv.q.scale,
                                  iv.q.zero_point, iv.q.qmin, iv.q.qmax);
}

void Runtime16::load_input_codes(const Tensor& codes_in) {
  const Value& iv = p_.input_value();
  const Tensor c = codes_to_buffer_layout(iv, codes_in, DType::i16, "int16 runtime");
  ensure_buffers(c.size(0));
  std::memcpy(buf_[p_.input].data(), c.data<std::int16_t>(), static_cast<std::size_t>(c.numel()) * 2);
}

void Runtime16::execute(std::vector<double>& op_seconds) {
  const kn::Kernel16Table& K = kn::active_kernels16();
  const int N = static_cast<int>(batch_);
  if (op_seconds.size() != p_.ops.size()) op_seconds.assign(p_.ops.size(), 0.0);
  for (std::size_t i = 0; i < p_.ops.size(); ++i) {
    const double t0 = omp_get_wtime();
    const Op& op = p_.ops[i];
    Prepared& pr = *prepared_[i];
    const Value& iv = p_.values[op.inputs[0]];
    const Value& ov = p_.values[op.output];
    const std::int16_t* x = buf_[op.inputs[0]].data();
    std::int16_t* y = buf_[op.output].data();
    switch (op.kind) {
      case OpKind::conv2d: {
        kn::Conv2d16Weights w = pr.conv.view();
        w.shape.batch = N;
        K.conv2d(w, x, y, workspace_.data(), threads_);
        break;
      }
      case OpKind::linear:
        K.gemm_requant(static_cast<int>(N * (iv.numel() / op.in_c)), x, op.in_c, pr.gemm.view(), y, op.out_c, threads_);
        break;
      case OpKind::maxpool2d:
      case OpKind::avgpool2d: {
        kn::Pool2dParams pp;
        pp.batch = N;
        pp.in_h = static_cast<int>(iv.shape[1]);
        pp.in_w = static_cast<int>(iv.shape[2]);
        pp.channels = static_cast<int>(iv.shape[0]);
        pp.kernel_h = static_cast<int>(op.kh);
        pp.kernel_w = static_cast<int>(op.kw);
        pp.stride_h = static_cast<int>(op.stride_h);
        pp.stride_w = static_cast<int>(op.stride_w);
        pp.pad_top = pp.pad_bottom = static_cast<int>(op.pad_h);
        pp.pad_left = pp.pad_right = static_cast<int>(op.pad_w);
        pp.zero_point = iv.q.zero_point;
        pp.count_include_pad = op.count_include_pad;
        (op.kind == OpKind::maxpool2d ? K.maxpool2d : K.avgpool2d)(pp, x, y, threads_);
        break;
      }
      case OpKind::global_avgpool: {
        kn::GlobalAvgPoolParams g;
        g.batch = N;
        g.pixels = static_cast<int>(iv.shape[1] * iv.shape[2]);
        g.channels = static_cast<int>(iv.shape[0]);
        g.in_zero_point = iv.q.zero_point;
        g.out_zero_point = ov.q.zero_point;
        g.act_min = op.range.min;
        g.act_max = op.range.max;
        g.multiplier = op.m;
        K.global_avgpool(g, x, y, threads_);
        break;
      }
      case OpKind::add: K.add(static_cast<std::int64_t>(N) * ov.numel(), x, buf_[op.inputs[1]].data(), y, op.add); break;
      case OpKind::requant: {
        kn::RequantParams r;
        r.in_zero_point = iv.q.zero_point;
        r.out_zero_point = ov.q.zero_point;
        r.act_min = op.range.min;
        r.act_max = op.range.max;
        r.multiplier = op.m;
        r.identity = op.identity;
        K.requant(static_cast<std::int64_t>(N) * ov.numel(), x, y, r);
        break;
      }
      case OpKind::flatten: {  // NHWC -> CHW order
        const std::int64_t C = iv.shape[0], HW = iv.shape[1] * iv.shape[2];
        for (std::int64_t n = 0; n < N; ++n)
          for (std::int64_t s = 0; s < HW; ++s)
            for (std::int64_t c = 0; c < C; ++c) y[(n * C + c) * HW + s] = x[(n * HW + s) * C + c];
        break;
      }
      case OpKind::image_as_sequence: {  // NHWC [H][W][C] -> [H][C*W]
        const std::int64_t C = iv.shape[0], H = iv.shape[1], W = iv.shape[2];
        for (std::int64_t n = 0; n < N; ++n)
          for (std::int64_t h = 0; h < H; ++h)
            for (std::int64_t w = 0; w < W; ++w)
              for (std::int64_t c = 0; c < C; ++c) y[((n * H + h) * C + c) * W + w] = x[((n * H + h) * W + w) * C + c];
        break;
      }
      case OpKind::last_step: {
        const std::int64_t T = iv.shape[0], F = iv.shape[1];
        for (std::int64_t n = 0; n < N; ++n)
          std::memcpy(y + n * F, x + (n * T + T - 1) * F, static_cast<std::size_t>(F) * sizeof(std::int16_t));
        break;
      }
      case OpKind::lstm: {
        const std::int64_t T = iv.shape[0], F = iv.shape[1], H = op.hidden;
        kn::Rnn16Weights w{pr.gi.view(), pr.gh.view(), op.cell, static_cast<int>(H)};
        auto* ws = reinterpret_cast<std::int16_t*>(workspace_.data());
        std::int16_t* cell = ws + 8 * H * N;
        std::int16_t* h0 = cell + H * N;
        std::fill(cell, cell + H * N, std::int16_t{0});
        std::fill(h0, h0 + H * N, static_cast<std::int16_t>(op.cell.hidden_zero_point));
        for (std::int64_t t = 0; t < T; ++t) {
          const std::int16_t* hp = t == 0 ? h0 : y + (t - 1) * H;
          K.lstm_step(w, N, x + t * F, T * F, hp, t == 0 ? H : T * H, cell, y + t * H, T * H, ws, threads_);
        }
        break;
      }
      case OpKind::gru: break;  // refused at construction
    }
    op_seconds[i] += omp_get_wtime() - t0;
  }
}

std::vector<std::string> Runtime16::op_kernels() const {
  const kn::Isa isa = kn::active_isa();
  std::vector<std::string> out;
  for (const Op& op : p_.ops) {
    auto nm = [&](kn::Kernel16Kind k) { return std::string(kn::kernel16_name(k, isa)); };
    switch (op.kind) {
      case OpKind::conv2d: out.push_back(nm(kn::Kernel16Kind::conv2d) + " > " + nm(kn::Kernel16Kind::gemm_requant)); break;
      case OpKind::linear: out.push_back(nm(kn::Kernel16Kind::gemm_requant)); break;
      case OpKind::maxpool2d: out.push_back(nm(kn::Kernel16Kind::maxpool2d)); break;
      case OpKind::avgpool2d: out.push_back(nm(kn::Kernel16Kind::avgpool2d)); break;
      case OpKind::global_avgpool: out.push_back(nm(kn::Kernel16Kind::global_avgpool)); break;
      case OpKind::add: out.push_back(nm(kn::Kernel16Kind::add)); break;
      case OpKind::requant: out.push_back(nm(kn::Kernel16Kind::requant)); break;
      case OpKind::lstm: out.push_back(nm(kn::Kernel16Kind::lstm_step) + " > " + nm(kn::Kernel16Kind::gemm_requant)); break;
      default: out.emplace_back(); break;
    }
  }
  return out;
}

Tensor Runtime16::value_codes(int v) const {
  return codes_from_buffer(p_.values[v], batch_, buf_[v].data(), DType::i16);
}

Tensor Runtime16::dequantized_output() const {
  const Value& ov = p_.output_value();
  Tensor codes = value_codes(p_.output).contiguous();
  Tensor out = Tensor::uninitialized(codes.shape(), DType::f32);
  kn::active_kernels16().dequantize(codes.numel(), codes.data<std::int16_t>(), out.data<float>(), ov.q.scale,
                                    ov.q.zero_point);
  return out;
}

}  // namespace qforge::quant::runtime
