// requant.hpp — THE integer arithmetic of qforge's fixed-point target (DESIGN.md §3).
//
// Every int8 kernel (scalar reference and SIMD), the exact simulation and the integer runtime use the
// functions in this header; nothing else re-derives rounding or requantization. The model:
//
//   real = s·(q − z)                      affine quantization; activations int8 or uint8 with a zero point,
//                                         weights int8 symmetric (z = 0) on [-128,127] or strict [-127,127],
//                                         per tensor or per output channel; biases int32 at scale s_in·s_w[c].
//   acc  = Σ_k (x_k − z_in)·w[c][k] + b[c]            int32 accumulation (wraps mod 2^32, see Note [acc wrap])
//   M_c  = double(s_in)·double(s_w[c]) / double(s_out) ≈ q_c · 2^(shift_c − 31)   (quantize_multiplier)
//   y    = clamp(requantize(acc, q_c, shift_c) + z_out, act_min, act_max)
//
// Rounding (Note [single rounding]): the default is SINGLE rounding, y = floor((acc·q + 2^(t−1)) / 2^t) with
// t = 31 − shift: one rounding of the exact product, ties toward +∞ (2.5 → 3, −2.5 → −2). The gemmlowp /
// classic-TFLite DOUBLE rounding (SRDHM then RDBPOT, ties up then ties away from zero) is selectable with
// Rounding::double_gemmlowp. Every other rounding in qforge's integer path (quantize of floats, average
// pooling, residual add, recurrent cells) also rounds ties toward +∞, so there is one tie rule.
//
// Zero point and clamp (Note [zero point and clamp]): z_out is added after the shift, in exact arithmetic,
// then the result is clamped to [act_min, act_max]; a fused ReLU/ReLU6 is just a narrower clamp range
// (activation_range). Intermediates never saturate before that final clamp.
//
// Recurrent cells use the 8x8_16 scheme of integer-arithmetic.md §8 with a documented variant for the
// nonlinearities (Note [fixed-point sigmoid/tanh]): gate pre-activations in Q3.12, gates in Q0.15, the
// cell state int16 with a power-of-two scale 2^cell_exp, and sigmoid/tanh by a 513-entry table with linear
// interpolation (no float at run time, no libm dependence: the table is a constant).
//
// Note [ODR and per-ISA TUs]: the inline functions below are compiled into translation units built with
// different -m flags (engine/kernels/*__<isa>.cpp). If they had one mangled name the linker would keep an
// arbitrary copy (possibly with AVX-512 code in the baseline path). They therefore live in an inline
// namespace named by QFORGE_KERNELS_ISA_NS, which meson sets per ISA library (isa_generic otherwise). Types
// and constant tables live outside it so that all ISAs share them.
#pragma once

#include "engine/kernels/luts.hpp"
#include "engine/kernels/quantize.hpp"

#include <bit>
#include <cmath>
#include <cstdint>

#ifndef QFORGE_KERNELS_ISA_NS
#define QFORGE_KERNELS_ISA_NS isa_generic
#endif

