#include "nn/spec.hpp"

#include "engine/autograd.hpp"
#include "engine/json_util.hpp"
#include "nn/layers.hpp"

#include "nn/recurrent.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>

namespace qforge::nn {

using json = nlohmann::json;

namespace {

// Reads a node's "args" object, checking types; finish() rejects arguments nobody read.
class ArgReader {
public:
  ArgReader(const json& args, std::string where) : args_(args), where_(std::move(where)) {
    if (!args_.is_object()) fail(fmt::format("\"args\" must be an object, got {}", json_excerpt(args_)));
  }

  [[noreturn]] void fail(const std::string& msg) const { throw InputError(fmt::format("{}: {}", where_, msg)); }

  bool has(const std::string& k) const { return args_.contains(k); }

  int64_t integer(const std::string& k, std::optional<int64_t> dflt = std::nullopt) {
    const json* v = take(k, dflt.has_value());
    if (!v) return *dflt;
    if (!v->is_number_integer()) fail(fmt::format("argument '{}' must be an integer, got {}", k, json_excerpt(*v)));
    return bounded(k, *v);
  }
  double number(const std::string& k, std::optional<double> dflt = std::nullopt) {
    const json* v = take(k, dflt.has_value());
    if (!v) return *dflt;
    if (!v->is_number()) fail(fmt::format("argument '{}' must be a number, got {}", k, json_excerpt(*v)));
    if (!std::isfinite(v->get<double>())) fail(fmt::format("argument '{}' must be finite", k));
    return v->get<double>();
  }
  std::optional<double> optional_number(const std::string& k, std::optional<double> dflt) {
    const json* v = take(k, true);
    if (!v) return dflt;
    if (v->is_null()) return std::nullopt;
    if (!v->is_number()) fail(fmt::format("argument '{}' must be a number or null, got {}", k, json_excerpt(*v)));
    if (!std::isfinite(v->get<double>())) fail(fmt::format("argument '{}' must be finite", k));
    return v->get<double>();
  }
  bool boolean(const std::string& k, std::optional<bool> dflt = std::nullopt) {
    const json* v = take(k, dflt.has_value());
    if (!v) return *dflt;
    if (!v->is_boolean()) fail(fmt::format("argument '{}' must be true or false, got {}", k, json_excerpt(*v)));
    return v->get<bool>();
  }
  // An integer or a list of two integers.
  Pair pair(const std::string& k, std::optional<Pair> dflt = std::nullopt) {
    const json* v = take(k, dflt.has_value());
    if (!v) return *dflt;
    if (v->is_number_integer()) return {bounded(k, *v), bounded(k, *v)};
    if (v->is_array() && v->size() == 2 && (*v)[0].is_number_integer() && (*v)[1].is_number_integer())
      return {bounded(k, (*v)[0]), bounded(k, (*v)[1])};
    fail(fmt::format("argument '{}' must be an integer or a list of two integers, got {}", k, json_excerpt(*v)));
  }
  // A list of integers (each bounded like integer()); `clamp_huge`: values past ±kMaxSpecInteger are
  // clamped to it instead of refused (ONNX Slice's INT64_MAX "to the end", unchanged in meaning since no
  // dimension is that large).
  std::vector<int64_t> int_list(const std::string& k, std::optional<std::vector<int64_t>> dflt = std::nullopt,
                                bool clamp_huge = false) {
    const json* v = take(k, dflt.has_value());
    if (!v) return *dflt;
    if (!v->is_array()) fail(fmt::format("argument '{}' must be a list of integers, got {}", k, json_excerpt(*v)));
    if (v->size() > 64) fail(fmt::format("argument '{}' has {} entries (at most 64)", k, v->size()));
    std::vector<int64_t> out;
    for (const json& e : *v) {
      if (!e.is_number_integer())
        fail(fmt::format("argument '{}' must be a list of integers, got {}", k, json_excerpt(*v)));
      if (clamp_huge && e.is_number_unsigned() && e.get<uint64_t>() > uint64_t(kMaxSpecInteger)) out.push_back(kMaxSpecInteger);
      else if (clamp_huge) out.push_back(std::clamp<int64_t>(e.get<int64_t>(), -kMaxSpecInteger, kMaxSpecInteger));
      else out.push_back(bounded(k, e));
    }
    return out;
  }
  void finish() const {
    for (auto it = args_.begin(); it != args_.end(); ++it)
      if (!read_.count(it.key())) fail(fmt::format("unknown argument '{}'", it.key()));
  }

private:
  // Integer arguments are sizes, strides, paddings or dims: |v| ≤ kMaxSpecInteger keeps every product of
  // two of them (and the shape arithmetic of a forward pass) far from int64 overflow.
  int64_t bounded(const std::string& k, const json& v) const {
    const bool big = v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(kMaxSpecInteger)
                                            : (v.get<int64_t>() > kMaxSpecInteger || v.get<int64_t>() < -kMaxSpecInteger);
    if (big) fail(fmt::format("argument '{}' = {} is out of range (|value| at most {})", k, json_excerpt(v), kMaxSpecInteger));
    return v.get<int64_t>();
  }
  const json* take(const std::string& k, bool optional) {
    read_.insert(k);
    if (!args_.contains(k)) {
      if (!optional) fail(fmt::format("missing argument '{}'", k));
      return nullptr;
    }
    return &args_.at(k);
  }
  const json& args_;
  std::string where_;
  std::set<std::string> read_;
};

int64_t positive(ArgReader& a, const std::string& k, std::optional<int64_t> dflt = std::nullopt) {
  const int64_t v = a.integer(k, dflt);
  if (v <= 0) a.fail(fmt::format("argument '{}' must be positive, got {}", k, v));
  return v;
}

// Elements of one parameter tensor: checked product of `factors` against kMaxLayerParameters, before any
// allocation (a spec layer with 2^62 outputs is refused here, not by a wrapped-around allocation).
void check_param_size(ArgReader& a, const std::string& what, std::initializer_list<int64_t> factors) {
  std::optional<uint64_t> n = 1;
  for (int64_t f : factors) n = n ? checked_mul(*n, static_cast<uint64_t>(std::max<int64_t>(f, 0)), kMaxLayerParameters) : n;
  if (!n) a.fail(fmt::format("{} would have more than {} elements", what, kMaxLayerParameters));
}

using Builder = std::function<ModulePtr(ArgReader&, Generator&)>;

template <class M> Builder no_args() {
  return [](ArgReader&, Generator&) -> ModulePtr { return std::make_shared<M>(); };
}

const std::map<std::string, Builder>& builders() {
  static const std::map<std::string, Builder> kBuilders = {
      {"Linear",
       [](ArgReader& a, Generator& g) -> ModulePtr {
         const int64_t in = positive(a, "in_features"), out = positive(a, "out_features");
         check_param_size(a, "weight", {in, out});
         return std::make_shared<Linear>(in, out, a.boolean("bias", true), g);
       }},
      {"Conv2d",
       [](ArgReader& a, Generator& g) -> ModulePtr {
         Conv2dOptions o;
         o.in_channels = positive(a, "in_channels");
         o.out_channels = positive(a, "out_channels");
         o.kernel_size = a.pair("kernel_size");
         o.stride = a.pair("stride", Pair{1, 1});
         o.padding = a.pair("padding", Pair{0, 0});
         o.dilation = a.pair("dilation", Pair{1, 1});
         o.groups = positive(a, "groups", 1);
         o.bias = a.boolean("bias", true);
         check_param_size(a, "weight", {o.out_channels, o.in_channels / o.groups, o.kernel_size[0], o.kernel_size[1]});
         return std::make_shared<Conv2d>(o, g);
       }},
      {"BatchNorm1d",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const int64_t c = positive(a, "num_features");
         check_param_size(a, "running_mean", {c});
         const double eps = a.number("eps", 1e-5);
         const auto mom = a.optional_number("momentum", 0.1);
         return std::make_shared<BatchNorm1d>(c, eps, mom, a.boolean("affine", true));
       }},
      {"BatchNorm2d",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const int64_t c = positive(a, "num_features");
         check_param_size(a, "running_mean", {c});
         const double eps = a.number("eps", 1e-5);
         const auto mom = a.optional_number("momentum", 0.1);
         return std::make_shared<BatchNorm2d>(c, eps, mom, a.boolean("affine", true));
       }},
      {"ReLU", no_args<ReLU>()},
      {"ReLU6", no_args<ReLU6>()},
      {"Hardswish", no_args<Hardswish>()},
      {"Sigmoid", no_args<Sigmoid>()},
      {"Tanh", no_args<Tanh>()},
      {"Identity", no_args<Identity>()},
      {"Add", no_args<Add>()},
      {"ImageAsSequence", no_args<ImageAsSequence>()},
      {"LeakyReLU",
       [](ArgReader& a, Generator&) -> ModulePtr {
         return std::make_shared<LeakyReLU>(a.number("negative_slope", 0.01));
       }},
      {"MaxPool2d",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const Pair k = a.pair("kernel_size");
         const Pair s = a.pair("stride", k);
         return std::make_shared<MaxPool2d>(k, s, a.pair("padding", Pair{0, 0}));
       }},
      {"AvgPool2d",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const Pair k = a.pair("kernel_size");
         const Pair s = a.pair("stride", k);
         const Pair p = a.pair("padding", Pair{0, 0});
         return std::make_shared<AvgPool2d>(k, s, p, a.boolean("count_include_pad", true));
       }},
      {"AdaptiveAvgPool2d",
       [](ArgReader& a, Generator&) -> ModulePtr {
         return std::make_shared<AdaptiveAvgPool2d>(a.pair("output_size", Pair{1, 1}));
       }},
      {"Flatten",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const int64_t s = a.integer("start_dim", 1);
         return std::make_shared<Flatten>(s, a.integer("end_dim", -1));
       }},
      {"Dropout",
       [](ArgReader& a, Generator& g) -> ModulePtr {
         return std::make_shared<Dropout>(a.number("p", 0.5), g.next_u64());
       }},
      {"Embedding",
       [](ArgReader& a, Generator& g) -> ModulePtr {
         const int64_t n = positive(a, "num_embeddings"), d = positive(a, "embedding_dim");
         check_param_size(a, "weight", {n, d});
         return std::make_shared<Embedding>(n, d, g);
       }},
      {"LastTimeStep",
       [](ArgReader& a, Generator&) -> ModulePtr {
         return std::make_shared<LastTimeStep>(a.boolean("batch_first", true));
       }},
      // Note [ONNX layers] (nn/layers.hpp): the node types an imported ONNX graph is made of.
      {"Sub", no_args<Sub>()},
      {"Mul", no_args<Mul>()},
      {"Div", no_args<Div>()},
      {"Constant",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const std::vector<int64_t> shape = a.int_list("shape");
         for (int64_t d : shape)
           if (d < 0) a.fail(fmt::format("argument 'shape' has a negative dimension {}", d));
         std::optional<uint64_t> n = 1;
         for (int64_t d : shape) n = n ? checked_mul(*n, static_cast<uint64_t>(d), kMaxLayerParameters) : n;
         if (!n) a.fail(fmt::format("value would have more than {} elements", kMaxLayerParameters));
         return std::make_shared<Constant>(Shape(shape.begin(), shape.end()));
       }},
      {"Concat", [](ArgReader& a, Generator&) -> ModulePtr { return std::make_shared<Concat>(a.integer("dim")); }},
      {"Split",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const int64_t dim = a.integer("dim");
         const std::vector<int64_t> sizes = a.int_list("split_sizes");
         if (sizes.empty()) a.fail("argument 'split_sizes' is empty");
         for (int64_t s : sizes)
           if (s < 0) a.fail(fmt::format("argument 'split_sizes' has a negative size {}", s));
         return std::make_shared<Split>(dim, sizes);
       }},
      {"Slice",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const auto starts = a.int_list("starts", std::nullopt, true), ends = a.int_list("ends", std::nullopt, true);
         const auto axes = a.int_list("axes", std::vector<int64_t>{}), steps = a.int_list("steps", std::vector<int64_t>{});
         if (starts.empty() || starts.size() != ends.size())
           a.fail(fmt::format("'starts' ({} values) and 'ends' ({} values) must be non-empty and of one length",
                              starts.size(), ends.size()));
         if (!axes.empty() && axes.size() != starts.size())
           a.fail(fmt::format("'axes' has {} values for {} starts", axes.size(), starts.size()));
         if (!steps.empty() && steps.size() != starts.size())
           a.fail(fmt::format("'steps' has {} values for {} starts", steps.size(), starts.size()));
         for (int64_t s : steps)
           if (s == 0) a.fail("a step is 0");
         return std::make_shared<Slice>(starts, ends, axes, steps);
       }},
      {"Transpose",
       [](ArgReader& a, Generator&) -> ModulePtr {
         std::vector<int64_t> perm = a.int_list("perm", std::vector<int64_t>{});
         std::vector<int64_t> sorted = perm;
         std::sort(sorted.begin(), sorted.end());
         for (size_t i = 0; i < sorted.size(); ++i)
           if (sorted[i] != static_cast<int64_t>(i))
             a.fail(fmt::format("argument 'perm' [{}] is not a permutation of 0..{}", fmt::join(perm, ", "), perm.size() - 1));
         return std::make_shared<Transpose>(perm);
       }},
      {"Reshape",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const std::vector<int64_t> shape = a.int_list("shape");
         if (std::count(shape.begin(), shape.end(), -1) > 1) a.fail("argument 'shape' has more than one -1");
         for (int64_t d : shape)
           if (d < -1) a.fail(fmt::format("argument 'shape' has a bad size {} (sizes are >= 0, 0 copies, -1 infers)", d));
         return std::make_shared<Reshape>(shape);
       }},
      {"Squeeze",
       [](ArgReader& a, Generator&) -> ModulePtr {
         return std::make_shared<Squeeze>(a.int_list("dims", std::vector<int64_t>{}));
       }},
      {"Unsqueeze",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const std::vector<int64_t> dims = a.int_list("dims");
         if (dims.empty()) a.fail("argument 'dims' is empty");
         return std::make_shared<Unsqueeze>(dims);
       }},
      {"Pad",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const std::vector<int64_t> pads = a.int_list("pads");
         if (pads.empty() || pads.size() % 2 != 0)
           a.fail(fmt::format("argument 'pads' needs a begin and an end per dimension, got {} values", pads.size()));
         return std::make_shared<Pad>(pads, a.number("value", 0.0));
       }},
      {"Softmax", [](ArgReader& a, Generator&) -> ModulePtr { return std::make_shared<Softmax>(a.integer("dim", -1)); }},
      {"LogSoftmax",
       [](ArgReader& a, Generator&) -> ModulePtr { return std::make_shared<LogSoftmax>(a.integer("dim", -1)); }},
      {"ReduceMean",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const std::vector<int64_t> dims = a.int_list("dims", std::vector<int64_t>{});
         return std::make_shared<ReduceMean>(dims, a.boolean("keepdim", false));
       }},
      {"HardSigmoid",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const double alpha = a.number("alpha", 0.2);
         return std::make_shared<HardSigmoid>(alpha, a.number("beta", 0.5));
       }},
      {"Hardtanh",
       [](ArgReader& a, Generator&) -> ModulePtr {
         const double lo = a.number("min_val", -1.0), hi = a.number("max_val", 1.0);
         if (lo > hi) a.fail(fmt::format("min_val {} is above max_val {}", lo, hi));
         return std::make_shared<Hardtanh>(lo, hi);
       }},
  };
  return kBuilders;
}

