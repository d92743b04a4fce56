// Integer runtime: packing and execution of a Program. See runtime.hpp.
#include "quant/runtime/runtime.hpp"

#include "quant/runtime/layout.hpp"

#include "engine/error.hpp"
#include "quant/runtime/program16.hpp"
#include "quant/runtime/runtime16.hpp"

#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <cstring>

namespace qforge::quant::runtime {

namespace kn = qforge::kernels;

struct Runtime::Prepared {
  // conv2d (general) / depthwise 3x3
  kn::PackedConv2d conv;
  std::size_t conv_ws_per_sample = 0;
  bool depthwise = false;
  std::vector<std::int8_t> dw_weights;  // [9][C]
  std::vector<std::int32_t> mq, ms;     // per channel multiplier / shift (depthwise)
  // linear
  kn::PackedGemm gemm;
  // recurrent
  kn::PackedGemm gi, gh;
};

Runtime::Runtime(Program program, RuntimeOptions opt) : program_(std::move(program)), opt_(opt) {
  threads_ = opt_.threads > 0 ? opt_.threads : omp_get_max_threads();
  if (is_16bit_program(program_)) {  // Note [16-bit codes]
    r16_ = std::make_unique<Runtime16>(program_, threads_);
    return;
  }
  for (const Op& op : program_.ops) {
    auto p = std::make_unique<Prepared>();
    const Value& in = program_.values.at(op.inputs.at(0));
    const Value& out = program_.values.at(op.output);
    switch (op.kind) {
      case OpKind::conv2d: {
        const int C = static_cast<int>(op.in_c), O = static_cast<int>(op.out_c);
        if (op.groups == C && C == O && op.kh == 3 && op.kw == 3 && op.dilation_h == 1 && op.dilation_w == 1) {
          p->depthwise = true;
          p->dw_weights.resize(9 * static_cast<std::size_t>(C));
          kn::pack_dwconv3x3_weights(op.weights.data(), C, p->dw_weights.data());
          for (const auto& m : op.mult) {
            p->mq.push_back(m.multiplier);
            p->ms.push_back(m.shift);
          }
        } else {
          // Note [runtime conv]: every other convolution is the registered conv2d kernel (im2col in
          // blocks + the registered GEMM, generic/ops_impl.inc), packed once here for batch 1; execute()
          // sets the batch.
          kn::Conv2dShape s;
          s.batch = 1;
          s.in_c = C;
          s.in_h = static_cast<int>(in.shape[1]);
          s.in_w = static_cast<int>(in.shape[2]);
          s.out_c = O;
          s.kernel_h = static_cast<int>(op.kh);
          s.kernel_w = static_cast<int>(op.kw);
          s.stride_h = static_cast<int>(op.stride_h);
          s.stride_w = static_cast<int>(op.stride_w);
          s.pad_top = s.pad_bottom = static_cast<int>(op.pad_h);
          s.pad_left = s.pad_right = static_cast<int>(op.pad_w);
          s.dilation_h = static_cast<int>(op.dilation_h);
          s.dilation_w = static_cast<int>(op.dilation_w);
          s.groups = static_cast<int>(op.groups);
          p->conv = kn::PackedConv2d(s, op.weights.data(), op.bias.data(), kn::ActType::s8, in.q.zero_point,
                                     op.mult.data(), true, kn::ActType::s8, out.q.zero_point, op.range,
                                     program_.rounding());
          const std::size_t ws = p->conv.workspace_bytes();
          p->conv_ws_per_sample = ws > 64 ? ws - 64 : ws;
        }
        break;
      }
      case OpKind::linear: {
        kn::GemmLayer l;
        l.weights = op.weights.data();
        l.n = static_cast<int>(op.out_c);
        l.k = static_cast<int>(op.in_c);
        l.bias = op.bias.data();
        l.in_type = kn::ActType::s8;
        l.in_zero_point = in.q.zero_point;
        l.multipliers = op.mult.data();
        l.per_channel = true;
        l.out_type = kn::ActType::s8;
        l.out_zero_point = out.q.zero_point;
        l.range = op.range;
        l.rounding = program_.rounding();
        p->gemm = kn::PackedGemm(l);
        break;
      }
      case OpKind::lstm:
      case OpKind::gru: {
        kn::GemmLayer a;
        a.weights = op.weights.data();
        a.n = static_cast<int>(op.out_c);
        a.k = static_cast<int>(op.in_c);
        a.bias = op.bias.data();
        a.in_type = kn::ActType::s8;
        a.in_zero_point = in.q.zero_point;
        a.multipliers = op.mult.data();
        a.per_channel = true;
        p->gi = kn::PackedGemm(a);
        kn::GemmLayer b = a;
        b.weights = op.weights_hh.data();
        b.k = static_cast<int>(op.hidden);
        b.bias = op.kind == OpKind::gru ? op.bias_hh.data() : nullptr;
        b.in_zero_point = op.cell.hidden_zero_point;
        b.multipliers = op.mult_hh.data();
        p->gh = kn::PackedGemm(b);
        break;
      }
      default: break;
    }
    prepared_.push_back(std::move(p));
  }
}

Runtime::~Runtime() = default;
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;

void Runtime::ensure_buffers(std::int64_t batch) {
  if (batch == batch_ && buf_.size() == program_.values.size()) return;
  buf_.assign(program_.values.size(), {});
  for (std::size_t v = 0; v < program_.values.size(); ++v)
    buf_[v].resize(static_cast<std::size_t>(batch * program_.values[v].numel()));
  std::size_t ws = 0;
  for (std::size_t i = 0; i < program_.ops.size(); ++i) {
    const Op& op = program_.ops[i];
    if (op.kind == OpKind::conv2d && !prepared_[i]->depthwise)
      ws = std::max(ws, static_cast<std::size_t>(batch) * prepared_[i]->conv_ws_per_sample + 64);
    if (op.kind == OpKind::lstm || op.kind == OpKind::gru)
      ws = std::max(ws, static_cast<std::size_t>(batch * op.hidden) * (8 * 4 + 2 + 1 + 16));
  }
  workspace_.assign(ws + 64, 0);
  batch_ = batch;
}

void Runtime::quantize_input(const Tensor& x_in) {
  const Value& iv = program_.input_value();
  const Tensor x = input_to_buffer_layout(iv, x_in, "int8 runtime");
  ensure_buffers(x.size(0));
  if (program_.profile == kn::ArithProfile::onnxruntime)  // QuantizeLinear (arith_profile.hpp)
    kn::active_kernels().quantize_linear(x.numel(), x.data<float>(), buf_[program_.input].data(), iv.q.scale,
                                         iv.q.zero_point, kn::ActType::s8);
  else
    kn::active_kernels().quantize(x.numel(), x.data<float>(), buf_[program_.input].data(), 1.0f / iv.q.scale,
                                  iv.q.zero_point, kn::ActType::s8);
  // quantize clamps to the int8 range; narrower grids (strict symmetric) clamp further.
  if (iv.q.qmin != -128 || iv.q.qmax != 127) {
    kn::RequantParams clamp;
    clamp.identity = true;
    clamp.act_min = iv.q.qmin;
    clamp.act_max = iv.q.qmax;
    kn::active_kernels().requant(x.numel(), buf_[program_.input].data(), buf_[program_.input].data(), clamp);
  }
}

void Runtime::load_input_codes(const Tensor& codes_in) {
  const Value& iv = program_.input_value();
  const Tensor c = codes_to_buffer_layout(iv, codes_in, DType::i8, "int8 runtime");
  ensure_buffers(c.size(0));
  std::memcpy(buf_[program_.input].data(), c.data<std::int8_t>(), static_cast<std::size_t>(c.numel()));
}

void Runtime::execute() {
  const kn::KernelTable& K = kn::active_kernels();
  const int N = static_cast<int>(batch_);
  if (op_seconds_.size() != program_.ops.size()) op_seconds_.assign(program_.ops.size(), 0.0);
  for (std::size_t i = 0; i < program_.ops.size(); ++i) {
    const double t0 = omp_get_wtime();
    const Op& op = program_.ops[i];
    Prepared& p = *prepared_[i];
    const Value& iv = program_.values[op.inputs[0]];
    const Value& ov = program_.values[op.output];
    const std::int8_t* x = buf_[op.inputs[0]].data();
    std::int8_t* y = buf_[op.output].data();
    // Note [small ops run on one thread]: an OpenMP fork/join costs more than a small layer (batch-1 convs,
    // the LSTM step of one sample); ops below ~2M multiply-adds run on the calling thread.
    std::int64_t work = static_cast<std::int64_t>(N) * ov.numel();
    if (op.kind == OpKind::conv2d) work *= op.kh * op.kw * (op.in_c / op.groups);
    if (op.kind == OpKind::linear) work *= op.in_c;
    if (op.kind == OpKind::lstm || op.kind == OpKind::gru) work = static_cast<std::int64_t>(N) * op.out_c * (op.in_c + op.hidden);
    const int threads = work >= (std::int64_t{1} << 21) ? threads_ : 1;
    switch (op.kind) {
      case OpKind::conv2d: {
        if (p.depthwise) {
          kn::DwConv3x3Params d;
          d.batch = N;
          d.in_h = static_cast<int>(iv.shape[1]);
          d.in_w = static_cast<int>(iv.shape[2]);
          d.channels = static_cast<int>(op.in_c);
          d.stride_h = static_cast<int>(op.stride_h);
          d.stride_w = static_cast<int>(op.stride_w);
          d.pad_top = d.pad_bottom = static_cast<int>(op.pad_h);
          d.pad_left = d.pad_right = static_cast<int>(op.pad_w);
          d.weights = p.dw_weights.data();
          d.bias = op.bias.data();
          d.multiplier = p.mq.data();
          d.shift = p.ms.data();
          d.in_zero_point = iv.q.zero_point;
          d.out_zero_point = ov.q.zero_point;
          d.act_min = op.range.min;
          d.act_max = op.range.max;
          d.rounding = program_.rounding();
          K.dwconv3x3(d, x, y, threads);
        } else {
          kn::Conv2dWeights w = p.conv.view();
          w.shape.batch = N;
          K.conv2d(w, x, y, workspace_.data(), threads);
        }
        break;
      }
      case OpKind::linear: {
        const int rows = static_cast<int>(N * (iv.numel() / op.in_c));
        K.gemm_requant(rows, x, op.in_c, p.gemm.view(), y, op.out_c, threads);
        break;
      }
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
        if (op.kind == OpKind::avgpool2d && program_.profile == kn::ArithProfile::onnxruntime) {
          pp.float_average = true;  // QLinearAveragePool
          pp.average = {iv.q.scale, ov.q.scale, iv.q.zero_point, ov.q.zero_point, ov.q.qmin, ov.q.qmax};
        }
        (op.kind == OpKind::maxpool2d ? K.maxpool2d : K.avgpool2d)(pp, x, y, threads);
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
        g.rounding = program_.rounding();
        K.global_avgpool(g, x, y, threads);
        break;
      }
      case OpKind::add:
        K.add(static_cast<std::int64_t>(N) * ov.numel(), x, buf_[op.inputs[1]].data(), y, op.add, kn::ActType::s8);
        break;
      case OpKind::requant: {
        kn::RequantParams r;
        r.in_zero_point = iv.q.zero_point;
        r.out_zero_point = ov.q.zero_point;
        r.act_min = op.range.min;
        r.act_max = op.range.max;
        r.multiplier = op.m;
        r.identity = op.identity;
        if (program_.profile == kn::ArithProfile::onnxruntime) {  // DequantizeLinear → QuantizeLinear
          r.dequantize_quantize = true;
          r.in_scale = iv.q.scale;
          r.out_scale = ov.q.scale;
        }
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
              for (std::int64_t c = 0; c < C; ++c)
                y[((n * H + h) * C + c) * W + w] = x[((n * H + h) * W + w) * C + c];
        break;
      }
      case OpKind::last_step: {
        const std::int64_t T = iv.shape[0], F = iv.shape[1];
        for (std::int64_t n = 0; n < N; ++n) std::memcpy(y + n * F, x + (n * T + T - 1) * F, static_cast<std::size_t>(F));
        break;
      }
      case OpKind::lstm:
      case OpKind::gru: {
        const bool lstm = op.kind == OpKind::lstm;
        const std::int64_t T = iv.shape[0], F = iv.shape[1], H = op.hidden;
        kn::RnnWeights w;
        w.input = p.gi.view();
        w.recurrent = p.gh.view();
        w.cell = op.cell;
        w.hidden = static_cast<int>(H);
        auto* ws = reinterpret_cast<std::int32_t*>(workspace_.data());
        auto* cell = reinterpret_cast<std::int16_t*>(ws + 8 * H * N);
        auto* h0 = reinterpret_cast<std::int8_t*>(cell + H * N);
        std::fill(cell, cell + H * N, std::int16_t{0});
        std::fill(h0, h0 + H * N, static_cast<std::int8_t>(op.cell.hidden_zero_point));
        for (std::int64_t t = 0; t < T; ++t) {
          const std::int8_t* hp = t == 0 ? h0 : y + (t - 1) * H;
          const std::int64_t ldh = t == 0 ? H : T * H;
          if (lstm)
            K.lstm_step(w, N, x + t * F, T * F, hp, ldh, cell, y + t * H, T * H, ws, threads);
          else
            K.gru_step(w, N, x + t * F, T * F, hp, ldh, y + t * H, T * H, ws, threads);
        }
        break;
      }
    }
    op_seconds_[i] += omp_get_wtime() - t0;
  }
}

