// A quantized model directory: a model directory (nn/model_dir.hpp) plus the simulation's state.
//
//   model.json, weights.safetensors, report.json   as for FP32 models (weights: the FP32 shadow weights,
//                                                  BatchNorm already folded when the sim folded it)
//   encodings.json                                 AIMET encodings (schema 0.6.1 by default)
//   quantsim.json                                  the resolved quantizer settings and sim options
//   config.json                                    the AIMET config the sim was built with (a copy, so
//                                                  the directory is self-contained)
// load_quantized_dir rebuilds the QuantSim from these: same options, same config, same per-quantizer
// enabled flags, encodings loaded (strict) and the learnable ranges re-initialised from them.
#pragma once

#include "nn/model_dir.hpp"
#include "quant/quantsim.hpp"

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qforge::quant {

struct QuantizedModel {
  nn::ModelDir dir;
  std::unique_ptr<QuantSim> sim;
};

// True when `dir` holds a quantized model (encodings.json + quantsim.json).
bool is_quantized_dir(const std::filesystem::path& dir);

// sample_inputs: one batch of the model's input, used to trace it.
QuantizedModel load_quantized_dir(const std::filesystem::path& dir, const std::vector<Tensor>& sample_inputs);

// Options recorded in quantsim.json (scheme, bitwidths, range learning, fold_bn) with the config copied
// into the directory.
// Both check every field they read (type and range) and throw InputError naming quantsim.json and the
// JSON path.
QuantSimOptions options_from_quantsim_json(const nlohmann::json& qs, const std::filesystem::path& dir);
// The per-quantizer enabled flags recorded in quantsim.json ("quantizers": [{"name", "enabled"}]).
std::vector<std::pair<std::string, bool>> quantizer_flags_from_quantsim_json(const nlohmann::json& qs,
                                                                            const std::filesystem::path& dir);

// Writes model.json, weights.safetensors, encodings.json, quantsim.json, config.json and report.json.
void save_quantized_dir(const std::filesystem::path& dir, QuantSim& sim, const nlohmann::json& report,
                        const std::string& encodings_version = "0.6.1");

}  // namespace qforge::quant