ModulePtr build_layer(const std::string& type, const json& args, const std::string& where, Generator& gen) {
  if (is_recurrent_type(type)) {
    if (!args.is_object()) throw InputError(fmt::format("{}: \"args\" must be an object, got {}", where, json_excerpt(args)));
    // Sizes before make_recurrent allocates: gates·hidden × (input + hidden) per layer and direction.
    auto size_arg = [&](const char* k, int64_t dflt) -> int64_t {
      if (!args.contains(k)) return dflt;
      const json& v = args[k];
      if (!v.is_number_integer()) return dflt;  // make_recurrent names the type error
      if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(kMaxSpecInteger) : v.get<int64_t>() > kMaxSpecInteger)
        throw InputError(fmt::format("{}: argument '{}' = {} is out of range (at most {})", where, k, json_excerpt(v),
                                     kMaxSpecInteger));
      return std::max<int64_t>(v.get<int64_t>(), 1);
    };
    const int64_t in = size_arg("input_size", 1), hidden = size_arg("hidden_size", 1), layers = size_arg("num_layers", 1);
    if (!checked_mul(4 * hidden, static_cast<uint64_t>(std::max(in, hidden)), kMaxLayerParameters) ||
        !checked_mul(static_cast<uint64_t>(layers) * 2, uint64_t(4 * hidden) * uint64_t(std::max(in, hidden)),
                     kMaxLayerParameters * 4))
      throw InputError(fmt::format("{}: recurrent weights would have more than {} elements", where, kMaxLayerParameters));
    try {
      return make_recurrent(type, args, gen);
    } catch (const InputError& e) {
      throw InputError(fmt::format("{}: {}", where, e.what()));
    } catch (const Error& e) {
      throw InputError(fmt::format("{}: {}", where, e.what()));
    } catch (const json::exception& e) {
      throw InputError(fmt::format("{}: {}", where, e.what()));
    }
  }
  auto it = builders().find(type);
  if (it == builders().end()) {
    std::vector<std::string> known = spec_layer_types();
    throw InputError(fmt::format("{}: unknown layer type '{}' (known: {})", where, type, fmt::join(known, ", ")));
  }
  ArgReader reader(args, where);
  ModulePtr m;
  try {
    m = it->second(reader, gen);
  } catch (const InputError&) {
    throw;
  } catch (const Error& e) {
    throw InputError(fmt::format("{}: {}", where, e.what()));
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: {}", where, e.what()));
  }
  reader.finish();
  return m;
}

