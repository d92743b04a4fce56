// nn::Module: the building block of models (like torch.nn.Module).
//
// A Module owns, in registration order:
//   - parameters: Tensors with requires_grad (weights, biases);
//   - buffers: Tensors without gradient that belong to the state (BatchNorm running_mean/var and
//     num_batches_tracked); non-persistent buffers are left out of state_dict;
//   - children: shared_ptr<Module>, named; the dotted name of a descendant's tensor is
//     "<child>.<grandchild>.<tensor>" exactly like PyTorch's state_dict ("block2.proj.conv.weight").
// Child names may themselves contain dots (the spec-built Graph registers nodes "block2.proj.conv"
// directly), which yields the same state_dict keys as nested PyTorch modules.
//
// Calling convention. Every module maps a list of tensors to a list of tensors:
//     std::vector<Tensor> outputs = module({x, y});      // or: Tensor y = module(x);
// Subclasses implement forward(const std::vector<Tensor>&), or, for the common one-in/one-out case,
// forward_tensor(const Tensor&) (the default forward() calls it). Multi-output modules (recurrent
// layers) return several tensors, the first being "the" output (LSTM: {output, h_n, c_n}).
//
// operator() is the single place where calls are observed (Note [Module call]):
//     inputs --pre-hooks--> forward --forward hooks--> outputs
// and the active CallObserver (the tracer, nn/trace.hpp) sees the call with the inputs the caller
// passed (before pre-hooks) and the outputs the caller receives (after forward hooks), i.e. the data
// flow between modules.
//
// Parameter transform (Note [Parameter transform]). Layers read their parameters in forward through
// param("weight"), never through the stored tensor directly. A module may carry one transform
// f(module, name, stored) -> tensor that param() applies: QuantSim installs fake-quantisation there, so
// the stored FP32 "shadow" weights are what the optimizer updates while forward sees quantised values;
// BN-fold-for-QAT installs the folding there. Only one transform per module: to stack, read the
// current one with param_transform() and wrap it.
//
// Integer buffers: the engine has no int64 dtype, so num_batches_tracked is an i32 scalar buffer. Weights
// I/O (nn/safetensors.hpp) writes integer buffers as I64 and reads I64 into them, as PyTorch stores them.
#pragma once

