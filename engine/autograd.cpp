#include "engine/autograd.hpp"

#include "engine/ops/ops.hpp"

#include <unordered_map>

namespace qforge::autograd {

namespace {
thread_local bool t_grad_mode = true;
}

bool grad_mode_enabled() { return t_grad_mode; }
void set_grad_mode(bool enabled) { t_grad_mode = enabled; }

Edge edge_of(const Tensor& t) {
  if (!t.defined() || !t.requires_grad()) return {};
  if (t.grad_fn()) return {t.grad_fn(), nullptr};
  return {nullptr, t.impl_shared()};
}

SavedTensor::SavedTensor(const Tensor& t) {
  if (t.defined()) {
    tensor_ = t.detach();
    version_ = t.version();
  }
}

const Tensor& SavedTensor::get(const char* op) const {
  QFORGE_CHECK(tensor_.defined(), "{}: a tensor saved for backward is missing (was the graph freed?)", op);
  QFORGE_CHECK(tensor_.version() == version_,
               "{}: a tensor saved for backward was modified in place (version {} at save, {} now); "
               "clone it before writing to it",
               op, version_, tensor_.version());
  return tensor_;
}

namespace {

void accumulate(Tensor& slot, const Tensor& g) {
  if (!slot.defined()) {
    slot = g;
  } else {
    slot = ops::add(slot, g);
  }
}

// Takes the gradient by value: when the caller hands over the only reference to a contiguous tensor
// whose storage nothing else shares, the leaf adopts it instead of copying (PyTorch's AccumulateGrad
// does the same); otherwise it keeps a private copy, since the incoming gradient may alias another
// tensor (an op may return its output gradient itself, or a view of it).
void accumulate_leaf(TensorImpl& leaf, Tensor g) {
  QFORGE_CHECK(g.shape() == leaf.shape, "backward: gradient of shape {} for a leaf of shape {}",
               shape_str(g.shape()), shape_str(leaf.shape));
  if (g.dtype() != leaf.dtype) g = g.to(leaf.dtype);
  if (!leaf.autograd) leaf.autograd = std::make_unique<AutogradMeta>();
  Tensor& slot = leaf.autograd->grad;
  if (!slot.defined()) {
    const auto& impl = g.impl_shared();
    const bool sole_owner = impl.use_count() == 1 && impl->storage.use_count() == 1 && !impl->autograd &&
                            impl->offset == 0 && g.is_contiguous();
    slot = sole_owner ? std::move(g) : g.clone();
  } else {
    slot = ops::add(slot, g);
  }
}

}  // namespace

void run_backward(const Tensor& root, const Tensor& grad_in, bool retain_graph) {
  QFORGE_CHECK(root.requires_grad(), "backward: tensor does not require grad and has no grad_fn");
  Tensor grad = grad_in;
  if (!grad.defined()) {
    QFORGE_CHECK(root.numel() == 1, "backward: grad can be implied only for scalar outputs, got shape {}",
                 shape_str(root.shape()));
    grad = Tensor::ones(root.shape(), root.dtype());
  }
  QFORGE_CHECK(grad.shape() == root.shape(), "backward: grad of shape {} for an output of shape {}",
               shape_str(grad.shape()), shape_str(root.shape()));
  NoGradGuard no_grad;
  if (!root.grad_fn()) {
    accumulate_leaf(*root.impl_ptr(), grad);  // grad may be the caller's: copied
    return;
  }

  // Topological order by iterative DFS (graphs through long sequences are deep).
  std::vector<Node*> order;
  std::unordered_map<Node*, int> state;  // 1 = visiting, 2 = done
  std::vector<std::pair<Node*, size_t>> stack{{root.grad_fn().get(), 0}};
  state[root.grad_fn().get()] = 1;
  while (!stack.empty()) {
    auto& [node, i] = stack.back();
    if (i < node->next.size()) {
      Node* child = node->next[i++].fn.get();
      if (child && state[child] == 0) {
        state[child] = 1;
        stack.push_back({child, 0});
      }
    } else {
      state[node] = 2;
      order.push_back(node);
      stack.pop_back();
    }
  }

  std::unordered_map<Node*, Tensor> pending;
  pending[root.grad_fn().get()] = grad;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    Node* node = *it;
    auto found = pending.find(node);
    if (found == pending.end()) continue;
    Tensor g = std::move(found->second);
    pending.erase(found);
    QFORGE_CHECK(!node->released,
                 "backward through '{}' a second time: its saved tensors were freed "
                 "(pass retain_graph=true to the first backward)",
                 node->name());
    std::vector<Tensor> grads = node->backward(g);
    QFORGE_ASSERT(grads.size() == node->next.size());
    for (size_t k = 0; k < grads.size(); ++k) {
      const Edge& e = node->next[k];
      if (!grads[k].defined() || !e.active()) continue;
      if (e.fn) {
        accumulate(pending[e.fn.get()], grads[k]);
      } else {
        accumulate_leaf(*e.leaf, std::move(grads[k]));
      }
    }
    if (!retain_graph) {
      node->release_saved();
      node->released = true;
    }
  }
}

}  // namespace qforge::autograd
