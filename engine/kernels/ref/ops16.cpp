// Scalar references of the 16-bit-activation kernels (kernels16.hpp): the textbook formulas of
// requant.hpp Note [16-bit activations], one loop nest per kernel, exact int64 sums, no packing tricks
// (weights are read back with packed16_weight, the zero point is subtracted per product).
#include "engine/kernels/isa_kernels16.hpp"

namespace qforge::kernels::ref {

namespace {
QuantizedMultiplier mult_of(const Gemm16Weights& w, int n) noexcept { return {w.multiplier[n], w.shift[n]}; }
std::int64_t dot16(const std::int16_t* a, const Gemm16Weights& w, int n) noexcept {
  std::int64_t acc = w.bias[n];
  for (int k = 0; k < w.k; ++k) acc += std::int64_t{a[k] - w.in_zero_point} * packed16_weight(w, n, k);
  return acc;
}
}  // namespace

void gemm16_requant(int m, const std::int16_t* a, std::int64_t lda, const Gemm16Weights& w, std::int16_t* c,
                    std::int64_t ldc, int) noexcept {
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < w.n; ++n)
      c[i * ldc + n] = static_cast<std::int16_t>(
          requantize_output64(dot16(a + i * lda, w, n), mult_of(w, n), w.out_zero_point, w.act_min, w.act_max));
}

// Direct convolution: output (b, oy, ox, o) = requant(Σ_{kh,kw,c} (x − z)·W + b), padded taps skipped.
void conv2d16(const Conv2d16Weights& cw, const std::int16_t* x, std::int16_t* y, void*, int) noexcept {
  const Conv2dShape& s = cw.shape;
  const int OH = s.out_h(), OW = s.out_w(), G = s.groups, ng = s.out_c / G, cg = s.in_c / G;
  for (int b = 0; b < s.batch; ++b)
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox)
        for (int g = 0; g < G; ++g) {
          const Gemm16Weights& w = cw.groups[g];
          for (int j = 0; j < ng; ++j) {
            std::int64_t acc = w.bias[j];
            for (int kh = 0; kh < s.kernel_h; ++kh)
              for (int kw = 0; kw < s.kernel_w; ++kw) {
                const int iy = oy * s.stride_h - s.pad_top + kh * s.dilation_h;
                const int ix = ox * s.stride_w - s.pad_left + kw * s.dilation_w;
                if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;
                const std::int16_t* px = x + ((static_cast<std::int64_t>(b) * s.in_h + iy) * s.in_w + ix) * s.xs() + g * cg;
                for (int c = 0; c < cg; ++c)
                  acc += std::int64_t{px[c] - w.in_zero_point} * packed16_weight(w, j, (kh * s.kernel_w + kw) * cg + c);
              }
            y[((static_cast<std::int64_t>(b) * OH + oy) * OW + ox) * s.ys() + g * ng + j] = static_cast<std::int16_t>(
                requantize_output64(acc, mult_of(w, j), w.out_zero_point, w.act_min, w.act_max));
          }
        }
}

namespace {
template <bool kMax>
void pool16(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y) noexcept {
  const int OH = p.out_h(), OW = p.out_w();
  const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : p.channels;
  const std::int64_t ys = p.y_pixel_stride ? p.y_pixel_stride : p.channels;
  for (int b = 0; b < p.batch; ++b)
    for (int oy = 0; oy < OH; ++oy)
      for (int ox = 0; ox < OW; ++ox)
        for (int c = 0; c < p.channels; ++c) {
          std::int32_t mx = -32768, sum = 0, valid = 0;
          for (int kh = 0; kh < p.kernel_h; ++kh)
            for (int kw = 0; kw < p.kernel_w; ++kw) {
              const int iy = oy * p.stride_h - p.pad_top + kh, ix = ox * p.stride_w - p.pad_left + kw;
              if (iy < 0 || iy >= p.in_h || ix < 0 || ix >= p.in_w) continue;
              const std::int32_t v = x[((static_cast<std::int64_t>(b) * p.in_h + iy) * p.in_w + ix) * xs + c];
              mx = v > mx ? v : mx;
              sum += v - p.zero_point;
              ++valid;
            }
          const std::int32_t count = p.count_include_pad ? p.kernel_h * p.kernel_w : valid;
          y[((static_cast<std::int64_t>(b) * OH + oy) * OW + ox) * ys + c] =
              static_cast<std::int16_t>(kMax ? mx : p.zero_point + average_value(sum, count));
        }
}
}  // namespace

