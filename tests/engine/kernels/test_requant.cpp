// requant.hpp against the hand-computed values of integer-arithmetic.md §2–§7.
#include "engine/kernels/requant.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

using namespace qforge::kernels;

TEST_CASE("quantize_multiplier: matches the TFLite QuantizeMultiplier table") {
  struct Row { double m; std::int32_t q, shift; };
  const Row rows[] = {
      {0.0123, 1690499128, -6}, {0.0023456, 1289507237, -8}, {0.25, 1073741824, -1}, {0.5, 1073741824, 0},
      {0.75, 1610612736, 0},    {1.0, 1073741824, 1},        {1.5, 1610612736, 1},
      {0.999999999999, 1073741824, 1},  // q rounds to 2^31, then halves
      {std::ldexp(1.0, -33), 0, 0},     // flushed to zero
  };
  for (const Row& r : rows) {
    INFO("M = ", r.m);
    const QuantizedMultiplier qm = quantize_multiplier(r.m);
    CHECK(qm.multiplier == r.q);
    CHECK(qm.shift == r.shift);
  }
  CHECK(quantize_multiplier(0.0) == QuantizedMultiplier{});
  CHECK(quantize_multiplier(-1.0) == QuantizedMultiplier{});
  CHECK(quantize_multiplier(std::nan("")) == QuantizedMultiplier{});
  CHECK(quantize_multiplier(std::ldexp(1.0, 40)) == QuantizedMultiplier{INT32_MAX, 30});  // saturates
  // Per-channel form: double(s_in)·double(s_w)/double(s_out) of the float32 scales.
  const float s_in = 0.02f, s_w = 0.003f, s_out = 0.05f;
  CHECK(quantize_multiplier(s_in, s_w, s_out) ==
        quantize_multiplier(static_cast<double>(s_in) * static_cast<double>(s_w) / static_cast<double>(s_out)));
}

TEST_CASE("srdhm and rdbpot: match the gemmlowp tables (ties up, ties away from zero)") {
  // a·b/2^31 = ±0.5, ±1.5 with a = 2^30·k, b = 1 ... use b = 2^30 → a·b/2^31 = a/2.
  CHECK(srdhm(1, 1 << 30) == 1);    // +0.5 → 1
  CHECK(srdhm(-1, 1 << 30) == 0);   // −0.5 → 0
  CHECK(srdhm(3, 1 << 30) == 2);    // +1.5 → 2
  CHECK(srdhm(-3, 1 << 30) == -1);  // −1.5 → −1
  CHECK(srdhm(INT32_MIN, INT32_MIN) == INT32_MAX);
  struct Row { std::int32_t x; int e; std::int32_t want; };
  const Row rows[] = {{1, 1, 1},  {-1, 1, -1}, {3, 1, 2},  {-3, 1, -2}, {5, 2, 1},
                      {-5, 2, -1}, {6, 2, 2},  {-6, 2, -2}, {7, 2, 2},  {-7, 2, -2}};
  for (const Row& r : rows) {
    INFO(r.x, " >> ", r.e);
    CHECK(rdbpot(r.x, r.e) == r.want);
  }
}

TEST_CASE("requantize: single vs double rounding on the worked examples (M = 0.0123)") {
  const QuantizedMultiplier m{1690499128, -6};
  struct Row { std::int32_t acc; std::int64_t single, dbl; };
  const Row rows[] = {{1000, 12, 12}, {12345, 152, 152}, {203, 2, 3}, {-10284, -126, -127}, {-299878, -3688, -3689}};
  for (const Row& r : rows) {
    INFO("acc = ", r.acc);
    CHECK(requantize_single(r.acc, m) == r.single);
    CHECK(requantize_double(r.acc, m) == r.dbl);
    CHECK(requantize(r.acc, m, Rounding::single) == r.single);
    CHECK(requantize(r.acc, m, Rounding::double_gemmlowp) == r.dbl);
  }
}

TEST_CASE("requantize: ties and near-ties follow the documented rules (M = 0.5, 0.25)") {
  const QuantizedMultiplier half{1 << 30, 0}, quarter{1 << 30, -1};
  struct Row { QuantizedMultiplier m; std::int32_t acc; std::int64_t single, dbl; };
  const Row rows[] = {{half, 5, 3, 3},    {half, -3, -1, -1},    {quarter, 2, 1, 1},
                      {quarter, -2, 0, -1}, {quarter, -6, -1, -2}, {quarter, 5, 1, 2}};
  for (const Row& r : rows) {
    INFO("acc = ", r.acc, " shift = ", r.m.shift);
    CHECK(requantize_single(r.acc, r.m) == r.single);
    CHECK(requantize_double(r.acc, r.m) == r.dbl);
  }
}

