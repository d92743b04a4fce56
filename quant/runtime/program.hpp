// The integer program: what a calibrated/fine-tuned QuantSim lowers to (quant/runtime/lower.hpp) and what
// both the integer runtime (runtime.hpp) and the exact simulation (exact.hpp) execute.
//
// A Program is a list of values (int8 tensors, each with one scale and zero point) and a list of ops in
// execution order. All arithmetic between the input quantizer and the final dequantization is integer and
// follows engine/kernels/requant.hpp:
//   - activations are int8 codes q with real = scale·(q − zero_point). An AIMET encoding (delta, offset,
//     N steps) maps to scale = float32 delta, zero_point = −128 − offset, codes in [−128, −128 + N]
//     (Note [codes]);
//   - conv/linear weights are int8 symmetric (z = 0), per tensor or per output channel, stored unpacked in
//     PyTorch layout (OIHW, [out][in]); biases int32 at scale s_in·s_w[c]; one QuantizedMultiplier per
//     output channel (s_in·s_w[c]/s_out, double from float32 scales); fused ReLU/ReLU6 is the clamp range;
//   - residual add: AddParams (requant.hpp Note [residual add]); global average pooling: Σ(x − z) requantized
//     with s_in/(count·s_out); a standalone requantization (encoding change between quantizers, a
//     standalone ReLU) requantizes (x − z_in) with s_in/s_out;
//   - LSTM/GRU: the 8x8_16 scheme of requant.hpp (gate pre-activations Q3.12 from two separate
//     requantizations, table sigmoid/tanh, int16 cell state at 2^cell_exp, hidden state int8 with the
//     QuantSim's hidden_l0 encoding).
// Values keep PyTorch's per-sample logical shape ([C,H,W], [T,F], [F]); how they are laid out in memory is
// the executor's business (the runtime keeps images NHWC, the exact simulation NCHW).
//
// Note [codes] AIMET's grid is q_u ∈ [0, N] with real = delta·(q_u + offset). Storing q = q_u − 128 as
// int8 gives zero_point = −128 − offset; a symmetric 8-bit grid (offset −128) has zero_point 0, strict
// symmetric (offset −127, N = 254) zero_point −1 and codes [−128, 126].
//
// Bundles (save_bundle/load_bundle): a directory with program.json (the description: values, ops, their
// scalar parameters, and for every array its offset/length in the blob) and program.bin (one binary blob:
// weights, biases, multipliers, shifts, little-endian). The runtime loads a bundle without the FP32 model
// and packs the weights for the active ISA at load time (packing is deterministic and takes milliseconds;
// keeping the canonical layout keeps bundles ISA-independent).
#pragma once

#include "engine/kernels/arith_profile.hpp"
#include "engine/kernels/requant.hpp"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace qforge::quant::runtime {

struct QParams {
  float scale = 1.0f;
  std::int32_t zero_point = 0;
  std::int32_t qmin = -128, qmax = 127;  // code range of the encoding
  bool operator==(const QParams&) const = default;
};

enum class OpKind {
  conv2d,             // (depthwise included: groups)
  linear,             // over the last dim; leading per-sample dims are rows
  maxpool2d,
  avgpool2d,
  global_avgpool,     // [C,H,W] -> [C,1,1]
  add,
  requant,            // change of encoding and/or clamp
  flatten,            // [C,H,W] -> [C*H*W] in PyTorch (CHW) order
  image_as_sequence,  // [C,H,W] -> [H, C*W]
  last_step,          // [T,F] -> [F]
  lstm,
  gru,
};
const char* op_kind_name(OpKind k);
OpKind parse_op_kind(const std::string& s);

struct Value {
  std::string name;
  std::string module;          // the sim module whose (quantized) output equals this value ("" = model input)
  std::vector<std::int64_t> shape;  // per sample, PyTorch order
  QParams q;
  std::int64_t numel() const;
};

