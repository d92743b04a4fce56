// Module state_dicts <-> safetensors files (declared in nn/safetensors.hpp).
#include "nn/module.hpp"
#include "nn/safetensors.hpp"

namespace qforge::nn {

namespace fs = std::filesystem;

// ---- Module state_dicts ------------------------------------------------------------------------

void save_weights(const Module& module, const fs::path& path, const Metadata& metadata) {
  TensorMap m;
  for (const auto& [name, t] : module.state_dict()) {
    QFORGE_CHECK(!m.count(name), "save_weights {}: duplicate state_dict key '{}'", path.string(), name);
    m[name] = t;
  }
  save_safetensors(path, m, metadata);
}

LoadResult load_weights(Module& module, const fs::path& path, bool strict) {
  const TensorMap tensors = load_safetensors(path);
  try {
    return module.load_state_dict(tensors, strict);
  } catch (const Error& e) {
    throw InputError(fmt::format("safetensors {}: {}", path.string(), e.what()));
  }
}

}  // namespace qforge::nn