// Parses "name" or "name:k".
std::pair<std::string, int> split_ref(const std::string& s) {
  const auto colon = s.rfind(':');
  if (colon != std::string::npos && colon + 1 < s.size()) {
    const std::string tail = s.substr(colon + 1);
    if (tail.find_first_not_of("0123456789") == std::string::npos) {
      if (tail.size() > 6) throw InputError(fmt::format("model spec: output index in '{}' is out of range", s));
      return {s.substr(0, colon), std::stoi(tail)};
    }
  }
  return {s, 0};
}

// Finds a cycle through `start` among the node-name references (used only to explain a forward
// reference); returns the path "a -> b -> a" or "".
std::string find_cycle(const std::map<std::string, std::vector<std::string>>& deps, const std::string& start) {
  std::vector<std::string> path;
  std::set<std::string> seen;
  std::function<bool(const std::string&)> dfs = [&](const std::string& n) -> bool {
    path.push_back(n);
    auto it = deps.find(n);
    if (it != deps.end())
      for (const auto& d : it->second) {
        if (d == start) {
          path.push_back(d);
          return true;
        }
        if (seen.insert(d).second && dfs(d)) return true;
      }
    path.pop_back();
    return false;
  };
  return dfs(start) ? fmt::format("{}", fmt::join(path, " -> ")) : "";
}

