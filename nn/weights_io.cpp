// Module state_dicts <-> safetensors files (declared in nn/safetensors.hpp).
#include "nn/graph.hpp"
#include "nn/module.hpp"
#include "nn/safetensors.hpp"

#include <cmath>

namespace qforge::nn {

namespace fs = std::filesystem;

namespace {

// Note [Tensor names] (nn/graph.hpp): a spec-built Graph may store some state_dict entries under other
// names (an imported ONNX model's initializer names). Other modules have none.
const std::map<std::string, std::string>* stored_names(const Module& module) {
  const auto* g = dynamic_cast<const Graph*>(&module);
  return g && !g->tensor_names().empty() ? &g->tensor_names() : nullptr;
}

}  // namespace

// ---- Module state_dicts ------------------------------------------------------------------------

void save_weights(const Module& module, const fs::path& path, const Metadata& metadata) {
  const auto* names = stored_names(module);
  TensorMap m;
  for (const auto& [key, t] : module.state_dict()) {
    std::string name = key;
    if (names)
      if (auto it = names->find(key); it != names->end()) name = it->second;
    QFORGE_CHECK(!m.count(name), "save_weights {}: two state_dict entries would be stored as '{}'", path.string(), name);
    m[name] = t;
  }
  save_safetensors(path, m, metadata);
}

LoadResult load_weights(Module& module, const fs::path& path, bool strict) {
  TensorMap tensors = load_safetensors(path);
  // Non-finite weights are refused at load, naming the tensor: a NaN/Inf weight would otherwise flow
  // silently into evaluation, quantization (ranges) and training.
  for (const auto& [name, t] : tensors) {
    if (t.dtype() != DType::f32 && t.dtype() != DType::f64) continue;
    const std::vector<double> v = t.to_vector<double>();
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throw InputError(fmt::format("safetensors {}: tensor '{}' holds a non-finite value ({} at element {}); "
                                     "refusing to load it",
                                     path.string(), name, v[i], i));
  }
  if (const auto* names = stored_names(module)) {
    // Stored names back to state_dict keys; a file that holds the state_dict key itself is read as well.
    std::map<std::string, std::string> key_of;
    for (const auto& [key, stored] : *names) key_of[stored] = key;
    TensorMap renamed;
    for (auto& [name, t] : tensors) {
      auto it = key_of.find(name);
      const std::string& key = it != key_of.end() ? it->second : name;
      if (renamed.count(key))
        throw InputError(fmt::format("safetensors {}: tensor '{}' is stored both as '{}' and under its own name", path.string(),
                                     key, names->at(key)));
      renamed[key] = std::move(t);
    }
    tensors = std::move(renamed);
  }
  try {
    return module.load_state_dict(tensors, strict);
  } catch (const Error& e) {
    throw InputError(fmt::format("safetensors {}: {}", path.string(), e.what()));
  }
}

}  // namespace qforge::nn
