#include "nn/graph.hpp"

namespace qforge::nn {

Graph::Graph(std::vector<std::string> input_names) : Module("Graph"), input_names_(std::move(input_names)) {
  QFORGE_CHECK(!input_names_.empty(), "Graph: needs at least one input");
}

int Graph::node_index(const std::string& name) const {
  for (size_t i = 0; i < nodes_.size(); ++i)
    if (nodes_[i].name == name) return static_cast<int>(i);
  return -1;
}

int Graph::add_node(const std::string& name, ModulePtr module, std::vector<ValueRef> inputs) {
  QFORGE_CHECK(!name.empty(), "Graph: empty node name");
  QFORGE_CHECK(node_index(name) < 0, "Graph: duplicate node name '{}'", name);
  QFORGE_CHECK(module != nullptr, "Graph: node '{}' has no module", name);
  const int self = static_cast<int>(nodes_.size());
  for (const auto& r : inputs) {
    if (r.node == ValueRef::kModelInput)
      QFORGE_CHECK(r.index >= 0 && r.index < static_cast<int>(input_names_.size()),
                   "Graph: node '{}' uses model input {} of {}", name, r.index, input_names_.size());
    else
      QFORGE_CHECK(r.node >= 0 && r.node < self && r.index >= 0, "Graph: node '{}' uses node #{} output {} which is not an earlier node",
                   name, r.node, r.index);
  }
  register_child(name, module);
  nodes_.push_back({name, std::move(module), std::move(inputs)});
  return self;
}

void Graph::replace_node_module(int index, ModulePtr module) {
  QFORGE_CHECK(index >= 0 && index < static_cast<int>(nodes_.size()), "Graph: no node #{} (graph has {})", index,
               nodes_.size());
  QFORGE_CHECK(module != nullptr, "Graph: node '{}' cannot be replaced by a null module", nodes_[index].name);
  register_child(nodes_[index].name, module);
  nodes_[index].module = std::move(module);
}

void Graph::set_outputs(std::vector<ValueRef> outputs) {
  for (const auto& r : outputs)
    QFORGE_CHECK(r.node == ValueRef::kModelInput ? r.index < static_cast<int>(input_names_.size())
                                                 : r.node < static_cast<int>(nodes_.size()),
                 "Graph: output reference out of range");
  outputs_ = std::move(outputs);
}

std::string Graph::ref_name(const ValueRef& r) const {
  if (r.node == ValueRef::kModelInput) return input_names_.at(r.index);
  const std::string& n = nodes_.at(r.node).name;
  return r.index == 0 ? n : fmt::format("{}:{}", n, r.index);
}

std::vector<Tensor> Graph::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(inputs.size() == input_names_.size(), "Graph: expects {} inputs ({}), got {}", input_names_.size(),
               fmt::join(input_names_, ", "), inputs.size());
  QFORGE_CHECK(!nodes_.empty(), "Graph: no nodes");
  // Last use of each node's outputs, so intermediate values are released as soon as possible.
  std::vector<int> last_use(nodes_.size(), -1);
  for (size_t i = 0; i < nodes_.size(); ++i)
    for (const auto& r : nodes_[i].inputs)
      if (r.node >= 0) last_use[r.node] = static_cast<int>(i);
  std::vector<ValueRef> outs = outputs_;
  if (outs.empty()) outs.push_back({static_cast<int>(nodes_.size()) - 1, -1});  // -1: all outputs
  for (const auto& r : outs)
    if (r.node >= 0) last_use[r.node] = static_cast<int>(nodes_.size());

  std::vector<std::vector<Tensor>> values(nodes_.size());
  auto get = [&](const ValueRef& r, const std::string& user) -> Tensor {
    if (r.node == ValueRef::kModelInput) return inputs[r.index];
    const auto& v = values[r.node];
    QFORGE_CHECK(r.index < static_cast<int>(v.size()), "Graph: node '{}' uses output {} of '{}', which has {} outputs",
                 user, r.index, nodes_[r.node].name, v.size());
    return v[r.index];
  };
  for (size_t i = 0; i < nodes_.size(); ++i) {
    auto& node = nodes_[i];
    std::vector<Tensor> in;
    in.reserve(node.inputs.size());
    for (const auto& r : node.inputs) in.push_back(get(r, node.name));
    // A failing layer (a shape mismatch, an uncalibrated quantizer) is named by its node in the message.
    try {
      values[i] = (*node.module)(in);
    } catch (const InputError& e) {
      throw InputError(fmt::format("node '{}' ({}): {}", node.name, node.module->type_name(), e.what()));
    } catch (const Error& e) {
      throw Error(fmt::format("node '{}' ({}): {}", node.name, node.module->type_name(), e.what()));
    }
    for (const auto& r : node.inputs)
      if (r.node >= 0 && last_use[r.node] == static_cast<int>(i)) values[r.node].clear();
  }
  std::vector<Tensor> result;
  for (const auto& r : outs) {
    if (r.index == -1) {
      const auto& v = values[r.node];
      result.insert(result.end(), v.begin(), v.end());
    } else {
      result.push_back(get(r, "<output>"));
    }
  }
  return result;
}

std::string Graph::to_string_graph() const {
  std::string s;
  for (const auto& n : nodes_) {
    std::vector<std::string> ins;
    for (const auto& r : n.inputs) ins.push_back(ref_name(r));
    s += fmt::format("{} = {}({})\n", n.name, n.module->type_name(), fmt::join(ins, ", "));
  }
  return s;
}

}  // namespace qforge::nn
