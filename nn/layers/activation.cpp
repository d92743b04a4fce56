// Softmax, LogSoftmax, ReduceMean, HardSigmoid, Hardtanh (Note [ONNX layers]).
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

namespace qforge::nn {

namespace {
int64_t checked_dim(const std::string& layer, int64_t dim, const Tensor& x) {
  const int64_t rank = x.dim();
  QFORGE_CHECK(dim >= -rank && dim < rank, "{}: dimension {} out of range for an input of shape {}", layer, dim,
               shape_str(x.shape()));
  return dim < 0 ? dim + rank : dim;
}
}  // namespace

// ---- Softmax / LogSoftmax -------------------------------------------------------------------------

Tensor Softmax::forward_tensor(const Tensor& x) { return ops::softmax(x, checked_dim(type_name(), dim_, x)); }
std::string Softmax::extra_repr() const { return fmt::format("dim={}", dim_); }
nlohmann::json Softmax::spec_args() const { return {{"dim", dim_}}; }

Tensor LogSoftmax::forward_tensor(const Tensor& x) { return ops::log_softmax(x, checked_dim(type_name(), dim_, x)); }
std::string LogSoftmax::extra_repr() const { return fmt::format("dim={}", dim_); }
nlohmann::json LogSoftmax::spec_args() const { return {{"dim", dim_}}; }

// ---- ReduceMean -----------------------------------------------------------------------------------

ReduceMean::ReduceMean(std::vector<int64_t> dims, bool keepdim)
    : Module("ReduceMean"), dims_(std::move(dims)), keepdim_(keepdim) {}

Tensor ReduceMean::forward_tensor(const Tensor& x) {
  std::vector<int64_t> dims;
  for (int64_t d : dims_) {
    const int64_t n = checked_dim(type_name(), d, x);
    QFORGE_CHECK(std::find(dims.begin(), dims.end(), n) == dims.end(), "ReduceMean: dimension {} repeated in dims [{}]",
                 d, fmt::join(dims_, ", "));
    dims.push_back(n);
  }
  return ops::mean(x, dims, keepdim_);
}

std::string ReduceMean::extra_repr() const {
  return fmt::format("dims=[{}], keepdim={}", fmt::join(dims_, ", "), keepdim_ ? "True" : "False");
}
nlohmann::json ReduceMean::spec_args() const { return {{"dims", dims_}, {"keepdim", keepdim_}}; }

// ---- HardSigmoid / Hardtanh -----------------------------------------------------------------------

HardSigmoid::HardSigmoid(double alpha, double beta) : Module("HardSigmoid"), alpha_(alpha), beta_(beta) {}

Tensor HardSigmoid::forward_tensor(const Tensor& x) {
  return ops::clamp(ops::add(ops::mul(x, alpha_), beta_), 0.0, 1.0);
}

std::string HardSigmoid::extra_repr() const { return fmt::format("alpha={}, beta={}", alpha_, beta_); }
nlohmann::json HardSigmoid::spec_args() const { return {{"alpha", alpha_}, {"beta", beta_}}; }

Hardtanh::Hardtanh(double min_val, double max_val) : Module("Hardtanh"), min_(min_val), max_(max_val) {
  QFORGE_CHECK(min_ <= max_, "Hardtanh: min_val {} is above max_val {}", min_, max_);
}

Tensor Hardtanh::forward_tensor(const Tensor& x) { return ops::clamp(x, min_, max_); }

std::string Hardtanh::extra_repr() const { return fmt::format("min_val={}, max_val={}", min_, max_); }
nlohmann::json Hardtanh::spec_args() const { return {{"min_val", min_}, {"max_val", max_}}; }

}  // namespace qforge::nn
