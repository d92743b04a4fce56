// Integer runtime: packing and execution of a Program. See runtime.hpp.
#include "quant/runtime/runtime.hpp"

#include "engine/error.hpp"

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
  bool im2col = false;  // Note [runtime im2col]
  kn::PackedGemm conv_gemm;
  std::vector<std::int8_t> dw_weights;  // [9][C]
  std::vector<std::int32_t> mq, ms;     // per channel multiplier / shift (depthwise)
  // linear
  kn::PackedGemm gemm;
  // recurrent
  kn::PackedGemm gi, gh;
};

namespace {

bool is_image(const Value& v) { return v.shape.size() == 3; }

int conv_out(std::int64_t in, std::int64_t pad, std::int64_t dil, std::int64_t k, std::int64_t stride) {
  return static_cast<int>((in + 2 * pad - dil * (k - 1) - 1) / stride + 1);
}

// GEMM rows of Note [runtime im2col]: row (oh, ow) = kh segments of `seg` bytes (a multiple of 4) read at
// src + ky·row_pitch, src = image + oh·sh_bytes + ow·sw_bytes. Fixed-size copies for the common segments.
template <int kSeg>
void im2col_rows_fixed(const std::uint8_t* image, std::uint8_t* cols, std::int64_t oh_n, std::int64_t ow_n, std::int64_t kh,
                       std::int64_t seg, std::int64_t sh_bytes, std::int64_t sw_bytes, std::int64_t row_pitch) {
  const std::int64_t kk = kh * seg;
  for (std::int64_t oh = 0; oh < oh_n; ++oh) {
    const std::uint8_t* src = image + oh * sh_bytes;
    std::uint8_t* row = cols + oh * ow_n * kk;
    for (std::int64_t ow = 0; ow < ow_n; ++ow, src += sw_bytes, row += kk)
      for (std::int64_t ky = 0; ky < kh; ++ky) {
        if constexpr (kSeg > 0) {
          std::memcpy(row + ky * kSeg, src + ky * row_pitch, kSeg);
        } else {
          std::int64_t b = 0;
          for (; b + 16 <= seg; b += 16) std::memcpy(row + ky * seg + b, src + ky * row_pitch + b, 16);
          for (; b < seg; b += 4) std::memcpy(row + ky * seg + b, src + ky * row_pitch + b, 4);
        }
      }
  }
}

void im2col_rows(const std::uint8_t* image, std::uint8_t* cols, std::int64_t oh_n, std::int64_t ow_n, std::int64_t kh,
                 std::int64_t seg, std::int64_t sh_bytes, std::int64_t sw_bytes, std::int64_t row_pitch) {
  switch (seg) {
    case 4: return im2col_rows_fixed<4>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 8: return im2col_rows_fixed<8>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 12: return im2col_rows_fixed<12>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 16: return im2col_rows_fixed<16>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 32: return im2col_rows_fixed<32>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 48: return im2col_rows_fixed<48>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    case 64: return im2col_rows_fixed<64>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
    default: return im2col_rows_fixed<0>(image, cols, oh_n, ow_n, kh, seg, sh_bytes, sw_bytes, row_pitch);
  }
}

}  // namespace

