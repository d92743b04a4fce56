// import_onnx: load + check, fold and lower, build the qforge model, load its weights, report.
#include "nn/onnx/import.hpp"

#include "engine/autograd.hpp"
#include "nn/onnx/lower.hpp"
#include "nn/spec.hpp"

#include <chrono>
#include <cmath>

namespace qforge::nn::onnx_import {

namespace fs = std::filesystem;

bool onnx_available() { return true; }

namespace {

json value_json(const LoadedModel& m, const std::string& name) {
  json j = {{"name", name}};
  if (auto it = m.elem_types.find(name); it != m.elem_types.end()) j["dtype"] = type_name(it->second);
  if (auto it = m.shapes.find(name); it != m.shapes.end()) j["shape"] = it->second;
  return j;
}

void check_finite(const fs::path& path, const std::string& key, const Tensor& t) {
  if (t.dtype() != DType::f32) return;
  const float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(p[i]))
      throw InputError(fmt::format("{}: weight '{}' holds a non-finite value ({} at element {})", path.string(), key, p[i], i));
}

}  // namespace

ImportResult import_onnx(const fs::path& path, const ImportOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  LoadedModel m = load_onnx(path, opt.input_shapes);
  // Note [Shape refinement] (onnx_model.hpp).
  for (int round = 0; round < 4 && has_unknown_shapes(m); ++round) {
    const size_t known_before = m.shapes.size();
    Lowerer pre(m);
    const auto folded = pre.fold_only();
    const auto before = m.shapes;
    refine_shapes(m, folded);
    if (m.shapes == before && m.shapes.size() == known_before) break;
  }
  Lowerer L(m);
  L.run();

  ImportResult r;
  r.spec = L.spec();
  const std::string graph_name = m.proto.graph().name();
  r.spec["name"] = path.stem().string();
  for (const auto& [key, t] : L.weights()) check_finite(path, key, t);
  try {
    r.model = build_model(r.spec);
  } catch (const InputError& e) {
    throw InputError(fmt::format("{}: the lowered model does not build: {}", path.string(), e.what()));
  }
  try {
    autograd::NoGradGuard ng;
    r.model->load_state_dict(L.weights(), true);
  } catch (const Error& e) {
    throw InputError(fmt::format("{}: the lowered weights do not fit the model: {}", path.string(), e.what()));
  }
  r.model->eval();

  json inputs = json::array(), outputs = json::array();
  std::set<std::string> inits;
  for (const auto& t : m.proto.graph().initializer()) inits.insert(t.name());
  for (const auto& in : m.proto.graph().input())
    if (!inits.count(in.name())) inputs.push_back(value_json(m, in.name()));
  for (const auto& out : m.proto.graph().output()) outputs.push_back(value_json(m, out.name()));
  int64_t params = 0;
  for (const auto& [k, t] : r.model->state_dict()) params += t.numel();
  std::vector<std::string> notes = m.notes;
  notes.insert(notes.end(), L.notes().begin(), L.notes().end());
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.report = {
      {"command", "import"},
      {"model", r.spec["name"]},
      {"source", fs::absolute(path).string()},
      {"onnx",
       {{"ir_version", m.proto.ir_version()},
        {"opset", m.opset},
        {"producer", m.proto.producer_name()},
        {"producer_version", m.proto.producer_version()},
        {"graph", graph_name},
        {"nodes", m.proto.graph().node_size()},
        {"initializers", m.proto.graph().initializer_size()}}},
      {"inputs", inputs},
      {"outputs", outputs},
      {"ops", L.census()},
      {"nodes_folded", L.folded()},
      {"nodes_removed", L.removed()},
      {"qforge_nodes", r.model->nodes().size()},
      {"parameters", params},
      {"renamed_tensors", r.model->tensor_names().size()},
      {"notes", notes},
      {"seconds", seconds},
  };
  return r;
}

}  // namespace qforge::nn::onnx_import
