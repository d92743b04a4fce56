// Execution of 16-bit-activation programs (program16.hpp) on the kernels16.hpp kernels: the part of the
// integer runtime (runtime.hpp) that Runtime delegates to when the program's activations are int16. Same
// contract as Runtime: weights packed once at construction, int16 buffers (images NHWC), float only at the
// input quantization and the final dequantization; codes come back as i16 tensors in PyTorch layout.
#pragma once

#include "engine/kernels/kernels16.hpp"
#include "engine/tensor.hpp"
#include "quant/runtime/program.hpp"

#include <memory>
#include <string>
#include <vector>

namespace qforge::quant::runtime {

class Runtime16 {
public:
  Runtime16(Program program, int threads);  // throws Error naming the op it cannot run
  ~Runtime16();

  void quantize_input(const Tensor& x);
  void load_input_codes(const Tensor& codes);
  void execute(std::vector<double>& op_seconds);
  Tensor value_codes(int v) const;  // i16, PyTorch layout
  Tensor dequantized_output() const;
  std::vector<std::string> op_kernels() const;

private:
  struct Prepared;
  void ensure_buffers(std::int64_t batch);
  Program p_;  // a copy: Runtime is movable
  int threads_ = 1;
  std::vector<std::unique_ptr<Prepared>> prepared_;
  std::vector<std::vector<std::int16_t>> buf_;
  std::vector<std::uint8_t> workspace_;
  std::int64_t batch_ = 0;
};

}  // namespace qforge::quant::runtime
