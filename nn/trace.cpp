#include "nn/trace.hpp"

#include "engine/autograd.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

namespace qforge::nn {

const TraceSource& TraceInput::source() const {
  QFORGE_CHECK(sources.size() == 1, "trace: input {} has {} sources, expected exactly one", shape_str(shape),
               sources.size());
  return sources[0];
}

// The CallObserver that builds a TracedGraph (Note [Trace data flow]).
class Tracer : public CallObserver {
public:
  Tracer(Module& root, TracedGraph& g) : g_(g) {
    for (auto& [name, m] : root.named_modules()) names_.emplace(m.get(), name);
  }

  void add_model_input(const Tensor& t, int k) { remember(t, {TraceSource::kModelInput, k, true}); }

  void on_enter(Module& m, const std::vector<Tensor>& inputs) override {
    if (inside_leaf_ > 0) {
      ++inside_leaf_;
      return;
    }
    if (!m.trace_as_leaf()) return;
    inside_leaf_ = 1;
    TraceNode n;
    n.id = static_cast<int>(g_.nodes_.size());
    n.module = m.shared_from_this();
    auto it = names_.find(&m);
    n.name = it != names_.end() ? it->second : fmt::format("<unnamed {}>", m.type_name());
    n.type = m.type_name();
    n.call = calls_[&m]++;
    for (const auto& t : inputs) n.inputs.push_back(describe(t));
    g_.nodes_.push_back(std::move(n));
  }

  void on_exit(Module& m, const std::vector<Tensor>& inputs, const std::vector<Tensor>& outputs) override {
    if (inside_leaf_ > 1) {
      --inside_leaf_;
      return;
    }
    if (inside_leaf_ == 0) return;  // a container
    inside_leaf_ = 0;
    TraceNode& n = g_.nodes_.back();
    QFORGE_ASSERT(n.module.get() == &m);
    for (size_t i = 0; i < outputs.size(); ++i) {
      n.output_shapes.push_back(outputs[i].defined() ? outputs[i].shape() : Shape{});
      if (outputs[i].defined()) remember(outputs[i], {n.id, static_cast<int>(i), true});
    }
  }

  TraceInput describe(const Tensor& t) {
    TraceInput in;
    if (!t.defined()) return in;
    in.shape = t.shape();
    in.dtype = t.dtype();
    // 1. identity
    if (auto it = by_impl_.find(t.impl_ptr()); it != by_impl_.end()) {
      in.sources.push_back(it->second);
      return in;
    }
    // 2. autograd walk back to recorded values
    if (t.grad_fn()) {
      std::unordered_set<const autograd::Node*> seen;
      std::deque<const autograd::Node*> todo{t.grad_fn().get()};
      auto add = [&](TraceSource s) {
        s.direct = false;
        if (std::find(in.sources.begin(), in.sources.end(), s) == in.sources.end()) in.sources.push_back(s);
      };
      while (!todo.empty()) {
        const autograd::Node* fn = todo.front();
        todo.pop_front();
        if (!seen.insert(fn).second) continue;
        if (auto it = by_fn_.find(fn); it != by_fn_.end()) {
          add(it->second);
          continue;
        }
        for (const auto& e : fn->next) {
          if (e.fn) todo.push_back(e.fn.get());
          else if (e.leaf)
            if (auto it = by_impl_.find(e.leaf.get()); it != by_impl_.end()) add(it->second);
        }
      }
      std::sort(in.sources.begin(), in.sources.end(), [](const TraceSource& a, const TraceSource& b) {
        return std::pair(a.node, a.index) < std::pair(b.node, b.index);
      });
      if (!in.sources.empty()) return in;
    }
    // 3. a view of a recorded value
    if (auto it = by_storage_.find(t.storage().get()); it != by_storage_.end()) {
      TraceSource s = it->second;
      s.direct = false;
      in.sources.push_back(s);
    }
    return in;
  }

private:
  void remember(const Tensor& t, TraceSource s) {
    keep_.push_back(t);  // keeps the pointers below from being reused during the trace
    // The latest producer wins: a module may return its input unchanged (Identity, Dropout in eval).
    by_impl_.insert_or_assign(t.impl_ptr(), s);
    if (t.grad_fn()) by_fn_.insert_or_assign(t.grad_fn().get(), s);
    by_storage_.insert_or_assign(t.storage().get(), s);
  }

