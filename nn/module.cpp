#include "nn/module.hpp"

#include "engine/autograd.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <set>
#include <sstream>

namespace qforge::nn {

namespace {
thread_local CallObserver* g_observer = nullptr;

void check_name(const std::string& name, const std::string& type, const char* what) {
  if (name.empty()) throw Error(fmt::format("{}: empty {} name", type, what));
}

std::string indent(const std::string& s, int n) {
  std::string pad(n, ' ');
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    out += s[i];
    if (s[i] == '\n') out += pad;
  }
  return out;
}
}  // namespace

CallObserver* current_call_observer() { return g_observer; }
CallObserverScope::CallObserverScope(CallObserver* obs) : prev_(g_observer) { g_observer = obs; }
CallObserverScope::~CallObserverScope() { g_observer = prev_; }

// ---- calling --------------------------------------------------------------------------------------

std::vector<Tensor> Module::operator()(const std::vector<Tensor>& inputs) {
  CallObserver* obs = g_observer;
  if (obs) obs->on_enter(*this, inputs);
  std::vector<Tensor> outputs;
  if (pre_hooks_.empty() && hooks_.empty()) {
    outputs = forward(inputs);
  } else {
    std::vector<Tensor> in = inputs;
    for (auto& [id, h] : pre_hooks_) h(*this, in);
    outputs = forward(in);
    for (auto& [id, h] : hooks_) h(*this, in, outputs);
  }
  if (obs) obs->on_exit(*this, inputs, outputs);
  return outputs;
}

Tensor Module::operator()(const Tensor& x) {
  auto out = (*this)(std::vector<Tensor>{x});
  if (out.empty()) throw Error(fmt::format("{}: forward returned no outputs", type_name_));
  return out[0];
}

std::vector<Tensor> Module::forward(const std::vector<Tensor>& inputs) {
  if (inputs.size() != 1)
    throw Error(fmt::format("{}: expects 1 input, got {}", type_name_, inputs.size()));
  return {forward_tensor(inputs[0])};
}

Tensor Module::forward_tensor(const Tensor&) {
  throw Error(fmt::format("{}: forward is not implemented", type_name_));
}

// ---- mode ---------------------------------------------------------------------------------------------

Module& Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
  return *this;
}

// ---- parameters and buffers -----------------------------------------------------------------------

Tensor& Module::register_parameter(const std::string& name, Tensor t, bool requires_grad) {
  check_name(name, type_name_, "parameter");
  QFORGE_CHECK(t.defined(), "{}: parameter '{}' is undefined", type_name_, name);
  QFORGE_CHECK(is_floating(t.dtype()), "{}: parameter '{}' must be floating, got {}", type_name_, name,
               dtype_name(t.dtype()));
  if (!t.is_leaf()) t = t.detach();
  if (t.requires_grad() != requires_grad) t.set_requires_grad(requires_grad);
  for (auto& [n, p] : params_)
    if (n == name) {
      p = std::move(t);
      return p;
    }
  params_.emplace_back(name, std::move(t));
  return params_.back().second;
}

Tensor& Module::register_buffer(const std::string& name, Tensor t, bool persistent) {
  check_name(name, type_name_, "buffer");
  for (auto& b : buffers_)
    if (b.name == name) {
      b.tensor = std::move(t);
      b.persistent = persistent;
      return b.tensor;
    }
  buffers_.push_back({name, std::move(t), persistent});
  return buffers_.back().tensor;
}

bool Module::has_param(const std::string& name) const {
  return std::any_of(params_.begin(), params_.end(), [&](const auto& p) { return p.first == name; });
}

bool Module::has_buffer(const std::string& name) const {
  return std::any_of(buffers_.begin(), buffers_.end(), [&](const auto& b) { return b.name == name; });
}

Tensor& Module::raw_param(const std::string& name) {
  for (auto& [n, p] : params_)
    if (n == name) return p;
  throw Error(fmt::format("{}: no parameter '{}'", type_name_, name));
}

