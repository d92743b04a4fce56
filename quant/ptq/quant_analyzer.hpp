// Quantization analyzer (aimet-compat.md §8.7; AIMET QuantAnalyzer), on a calibrated QuantSim.
//
// analyze(sim, batches, eval, opt) reports:
//   - accuracy (eval callback) with everything off (FP32), weights only, activations only, everything on;
//   - per-quantizer sweeps over the quantizers that were enabled: enable only that one (all others off)
//     and disable only that one (all others on), with the accuracy of each;
//   - per-layer SQNR (dB) and MSE of each leaf module's output against FP32, on `batches` (the quantized
//     model's error as it accumulates through the network: both runs start from the same input);
//   - each quantizer's encoding(s) and a histogram of what it saw in calibration (FP32 values: module
//     outputs/inputs with all quantizers off, the FP32 weights for parameter quantizers; recurrent
//     quantizers, which act inside the cell, get no histogram).
// The sim's enabled flags are restored afterwards. write_report(dir) writes analysis.json and
// analysis.html — one self-contained page with inline SVG plots (no scripts, no network).
#pragma once

#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

struct AnalyzerOptions {
  bool sweeps = true;
  int64_t num_batches = 4;   // batches of `batches` used for SQNR/MSE and histograms
  int histogram_bins = 64;
  int64_t max_histogram_values = 200000;  // per quantizer (strided subsample beyond)
};

struct QuantizerAnalysis {
  std::string name, kind, module;
  bool enabled = false;
  std::vector<Encoding> encodings;
  double acc_only_this = -1;     // sweep: only this quantizer on (-1: not run)
  double acc_without_this = -1;  // sweep: all but this one
  double hist_lo = 0, hist_hi = 0;
  std::vector<int64_t> hist;     // empty: no histogram
};

struct LayerAnalysis {
  std::string name, type;
  double mse = 0, sqnr_db = 0;
};

struct Analysis {
  double fp32 = 0, weights_only = 0, activations_only = 0, quantized = 0;
  std::vector<QuantizerAnalysis> quantizers;
  std::vector<LayerAnalysis> layers;
  nlohmann::json options;  // the sim's options
  // Blockwise/LPBQ weight quantizers: block-scale statistics (quant/blockwise_sim.hpp block_scale_stats).
  nlohmann::json block_scales = nlohmann::json::array();
  nlohmann::json to_json() const;
  std::string to_html() const;
  void write_report(const std::filesystem::path& dir) const;  // analysis.json + analysis.html (atomic)
};

Analysis analyze(QuantSim& sim, const std::vector<Tensor>& batches, const std::function<double(nn::Module&)>& eval,
                 const AnalyzerOptions& opt = {});

}  // namespace qforge::quant::ptq
