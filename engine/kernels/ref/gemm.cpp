// Reference GEMM and conv2d: acc = Σ_k (x − z_in)·w + b (int32, wrapping), then requant.hpp.
#include "engine/kernels/ref/ref.hpp"

namespace qforge::kernels::ref {
namespace {

std::int32_t dot(const void* a, std::int64_t row, const GemmWeights& w, int n) {
  std::uint32_t acc = static_cast<std::uint32_t>(w.bias[n]);  // Note [acc wrap]: arithmetic mod 2^32
  for (int k = 0; k < w.k; ++k)
    acc += static_cast<std::uint32_t>((load_act(a, row + k, w.in_type) - w.in_zero_point) * packed_weight(w, n, k));
  return static_cast<std::int32_t>(acc);
}

}  // namespace

void gemm_requant(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c, std::int64_t ldc,
                  int) noexcept {
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < w.n; ++n) {
      const QuantizedMultiplier qm{w.multiplier[n], w.shift[n]};
      store_act(c, i * ldc + n,
                requantize_output(dot(a, i * lda, w, n), qm, w.out_zero_point, w.act_min, w.act_max, w.rounding));
    }
}

void gemm_s32(int m, const void* a, std::int64_t lda, const GemmWeights& w, std::int32_t* c, std::int64_t ldc,
              int) noexcept {
  for (int i = 0; i < m; ++i)
    for (int n = 0; n < w.n; ++n) c[i * ldc + n] = dot(a, i * lda, w, n);
}

// Direct convolution: for each output pixel and channel, sum over the window of the channel's group.
void conv2d(const Conv2dWeights& cw, const void* x, void* y, void*, int) noexcept {
  const Conv2dShape& s = cw.shape;
  const int oh = s.out_h(), ow = s.out_w(), og = s.out_c / s.groups, cg = s.in_c / s.groups;
  const std::int64_t xs = s.xs(), ys = s.ys();
  for (int b = 0; b < s.batch; ++b)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int g = 0; g < s.groups; ++g) {
          const GemmWeights& w = cw.groups[g];
          for (int o = 0; o < og; ++o) {
            std::uint32_t acc = static_cast<std::uint32_t>(w.bias[o]);
            for (int ky = 0; ky < s.kernel_h; ++ky)
              for (int kx = 0; kx < s.kernel_w; ++kx) {
                const int iy = oy * s.stride_h - s.pad_top + ky * s.dilation_h;
                const int ix = ox * s.stride_w - s.pad_left + kx * s.dilation_w;
                if (iy < 0 || iy >= s.in_h || ix < 0 || ix >= s.in_w) continue;  // padding: x = z_in
                const std::int64_t px = ((static_cast<std::int64_t>(b) * s.in_h + iy) * s.in_w + ix) * xs + g * cg;
                for (int c = 0; c < cg; ++c)
                  acc += static_cast<std::uint32_t>((load_act(x, px + c, w.in_type) - w.in_zero_point) *
                                                    packed_weight(w, o, (ky * s.kernel_w + kx) * cg + c));
              }
            const QuantizedMultiplier qm{w.multiplier[o], w.shift[o]};
            const std::int64_t py = ((static_cast<std::int64_t>(b) * oh + oy) * ow + ox) * ys + g * og + o;
            store_act(y, py,
                      requantize_output(static_cast<std::int32_t>(acc), qm, w.out_zero_point, w.act_min, w.act_max,
                                        w.rounding));
          }
        }
}

}  // namespace qforge::kernels::ref
