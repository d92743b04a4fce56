// How an op is written (DESIGN.md §2: one op = one struct, forward and backward side by side).
//
//   struct MulOp : OpBase {
//     static constexpr const char* kName = "mul";
//     SavedTensor a, b;                                  // only what backward reads
//     Tensor forward(const Tensor& x, const Tensor& y) { if (recording) { a = x; b = y; } ... }
//     std::vector<Tensor> backward(const Tensor& g) {    // one gradient per input, in order
//       return {needs_grad(0) ? ... : Tensor(), needs_grad(1) ? ... : Tensor()};
//     }
//   };
//   Tensor mul(const Tensor& a, const Tensor& b) { return apply(MulOp{}, a, b); }
//
// apply() records a graph node only when grad mode is on and some input requires grad; forward runs
// with recording off, so helper ops called inside it leave no trace. Backward receives d(loss)/d(out)
// and must return gradients with exactly the inputs' shapes (use sum_to for broadcast inputs).
#pragma once

#include "engine/autograd.hpp"

#include <cstdint>
#include <memory>
#include <vector>

namespace qforge::ops {

using autograd::SavedTensor;

struct OpBase {
  bool recording = false;  // true when a node will be recorded: forward must save what backward needs
  uint64_t grad_mask = 0;  // bit i set: input i requires grad
  bool needs_grad(int i) const { return i >= 64 || ((grad_mask >> i) & 1u); }
};

template <class Op> struct OpNode final : autograd::Node {
  explicit OpNode(Op o) : op(std::move(o)) {}
  std::vector<Tensor> backward(const Tensor& grad_output) override { return op.backward(grad_output); }
  const char* name() const override { return Op::kName; }
  void release_saved() override { op = Op{}; }
  Op op;
};

template <class Op, class... Ts> Tensor apply(Op op, const Ts&... inputs) {
  static_assert(sizeof...(Ts) <= 64);
  bool record = false;
  if (autograd::grad_mode_enabled()) {
    int i = 0;
    ((op.grad_mask |= (inputs.defined() && inputs.requires_grad() ? uint64_t(1) << i : 0), ++i), ...);
    record = op.grad_mask != 0;
  }
  op.recording = record;
  Tensor out;
  {
    NoGradGuard guard;
    out = op.forward(inputs...);
  }
  if (record) {
    auto node = std::make_shared<OpNode<Op>>(std::move(op));
    node->next = {autograd::edge_of(inputs)...};
    out.set_grad_fn(std::move(node));
  }
  return out;
}

// Variadic-input form (concat, stack): forward(const std::vector<Tensor>&). At most 64 inputs need
// distinct grad bits; beyond that every input is treated as needing grad.
template <class Op> Tensor apply_list(Op op, const std::vector<Tensor>& inputs) {
  bool record = false;
  if (autograd::grad_mode_enabled()) {
    for (size_t i = 0; i < inputs.size(); ++i)
      if (inputs[i].defined() && inputs[i].requires_grad()) {
        op.grad_mask |= i < 64 ? uint64_t(1) << i : ~uint64_t(0);
        record = true;
      }
  }
  op.recording = record;
  Tensor out;
  {
    NoGradGuard guard;
    out = op.forward(inputs);
  }
  if (record) {
    auto node = std::make_shared<OpNode<Op>>(std::move(op));
    node->next.reserve(inputs.size());
    for (const auto& t : inputs) node->next.push_back(autograd::edge_of(t));
    out.set_grad_fn(std::move(node));
  }
  return out;
}

}  // namespace qforge::ops
