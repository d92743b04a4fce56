// The shared gradient checker (DESIGN.md §6): central differences in double.
//
// gradcheck(f, inputs) converts every floating input to f64, evaluates f, and compares the analytic
// gradient of sum(f(x) * w) (w a fixed random weighting, so every output element matters) with
// (L(x + eps e_i) - L(x - eps e_i)) / 2eps for every element i of every input that requires grad.
// Returns an empty string on success, else a description of the first mismatch (for CHECK messages).
#pragma once

#include "engine/ops/ops.hpp"
#include "engine/tensor.hpp"

#include <functional>
#include <string>
#include <vector>

namespace qforge::testing {

struct GradcheckOptions {
  double eps = 1e-6;
  double atol = 1e-5;
  double rtol = 1e-3;
  uint64_t seed = 1234;
};

// `inputs`: tensors of any floating dtype; those with requires_grad are checked. f receives f64 copies.
std::string gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f, const std::vector<Tensor>& inputs,
                      const GradcheckOptions& opt = {});

// Convenience: a random f64 tensor requiring grad.
Tensor rand_input(const Shape& shape, uint64_t seed, double lo = -1, double hi = 1, bool requires_grad = true);

// max |a - b| over all elements (shapes must match), as double.
double max_abs_diff(const Tensor& a, const Tensor& b);

}  // namespace qforge::testing

// CHECK_GRADCHECK(f, inputs[, opts]) fails the test with the mismatch description.
#define CHECK_GRADCHECK(...)                                  \
  do {                                                        \
    const std::string gc_msg_ = ::qforge::testing::gradcheck(__VA_ARGS__); \
    CHECK_MESSAGE(gc_msg_.empty(), gc_msg_);                  \
  } while (0)
