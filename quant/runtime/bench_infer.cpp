// Inference benchmark. See bench_infer.hpp.
#include "quant/runtime/bench_infer.hpp"

#include "engine/autograd.hpp"
#include "engine/kernels/kernels.hpp"
#include "nn/zoo.hpp"
#include "quant/quantsim.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <thread>

namespace qforge::quant::runtime {

namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median over `samples` of the mean time per call (ms), each sample running >= min_s.
template <class F> double time_ms(F&& f, int samples, double min_s) {
  f();  // warm-up (allocations, packing caches)
  const double t0 = now_s();
  f();
  const double one = std::max(now_s() - t0, 1e-7);
  const int reps = std::max(1, static_cast<int>(min_s / samples / one));
  std::vector<double> ms;
  for (int s = 0; s < samples; ++s) {
    const double a = now_s();
    for (int r = 0; r < reps; ++r) f();
    ms.push_back((now_s() - a) * 1e3 / reps);
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

nlohmann::json bench_infer(const InferBenchOptions& opt) {
  nn::BuildOptions bo;
  bo.seed = opt.seed;
  auto fp32 = nn::build_zoo_model(opt.model, {}, bo);
  fp32->eval();
  auto qmodel = nn::build_zoo_model(opt.model, {}, bo);
  Generator gen(opt.seed + 1);
  const Tensor calib = Tensor::rand(nn::zoo_input_shape(opt.model, 32), gen);
  QuantSim sim(qmodel, {calib});
  sim.compute_encodings([&](nn::Module& m) { m({calib}); });
  const Program prog = lower(sim);

  const int max_threads = omp_get_max_threads();
  nlohmann::json rows = nlohmann::json::array();
  for (int threads : opt.threads) {
    const int t = std::min(threads, max_threads);
    Runtime rt(prog, {t});
    for (int batch : opt.batches) {
      const Tensor x = Tensor::rand(nn::zoo_input_shape(opt.model, batch), gen);
      omp_set_num_threads(t);
      NoGradGuard ng;
      const double f_ms = time_ms([&] { (*fp32)({x}); }, opt.samples, opt.min_seconds);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      const double i_ms = time_ms([&] { rt.run(x); }, opt.samples, opt.min_seconds);
      omp_set_num_threads(max_threads);
      rows.push_back({{"model", opt.model},
                      {"batch", batch},
                      {"threads", t},
                      {"isa", kernels::isa_name(kernels::active_isa())},
                      {"fp32_ms", f_ms},
                      {"int8_ms", i_ms},
                      {"fp32_samples_per_s", batch * 1e3 / f_ms},
                      {"int8_samples_per_s", batch * 1e3 / i_ms},
                      {"speedup", f_ms / i_ms}});
    }
  }
  return rows;
}

}  // namespace qforge::quant::runtime
