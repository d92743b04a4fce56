#include "train/optimizer.hpp"

#include "engine/autograd.hpp"
#include "engine/json_util.hpp"

#include <cmath>

namespace qforge::train {

namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements; below this a parallel region costs more than it saves

std::string param_label(const ParamGroup& g, size_t i) {
  return i < g.param_names.size() ? g.param_names[i] : fmt::format("{}[{}]", g.name, i);
}

}  // namespace

std::vector<ParamGroup> split_weight_decay(const NamedTensors& params) {
  ParamGroup decay{"decay", {}, {}, std::nullopt, std::nullopt};
  ParamGroup no_decay{"no_decay", {}, {}, std::nullopt, 0.0};
  for (const auto& [name, t] : params) {
    ParamGroup& g = t.dim() >= 2 ? decay : no_decay;
    g.params.push_back(t);
    g.param_names.push_back(name);
  }
  std::vector<ParamGroup> out;
  if (!decay.params.empty()) out.push_back(std::move(decay));
  if (!no_decay.params.empty()) out.push_back(std::move(no_decay));
  return out;
}

std::vector<ParamGroup> single_group(const NamedTensors& params) {
  ParamGroup g{"default", {}, {}, std::nullopt, std::nullopt};
  for (const auto& [name, t] : params) {
    g.params.push_back(t);
    g.param_names.push_back(name);
  }
  return {g};
}

Optimizer::Optimizer(std::vector<ParamGroup> groups, const OptimizerConfig& config)
    : config_(config), groups_(std::move(groups)) {
  if (!(config_.lr > 0) || !std::isfinite(config_.lr))
    throw InputError(fmt::format("optimizer {}: learning rate must be positive, got {}", config_.type, config_.lr));
  if (config_.weight_decay < 0)
    throw InputError(fmt::format("optimizer {}: weight decay must be >= 0, got {}", config_.type, config_.weight_decay));
  for (const auto& g : groups_) {
    QFORGE_CHECK(g.param_names.empty() || g.param_names.size() == g.params.size(),
                 "optimizer: group {} has {} names for {} parameters", g.name, g.param_names.size(), g.params.size());
    for (size_t i = 0; i < g.params.size(); ++i) {
      const Tensor& p = g.params[i];
      QFORGE_CHECK(p.defined() && is_floating(p.dtype()) && p.is_contiguous(),
                   "optimizer: parameter {} must be a contiguous floating tensor", param_label(g, i));
    }
    base_lr_.push_back(g.lr.value_or(config_.lr));
    wd_.push_back(g.weight_decay.value_or(config_.weight_decay));
    state_.emplace_back(g.params.size());
  }
  lr_ = base_lr_;
}

void Optimizer::zero_grad() {
  for (auto& g : groups_)
    for (auto& p : g.params) p.zero_grad();
}

std::vector<Tensor> Optimizer::all_params() const {
  std::vector<Tensor> out;
  for (const auto& g : groups_) out.insert(out.end(), g.params.begin(), g.params.end());
  return out;
}

void Optimizer::set_lr_factor(double factor) {
  for (size_t g = 0; g < groups_.size(); ++g) lr_[g] = base_lr_[g] * factor;
}

NamedTensors Optimizer::state_tensors() const {
  NamedTensors out;
  const auto names = slot_names();
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < state_[g].size(); ++i)
      for (size_t s = 0; s < state_[g][i].slots.size(); ++s)
        if (state_[g][i].slots[s].defined())
          out.emplace_back(fmt::format("g{}.p{}.{}", g, i, names[s]), state_[g][i].slots[s].clone());
  return out;
}

nlohmann::json Optimizer::state_json() const {
  nlohmann::json j;
  j["type"] = config_.type;
  j["steps"] = steps_;
  j["lr"] = lr_;
  nlohmann::json groups = nlohmann::json::array();
  for (size_t g = 0; g < groups_.size(); ++g) {
    std::vector<int64_t> steps;
    for (const auto& st : state_[g]) steps.push_back(st.step);
    groups.push_back({{"name", groups_[g].name}, {"num_params", groups_[g].params.size()}, {"param_steps", steps}});
  }
  j["groups"] = groups;
  return j;
}

