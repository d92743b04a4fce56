// The import driver: values, node naming, spec emission (Note [Lowering ONNX] in lower.hpp).
#include "nn/onnx/lower.hpp"

#include <algorithm>

namespace qforge::nn::onnx_import {

namespace {

// Op types whose lowering carries weights: their scope names the qforge node (Note [Imported names]).
bool carries_weights(const Node& n, const std::set<std::string>& inits) {
  const std::string& t = n.op_type();
  if (t == "Conv" || t == "Gemm" || t == "BatchNormalization" || t == "LSTM" || t == "GRU" || t == "RNN") return true;
  if (t == "MatMul") return n.input_size() > 1 && inits.count(n.input(1));
  if (t == "Gather") return n.input_size() > 0 && inits.count(n.input(0));
  return false;
}

std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-') ? c : '_';
  while (!out.empty() && out.front() == '.') out.erase(out.begin());
  while (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

}  // namespace

// Note [Imported names]
// torch.onnx (1.13) names nodes by module scope: "/features/features.1/block/block.0/block.0.0/Conv". Each
// component is either a child's local name or "<previous component>.<local name>" (a container's child),
// so the module path is the join of the local names: "features.1.block.0.0". A node that carries weights
// is named by its weight's initializer prefix ("fc" for "fc.weight") or else by that module path, so
// state_dict keys read as in the PyTorch model ("features.1.block.0.0.weight"). A weight-free node takes
// the module path when its scope is a leaf module without a weight-carrying op ("layer1.0.relu"), else
// path + "." + its op name ("layer1.0.Add"). Other producers' names are sanitized; duplicates get "_k".
std::string scope_of(const std::string& onnx_name) {
  if (onnx_name.empty() || onnx_name[0] != '/') return "";
  std::vector<std::string> comps;
  size_t pos = 1;
  while (true) {
    const size_t next = onnx_name.find('/', pos);
    if (next == std::string::npos) break;  // the last component is the op itself
    comps.push_back(onnx_name.substr(pos, next - pos));
    pos = next + 1;
  }
  std::string path, prev;
  for (const auto& c : comps) {
    const std::string local = (!prev.empty() && c.rfind(prev + ".", 0) == 0) ? c.substr(prev.size() + 1) : c;
    path = path.empty() ? local : path + "." + local;
    prev = c;
  }
  return path;
}

Lowerer::Lowerer(LoadedModel& model) : model_(model) {
  const auto& g = model_.proto.graph();
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) inits.insert(t.name());
  for (const auto& n : g.node()) {
    for (const auto& in : n.input())
      if (!in.empty()) consumers_[in].push_back(&n);
    if (carries_weights(n, inits)) param_scopes_.insert(scope_of(n.name()));
  }
  for (const auto& o : g.output()) graph_outputs_.insert(o.name());
}

void Lowerer::fail(const Node& n, const std::string& why) const {
  throw InputError(fmt::format("{}: {}: {}", model_.path.string(), node_label(n), why));
}

const Value& Lowerer::value(const Node& n, int i) const {
  if (!has_input(n, i)) fail(n, fmt::format("input {} is missing", i));
  auto it = values_.find(n.input(i));
  if (it == values_.end()) fail(n, fmt::format("input '{}' is not produced by any earlier node", n.input(i)));
  return it->second;
}

const ConstTensor& Lowerer::const_input(const Node& n, int i, const std::string& what) const {
  const Value& v = value(n, i);
  if (!v.constant) fail(n, fmt::format("{} (input {} '{}') must be a constant (an initializer or computable at import)", what, i, n.input(i)));
  return *v.constant;
}

std::vector<int64_t> Lowerer::const_ints(const Node& n, int i, const std::string& what) const {
  const ConstTensor& c = const_input(n, i, what);
  if (c.is_float()) fail(n, fmt::format("{} must be integers, got {}", what, type_name(c.type)));
  return c.ints;
}

std::string Lowerer::ref(const Node& n, int i) {
  const Value& v = value(n, i);
  if (!v.constant) return v.ref;
  const std::string& name = n.input(i);
  if (auto it = const_nodes_.find(name); it != const_nodes_.end()) return it->second;
  const ConstTensor& c = *v.constant;
  Tensor t = c.is_float() ? c.f : Tensor::from_vector(std::vector<float>(c.ints.begin(), c.ints.end()), c.dims);
  if (!c.is_float() && c.type != ::onnx::TensorProto::BOOL)
    notes_.push_back(fmt::format("{}: integer constant '{}' used as a float operand", node_label(n), name));
  std::string base = sanitize(scope_of(n.name()));
  base = base.empty() ? sanitize(name) : base + ".const";
  const std::string node = unique_name(base.empty() ? "const" : base);
  nodes_.push_back({{"name", node}, {"type", "Constant"}, {"args", {{"shape", c.dims}}}, {"inputs", json::array()}});
  weights_[node + ".value"] = t;
  stored_candidates_.push_back({node + ".value", name});
  census_["Constant (operand)"]["Constant"] += 1;
  const_nodes_[name] = node;
  return node;
}

std::optional<Shape> Lowerer::shape_of(const std::string& name) const {
  auto it = model_.shapes.find(name);
  if (it == model_.shapes.end()) return std::nullopt;
  return it->second;
}

Shape Lowerer::known_shape(const Node& n, const std::string& name, const std::string& why) const {
  auto s = shape_of(name);
  if (!s) fail(n, fmt::format("the shape of '{}' cannot be resolved ({}); give the input shapes with --input-shape", name, why));
  for (int64_t d : *s)
    if (d < 0)
      fail(n, fmt::format("the shape of '{}' is {} with a dynamic dimension ({}); give the input shapes with --input-shape",
                          name, shape_str(*s), why));
  return *s;
}

int64_t Lowerer::rank_of(const Node& n, int i) const {
  if (auto s = shape_of(n.input(i))) return static_cast<int64_t>(s->size());
  const Value& v = value(n, i);
  if (v.constant) return static_cast<int64_t>(v.constant->dims.size());
  fail(n, fmt::format("the rank of '{}' is unknown (shape inference could not resolve it)", n.input(i)));
}

int64_t normalize_axis(const Lowerer& L, const Node& n, int64_t axis, int64_t rank) {
  if (axis < -rank || axis >= rank) L.fail(n, fmt::format("axis {} is out of range for rank {}", axis, rank));
  return axis < 0 ? axis + rank : axis;
}

const ::onnx::AttributeProto* Lowerer::attr(const Node& n, const std::string& name) const {
  for (const auto& a : n.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t Lowerer::attr_int(const Node& n, const std::string& name, int64_t dflt) const {
  const auto* a = attr(n, name);
  if (!a) return dflt;
  if (a->type() != ::onnx::AttributeProto::INT) fail(n, fmt::format("attribute '{}' must be an integer", name));
  return a->i();
}
float Lowerer::attr_float(const Node& n, const std::string& name, float dflt) const {
  const auto* a = attr(n, name);
  if (!a) return dflt;
  if (a->type() != ::onnx::AttributeProto::FLOAT) fail(n, fmt::format("attribute '{}' must be a float", name));
  return a->f();
}
std::string Lowerer::attr_string(const Node& n, const std::string& name, const std::string& dflt) const {
  const auto* a = attr(n, name);
  if (!a) return dflt;
  if (a->type() != ::onnx::AttributeProto::STRING) fail(n, fmt::format("attribute '{}' must be a string", name));
  return a->s();
}
std::vector<int64_t> Lowerer::attr_ints(const Node& n, const std::string& name, std::vector<int64_t> dflt) const {
  const auto* a = attr(n, name);
  if (!a) return dflt;
  if (a->type() != ::onnx::AttributeProto::INTS) fail(n, fmt::format("attribute '{}' must be a list of integers", name));
  return {a->ints().begin(), a->ints().end()};
}
void Lowerer::only_attrs(const Node& n, std::initializer_list<const char*> known) const {
  for (const auto& a : n.attribute())
    if (std::none_of(known.begin(), known.end(), [&](const char* k) { return a.name() == k; }))
      fail(n, fmt::format("attribute '{}' is not supported", a.name()));
}

std::string Lowerer::unique_name(const std::string& base) {
  std::string name = base;
  for (int k = 1; used_names_.count(name) || std::find(input_names_.begin(), input_names_.end(), name) != input_names_.end(); ++k)
    name = fmt::format("{}_{}", base, k);
  used_names_.insert(name);
  return name;
}

std::string Lowerer::node_name(const Node& n, const std::string& weight_name, bool has_params) {
  // Note [Imported names]
  if (has_params && weight_name.size() > 7 && weight_name.rfind(".weight") == weight_name.size() - 7 &&
      weight_name.find("::") == std::string::npos)
    return unique_name(sanitize(weight_name.substr(0, weight_name.size() - 7)));
  const std::string scope = sanitize(scope_of(n.name()));
  if (!scope.empty() || (!n.name().empty() && n.name()[0] == '/')) {
    const std::string op = sanitize(n.name().substr(n.name().rfind('/') + 1));
    if (scope.empty()) return unique_name(op.empty() ? n.op_type() : op);
    bool leaf = true;
    for (const auto& s : param_scopes_)
      if (s.rfind(scope + ".", 0) == 0) leaf = false;
    if (has_params || (leaf && !param_scopes_.count(scope) && !used_names_.count(scope))) return unique_name(scope);
    return unique_name(scope + "." + op);
  }
  const std::string s = sanitize(n.name());
  return unique_name(s.empty() ? n.op_type() : s);
}

std::string Lowerer::emit(const Node& n, const std::string& type, json args, std::vector<std::string> inputs,
                          std::vector<Param> params, const std::string& weight_name) {
  const std::string name = node_name(n, weight_name, !params.empty());
  nodes_.push_back({{"name", name}, {"type", type}, {"args", std::move(args)}, {"inputs", std::move(inputs)}});
  for (auto& p : params) {
    const std::string key = name + "." + p.leaf;
    weights_[key] = p.t;
    if (!p.stored.empty()) stored_candidates_.push_back({key, p.stored});
  }
  return name;
}

void Lowerer::set_output(const Node& n, int i, std::string r, int batch_axis) {
  if (i >= n.output_size() || n.output(i).empty()) return;
  Value v;
  v.ref = std::move(r);
  v.batch_axis = batch_axis;
  values_[n.output(i)] = std::move(v);
}

void Lowerer::set_output_const(const Node& n, int i, ConstTensor c) {
  if (i >= n.output_size() || n.output(i).empty()) return;
  Value v;
  v.constant = std::move(c);
  values_[n.output(i)] = std::move(v);
}

void Lowerer::alias_output(const Node& n, int i, const std::string& onnx_value) {
  if (i >= n.output_size() || n.output(i).empty()) return;
  auto it = values_.find(onnx_value);
  if (it == values_.end()) fail(n, fmt::format("input '{}' is not produced by any earlier node", onnx_value));
  values_[n.output(i)] = it->second;
}

void Lowerer::count(const Node& n, const std::string& as) {
  census_[n.op_type()][as] += 1;
  if (as == "folded") ++folded_;
  if (as == "removed") ++removed_;
}

const Node* Lowerer::sole_consumer(const std::string& name) const {
  if (graph_outputs_.count(name)) return nullptr;
  auto it = consumers_.find(name);
  if (it == consumers_.end() || it->second.size() != 1) return nullptr;
  return it->second[0];
}

void Lowerer::lower_node(const Node& n) {
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    fail(n, fmt::format("operators of domain '{}' are not supported", n.domain()));
  if (try_fold(*this, n)) {
    count(n, "folded");
    return;
  }
  const auto& rules = op_rules();
  auto it = rules.find(n.op_type());
  if (it == rules.end()) {
    std::vector<std::string> known;
    for (const auto& [k, v] : rules) known.push_back(k);
    fail(n, fmt::format("op type {} is not supported (supported: {})", n.op_type(), fmt::join(known, ", ")));
  }
  for (int i = 0; i < n.input_size(); ++i)
    if (!n.input(i).empty()) value(n, i);  // every input must exist
  it->second(*this, n);
}

void Lowerer::run() {
  const auto& g = model_.proto.graph();
  for (const auto& t : g.initializer()) {
    Value v;
    v.constant = decode_tensor(t, model_.path.parent_path(), fmt::format("{}: initializer '{}'", model_.path.string(), t.name()));
    values_[t.name()] = std::move(v);
  }
  for (const auto& in : g.input()) {
    if (values_.count(in.name())) continue;
    std::string name = in.name();
    // A reference "x:0" would read as output 0 of node x (nn/spec.hpp): such names are rewritten.
    if (name.find(':') != std::string::npos) {
      std::string fixed = name;
      std::replace(fixed.begin(), fixed.end(), ':', '_');
      notes_.push_back(fmt::format("input '{}' is named '{}' in the model spec", name, fixed));
      name = fixed;
    }
    input_names_.push_back(name);
    Value v;
    v.ref = name;
    v.batch_axis = 0;
    values_[in.name()] = std::move(v);
  }
  if (input_names_.empty()) throw InputError(fmt::format("{}: the graph has no inputs (only initializers)", model_.path.string()));
  // Constant nodes first: they have no inputs, and the patterns fused while lowering look ahead at
  // consumers whose constant operands (Squeeze axes, Reshape targets) may come later in the file.
  for (const auto& n : g.node())
    if (n.op_type() == "Constant" && (n.domain().empty() || n.domain() == "ai.onnx")) {
      try_fold(*this, n);
      count(n, "folded");
      skipped_.insert(&n);
    }
  for (const auto& n : g.node()) {
    if (skipped_.count(&n)) continue;
    lower_node(n);
  }
  for (const auto& o : g.output()) {
    auto it = values_.find(o.name());
    if (it == values_.end()) throw InputError(fmt::format("{}: graph output '{}' is not produced by any node", model_.path.string(), o.name()));
    if (it->second.constant) {
      // A constant output (rare): a Constant node so that the model still returns it.
      Node fake;
      fake.set_name(o.name());
      fake.set_op_type("Constant");
      fake.add_input(o.name());
      outputs_.push_back(ref(fake, 0));
      continue;
    }
    const std::string& r = it->second.ref;
    if (std::find(input_names_.begin(), input_names_.end(), r) != input_names_.end()) {
      Node fake;
      fake.set_name(o.name());
      fake.set_op_type("Identity");
      outputs_.push_back(emit(fake, "Identity", json::object(), {r}));
      continue;
    }
    outputs_.push_back(r);
  }
  if (nodes_.empty()) throw InputError(fmt::format("{}: nothing left to run after folding constants", model_.path.string()));
  finish_tensor_names();
}

std::map<std::string, const ConstTensor*> Lowerer::fold_only() {
  const auto& g = model_.proto.graph();
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) {
    inits.insert(t.name());
    Value v;
    v.constant = decode_tensor(t, model_.path.parent_path(), fmt::format("{}: initializer '{}'", model_.path.string(), t.name()));
    values_[t.name()] = std::move(v);
  }
  for (const auto& in : g.input())
    if (!values_.count(in.name())) values_[in.name()].ref = in.name();
  for (const auto& n : g.node()) {
    bool inputs_known = true;
    for (const auto& in : n.input()) inputs_known = inputs_known && (in.empty() || values_.count(in));
    if (!inputs_known || !(n.domain().empty() || n.domain() == "ai.onnx") || !try_fold(*this, n))
      for (const auto& o : n.output()) values_[o].ref = o;
  }
  std::map<std::string, const ConstTensor*> out;
  for (const auto& [name, v] : values_)
    if (v.constant && !inits.count(name)) out[name] = &*v.constant;
  return out;
}

void Lowerer::finish_tensor_names() {
  // Note [Tensor names] (nn/graph.hpp): each weight keeps the ONNX name its node referenced, unless that
  // name is taken (a weight shared by two nodes) or is the qforge key of another tensor.
  std::set<std::string> assigned;
  for (const auto& [key, stored] : stored_candidates_) {
    if (stored == key || assigned.count(stored) || (weights_.count(stored) && stored != key)) continue;
    assigned.insert(stored);
    tensor_names_[key] = stored;
  }
}

json Lowerer::spec() const {
  json s = {{"inputs", input_names_}, {"nodes", nodes_}, {"outputs", outputs_}};
  if (!tensor_names_.empty()) s["tensor_names"] = tensor_names_;
  return s;
}

json Lowerer::census() const {
  json j = json::object();
  for (const auto& [op, ways] : census_) {
    int64_t total = 0;
    for (const auto& [w, c] : ways) total += c;
    j[op] = {{"count", total}, {"lowered_as", ways}};
  }
  return j;
}

}  // namespace qforge::nn::onnx_import
