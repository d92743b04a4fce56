// qforge_bench_zoo: forward+backward time per training step of every zoo model.
//
// One step = forward of a batch, cross-entropy loss, backward (no optimizer update), in training mode
// (BatchNorm on batch statistics). Each row runs `warmup` untimed steps, then `repeats` timed ones, and
// reports the median step time in milliseconds and the throughput. char-lstm uses vocab 65 and sequences
// of 32 characters; the others take [batch, 1, 28, 28] images.
//
//   qforge_bench_zoo [--batch 64] [--threads N] [--repeats R] [--warmup W] [--filter substring] [--json]
#include "benchmarks/bench_args.hpp"
#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/zoo.hpp"

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <iostream>

namespace {

using namespace qforge;

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options options("qforge_bench_zoo", "forward+backward time per step of the zoo models");
  options.add_options()("batch", "batch size", cxxopts::value<int64_t>()->default_value("64"))(
      "threads", "OpenMP threads (0 = default)", cxxopts::value<int>()->default_value("0"))(
      "repeats", "timed steps", cxxopts::value<int>()->default_value("20"))(
      "warmup", "untimed steps", cxxopts::value<int>()->default_value("3"))(
      "filter", "only models containing this", cxxopts::value<std::string>()->default_value(""))(
      "json", "print JSON");
  cxxopts::ParseResult args;
  if (const int rc = qforge::bench::parse_bench_args(options, argc, argv, args); rc >= 0) return rc;
  const int64_t batch = args["batch"].as<int64_t>();
  if (args["threads"].as<int>() > 0) omp_set_num_threads(args["threads"].as<int>());
  const int repeats = std::max(1, args["repeats"].as<int>()), warmup = args["warmup"].as<int>();
  const std::string filter = args["filter"].as<std::string>();
  const int64_t vocab = 65;

  nlohmann::json rows = nlohmann::json::array();
  if (!args.count("json"))
    fmt::print("{:<12} {:>10} {:>7} {:>12} {:>14}\n", "model", "params", "batch", "step ms", "samples/s");
  for (const auto& name : nn::zoo_names()) {
    if (!filter.empty() && name.find(filter) == std::string::npos) continue;
    nn::ZooOptions zo;
    zo.vocab = vocab;
    auto model = nn::build_zoo_model(name, zo, {1});
    model->train();
    Generator gen(2);
    const Shape xs = nn::zoo_input_shape(name, batch);
    Tensor x, target;
    if (name == "char-lstm") {
      std::vector<int32_t> idx(shape_numel(xs)), tgt(shape_numel(xs));
      for (auto& v : idx) v = static_cast<int32_t>(gen.below(vocab));
      for (auto& v : tgt) v = static_cast<int32_t>(gen.below(vocab));
      x = Tensor::from_vector(idx, xs);
      target = Tensor::from_vector(tgt, {xs[0] * xs[1]});
    } else {
      x = Tensor::rand(xs, gen);
      std::vector<int32_t> tgt(batch);
      for (auto& v : tgt) v = static_cast<int32_t>(gen.below(10));
      target = Tensor::from_vector(tgt, {batch});
    }
    auto step = [&] {
      Tensor logits = (*model)(x);
      if (logits.dim() == 3) logits = logits.reshape({-1, logits.size(-1)});
      Tensor loss = ops::cross_entropy(logits, target);
      loss.backward();
      model->zero_grad();
    };
    for (int i = 0; i < warmup; ++i) step();
    std::vector<double> times;
    for (int i = 0; i < repeats; ++i) {
      const double t0 = now_ms();
      step();
      times.push_back(now_ms() - t0);
    }
    const double ms = median(times);
    const double sps = batch / (ms / 1000.0);
    rows.push_back({{"model", name}, {"params", model->num_parameters()}, {"batch", batch}, {"step_ms", ms},
                    {"samples_per_s", sps}, {"threads", omp_get_max_threads()}});
    if (!args.count("json"))
      fmt::print("{:<12} {:>10} {:>7} {:>12.3f} {:>14.0f}\n", name, model->num_parameters(), batch, ms, sps);
  }
  if (args.count("json")) std::cout << rows.dump(2) << "\n";
  return 0;
}