void Optimizer::load_state(const nlohmann::json& j, const std::map<std::string, Tensor>& tensors) {
  try {
    if (j.at("type").get<std::string>() != config_.type)
      throw InputError(fmt::format("optimizer state is for '{}', not '{}'", j.at("type").get<std::string>(),
                                   config_.type));
    const auto& groups = j.at("groups");
    if (groups.size() != groups_.size())
      throw InputError(fmt::format("optimizer state has {} parameter groups, the optimizer {}", groups.size(),
                                   groups_.size()));
    const auto names = slot_names();
    std::vector<std::vector<ParamState>> st(groups_.size());
    for (size_t g = 0; g < groups_.size(); ++g) {
      const auto steps = groups[g].at("param_steps").get<std::vector<int64_t>>();
      if (steps.size() != groups_[g].params.size())
        throw InputError(fmt::format("optimizer state group {} has {} parameters, the optimizer {}", g, steps.size(),
                                     groups_[g].params.size()));
      st[g].resize(steps.size());
      for (size_t i = 0; i < steps.size(); ++i) {
        if (steps[i] < 0) throw InputError(fmt::format("optimizer state group {}: negative step count {}", g, steps[i]));
        st[g][i].step = steps[i];
        st[g][i].slots.resize(names.size());
        for (size_t s = 0; s < names.size(); ++s) {
          auto it = tensors.find(fmt::format("g{}.p{}.{}", g, i, names[s]));
          if (it == tensors.end()) continue;
          const Tensor& p = groups_[g].params[i];
          if (it->second.shape() != p.shape())
            throw InputError(fmt::format("optimizer state {} has shape {}, parameter {} has {}", it->first,
                                         shape_str(it->second.shape()), param_label(groups_[g], i),
                                         shape_str(p.shape())));
          st[g][i].slots[s] = it->second.to(p.dtype()).detach().clone();
        }
      }
    }
    const auto lr = j.at("lr").get<std::vector<double>>();
    if (lr.size() != groups_.size()) throw InputError("optimizer state: lr list does not match the groups");
    for (double v : lr)
      if (!std::isfinite(v) || v < 0) throw InputError(fmt::format("optimizer state: learning rate {} is not valid", v));
    const int64_t steps = JsonView(j, "optimizer state")["steps"].integer(0);  // no float-to-int64 conversion
    state_ = std::move(st);
    lr_ = lr;
    steps_ = steps;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("optimizer state: malformed JSON ({})", e.what()));
  }
}

// ---- SGD -----------------------------------------------------------------------------------------

SGD::SGD(std::vector<ParamGroup> groups, const OptimizerConfig& config) : Optimizer(std::move(groups), config) {
  if (config_.nesterov && (config_.momentum <= 0 || config_.dampening != 0))
    throw InputError("SGD: Nesterov momentum requires a momentum and zero dampening");
  if (config_.momentum < 0) throw InputError(fmt::format("SGD: momentum must be >= 0, got {}", config_.momentum));
}

namespace {

template <class T>
void sgd_kernel(T* __restrict p, const T* __restrict grad, T* __restrict buf, int64_t n, T lr, T wd, T momentum,
                T damp1, bool first, bool nesterov) {
  if (buf == nullptr) {
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
    for (int64_t i = 0; i < n; ++i) {
      const T d = grad[i] + wd * p[i];
      p[i] = p[i] + (-lr) * d;
    }
    return;
  }
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    T d = grad[i] + wd * p[i];
    const T b = first ? d : buf[i] * momentum + damp1 * d;
    buf[i] = b;
    d = nesterov ? d + momentum * b : b;
    p[i] = p[i] + (-lr) * d;
  }
}

template <class T>
void adam_kernel(T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v, T* __restrict vmax,
                 int64_t n, T l2, T decay_mul, T b1, T one_minus_b1, T b2, T one_minus_b2, T step_size, T bc2_sqrt,
                 T eps) {
  // Note: 1 - beta is computed in double and rounded once, as PyTorch passes it as a Python float.
#pragma omp parallel for simd schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const T pv = p[i] * decay_mul;
    const T g = grad[i] + l2 * pv;
    const T mi = m[i] * b1 + one_minus_b1 * g;
    T vi = v[i] * b2 + one_minus_b2 * (g * g);
    m[i] = mi;
    v[i] = vi;
    if (vmax != nullptr) {
      vi = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vi;
    }
    const T denom = std::sqrt(vi) / bc2_sqrt + eps;
    p[i] = pv + (-step_size) * (mi / denom);
  }
}

Tensor contiguous_grad(const Tensor& p) {
  Tensor g = p.grad();
  if (!g.defined()) return g;
  QFORGE_CHECK(g.shape() == p.shape(), "optimizer: gradient shape {} does not match parameter {}",
               shape_str(g.shape()), shape_str(p.shape()));
  if (g.dtype() != p.dtype()) g = g.to(p.dtype());
  return g.contiguous();
}

}  // namespace