std::vector<std::string> Runtime::op_kernels(std::int64_t batch) const {
  if (r16_) return r16_->op_kernels();
  const kn::Isa isa = kn::active_isa();
  auto name = [&](kn::KernelKind kind) -> std::string {
    for (const kn::KernelInfo& info : kn::kernel_registry())
      if (info.kind == kind && info.isa == isa) return info.name;
    return "?";
  };
  std::vector<std::string> out;
  for (std::size_t i = 0; i < program_.ops.size(); ++i) {
    const Op& op = program_.ops[i];
    const Prepared& p = *prepared_[i];
    const Value& iv = program_.values[op.inputs[0]];
    const Value& ov = program_.values[op.output];
    std::string s;
    switch (op.kind) {
      case OpKind::conv2d:
        if (p.depthwise) {
          s = name(kn::KernelKind::dwconv3x3);
        } else {
          const int rows = static_cast<int>(batch * ov.shape[1] * ov.shape[2]);
          s = name(kn::KernelKind::conv2d) + " > " + kn::gemm_kernel_name(p.conv.view().groups[0], isa, rows);
        }
        break;
      case OpKind::linear:
        s = kn::gemm_kernel_name(p.gemm.view(), isa, static_cast<int>(batch * (iv.numel() / op.in_c)));
        break;
      case OpKind::maxpool2d: s = name(kn::KernelKind::maxpool2d); break;
      case OpKind::avgpool2d: s = name(kn::KernelKind::avgpool2d); break;
      case OpKind::add: s = name(kn::KernelKind::add); break;
      case OpKind::global_avgpool: s = name(kn::KernelKind::global_avgpool); break;
      case OpKind::requant: s = name(kn::KernelKind::requant); break;
      case OpKind::lstm:
      case OpKind::gru:
        s = name(op.kind == OpKind::lstm ? kn::KernelKind::lstm_step : kn::KernelKind::gru_step) + " > " +
            kn::gemm_kernel_name(p.gi.view(), isa, static_cast<int>(batch));
        break;
      default: break;
    }
    out.push_back(std::move(s));
  }
  return out;
}

