// qforge_bench_ops: times forward and forward+backward of the dense ops at fixed shapes.
//
// Each row runs `warmup` untimed iterations, then `repeats` timed ones, and reports the median in
// milliseconds (forward alone, and forward + backward from a fixed output gradient). benchmarks/
// compare_torch_ops.py runs the same rows in PyTorch in the same process tree and prints the ratios.
//
//   qforge_bench_ops [--threads N] [--repeats R] [--warmup W] [--filter substring] [--json]
#include "benchmarks/bench_args.hpp"
#include "engine/ops/ops.hpp"
#include "engine/random.hpp"

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <iostream>
#include <string>
#include <vector>

namespace {

using qforge::Generator;
using qforge::Shape;
using qforge::Tensor;
namespace ops = qforge::ops;

struct Case {
  std::string name;
  std::string shape;
  std::vector<Tensor> leaves;                                     // inputs that receive gradients
  std::function<Tensor(const std::vector<Tensor>&)> run;          // forward
};

struct Row {
  std::string name, shape;
  double fwd_ms = 0, fwd_bwd_ms = 0;
};

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

Tensor leaf(const Shape& s, Generator& gen) {
  Tensor t = Tensor::randn(s, gen);
  t.set_requires_grad(true);
  return t;
}

std::vector<Case> make_cases() {
  Generator gen(7);
  std::vector<Case> cases;
  cases.push_back({"linear", "64x784 -> 256", {leaf({64, 784}, gen), leaf({256, 784}, gen), leaf({256}, gen)},
                   [](const std::vector<Tensor>& v) { return ops::linear(v[0], v[1], v[2]); }});
  cases.push_back({"conv2d", "64x16x28x28, 16->32 3x3 p1",
                   {leaf({64, 16, 28, 28}, gen), leaf({32, 16, 3, 3}, gen), leaf({32}, gen)},
                   [](const std::vector<Tensor>& v) {
                     ops::Conv2dParams p;
                     p.padding = {1, 1};
                     return ops::conv2d(v[0], v[1], v[2], p);
                   }});
  cases.push_back({"conv2d_dw", "64x32x28x28, dw 3x3 p1",
                   {leaf({64, 32, 28, 28}, gen), leaf({32, 1, 3, 3}, gen), leaf({32}, gen)},
                   [](const std::vector<Tensor>& v) {
                     ops::Conv2dParams p;
                     p.padding = {1, 1};
                     p.groups = 32;
                     return ops::conv2d(v[0], v[1], v[2], p);
                   }});
  cases.push_back({"matmul", "256x256x256", {leaf({256, 256}, gen), leaf({256, 256}, gen)},
                   [](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); }});
  cases.push_back({"matmul", "1024x1024x1024", {leaf({1024, 1024}, gen), leaf({1024, 1024}, gen)},
                   [](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); }});
  return cases;
}

Row measure(Case& c, int warmup, int repeats) {
  Row row{c.name, c.shape};
  Tensor gout;
  {
    qforge::NoGradGuard ng;
    gout = Tensor::ones(c.run(c.leaves).shape());
  }
  std::vector<double> fwd, both;
  for (int it = 0; it < warmup + repeats; ++it) {
    for (auto& l : c.leaves) l.zero_grad();
    double t0 = now_ms();
    {
      qforge::NoGradGuard ng;
      Tensor y = c.run(c.leaves);
    }
    double t1 = now_ms();
    Tensor y = c.run(c.leaves);
    y.backward(gout);
    double t2 = now_ms();
    if (it >= warmup) {
      fwd.push_back(t1 - t0);
      both.push_back(t2 - t1);
    }
  }
  row.fwd_ms = median(fwd);
  row.fwd_bwd_ms = median(both);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("qforge_bench_ops", "Time forward and forward+backward of dense ops");
  options.add_options()("threads", "OpenMP and OpenBLAS threads (0: as the environment says)", cxxopts::value<int>()->default_value("0"))(
      "repeats", "timed iterations per row", cxxopts::value<int>()->default_value("15"))(
      "warmup", "untimed iterations per row", cxxopts::value<int>()->default_value("3"))(
      "filter", "only rows whose name contains this", cxxopts::value<std::string>()->default_value(""))(
      "json", "print JSON instead of a table");
  cxxopts::ParseResult args;
  if (const int rc = qforge::bench::parse_bench_args(options, argc, argv, args); rc >= 0) return rc;
  const int threads = args["threads"].as<int>();
  if (threads > 0) omp_set_num_threads(threads);
  const int repeats = std::max(1, args["repeats"].as<int>());
  const int warmup = std::max(0, args["warmup"].as<int>());
  const std::string filter = args["filter"].as<std::string>();

  std::vector<Row> rows;
  for (auto& c : make_cases()) {
    if (!filter.empty() && c.name.find(filter) == std::string::npos) continue;
    rows.push_back(measure(c, warmup, repeats));
  }
  if (args.count("json")) {
    nlohmann::json j;
    j["threads"] = omp_get_max_threads();
    j["repeats"] = repeats;
    j["rows"] = nlohmann::json::array();
    for (const auto& r : rows)
      j["rows"].push_back({{"name", r.name}, {"shape", r.shape}, {"fwd_ms", r.fwd_ms}, {"fwd_bwd_ms", r.fwd_bwd_ms}});
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  fmt::print("qforge ops, {} threads, median of {} after {} warm-up\n", omp_get_max_threads(), repeats, warmup);
  fmt::print("{:<10} {:<28} {:>10} {:>12}\n", "op", "shape", "fwd ms", "fwd+bwd ms");
  for (const auto& r : rows) fmt::print("{:<10} {:<28} {:>10.3f} {:>12.3f}\n", r.name, r.shape, r.fwd_ms, r.fwd_bwd_ms);
  return 0;
}
