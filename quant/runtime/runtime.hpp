// The integer runtime: executes a Program (program.hpp) on the int8 kernels of engine/kernels/.
//
// Construction packs every layer once for the active ISA (PackedGemm / PackedConv2d, tap-major depthwise
// weights, recurrent GEMMs). run() quantizes a float input with the input encoding (the quantize kernel),
// runs every op on int8 buffers — images NHWC, everything else row-major — and dequantizes the output codes
// at the very end; nothing in between is float. Results do not depend on the ISA or the thread count
// (the kernels are bit-exact with their scalar references).
//
// A Runtime is not thread-safe (it reuses its activation buffers); use one per thread.
#pragma once

#include "engine/kernels/kernels.hpp"
#include "engine/tensor.hpp"
#include "quant/runtime/program.hpp"

#include <memory>
#include <string>
#include <vector>

namespace qforge::quant::runtime {

class Runtime16;  // 16-bit activation programs (runtime16.hpp)

struct RuntimeOptions {
  int threads = 0;  // OpenMP threads per kernel call; 0 = omp_get_max_threads()
};

class Runtime {
public:
  explicit Runtime(Program program, RuntimeOptions opt = {});
  ~Runtime();
  Runtime(Runtime&&) noexcept;
  Runtime& operator=(Runtime&&) noexcept;

  const Program& program() const { return program_; }

  // Float input [N, ...] (PyTorch layout, the model's input) -> dequantized output [N, ...] (logits).
  Tensor run(const Tensor& x);
  // Output codes (i8, [N, ...] in PyTorch layout; i16 for 16-bit programs, program16.hpp) for a float input.
  Tensor run_codes(const Tensor& x);
  // Input codes (i8, [N, ...], PyTorch layout) -> output codes.
  Tensor run_from_codes(const Tensor& codes);
  // Every value's codes after a run on x (i8, [N, shape...] in PyTorch layout), indexed like program().values.
  std::vector<Tensor> run_all(const Tensor& x);

  // Seconds spent in each op (indexed like program().ops) summed over all runs so far.
  const std::vector<double>& op_seconds() const { return op_seconds_; }
  // The registered kernels each op runs on the active ISA for `batch` samples (indexed like program().ops),
  // e.g. "qs8_conv2d__avx2 > qs8_qc8w_gemm_6x16c2_requant__avx2"; "" for ops with no kernel of their own.
  std::vector<std::string> op_kernels(std::int64_t batch = 1) const;

private:
  struct Prepared;
  void quantize_input(const Tensor& x);
  void load_input_codes(const Tensor& codes);
  void execute();
  Tensor value_codes(int v) const;  // PyTorch layout
  void ensure_buffers(std::int64_t batch);

  Program program_;
  RuntimeOptions opt_;
  int threads_ = 1;
  std::vector<std::unique_ptr<Prepared>> prepared_;
  std::vector<std::vector<std::int8_t>> buf_;
  std::vector<std::uint8_t> workspace_;
  std::int64_t batch_ = 0;
  std::vector<double> op_seconds_;
  std::unique_ptr<Runtime16> r16_;  // set when the program's activations are 16-bit: every call delegates
};

}  // namespace qforge::quant::runtime
