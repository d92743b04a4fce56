// Reference depthwise conv, pooling, element-wise and recurrent kernels: direct loops over requant.hpp.
#include "engine/kernels/ref/ref.hpp"

namespace qforge::kernels::ref {

void dwconv3x3(const DwConv3x3Params& p, const void* x, void* y, int) noexcept {
  const int oh = p.out_h(), ow = p.out_w(), C = p.channels;
  const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : C, ys = p.y_pixel_stride ? p.y_pixel_stride : C;
  for (int b = 0; b < p.batch; ++b)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int c = 0; c < C; ++c) {
          std::int32_t acc = p.bias[c];
          for (int ky = 0; ky < 3; ++ky)
            for (int kx = 0; kx < 3; ++kx) {
              const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              const std::int64_t i = ((static_cast<std::int64_t>(b) * p.in_h + iy) * p.in_w + ix) * xs + c;
              acc += (load_act(x, i, p.type) - p.in_zero_point) * p.weights[(ky * 3 + kx) * C + c];
            }
          store_act(y, ((static_cast<std::int64_t>(b) * oh + oy) * ow + ox) * ys + c,
                    requantize_output(acc, {p.multiplier[c], p.shift[c]}, p.out_zero_point, p.act_min, p.act_max,
                                      p.rounding));
        }
}

namespace {

template <bool kMax>
void pool(const Pool2dParams& p, const void* x, void* y) noexcept {
  const int oh = p.out_h(), ow = p.out_w(), C = p.channels;
  const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : C, ys = p.y_pixel_stride ? p.y_pixel_stride : C;
  for (int b = 0; b < p.batch; ++b)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int c = 0; c < C; ++c) {
          std::int32_t best = -1000, sum = 0, valid = 0, in_padded = 0;
          float fsum = 0.0f;
          for (int ky = 0; ky < p.kernel_h; ++ky)
            for (int kx = 0; kx < p.kernel_w; ++kx) {
              const int iy = oy * p.stride_h - p.pad_top + ky, ix = ox * p.stride_w - p.pad_left + kx;
              if (iy < p.in_h + p.pad_bottom && ix < p.in_w + p.pad_right) ++in_padded;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              const std::int32_t v = load_act(x, ((static_cast<std::int64_t>(b) * p.in_h + iy) * p.in_w + ix) * xs + c, p.type);
              best = v > best ? v : best;
              sum += v - p.zero_point;
              fsum = average_tap(fsum, v, p.average);
              ++valid;
            }
          const std::int64_t o = ((static_cast<std::int64_t>(b) * oh + oy) * ow + ox) * ys + c;
          if (kMax)
            store_act(y, o, best);
          else if (p.float_average)
            store_act(y, o, average_float_result(fsum, p.count_include_pad ? in_padded : valid, p.average, p.type));
          else
            store_act(y, o, average_value(sum, p.count_include_pad ? in_padded : valid) + p.zero_point);
        }
}

}  // namespace

void maxpool2d(const Pool2dParams& p, const void* x, void* y, int) noexcept { pool<true>(p, x, y); }
void avgpool2d(const Pool2dParams& p, const void* x, void* y, int) noexcept { pool<false>(p, x, y); }

void add(std::int64_t n, const void* a, const void* b, void* y, const AddParams& p, ActType type) noexcept {
  for (std::int64_t i = 0; i < n; ++i) store_act(y, i, add_value(load_act(a, i, type), load_act(b, i, type), p));
}

void quantize(std::int64_t n, const float* x, void* y, float inv_scale, std::int32_t zero_point, ActType type) noexcept {
  const ActivationRange r = type_range(type);
  for (std::int64_t i = 0; i < n; ++i) store_act(y, i, quantize_value(x[i], inv_scale, zero_point, r.min, r.max));
}

void dequantize(std::int64_t n, const void* x, float* y, float scale, std::int32_t zero_point, ActType type) noexcept {
  for (std::int64_t i = 0; i < n; ++i) y[i] = dequantize_value(load_act(x, i, type), scale, zero_point);
}