TEST_CASE("requantize_single: equals floor(acc·q·2^(shift-31) + 0.5) in float64 (the simulation's form)") {
  std::mt19937 rng(5);
  for (int i = 0; i < 20000; ++i) {
    const std::int32_t acc = std::uniform_int_distribution<std::int32_t>(-(1 << 21), 1 << 21)(rng);
    const double M = std::exp(std::uniform_real_distribution<double>(std::log(1.0 / 16384), std::log(0.25))(rng));
    const QuantizedMultiplier qm = quantize_multiplier(M);
    const double f = std::floor(static_cast<double>(acc) * qm.multiplier * std::ldexp(1.0, qm.shift - 31) + 0.5);
    REQUIRE(requantize_single(acc, qm) == static_cast<std::int64_t>(f));
  }
  // Extremes: full int32 accumulators never overflow the int64 product.
  const QuantizedMultiplier big{INT32_MAX, 30};
  CHECK(requantize_single(INT32_MAX, big) > INT32_MAX);
  CHECK(requantize_output(INT32_MAX, big, 5, -128, 127) == 127);
  CHECK(requantize_output(INT32_MIN, big, 5, -128, 127) == -128);
  CHECK(requantize_output(INT32_MIN, {INT32_MAX, -31}, 0, -128, 127) == -1);  // −2^31·(2^31−1)/2^62 ≈ −0.9999999995 → −1
}

TEST_CASE("requantize_output: zero point is added after the shift, then the clamp applies") {
  const QuantizedMultiplier quarter{1 << 30, -1};
  CHECK(requantize_output(-2, quarter, 10, -128, 127) == 10);    // −0.5 → 0, + 10
  CHECK(requantize_output(-2, quarter, 10, -128, 127, Rounding::double_gemmlowp) == 9);
  CHECK(requantize_output(1000, quarter, 10, -128, 127) == 127);  // 250 + 10 saturates
  CHECK(requantize_output(-1000, quarter, -100, -100, 127) == -100);  // fused ReLU: clamp at z_out
}

TEST_CASE("activation_range: ReLU and ReLU6 as clamps in the quantized domain") {
  CHECK(activation_range(FusedAct::none, 0.1f, 3, ActType::s8).min == -128);
  CHECK(activation_range(FusedAct::relu, 0.1f, 3, ActType::s8).min == 3);
  CHECK(activation_range(FusedAct::relu, 0.1f, 3, ActType::s8).max == 127);
  const ActivationRange r6 = activation_range(FusedAct::relu6, 0.1f, -128, ActType::s8);
  CHECK(r6.min == -128);
  CHECK(r6.max == -68);  // −128 + round(6/0.1)
  const ActivationRange big = activation_range(FusedAct::relu6, 0.01f, 0, ActType::u8);
  CHECK(big.min == 0);
  CHECK(big.max == 255);  // 600 > 255: the type range wins
}

TEST_CASE("quantize_value: rounds ties toward +inf, saturates, maps NaN to the zero point") {
  const float inv = 1.0f;  // scale 1: codes are the rounded values themselves
  CHECK(quantize_value(2.5f, inv, 0, -128, 127) == 3);
  CHECK(quantize_value(-2.5f, inv, 0, -128, 127) == -2);
  CHECK(quantize_value(0.5f, inv, 0, -128, 127) == 1);
  CHECK(quantize_value(-0.5f, inv, 0, -128, 127) == 0);
  CHECK(quantize_value(0.49999997f, inv, 0, -128, 127) == 0);  // floor(x + 0.5) in float would give 1
  CHECK(quantize_value(-1.5f, inv, 0, -128, 127) == -1);
  CHECK(quantize_value(1e30f, inv, 3, -128, 127) == 127);
  CHECK(quantize_value(-INFINITY, inv, 3, -128, 127) == -128);
  CHECK(quantize_value(NAN, inv, 3, -128, 127) == 3);
  CHECK(quantize_value(1.0f, 1.0f / 0.1f, -5, -128, 127) == 5);  // 1.0/0.1 = 10, + zp
  CHECK(quantize_value(-3.0f, 1.0f, 200, 0, 255) == 197);
  CHECK(dequantize_value(197, 0.5f, 200) == -1.5f);
  CHECK(round_half_up(-0.5f) == 0.0f);
  CHECK(round_half_up(7.5f) == 8.0f);
  CHECK(round_half_up(-7.5f) == -7.0f);
}

TEST_CASE("rounding_rshift and average_value: ties toward +inf") {
  CHECK(rounding_rshift(5, 1) == 3);
  CHECK(rounding_rshift(-5, 1) == -2);
  CHECK(rounding_rshift(-6, 2) == -1);  // −1.5 → −1
  CHECK(rounding_rshift(7, 0) == 7);
  CHECK(average_value(5, 2) == 3);    // 2.5 → 3
  CHECK(average_value(-5, 2) == -2);  // −2.5 → −2
  CHECK(average_value(-7, 4) == -2);  // −1.75 → −2
  CHECK(average_value(10, 4) == 3);   // 2.5 → 3
  CHECK(average_value(-1, 9) == 0);
}

