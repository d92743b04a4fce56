// qforge export: a self-contained deployment bundle for the integer runtime (program.json + program.bin:
// packed-ready int8 weights, int32 biases, multipliers, shifts, zero points). The runtime loads it without
// the FP32 model; the bundle is verified by running it beside the in-memory program before it is kept.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/quant_setup.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"
#include "train/output.hpp"

#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

int cmd_export(int argc, char** argv) {
  cxxopts::Options opts("qforge export", "Write an int8 deployment bundle for the integer runtime.");
  opts.add_options()
      ("model-dir", "quantized model directory", cxxopts::value<std::string>())
      ("out", "bundle directory to write", cxxopts::value<std::string>())
      ("data", "data spec used to trace the model (default: the model's)", cxxopts::value<std::string>())
      ("force", "replace --out when it holds a previous qforge bundle (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  const fs::path dir = required(r, "model-dir"), out = required(r, "out");
  require_quantized_dir("model-dir", dir);
  // Note [Publishing outputs] (train/output.hpp): checks --out, takes its lock, stages in a temporary.
  train::OutputDir od(out, "bundle", {r.count("force") > 0, {dir}});
  data::DataSplits data = data_for_dir(dir, r.count("data") ? r["data"].as<std::string>() : "");
  const Tensor sample = sample_batch(data.test, 16)[0];
  quant::runtime::Program program = quant::runtime::lower_model_dir(dir, sample);

  // Build in the staging directory, check that the loaded bundle computes the same integers, then
  // publish with one rename: a failure never leaves a half-written bundle at --out.
  const fs::path tmp = od.staging();
  quant::runtime::save_bundle(program, tmp);
  quant::runtime::Runtime a(program), b(quant::runtime::load_bundle(tmp));
  const Tensor ca = a.run_codes(sample), cb = b.run_codes(sample);
  if (ca.to_vector<int32_t>() != cb.to_vector<int32_t>())
    throw Error("export: the reloaded bundle does not reproduce the program's output codes");
  od.publish();
  int64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(out))
    if (e.is_regular_file()) bytes += static_cast<int64_t>(e.file_size());
  nlohmann::json summary = {{"out", out.string()}, {"bytes", bytes}, {"verified", true}};
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
