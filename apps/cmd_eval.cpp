// qforge eval: accuracy and loss of a model directory on a data split, in one of four modes:
//   fp32   the FP32 model
//   sim    float fake-quant simulation (quantized model directories)
//   exact  exact simulation: integer accumulation + requant.hpp (quantized model directories)
//   int8   the integer-only runtime (quantized model directories)
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "nn/safetensors.hpp"
#include "train/output.hpp"

#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

// --save-logits FILE: a symbolic link or special file is refused (never replaced); an existing regular
// file is replaced only when it is a logits file qforge eval wrote (tensors "logits" and "targets").
void check_logits_target(const fs::path& lp) {
  train::check_single_file_target("--save-logits", lp);
  if (!fs::exists(lp)) return;
  bool ours = false;
  try {
    const nn::TensorMap m = nn::load_safetensors(lp);
    ours = m.size() == 2 && m.count("logits") && m.count("targets");
  } catch (const std::exception&) {
  }
  if (!ours)
    throw UsageError(fmt::format("--save-logits {}: exists and is not a logits file written by qforge eval; refusing "
                                 "to replace it",
                                 lp.string()));
}

}  // namespace

int cmd_eval(int argc, char** argv) {
  cxxopts::Options opts("qforge eval", "Evaluate a model directory on a data split.");
  opts.add_options()
      ("model-dir", "model directory (from train, quantize or finetune) or a bundle from export", cxxopts::value<std::string>())
      ("data", "data spec (default: the one the model was trained on)", cxxopts::value<std::string>())
      ("split", "test | train", cxxopts::value<std::string>()->default_value("test"))
      ("mode", "fp32 | sim | exact | int8 (default: sim for quantized directories, else fp32)", cxxopts::value<std::string>())
      ("batch-size", "evaluation batch size", cxxopts::value<int64_t>()->default_value("256"))
      ("save-logits", "write the logits to this .safetensors file", cxxopts::value<std::string>())
      ("threads", "threads (OpenMP + OpenBLAS); 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());
  const fs::path dir = required(r, "model-dir");
  const std::string split = r["split"].as<std::string>();
  if (split != "test" && split != "train") throw UsageError(fmt::format("--split {}: expected test or train", split));
  const int64_t batch = r["batch-size"].as<int64_t>();
  if (batch <= 0) throw UsageError(fmt::format("--batch-size {}: must be positive", batch));

  EvalRequest req;
  req.dir = dir;
  req.data_spec = r.count("data") ? r["data"].as<std::string>() : "";
  req.split = split;
  req.mode = r.count("mode") ? r["mode"].as<std::string>() : "";
  req.batch_size = batch;
  req.keep_logits = r.count("save-logits") > 0;
  // A symbolic link or special file is refused, never replaced; a regular file is replaced by temp + rename.
  if (req.keep_logits) check_logits_target(r["save-logits"].as<std::string>());
  EvalOutcome out = run_eval(req);

  if (req.keep_logits) {
    const fs::path lp = r["save-logits"].as<std::string>();
    check_logits_target(lp);  // again: it may have changed meanwhile
    nn::save_safetensors(lp, {{"logits", out.logits}, {"targets", out.targets}});
    out.summary["logits_file"] = lp.string();
  }
  print_result(r, out.summary);
  return 0;
}

}  // namespace qforge::apps