  TracedGraph& g_;
  std::unordered_map<const Module*, std::string> names_;
  std::unordered_map<const Module*, int> calls_;
  std::unordered_map<const TensorImpl*, TraceSource> by_impl_;
  std::unordered_map<const autograd::Node*, TraceSource> by_fn_;
  std::unordered_map<const Storage*, TraceSource> by_storage_;
  std::vector<Tensor> keep_;
  int inside_leaf_ = 0;
};

TracedGraph trace(Module& model, const std::vector<Tensor>& inputs, const TraceOptions& opt) {
  TracedGraph g;
  g.num_inputs_ = static_cast<int>(inputs.size());
  Tracer tracer(model, g);
  std::vector<Tensor> ins;
  for (size_t k = 0; k < inputs.size(); ++k) {
    QFORGE_CHECK(inputs[k].defined(), "trace: model input {} is undefined", k);
    Tensor x = inputs[k].detach();
    if (is_floating(x.dtype())) x.set_requires_grad(true);
    tracer.add_model_input(x, static_cast<int>(k));
    ins.push_back(x);
  }
  // Eval mode for the duration of the trace, restoring each module's own mode.
  std::vector<std::pair<ModulePtr, bool>> modes;
  if (opt.eval_mode) {
    for (auto& [name, m] : model.named_modules()) modes.emplace_back(m, m->is_training());
    for (auto& [m, was] : modes) m->train(false);
  }
  struct Restore {
    std::vector<std::pair<ModulePtr, bool>>& modes;
    ~Restore() {
      // train() recurses; modes are in pre-order, so each child's own flag is set after its parent's.
      for (auto& [m, was] : modes) m->train(was);
    }
  } restore{modes};
  std::vector<Tensor> outs;
  {
    autograd::EnableGradGuard grad_on;
    CallObserverScope scope(&tracer);
    outs = model(ins);
  }
  for (const auto& t : outs) g.outputs_.push_back(tracer.describe(t));
  return g;
}

// ---- queries ------------------------------------------------------------------------------------

std::vector<int> TracedGraph::find(const std::string& name) const {
  std::vector<int> out;
  for (const auto& n : nodes_)
    if (n.name == name) out.push_back(n.id);
  return out;
}

int TracedGraph::find_one(const std::string& name) const {
  auto ids = find(name);
  QFORGE_CHECK(!ids.empty(), "trace: no module '{}' in the traced graph", name);
  return ids[0];
}

std::vector<int> TracedGraph::nodes_of_type(const std::string& type) const {
  std::vector<int> out;
  for (const auto& n : nodes_)
    if (n.type == type) out.push_back(n.id);
  return out;
}

std::vector<std::pair<int, int>> TracedGraph::consumers(int id) const {
  std::vector<std::pair<int, int>> out;
  for (const auto& n : nodes_)
    for (size_t s = 0; s < n.inputs.size(); ++s)
      for (const auto& src : n.inputs[s].sources)
        if (src.node == id) {
          out.emplace_back(n.id, static_cast<int>(s));
          break;
        }
  return out;
}

std::vector<int> TracedGraph::producers(int id) const {
  std::vector<int> out;
  for (const auto& in : node(id).inputs)
    for (const auto& src : in.sources)
      if (src.node != TraceSource::kModelInput && std::find(out.begin(), out.end(), src.node) == out.end())
        out.push_back(src.node);
  return out;
}

bool TracedGraph::feeds_model_output(int id) const {
  for (const auto& o : outputs_)
    for (const auto& s : o.sources)
      if (s.node == id) return true;
  return false;
}

std::string TracedGraph::to_string() const {
  auto src_str = [](const TraceInput& in) {
    if (in.sources.empty()) return std::string("const");
    std::vector<std::string> parts;
    for (const auto& s : in.sources)
      parts.push_back((s.node == TraceSource::kModelInput ? fmt::format("input{}", s.index)
                                                          : fmt::format("#{}:{}", s.node, s.index)) +
                      (s.direct ? "" : "~"));
    return fmt::format("{}", fmt::join(parts, "+"));
  };
  std::string s;
  for (const auto& n : nodes_) {
    std::vector<std::string> ins;
    for (const auto& in : n.inputs) ins.push_back(src_str(in));
    std::vector<std::string> outs;
    for (const auto& sh : n.output_shapes) outs.push_back(shape_str(sh));
    s += fmt::format("#{} {} {} {} <- {}\n", n.id, n.name.empty() ? "<root>" : n.name, n.type, fmt::join(outs, " "),
                     fmt::join(ins, ", "));
  }
  std::vector<std::string> outs;
  for (const auto& o : outputs_) outs.push_back(src_str(o));
  s += fmt::format("outputs <- {}\n", fmt::join(outs, ", "));
  return s;
}

}  // namespace qforge::nn