// Note [Tensor names] (nn/graph.hpp): "tensor_names": {"<state_dict key>": "<stored name>"}. Every key
// must be a parameter or buffer of the model; stored names must be distinct and must not be the key of
// another (unrenamed) entry, so the weights file has one tensor per name.
std::map<std::string, std::string> parse_tensor_names(const json& j, const Module& model) {
  if (!j.is_object()) throw InputError(fmt::format("model spec: \"tensor_names\" must be an object, got {}", json_excerpt(j)));
  std::set<std::string> keys;
  for (const auto& [k, t] : model.state_dict()) keys.insert(k);
  std::map<std::string, std::string> out;
  std::map<std::string, std::string> owner;  // stored name -> key
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!keys.count(it.key()))
      throw InputError(fmt::format("model spec: \"tensor_names\": '{}' is no parameter or buffer of the model", it.key()));
    if (!it.value().is_string() || it.value().get<std::string>().empty())
      throw InputError(fmt::format("model spec: \"tensor_names\": the name of '{}' must be a non-empty string, got {}",
                                   it.key(), json_excerpt(it.value())));
    const std::string stored = it.value().get<std::string>();
    if (auto o = owner.find(stored); o != owner.end())
      throw InputError(fmt::format("model spec: \"tensor_names\": '{}' and '{}' are both stored as '{}'", o->second,
                                   it.key(), stored));
    owner[stored] = it.key();
    out[it.key()] = stored;
  }
  for (const auto& [stored, key] : owner)
    if (stored != key && keys.count(stored) && !out.count(stored))
      throw InputError(fmt::format("model spec: \"tensor_names\": '{}' is stored as '{}', the name of another tensor",
                                   key, stored));
  for (auto it = out.begin(); it != out.end();) it = it->first == it->second ? out.erase(it) : std::next(it);
  return out;
}

}  // namespace