void lstm_step(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev, std::int64_t ldh,
               std::int16_t* c, void* h_out, std::int64_t ldo, std::int32_t* ws, int) noexcept {
  const int H = w.hidden, N = 4 * H;
  std::int32_t* ax = ws;
  std::int32_t* ah = ws + static_cast<std::int64_t>(batch) * N;
  gemm_s32(batch, x, ldx, w.input, ax, N, 1);
  gemm_s32(batch, h_prev, ldh, w.recurrent, ah, N, 1);
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < H; ++j) {
      auto pre = [&](int g) {
        const std::int64_t r = g * H + j, i = static_cast<std::int64_t>(b) * N + r;
        return gate_preactivation(ax[i], {w.input.multiplier[r], w.input.shift[r]}, ah[i],
                                  {w.recurrent.multiplier[r], w.recurrent.shift[r]});
      };
      const std::int32_t ig = sigmoid_q15(pre(0)), fg = sigmoid_q15(pre(1)), gg = tanh_q15(pre(2)),
                         og = sigmoid_q15(pre(3));
      std::int16_t& cell = c[static_cast<std::int64_t>(b) * H + j];
      cell = static_cast<std::int16_t>(lstm_cell_update(ig, fg, gg, cell, w.cell));
      store_act(h_out, b * ldo + j, lstm_hidden(og, cell, w.cell));
    }
}

void gru_step(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev, std::int64_t ldh,
              void* h_out, std::int64_t ldo, std::int32_t* ws, int) noexcept {
  const int H = w.hidden, N = 3 * H;
  std::int32_t* ax = ws;
  std::int32_t* ah = ws + static_cast<std::int64_t>(batch) * N;
  gemm_s32(batch, x, ldx, w.input, ax, N, 1);
  gemm_s32(batch, h_prev, ldh, w.recurrent, ah, N, 1);
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < H; ++j) {
      auto req = [&](const GemmWeights& gw, const std::int32_t* acc, int g) {
        const std::int64_t r = g * H + j;
        return sat16(requantize_single(acc[static_cast<std::int64_t>(b) * N + r], {gw.multiplier[r], gw.shift[r]}));
      };
      const std::int32_t r = sigmoid_q15(sat16(req(w.input, ax, 0) + req(w.recurrent, ah, 0)));
      const std::int32_t z = sigmoid_q15(sat16(req(w.input, ax, 1) + req(w.recurrent, ah, 1)));
      const std::int32_t n = gru_candidate(r, req(w.input, ax, 2), req(w.recurrent, ah, 2));
      store_act(h_out, b * ldo + j, gru_hidden(z, n, load_act(h_prev, b * ldh + j, ActType::s8), w.cell));
    }
}

void requant(std::int64_t n, const void* x, void* y, const RequantParams& p) noexcept {
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t v = load_act(x, i, p.type);
    store_act(y, i,
              p.identity              ? (v < p.act_min ? p.act_min : (v > p.act_max ? p.act_max : v))
              : p.dequantize_quantize ? dequantize_quantize_value(v, p.in_scale, p.in_zero_point, p.out_scale,
                                                                  p.out_zero_point, p.act_min, p.act_max)
                                      : requantize_output(v - p.in_zero_point, p.multiplier, p.out_zero_point, p.act_min,
                                             p.act_max, p.rounding));
  }
}

void global_avgpool(const GlobalAvgPoolParams& p, const void* x, void* y, int) noexcept {
  const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : p.channels;
  for (int b = 0; b < p.batch; ++b)
    for (int c = 0; c < p.channels; ++c) {
      std::uint32_t acc = 0;  // Note [acc wrap]
      for (int s = 0; s < p.pixels; ++s)
        acc += static_cast<std::uint32_t>(load_act(x, (static_cast<std::int64_t>(b) * p.pixels + s) * xs + c, p.type) -
                                          p.in_zero_point);
      store_act(y, static_cast<std::int64_t>(b) * p.channels + c,
                requantize_output(static_cast<std::int32_t>(acc), p.multiplier, p.out_zero_point, p.act_min,
                                  p.act_max, p.rounding));
    }
}

void quantize_linear(std::int64_t n, const float* x, void* y, float scale, std::int32_t zero_point,
                     ActType type) noexcept {
  const ActivationRange r = type_range(type);
  for (std::int64_t i = 0; i < n; ++i) store_act(y, i, quantize_linear_value(x[i], scale, zero_point, r.min, r.max));
}

}  // namespace qforge::kernels::ref