struct Op {
  OpKind kind = OpKind::requant;
  std::string name;            // layer name(s), e.g. "conv1+relu1"
  std::vector<int> inputs;     // value ids
  int output = -1;
  // conv2d / linear / recurrent
  std::int64_t in_c = 0, out_c = 0, kh = 1, kw = 1, stride_h = 1, stride_w = 1, pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1, groups = 1;
  bool per_channel = false;
  std::vector<std::int8_t> weights;     // conv OIHW, linear [out][in], recurrent W_ih [G·H][I]
  std::vector<float> w_scale;           // conv/linear weight scales (float32, [out], expanded when per tensor;
                                        // recurrent: W_ih's, [G·H]); kept for export (quant/export), not part
                                        // of bundles
  std::vector<std::int8_t> weights_hh;  // recurrent W_hh [G·H][H]
  std::vector<float> w_scale_hh;        // recurrent W_hh's scales [G·H] (export only, like w_scale)
  std::vector<std::int32_t> bias;       // [out] (recurrent: input-side bias, see lower.cpp)
  std::vector<std::int32_t> bias_hh;    // GRU: recurrent-side bias
  std::vector<kernels::QuantizedMultiplier> mult;     // [out] (expanded when per tensor)
  std::vector<kernels::QuantizedMultiplier> mult_hh;  // recurrent [G·H]
  kernels::ActivationRange range;       // output clamp, fused activation included
  std::string act = "none";             // "none" | "relu" | "relu6" (description only; the clamp is `range`)
  // pooling (avgpool2d under onnxruntime: output encoding may differ from the input's, QLinearAveragePool)
  bool count_include_pad = true;
  // add
  kernels::AddParams add;
  // requant / global average: y = clamp(requantize(acc, m) + z_out); identity = same encoding (clamp only)
  kernels::QuantizedMultiplier m;
  bool identity = false;
  // recurrent
  kernels::LstmCellParams cell;
  std::int64_t hidden = 0;
};

struct Program {
  std::string model;  // informative
  // The arithmetic profile every op follows (engine/kernels/arith_profile.hpp): dsp = requant.hpp's
  // fixed point; onnxruntime = ONNX Runtime's float requantization (multipliers hold float32 scales,
  // Rounding::float_rne), QuantizeLinear at the input, QLinearAdd/QLinearAveragePool arithmetic, and
  // standalone requantizations as DequantizeLinear → QuantizeLinear. Recurrent layers keep the 8x8_16
  // fixed-point cell under both.
  kernels::ArithProfile profile = kernels::ArithProfile::dsp;
  kernels::Rounding rounding() const { return kernels::profile_rounding(profile); }
  std::vector<Value> values;
  std::vector<Op> ops;
  int input = 0, output = 0;

  const Value& input_value() const { return values.at(input); }
  const Value& output_value() const { return values.at(output); }
  // Human/machine-readable description (no weight arrays; sizes and checksums instead).
  nlohmann::json describe() const;
  std::int64_t weight_bytes() const;
};

// Bundle I/O (see top of file). save_bundle writes atomically-renamed files into `dir` (created);
// load_bundle throws InputError naming the file and the JSON path on anything malformed or inconsistent
// (Note [bundle validation]).
void save_bundle(const Program& p, const std::filesystem::path& dir);
Program load_bundle(const std::filesystem::path& dir);
// The same from a parsed program.json; `read_blob(name)` returns the blob's bytes (the fuzz target's entry).
Program program_from_bundle(const nlohmann::json& desc, const std::function<std::string(const std::string&)>& read_blob,
                            const std::string& source);

// Note [bundle validation]: a Program from outside (a bundle) is checked before anything indexes with it:
// every value has 1..3 dimensions in [1, 2^24] and at most 2^28 elements, a positive finite scale, an int8
// code range and zero point; every op reads values defined before it (the input or an earlier op's output),
// writes a fresh value, and its fields agree with those values and its arrays: channel counts, kernel
// sizes, strides, dilations, groups (> 0, dividing the channel counts), paddings (pooling: at most half the
// window), the output shape its geometry produces, weight/bias/multiplier array lengths, multipliers in
// [0, 2^31) with shifts in [-31, 30], add parameters, clamp ranges, recurrent cell constants. Throws
// InputError "<source>: /ops/<i> ('<name>', <kind>): <what>"; the executors then never read out of bounds.
void validate_program(const Program& p, const std::string& source);

// Exact equality of everything executable (used by tests of the bundle round trip).
bool same_program(const Program& a, const Program& b);

}  // namespace qforge::quant::runtime
