// QuantSim: quantization simulation of a model (DESIGN.md §4, aimet-compat.md §7, §9).
//
// QuantSim wraps an nn::Module (zoo, spec-built or hand-written) in place: it traces the model once
// (nn/trace.hpp), optionally folds BatchNorm into the preceding Conv/Linear, and places quantizers by an
// AIMET config (quant/config.hpp):
//   - one output quantizer per output of every leaf module (forward hook), one input quantizer per
//     input (pre-hook, off unless the config enables it), one parameter quantizer per parameter
//     (Module parameter transform: forward sees quantized weights, the optimizer updates the FP32
//     shadow weights);
//   - settings in AIMET's precedence: defaults -> params -> op_type (resolve_op) -> supergroups (linear
//     chains such as Conv+Relu, Conv+BN+Relu, Add+Relu: only the last op's output is quantized) ->
//     model_input -> model_output; op_type is_output_quantized "False" also turns off the consumers'
//     input quantizers (the tensor stays unquantized everywhere);
//   - recurrent layers (LSTM/GRU/RNN, any depth, bidirectional) get AIMET v1's quantizers per layer k:
//     input_l{k}, hidden_l{k} (h after every time step), W_l{k}, R_l{k} (shared by both directions),
//     bias_l{k} (per config "bias"), and optionally cell_l{k} and gates_l{k} (off by default), through
//     the layer's cell hook (nn/recurrent.hpp). Their output is the quantized hidden state, so recurrent
//     nodes get no separate output quantizer. Limitations: a caller-supplied h0/c0 is not quantized
//     (AIMET shares hidden_l{k} with initial_h). A per-tensor nearest-rounding hidden quantizer, static
//     or with range learning (aimet/lsq), runs inside the fused sequence op (nn/recurrent_cells.hpp
//     Notes [Fused hidden fake-quant], [Fused range learning]); calibration, stochastic rounding and
//     cell/gate quantizers make the layer take its slower per-step path (Note [Two recurrent paths]).
// Module types map to ONNX op types (Conv2d -> Conv, Linear -> Gemm, ReLU -> Relu, ReLU6 -> Clip, ...;
// onnx_type()). Quantizer names: "<module>.output[i]", "<module>.input[i]", "<module>.<param>",
// "<module>.<quantizer>_l{k}" for recurrent layers; activation encodings are exported under these names,
// parameter encodings under the parameter's state_dict key ("conv1.weight", "lstm.weight_ih_l0").
//
// BN folding (Note [BN fold]): a BatchNorm whose only input is a Conv2d/Linear output consumed by nothing
// else is folded into that layer (W' = W*s, b' = beta + (b - mu)*s, s = gamma/sqrt(var + eps)), its
// statistics reset to the identity (mean 0, var 1 - eps, gamma 1, beta 0) and bypassed by a forward hook,
// so the model computes the folded network in both train and eval mode. Folding happens before
// quantizers are placed; the folded model equals the unfolded one in eval mode.
//
// The QuantSim must outlive every use of the wrapped model's quantized forward; its destructor removes
// the hooks and transforms (the BN folding stays).
#pragma once

