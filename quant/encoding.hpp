// Encodings: the quantization grid of one tensor (or one channel), with AIMET's arithmetic.
//
// An encoding is AIMET's (bitwidth, min, max, delta, offset): a real value x is represented on the
// unsigned integer grid q in [0, N] as x = delta * (q + offset), where N = 2^bw - 1 (one step fewer for
// strict symmetric). `offset` is AIMET's integer offset (<= 0); the ONNX/PyTorch zero point is -offset.
//
// compute_encoding() turns observed statistics (min, max) into an encoding exactly like AIMET v1
// (libpymo getComputedEncodings, aimet-compat.md §4.1):
//   1. gating: min <= 0 <= max and max >= min + kMinRange (0.01), infinities clamped to float limits;
//   2. signed symmetric: M = max(|min|, |max|), delta = M / floor(N/2), offset = -ceil(N/2);
//   3. asymmetric (or unsigned symmetric with min >= 0): delta = (max - min) / N,
//      offset = -clamp(round(-min/delta), 0, N) (round = half away from zero), then the range is shifted
//      so that 0 is exactly representable with its width kept.
// The derived quantities are computed in double; the fake-quant kernels use float32 delta.
//
// Note [Tie rule] qforge's quantizers have ONE rounding rule, the integer runtime's: r = x * (1/delta) in
// float32 (reciprocal computed once, as PyTorch does), rounded to nearest with ties toward +inf
// (engine/kernels/requant.hpp round_half_up / quantize_value); q = clamp(r - offset, 0, N),
// y = (q + offset) * delta. So a simulated value is exactly dequantize(quantize(x)) of the int8 runtime.
// AIMET v1 rounds the clamped, offset value half away from zero, which is the same rule (the argument is
// >= 0), up to reciprocal-vs-division in the last bit. The PyTorch-compatible ops in fake_quant.hpp keep
// PyTorch's ties-to-even. Stochastic rounding is floor(v + u), u ~ U[0, 1).
#pragma once

#include "engine/error.hpp"
#include "engine/kernels/quantize.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace qforge::quant {

inline constexpr double kMinRange = 0.01;           // AIMET MIN_RANGE (TfEncodingAnalyzer.cpp)
inline constexpr double kRangeLearningGate = 1e-5;  // min/max gating after a range-learning step

// How a quantizer's grid is shaped (the per-quantizer part of the AIMET config).
struct GridSpec {
  int bitwidth = 8;
  bool symmetric = false;
  bool strict_symmetric = false;    // [-127, 127] instead of [-128, 127] (symmetric only)
  bool unsigned_symmetric = false;  // symmetric with min >= 0 becomes [0, 255] (symmetric only)
  bool is_float = false;            // AIMET float quantizer: round to half precision (bitwidth 16)
};

// Throws qforge::Error unless 2 <= bw <= 16, or bw == 32 when allow_32 (biases); float needs 16 or 32.
void check_bitwidth(int bitwidth, bool allow_32, bool is_float = false, const char* who = "quantizer");

struct Encoding {
  int bitwidth = 8;
  bool symmetric = false;
  bool strict = false;   // strict-symmetric grid (one step fewer)
  double min = 0;        // = delta * offset
  double max = 0;        // = delta * (steps + offset)
  double delta = 0;      // scale
  double offset = 0;     // integer-valued, <= 0
  bool is_float = false; // float encoding: only bitwidth matters

  int64_t steps() const;  // N: 2^bw - 1 (2^bw - 2 when strict)
  bool operator==(const Encoding&) const = default;
  std::string to_string() const;
};

int64_t num_steps(int bitwidth, bool strict_symmetric);

// AIMET v1 encoding from observed statistics (see top of file).
Encoding compute_encoding(double min, double max, const GridSpec& grid);

// The encoding with the given delta and offset: min = delta*offset, max = delta*(N + offset)
// (AIMET compute_min_max_given_delta_offset). Used when loading 1.0.0 files.
Encoding encoding_from_scale_offset(double delta, double offset, const GridSpec& grid);

// An encoding fixed to [min, max] without re-gating beyond "contains 0": used for loaded encodings
// that carry min/max and for encoding_constraints. delta = (max - min)/N, offset = round(min/delta).
Encoding encoding_from_min_max_exact(double min, double max, const GridSpec& grid);

// The float32 view the fake-quant kernels use: y = clamp(rint(x * inv_scale), lo, hi) * scale, which is
// the same as q = clamp(rint(x/scale) - offset, 0, N), y = (q + offset)*scale (integers are exact).
// It is engine/kernels/quantize.hpp's AffineGrid {scale, inv_scale, lo, hi}.
using AffineParams = kernels::AffineGrid;
AffineParams affine_params(const Encoding& e);

}  // namespace qforge::quant