Runtime::Runtime(Program program, RuntimeOptions opt) : program_(std::move(program)), opt_(opt) {
  threads_ = opt_.threads > 0 ? opt_.threads : omp_get_max_threads();
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
        } else if (op.groups == 1 && op.dilation_h == 1 && op.dilation_w == 1 && !(op.kh == 1 && op.kw == 1)) {
          // Note [runtime im2col]: the input is copied once into a zero-point-padded NHWC image, then each
          // output pixel's GEMM row is kh segments of kw·C bytes (the (ky, kx, c) order of the packed
          // weights), each segment padded to a multiple of 4 bytes so it is copied as whole 4-byte words
          // (the pad bytes are whatever follows in the image; their weights are 0) — no per-tap bounds
          // checks, no partial k-quads. Then one packed GEMM with requantization.
          // Note [runtime u8 flip]: the padded image stores x ^ 0x80 = x + 128 as u8 and the GEMM is packed
          // for u8 activations with zero point z + 128: Σ (x + 128 − (z + 128))·w is the same integer, and
          // the VNNI GEMM then needs no per-row −128·Σx correction (Note [s8 activations on VNNI]).
          p->im2col = true;
          const std::int64_t seg = (op.kw * C + 3) / 4 * 4, K = op.kh * seg;
          std::vector<std::int8_t> w(static_cast<std::size_t>(O * K), 0);
          for (std::int64_t o = 0; o < O; ++o)
            for (std::int64_t c = 0; c < C; ++c)
              for (std::int64_t y = 0; y < op.kh; ++y)
                for (std::int64_t x = 0; x < op.kw; ++x)
                  w[o * K + y * seg + x * C + c] = op.weights[((o * C + c) * op.kh + y) * op.kw + x];
          kn::GemmLayer l;
          l.weights = w.data();
          l.n = O;
          l.k = static_cast<int>(K);
          l.bias = op.bias.data();
          l.in_type = kn::ActType::u8;
          l.in_zero_point = in.q.zero_point + 128;
          l.multipliers = op.mult.data();
          l.per_channel = true;
          l.out_type = kn::ActType::s8;
          l.out_zero_point = out.q.zero_point;
          l.range = op.range;
          p->conv_gemm = kn::PackedGemm(l);
          const std::int64_t ph = in.shape[1] + 2 * op.pad_h, pw = in.shape[2] + 2 * op.pad_w;
          p->conv_ws_per_sample =
              static_cast<std::size_t>((ph * pw * C + 67) / 64 * 64 + (out.shape[1] * out.shape[2] * K + 63) / 64 * 64);
        } else {
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
                                     op.mult.data(), true, kn::ActType::s8, out.q.zero_point, op.range);
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
    if (op.kind == OpKind::conv2d && prepared_[i]->im2col)  // one slice per thread (Note [runtime conv threads])
      ws = std::max(ws, static_cast<std::size_t>(std::max(threads_, 1)) * prepared_[i]->conv_ws_per_sample + 64);
    else if (op.kind == OpKind::conv2d && !prepared_[i]->depthwise)
      ws = std::max(ws, static_cast<std::size_t>(batch) * prepared_[i]->conv_ws_per_sample + 64);
    if (op.kind == OpKind::lstm || op.kind == OpKind::gru)
      ws = std::max(ws, static_cast<std::size_t>(batch * op.hidden) * (8 * 4 + 2 + 1 + 16));
  }
  workspace_.assign(ws + 64, 0);
  batch_ = batch;
}

void Runtime::quantize_input(const Tensor& x_in) {
  const Value& iv = program_.input_value();
  QFORGE_CHECK(x_in.defined() && x_in.dim() == static_cast<int64_t>(iv.shape.size()) + 1,
               "int8 runtime: input must be [N, {}], got {}", fmt::join(iv.shape, ", "),
               x_in.defined() ? shape_str(x_in.shape()) : "undefined");
  for (std::size_t d = 0; d < iv.shape.size(); ++d)
    QFORGE_CHECK(x_in.size(static_cast<int64_t>(d) + 1) == iv.shape[d], "int8 runtime: input must be [N, {}], got {}",
                 fmt::join(iv.shape, ", "), shape_str(x_in.shape()));
  Tensor x = x_in.to(DType::f32);
  if (is_image(iv)) x = x.permute({0, 2, 3, 1});
  x = x.contiguous();
  ensure_buffers(x.size(0));
  kn::active_kernels().quantize(x.numel(), x.data<float>(), buf_[program_.input].data(), 1.0f / iv.q.scale,
                                iv.q.zero_point, kn::ActType::s8);
  // quantize clamps to the int8 range; narrower grids (strict symmetric) clamp further.
  if (iv.q.qmin != -128 || iv.q.qmax != 127)
    for (auto& c : buf_[program_.input]) c = static_cast<std::int8_t>(std::clamp<int>(c, iv.q.qmin, iv.q.qmax));
}

