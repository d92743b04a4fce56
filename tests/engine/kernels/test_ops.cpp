// Reference conv/depthwise/pool/add/quantize/recurrent kernels against hand-computed values and
// independent naive loops (the registry test then holds every SIMD variant to these references).
#include "tests/engine/kernels/kernel_checks.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

using namespace qforge::kernels;

TEST_CASE("conv2d reference: equals a naive OIHW convolution (groups, stride, padding)") {
  std::mt19937 rng(4);
  Conv2dShape s;
  s.batch = 2;
  s.in_h = 6;
  s.in_w = 5;
  s.in_c = 4;
  s.out_c = 6;
  s.kernel_h = 3;
  s.kernel_w = 2;
  s.stride_h = 2;
  s.stride_w = 1;
  s.pad_top = s.pad_bottom = 1;
  s.pad_left = s.pad_right = 1;
  s.groups = 2;
  const int cg = 2, og = 3;
  std::vector<std::int8_t> w(static_cast<std::size_t>(6) * cg * 3 * 2);
  for (auto& v : w) v = static_cast<std::int8_t>(std::uniform_int_distribution<int>(-128, 127)(rng));
  std::vector<std::int32_t> bias = {5, -7, 100, 0, 3, -9};
  const QuantizedMultiplier one{1 << 30, 1};  // M = 1: output = acc + z_out (clamped)
  const int zin = -3, zout = 2;
  PackedConv2d pc(s, w.data(), bias.data(), ActType::s8, zin, &one, false, ActType::s8, zout, {-128, 127});
  std::vector<std::int8_t> x(static_cast<std::size_t>(2) * 6 * 5 * 4);
  for (auto& v : x) v = static_cast<std::int8_t>(std::uniform_int_distribution<int>(-10, 10)(rng));
  const int oh = s.out_h(), ow = s.out_w();
  CHECK(oh == 3);
  CHECK(ow == 6);
  std::vector<std::int8_t> y(static_cast<std::size_t>(2) * oh * ow * 6);
  kernel_table(Isa::ref).conv2d(pc.view(), x.data(), y.data(), nullptr, 1);
  for (int b = 0; b < 2; ++b)
    for (int oy = 0; oy < oh; ++oy)
      for (int ox = 0; ox < ow; ++ox)
        for (int o = 0; o < 6; ++o) {
          const int g = o / og;
          std::int64_t acc = bias[o];
          for (int c = 0; c < cg; ++c)
            for (int ky = 0; ky < 3; ++ky)
              for (int kx = 0; kx < 2; ++kx) {
                const int iy = oy * 2 - 1 + ky, ix = ox - 1 + kx;
                if (iy < 0 || iy >= 6 || ix < 0 || ix >= 5) continue;
                acc += (x[((b * 6 + iy) * 5 + ix) * 4 + g * cg + c] - zin) * w[((o * cg + c) * 3 + ky) * 2 + kx];
              }
          const std::int64_t want = std::clamp<std::int64_t>(acc + zout, -128, 127);
          REQUIRE(y[((b * oh + oy) * ow + ox) * 6 + o] == want);
        }
}