void SGD::step() {
  NoGradGuard no_grad;
  const bool use_buf = config_.momentum != 0;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      Tensor p = groups_[gi].params[i];
      const Tensor g = contiguous_grad(p);
      if (!g.defined()) continue;
      ParamState& st = state(gi, i);
      if (st.slots.empty()) st.slots.resize(1);
      const bool first = use_buf && !st.slots[0].defined();
      if (first) st.slots[0] = Tensor::uninitialized(p.shape(), p.dtype());  // set to d on the first step
      visit_dtype(p.dtype(), [&]<class T>() {
        if constexpr (std::is_floating_point_v<T>) {
          sgd_kernel<T>(p.data<T>(), g.data<T>(), use_buf ? st.slots[0].data<T>() : nullptr, p.numel(), T(lr_[gi]),
                        T(wd_[gi]), T(config_.momentum), T(1 - config_.dampening), first, config_.nesterov);
        }
      });
      ++st.step;
      p.bump_version();
    }
  }
  ++steps_;
}

// ---- Adam / AdamW --------------------------------------------------------------------------------

Adam::Adam(std::vector<ParamGroup> groups, const OptimizerConfig& config, bool decoupled)
    : Optimizer(std::move(groups), config), decoupled_(decoupled) {
  if (!(config_.beta1 >= 0 && config_.beta1 < 1 && config_.beta2 >= 0 && config_.beta2 < 1))
    throw InputError(fmt::format("{}: betas must be in [0, 1), got ({}, {})", config_.type, config_.beta1, config_.beta2));
  if (!(config_.eps >= 0)) throw InputError(fmt::format("{}: eps must be >= 0, got {}", config_.type, config_.eps));
}

void Adam::step() {
  NoGradGuard no_grad;
  const double b1 = config_.beta1, b2 = config_.beta2;
  for (size_t gi = 0; gi < groups_.size(); ++gi) {
    const double lr = lr_[gi], wd = wd_[gi];
    for (size_t i = 0; i < groups_[gi].params.size(); ++i) {
      Tensor p = groups_[gi].params[i];
      const Tensor g = contiguous_grad(p);
      if (!g.defined()) continue;
      ParamState& st = state(gi, i);
      if (st.slots.empty()) st.slots.resize(3);
      if (!st.slots[0].defined()) {
        st.slots[0] = Tensor::zeros(p.shape(), p.dtype());
        st.slots[1] = Tensor::zeros(p.shape(), p.dtype());
      }
      if (config_.amsgrad && !st.slots[2].defined()) st.slots[2] = Tensor::zeros(p.shape(), p.dtype());
      ++st.step;
      const double t = static_cast<double>(st.step);
      const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
      const double step_size = lr / bc1, bc2_sqrt = std::sqrt(bc2);
      visit_dtype(p.dtype(), [&]<class T>() {
        if constexpr (std::is_floating_point_v<T>) {
          adam_kernel<T>(p.data<T>(), g.data<T>(), st.slots[0].data<T>(), st.slots[1].data<T>(),
                         config_.amsgrad ? st.slots[2].data<T>() : nullptr, p.numel(), T(decoupled_ ? 0.0 : wd),
                         T(decoupled_ ? 1.0 - lr * wd : 1.0), T(b1), T(1 - b1), T(b2), T(1 - b2), T(step_size), T(bc2_sqrt),
                         T(config_.eps));
        }
      });
      p.bump_version();
    }
  }
  ++steps_;
}

std::unique_ptr<Optimizer> make_optimizer(std::vector<ParamGroup> groups, const OptimizerConfig& config) {
  if (config.type == "sgd") return std::make_unique<SGD>(std::move(groups), config);
  if (config.type == "adam") return std::make_unique<Adam>(std::move(groups), config, false);
  if (config.type == "adamw") return std::make_unique<Adam>(std::move(groups), config, true);
  throw InputError(fmt::format("unknown optimizer '{}' (expected sgd, adam or adamw)", config.type));
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  NoGradGuard no_grad;
  double sq = 0;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    QFORGE_CHECK(g.is_contiguous(), "clip_grad_norm: gradients must be contiguous");
    visit_dtype(g.dtype(), [&]<class T>() {
      if constexpr (std::is_floating_point_v<T>) {
        const T* d = g.data<T>();
        double s = 0;
        for (int64_t i = 0; i < g.numel(); ++i) s += static_cast<double>(d[i]) * static_cast<double>(d[i]);
        sq += s;
      }
    });
    grads.push_back(g);
  }
  const double norm = std::sqrt(sq);
  const double coef = max_norm / (norm + 1e-6);
  if (coef < 1) {
    for (Tensor& g : grads) {
      visit_dtype(g.dtype(), [&]<class T>() {
        if constexpr (std::is_floating_point_v<T>) {
          T* d = g.data<T>();
          const T c = static_cast<T>(coef);
          for (int64_t i = 0; i < g.numel(); ++i) d[i] *= c;
        }
      });
      g.bump_version();
    }
  }
  return norm;
}

}  // namespace qforge::train
