// Per-layer comparison (`qforge compare`): FP32 vs float simulation vs exact simulation vs int8 runtime.
//
// For one batch x, every program value that is some module's quantized output (program.hpp Value::module)
// is compared:
//   fp32   the wrapped model with every quantizer disabled (BatchNorm stays folded: same function),
//   sim    the float fake-quant simulation (QuantSim forward),
//   exact  the exact simulation (exact.hpp),
//   int8   the integer runtime (runtime.hpp), dequantized s·(q − z).
// Per layer: SQNR (dB, null when the noise is exactly zero) of sim and int8 against fp32 and of int8
// against sim; the int8 codes vs the sim's codes (the sim's outputs lie on the same grid): largest
// difference in LSBs and the count of differing elements; and the count of elements where exact and int8
// differ (0 by construction of exact mode — a check, not an assumption).
#pragma once

#include "quant/quantsim.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"

#include <nlohmann/json.hpp>

namespace qforge::quant::runtime {

struct CompareOptions {
  LowerOptions lower;
  RuntimeOptions runtime;
};

// {"samples", "layers": [{"layer", "op", "shape", "scale", "zero_point", "numel", "sqnr_sim_db",
//   "sqnr_int8_db", "sqnr_int8_vs_sim_db", "max_diff_lsb", "differing", "exact_vs_int8_differing"}...],
//  "output": {..., "argmax_agree_int8_vs_sim", "argmax_agree_int8_vs_fp32"}}
nlohmann::json compare_layers(QuantSim& sim, const Tensor& x, const CompareOptions& opt = {});

// Signal-to-quantization-noise ratio 10·log10(Σref² / Σ(ref − y)²); +inf when y == ref.
double sqnr_db(const Tensor& ref, const Tensor& y);

}  // namespace qforge::quant::runtime
