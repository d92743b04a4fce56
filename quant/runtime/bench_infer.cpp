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

// Note [alternating samples]: the FP32 and int8 engines are timed in alternating samples (f, g, f, g, ...),
// each sample the mean of `reps` calls and at least min_s/samples long, so that a change in the machine's
// load (2 cores shared with other processes) affects both alike. Returns the median ms per call of each.
template <class F, class G> std::pair<double, double> time_pair_ms(F&& f, G&& g, int samples, double min_s) {
  f();  // warm-up (allocations, packing caches)
  g();
  auto reps_for = [&](auto&& h) {
    const double t0 = now_s();
    h();
    const double one = std::max(now_s() - t0, 1e-7);
    return std::max(1, static_cast<int>(min_s / samples / one));
  };
  const int rf = reps_for(f), rg = reps_for(g);
  std::vector<double> fm, gm;
  for (int s = 0; s < samples; ++s) {
    double a = now_s();
    for (int r = 0; r < rf; ++r) f();
    fm.push_back((now_s() - a) * 1e3 / rf);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // let the other engine's idle workers sleep
    a = now_s();
    for (int r = 0; r < rg; ++r) g();
    gm.push_back((now_s() - a) * 1e3 / rg);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  std::sort(fm.begin(), fm.end());
  std::sort(gm.begin(), gm.end());
  return {fm[fm.size() / 2], gm[gm.size() / 2]};
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
      const auto [f_ms, i_ms] = time_pair_ms([&] { (*fp32)({x}); }, [&] { rt.run(x); }, opt.samples, opt.min_seconds);
      omp_set_num_threads(max_threads);
      nlohmann::json kernels = nlohmann::json::array();
      for (const std::string& k : rt.op_kernels(batch))
        if (!k.empty()) kernels.push_back(k);
      rows.push_back({{"model", opt.model},
                      {"batch", batch},
                      {"threads", t},
                      {"isa", kernels::isa_name(kernels::active_isa())},
                      {"fp32_ms", f_ms},
                      {"int8_ms", i_ms},
                      {"fp32_samples_per_s", batch * 1e3 / f_ms},
                      {"int8_samples_per_s", batch * 1e3 / i_ms},
                      {"speedup", f_ms / i_ms},
                      {"int8_kernels", kernels}});
    }
  }
  return rows;
}

}  // namespace qforge::quant::runtime
