// nn::Graph: a model as an ordered list of named nodes (the module built from a model spec).
//
// Each node is a child Module registered under the node's name (names may contain dots, e.g.
// "block2.proj.conv", so state_dict keys read "block2.proj.conv.weight" as in the nested PyTorch model)
// and a list of input references. A reference names either a model input or one output of an earlier
// node. forward() evaluates the nodes in list order and returns the graph outputs (by default every
// output of the last node). Residual models are expressed by giving a node (Add) two inputs.
#pragma once

#include "nn/module.hpp"

#include <map>
#include <string>
#include <vector>

namespace qforge::nn {

// A value in the graph: output `index` of node `node`, or (node == kModelInput) model input `index`.
struct ValueRef {
  static constexpr int kModelInput = -1;
  int node = kModelInput;
  int index = 0;
  bool operator==(const ValueRef&) const = default;
};

struct GraphNode {
  std::string name;
  ModulePtr module;
  std::vector<ValueRef> inputs;
};

class Graph : public Module {
public:
  explicit Graph(std::vector<std::string> input_names = {"input"});

  // Appends a node; inputs may only reference model inputs and earlier nodes. Returns its index.
  int add_node(const std::string& name, ModulePtr module, std::vector<ValueRef> inputs);
  // The graph outputs; default (empty) = every output of the last node.
  void set_outputs(std::vector<ValueRef> outputs);
  const std::vector<ValueRef>& outputs() const { return outputs_; }

  const std::vector<GraphNode>& nodes() const { return nodes_; }
  // Swaps the module of an existing node (same name and inputs); used by passes that replace layers
  // (cross-layer equalization: ReLU6 -> ReLU).
  void replace_node_module(int index, ModulePtr module);
  const std::vector<std::string>& input_names() const { return input_names_; }
  int node_index(const std::string& name) const;  // -1 if absent
  // "input", "conv1", "lstm:1" — the spelling used in model specs.
  std::string ref_name(const ValueRef& r) const;

  std::string to_string_graph() const;  // one line per node: "name = Type(inputs)"

  // Note [Tensor names]: the names state_dict entries are stored under in weights files, when they differ
  // from the state_dict key (an imported ONNX model keeps its initializer names, e.g. "conv1.weight" ->
  // "onnx::Conv_193"). model.json's "tensor_names"; nn/weights_io.cpp translates through it on save/load.
  const std::map<std::string, std::string>& tensor_names() const { return tensor_names_; }
  void set_tensor_names(std::map<std::string, std::string> names) { tensor_names_ = std::move(names); }

protected:
  std::vector<Tensor> forward(const std::vector<Tensor>& inputs) override;

private:
  std::vector<std::string> input_names_;
  std::vector<GraphNode> nodes_;
  std::vector<ValueRef> outputs_;
  std::map<std::string, std::string> tensor_names_;
};

}  // namespace qforge::nn
