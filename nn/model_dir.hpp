// A model directory: how trained and quantized models live on disk (and move between commands).
//
//   model.json           the model spec (nn/spec.hpp)
//   weights.safetensors  FP32 weights, PyTorch state_dict names
//   report.json          what produced it: {"model", "data", "vocab" (text), metrics, ...}
// Quantized directories add encodings.json and quantsim.json (quant/); training adds metrics.jsonl and
// checkpoint/ (train/).
#pragma once

#include "nn/graph.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <memory>

namespace qforge::nn {

struct ModelDir {
  std::filesystem::path path;
  nlohmann::json spec;    // model.json
  nlohmann::json report;  // report.json, or an empty object
  std::shared_ptr<Graph> model;
};

// Loads model.json, builds the model and loads weights.safetensors (strict) when `with_weights`.
// InputError naming the directory or file when anything is missing or malformed.
ModelDir load_model_dir(const std::filesystem::path& dir, bool with_weights = true);

// Writes model.json (the spec of `model`), weights.safetensors and report.json into `dir` (created if
// needed), each atomically.
void save_model_dir(const std::filesystem::path& dir, const Module& model, const nlohmann::json& report);

// Reads a JSON file; InputError naming the file (and the parse position) when malformed.
nlohmann::json read_json_file(const std::filesystem::path& path);
void write_json_file(const std::filesystem::path& path, const nlohmann::json& j);  // atomic, indented

}  // namespace qforge::nn
