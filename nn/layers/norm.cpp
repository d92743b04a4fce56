// BatchNorm1d/2d and Dropout.
#include "engine/autograd.hpp"
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

namespace qforge::nn {

BatchNorm::BatchNorm(int dims, int64_t num_features, double eps, std::optional<double> momentum, bool affine)
    : Module(dims == 1 ? "BatchNorm1d" : "BatchNorm2d"),
      dims_(dims),
      c_(num_features),
      eps_(eps),
      momentum_(momentum),
      affine_(affine) {
  QFORGE_CHECK(dims == 1 || dims == 2, "BatchNorm: dims must be 1 or 2, got {}", dims);
  QFORGE_CHECK(num_features > 0, "{}: num_features must be positive, got {}", type_name(), num_features);
  QFORGE_CHECK(eps > 0, "{}: eps must be positive, got {}", type_name(), eps);
  QFORGE_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1), "{}: momentum must be in [0, 1], got {}",
               type_name(), momentum.value_or(0));
  if (affine) {
    register_parameter("weight", Tensor::ones({c_}));
    register_parameter("bias", Tensor::zeros({c_}));
  }
  register_buffer("running_mean", Tensor::zeros({c_}));
  register_buffer("running_var", Tensor::ones({c_}));
  register_buffer("num_batches_tracked", Tensor::zeros({}, DType::i32));
}

Tensor BatchNorm::forward_tensor(const Tensor& x) {
  const bool ok = dims_ == 1 ? (x.dim() == 2 || x.dim() == 3) : x.dim() == 4;
  QFORGE_CHECK(ok && x.size(1) == c_, "{}({}): expected input {}, got {}", type_name(), c_,
               dims_ == 1 ? fmt::format("[N, {}] or [N, {}, L]", c_, c_) : fmt::format("[N, {}, H, W]", c_),
               shape_str(x.shape()));
  double factor = momentum_.value_or(0.0);
  if (is_training()) {
    Tensor& nbt = buffer("num_batches_tracked");
    const double n = nbt.item() + 1;
    nbt.set({}, n);
    if (!momentum_) factor = 1.0 / n;
  }
  Tensor& rm = buffer("running_mean");
  Tensor& rv = buffer("running_var");
  // Running stats follow the input's dtype (e.g. after to(f64)); converting keeps them shared.
  return ops::batch_norm(x, rm, rv, maybe_param("weight"), maybe_param("bias"), is_training(), factor, eps_);
}

std::string BatchNorm::extra_repr() const {
  return fmt::format("{}, eps={}, momentum={}, affine={}, track_running_stats=True", c_, eps_,
                     momentum_ ? fmt::format("{}", *momentum_) : "None", affine_ ? "True" : "False");
}

nlohmann::json BatchNorm::spec_args() const {
  nlohmann::json j = {{"num_features", c_}, {"eps", eps_}, {"affine", affine_}};
  j["momentum"] = momentum_ ? nlohmann::json(*momentum_) : nlohmann::json(nullptr);
  return j;
}

// ---- Dropout --------------------------------------------------------------------------------------

Dropout::Dropout(double p, uint64_t seed) : Module("Dropout"), p_(p), gen_(seed) {
  QFORGE_CHECK(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got {}", p);
}

Tensor Dropout::forward_tensor(const Tensor& x) { return ops::dropout(x, p_, is_training(), gen_); }

std::string Dropout::extra_repr() const { return fmt::format("p={}, inplace=False", p_); }

nlohmann::json Dropout::spec_args() const { return {{"p", p_}}; }

}  // namespace qforge::nn