void Runtime::load_input_codes(const Tensor& codes_in) {
  const Value& iv = program_.input_value();
  QFORGE_CHECK(codes_in.dtype() == DType::i8 && codes_in.dim() == static_cast<int64_t>(iv.shape.size()) + 1,
               "int8 runtime: input codes must be i8 [N, {}]", fmt::join(iv.shape, ", "));
  Tensor c = is_image(iv) ? codes_in.permute({0, 2, 3, 1}).contiguous() : codes_in.contiguous();
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
          K.dwconv3x3(d, x, y, threads);
        } else if (p.im2col) {  // Note [runtime im2col], Note [runtime u8 flip]
          const std::int64_t C = op.in_c, H = iv.shape[1], W = iv.shape[2], OH = ov.shape[1], OW = ov.shape[2];
          const std::int64_t PH = H + 2 * op.pad_h, PW = W + 2 * op.pad_w;
          const std::int64_t seg = (op.kw * C + 3) / 4 * 4, KK = op.kh * seg;
          const std::int64_t pad_bytes = (PH * PW * C + 67) / 64 * 64;
          // Note [runtime conv threads]: with several threads and samples, each thread converts and
          // multiplies whole samples in its own workspace slice (the per-sample GEMMs are too small to split).
          const int team = threads > 1 && N > 1 ? std::min(threads, N) : 1;
          auto samples = [&](int slot, std::int64_t n0, std::int64_t n1) {
            auto* padded = reinterpret_cast<std::uint8_t*>(workspace_.data()) + slot * p.conv_ws_per_sample;
            std::uint8_t* cols = padded + pad_bytes;
            // The border (and the slack a segment may read past the image) never changes: fill it once.
            std::memset(padded, static_cast<std::uint8_t>(iv.q.zero_point) ^ 0x80, static_cast<std::size_t>(pad_bytes));
            for (std::int64_t n = n0; n < n1; ++n) {
              for (std::int64_t h = 0; h < H; ++h) {
                std::uint8_t* dst = padded + ((h + op.pad_h) * PW + op.pad_w) * C;
                const std::int8_t* src = x + (n * H + h) * W * C;
                for (std::int64_t j = 0; j < W * C; ++j) dst[j] = static_cast<std::uint8_t>(src[j]) ^ 0x80;
              }
              im2col_rows(padded, cols, OH, OW, op.kh, seg, op.stride_h * PW * C, op.stride_w * C, PW * C);
              K.gemm_requant(static_cast<int>(OH * OW), cols, KK, p.conv_gemm.view(), y + n * OH * OW * op.out_c,
                             op.out_c, team > 1 ? 1 : threads);
            }
          };
          if (team > 1) {
#pragma omp parallel for num_threads(team) schedule(static)
            for (int t = 0; t < team; ++t) samples(t, std::int64_t{N} * t / team, std::int64_t{N} * (t + 1) / team);
          } else {
            samples(0, 0, N);
          }
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
        (op.kind == OpKind::maxpool2d ? K.maxpool2d : K.avgpool2d)(pp, x, y, threads);
        break;
      }
      case OpKind::global_avgpool: {
        const std::int64_t C = iv.shape[0], HW = iv.shape[1] * iv.shape[2];
        const std::int32_t zi = iv.q.zero_point, zo = ov.q.zero_point;
        for (std::int64_t n = 0; n < N; ++n) {
          std::int32_t acc[1024];
          for (std::int64_t c0 = 0; c0 < C; c0 += 1024) {
            const std::int64_t cn = std::min<std::int64_t>(1024, C - c0);
            for (std::int64_t c = 0; c < cn; ++c) acc[c] = 0;
            for (std::int64_t s = 0; s < HW; ++s) {
              const std::int8_t* px = x + (n * HW + s) * C + c0;
              for (std::int64_t c = 0; c < cn; ++c) acc[c] += px[c] - zi;
            }
            for (std::int64_t c = 0; c < cn; ++c)
              y[n * C + c0 + c] =
                  static_cast<std::int8_t>(kn::requantize_output(acc[c], op.m, zo, op.range.min, op.range.max));
          }
        }
        break;
      }
      case OpKind::add:
        K.add(static_cast<std::int64_t>(N) * ov.numel(), x, buf_[op.inputs[1]].data(), y, op.add, kn::ActType::s8);
        break;
      case OpKind::requant: {
        const std::int64_t n = static_cast<std::int64_t>(N) * ov.numel();
        const std::int32_t zi = iv.q.zero_point, zo = ov.q.zero_point, lo = op.range.min, hi = op.range.max;
        if (op.identity) {
          for (std::int64_t k = 0; k < n; ++k) y[k] = static_cast<std::int8_t>(std::clamp<std::int32_t>(x[k], lo, hi));
        } else {
          for (std::int64_t k = 0; k < n; ++k)
            y[k] = static_cast<std::int8_t>(kn::requantize_output(x[k] - zi, op.m, zo, lo, hi));
        }
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

Tensor Runtime::value_codes(int v) const {
  const Value& val = program_.values[v];
  Shape s{batch_};
  if (is_image(val)) {
    s.insert(s.end(), {val.shape[1], val.shape[2], val.shape[0]});
    return Tensor::from_buffer(buf_[v].data(), s, DType::i8).permute({0, 3, 1, 2}).contiguous();
  }
  s.insert(s.end(), val.shape.begin(), val.shape.end());
  return Tensor::from_buffer(buf_[v].data(), s, DType::i8);
}

Tensor Runtime::run_codes(const Tensor& x) {
  quantize_input(x);
  execute();
  return value_codes(program_.output);
}

Tensor Runtime::run_from_codes(const Tensor& codes) {
  load_input_codes(codes);
  execute();
  return value_codes(program_.output);
}

Tensor Runtime::run(const Tensor& x) {
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
  quantize_input(x);
  execute();
  std::vector<Tensor> out;
  for (std::size_t v = 0; v < program_.values.size(); ++v) out.push_back(value_codes(static_cast<int>(v)));
  return out;
}

}  // namespace qforge::quant::runtime
