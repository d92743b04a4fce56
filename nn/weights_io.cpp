// Module state_dicts <-> safetensors files (declared in nn/safetensors.hpp).
#include "nn/module.hpp"
#include "nn/safetensors.hpp"

#include <cmath>

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
  try {
    return module.load_state_dict(tensors, strict);
  } catch (const Error& e) {
    throw InputError(fmt::format("safetensors {}: {}", path.string(), e.what()));
  }
}

}  // namespace qforge::nn