TEST_CASE("make_add_params: equal scales add exactly; 15-bit multipliers within 2^-15") {
  const AddParams p = make_add_params(0.1f, 0, 0.1f, 0, 0.1f, 0, {-128, 127});
  CHECK(add_value(3, 4, p) == 7);
  CHECK(add_value(100, 100, p) == 127);
  CHECK(add_value(-100, -100, p) == -128);
  CHECK(p.a_multiplier >= (1 << 14));
  CHECK(p.a_multiplier < (1 << 15));
  // s_out = 2·s: (3 + 2)/2 = 2.5 → 3 (tie up); (−3 − 2)/2 → −2.
  const AddParams h = make_add_params(0.1f, 0, 0.1f, 0, 0.2f, 0, {-128, 127});
  CHECK(add_value(3, 2, h) == 3);
  CHECK(add_value(-3, -2, h) == -2);
  // Zero points are subtracted before and added after.
  const AddParams z = make_add_params(0.1f, 10, 0.1f, -20, 0.1f, 5, {-128, 127});
  CHECK(add_value(10, -20, z) == 5);
  CHECK(add_value(11, -18, z) == 8);
  // Unequal scales: 0.05·(x) + 0.2·(y) in units of 0.1.
  const AddParams u = make_add_params(0.05f, 0, 0.2f, 0, 0.1f, 0, {-128, 127});
  CHECK(add_value(7, 3, u) == 10);  // 3.5 + 6 = 9.5 → 10
}

TEST_CASE("fixed-point sigmoid/tanh: table interpolation is within 1 LSB (sigmoid) and 3 LSB (tanh)") {
  CHECK(sigmoid_q15(0) == 16384);
  CHECK(tanh_q15(0) == 0);
  int worst_s = 0, worst_t = 0;
  int prev_s = -1, prev_t = -40000;
  for (int x = -32768; x <= 32767; ++x) {
    const double xr = x / 4096.0;
    const int s = sigmoid_q15(x), t = tanh_q15(x);
    worst_s = std::max(worst_s, static_cast<int>(std::abs(s - 32768.0 / (1 + std::exp(-xr)))));
    worst_t = std::max(worst_t, static_cast<int>(std::abs(t - 32768.0 * std::tanh(xr))));
    CHECK_MESSAGE(s >= prev_s, "sigmoid must be monotone");
    CHECK_MESSAGE(t >= prev_t, "tanh must be monotone");
    prev_s = s;
    prev_t = t;
    if (s < 0 || s > 32767 || t < -32767 || t > 32767) FAIL("out of range at ", x);
  }
  CHECK(worst_s <= 1);
  CHECK(worst_t <= 3);
  CHECK(to_q312(1 << 11, -11) == 1 << 12);  // 1.0 in Q4.11 → Q3.12
  CHECK(to_q312(20000, -11) == 32767);       // saturates
  CHECK(to_q312(3, -13) == 2);               // 1.5 → 2
}

TEST_CASE("LSTM cell pieces: half gates halve the cell with ties up; hidden output requantizes o·tanh(c)") {
  LstmCellParams p;
  p.cell_exp = -11;
  p.hidden = quantize_multiplier(std::ldexp(1.0, -30) / (1.0 / 128));  // s_h = 1/128
  p.hidden_zero_point = 0;
  const int half = 16384;  // 0.5 in Q0.15
  CHECK(lstm_cell_update(half, half, 0, 5, p) == 3);    // 2.5 → 3
  CHECK(lstm_cell_update(half, half, 0, -5, p) == -2);  // −2.5 → −2
  // i·g: 0.5·0.5 = 0.25 → 0.25·2^11 = 512 cell units.
  CHECK(lstm_cell_update(half, 0, half, 1000, p) == 512);
  CHECK(lstm_cell_update(32767, 32767, 32767, 32767, p) == 32767);  // saturates
  p.cell_clip = 1000;
  CHECK(lstm_cell_update(32767, 32767, 32767, 32767, p) == 1000);
  p.cell_clip = 0;
  // h = o·tanh(c) with o = 0.5, c = 0 → 0; c = 2^11 (1.0): tanh(1) ≈ 0.7616 → 0.5·0.7616·128 ≈ 48.7 → 49.
  CHECK(lstm_hidden(half, 0, p) == 0);
  CHECK(lstm_hidden(half, 1 << 11, p) == 49);
  CHECK(gate_preactivation(0, {1 << 30, 0}, 0, {1 << 30, 0}) == 0);
  CHECK(gate_preactivation(40000, {1 << 30, 1}, 40000, {1 << 30, 1}) == 32767);  // each saturates to int16 first
  // GRU: z = 0 → h' = n in hidden units; z = 1 (32767) → ≈ h.
  CHECK(gru_hidden(0, 16384, 0, p) == 64);  // 0.5·128
  CHECK(gru_hidden(32767, 0, 100, p) == 100);
}
