// Built instead of the importer when meson did not find libonnx/protobuf.
#include "nn/onnx/import.hpp"

namespace qforge::nn::onnx_import {

bool onnx_available() { return false; }

ImportResult import_onnx(const std::filesystem::path& path, const ImportOptions&) {
  throw InputError(fmt::format("{}: this qforge was built without ONNX support (install libonnx-dev and libprotobuf-dev, "
                               "then reconfigure)", path.string()));
}

}  // namespace qforge::nn::onnx_import
