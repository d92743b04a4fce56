// qforge analyze: the quantization analyzer on a quantized model directory: FP32 vs weights-only vs
// activations-only accuracy, per-quantizer sweeps (one on / one off), per-layer SQNR and MSE against
// FP32, every quantizer's encoding and a histogram of what it saw. Writes analysis.json and a
// self-contained HTML report (inline SVG plots, no network) into --out.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "apps/quant_setup.hpp"
#include "engine/ops/ops.hpp"
#include "quant/ptq/quant_analyzer.hpp"
#include "train/output.hpp"

#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

int cmd_analyze(int argc, char** argv) {
  cxxopts::Options opts("qforge analyze", "Quantization analyzer: sweeps, per-layer SQNR/MSE, HTML report.");
  opts.add_options()
      ("model-dir", "quantized model directory", cxxopts::value<std::string>())
      ("data", "data spec (default: the one the model was trained on)", cxxopts::value<std::string>())
      ("out", "report directory (analysis.json, analysis.html)", cxxopts::value<std::string>())
      ("no-sweeps", "skip the per-quantizer sweeps (two evaluations per quantizer)")
      ("eval-samples", "test examples per sweep evaluation (0: all)", cxxopts::value<int64_t>()->default_value("1000"))
      ("batches", "batches for SQNR/MSE and histograms", cxxopts::value<int64_t>()->default_value("4"))
      ("threads", "threads; 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("force", "replace --out when it holds a previous qforge analysis (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());
  const fs::path dir = required(r, "model-dir"), out = required(r, "out");
  require_quantized_dir("model-dir", dir);
  const int64_t nb = r["batches"].as<int64_t>(), ne = r["eval-samples"].as<int64_t>();
  if (nb <= 0) throw UsageError("--batches must be positive");
  if (ne < 0) throw UsageError("--eval-samples must not be negative");
  train::OutputDir od(out, "analysis", {r.count("force") > 0, {dir}});  // Note [Publishing outputs]
  data::DataSplits data = data_for_dir(dir, r.count("data") ? r["data"].as<std::string>() : "");
  quant::QuantizedModel qm = quant::load_quantized_dir(dir, sample_batch(data.test));

  const std::vector<Tensor> batches = calibration_batches(data.train, nb, 64, 0);
  // Sweeps evaluate many variants: on the first `ne` test examples (all when 0).
  std::shared_ptr<const data::Dataset> eval_ds = data.test;
  if (ne > 0 && ne < data.test->size()) {
    if (auto img = std::dynamic_pointer_cast<const data::ImageDataset>(data.test)) eval_ds = img->subset(0, ne);
  }
  auto eval = [&](nn::Module& m) { return evaluate_on(m, eval_ds).metrics.accuracy(); };
  quant::ptq::AnalyzerOptions ao;
  ao.sweeps = r.count("no-sweeps") == 0;
  ao.num_batches = nb;
  say(fmt::format("analyzing {} ({} quantizers){}", dir.string(), qm.sim->quantizers().size(),
                  ao.sweeps ? ", with sweeps" : ""));
  quant::ptq::Analysis a = quant::ptq::analyze(*qm.sim, batches, eval, ao);
  a.write_report(od.staging());
  od.publish();
  nlohmann::json summary = {{"out", out.string()},
                            {"fp32", a.fp32},
                            {"weights_only", a.weights_only},
                            {"activations_only", a.activations_only},
                            {"quantized", a.quantized},
                            {"quantizers", a.quantizers.size()},
                            {"layers", a.layers.size()},
                            {"report", (out / "analysis.html").string()}};
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
