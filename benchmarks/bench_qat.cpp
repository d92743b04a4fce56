// QAT step cost: one training step (forward, cross-entropy, backward, SGD update) of a zoo model at
// batch 64, FP32 vs the same model wrapped in a W8A8 QuantSim (default config, BN folded), with static
// ranges, with LSQ range learning and with AIMET range learning (learnable min/max). Rows interleave the
// FP32 and QAT samples in one process; the figure is the median step time. Benchmarks measure; nothing
// here asserts a target. benchmarks/compare_torch_qat.py times the same lstm model in PyTorch.
#include "benchmarks/bench_args.hpp"
#include "engine/ops/ops.hpp"
#include "nn/zoo.hpp"
#include "quant/quantsim.hpp"
#include "train/optimizer.hpp"
#include "train/threads.hpp"

#include <cxxopts.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

using namespace qforge;

namespace {

struct Setup {
  std::shared_ptr<nn::Graph> model;
  std::unique_ptr<quant::QuantSim> sim;
  std::unique_ptr<train::Optimizer> opt;
};

Setup make(const std::string& name, const Tensor& x, const std::string& mode) {
  Setup s;
  s.model = nn::build_zoo_model(name, {}, {.seed = 1});
  if (mode != "fp32") {
    quant::QuantSimOptions qo;
    s.sim = std::make_unique<quant::QuantSim>(s.model, std::vector<Tensor>{x}, qo);
    s.sim->compute_encodings([&](nn::Module& m) { m(x); });
    if (mode == "lsq") s.sim->set_range_learning(quant::RangeLearning::lsq);
    if (mode == "aimet") s.sim->set_range_learning(quant::RangeLearning::aimet);
  }
  train::NamedTensors params;
  for (auto& [n, t] : s.model->named_parameters()) params.push_back({n, t});
  if (s.sim)
    for (size_t i = 0; i < s.sim->range_parameters().size(); ++i)
      params.push_back({"range." + std::to_string(i), s.sim->range_parameters()[i]});
  s.opt = train::make_optimizer(train::single_group(params), {.type = "sgd", .lr = 1e-3, .momentum = 0.9});
  s.model->train();
  return s;
}

double step_ms(Setup& s, const Tensor& x, const Tensor& y) {
  const auto t0 = std::chrono::steady_clock::now();
  s.opt->zero_grad();
  Tensor loss = ops::cross_entropy(std::vector<Tensor>((*s.model)(std::vector<Tensor>{x}))[0], y);
  loss.backward();
  s.opt->step();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  cxxopts::Options opts("qforge_bench_qat", "QAT step cost vs FP32 step (batch 64)");
  opts.add_options()("models", "zoo models", cxxopts::value<std::vector<std::string>>()->default_value("mnist-cnn,lstm"))
      ("threads", "threads", cxxopts::value<int>()->default_value("1"))
      ("repeats", "timed steps per engine", cxxopts::value<int>()->default_value("15"))
      ("json", "JSON rows")
      ("only", "time one mode alone (fp32, static, lsq or aimet), e.g. under a profiler",
       cxxopts::value<std::string>()->default_value(""));
  cxxopts::ParseResult r;
  if (const int rc = qforge::bench::parse_bench_args(opts, argc, argv, r); rc >= 0) return rc;
  train::set_num_threads(r["threads"].as<int>());
  nlohmann::json rows = nlohmann::json::array();
  Generator gen(5);
  for (const auto& name : r["models"].as<std::vector<std::string>>()) {
    Tensor x = Tensor::randn({64, 1, 28, 28}, gen);
    std::vector<int32_t> labels(64);
    for (int i = 0; i < 64; ++i) labels[i] = i % 10;
    Tensor y = Tensor::from_vector(labels, {64});
    if (const std::string only = r["only"].as<std::string>(); !only.empty()) {
      Setup s = make(name, x, only);
      std::vector<double> t;
      for (int i = 0; i < 3 + r["repeats"].as<int>(); ++i) t.push_back(step_ms(s, x, y));
      std::printf("%-10s threads %d  %s %7.2f ms\n", name.c_str(), r["threads"].as<int>(), only.c_str(),
                  median(std::vector<double>(t.begin() + 3, t.end())));
      continue;
    }
    Setup fp32 = make(name, x, "fp32"), qat = make(name, x, "static"), lsq = make(name, x, "lsq"),
          aimet = make(name, x, "aimet");
    std::vector<double> tf, tq, tl, ta;
    for (int i = 0; i < 3; ++i) {  // warm-up
      step_ms(fp32, x, y);
      step_ms(qat, x, y);
      step_ms(lsq, x, y);
      step_ms(aimet, x, y);
    }
    for (int i = 0; i < r["repeats"].as<int>(); ++i) {
      tf.push_back(step_ms(fp32, x, y));
      tq.push_back(step_ms(qat, x, y));
      tl.push_back(step_ms(lsq, x, y));
      ta.push_back(step_ms(aimet, x, y));
    }
    const double f = median(tf), q = median(tq), l = median(tl), a = median(ta);
    rows.push_back({{"model", name}, {"threads", r["threads"].as<int>()}, {"fp32_step_ms", f}, {"qat_step_ms", q},
                    {"qat_lsq_step_ms", l}, {"qat_aimet_step_ms", a}, {"qat_ratio", q / f},
                    {"qat_lsq_ratio", l / f}, {"qat_aimet_ratio", a / f}});
    if (!r.count("json"))
      std::printf("%-10s threads %d  fp32 %7.2f ms  qat W8A8 %7.2f ms (%.2fx)  lsq %7.2f ms (%.2fx)  "
                  "aimet %7.2f ms (%.2fx)\n",
                  name.c_str(), r["threads"].as<int>(), f, q, q / f, l, l / f, a, a / f);
  }
  if (r.count("json")) std::cout << rows.dump() << std::endl;
  return 0;
}
