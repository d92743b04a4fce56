// The onnxruntime arithmetic profile (arith_profile.hpp Note [onnxruntime arithmetic]) on hand-computed
// values: float requantization with ties to even, QuantizeLinear by division, QLinearAdd's fused
// multiply-adds on the uint8 view, QLinearAveragePool, DequantizeLinear → QuantizeLinear.
#include "engine/kernels/kernels.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace qforge::kernels;

TEST_CASE("profile names parse and print") {
  ArithProfile p = ArithProfile::dsp;
  CHECK(parse_profile("onnxruntime", &p));
  CHECK(p == ArithProfile::onnxruntime);
  CHECK(parse_profile("dsp", &p));
  CHECK(p == ArithProfile::dsp);
  CHECK_FALSE(parse_profile("tflite", &p));
  CHECK(std::string(profile_name(ArithProfile::onnxruntime)) == "onnxruntime");
  CHECK(profile_rounding(ArithProfile::dsp) == Rounding::single);
  CHECK(profile_rounding(ArithProfile::onnxruntime) == Rounding::float_rne);
}

TEST_CASE("float requantization: rne(float(acc)*M) with M a float32 carried in the multiplier") {
  const QuantizedMultiplier half = float_multiplier(0.5f), quarter = float_multiplier(0.25f);
  CHECK(half.shift == 0);
  CHECK(multiplier_float(half) == 0.5f);
  // Ties to even where single rounding goes up (integer-arithmetic.md §4 table).
  CHECK(requantize(5, half, Rounding::float_rne) == 2);
  CHECK(requantize(-3, half, Rounding::float_rne) == -2);
  CHECK(requantize(2, quarter, Rounding::float_rne) == 0);
  CHECK(requantize(-6, quarter, Rounding::float_rne) == -2);
  CHECK(requantize(5, quarter, Rounding::float_rne) == 1);
  CHECK(requantize(5, quantize_multiplier(0.5), Rounding::single) == 3);
  // float(acc) rounds above 2^24: 2^24 + 1 becomes 2^24.
  CHECK(requantize((1 << 24) + 1, float_multiplier(1.0f), Rounding::float_rne) == (1 << 24));
  // Zero point and clamp after the rounding; a huge product saturates instead of overflowing.
  CHECK(requantize_output(5, half, 10, -128, 127, Rounding::float_rne) == 12);
  CHECK(requantize_output(INT32_MAX, float_multiplier(3.0e38f), 0, -128, 127, Rounding::float_rne) == 127);
  CHECK(requantize_output(INT32_MIN, float_multiplier(3.0e38f), 0, -128, 127, Rounding::float_rne) == -128);
  // Non-positive or non-finite scales flush to zero like quantize_multiplier.
  CHECK(float_multiplier(0.0f) == QuantizedMultiplier{});
  CHECK(float_multiplier(std::numeric_limits<float>::infinity()) == QuantizedMultiplier{});
}

TEST_CASE("layer multipliers: onnxruntime computes X_scale*W_scale/Y_scale in float32, dsp in double") {
  const float si = 0.0123f, sw = 0.00456f, so = 0.0789f;
  const QuantizedMultiplier m = layer_multiplier(ArithProfile::onnxruntime, si, sw, so);
  const float prod = si * sw;  // rounded to float first
  CHECK(multiplier_float(m) == prod / so);
  CHECK(layer_multiplier(ArithProfile::dsp, si, sw, so) == quantize_multiplier(si, sw, so));
  const QuantizedMultiplier g = global_average_multiplier(ArithProfile::onnxruntime, si, so, 49);
  CHECK(multiplier_float(g) == si / (so * 49.0f));
}

