// Stand-in for quant/export when qforge is built without libonnx (see quant/export/meson.build).
#include "quant/export/onnx_export.hpp"

#include "engine/error.hpp"

namespace qforge::quant::exporter {

namespace {
[[noreturn]] void missing() {
  throw Error("ONNX export: this qforge was built without ONNX support (install libonnx-dev and libprotobuf-dev, "
              "then reconfigure)");
}
}  // namespace

nlohmann::json OnnxExportResult::to_json() const {
  return {{"nodes", nodes}, {"op_census", op_census}, {"inputs", input_names}, {"outputs", output_names},
          {"notes", notes}, {"vpmaddubsw_risk_layers", vpmaddubsw_risk}};
}

bool onnx_export_available() { return false; }

OnnxExportResult export_onnx_fp32(nn::Graph&, const std::vector<Tensor>&, const std::filesystem::path&) { missing(); }

OnnxExportResult export_onnx_qdq(const runtime::Program&, const std::filesystem::path&, const QdqExportOptions&) {
  missing();
}

}  // namespace qforge::quant::exporter
