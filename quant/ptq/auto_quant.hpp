// AutoQuant-style pipeline (aimet-compat.md §8.6): find a quantized model within an accuracy budget.
//
// auto_quant(model, sample, calib, eval, opt), on the model in place:
//   0. FP32 accuracy (eval callback), target = FP32 - allowed_drop; BN folding (the function is unchanged);
//   1. quant scheme: (weight, activation) among (tf, tf), (tf_enhanced, tf), (tf_enhanced, tf_enhanced),
//      (tf_enhanced, percentile 99.9), (tf_enhanced, percentile 99.99); the best is kept;
//   2. weights at 32 bits (activations only): if this misses the target, no weight pass can reach it,
//      so the pipeline stops and says so;
//   3. CLE (on a copy; adopted only if it improves the quantized accuracy);
//   4. AdaRound (weights at param_bw, at most 2000 samples of calib).
// It stops as soon as a stage meets the target. Each stage's quantized accuracy is reported. The
// model keeps the state of the best stage; build the final sim with result.options (and
// result.adaround->apply_to(sim) when AdaRound ran) — or call make_calibrated_sim(model, ..., result).
#pragma once

#include "quant/ptq/adaround.hpp"

#include <functional>
#include <memory>
#include <optional>

namespace qforge::quant::ptq {

using EvalCallback = std::function<double(nn::Module&)>;  // accuracy in points (%) of a model

struct AutoQuantOptions {
  double allowed_drop = 1.0;  // accuracy points
  QuantSimOptions sim;        // bitwidths, config, rounding (the scheme is chosen here)
  AdaroundOptions adaround;   // iterations etc. (its sim options are replaced by the chosen ones)
  bool try_cle = true;
  bool try_adaround = true;
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

struct AutoQuantStage {
  std::string name;   // "fp32", "scheme tf/tf", ..., "weights fp32 (activations only)", "cle", "adaround"
  double accuracy = 0;
  bool target_met = false;
  std::string note;
};

struct AutoQuantResult {
  double fp32_accuracy = 0, target = 0;
  std::vector<AutoQuantStage> stages;
  QuantSimOptions options;         // chosen scheme applied to activations (options.scheme)...
  QuantScheme weight_scheme = QuantScheme::tf;  // ...and to weights
  bool cle_applied = false;
  std::optional<AdaroundResult> adaround;
  double best_accuracy = 0;
  std::string best_stage;
  bool target_met = false;
  std::string message;             // why it stopped
  nlohmann::json to_json() const;
};

AutoQuantResult auto_quant(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                           const std::vector<Tensor>& calib_batches, const EvalCallback& eval,
                           const AutoQuantOptions& opt = {});

// A calibrated QuantSim on `model`: activations with options.scheme, weights with weight_scheme,
// optional frozen AdaRound encodings, calibrated on the batches.
std::unique_ptr<QuantSim> make_calibrated_sim(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                                              const std::vector<Tensor>& calib_batches, const QuantSimOptions& options,
                                              QuantScheme weight_scheme, const AdaroundResult* adaround = nullptr);

// The passes a user asked for (CLI flags), checked together before anything runs.
struct PassSelection {
  bool cle = false;
  std::string bias_correction;  // "", "empirical", "analytical"
  bool adaround = false;
  bool auto_quant = false;
  int64_t bn_reestimate = 0;
  int param_bw = 8;
  int act_bw = 8;
};
// InputError naming the conflict: AdaRound (or --auto) with param_bw outside 2..8; bias correction with
// AdaRound (AIMET: do not combine — AdaRound's reconstruction already absorbs the bias shift); --auto
// with explicit passes (it chooses them itself); an unknown bias correction mode; negative counts.
void validate_passes(const PassSelection& p);

// Copies architecture-level module swaps and all parameters/buffers of `src` (a clone of `dst`, e.g.
// after CLE replaced ReLU6 by ReLU) into `dst` (a Graph).
void adopt_model_state(nn::Module& dst, nn::Module& src);

}  // namespace qforge::quant::ptq