TEST_CASE("QuantizeLinear: division by the scale, ties to even, clamp, NaN to the lowest code") {
  CHECK(quantize_linear_value(1.25f, 0.5f, 0, -128, 127) == 2);   // 2.5 → 2
  CHECK(quantize_linear_value(1.75f, 0.5f, 0, -128, 127) == 4);   // 3.5 → 4
  CHECK(quantize_linear_value(-1.25f, 0.5f, 3, -128, 127) == 1);  // −2.5 → −2, + 3
  CHECK(quantize_linear_value(1e30f, 0.5f, 0, -128, 127) == 127);
  CHECK(quantize_linear_value(-1e30f, 0.5f, 0, -128, 126) == -128);
  CHECK(quantize_linear_value(std::nanf(""), 0.5f, 7, -128, 127) == -128);
  // Division, not multiplication by the reciprocal: exact ties x / s = m + 0.5 (m even, so they round
  // down) where x·(1/s) lands above the tie.
  int differ = 0;
  for (int si = 3; si < 2001 && differ < 3; si += 2)
    for (int m = 0; m <= 200 && differ < 3; m += 2) {
      const auto s = static_cast<float>(si);
      const float x = (static_cast<float>(m) + 0.5f) * s;  // exact (< 2^24)
      if (x / s != static_cast<float>(m) + 0.5f || std::nearbyint(x * (1.0f / s)) == static_cast<float>(m)) continue;
      ++differ;
      CHECK(quantize_linear_value(x, s, 0, -1000, 1000) == m);
    }
  CHECK(differ > 0);
  // The dsp profile keeps qforge's rule (reciprocal, ties up).
  CHECK(profile_quantize_value(ArithProfile::dsp, 1.25f, 0.5f, 0, -128, 127) == 3);
  CHECK(profile_quantize_value(ArithProfile::onnxruntime, 1.25f, 0.5f, 0, -128, 127) == 2);
}

TEST_CASE("QLinearAdd (onnxruntime): fused multiply-adds on the uint8 view, ties to even") {
  // Equal scales and zero points 0 in int8 codes: u = q + 128, fixed = 128 − (128 + 128).
  const AddParams p = profile_add_params(ArithProfile::onnxruntime, 1.0f, 0, 1.0f, 0, 1.0f, 0, {-128, 127}, ActType::s8);
  CHECK(p.method == AddMethod::float_fma);
  CHECK(p.code_offset == 128);
  CHECK(p.fixed == -128.0f);
  CHECK(add_value(3, 4, p) == 7);
  CHECK(add_value(100, 100, p) == 127);
  CHECK(add_value(-100, -100, p) == -128);
  // Halving: s_c = 2 → 0.5·(a + b) rounds to even on the uint8 view: a = b = 0 int8 → u = 128 each,
  // fixed = 128 − (64 + 64) = 0 → 128 → code 0; a = 1, b = 0 → 128.5 → 128 → 0; a = 3, b = 0 → 129.5 → 130 → 2.
  const AddParams h = profile_add_params(ArithProfile::onnxruntime, 1.0f, 0, 1.0f, 0, 2.0f, 0, {-128, 127}, ActType::s8);
  CHECK(add_value(0, 0, h) == 0);
  CHECK(add_value(1, 0, h) == 0);
  CHECK(add_value(3, 0, h) == 2);
  CHECK(add_value(-1, 0, h) == 0);  // u = 127: 63.5 + 64 = 127.5 → 128 → 0
  // The fixed-point dsp add rounds those ties up.
  const AddParams d = profile_add_params(ArithProfile::dsp, 1.0f, 0, 1.0f, 0, 2.0f, 0, {-128, 127}, ActType::s8);
  CHECK(add_value(1, 0, d) == 1);
  // The registered kernels apply it element-wise on every ISA.
  const std::vector<std::int8_t> a = {0, 1, 3, -1, 127, -128}, b = {0, 0, 0, 0, 127, -128};
  for (int i = 0; i < kNumIsas; ++i) {
    const auto isa = static_cast<Isa>(i);
    if (!isa_supported(isa)) continue;
    std::vector<std::int8_t> y(a.size());
    kernel_table(isa).add(static_cast<std::int64_t>(a.size()), a.data(), b.data(), y.data(), h, ActType::s8);
    CHECK(y == std::vector<std::int8_t>{0, 0, 2, 0, 127, -128});
  }
}

TEST_CASE("QLinearAveragePool (onnxruntime): float sum of dequantized taps, / count, quantize with the uint8 zero point") {
  const AvgPoolFloat p{0.5f, 1.0f, 0, 0, -128, 127};
  float sum = 0.0f;
  for (int x : {1, 2, 2, 0}) sum = average_tap(sum, x, p);  // 0.5 + 1 + 1 + 0 = 2.5
  CHECK(sum == 2.5f);
  CHECK(average_float_result(sum, 4, p, ActType::s8) == 1);   // 0.625 + 128 → 129 − 128
  CHECK(average_float_result(10.0f, 4, p, ActType::s8) == 2);  // 2.5 + 128 = 130.5 → 130 (even) → 2
  CHECK(average_float_result(14.0f, 4, p, ActType::s8) == 4);  // 3.5 + 128 = 131.5 → 132 → 4
  CHECK(average_float_result(1e9f, 1, p, ActType::s8) == 127);
}

