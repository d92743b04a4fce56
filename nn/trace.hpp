// Tracing: run a model once and record its module-level graph.
//
// trace(model, inputs) runs model(inputs) with a CallObserver installed (Note [Module call] in
// module.hpp) and records one TraceNode per call of a *leaf* module — a module whose trace_as_leaf() is
// true (by default: no children; recurrent layers, Add and every layer in nn/layers.hpp are leaves;
// Graph, Sequential and hand-written composite modules are looked through). Modules called inside a leaf
// are part of that leaf. The result is the structure later passes (quantizer placement, BN folding,
// cross-layer equalisation) work on: which leaf ran, under which dotted name, fed by which producers.
//
// Note [Trace data flow]
// A node's input is matched to the value that produced it, in this order:
//   1. the same tensor (handle identity) as a recorded output or model input;
//   2. a tensor derived from recorded values by functional ops between modules (x.flatten(), x + y,
//      torch.cat-like code in a hand-written forward): found by walking the autograd graph backwards
//      from the input until recorded outputs/model inputs are reached (possibly several: `sources`);
//   3. a view sharing storage with a recorded value (integer tensors have no autograd graph);
//   4. otherwise no source (a constant or a tensor made from parameters).
// To make step 2 possible the tracer runs with grad mode on and floating model inputs requiring grad.
// The model is traced in eval mode (each module's mode is restored afterwards) so tracing changes no
// state (BatchNorm running statistics, Dropout generators). The graph keeps shapes, not tensors.
#pragma once

#include "nn/module.hpp"

#include <string>
#include <vector>

namespace qforge::nn {

struct TraceSource {
  static constexpr int kModelInput = -1;
  int node = kModelInput;  // producing node id, or kModelInput
  int index = 0;           // output index of the node, or model input index
  bool direct = true;      // false: reached through functional ops (Note [Trace data flow] step 2/3)
  bool operator==(const TraceSource& o) const { return node == o.node && index == o.index; }
};

struct TraceInput {
  std::vector<TraceSource> sources;  // usually one; empty: no traced source (constant)
  Shape shape;
  DType dtype = DType::f32;
  // The single direct-or-derived source when there is exactly one; else throws.
  const TraceSource& source() const;
};

struct TraceNode {
  int id = 0;
  ModulePtr module;
  std::string name;  // dotted path from the traced root ("" if the root itself is a leaf)
  std::string type;  // module->type_name()
  int call = 0;      // 0 for the first call of this module, 1 for the second, ...
  std::vector<TraceInput> inputs;
  std::vector<Shape> output_shapes;
};

class TracedGraph {
public:
  const std::vector<TraceNode>& nodes() const { return nodes_; }
  const TraceNode& node(int id) const { return nodes_.at(id); }
  size_t size() const { return nodes_.size(); }
  int num_model_inputs() const { return num_inputs_; }
  // Where each model output comes from.
  const std::vector<TraceInput>& model_outputs() const { return outputs_; }

  // Node ids with this dotted name (several if the module was called more than once).
  std::vector<int> find(const std::string& name) const;
  int find_one(const std::string& name) const;  // the first call; throws if absent
  std::vector<int> nodes_of_type(const std::string& type) const;
  // Consumers of a node's outputs: (consumer id, input slot); model outputs are not listed.
  std::vector<std::pair<int, int>> consumers(int id) const;
  // Distinct producer node ids of a node's inputs (model inputs excluded).
  std::vector<int> producers(int id) const;
  // Whether any model output comes from the node.
  bool feeds_model_output(int id) const;

  // One line per node: "#3 block1.conv1 Conv2d [1,16,28,28] <- #2:0"
  std::string to_string() const;

private:
  friend class Tracer;
  friend TracedGraph trace(Module& model, const std::vector<Tensor>& inputs, const struct TraceOptions& opt);
  std::vector<TraceNode> nodes_;
  std::vector<TraceInput> outputs_;
  int num_inputs_ = 0;
};

struct TraceOptions {
  bool eval_mode = true;  // trace in eval mode (restoring every module's mode afterwards)
};

TracedGraph trace(Module& model, const std::vector<Tensor>& inputs, const TraceOptions& opt = {});

}  // namespace qforge::nn