namespace qforge::kernels {

// Which requantization rounding a layer uses. single is qforge's DSP model; double_gemmlowp reproduces
// gemmlowp / TFLite without TFLITE_SINGLE_ROUNDING; float_rne is ONNX Runtime's MlasRequantizeOutput
// (Note [float requantization]; arith_profile.hpp), whose QuantizedMultiplier holds a float32 scale.
enum class Rounding : std::uint8_t { single = 0, double_gemmlowp = 1, float_rne = 2 };

// 8-bit activation type. Kernels read and write raw bytes; this says how to interpret them.
enum class ActType : std::uint8_t { s8 = 0, u8 = 1 };

// Fused activation expressed as a clamp (activation_range).
enum class FusedAct : std::uint8_t { none = 0, relu = 1, relu6 = 2 };

// M ≈ multiplier · 2^(shift − 31), multiplier ∈ [2^30, 2^31) unless M flushes to zero.
struct QuantizedMultiplier {
  std::int32_t multiplier = 0;
  std::int32_t shift = 0;
  friend bool operator==(const QuantizedMultiplier&, const QuantizedMultiplier&) = default;
};

struct ActivationRange {
  std::int32_t min = -128;
  std::int32_t max = 127;
};

// How a residual add computes: fixed_point (Note [residual add], the dsp profile) or float_fma (ONNX
// Runtime's x86 QLinearAdd, arith_profile.hpp Note [onnxruntime arithmetic]).
enum class AddMethod : std::uint8_t { fixed_point = 0, float_fma = 1 };

// Residual add: y = clamp(z_out + round_half_up(((a − z_a)·q_a + (b − z_b)·q_b) / 2^shift)).
// See make_add_params and Note [residual add]; float_fma uses the ratio/fixed fields instead.
struct AddParams {
  std::int32_t a_zero_point = 0, b_zero_point = 0, out_zero_point = 0;
  std::int32_t a_multiplier = 0, b_multiplier = 0;  // ∈ [0, 2^15)
  std::int32_t shift = 0;                           // ∈ [1, 30]
  std::int32_t act_min = -128, act_max = 127;
  // float_fma: y = clamp(rne(fma(a + u, a_ratio, fma(b + u, b_ratio, fixed))) − u), u = code_offset
  AddMethod method = AddMethod::fixed_point;
  float a_ratio = 0.0f, b_ratio = 0.0f, fixed = 0.0f;
  std::int32_t code_offset = 0;  // 128 for int8 codes (ORT sees uint8, Note [uint8 view]), 0 for uint8
};

inline constexpr std::int32_t kQ312One = 1 << 12;  // 1.0 in Q3.12 (gate pre-activations)
inline constexpr std::int32_t kQ015Max = 32767;    // largest gate value in Q0.15 (just below 1.0)

// Recurrent-cell constants (see the LSTM/GRU section at the end of this header).
struct LstmCellParams {
  std::int32_t cell_exp = -11;       // cell state scale 2^cell_exp, cell_exp ∈ [-15, -1] (Q4.11 by default)
  std::int32_t cell_clip = 0;        // |c| ≤ cell_clip in cell units; 0 = no clip
  QuantizedMultiplier hidden;        // 2^-30 / s_h: (o·tanh(c) in Q0.30) → hidden int8 units
  std::int32_t hidden_zero_point = 0;
  std::int32_t hidden_min = -128, hidden_max = 127;
};

inline namespace QFORGE_KERNELS_ISA_NS {

// ---------------------------------------------------------------------------------------------------
// Rounding primitives.

// x / 2^n rounded to nearest, ties toward +∞ (n ∈ [0, 62]); floor((x + 2^(n−1)) / 2^n).
[[gnu::always_inline]] constexpr std::int64_t rounding_rshift(std::int64_t x, int n) noexcept {
  return n == 0 ? x : (x + (std::int64_t{1} << (n - 1))) >> n;
}

[[gnu::always_inline]] constexpr std::int32_t sat32(std::int64_t x) noexcept {
  return x > INT32_MAX ? INT32_MAX : (x < INT32_MIN ? INT32_MIN : static_cast<std::int32_t>(x));
}

[[gnu::always_inline]] constexpr std::int32_t sat16(std::int64_t x) noexcept {
  return x > 32767 ? 32767 : (x < -32768 ? -32768 : static_cast<std::int32_t>(x));
}

[[gnu::always_inline]] constexpr std::int64_t clamp64(std::int64_t x, std::int64_t lo, std::int64_t hi) noexcept {
  return x < lo ? lo : (x > hi ? hi : x);
}

// gemmlowp SaturatingRoundingDoublingHighMul: floor((a·b + 2^30) / 2^31), i.e. a·b/2^31 to nearest with
// ties toward +∞ (the gemmlowp nudge then truncation toward zero is identical); INT32_MIN² saturates.
[[gnu::always_inline]] constexpr std::int32_t srdhm(std::int32_t a, std::int32_t b) noexcept {
  if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
  const std::int64_t ab = std::int64_t{a} * std::int64_t{b};
  const std::int64_t nudge = ab >= 0 ? (std::int64_t{1} << 30) : (1 - (std::int64_t{1} << 30));
  return static_cast<std::int32_t>((ab + nudge) / (std::int64_t{1} << 31));  // C++ division truncates
}

// gemmlowp RoundingDivideByPOT: x / 2^e to nearest, ties away from zero (e ∈ [0, 31]).
[[gnu::always_inline]] constexpr std::int32_t rdbpot(std::int32_t x, int e) noexcept {
  const std::int32_t mask = static_cast<std::int32_t>((std::int64_t{1} << e) - 1);
  const std::int32_t remainder = x & mask;
  const std::int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> e) + (remainder > threshold ? 1 : 0);
}

// ---------------------------------------------------------------------------------------------------
// Real scale → fixed-point multiplier (TFLite QuantizeMultiplier with TFLITE_SINGLE_ROUNDING limits).
//   q_f = frexp(M), q = round_half_away(q_f·2^31); q == 2^31 → (2^30, shift+1); shift < −31 → (0, 0)
//   (flush); shift > 30 → (2^31−1, 30) (saturate); M ≤ 0 or not finite → (0, 0).
inline QuantizedMultiplier quantize_multiplier(double m) noexcept {
  if (!(m > 0.0) || !std::isfinite(m)) return {};
  int shift = 0;
  const double q_f = std::frexp(m, &shift);
  auto q = static_cast<std::int64_t>(std::round(q_f * static_cast<double>(std::int64_t{1} << 31)));
  if (q == (std::int64_t{1} << 31)) {
    q /= 2;
    ++shift;
  }
  if (shift < -31) return {};
  if (shift > 30) return {INT32_MAX, 30};
  return {static_cast<std::int32_t>(q), shift};
}

// Note [float requantization]: Rounding::float_rne stores a float32 scale M in a QuantizedMultiplier as
// {bit pattern of M, shift 0} (a positive finite float's bits lie in [0, 2^31), so packed views, bundles and
// their validation carry it unchanged). requantize() then computes rne(float(acc)·M): float(acc) rounds
// when |acc| ≥ 2^24, the product rounds once, ties go to even — MlasRequantizeOutput's order.
inline QuantizedMultiplier float_multiplier(float m) noexcept {
  if (!(m > 0.0f) || !std::isfinite(m)) return {};
  return {std::bit_cast<std::int32_t>(m), 0};
}
constexpr float multiplier_float(QuantizedMultiplier m) noexcept { return std::bit_cast<float>(m.multiplier); }

// Per-channel multiplier from float32 scales, computed in double as TFLite does (recipe step 4).
inline QuantizedMultiplier quantize_multiplier(float s_in, float s_w, float s_out) noexcept {
  return quantize_multiplier(static_cast<double>(s_in) * static_cast<double>(s_w) / static_cast<double>(s_out));
}

// ---------------------------------------------------------------------------------------------------
// Requantization of an int32 accumulator (before the zero point).

// Note [single rounding]: floor((acc·q + 2^(t−1)) / 2^t), t = 31 − shift ∈ [1, 62] (shift ∈ [−31, 30]).
// Exact in int64 (|acc·q| < 2^62). One rounding, ties toward +∞. Equal to floor(acc·q·2^(shift−31) + 0.5)
// evaluated in float64 whenever |acc·q| < 2^53 (the simulation may use either form).
[[gnu::always_inline]] constexpr std::int64_t requantize_single(std::int32_t acc, QuantizedMultiplier m) noexcept {
  return rounding_rshift(std::int64_t{acc} * std::int64_t{m.multiplier}, 31 - m.shift);
}

// gemmlowp / TFLite double rounding: RDBPOT(SRDHM(acc·2^left, q), right), left = max(shift, 0),
// right = max(−shift, 0). The pre-shift acc·2^left saturates to int32 (TFLite leaves that overflow undefined).
[[gnu::always_inline]] constexpr std::int64_t requantize_double(std::int32_t acc, QuantizedMultiplier m) noexcept {
  const int left = m.shift > 0 ? m.shift : 0;
  const int right = m.shift > 0 ? 0 : -m.shift;
  const std::int32_t x = sat32(std::int64_t{acc} * (std::int64_t{1} << left));
  return rdbpot(srdhm(x, m.multiplier), right);
}

// Note [float requantization]: rne(float(acc)·M), saturated to ±2^62 before the conversion.
[[gnu::always_inline]] inline std::int64_t requantize_float(std::int32_t acc, QuantizedMultiplier m) noexcept {
  float f = static_cast<float>(acc) * multiplier_float(m);
  f = f < -4.0e18f ? -4.0e18f : (f > 4.0e18f ? 4.0e18f : f);
  return static_cast<std::int64_t>(std::nearbyint(f));
}

[[gnu::always_inline]] inline std::int64_t requantize(std::int32_t acc, QuantizedMultiplier m,
                                                      Rounding r = Rounding::single) noexcept {
  return r == Rounding::single ? requantize_single(acc, m)
                               : (r == Rounding::float_rne ? requantize_float(acc, m) : requantize_double(acc, m));
}

// Note [zero point and clamp]: y = clamp(requantize(acc) + z_out, act_min, act_max), all in exact int64
// arithmetic; equivalently clamp(requantize(acc), act_min − z_out, act_max − z_out) + z_out, which is
// how SIMD epilogues evaluate it without 64-bit saturation.
[[gnu::always_inline]] inline std::int32_t requantize_output(std::int32_t acc, QuantizedMultiplier m,
                                                                std::int32_t zero_point, std::int32_t act_min,
                                                                std::int32_t act_max,
                                                                Rounding r = Rounding::single) noexcept {
  return static_cast<std::int32_t>(clamp64(requantize(acc, m, r) + zero_point, act_min, act_max));
}

// ---------------------------------------------------------------------------------------------------
// Activation ranges.

constexpr ActivationRange type_range(ActType t) noexcept {
  return t == ActType::s8 ? ActivationRange{-128, 127} : ActivationRange{0, 255};
}

// Fused activation as a clamp in the quantized domain (TFLite CalculateActivationRangeQuantized):
// ReLU → min = max(qmin, z_out); ReLU6 → also max = min(qmax, z_out + round_half_away(6/s_out)).
inline ActivationRange activation_range(FusedAct act, float s_out, std::int32_t z_out, ActType t) noexcept {
  ActivationRange r = type_range(t);
  if (act == FusedAct::none) return r;
  if (z_out > r.min) r.min = z_out;
  if (act == FusedAct::relu6) {
    const auto six = static_cast<std::int64_t>(std::round(6.0f / s_out)) + z_out;
    if (six < r.max) r.max = static_cast<std::int32_t>(six < r.min ? r.min : six);
  }
  return r;
}

// quantize_value / dequantize_value / round_half_up: quantize.hpp.

// ---------------------------------------------------------------------------------------------------
// Note [residual add]: y = clamp(z_out + floor(((a − z_a)·q_a + (b − z_b)·q_b + 2^(shift−1)) / 2^shift)).
// q_a/q_b are 15-bit fixed-point multipliers of s_a/s_out and s_b/s_out with a common shift chosen so that
// the larger one lies in [2^14, 2^15): the sum fits int32 (|·| ≤ 2·255·2^15), it is one rounding (ties
// toward +∞), and the relative error of the multipliers (2^-15) moves results by < 0.02 LSB.
inline AddParams make_add_params(float s_a, std::int32_t z_a, float s_b, std::int32_t z_b, float s_out,
                                 std::int32_t z_out, ActivationRange range) noexcept {
  AddParams p;
  p.a_zero_point = z_a;
  p.b_zero_point = z_b;
  p.out_zero_point = z_out;
  p.act_min = range.min;
  p.act_max = range.max;
  const double ma = static_cast<double>(s_a) / s_out, mb = static_cast<double>(s_b) / s_out;
  const double mx = ma > mb ? ma : mb;
  int e = 0;
  if (mx > 0 && std::isfinite(mx)) std::frexp(mx, &e);  // mx ∈ [2^(e−1), 2^e)
  int shift = 15 - e;                                    // mx·2^shift ∈ [2^14, 2^15)
  shift = shift < 1 ? 1 : (shift > 30 ? 30 : shift);
  auto quant = [&](double m) {
    const double v = std::round(m * std::ldexp(1.0, shift));
    return static_cast<std::int32_t>(v > 32767 ? 32767 : (v < 0 ? 0 : v));
  };
  p.a_multiplier = quant(ma);
  p.b_multiplier = quant(mb);
  p.shift = shift;
  return p;
}

[[gnu::always_inline]] constexpr std::int32_t add_value_fixed(std::int32_t a, std::int32_t b, const AddParams& p) noexcept {
  // |acc| ≤ 2·383·32767 < 2^25 and shift ∈ [1, 30]: int32 arithmetic is exact (and vectorises).
  const std::int32_t acc = (a - p.a_zero_point) * p.a_multiplier + (b - p.b_zero_point) * p.b_multiplier;
  const std::int32_t y = ((acc + (1 << (p.shift - 1))) >> p.shift) + p.out_zero_point;
  return y < p.act_min ? p.act_min : (y > p.act_max ? p.act_max : y);
}

// ONNX Runtime's x86 QLinearAdd (AddMethod::float_fma): two fused multiply-adds in float32 on the uint8
// view of the codes, round half to even, saturate (the value is kept in ±2^30 before the conversion).
[[gnu::always_inline]] inline std::int32_t add_value_float(std::int32_t a, std::int32_t b, const AddParams& p) noexcept {
  const float u = static_cast<float>(p.code_offset);
  float v = std::fma(static_cast<float>(a) + u, p.a_ratio, std::fma(static_cast<float>(b) + u, p.b_ratio, p.fixed));
  v = v < -1.0e9f ? -1.0e9f : (v > 1.0e9f ? 1.0e9f : v);
  const std::int32_t y = static_cast<std::int32_t>(std::nearbyint(v)) - p.code_offset;
  return y < p.act_min ? p.act_min : (y > p.act_max ? p.act_max : y);
}

[[gnu::always_inline]] inline std::int32_t add_value(std::int32_t a, std::int32_t b, const AddParams& p) noexcept {
  return p.method == AddMethod::float_fma ? add_value_float(a, b, p) : add_value_fixed(a, b, p);
}

// Average pooling: z + round_half_up(Σ(x − z) / count) = z + floor((2·Σ + count) / (2·count)).
[[gnu::always_inline]] constexpr std::int32_t average_value(std::int32_t sum_minus_zp, std::int32_t count) noexcept {
  const std::int64_t num = 2 * std::int64_t{sum_minus_zp} + count, den = 2 * std::int64_t{count};
  const std::int64_t q = num / den;  // truncates toward zero; make it floor
  return static_cast<std::int32_t>((num % den != 0 && num < 0) ? q - 1 : q);
}

// ---------------------------------------------------------------------------------------------------
// Fixed-point sigmoid/tanh.
// Note [fixed-point sigmoid/tanh]: f(x) for x ∈ [-8, 8) in Q3.12 (int16), result in Q0.15. Table entry
// i ∈ [0, 512] (luts.hpp, generated by gen_luts.py) holds round_half_up(32768·f(−8 + i/32)) clamped to
// the output range. Lookup: u = x + 32768, i = u >> 7, frac = u & 127,
//   y = T[i] + floor(((T[i+1] − T[i])·frac + 64) / 128)        (linear interpolation, ties toward +∞).
// Max error vs the real function: 1 LSB (sigmoid), 3 LSB (tanh) of Q0.15. This replaces gemmlowp's polynomial logistic()/tanh()
// of TFLite's 8x8_16 LSTM with a documented variant; the simulation calls the same functions.

[[gnu::always_inline]] constexpr std::int32_t lut_interpolate(const std::int16_t* table, std::int32_t x_q312) noexcept {
  const std::int32_t u = x_q312 + 32768;  // x ∈ [-32768, 32767]
  const std::int32_t i = u >> 7, frac = u & 127;
  const std::int32_t lo = table[i], hi = table[i + 1];
  return lo + (((hi - lo) * frac + 64) >> 7);
}

// Q3.12 → Q0.15 in [0, 32767].
[[gnu::always_inline]] constexpr std::int32_t sigmoid_q15(std::int32_t x_q312) noexcept {
  return lut_interpolate(kSigmoidLut, x_q312);
}
// Q3.12 → Q0.15 in [-32767, 32767].
[[gnu::always_inline]] constexpr std::int32_t tanh_q15(std::int32_t x_q312) noexcept {
  return lut_interpolate(kTanhLut, x_q312);
}

// int16 value with scale 2^exp → Q3.12 (scale 2^-12): rounding right shift (ties up) or saturating left shift.
[[gnu::always_inline]] constexpr std::int32_t to_q312(std::int32_t x, std::int32_t exp) noexcept {
  const std::int32_t d = exp + 12;
  if (d >= 0) return sat16(std::int64_t{x} << d);
  return static_cast<std::int32_t>(rounding_rshift(x, -d));
}

// ---------------------------------------------------------------------------------------------------
// Recurrent cells: the 8x8_16 scheme (integer-arithmetic.md §8) with the table nonlinearities.
//
// Gate pre-activation (LSTM i,f,g,o; GRU r,z and n's input part): the input and recurrent GEMVs keep two
// int32 accumulators (each including its own bias and zero-point folding) and requantize them separately
// to Q3.12 with single rounding, each saturated to int16, then add them with int16 saturation:
//   pre = sat16(sat16(requantize(acc_x, m_x)) + sat16(requantize(acc_h, m_h)))    m_x = s_x·s_Wx/2^-12.
[[gnu::always_inline]] constexpr std::int32_t gate_preactivation(std::int32_t acc_x, QuantizedMultiplier m_x,
                                                                 std::int32_t acc_h, QuantizedMultiplier m_h) noexcept {
  return sat16(std::int64_t{sat16(requantize_single(acc_x, m_x))} + sat16(requantize_single(acc_h, m_h)));
}

// LSTM cell update (i, f, g in Q0.15; c in 2^cell_exp units):
//   c' = sat16(rshift(f·c, 15) + rshift(i·g, 30 + cell_exp)), then |c'| ≤ cell_clip if cell_clip > 0.
[[gnu::always_inline]] constexpr std::int32_t lstm_cell_update(std::int32_t i, std::int32_t f, std::int32_t g,
                                                               std::int32_t c, const LstmCellParams& p) noexcept {
  std::int32_t cn = sat16(rounding_rshift(std::int64_t{f} * c, 15) + rounding_rshift(std::int64_t{i} * g, 30 + p.cell_exp));
  if (p.cell_clip > 0) cn = cn > p.cell_clip ? p.cell_clip : (cn < -p.cell_clip ? -p.cell_clip : cn);
  return cn;
}

// LSTM hidden output: h = clamp(z_h + requantize_single(o·tanh(c'), hidden), hidden_min, hidden_max), where
// tanh's input is c' rescaled to Q3.12 with to_q312(c', cell_exp).
[[gnu::always_inline]] constexpr std::int32_t lstm_hidden(std::int32_t o, std::int32_t c_new, const LstmCellParams& p) noexcept {
  const std::int32_t t = tanh_q15(to_q312(c_new, p.cell_exp));
  return static_cast<std::int32_t>(
      clamp64(requantize_single(o * t, p.hidden) + p.hidden_zero_point, p.hidden_min, p.hidden_max));
}

// GRU (PyTorch gate order r, z, n; r, z in Q0.15, n_x and n_h are Q3.12 int16 from separate requantizations):
//   n = tanh(sat16(n_x + rshift(r·n_h, 15)))                                        (Q0.15)
//   h' = clamp(z_h + requantize_single((32768 − z)·n, hidden) + rshift(z·(h − z_h), 15))
// i.e. h' = (1 − z)·n + z·h with (1 − z)·n carried in Q0.30 and rescaled by hidden = 2^-30/s_h, and the
// z·h term already in hidden units.
[[gnu::always_inline]] constexpr std::int32_t gru_candidate(std::int32_t r, std::int32_t n_x, std::int32_t n_h) noexcept {
  return tanh_q15(sat16(n_x + rounding_rshift(std::int64_t{r} * n_h, 15)));
}
[[gnu::always_inline]] constexpr std::int32_t gru_hidden(std::int32_t z, std::int32_t n, std::int32_t h_prev,
                                                         const LstmCellParams& p) noexcept {
  const std::int64_t y = requantize_single((32768 - z) * n, p.hidden) +
                         rounding_rshift(std::int64_t{z} * (h_prev - p.hidden_zero_point), 15) + p.hidden_zero_point;
  return static_cast<std::int32_t>(clamp64(y, p.hidden_min, p.hidden_max));
}

// ---------------------------------------------------------------------------------------------------
// Note [16-bit activations] (W8A16, issue 18): activations may be 16-bit codes (int16, the AIMET grid
// q_u ∈ [0, 65535] stored as q_u − 32768). The arithmetic is the same model as for 8-bit codes with a
// wider accumulator: acc = Σ_k (x_k − z_in)·w[c][k] + b[c] is the EXACT integer sum, held in int64 (|x − z|
// ≤ 65535 and |w| ≤ 128 give |acc| < 2^23·K, so int64 never overflows and there is no wrap-around; an
// int32 accumulator would overflow past K ≈ 255 at full range). Kernels may accumulate blocks of at most
// kAcc16Block products in int32 (each product |x·w| ≤ 2^22 with the zero point folded into the bias, so a
// block sums to < 2^31 exactly) and add the blocks into int64: the result is the exact sum either way.
// Requantization is the single rounding of Note [single rounding] applied to the int64 accumulator,
// floor((acc·q + 2^(t−1)) / 2^t), evaluated exactly in 128 bits; for |acc| < 2^31 it equals
// requantize_single. Residual adds evaluate Note [residual add]'s formula in int64 (the 8-bit int32
// evaluation is the same integer). 16-bit programs use the dsp profile only.
inline constexpr int kAcc16Block = 510;  // products per int32 partial sum: 510·2^22 < 2^31

[[gnu::always_inline]] constexpr std::int64_t requantize_single64(std::int64_t acc, QuantizedMultiplier m) noexcept {
  const int t = 31 - m.shift;
  const __int128 p = static_cast<__int128>(acc) * m.multiplier + (static_cast<__int128>(1) << (t - 1));
  const __int128 r = p >> t;  // arithmetic shift: floor
  return r > INT64_MAX / 2 ? INT64_MAX / 2 : (r < INT64_MIN / 2 ? INT64_MIN / 2 : static_cast<std::int64_t>(r));
}

// y = clamp(requantize_single64(acc) + z_out, act_min, act_max) (Note [zero point and clamp]).
[[gnu::always_inline]] constexpr std::int32_t requantize_output64(std::int64_t acc, QuantizedMultiplier m,
                                                                  std::int32_t zero_point, std::int32_t act_min,
                                                                  std::int32_t act_max) noexcept {
  return static_cast<std::int32_t>(clamp64(requantize_single64(acc, m) + zero_point, act_min, act_max));
}

// Note [residual add] in int64, for 16-bit codes: |(a − z_a)·q_a + (b − z_b)·q_b| < 2^33.
[[gnu::always_inline]] constexpr std::int32_t add_value64(std::int32_t a, std::int32_t b, const AddParams& p) noexcept {
  const std::int64_t acc = std::int64_t{a - p.a_zero_point} * p.a_multiplier + std::int64_t{b - p.b_zero_point} * p.b_multiplier;
  return static_cast<std::int32_t>(clamp64(rounding_rshift(acc, p.shift) + p.out_zero_point, p.act_min, p.act_max));
}

// Gate pre-activation from two int64 accumulators (16-bit x and h): gate_preactivation's two roundings.
[[gnu::always_inline]] constexpr std::int32_t gate_preactivation64(std::int64_t acc_x, QuantizedMultiplier m_x,
                                                                   std::int64_t acc_h, QuantizedMultiplier m_h) noexcept {
  return sat16(std::int64_t{sat16(requantize_single64(acc_x, m_x))} + sat16(requantize_single64(acc_h, m_h)));
}

}  // inline namespace QFORGE_KERNELS_ISA_NS
}  // namespace qforge::kernels
