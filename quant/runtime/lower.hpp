// Lowering: a calibrated or fine-tuned QuantSim (or a quantized model directory) -> an integer Program.
//
// The lowering walks the sim's traced graph in execution order and maps every leaf module onto integer
// ops, taking every scale from the sim's quantizers (program.hpp lists the arithmetic):
//   Conv2d / Linear     int8 weights = the sim's fake-quantized weights divided by their scale (so the
//                       integers are exactly the simulated grid points), int32 bias round_half_up(b/(s_in·s_w)),
//                       per-channel multipliers; output encoding = its own output quantizer, or — when a
//                       supergroup (Conv+Relu, Conv+Clip, Gemm+Relu) moved it — the following ReLU/ReLU6's,
//                       whose clamp is fused;
//   BatchNorm           must have been folded (the sim folds it into the conv and bypasses it);
//   ReLU / ReLU6        fused as above, else a standalone clamp (+ requantization);
//   MaxPool2d, AvgPool2d, AdaptiveAvgPool2d(1), Flatten, Identity, Dropout, ImageAsSequence, LastTimeStep;
//   Add                 residual add with requantization (+ fused ReLU from an Add+Relu supergroup);
//   LSTM / GRU          one layer, unidirectional, batch_first; W_l0/R_l0 int8, input_l0 and hidden_l0
//                       encodings (requant.hpp 8x8_16 variant; cell state int16 at 2^cell_exp).
// Where a quantizer with a different encoding sits between two ops (an input quantizer, or the output
// quantizer of a pooling/reshape op), a requant op converts the codes.
// Refused, with qforge::Error naming the layer and the reason: unquantized layer outputs or model input,
// weights that are not symmetric int8 (asymmetric encodings, bitwidth != 8), activation bitwidth != 8,
// float (fp16) quantizers, unfolded BatchNorm, stacked/bidirectional recurrent layers, quantized cell state
// or gates, and every layer type without an integer kernel.
#pragma once

#include "quant/quantsim.hpp"
#include "quant/runtime/program.hpp"

#include <filesystem>

namespace qforge::quant::runtime {

struct LowerOptions {
  int cell_exp = -11;  // LSTM cell state scale 2^cell_exp (Q4.11: |c| < 16)
};

// Lowers the sim's current state (encodings, fake-quantized weights). Re-lower after further training.
Program lower(QuantSim& sim, const LowerOptions& opt = {});

// Lowers a quantized model directory (model.json, weights.safetensors, encodings.json, quantsim.json as
// written by QuantSim::export_dir / save_quantized_dir). sample_input: one batch of the model's input
// (only its shape matters; it is used to trace the model).
Program lower_model_dir(const std::filesystem::path& dir, const Tensor& sample_input, const LowerOptions& opt = {});

// QParams of an activation encoding (Note [codes] in program.hpp); Error naming `who` unless it is an
// integer 8-bit (or narrower) per-tensor encoding.
QParams qparams_of(const Encoding& e, const std::string& who);

}  // namespace qforge::quant::runtime