std::vector<std::string> spec_layer_types() {
  std::vector<std::string> out;
  for (const auto& [k, v] : builders()) out.push_back(k);
  out.insert(out.end(), {"GRU", "LSTM", "RNN"});
  std::sort(out.begin(), out.end());
  return out;
}

std::shared_ptr<Graph> build_model(const json& spec, const BuildOptions& opt) {
  if (!spec.is_object()) throw InputError("model spec: expected a JSON object");
  for (auto it = spec.begin(); it != spec.end(); ++it)
    if (it.key() != "name" && it.key() != "inputs" && it.key() != "nodes" && it.key() != "outputs" &&
        it.key() != "format" && it.key() != "version" && it.key() != "tensor_names")
      throw InputError(fmt::format("model spec: unknown field '{}'", it.key()));
  std::vector<std::string> input_names = {"input"};
  if (spec.contains("inputs")) {
    const auto& in = spec["inputs"];
    if (!in.is_array() || in.empty()) throw InputError("model spec: \"inputs\" must be a non-empty list of names");
    input_names.clear();
    for (const auto& n : in) {
      if (!n.is_string()) throw InputError(fmt::format("model spec: input name must be a string, got {}", json_excerpt(n)));
      input_names.push_back(n.get<std::string>());
    }
  }
  if (!spec.contains("nodes") || !spec["nodes"].is_array() || spec["nodes"].empty())
    throw InputError("model spec: \"nodes\" must be a non-empty list");
  const json& nodes = spec["nodes"];

  // First pass: names and raw references (for duplicate, dangling and cycle diagnostics).
  std::vector<std::string> names;
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const json& n = nodes[i];
    if (!n.is_object()) throw InputError(fmt::format("model spec: node #{} is not an object", i));
    if (!n.contains("name") || !n["name"].is_string() || n["name"].get<std::string>().empty())
      throw InputError(fmt::format("model spec: node #{} has no \"name\"", i));
    const std::string name = n["name"].get<std::string>();
    if (index.count(name)) throw InputError(fmt::format("model spec: node '{}': duplicate node name", name));
    if (std::find(input_names.begin(), input_names.end(), name) != input_names.end())
      throw InputError(fmt::format("model spec: node '{}': name clashes with a model input", name));
    index[name] = i;
    names.push_back(name);
  }
  std::map<std::string, std::vector<std::string>> deps;
  std::vector<std::vector<std::string>> refs(nodes.size());
  for (size_t i = 0; i < nodes.size(); ++i) {
    const json& n = nodes[i];
    const std::string where = fmt::format("model spec: node '{}'", names[i]);
    for (auto it = n.begin(); it != n.end(); ++it)
      if (it.key() != "name" && it.key() != "type" && it.key() != "args" && it.key() != "inputs")
        throw InputError(fmt::format("{}: unknown field '{}'", where, it.key()));
    if (n.contains("inputs")) {
      const json& ins = n["inputs"];
      if (!ins.is_array()) throw InputError(fmt::format("{}: \"inputs\" must be a list of names", where));
      for (const auto& r : ins) {
        if (!r.is_string()) throw InputError(fmt::format("{}: input reference must be a string, got {}", where, json_excerpt(r)));
        refs[i].push_back(r.get<std::string>());
      }
    } else if (!(n.contains("type") && n["type"] == "Constant")) {  // a Constant has no inputs
      refs[i].push_back(i == 0 ? input_names[0] : names[i - 1]);
    }
    for (const auto& r : refs[i]) {
      const auto [target, k] = split_ref(r);
      const bool is_input = std::find(input_names.begin(), input_names.end(), target) != input_names.end();
      if (!is_input && !index.count(target))
        throw InputError(fmt::format("{}: input '{}' names no node or model input", where, r));
      if (is_input && k != 0) throw InputError(fmt::format("{}: model input '{}' has one value", where, target));
      if (!is_input) deps[names[i]].push_back(target);
    }
  }
  for (size_t i = 0; i < nodes.size(); ++i)
    for (const auto& r : refs[i]) {
      const auto [target, k] = split_ref(r);
      auto it = index.find(target);
      if (it == index.end() || it->second < i) continue;
      const std::string cycle = find_cycle(deps, names[i]);
      if (!cycle.empty())
        throw InputError(fmt::format("model spec: node '{}': cycle {}", names[i], cycle));
      throw InputError(fmt::format("model spec: node '{}': input '{}' is defined after it (list nodes in evaluation order)",
                                   names[i], r));
    }

  for (size_t i = 0; i < input_names.size(); ++i)
    if (input_names[i].empty() || std::find(input_names.begin(), input_names.begin() + i, input_names[i]) !=
                                      input_names.begin() + i)
      throw InputError(fmt::format("model spec: input name '{}' is empty or repeated", input_names[i]));
  Generator gen(opt.seed);
  auto graph = std::make_shared<Graph>(input_names);
  uint64_t total = 0;
  for (size_t i = 0; i < nodes.size(); ++i) {
    const json& n = nodes[i];
    const std::string where = fmt::format("model spec: node '{}'", names[i]);
    if (!n.contains("type") || !n["type"].is_string()) throw InputError(fmt::format("{}: missing \"type\"", where));
    const std::string type = n["type"].get<std::string>();
    const json args = n.contains("args") ? n["args"] : json::object();
    ModulePtr m = build_layer(type, args, fmt::format("{} ({})", where, type), gen);
    std::vector<ValueRef> ins;
    for (const auto& r : refs[i]) {
      const auto [target, k] = split_ref(r);
      auto pos = std::find(input_names.begin(), input_names.end(), target);
      if (pos != input_names.end())
        ins.push_back({ValueRef::kModelInput, static_cast<int>(pos - input_names.begin())});
      else
        ins.push_back({static_cast<int>(index.at(target)), k});
    }
    try {
      graph->add_node(names[i], m, ins);
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {  // the graph's own consistency checks: still the spec's fault
      throw InputError(fmt::format("{}: {}", where, e.what()));
    }
    for (const auto& [pname, t] : m->state_dict()) total += static_cast<uint64_t>(t.numel());
    if (total > opt.max_parameters)
      throw InputError(fmt::format("{}: the model would hold more than {} parameter and buffer elements", where,
                                   opt.max_parameters));
  }
  if (spec.contains("outputs")) {
    const json& outs = spec["outputs"];
    if (!outs.is_array() || outs.empty()) throw InputError("model spec: \"outputs\" must be a non-empty list");
    std::vector<ValueRef> refs_out;
    for (const auto& o : outs) {
      if (!o.is_string()) throw InputError(fmt::format("model spec: output must be a string, got {}", json_excerpt(o)));
      const auto [target, k] = split_ref(o.get<std::string>());
      auto it = index.find(target);
      if (it == index.end()) throw InputError(fmt::format("model spec: output '{}' names no node", o.get<std::string>()));
      refs_out.push_back({static_cast<int>(it->second), k});
    }
    try {
      graph->set_outputs(refs_out);
    } catch (const InputError&) {
      throw;
    } catch (const Error& e) {
      throw InputError(fmt::format("model spec: \"outputs\": {}", e.what()));
    }
  }
  if (spec.contains("tensor_names")) graph->set_tensor_names(parse_tensor_names(spec["tensor_names"], *graph));
  return graph;
}

