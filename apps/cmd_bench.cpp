// qforge bench kernels|infer: speed measurements (benchmarks measure; nothing here asserts a target).
//   kernels  this machine's fp32/int8 peaks, every int8 GEMM variant as GOP/s and % of peak next to
//            OpenBLAS sgemm on the same shape, and the other int8 kernels (benchmarks/kernels/)
//   infer    int8 runtime vs qforge's own FP32 inference of a zoo model: throughput at batch 64 and
//            batch-1 latency, FP32 and int8 samples alternating, and the kernels the int8 layers ran
//            (quant/runtime/bench_infer.hpp)
#include "apps/cli.hpp"
#include "benchmarks/kernels/kernel_bench.hpp"
#include "quant/runtime/bench_infer.hpp"

#include <algorithm>
#include <iostream>

namespace qforge::apps {

namespace {

std::vector<int> int_list(const std::string& s, const char* what) {
  std::vector<int> v;
  size_t pos = 0;
  while (pos <= s.size()) {
    const size_t comma = s.find(',', pos);
    const std::string item = s.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
    try {
      size_t used = 0;
      const int x = std::stoi(item, &used);
      if (used != item.size() || x <= 0) throw std::invalid_argument(item);
      v.push_back(x);
    } catch (const std::exception&) {
      throw UsageError(fmt::format("--{} {}: expected a comma-separated list of positive integers", what, s));
    }
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return v;
}

}  // namespace

int cmd_bench(int argc, char** argv) {
  cxxopts::Options opts("qforge bench", "Benchmarks: qforge bench kernels|infer [options]");
  opts.add_options()
      ("what", "kernels | infer", cxxopts::value<std::string>())
      ("threads", "thread counts, comma-separated", cxxopts::value<std::string>()->default_value("1,2"))
      ("isa", "kernels: restrict to these ISAs (avx512vnni,avx2,baseline)", cxxopts::value<std::string>())
      ("model", "infer: zoo model", cxxopts::value<std::string>()->default_value("mnist-cnn"))
      ("batches", "infer: batch sizes, comma-separated", cxxopts::value<std::string>()->default_value("64,1"))
      ("quick", "fewer, shorter samples")
      ("json", "print one JSON result object as the last line of stdout");
  opts.parse_positional({"what"});
  opts.positional_help("kernels|infer");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  const std::string what = required(r, "what");
  const std::vector<int> threads = int_list(r["threads"].as<std::string>(), "threads");
  const bool quick = r.count("quick") > 0;
  if (what == "kernels") {
    bench::KernelBenchOptions o;
    o.threads = threads;
    if (r.count("isa")) {
      std::string s = r["isa"].as<std::string>();
      size_t pos = 0;
      while (pos <= s.size()) {
        const size_t c = s.find(',', pos);
        o.isas.push_back(s.substr(pos, c == std::string::npos ? std::string::npos : c - pos));
        if (c == std::string::npos) break;
        pos = c + 1;
      }
    }
    if (quick) {
      o.samples = 3;
      o.min_sample_ms = 5;
    }
    const auto report = bench::run_kernel_bench(o);
    if (r.count("json")) {
      std::cerr << bench::format_report(report);
      emit_json(bench::report_to_json(report));
    } else {
      std::cout << bench::format_report(report);
    }
    return 0;
  }
  if (what == "infer") {
    quant::runtime::InferBenchOptions o;
    o.model = r["model"].as<std::string>();
    o.batches = int_list(r["batches"].as<std::string>(), "batches");
    o.threads = threads;
    if (quick) {
      o.min_seconds = 0.1;
      o.samples = 3;
    }
    const nlohmann::json rows = quant::runtime::bench_infer(o);
    if (r.count("json")) {
      emit_json({{"rows", rows}});
      return 0;
    }
    std::cout << fmt::format("{:<10} {:>5} {:>7} {:>11} {:>11} {:>13} {:>13} {:>8}\n", "model", "batch", "threads",
                             "fp32 ms", "int8 ms", "fp32 samp/s", "int8 samp/s", "speedup");
    for (const auto& row : rows)
      std::cout << fmt::format("{:<10} {:>5} {:>7} {:>11.3f} {:>11.3f} {:>13.0f} {:>13.0f} {:>7.2f}x\n",
                               row.value("model", ""), row.value("batch", 0), row.value("threads", 0),
                               row.value("fp32_ms", 0.0), row.value("int8_ms", 0.0),
                               row.value("fp32_samples_per_s", 0.0), row.value("int8_samples_per_s", 0.0),
                               row.value("speedup", 0.0));
    // Which registered kernels the int8 layers ran (per batch size; the same for every thread count).
    std::vector<int> shown;
    for (const auto& row : rows) {
      const int batch = row.value("batch", 0);
      if (std::find(shown.begin(), shown.end(), batch) != shown.end() || !row.contains("int8_kernels")) continue;
      shown.push_back(batch);
      std::cout << fmt::format("int8 kernels at batch {} ({}):\n", batch, row.value("isa", ""));
      for (const auto& k : row["int8_kernels"]) std::cout << "  " << k.get<std::string>() << "\n";
    }
    return 0;
  }
  throw UsageError(fmt::format("qforge bench {}: expected kernels or infer", what));
}

}  // namespace qforge::apps
