// Kernel benchmark harness behind `qforge bench kernels` and qforge_bench_kernels.
//
// One run measures, on this machine and in this process:
//   1. peaks: fp32 FMA and int8 dot-product throughput from tight register-only loops (independent
//      accumulator chains; vfmadd231ps / vpdpbusd zmm on AVX-512 VNNI; on every AVX2 machine also ymm FMA,
//      the exact int16 path vpmaddwd+vpaddd and the saturating vpmaddubsw+vpmaddwd+vpaddd path), for each
//      thread count;
//   2. GEMM rows for the shapes (M, N, K) of the issue: each int8 GEMM variant (requantizing and s32, on
//      every supported SIMD ISA) as GOP/s and % of the peak of the instruction path it uses (vpdpbusd
//      for avx512vnni, vpmaddwd for avx2; none for baseline) at the same thread count, next
//      to OpenBLAS cblas_sgemm on the same shape (GFLOP/s, and the int8/sgemm ratio; for T threads, T
//      single-threaded sgemm calls on column slices in one OpenMP region, like the int8 driver);
//   3. other kernels (conv2d, depthwise, pooling, add, quantize, LSTM step) at representative shapes.
// Timings: `samples` samples of at least `min_sample_ms` each, after a warm-up call; packing and
// allocation are outside the timed region. GOP/s come from the busiest thread's CPU clock, robust to
// other processes on a shared machine (Note [timing on a shared machine] in the .cpp). One multiply-add counts as 2 ops. Benchmarks measure,
// tests assert: nothing here checks a target.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::bench {

struct GemmShape {
  int m = 0, n = 0, k = 0;
};

struct KernelBenchOptions {
  std::vector<int> threads = {1, 2};
  std::vector<GemmShape> shapes = {{256, 256, 256}, {1024, 1024, 1024}, {64, 3136, 576}, {1, 1024, 1024},
                                   {128, 1024, 512}};
  std::vector<std::string> isas;  // empty = every supported SIMD ISA
  bool gemm = true, others = true, sgemm = true, s32 = true;
  int samples = 7;
  double min_sample_ms = 20;
};

struct PeakRow {
  std::string what;  // "f32_fma" | "int8_dot"
  std::string instruction;
  int threads = 1;
  double gops = 0;
};

struct KernelBenchRow {
  std::string kernel;  // registry name, or "openblas_sgemm"
  std::string isa;
  std::string shape;   // "MxNxK" or a description
  int threads = 1;
  double ms = 0;       // median time per call
  double gops = 0;     // GOP/s (GFLOP/s for sgemm); for memory-bound kernels also see gbytes
  double pct_peak = 0; // % of the measured peak of the row's instruction path (f32 peak for sgemm); 0 = n/a
  double vs_sgemm = 0; // gops / sgemm gops on the same shape and threads; 0 when not applicable
  double gbytes = 0;   // GB/s moved (element-wise kernels)
  bool cpu_clock = false;  // GOP/s from thread CPU clocks rather than the wall clock
};

struct KernelBenchReport {
  std::string cpu;
  std::string best_isa;
  double load_average = 0;  // /proc/loadavg (1 min) when the run started
  std::vector<PeakRow> peaks;
  std::vector<KernelBenchRow> rows;
};

KernelBenchReport run_kernel_bench(const KernelBenchOptions& options);
std::string format_report(const KernelBenchReport& report);
nlohmann::json report_to_json(const KernelBenchReport& report);

}  // namespace qforge::bench