TEST_CASE("dwconv3x3 reference: equals a naive depthwise convolution on [C][1][3][3] weights") {
  std::mt19937 rng(8);
  const int C = 5, H = 4, W = 6;
  std::vector<std::int8_t> w(C * 9), w9(C * 9);
  for (auto& v : w) v = static_cast<std::int8_t>(std::uniform_int_distribution<int>(-128, 127)(rng));
  pack_dwconv3x3_weights(w.data(), C, w9.data());
  std::vector<std::int32_t> bias = {1, 2, 3, 4, 5}, mult(C, 1 << 30), shift(C, 1);
  std::vector<std::uint8_t> x(H * W * C);
  for (auto& v : x) v = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(0, 20)(rng));
  DwConv3x3Params p;
  p.in_h = H;
  p.in_w = W;
  p.channels = C;
  p.weights = w9.data();
  p.bias = bias.data();
  p.multiplier = mult.data();
  p.shift = shift.data();
  p.type = ActType::u8;
  p.in_zero_point = 7;
  p.out_zero_point = 100;
  p.act_min = 0;
  p.act_max = 255;
  std::vector<std::uint8_t> y(H * W * C);
  kernel_table(Isa::ref).dwconv3x3(p, x.data(), y.data(), 1);
  for (int oy = 0; oy < H; ++oy)
    for (int ox = 0; ox < W; ++ox)
      for (int c = 0; c < C; ++c) {
        std::int64_t acc = bias[c];
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int iy = oy - 1 + ky, ix = ox - 1 + kx;
            if (iy >= 0 && iy < H && ix >= 0 && ix < W) acc += (x[(iy * W + ix) * C + c] - 7) * w[c * 9 + ky * 3 + kx];
          }
        REQUIRE(y[(oy * W + ox) * C + c] == std::clamp<std::int64_t>(acc + 100, 0, 255));
      }
}

TEST_CASE("pooling reference: max ignores padding, average rounds ties up and counts like PyTorch") {
  // 1 channel 2x3 input, s8, zero point 1.
  const std::int8_t x[6] = {1, 4, -3, 6, 2, 8};
  Pool2dParams p;
  p.in_h = 2;
  p.in_w = 3;
  p.channels = 1;
  p.kernel_h = p.kernel_w = 2;
  p.stride_h = p.stride_w = 1;
  p.zero_point = 1;
  std::int8_t y[2] = {};
  kernel_table(Isa::ref).maxpool2d(p, x, y, 1);
  CHECK(y[0] == 6);
  CHECK(y[1] == 8);
  kernel_table(Isa::ref).avgpool2d(p, x, y, 1);
  CHECK(y[0] == 3);  // Σ(x − 1) = 9, 9/4 = 2.25 → 2, + 1
  CHECK(y[1] == 3);  // Σ(x − 1) = 7, 1.75 → 2, + 1
  // Padding 1 with count_include_pad: the corner window holds one value.
  p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
  p.stride_h = p.stride_w = 2;
  std::int8_t z[4] = {};
  kernel_table(Isa::ref).avgpool2d(p, x, z, 1);
  CHECK(z[0] == 1);  // (1 − 1)/4 = 0 → 0 + 1
  p.count_include_pad = false;
  const std::int8_t x2[6] = {2, 0, 0, 0, 0, 0};
  kernel_table(Isa::ref).avgpool2d(p, x2, z, 1);
  CHECK(z[0] == 2);  // only the valid tap counts
  kernel_table(Isa::ref).maxpool2d(p, x2, z, 1);
  CHECK(z[0] == 2);
  CHECK(z[1] == 0);
}

TEST_CASE("quantize/dequantize kernels: reference applies quantize_value / dequantize_value element-wise") {
  const float x[5] = {0.25f, -0.25f, 0.75f, 100.f, NAN};
  std::int8_t q[5];
  kernel_table(Isa::ref).quantize(5, x, q, 1.0f / 0.5f, 0, ActType::s8);
  CHECK(q[0] == 1);   // 0.5 → 1 (tie up)
  CHECK(q[1] == 0);   // −0.5 → 0
  CHECK(q[2] == 2);   // 1.5 → 2
  CHECK(q[3] == 127);
  CHECK(q[4] == 0);
  float back[5];
  kernel_table(Isa::ref).dequantize(5, q, back, 0.5f, 0, ActType::s8);
  CHECK(back[2] == 1.0f);
  CHECK(back[3] == 63.5f);
}