Tensor Runtime::value_codes(int v) const {
  return codes_from_buffer(program_.values[v], batch_, buf_[v].data(), DType::i8);
}

Tensor Runtime::run_codes(const Tensor& x) {
  if (r16_) {
    r16_->quantize_input(x);
    r16_->execute(op_seconds_);
    return r16_->value_codes(program_.output);
  }
  quantize_input(x);
  execute();
  return value_codes(program_.output);
}

Tensor Runtime::run_from_codes(const Tensor& codes) {
  if (r16_) {
    r16_->load_input_codes(codes);
    r16_->execute(op_seconds_);
    return r16_->value_codes(program_.output);
  }
  load_input_codes(codes);
  execute();
  return value_codes(program_.output);
}

Tensor Runtime::run(const Tensor& x) {
  if (r16_) {
    r16_->quantize_input(x);
    r16_->execute(op_seconds_);
    return r16_->dequantized_output();
  }
  quantize_input(x);
  execute();
  const Value& ov = program_.output_value();
  Tensor codes = value_codes(program_.output);
  Tensor out = Tensor::uninitialized(codes.shape(), DType::f32);
  kn::active_kernels().dequantize(codes.numel(), codes.data<std::int8_t>(), out.data<float>(), ov.q.scale,
                                  ov.q.zero_point, kn::ActType::s8);
  return out;
}

std::vector<Tensor> Runtime::run_all(const Tensor& x) {
  if (r16_) {
    r16_->quantize_input(x);
    r16_->execute(op_seconds_);
    std::vector<Tensor> out;
    for (std::size_t v = 0; v < program_.values.size(); ++v) out.push_back(r16_->value_codes(static_cast<int>(v)));
    return out;
  }
  quantize_input(x);
  execute();
  std::vector<Tensor> out;
  for (std::size_t v = 0; v < program_.values.size(); ++v) out.push_back(value_codes(static_cast<int>(v)));
  return out;
}

}  // namespace qforge::quant::runtime
