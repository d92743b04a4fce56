// qforge demo: the main job end to end on the built-in synthetic digits (or --data):
//   train mnist-cnn (FP32) -> PTQ W8A8 -> QAT W4A4 (LSQ ranges) -> evaluate each, then the W8A8 model on
//   the int8 runtime beside its exact simulation; one comparison table at the end.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"

#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

// Runs another subcommand in-process with the given arguments.
int run_sub(int (*cmd)(int, char**), std::vector<std::string> args) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  return cmd(static_cast<int>(argv.size()), argv.data());
}

// The int8 runtime's accuracy and speed beside the exact simulation's (same integers by construction).
void add_int8_rows(const fs::path& qdir, Json& rows) {
  for (const char* mode : {"exact", "int8"}) {
    EvalRequest req;
    req.dir = qdir;
    req.mode = mode;
    try {
      EvalOutcome e = run_eval(req);
      rows.push_back({{"stage", std::string("PTQ W8A8 (") + mode + ")"}, {"mode", mode},
                      {"accuracy", e.summary["accuracy"]}, {"loss", e.summary["loss"]},
                      {"seconds", e.summary["seconds"]}});
    } catch (const Error& e) {  // e.g. a layer the integer runtime has no kernel for: say so, keep the table
      say(fmt::format("(skipping mode {}: {})", mode, e.what()));
    }
  }
}

}  // namespace

int cmd_demo(int argc, char** argv) {
  cxxopts::Options opts("qforge demo", "Train -> quantize -> fine-tune -> int8 evaluation, printing one table.");
  opts.add_options()
      ("data", "data spec (default: built-in synthetic digits)", cxxopts::value<std::string>()->default_value("synthetic"))
      ("model", "zoo model", cxxopts::value<std::string>()->default_value("mnist-cnn"))
      ("epochs", "FP32 training epochs", cxxopts::value<int64_t>()->default_value("2"))
      ("qat-epochs", "QAT epochs", cxxopts::value<int64_t>()->default_value("1"))
      ("out", "working directory for the model directories", cxxopts::value<std::string>()->default_value("demo-out"))
      ("seed", "seed", cxxopts::value<uint64_t>()->default_value("0"))
      ("threads", "threads; 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  const fs::path out = r["out"].as<std::string>();
  const std::string data = r["data"].as<std::string>();
  const std::string model = r["model"].as<std::string>();
  const std::string seed = std::to_string(r["seed"].as<uint64_t>());
  const std::string threads = std::to_string(r["threads"].as<int>());
  const fs::path fp32_dir = out / "fp32";
  // Each stage replaces only its own previous qforge output (--force); anything else there is refused.

  say(fmt::format("== demo: train {} on {}", model, data));
  run_sub(cmd_train, {"qforge train", "--model", model, "--data", data, "--epochs",
                      std::to_string(r["epochs"].as<int64_t>()), "--seed", seed, "--threads", threads, "--out",
                      fp32_dir.string(), "--progress", "lines", "--log-every", "100", "--force", "--json"});

  Json rows = Json::array();
  auto add_row = [&](const std::string& stage, const fs::path& dir, const std::string& mode) {
    EvalRequest req;
    req.dir = dir;
    req.mode = mode;
    EvalOutcome e = run_eval(req);
    rows.push_back({{"stage", stage}, {"mode", mode}, {"accuracy", e.summary["accuracy"]},
                    {"loss", e.summary["loss"]}, {"seconds", e.summary["seconds"]}});
  };
  add_row("FP32", fp32_dir, "fp32");

  const fs::path q8 = out / "w8a8", q4 = out / "w4a4", qat4 = out / "w4a4-qat";
  say("== demo: post-training quantization W8A8 (tf, AIMET default config)");
  run_sub(cmd_quantize, {"qforge quantize", "--model-dir", fp32_dir.string(), "--out", q8.string(), "--seed", seed,
                         "--threads", threads, "--force", "--json"});
  add_row("PTQ W8A8 (sim)", q8, "sim");
  say("== demo: quantization-aware training W4A4 (LSQ ranges)");
  run_sub(cmd_quantize, {"qforge quantize", "--model-dir", fp32_dir.string(), "--out", q4.string(), "--param-bw", "4",
                         "--output-bw", "4", "--seed", seed, "--threads", threads, "--force", "--json"});
  add_row("PTQ W4A4 (sim)", q4, "sim");
  run_sub(cmd_finetune, {"qforge finetune", "--model-dir", q4.string(), "--out", qat4.string(), "--epochs",
                         std::to_string(r["qat-epochs"].as<int64_t>()), "--range-learning", "lsq", "--lr", "1e-3",
                         "--seed", seed, "--threads", threads, "--progress", "lines", "--log-every", "100", "--force",
                         "--json"});
  add_row("QAT W4A4 (sim)", qat4, "sim");
  add_int8_rows(q8, rows);

  std::cerr << "\n" << fmt::format("{:<28} {:>9} {:>8} {:>9}\n", "stage", "accuracy", "loss", "eval s");
  for (const auto& row : rows)
    std::cerr << fmt::format("{:<28} {:>8.2f}% {:>8.4f} {:>9.3f}\n", row["stage"].get<std::string>(),
                             row["accuracy"].get<double>(), row["loss"].get<double>(), row["seconds"].get<double>());
  Json result = {{"model", model}, {"data", data}, {"stages", rows}};
  if (r.count("json")) emit_json(result);
  return 0;
}

}  // namespace qforge::apps