void maxpool2d16(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y, int) noexcept { pool16<true>(p, x, y); }
void avgpool2d16(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y, int) noexcept { pool16<false>(p, x, y); }

void global_avgpool16(const GlobalAvgPoolParams& p, const std::int16_t* x, std::int16_t* y, int) noexcept {
  const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : p.channels;
  for (int b = 0; b < p.batch; ++b)
    for (int c = 0; c < p.channels; ++c) {
      std::int64_t sum = 0;
      for (int s = 0; s < p.pixels; ++s) sum += x[(static_cast<std::int64_t>(b) * p.pixels + s) * xs + c] - p.in_zero_point;
      y[static_cast<std::int64_t>(b) * p.channels + c] = static_cast<std::int16_t>(
          requantize_output64(sum, p.multiplier, p.out_zero_point, p.act_min, p.act_max));
    }
}

void add16(std::int64_t n, const std::int16_t* a, const std::int16_t* b, std::int16_t* y, const AddParams& p) noexcept {
  for (std::int64_t i = 0; i < n; ++i) y[i] = static_cast<std::int16_t>(add_value64(a[i], b[i], p));
}

void requant16(std::int64_t n, const std::int16_t* x, std::int16_t* y, const RequantParams& p) noexcept {
  for (std::int64_t i = 0; i < n; ++i)
    y[i] = static_cast<std::int16_t>(
        p.identity ? clamp64(x[i], p.act_min, p.act_max)
                   : requantize_output64(x[i] - p.in_zero_point, p.multiplier, p.out_zero_point, p.act_min, p.act_max));
}

void quantize16(std::int64_t n, const float* x, std::int16_t* y, float inv_scale, std::int32_t zero_point,
                std::int32_t qmin, std::int32_t qmax) noexcept {
  for (std::int64_t i = 0; i < n; ++i) y[i] = static_cast<std::int16_t>(quantize_value(x[i], inv_scale, zero_point, qmin, qmax));
}

void dequantize16(std::int64_t n, const std::int16_t* x, float* y, float scale, std::int32_t zero_point) noexcept {
  for (std::int64_t i = 0; i < n; ++i) y[i] = dequantize_value(x[i], scale, zero_point);
}

void lstm16_step(const Rnn16Weights& w, int batch, const std::int16_t* x, std::int64_t ldx, const std::int16_t* h_prev,
                 std::int64_t ldh, std::int16_t* c, std::int16_t* h_out, std::int64_t ldo, std::int16_t* workspace,
                 int) noexcept {
  const int H = w.hidden;
  std::int16_t* gates = workspace;  // [batch][4H] pre-activations (Q3.12)
  for (int b = 0; b < batch; ++b)
    for (int r = 0; r < 4 * H; ++r)
      gates[static_cast<std::int64_t>(b) * 4 * H + r] = static_cast<std::int16_t>(gate_preactivation64(
          dot16(x + b * ldx, w.input, r), mult_of(w.input, r), dot16(h_prev + b * ldh, w.recurrent, r),
          mult_of(w.recurrent, r)));
  for (int b = 0; b < batch; ++b)
    for (int j = 0; j < H; ++j) {
      const std::int16_t* g = gates + static_cast<std::int64_t>(b) * 4 * H;
      const std::int32_t ig = sigmoid_q15(g[j]), fg = sigmoid_q15(g[H + j]), gg = tanh_q15(g[2 * H + j]),
                         og = sigmoid_q15(g[3 * H + j]);
      std::int16_t& cc = c[static_cast<std::int64_t>(b) * H + j];
      cc = static_cast<std::int16_t>(lstm_cell_update(ig, fg, gg, cc, w.cell));
      h_out[b * ldo + j] = static_cast<std::int16_t>(lstm_hidden(og, cc, w.cell));
    }
}

}  // namespace qforge::kernels::ref
