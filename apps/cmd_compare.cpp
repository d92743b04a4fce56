// qforge compare: per layer, FP32 vs float simulation vs int8 runtime (and the exact simulation) on one
// batch of data: SQNR, largest difference in LSBs, count of differing elements.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "apps/quant_setup.hpp"
#include "quant/runtime/compare.hpp"

#include <iostream>

namespace qforge::apps {

int cmd_compare(int argc, char** argv) {
  cxxopts::Options opts("qforge compare", "Per-layer comparison of FP32, simulation and int8 runtime.");
  opts.add_options()
      ("model-dir", "quantized model directory", cxxopts::value<std::string>())
      ("data", "data spec (default: the one the model was trained on)", cxxopts::value<std::string>())
      ("samples", "number of test examples compared", cxxopts::value<int64_t>()->default_value("256"))
      ("threads", "threads; 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());
  const std::filesystem::path dir = required(r, "model-dir");
  require_quantized_dir("model-dir", dir);
  const int64_t n = r["samples"].as<int64_t>();
  if (n <= 0) throw UsageError("--samples must be positive");
  data::DataSplits data = data_for_dir(dir, r.count("data") ? r["data"].as<std::string>() : "");
  quant::QuantizedModel qm = quant::load_quantized_dir(dir, sample_batch(data.test));
  const Tensor x = sample_batch(data.test, std::min<int64_t>(n, data.test->size()))[0];
  nlohmann::json res = quant::runtime::compare_layers(*qm.sim, x);
  if (r.count("json")) {
    emit_json(res);
    return 0;
  }
  auto num = [](const nlohmann::json& j, const char* k) -> std::string {
    if (!j.contains(k) || j[k].is_null()) return "exact";
    return fmt::format("{:.1f}", j[k].get<double>());
  };
  std::cout << fmt::format("{:<22} {:<10} {:>10} {:>11} {:>12} {:>9} {:>10} {:>11}\n", "layer", "op", "SQNR sim",
                           "SQNR int8", "int8 vs sim", "max LSB", "differing", "exact!=int8");
  for (const auto& l : res["layers"])
    std::cout << fmt::format("{:<22} {:<10} {:>10} {:>11} {:>12} {:>9} {:>10} {:>11}\n", l.value("layer", ""),
                             l.value("op", ""), num(l, "sqnr_sim_db"), num(l, "sqnr_int8_db"),
                             num(l, "sqnr_int8_vs_sim_db"), l.value("max_diff_lsb", 0), l.value("differing", 0),
                             l.value("exact_vs_int8_differing", 0));
  std::cout << "output: " << res["output"].dump() << std::endl;
  return 0;
}

}  // namespace qforge::apps