Tensor Module::param(const std::string& name) {
  Tensor& p = raw_param(name);
  if (param_transform_) return param_transform_(*this, name, p);
  return p;
}

Tensor Module::maybe_param(const std::string& name) {
  if (!has_param(name)) return Tensor();
  return param(name);
}

Tensor& Module::buffer(const std::string& name) {
  for (auto& b : buffers_)
    if (b.name == name) return b.tensor;
  throw Error(fmt::format("{}: no buffer '{}'", type_name_, name));
}

void Module::set_param(const std::string& name, Tensor t) {
  QFORGE_CHECK(t.defined(), "{}: set_param('{}') with an undefined tensor", type_name_, name);
  for (auto& [n, p] : params_)
    if (n == name) {
      p = std::move(t);
      return;
    }
  params_.emplace_back(name, std::move(t));
}

void Module::remove_param(const std::string& name) {
  std::erase_if(params_, [&](const auto& p) { return p.first == name; });
}

NamedTensors Module::own_buffers() const {
  NamedTensors out;
  for (const auto& b : buffers_) out.emplace_back(b.name, b.tensor);
  return out;
}

void Module::collect_state(const std::string& prefix, NamedTensors& out, bool params, bool buffers,
                           bool recurse) const {
  if (params)
    for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
  if (buffers)
    for (const auto& b : buffers_)
      if (b.persistent) out.emplace_back(prefix + b.name, b.tensor);
  if (recurse)
    for (const auto& [n, c] : children_) c->collect_state(prefix + n + ".", out, params, buffers, true);
}

NamedTensors Module::named_parameters(bool recurse) const {
  NamedTensors out;
  collect_state("", out, true, false, recurse);
  return out;
}

NamedTensors Module::named_buffers(bool recurse) const {
  NamedTensors out;
  collect_state("", out, false, true, recurse);
  return out;
}

std::vector<Tensor> Module::parameters(bool recurse) const {
  std::vector<Tensor> out;
  for (auto& [n, p] : named_parameters(recurse)) out.push_back(p);
  return out;
}

int64_t Module::num_parameters(bool trainable_only) const {
  int64_t n = 0;
  // A tensor shared by two modules (tied weights) counts once, like sum(p.numel() for p in parameters()).
  std::set<const TensorImpl*> seen;
  for (auto& [name, p] : named_parameters())
    if ((!trainable_only || p.requires_grad()) && seen.insert(p.impl_ptr()).second) n += p.numel();
  return n;
}

void Module::zero_grad() {
  for (auto& p : parameters()) p.zero_grad();
}

// ---- state dict ---------------------------------------------------------------------------------

NamedTensors Module::state_dict() const {
  NamedTensors out;
  collect_state("", out, true, true, true);
  return out;
}

LoadResult Module::load_state_dict(const NamedTensors& sd, bool strict) {
  std::map<std::string, Tensor> m;
  for (const auto& [n, t] : sd) m[n] = t;
  return load_state_dict(m, strict);
}

LoadResult Module::load_state_dict(const std::map<std::string, Tensor>& sd, bool strict) {
  LoadResult r;
  std::vector<std::string> mismatches;
  NamedTensors mine = state_dict();
  std::set<std::string> known;
  for (auto& [name, t] : mine) {
    known.insert(name);
    auto it = sd.find(name);
    if (it == sd.end()) {
      r.missing_keys.push_back(name);
      continue;
    }
    const Tensor& src = it->second;
    if (!src.defined() || src.shape() != t.shape())
      mismatches.push_back(fmt::format("'{}': expected shape {}, got {}", name, shape_str(t.shape()),
                                       src.defined() ? shape_str(src.shape()) : "undefined"));
  }
  for (auto& [name, t] : sd)
    if (!known.count(name)) r.unexpected_keys.push_back(name);
  const bool fail = !mismatches.empty() || (strict && (!r.missing_keys.empty() || !r.unexpected_keys.empty()));
  if (fail) {
    std::string msg = fmt::format("load_state_dict into {}:", type_name_);
    if (!mismatches.empty()) msg += fmt::format(" shape mismatch for {};", fmt::join(mismatches, ", "));
    if (strict && !r.missing_keys.empty()) msg += fmt::format(" missing keys {};", fmt::join(r.missing_keys, ", "));
    if (strict && !r.unexpected_keys.empty())
      msg += fmt::format(" unexpected keys {};", fmt::join(r.unexpected_keys, ", "));
    msg.pop_back();
    throw InputError(msg);
  }
  autograd::NoGradGuard ng;
  for (auto& [name, t] : mine) {
    auto it = sd.find(name);
    if (it == sd.end()) continue;
    Tensor dst = t;
    dst.copy_(it->second);
  }
  return r;
}

