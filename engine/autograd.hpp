// Autograd: the tape is the graph.
//
// Each result of a recorded op holds its grad_fn, a Node whose `next` edges point at the grad_fns of the
// op's inputs (or, for leaves, at the leaf itself, into whose .grad the gradient is accumulated).
// backward() sorts the reachable nodes topologically from the root, runs each node's backward once with
// the sum of the gradients flowing into it, accumulates into leaves with +=, and frees saved tensors
// unless retain_graph. Backward runs with recording off (no double backward).
//
// Ops are written as one struct with forward and backward side by side (see engine/ops/op.hpp).
#pragma once

#include "engine/tensor.hpp"

#include <memory>
#include <string>
#include <vector>

namespace qforge {

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<autograd::Node> grad_fn;
};

namespace autograd {

// Where a gradient goes: into another node, or into a leaf tensor's .grad.
struct Edge {
  std::shared_ptr<Node> fn;
  std::shared_ptr<TensorImpl> leaf;
  bool active() const { return fn != nullptr || leaf != nullptr; }
};

struct Node {
  virtual ~Node() = default;
  // Gradients for each input (one per edge, undefined where not needed), given d(loss)/d(output).
  virtual std::vector<Tensor> backward(const Tensor& grad_output) = 0;
  virtual const char* name() const = 0;
  virtual void release_saved() = 0;
  std::vector<Edge> next;
  bool released = false;
};

Edge edge_of(const Tensor& t);  // inactive edge when t needs no grad

// Thread-local switch: while off, ops record nothing (eval, calibration, optimizer steps).
bool grad_mode_enabled();
void set_grad_mode(bool enabled);

class NoGradGuard {
public:
  NoGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(false); }
  ~NoGradGuard() { set_grad_mode(prev_); }
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

private:
  bool prev_;
};

class EnableGradGuard {
public:
  EnableGradGuard() : prev_(grad_mode_enabled()) { set_grad_mode(true); }
  ~EnableGradGuard() { set_grad_mode(prev_); }

private:
  bool prev_;
};

// Note [Saved tensor versions]
// An op that needs a tensor in backward keeps a SavedTensor: a detached alias (no grad_fn, so saving an
// op's own output makes no reference cycle) plus the storage version at save time. If anything wrote to
// that storage in place before backward, get() throws naming the op, instead of silently producing a
// wrong gradient (PyTorch's "modified by an inplace operation").
class SavedTensor {
public:
  SavedTensor() = default;
  SavedTensor(const Tensor& t);  // NOLINT: implicit on purpose, ops write `saved_x = x;`
  const Tensor& get(const char* op) const;
  bool defined() const { return tensor_.defined(); }
  void reset() { tensor_ = Tensor(); }

private:
  Tensor tensor_;
  uint64_t version_ = 0;
};

void run_backward(const Tensor& root, const Tensor& grad, bool retain_graph);

}  // namespace autograd

using autograd::NoGradGuard;

}  // namespace qforge
