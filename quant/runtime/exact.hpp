// Exact simulation mode (DESIGN.md §4): the QuantSim evaluated so that every quantized layer accumulates in
// integers and requantizes with engine/kernels/requant.hpp, so its outputs equal the int8 runtime's bit for bit.
//
// How: ExactSim lowers the sim's current state (lower.hpp: the same integer weights, int32 biases,
// multipliers and zero points the runtime gets) and evaluates that program with the *simulation's*
// machinery instead of the int8 kernels: NCHW float64 tensors holding integer codes, the engine's
// conv2d/linear/matmul ops (OpenBLAS dgemm) on integer-valued operands (x − z_in)·w, which are exact in
// float64 (every partial sum < 2^53, integer-arithmetic.md §7 step 1), then requant.hpp's
// requantize_output / add_value / average_value / recurrent-cell functions per element. The runtime's
// packed int8 GEMMs (VNNI/AVX2/SSE, NHWC, folded zero points) are a different implementation of the same
// arithmetic; tests/quant/runtime and benchmarks/runtime check they agree on every output code.
//
// Exact mode is evaluation-only: training (QAT) keeps using the float fake-quant forward with the
// straight-through estimator, and an ExactSim must be rebuilt (it is cheap) after the sim's weights or
// encodings change. The differences to the float simulation are the ones the integer target really has:
// requantization by a fixed-point multiplier instead of a float rounding, int32 biases, the fused
// conv+activation clamp, 15-bit residual-add multipliers, and the integer LSTM cell (int16 cell state,
// table sigmoid/tanh) instead of float gates.
#pragma once

#include "engine/tensor.hpp"
#include "quant/quantsim.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/program.hpp"

#include <vector>

namespace qforge::quant::runtime {

// Executes a Program with the simulation arithmetic (see top of file).
// Codes are returned as i8 tensors [N, shape...] in PyTorch layout.
std::vector<Tensor> execute_exact_all(const Program& p, const Tensor& x);
Tensor execute_exact_codes(const Program& p, const Tensor& x);
Tensor execute_exact(const Program& p, const Tensor& x);  // dequantized output (logits), f32

class ExactSim {
public:
  explicit ExactSim(QuantSim& sim, const LowerOptions& opt = {});
  const Program& program() const { return program_; }
  Tensor forward(const Tensor& x) const { return execute_exact(program_, x); }        // logits
  Tensor forward_codes(const Tensor& x) const { return execute_exact_codes(program_, x); }
  std::vector<Tensor> forward_all(const Tensor& x) const { return execute_exact_all(program_, x); }

private:
  Program program_;
};

// One-shot: the exact-mode logits of the sim's current state for input x.
Tensor exact_forward(QuantSim& sim, const Tensor& x, const LowerOptions& opt = {});

}  // namespace qforge::quant::runtime
