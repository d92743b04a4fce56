// qforge_bench_kernels: measures this machine's peaks and the int8 kernels (benchmarks/kernels/kernel_bench.hpp).
//
//   qforge_bench_kernels [--threads 1,2] [--isa avx512vnni,avx2] [--shapes 1024x1024x1024,...]
//                        [--gemm-only] [--no-s32] [--samples N] [--quick] [--json]
#include "benchmarks/kernels/kernel_bench.hpp"

#include <cxxopts.hpp>

#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <iostream>
#include <sstream>

namespace {

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Idle OpenMP workers should sleep instead of spinning, so that their CPU clocks count only work (Note
  // [timing on a shared machine] in kernel_bench.cpp). libgomp reads the policy when it is loaded, so
  // re-execute once with it set.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);  // on failure, continue with the default policy
  }
  cxxopts::Options opts("qforge_bench_kernels", "int8 kernel benchmarks against measured peaks and OpenBLAS sgemm");
  opts.add_options()("threads", "comma-separated thread counts", cxxopts::value<std::string>()->default_value("1,2"))(
      "isa", "comma-separated ISAs (default: every supported SIMD ISA)", cxxopts::value<std::string>()->default_value(""))(
      "shapes", "comma-separated MxNxK GEMM shapes", cxxopts::value<std::string>()->default_value(""))(
      "gemm-only", "skip the non-GEMM kernels")("no-s32", "skip the int32-output GEMM rows")(
      "samples", "timed samples per row (median)", cxxopts::value<int>()->default_value("7"))(
      "quick", "fewer, shorter samples")("json", "print JSON instead of a table")("h,help", "help");
  try {
    const auto r = opts.parse(argc, argv);
    if (r.count("help")) {
      std::cout << opts.help() << "\n";
      return 0;
    }
    qforge::bench::KernelBenchOptions o;
    o.threads.clear();
    for (const auto& t : split(r["threads"].as<std::string>(), ',')) o.threads.push_back(std::stoi(t));
    o.isas = split(r["isa"].as<std::string>(), ',');
    if (const auto shapes = split(r["shapes"].as<std::string>(), ','); !shapes.empty()) {
      o.shapes.clear();
      for (const auto& s : shapes) {
        const auto d = split(s, 'x');
        if (d.size() != 3) throw std::invalid_argument("bad shape '" + s + "' (want MxNxK)");
        o.shapes.push_back({std::stoi(d[0]), std::stoi(d[1]), std::stoi(d[2])});
      }
    }
    o.others = !r.count("gemm-only");
    o.s32 = !r.count("no-s32");
    o.samples = r["samples"].as<int>();
    if (r.count("quick")) {
      o.samples = 3;
      o.min_sample_ms = 5;
    }
    const auto report = qforge::bench::run_kernel_bench(o);
    if (r.count("json"))
      std::cout << qforge::bench::report_to_json(report).dump(2) << "\n";
    else
      std::cout << qforge::bench::format_report(report);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qforge_bench_kernels: %s\n", e.what());
    return 2;
  }
  return 0;
}
