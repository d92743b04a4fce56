// Sequential (Add is in elementwise.cpp).
#include "nn/layers.hpp"

namespace qforge::nn {

Sequential::Sequential(const std::vector<ModulePtr>& mods) : Module("Sequential") {
  for (const auto& m : mods) push_back(m);
}

Sequential& Sequential::push_back(ModulePtr m) { return push_back(std::to_string(children().size()), std::move(m)); }

Sequential& Sequential::push_back(const std::string& name, ModulePtr m) {
  QFORGE_CHECK(!child(name), "Sequential: duplicate child name '{}'", name);
  register_child(name, std::move(m));
  return *this;
}

std::vector<Tensor> Sequential::forward(const std::vector<Tensor>& inputs) {
  std::vector<Tensor> xs = inputs;
  for (const auto& [name, m] : children()) xs = (*m)(xs);
  return xs;
}

}  // namespace qforge::nn