TEST_CASE("DequantizeLinear then QuantizeLinear (onnxruntime requantization)") {
  CHECK(dequantize_quantize_value(3, 0.5f, 0, 1.0f, 0, -128, 127) == 2);  // 1.5 → 2
  CHECK(dequantize_quantize_value(5, 0.5f, 0, 1.0f, 0, -128, 127) == 2);  // 2.5 → 2
  CHECK(dequantize_quantize_value(5, 0.5f, 1, 1.0f, -3, -128, 127) == -1);
  CHECK(dequantize_quantize_value(127, 4.0f, -128, 1.0f, 0, -10, 10) == 10);
}

TEST_CASE("ReLU6 under onnxruntime: the top code is QuantizeLinear of 6 (ties to even)") {
  // 6 / 12 = 0.5 exactly: dsp rounds the tie away from zero (1), onnxruntime to even (0).
  CHECK(profile_activation_range(ArithProfile::dsp, FusedAct::relu6, 12.0f, 0, ActType::s8).max == 1);
  CHECK(profile_activation_range(ArithProfile::onnxruntime, FusedAct::relu6, 12.0f, 0, ActType::s8).max == 0);
  CHECK(profile_activation_range(ArithProfile::onnxruntime, FusedAct::relu, 12.0f, -5, ActType::s8).min == -5);
}

TEST_CASE("QLinearAdd (onnxruntime): golden outputs measured with onnxruntime-node 1.30.0 (Note [QLinearAdd constant])") {
  // uint8 a, b through a com.microsoft QLinearAdd node on x86-64 (AVX2 kernel); these are the pairs where
  // the unfused constant z_c − (r_a·z_a + r_b·z_b) would give one less (all 65536 pairs of 40 random
  // scale/zero-point sets were compared: 0 differences with the fused constant).
  struct Case {
    float sa;
    int za;
    float sb;
    int zb;
    float sc;
    int zc, a, b, y;
  };
  const Case cases[] = {
      {0.714510202f, 201, 0.00796630047f, 83, 0.0320457518f, 174, 194, 29, 5},
      {0.714510202f, 201, 0.00796630047f, 83, 0.0320457518f, 174, 200, 50, 144},
      {0.714510202f, 201, 0.00796630047f, 83, 0.0320457518f, 174, 196, 95, 66},
      {0.714510202f, 201, 0.00796630047f, 83, 0.0320457518f, 174, 202, 116, 205},
  };
  for (const Case& c : cases) {
    const AddParams u8 = add_params_onnxruntime(c.sa, c.za, c.sb, c.zb, c.sc, c.zc, {0, 255}, ActType::u8);
    CHECK(add_value(c.a, c.b, u8) == c.y);
    // The same through int8 codes (q = u − 128, Note [uint8 view]).
    const AddParams s8 =
        add_params_onnxruntime(c.sa, c.za - 128, c.sb, c.zb - 128, c.sc, c.zc - 128, {-128, 127}, ActType::s8);
    CHECK(add_value(c.a - 128, c.b - 128, s8) == c.y - 128);
  }
}

TEST_CASE("bias quantization and the BatchNorm fold (quantize.hpp)") {
  CHECK(quantize_bias(2.5, 1.0) == 3);
  CHECK(quantize_bias(-2.5, 1.0) == -2);
  CHECK(quantize_bias(1e30, 1e-3) == INT32_MAX);
  CHECK(quantize_bias(-1e30, 1e-3) == INT32_MIN);
  CHECK(quantize_bias(std::nan(""), 1.0) == 0);
  float w[4] = {1.0f, 2.0f, 3.0f, 4.0f}, b[2] = {0.5f, -1.0f};
  const double gamma[2] = {2.0, 1.0}, beta[2] = {0.25, 0.0}, mean[2] = {0.5, 1.0}, var[2] = {3.0, 0.0};
  fold_bn_into_layer(w, 2, 2, b, gamma, beta, mean, var, 1.0);  // s = 2/sqrt(4) = 1, 1/sqrt(1) = 1
  CHECK(w[0] == 1.0f);
  CHECK(w[3] == 4.0f);
  CHECK(b[0] == 0.25f);   // 0.25 + (0.5 − 0.5)·1
  CHECK(b[1] == -2.0f);   // 0 + (−1 − 1)·1
  const double g2[1] = {3.0}, z[1] = {0.0}, v2[1] = {0.0};
  float w2[1] = {0.5f}, b2[1] = {1.0f};
  fold_bn_into_layer(w2, 1, 1, b2, g2, z, z, v2, 0.25);  // s = 3/0.5 = 6
  CHECK(w2[0] == 3.0f);
  CHECK(b2[0] == 6.0f);
}
