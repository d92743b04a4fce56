// BatchNorm folding, fold-to-scale and BN re-estimation (aimet-compat.md §8.1).
//
// fold_all_batch_norms(model, sample) folds every foldable BatchNorm into its neighbouring layer, in
// place, and returns what it did (with each BN's statistics captured BEFORE folding: CLE's high-bias
// absorption and analytical bias correction need them):
//   - backward fold, Conv2d/Linear -> BN (the layer's output feeds only the BN):
//       s = gamma/sqrt(var + eps);  W'[o] = W[o]*s[o];  b'[o] = beta[o] + (b[o] - mu[o])*s[o]
//   - forward fold, BN -> Conv2d/Linear (the BN feeds only that layer; Conv2d only with padding 0 and
//     groups 1, as AIMET's _is_valid_bn_fold):
//       W'[o, i] = W[o, i]*s[i];  b'[o] = b[o] + sum_{i,hw} W[o, i, hw]*(beta[i] - mu[i]*s[i])
// A bias is created where missing. The folded BN stays in the model with identity statistics (mean 0,
// var 1 - eps, gamma 1, beta 0), so eval-mode outputs are unchanged, state_dict keys and the model spec
// stay valid, and QuantSim (which folds the same pairs) sees it as a transparent, already-folded BN.
// BNs that cannot be folded are listed (they stay as they are). Same math as QuantSim's own fold
// (quant/quantsim.cpp), which runs when a sim is built with fold_bn = true.
//
// fold_all_batch_norms_to_scale(sim): for QAT with a sim built with fold_bn = false: each Conv/Linear
// -> BN pair is folded into the weights AND into the weight encoding (per channel: delta' = |s|*delta,
// min/max scaled likewise), the BN's output encoding moves to the layer's output quantizer, and the BN is
// bypassed (identity statistics plus a forward hook, so it stays the identity in train mode too).
//
// reestimate_bn_stats(model, batches, n): AIMET's reestimate_bn_stats: each unfolded BatchNorm is put in train
// mode (the rest of the model keeps its mode), n batches run without gradient, and every BN's
// running_mean/running_var become the average of the per-batch means / unbiased variances (what
// PyTorch's momentum=None cumulative average computes). Returns an undo handle with the old buffers.
#pragma once

#include "engine/tensor.hpp"
#include "nn/module.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::quant {
class QuantSim;
}

namespace qforge::quant::ptq {

// One folded (layer, BN) pair with the BN's parameters as they were before folding.
struct BnFold {
  std::string layer;  // conv/linear module name
  std::string bn;     // batchnorm module name
  bool bn_before_layer = false;  // forward fold (BN -> layer)
  std::vector<double> gamma, beta, mean, var;
  double eps = 1e-5;
};

struct BnFoldResult {
  std::vector<BnFold> folds;
  std::vector<std::string> not_folded;  // "bn3: <reason>"
  const BnFold* find_layer(const std::string& layer, bool bn_before = false) const;
  BnFold* find_layer(const std::string& layer, bool bn_before = false);
  nlohmann::json to_json() const;
};

BnFoldResult fold_all_batch_norms(nn::Module& model, const std::vector<Tensor>& sample_inputs);

// The per-pair math (exposed for tests and for QuantSim-like callers).
void fold_bn_backward(nn::Module& layer, nn::Module& bn);  // layer -> BN
void fold_bn_forward(nn::Module& bn, nn::Module& layer);   // BN -> layer

// Returns the number of pairs folded. InputError for per-tensor weight quantizers whose channels
// would need different scales.
int fold_all_batch_norms_to_scale(QuantSim& sim);

class BnStatsUndo {
public:
  void restore();  // puts the old running statistics back
  size_t size() const { return saved_.size(); }

private:
  friend BnStatsUndo reestimate_bn_stats(nn::Module&, const std::vector<Tensor>&, int64_t);
  std::vector<std::pair<Tensor, Tensor>> saved_;  // (live buffer, copy)
};

// Runs min(num_batches, batches.size()) batches; InputError when the model has no BatchNorm or no batch.
BnStatsUndo reestimate_bn_stats(nn::Module& model, const std::vector<Tensor>& batches, int64_t num_batches = 100);

}  // namespace qforge::quant::ptq
