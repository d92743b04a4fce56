// Bias correction (aimet-compat.md §8.3; AIMET correct_bias).
//
// Weight quantization shifts the mean of a layer's output: E[W_q x] - E[W x] = (W_q - W) E[x]. Bias
// correction subtracts that shift from the layer's bias, layer by layer in graph order, using a
// weights-only QuantSim (activation quantizers off, as AIMET's) on the model itself:
//   empirical   from data: b -= mean over (N, H, W) of (y_q - y_fp), y_q the layer's output in the
//               quantized model (earlier layers already corrected), y_fp in an FP32 copy of the model;
//   analytical  data-free, for layers whose input comes from a folded BN (optionally through ReLU/ReLU6):
//               E[x_c] from the BN's beta, |gamma| as a Gaussian: none -> beta; ReLU -> beta(1 - Phi(-beta/gamma))
//               + gamma phi(-beta/gamma); ReLU6 -> the mean of the Gaussian clipped to [0, 6];
//               eps = sum_hw (W_q - W); b -= eps . E[x]. Other layers fall back to empirical when data
//               is given, else they are skipped (reported).
// BNs are folded first (the statistics captured by that fold, or the ones passed in bn_folds — e.g.
// CleResult::folds, which follow CLE's scaling — feed the analytical mode). The model must be
// spec-expressible (nn::clone_model) for the FP32 copy. Do not combine with AdaRound (AIMET's advice).
#pragma once

#include "quant/ptq/bn_fold.hpp"
#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

enum class BiasCorrectionMode { empirical, analytical };
BiasCorrectionMode parse_bias_correction_mode(const std::string& s);  // InputError for others

struct BiasCorrectionOptions {
  BiasCorrectionMode mode = BiasCorrectionMode::empirical;
  QuantSimOptions sim;          // the weight quantization being corrected for (param_bw, scheme, config)
  int64_t num_samples = 512;    // samples of the batches used (empirical)
  std::vector<std::string> ignore;
  // Weight encodings chosen by an earlier pass (SeqMSE): set and frozen instead of the scheme's; may be null.
  const std::map<std::string, std::vector<Encoding>>* weight_encodings = nullptr;
  const BnFoldResult* bn_folds = nullptr;  // BN statistics captured before folding (analytical)
};

struct BiasCorrectionLayer {
  std::string name;
  std::string method;  // "empirical", "analytical", "skipped: <why>"
  double mean_abs_shift = 0;  // mean |correction| over the output channels
};

struct BiasCorrectionResult {
  std::vector<BiasCorrectionLayer> layers;
  std::vector<std::string> messages;
  nlohmann::json to_json() const;
};

BiasCorrectionResult correct_bias(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                                  const std::vector<Tensor>& batches, const BiasCorrectionOptions& opt = {});

// Mean of N(mu, sigma^2) after an activation: "" (none), "ReLU" or "ReLU6".
double activation_mean(double mu, double sigma, const std::string& activation);

}  // namespace qforge::quant::ptq