TEST_CASE("lstm step reference: with zero weights the gates are sigmoid(0) and the cell halves") {
  const int H = 3, I = 2;
  std::vector<std::int8_t> wx(4 * H * I, 0), wh(4 * H * H, 0);
  const QuantizedMultiplier m = quantize_multiplier(0.01);
  GemmLayer lx;
  lx.weights = wx.data();
  lx.n = 4 * H;
  lx.k = I;
  lx.multipliers = &m;
  GemmLayer lh = lx;
  lh.weights = wh.data();
  lh.k = H;
  const PackedGemm px(lx), ph(lh);
  RnnWeights rw;
  rw.input = px.view();
  rw.recurrent = ph.view();
  rw.hidden = H;
  rw.cell.hidden = quantize_multiplier(std::ldexp(1.0, -30) * 128);
  const std::int8_t x[2] = {5, -5}, h[3] = {1, 2, 3};
  std::int16_t c[3] = {5, -5, 2048};
  std::int8_t out[3];
  std::int32_t ws[8 * H];
  kernel_table(Isa::ref).lstm_step(rw, 1, x, I, h, H, c, out, H, ws, 1);
  CHECK(c[0] == 3);     // 0.5·5 = 2.5 → 3 (g = tanh(0) = 0)
  CHECK(c[1] == -2);    // −2.5 → −2
  CHECK(c[2] == 1024);
  CHECK(out[2] == lstm_hidden(16384, 1024, rw.cell));
  CHECK(out[0] == 0);
}

TEST_CASE("quantize kernels: exact ties round toward +inf on every supported ISA (vector and tail paths)") {
  std::vector<float> x(41);
  for (int i = 0; i < 41; ++i) x[i] = static_cast<float>(i - 20) + 0.5f;  // −19.5 … 20.5
  for (int i = 0; i < kNumIsas; ++i) {
    const auto isa = static_cast<Isa>(i);
    if (!isa_supported(isa)) continue;
    std::vector<std::int8_t> q(41);
    kernel_table(isa).quantize(41, x.data(), q.data(), 1.0f, 0, ActType::s8);
    for (int j = 0; j < 41; ++j) {
      INFO(isa_name(isa), " x = ", x[j]);
      CHECK(q[j] == j - 19);  // k + 0.5 → k + 1
    }
  }
}

TEST_CASE("requant reference: codes change encoding with requantize_output, identity only clamps") {
  RequantParams p;
  p.in_zero_point = 10;
  p.out_zero_point = -5;
  p.multiplier = quantize_multiplier(0.5);
  p.act_min = -20;
  p.act_max = 100;
  const std::vector<std::int8_t> x = {10, 11, 13, 9, 127, -128, 50};
  std::vector<std::int8_t> y(x.size());
  kernel_table(Isa::ref).requant(static_cast<std::int64_t>(x.size()), x.data(), y.data(), p);
  // (x − 10)·0.5 rounded half up, − 5, clamped to [−20, 100]
  CHECK(y == std::vector<std::int8_t>{-5, -4, -3, -5, 54, -20, 15});
  p.identity = true;
  kernel_table(Isa::ref).requant(static_cast<std::int64_t>(x.size()), x.data(), y.data(), p);
  CHECK(y == std::vector<std::int8_t>{10, 11, 13, 9, 100, -20, 50});
}

TEST_CASE("global average pooling reference: the requantized sum of (x − z) over the pixels of each channel") {
  GlobalAvgPoolParams p;
  p.batch = 2;
  p.pixels = 3;
  p.channels = 2;
  p.in_zero_point = 1;
  p.out_zero_point = 4;
  p.multiplier = quantize_multiplier(1.0 / 3.0);
  // [b][pixel][c]
  const std::vector<std::int8_t> x = {1, 2, 3, 4, 5, 6, /* b1 */ -10, 0, -10, 0, -11, 0};
  std::vector<std::int8_t> y(4);
  kernel_table(Isa::ref).global_avgpool(p, x.data(), y.data(), 1);
  // channel sums of x − 1: b0: (0+2+4)=6, (1+3+5)=9; b1: (−11−11−12)=−34, (−1·3)=−3
  CHECK(y[0] == 4 + 2);
  CHECK(y[1] == 4 + 3);
  CHECK(y[2] == 4 + static_cast<int>(requantize(-34, p.multiplier)));
  CHECK(y[3] == 4 - 1);
}