std::shared_ptr<Graph> load_model_spec(const std::string& path, const BuildOptions& opt) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError(fmt::format("{}: cannot open model spec", path));
  std::stringstream ss;
  ss << f.rdbuf();
  const json spec = parse_json(ss.str(), path);
  try {
    return build_model(spec, opt);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: {}", path, e.what()));
  }
}

json write_spec(const Module& model) {
  json nodes = json::array();
  json spec;
  if (const auto* g = dynamic_cast<const Graph*>(&model)) {
    spec["inputs"] = g->input_names();
    const auto& gn = g->nodes();
    for (size_t i = 0; i < gn.size(); ++i) {
      json ins = json::array();
      for (const auto& r : gn[i].inputs) ins.push_back(g->ref_name(r));
      nodes.push_back({{"name", gn[i].name},
                       {"type", gn[i].module->type_name()},
                       {"args", gn[i].module->spec_args()},
                       {"inputs", ins}});
    }
    spec["nodes"] = nodes;
    if (!g->outputs().empty()) {
      json outs = json::array();
      for (const auto& r : g->outputs()) outs.push_back(g->ref_name(r));
      spec["outputs"] = outs;
    }
    if (!g->tensor_names().empty()) {  // Note [Tensor names]: only entries the model still has
      json names = json::object();
      for (const auto& [k, t] : g->state_dict())
        if (auto it = g->tensor_names().find(k); it != g->tensor_names().end()) names[k] = it->second;
      if (!names.empty()) spec["tensor_names"] = names;
    }
    return spec;
  }
  if (dynamic_cast<const Sequential*>(&model)) {
    spec["inputs"] = {"input"};
    std::string prev = "input";
    for (const auto& [name, c] : model.children()) {
      nodes.push_back({{"name", name}, {"type", c->type_name()}, {"args", c->spec_args()}, {"inputs", {prev}}});
      prev = name;
    }
    spec["nodes"] = nodes;
    return spec;
  }
  throw Error(fmt::format("write_spec: a {} has no model spec (only Graph and Sequential models do)", model.type_name()));
}

