// Internal to nn/onnx/: the state of one import while the ONNX nodes are folded or lowered to spec nodes.
//
// Note [Lowering ONNX]
// Nodes are visited in the file's (topological) order. Each ONNX value is either
//   - a constant known at import (initializers, Constant nodes, and every node whose inputs are all
//     constant and whose op the folder knows: Shape of a value with a known shape, Gather, Concat, ...),
//   - or a run-time value: a reference to a qforge spec node output ("node" / "node:k") or model input.
// A node with run-time inputs is lowered by its op's rule (lower_ops.cpp, lower_shape.cpp,
// lower_recurrent.cpp) into one or more spec nodes; weights come from constant inputs. A constant used
// where a run-time operand is needed (Mul by a scale, Concat with a constant) becomes a Constant node.
// Small patterns are fused while lowering: MatMul + Add(bias) -> Linear, x * HardSigmoid(x) (torch's
// opset < 14 hardswish) -> Hardswish, LSTM's Y + the Transpose/Reshape or Squeeze torch puts after it.
// Unsupported ops or attribute values throw InputError naming the node (op type and name) and why.
#pragma once

#include "nn/onnx/onnx_model.hpp"
#include "nn/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace qforge::nn::onnx_import {

using json = nlohmann::json;
using Node = ::onnx::NodeProto;

struct Value {
  std::optional<ConstTensor> constant;
  std::string ref;      // run-time value: spec reference
  int batch_axis = -1;  // which dimension is the batch (Note [Batch provenance]); -1 none/unknown
};

class Lowerer {
public:
  explicit Lowerer(LoadedModel& model);

  // Runs the whole import; fills spec_, weights_, tensor_names_, report pieces.
  void run();
  // Folds what can be folded and nothing else (Note [Shape refinement] in onnx_model.hpp): the constants
  // computed, by ONNX value name (initializers excluded).
  std::map<std::string, const ConstTensor*> fold_only();

  json spec() const;
  TensorMap& weights() { return weights_; }
  json census() const;
  int64_t folded() const { return folded_; }
  int64_t removed() const { return removed_; }
  const std::vector<std::string>& notes() const { return notes_; }

  // ---- used by the op rules ------------------------------------------------------------------------
  [[noreturn]] void fail(const Node& n, const std::string& why) const;
  const Value& value(const Node& n, int i) const;  // input i (must exist)
  bool has_input(const Node& n, int i) const { return i < n.input_size() && !n.input(i).empty(); }
  bool is_const(const Node& n, int i) const { return has_input(n, i) && value(n, i).constant.has_value(); }
  const ConstTensor& const_input(const Node& n, int i, const std::string& what) const;
  std::vector<int64_t> const_ints(const Node& n, int i, const std::string& what) const;
  // The reference of input i as a run-time value (a constant becomes a Constant node).
  std::string ref(const Node& n, int i);
  // Shape of an ONNX value from shape inference; nullopt when unknown. known_shape() fails instead.
  std::optional<Shape> shape_of(const std::string& name) const;
  Shape known_shape(const Node& n, const std::string& name, const std::string& why) const;
  int64_t rank_of(const Node& n, int i) const;

  // Attributes.
  const ::onnx::AttributeProto* attr(const Node& n, const std::string& name) const;
  int64_t attr_int(const Node& n, const std::string& name, int64_t dflt) const;
  float attr_float(const Node& n, const std::string& name, float dflt) const;
  std::string attr_string(const Node& n, const std::string& name, const std::string& dflt) const;
  std::vector<int64_t> attr_ints(const Node& n, const std::string& name, std::vector<int64_t> dflt = {}) const;
  // Fails when the node has an attribute outside `known`.
  void only_attrs(const Node& n, std::initializer_list<const char*> known) const;

  // Emits a spec node; returns its name. `params`: its state_dict tensors as {leaf, tensor, stored name}
  // (stored name "" = keep the qforge key). `name_hint` decides the node name (Note [Imported names]).
  struct Param {
    std::string leaf;
    Tensor t;
    std::string stored;
  };
  std::string emit(const Node& n, const std::string& type, json args, std::vector<std::string> inputs,
                   std::vector<Param> params = {}, const std::string& weight_name = "");
  // Records the ONNX output `i` of `n` as run-time value `ref`.
  void set_output(const Node& n, int i, std::string ref, int batch_axis);
  void set_output_const(const Node& n, int i, ConstTensor c);
  void alias_output(const Node& n, int i, const std::string& onnx_value);  // output i is that value
  // Census: how node `n` was handled ("Conv2d", "folded", "removed", "fused into Linear").
  void count(const Node& n, const std::string& as);
  // The unique consumer node of value `name`, or nullptr (several, none, or a graph output).
  const Node* sole_consumer(const std::string& name) const;
  void skip(const Node& n) { skipped_.insert(&n); }  // fused into an earlier node: not lowered again
  int64_t opset() const { return model_.opset; }

private:
  void lower_node(const Node& n);
  std::string unique_name(const std::string& base);
  std::string node_name(const Node& n, const std::string& weight_name, bool has_params);
  void finish_tensor_names();

  LoadedModel& model_;
  std::map<std::string, Value> values_;
  std::map<std::string, std::vector<const Node*>> consumers_;
  std::set<std::string> graph_outputs_;
  std::set<const Node*> skipped_;
  std::set<std::string> used_names_;
  std::set<std::string> param_scopes_;  // scopes holding a weight-carrying op (Note [Imported names])
  std::map<std::string, std::string> const_nodes_;  // ONNX value name -> its Constant spec node
  std::vector<std::string> input_names_;
  json nodes_ = json::array();
  std::vector<std::string> outputs_;
  TensorMap weights_;
  std::vector<std::pair<std::string, std::string>> stored_candidates_;  // state_dict key -> stored name
  std::map<std::string, std::string> tensor_names_;
  std::map<std::string, std::map<std::string, int64_t>> census_;
  int64_t folded_ = 0, removed_ = 0;
  std::vector<std::string> notes_;
};

// Op rules: each lowers one ONNX op type (or returns false from try_fold when it cannot fold).
using OpRule = std::function<void(Lowerer&, const Node&)>;
const std::map<std::string, OpRule>& op_rules();         // lower_ops.cpp (+ shape and recurrent rules)
void add_shape_rules(std::map<std::string, OpRule>& r);  // lower_shape.cpp
void add_recurrent_rules(std::map<std::string, OpRule>& r);  // lower_recurrent.cpp
// Folds `n` when every input is constant (or it is Shape of a known shape); false when it cannot.
bool try_fold(Lowerer& L, const Node& n);  // fold.cpp

// Helpers shared by the rules.
std::string scope_of(const std::string& onnx_name);  // "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1"
int64_t normalize_axis(const Lowerer& L, const Node& n, int64_t axis, int64_t rank);

}  // namespace qforge::nn::onnx_import