#include "engine/kernels/arith_profile.hpp"
#include "nn/module.hpp"
#include "nn/trace.hpp"
#include "quant/config.hpp"
#include "quant/encodings_io.hpp"
#include "quant/quantizer.hpp"

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qforge::quant {

struct QuantSimOptions {
  QuantScheme scheme = QuantScheme::tf;
  double percentile = 99.99;
  int act_bw = 8;
  int param_bw = 8;
  int bias_bw = 32;  // when the config quantizes biases (int32 like the runtimes)
  RoundingMode rounding = RoundingMode::nearest;
  RangeLearning range_learning = RangeLearning::none;
  std::string config = "default";  // "default", "per_channel" or a file path (ignored if config_obj set)
  std::optional<QuantSimConfig> config_obj;
  bool fold_bn = true;
  bool quantize_cell_state = false;  // recurrent: cell_l{k}
  bool quantize_gates = false;       // recurrent: gates_l{k} (gate pre-activations)
  uint64_t seed = 0;                 // stochastic rounding streams
  // The integer arithmetic exact mode and the int8 runtime follow (engine/kernels/arith_profile.hpp;
  // `qforge quantize --target`), recorded in quantsim.json as "target".
  kernels::ArithProfile target = kernels::ArithProfile::dsp;
};

struct LoadEncodingsOptions {
  bool strict = true;           // names in the file that the sim does not have are an error
  bool partial = false;         // quantizers without an entry: keep them (true) or error (false)
  bool disable_missing = false; // with partial: disable quantizers without an entry (AIMET partial=False)
  bool freeze = false;          // loaded encodings are kept by later compute_encodings
  bool params_only = false;     // AIMET set_and_freeze_param_encodings
};

struct QuantizerInfo {
  std::string name;
  std::string kind;    // "input", "output", "param", "recurrent"
  std::string module;  // dotted module name
  std::string export_key;  // param: state_dict key(s) joined by ','; activation: the name
  Quantizer* quantizer = nullptr;
};

class QuantSim {
public:
  // sample_inputs: one batch used only to trace the model's structure.
  QuantSim(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs, QuantSimOptions opt = {});
  ~QuantSim();
  QuantSim(const QuantSim&) = delete;
  QuantSim& operator=(const QuantSim&) = delete;

  nn::Module& model() { return *model_; }
  std::shared_ptr<nn::Module> model_ptr() { return model_; }
  const nn::TracedGraph& graph() const { return graph_; }
  const QuantSimConfig& config() const { return cfg_; }
  const QuantSimOptions& options() const { return opt_; }
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) { return (*model_)(inputs); }

  // Calibration: every quantizer observes while `forward_pass(model)` runs (eval mode, no grad; the
  // mode is restored), then encodings are computed. Frozen quantizers keep theirs. Returns how many
  // quantizers got an encoding.
  int compute_encodings(const std::function<void(nn::Module&)>& forward_pass);

  // ---- quantizers ----
  const std::vector<QuantizerInfo>& quantizers() const { return infos_; }
  Quantizer& quantizer(const std::string& name);  // throws listing close names when absent
  bool has_quantizer(const std::string& name) const;
  void set_enabled(const std::string& name, bool on);
  void freeze(const std::string& name = "");  // "" = all
  void unfreeze(const std::string& name = "");
  void set_range_learning(RangeLearning r);   // on every quantizer (re-initialises from encodings)
  std::vector<Tensor> range_parameters() const;  // learnable range params for the optimizer
  int num_enabled() const;

  // A readable table: one line per quantizer with its settings and encoding.
  std::string listing() const;
  // The resolved settings of every quantizer (quantsim.json).
  nlohmann::json settings_json() const;

  // ---- encodings ----
  EncodingsFile encodings() const;
  void export_encodings(const std::filesystem::path& path, const std::string& version = "0.6.1") const;
  void load_encodings(const EncodingsFile& f, const LoadEncodingsOptions& opt = {});
  void load_encodings(const std::filesystem::path& path, const LoadEncodingsOptions& opt = {});
  // Writes encodings.json, quantsim.json and weights.safetensors (FP32 shadow weights) into dir.
  void export_dir(const std::filesystem::path& dir, const std::string& version = "0.6.1") const;

  // BN folds performed: (conv/linear module, batchnorm module).
  const std::vector<std::pair<std::string, std::string>>& folded_bn() const { return folds_; }

private:
  struct ModuleQuantizers {
    nn::Module* module;
    std::vector<Quantizer*> in, out;
    std::map<std::string, Quantizer*> params;
  };
  void fold_batch_norms();
  void place_quantizers();
  void install_hooks();
  Quantizer* add(const std::string& name, const std::string& kind, const std::string& module,
                 const std::string& export_key, QuantizerSettings s);

  std::shared_ptr<nn::Module> model_;
  QuantSimOptions opt_;
  QuantSimConfig cfg_;
  nn::TracedGraph graph_;
  std::vector<std::unique_ptr<Quantizer>> owned_;
  std::vector<QuantizerInfo> infos_;
  std::map<std::string, size_t> by_name_;
  std::vector<std::pair<std::string, std::string>> folds_;
  std::vector<std::pair<nn::Module*, int>> hooks_;
  std::vector<nn::Module*> transformed_;
  std::vector<nn::Module*> cell_hooked_;
  std::vector<nn::Module*> bypassed_bn_;
  std::vector<ModuleQuantizers> node_quantizers_;
};

// The ONNX op type qforge maps a module type to ("" when it has no quantizable meaning).
std::string onnx_type(const std::string& module_type);

}  // namespace qforge::quant
