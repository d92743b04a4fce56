// AdaRound: adaptive rounding of weights (aimet-compat.md §8.4; AIMET v1 Adaround.apply_adaround).
//
// apply_adaround(model, sample, batches, opt) first folds the BatchNorms, then wraps the model in a
// weights-only QuantSim (activation quantizers off, as AIMET asserts) whose weight encodings are computed
// once by the chosen scheme, and optimises the rounding of every Conv2d/Linear weight, one layer at a
// time in graph order:
//   W~ = delta * clamp(floor(W/delta) + h(alpha), lo, hi),  h(alpha) = clip(sigmoid(alpha)(zeta - gamma) + gamma, 0, 1)
// with alpha initialised so that h(alpha) = frac(W/delta). Loss per step on a random batch of cached
// samples: || f(W~ x_q + b) - f(W x + b) ||^2 summed over channels (dim 1) and averaged over the rest,
// plus, after the warm start, reg * sum(1 - |2h - 1|^beta), beta annealed beta_start -> beta_end by a
// cosine. f is the ReLU/ReLU6 directly after the layer (if any); x_q is the layer's input in the
// quantized model with the earlier layers already rounded; the target comes from the FP32 model. Adam on
// alpha only. The final rounding is hard (h = alpha >= 0); the rounded weights are written into the model
// (they lie exactly on the grid) and the weight encodings are returned frozen.
//
// Note [AdaRound speed] Each layer's inputs and FP32 targets are computed once for all cached samples
// and kept in memory; a step gathers a batch from them, runs the layer's conv/linear forward and the
// weight-gradient half of its backward (x needs no gradient), and updates alpha, h, the regulariser
// gradient and Adam in one fused loop over the weights.
//
// Use: after apply_adaround, build the final QuantSim on the same model and call
// result.apply_to(sim) before compute_encodings, so the weight encodings stay the AdaRound ones.
#pragma once

#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

struct AdaroundOptions {
  int64_t num_iterations = 0;  // per layer; 0: AIMET's default (10000; 15000 when param_bw < 8)
  double reg_param = 0.01;     // lambda
  double beta_start = 20, beta_end = 2;
  double warm_start = 0.2;     // fraction of iterations without the rounding loss
  double lr = 1e-3;            // Adam on alpha
  int64_t batch_size = 32;     // samples per step, drawn from the cached activations
  int64_t num_samples = 2000;  // cached samples (taken from the batches, in order)
  double zeta = 1.1, gamma = -0.1;
  uint64_t seed = 0;
  std::vector<std::string> ignore;  // layer names left at nearest rounding
  // Weight encodings chosen by an earlier pass (SeqMSE): set and frozen instead of the scheme's; may be null.
  const std::map<std::string, std::vector<Encoding>>* weight_encodings = nullptr;
  // The weights-only sim: param_bw (AIMET default 4), scheme (AIMET default tf_enhanced), config
  // ("default": per-tensor, "per_channel": per-channel weights).
  QuantSimOptions sim = default_sim();
  // Called after each layer (name, index, total) — progress display; may be empty.
  std::function<void(const std::string&, int, int)> on_layer;

  static QuantSimOptions default_sim() {
    QuantSimOptions o;
    o.param_bw = 4;
    o.scheme = QuantScheme::tf_enhanced;
    return o;
  }
  int64_t iterations() const { return num_iterations > 0 ? num_iterations : (sim.param_bw < 8 ? 15000 : 10000); }
};

// Throws InputError for impossible settings (param_bw > 8 or < 2, float weights, non-positive counts,
// warm_start outside [0, 1), ...).
void validate(const AdaroundOptions& opt);

struct AdaroundLayer {
  std::string name;
  int64_t iterations = 0;
  bool per_channel = false;
  double loss_nearest = 0;   // reconstruction loss with nearest rounding (on up to 256 cached samples)
  double loss_adaround = 0;  // ... with the final hard AdaRound rounding
  double changed = 0;        // fraction of weights rounded differently from nearest
  double seconds = 0;        // in total, of which...
  double cache_seconds = 0;  // ...computing the cached inputs/targets
};

struct AdaroundResult {
  std::map<std::string, std::vector<Encoding>> param_encodings;  // "<module>.weight" -> encodings
  std::vector<AdaroundLayer> layers;
  double seconds = 0;
  QuantSimOptions sim_options;
  // AIMET's AdaRound parameter file (§3.5): {"param_encodings": {"conv1.weight": [Enc, ...]}}.
  nlohmann::json encodings_json() const;
  void save_encodings(const std::filesystem::path& path) const;  // atomic
  // Sets and freezes the weight encodings of `sim` (which must wrap the AdaRounded model).
  void apply_to(QuantSim& sim) const;
  nlohmann::json to_json() const;  // report: per-layer losses and times
};

// batches: input batches (single-input models) for the cached activations. The model is changed in
// place (BN folded, weights rounded). It must be spec-expressible (nn::clone_model) for the FP32 copy.
AdaroundResult apply_adaround(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                              const std::vector<Tensor>& batches, const AdaroundOptions& opt = {});

}  // namespace qforge::quant::ptq
