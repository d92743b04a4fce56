// Evaluation of a model directory in each mode (fp32, sim, exact, int8), shared by eval, demo,
// compare and analyze.
#pragma once

#include "apps/cli.hpp"
#include "data/data.hpp"
#include "engine/tensor.hpp"

#include <filesystem>
#include <string>

namespace qforge::apps {

struct EvalRequest {
  std::filesystem::path dir;
  std::string data_spec;  // "" = the directory's report.json "data"
  std::string split = "test";
  std::string mode;       // "" = sim for quantized directories, else fp32
  int64_t batch_size = 256;
  bool keep_logits = false;
};

struct EvalOutcome {
  Json summary;    // {"mode", "accuracy", "loss", "samples", "seconds", ...}
  Tensor logits;   // when keep_logits
  Tensor targets;  // when keep_logits
};

EvalOutcome run_eval(const EvalRequest& req);

// The data a model directory was trained on, with its report's seed and sequence length.
data::DataSplits data_for_dir(const std::filesystem::path& dir, const std::string& data_spec);

}  // namespace qforge::apps