// ---- children -----------------------------------------------------------------------------------

void Module::register_child(const std::string& name, ModulePtr m) {
  check_name(name, type_name_, "child module");
  QFORGE_CHECK(m != nullptr, "{}: child '{}' is null", type_name_, name);
  for (auto& [n, c] : children_)
    if (n == name) {
      c = std::move(m);
      return;
    }
  children_.emplace_back(name, std::move(m));
}

ModulePtr Module::child(const std::string& name) const {
  for (const auto& [n, c] : children_)
    if (n == name) return c;
  return nullptr;
}

ModulePtr Module::find(const std::string& path) {
  if (path.empty()) return shared_from_this();
  // Child names may contain dots: try the longest matching child-name prefix first.
  for (const auto& [n, c] : children_) {
    if (path == n) return c;
  }
  for (const auto& [n, c] : children_) {
    if (path.size() > n.size() && path.compare(0, n.size(), n) == 0 && path[n.size()] == '.') {
      try {
        return c->find(path.substr(n.size() + 1));
      } catch (const Error&) {
      }
    }
  }
  throw Error(fmt::format("{}: no submodule '{}'", type_name_, path));
}

NamedModules Module::named_modules(const std::string& prefix) {
  NamedModules out;
  out.emplace_back(prefix, shared_from_this());
  for (auto& [n, c] : children_) {
    auto sub = c->named_modules(prefix.empty() ? n : prefix + "." + n);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

// ---- hooks --------------------------------------------------------------------------------------

int Module::add_forward_pre_hook(ForwardPreHook h) {
  const int id = next_hook_id_++;
  pre_hooks_.emplace_back(id, std::move(h));
  return id;
}

int Module::add_forward_hook(ForwardHook h) {
  const int id = next_hook_id_++;
  hooks_.emplace_back(id, std::move(h));
  return id;
}

void Module::remove_hook(int handle) {
  std::erase_if(pre_hooks_, [&](const auto& h) { return h.first == handle; });
  std::erase_if(hooks_, [&](const auto& h) { return h.first == handle; });
}

void Module::clear_hooks() {
  pre_hooks_.clear();
  hooks_.clear();
}

// ---- conversion and display -----------------------------------------------------------------------

void Module::to(DType dtype) {
  QFORGE_CHECK(is_floating(dtype), "{}: to({}) needs a floating dtype", type_name_, dtype_name(dtype));
  autograd::NoGradGuard ng;
  for (auto& [n, p] : params_) {
    if (p.dtype() == dtype) continue;
    const bool rg = p.requires_grad();
    p = p.detach().to(dtype);
    if (rg) p.set_requires_grad(true);
  }
  for (auto& b : buffers_)
    if (b.tensor.defined() && is_floating(b.tensor.dtype()) && b.tensor.dtype() != dtype)
      b.tensor = b.tensor.to(dtype);
  for (auto& [n, c] : children_) c->to(dtype);
}

std::string Module::to_string() const {
  std::string s = type_name_ + "(";
  const std::string extra = extra_repr();
  if (children_.empty()) return s + extra + ")";
  if (!extra.empty()) s += "\n  " + indent(extra, 2);
  for (const auto& [n, c] : children_) s += "\n  (" + n + "): " + indent(c->to_string(), 2);
  return s + "\n)";
}

nlohmann::json Module::spec_args() const { return nlohmann::json::object(); }

}  // namespace qforge::nn
