// Evaluation of a model directory in each mode (fp32, sim, exact, int8), shared by eval, demo,
// compare and analyze.
#pragma once

#include "apps/cli.hpp"
#include "data/data.hpp"
#include "engine/tensor.hpp"
#include "nn/graph.hpp"
#include "quant/runtime/program.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace qforge::apps {

struct EvalRequest {
  std::filesystem::path dir;
  std::string data_spec;  // "" = the directory's report.json "data"
  std::string split = "test";
  std::string mode;       // "" = sim for quantized directories, else fp32
  int64_t batch_size = 256;
  bool keep_logits = false;
};

struct EvalOutcome {
  Json summary;    // {"mode", "accuracy", "loss", "samples", "seconds", ...}
  Tensor logits;   // when keep_logits
  Tensor targets;  // when keep_logits
};

EvalOutcome run_eval(const EvalRequest& req);

// The mode a model directory runs in: "" = sim for quantized directories, else fp32. UsageError for an
// unknown mode, or a quantized mode (sim, exact, int8) on a directory without encodings.json.
std::string resolve_mode(const std::filesystem::path& dir, const std::string& mode);

// A model directory loaded to run in one mode, as eval evaluates it (shared with qforge run):
//   fp32   the FP32 model (a quantized directory's shadow weights, BatchNorm folded, no quantizers)
//   sim    the float fake-quant simulation
//   exact  the integer program lowered from the quantized directory, run with the simulation arithmetic
//   int8   the same program on the int8 runtime (the same integers as exact by construction)
// sample_inputs: one batch of the model's inputs (traces quantized models; unused for fp32).
class ModeModel {
public:
  ModeModel(const std::filesystem::path& dir, const std::string& mode, const std::vector<Tensor>& sample_inputs);
  ~ModeModel();
  const std::string& mode() const;
  bool integer() const;     // exact or int8: logits()/codes(); else module()
  nn::Graph& graph();       // the directory's model graph (input and output names)
  nn::Module& module();     // fp32, sim: the model to call
  Tensor logits(const Tensor& x);  // exact, int8: the dequantized output (f32)
  Tensor codes(const Tensor& x);   // exact, int8: the output codes (i8, PyTorch layout)
  quant::runtime::QParams output_qparams() const;  // exact, int8: scale and zero point of the codes

private:
  struct State;
  std::unique_ptr<State> s_;
};

// The data a model directory was trained on, with its report's seed and sequence length.
data::DataSplits data_for_dir(const std::filesystem::path& dir, const std::string& data_spec);

}  // namespace qforge::apps
