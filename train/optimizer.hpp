// Optimizers with PyTorch's exact update rules (torch.optim 1.13/2.x, single-tensor path):
//
//   SGD    g = grad + wd * p;  b = g (first step) | momentum * b + (1 - dampening) * g;
//          g = nesterov ? g + momentum * b : b   (momentum != 0);  p -= lr * g
//   Adam   g = grad + wd * p;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  (amsgrad: vmax = max(vmax, v))
//          p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//   AdamW  p *= 1 - lr * wd, then Adam without the wd term in g
//
// Each update is one fused loop per parameter (no tensor-op chains), OpenMP-parallel for large tensors;
// element-wise, so the result does not depend on the thread count. Parameters without a gradient are
// skipped (PyTorch's behaviour after zero_grad(set_to_none=True)).
//
// Parameter groups carry their own lr and weight decay (e.g. no decay on biases and BatchNorm, a separate
// lr for quantizer range parameters). Schedules (schedule.hpp) set each group's lr = base_lr * factor.
// The optimizer state (per-parameter buffers, step counts, lrs) is exported for checkpoints as named
// tensors "g<group>.p<index>.<slot>" plus a JSON object, and restored bit-exactly.
#pragma once

#include "engine/tensor.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qforge::train {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

struct ParamGroup {
  std::string name;  // "default", "no_decay", "quant_ranges", ...
  std::vector<Tensor> params;
  std::vector<std::string> param_names;  // optional (empty or one per param); for messages
  std::optional<double> lr;              // unset: the optimizer's lr
  std::optional<double> weight_decay;    // unset: the optimizer's weight decay
};

// Splits named parameters into "decay" (tensors of 2+ dims: weights) and "no_decay" (biases, BatchNorm
// weights/biases, any 0/1-dim tensor) with weight decay 0. Empty groups are dropped.
std::vector<ParamGroup> split_weight_decay(const NamedTensors& params);
// One group holding every parameter.
std::vector<ParamGroup> single_group(const NamedTensors& params);

struct OptimizerConfig {
  std::string type = "sgd";  // sgd | adam | adamw
  double lr = 0.01;
  double weight_decay = 0.0;
  // SGD
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
  // Adam / AdamW
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  bool amsgrad = false;
};

class Optimizer {
public:
  Optimizer(std::vector<ParamGroup> groups, const OptimizerConfig& config);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual void step() = 0;  // runs without recording (no grad mode)
  void zero_grad();         // drops every parameter's gradient

  const OptimizerConfig& config() const { return config_; }
  size_t num_groups() const { return groups_.size(); }
  const ParamGroup& group(size_t g) const { return groups_.at(g); }
  std::vector<Tensor> all_params() const;
  double base_lr(size_t g) const { return base_lr_.at(g); }
  double lr(size_t g) const { return lr_.at(g); }
  double weight_decay(size_t g) const { return wd_.at(g); }
  void set_lr(size_t g, double lr) { lr_.at(g) = lr; }
  void set_lr_factor(double factor);  // every group: lr = base_lr * factor
  int64_t steps() const { return steps_; }

  // ---- checkpoint state --------------------------------------------------------------------------
  NamedTensors state_tensors() const;  // copies of the buffers
  nlohmann::json state_json() const;   // type, step counts, current lrs
  // Restores both parts; throws InputError if they do not fit this optimizer's groups and parameters.
  void load_state(const nlohmann::json& j, const std::map<std::string, Tensor>& tensors);

protected:
  // Per-parameter state: named buffer slots (created lazily on the first update) and a step count.
  struct ParamState {
    std::vector<Tensor> slots;
    int64_t step = 0;
  };
  virtual std::vector<std::string> slot_names() const = 0;
  ParamState& state(size_t g, size_t i) { return state_[g][i]; }

  OptimizerConfig config_;
  std::vector<ParamGroup> groups_;
  std::vector<double> base_lr_, lr_, wd_;
  std::vector<std::vector<ParamState>> state_;
  int64_t steps_ = 0;
};

class SGD : public Optimizer {
public:
  SGD(std::vector<ParamGroup> groups, const OptimizerConfig& config);
  void step() override;

protected:
  std::vector<std::string> slot_names() const override { return {"momentum_buffer"}; }
};

class Adam : public Optimizer {
public:
  // decoupled = true: AdamW.
  Adam(std::vector<ParamGroup> groups, const OptimizerConfig& config, bool decoupled);
  void step() override;

protected:
  std::vector<std::string> slot_names() const override { return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"}; }

private:
  bool decoupled_;
};

// Builds the optimizer named by config.type; unknown names and non-positive lr throw InputError.
std::unique_ptr<Optimizer> make_optimizer(std::vector<ParamGroup> groups, const OptimizerConfig& config);

// Scales all gradients so that their global L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_:
// coefficient max_norm / (norm + 1e-6), applied only when < 1). Returns the norm before clipping
// (accumulated in double, in a fixed order). Parameters without gradients are ignored.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

}  // namespace qforge::train
