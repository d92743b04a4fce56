// qforge demo: the main job end to end on the built-in synthetic digits (or --data):
//   train mnist-cnn (FP32) -> evaluate.
// Later stages (PTQ W8A8, QAT W4A4, int8 runtime) are added as the libraries land.
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

}  // namespace

int cmd_demo(int argc, char** argv) {
  cxxopts::Options opts("qforge demo", "Train -> quantize -> fine-tune -> int8 evaluation, printing one table.");
  opts.add_options()
      ("data", "data spec (default: built-in synthetic digits)", cxxopts::value<std::string>()->default_value("synthetic"))
      ("model", "zoo model", cxxopts::value<std::string>()->default_value("mnist-cnn"))
      ("epochs", "FP32 training epochs", cxxopts::value<int64_t>()->default_value("2"))
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
  if (fs::exists(fp32_dir)) fs::remove_all(fp32_dir);

  say(fmt::format("== demo: train {} on {}", model, data));
  run_sub(cmd_train, {"qforge train", "--model", model, "--data", data, "--epochs",
                      std::to_string(r["epochs"].as<int64_t>()), "--seed", seed, "--threads", threads, "--out",
                      fp32_dir.string(), "--progress", "lines", "--log-every", "100", "--json"});

  Json rows = Json::array();
  EvalRequest req;
  req.dir = fp32_dir;
  req.mode = "fp32";
  EvalOutcome fp32 = run_eval(req);
  rows.push_back({{"stage", "FP32"}, {"accuracy", fp32.summary["accuracy"]}, {"loss", fp32.summary["loss"]},
                  {"seconds", fp32.summary["seconds"]}});

  std::cerr << "\n" << fmt::format("{:<28} {:>9} {:>8} {:>9}\n", "stage", "accuracy", "loss", "eval s");
  for (const auto& row : rows)
    std::cerr << fmt::format("{:<28} {:>8.2f}% {:>8.4f} {:>9.3f}\n", row["stage"].get<std::string>(),
                             row["accuracy"].get<double>(), row["loss"].get<double>(), row["seconds"].get<double>());
  Json result = {{"model", model}, {"data", data}, {"stages", rows}};
  if (r.count("json")) emit_json(result);
  return 0;
}

}  // namespace qforge::apps