std::shared_ptr<Graph> clone_model(Module& model) {
  auto copy = build_model(write_spec(model));
  auto src = model.state_dict();
  auto dst = copy->state_dict();
  QFORGE_ASSERT(src.size() == dst.size());
  {
    autograd::NoGradGuard ng;
    for (size_t i = 0; i < src.size(); ++i) {
      QFORGE_CHECK(src[i].first == dst[i].first && src[i].second.shape() == dst[i].second.shape(),
                   "clone_model: state mismatch at '{}'", src[i].first);
      // keep the source dtype (e.g. a model converted to f64)
      Tensor& slot = dst[i].second;
      if (slot.dtype() != src[i].second.dtype()) {
        const auto dot = src[i].first.rfind('.');
        ModulePtr owner = copy->find(dot == std::string::npos ? "" : src[i].first.substr(0, dot));
        const std::string leaf = dot == std::string::npos ? src[i].first : src[i].first.substr(dot + 1);
        Tensor t = src[i].second.detach().clone();
        if (owner->has_param(leaf)) owner->register_parameter(leaf, t, src[i].second.requires_grad());
        else owner->buffer(leaf) = t;
      } else {
        Tensor d = slot;
        d.copy_(src[i].second);
      }
    }
  }
  auto src_mods = model.named_modules();
  auto dst_mods = copy->named_modules();
  // train() recurses; in pre-order each module's own call comes last for it, so it keeps its own flag.
  if (src_mods.size() == dst_mods.size())
    for (size_t i = 0; i < src_mods.size(); ++i) dst_mods[i].second->train(src_mods[i].second->is_training());
  return copy;
}

void save_model_spec(const Module& model, const std::string& path) {
  const std::string text = write_spec(model).dump(2) + "\n";
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw InputError(fmt::format("{}: cannot write model spec", path));
    f << text;
    if (!f) throw InputError(fmt::format("{}: write failed", path));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) throw InputError(fmt::format("{}: cannot rename {} into place: {}", path, tmp, ec.message()));
}

}  // namespace qforge::nn
