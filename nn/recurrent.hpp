// Recurrent layers RNN (tanh/relu), LSTM and GRU, as PyTorch's torch.nn.RNN/LSTM/GRU.
//
// Parameters, per layer k and direction (suffix "" or "_reverse"), registered in PyTorch's order:
//   weight_ih_l{k}{sfx} [G*H, I_k], weight_hh_l{k}{sfx} [G*H, H], bias_ih_l{k}{sfx} [G*H], bias_hh_l{k}{sfx}
// with G = 1 (RNN), 4 (LSTM: i,f,g,o), 3 (GRU: r,z,n); I_0 = input_size, I_k = H * num_directions.
// All initialised U(-1/sqrt(H), 1/sqrt(H)), as PyTorch.
//
// Calling convention (Module: tensors in, tensors out):
//   inputs  {x} | {x, h0} | {x, h0, c0}   x [B, T, I] (batch_first) or [T, B, I]; h0/c0 [L*D, B, H]
//   outputs RNN/GRU {output, h_n}, LSTM {output, h_n, c_n}; output [B, T, D*H] (batch_first) or
//           [T, B, D*H], bidirectional outputs concatenated forward|reverse on the feature dim.
// In a model graph the first output (the sequence) is what flows on; the zoo takes the last time step
// with nn::LastTimeStep ("LastTimeStep" in specs, nn/layers.hpp).
//
// Quantization hook point: set_cell_hook() routes the tensors at the chosen CellSites (input, weights,
// gate pre-activations, hidden and cell state after every step) through a differentiable function,
// per layer and direction. Weights are also read through Module::param(), so a parameter transform
// applies as for every layer. When the hook wants an in-loop site the layer runs the per-step cell
// (cell_step_projected), otherwise the fused sequence op (Note [Two recurrent paths]); a hidden-state
// hook that is a per-tensor fake-quant, static or with a learnable range (CellHook::fused_hidden), runs
// inside the fused op.
#pragma once

#include "engine/random.hpp"
#include "nn/module.hpp"
#include "nn/recurrent_cells.hpp"

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <memory>
#include <string>

namespace qforge::nn {

struct RecurrentOptions {
  int64_t input_size = 0;
  int64_t hidden_size = 0;
  int64_t num_layers = 1;
  bool bias = true;
  bool batch_first = false;
  bool bidirectional = false;
};

// The transform a recurrent layer applies at cell sites. `sites` is a bitmask of (1 << CellSite).
// `fused_hidden` (optional): asked before each forward per layer and direction, with the shape of one
// step's hidden state ([B, H]); returning true with a filled HiddenFakeQuant says that fn at the hidden
// site of that layer/direction is exactly this fake quantization for every step (grid and, with a
// learnable range, range-parameter gradients), so the layer applies it inside the fused sequence op
// instead of calling fn per step (Notes [Fused hidden fake-quant] and [Fused range learning] in
// recurrent_cells.hpp). Returning false keeps the step path.
struct CellHook {
  std::function<Tensor(int64_t layer, bool reverse, CellSite site, const Tensor& t)> fn;
  uint32_t sites = 0;
  std::function<bool(int64_t layer, bool reverse, const Shape& step_shape, HiddenFakeQuant& out)> fused_hidden = {};
  bool wants(CellSite s) const { return fn && (sites & (1u << unsigned(s))) != 0; }
  static uint32_t bit(CellSite s) { return 1u << unsigned(s); }
};

class RNNBase : public Module {
public:
  RNNBase(CellType type, const RecurrentOptions& opt, Generator& gen);
  CellType cell_type() const { return type_; }
  const RecurrentOptions& options() const { return opt_; }
  int64_t num_directions() const { return opt_.bidirectional ? 2 : 1; }

  // The weights of one layer and direction, read through param() (so parameter transforms apply).
  CellWeights cell_weights(int64_t layer, bool reverse);
  static std::string param_suffix(int64_t layer, bool reverse);  // "_l0", "_l1_reverse"

  void set_cell_hook(CellHook hook) { hook_ = std::move(hook); }
  const CellHook& cell_hook() const { return hook_; }
  void clear_cell_hook() { hook_ = CellHook{}; }

  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  CellType type_;
  RecurrentOptions opt_;
  CellHook hook_;
};

class RNN : public RNNBase {
public:
  // nonlinearity "tanh" or "relu"
  RNN(const RecurrentOptions& opt, const std::string& nonlinearity, Generator& gen);
};
class LSTM : public RNNBase {
public:
  LSTM(const RecurrentOptions& opt, Generator& gen) : RNNBase(CellType::lstm, opt, gen) {}
};
class GRU : public RNNBase {
public:
  GRU(const RecurrentOptions& opt, Generator& gen) : RNNBase(CellType::gru, opt, gen) {}
};

// One step as a Module, like torch.nn.RNNCell / LSTMCell / GRUCell: parameters weight_ih [G*H, I],
// weight_hh [G*H, H], bias_ih, bias_hh (no suffix). Inputs {x [B, I]} | {x, h} | {x, h, c} (missing states
// are zeros); outputs {h'} (RNNCell, GRUCell) or {h', c'} (LSTMCell). The cell hook (layer 0, forward)
// sees every site, as in the layers' step path.
class RecurrentCell : public Module {
public:
  // nonlinearity "tanh"/"relu" for RNNCell only.
  RecurrentCell(CellType type, int64_t input_size, int64_t hidden_size, bool bias, Generator& gen);
  CellType cell_type() const { return type_; }
  int64_t input_size() const { return in_; }
  int64_t hidden_size() const { return hidden_; }
  CellWeights cell_weights();
  void set_cell_hook(CellHook hook) { hook_ = std::move(hook); }
  void clear_cell_hook() { hook_ = CellHook{}; }
  std::string extra_repr() const override;
  nlohmann::json spec_args() const override;

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  CellType type_;
  int64_t in_, hidden_;
  bool bias_;
  CellHook hook_;
};

// For the spec builder: type "RNN", "LSTM" or "GRU" (layers) or "RNNCell", "LSTMCell", "GRUCell" (one
// step; args input_size, hidden_size, bias, nonlinearity for RNNCell); args input_size, hidden_size (required),
// num_layers (1), bias (true), batch_first (false), bidirectional (false), dropout (0 only),
// nonlinearity ("tanh"/"relu", RNN only). Bad or unknown arguments throw InputError naming them.
std::shared_ptr<Module> make_recurrent(const std::string& type, const nlohmann::json& args, Generator& gen);
bool is_recurrent_type(const std::string& type);

}  // namespace qforge::nn