#include "engine/tensor.hpp"

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace qforge::nn {

class Module;
using ModulePtr = std::shared_ptr<Module>;
// An ordered list of (dotted name, tensor); the order is PyTorch's state_dict order.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;
using NamedModules = std::vector<std::pair<std::string, ModulePtr>>;

// Forward pre-hook: may replace the inputs (edit the vector in place).
using ForwardPreHook = std::function<void(Module& m, std::vector<Tensor>& inputs)>;
// Forward hook: sees the (hooked) inputs and may replace the outputs (edit in place).
using ForwardHook =
    std::function<void(Module& m, const std::vector<Tensor>& inputs, std::vector<Tensor>& outputs)>;
// Parameter transform: what forward sees for parameter `name` whose stored value is `stored`.
using ParamTransform = std::function<Tensor(Module& m, const std::string& name, const Tensor& stored)>;

// Result of a non-strict load: which keys did not match.
struct LoadResult {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
};

// Observer of module calls (the tracer). At most one is active per thread (see CallObserverScope).
class CallObserver {
public:
  virtual ~CallObserver() = default;
  virtual void on_enter(Module& m, const std::vector<Tensor>& inputs) = 0;
  virtual void on_exit(Module& m, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) = 0;
};
CallObserver* current_call_observer();
// Installs `obs` as the current observer for this thread for the scope's lifetime (restores the previous).
class CallObserverScope {
public:
  explicit CallObserverScope(CallObserver* obs);
  ~CallObserverScope();
  CallObserverScope(const CallObserverScope&) = delete;
  CallObserverScope& operator=(const CallObserverScope&) = delete;

private:
  CallObserver* prev_;
};

class Module : public std::enable_shared_from_this<Module> {
public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // "Conv2d", "Linear", "Graph", ... (PyTorch's class name where one exists).
  const std::string& type_name() const { return type_name_; }

  // ---- calling (Note [Module call]) -------------------------------------------------------------
  std::vector<Tensor> operator()(const std::vector<Tensor>& inputs);
  // One input; returns the first output. Note: m({x}) with ONE braced tensor also picks this overload
  // (use m(std::vector<Tensor>{x}) to get every output).
  Tensor operator()(const Tensor& x);

  // ---- training mode ----------------------------------------------------------------------------
  Module& train(bool on = true);  // recursive
  Module& eval() { return train(false); }
  bool is_training() const { return training_; }

  // ---- parameters and buffers -------------------------------------------------------------------
  // Registers (or replaces) a parameter; sets requires_grad on it. Returns the stored handle.
  Tensor& register_parameter(const std::string& name, Tensor t, bool requires_grad = true);
  Tensor& register_buffer(const std::string& name, Tensor t, bool persistent = true);
  bool has_param(const std::string& name) const;   // own parameter (not a descendant's)
  bool has_buffer(const std::string& name) const;
  // The value forward must use: the stored parameter through the transform, if any.
  Tensor param(const std::string& name);
  // param(name) if registered, else an undefined Tensor (optional bias).
  Tensor maybe_param(const std::string& name);
  // The stored tensor itself (the FP32 shadow weight); throws naming module and parameter if absent.
  Tensor& raw_param(const std::string& name);
  Tensor& buffer(const std::string& name);
  // Replaces the stored handle (no copy); gradients then flow into `t`. Used by tests (f64 gradcheck)
  // and by passes that rewrite weights (BN folding adds a bias to a conv).
  void set_param(const std::string& name, Tensor t);
  void remove_param(const std::string& name);

  void set_param_transform(ParamTransform f) { param_transform_ = std::move(f); }
  const ParamTransform& param_transform() const { return param_transform_; }
  void clear_param_transform() { param_transform_ = nullptr; }

  // Own (non-recursive) registrations, in order.
  const NamedTensors& own_parameters() const { return params_; }
  NamedTensors own_buffers() const;  // persistent and not

  // Recursive, with dotted names relative to this module.
  NamedTensors named_parameters(bool recurse = true) const;
  NamedTensors named_buffers(bool recurse = true) const;  // persistent only
  std::vector<Tensor> parameters(bool recurse = true) const;
  int64_t num_parameters(bool trainable_only = false) const;  // total element count
  void zero_grad();                                            // drops every parameter's .grad

  // ---- state dict -------------------------------------------------------------------------------
  // Parameters then persistent buffers of each module, children after their parent (PyTorch's order).
  NamedTensors state_dict() const;
  // Copies values in place (dtype converted). strict: missing or unexpected keys are errors. A shape
  // mismatch is always an error. Errors list every offending key at once (InputError).
  LoadResult load_state_dict(const std::map<std::string, Tensor>& sd, bool strict = true);
  LoadResult load_state_dict(const NamedTensors& sd, bool strict = true);

  // ---- children ---------------------------------------------------------------------------------
  template <class M> std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    register_child(name, m);
    return m;
  }
  void register_child(const std::string& name, ModulePtr m);  // replaces if it exists
  const NamedModules& children() const { return children_; }
  ModulePtr child(const std::string& name) const;  // nullptr if absent
  // Descendant by dotted path ("block2.proj.conv"); "" is this module. Throws if absent.
  ModulePtr find(const std::string& path);
  // All modules including this one ("" first), depth-first pre-order, dotted names.
  NamedModules named_modules(const std::string& prefix = "");

  // ---- hooks ------------------------------------------------------------------------------------
  int add_forward_pre_hook(ForwardPreHook h);  // returns a handle for remove_hook
  int add_forward_hook(ForwardHook h);
  void remove_hook(int handle);
  void clear_hooks();

  // ---- conversion and display -------------------------------------------------------------------
  // Converts every floating parameter and buffer to `dtype` (recursive); keeps requires_grad.
  void to(DType dtype);
  // PyTorch-like repr: "Linear(in_features=784, out_features=256, bias=True)", containers indented.
  std::string to_string() const;
  // The part inside the parentheses of a leaf's repr.
  virtual std::string extra_repr() const { return ""; }
  // The layer arguments as written in a model spec (nn/spec.hpp); empty object when none.
  virtual nlohmann::json spec_args() const;
  // Whether the tracer records this module as one node (true) or descends into its children.
  // Default: modules without children are leaves.
  virtual bool trace_as_leaf() const { return children_.empty(); }

protected:
  // Implement one of the two. The default forward() requires exactly one input and calls
  // forward_tensor(); the default forward_tensor() throws.
  virtual std::vector<Tensor> forward(const std::vector<Tensor>& inputs);
  virtual Tensor forward_tensor(const Tensor& x);

private:
  struct BufferEntry {
    std::string name;
    Tensor tensor;
    bool persistent;
  };
  void collect_state(const std::string& prefix, NamedTensors& out, bool params, bool buffers,
                     bool recurse) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors params_;
  std::vector<BufferEntry> buffers_;
  NamedModules children_;
  ParamTransform param_transform_;
  std::vector<std::pair<int, ForwardPreHook>> pre_hooks_;
  std::vector<std::pair<int, ForwardHook>> hooks_;
  int next_hook_id_ = 1;
};

// Note [Module call]
// Module::operator()(inputs):
//   1. the current CallObserver (if any) gets on_enter(module, inputs-as-passed);
//   2. each forward pre-hook runs in registration order and may replace the inputs;
//   3. forward(inputs) runs; layers read parameters through param() (Note [Parameter transform]);
//   4. each forward hook runs in registration order and may replace the outputs;
//   5. the observer gets on_exit(module, inputs-as-passed, final outputs).
// Hooks are per module instance; QuantSim attaches input quantizers as pre-hooks and output quantizers
// as forward hooks.
//
// Note [Parameter transform]
// param(name) = transform ? transform(*this, name, stored) : stored. The transform is an ordinary
// differentiable function of the stored tensor, so gradients reach the shadow weights (through the STE
// for fake-quantisation). It is evaluated at every forward call; nothing is cached.

}  // namespace qforge::nn
