// Inference benchmark (`qforge bench infer`): the int8 runtime against qforge's own FP32 inference.
//
// For a zoo model (default mnist-cnn): the FP32 model (eval mode, no grad, BatchNorm unfolded — what
// `qforge eval --mode fp32` runs) and the int8 program lowered from a W8A8 QuantSim of the same
// architecture (default config, calibrated on random inputs: timing does not depend on the weights), at each
// batch size and thread count. Each row is measured in the same process, alternating FP32 and int8
// samples (Note [alternating samples] in bench_infer.cpp); the figure is the median of the per-call times
// (each sample at least min_seconds/samples long).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::quant::runtime {

struct InferBenchOptions {
  std::string model = "mnist-cnn";
  std::vector<int> batches{64, 1};
  std::vector<int> threads{1, 2};  // thread counts (capped at omp_get_max_threads())
  double min_seconds = 0.5;        // per configuration and engine
  int samples = 5;
  std::uint64_t seed = 0;
};

// Rows: {"model", "batch", "threads", "isa", "fp32_ms", "int8_ms", "fp32_samples_per_s",
//        "int8_samples_per_s", "speedup", "int8_kernels"} (ms per call: batch-1 rows are latencies;
//        int8_kernels: the registered kernels the int8 layers ran, Runtime::op_kernels).
nlohmann::json bench_infer(const InferBenchOptions& opt = {});

}  // namespace qforge::quant::runtime
