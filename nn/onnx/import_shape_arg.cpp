// --input-shape parsing (shared by the real importer and the stub built without ONNX).
#include "nn/onnx/import.hpp"

namespace qforge::nn::onnx_import {

std::pair<std::string, Shape> parse_input_shape(const std::string& text) {
  const auto eq = text.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == text.size())
    throw InputError(fmt::format("--input-shape '{}': expected NAME=D0,D1,... (e.g. input=1,3,224,224)", text));
  Shape dims;
  size_t pos = eq + 1;
  while (pos <= text.size()) {
    const size_t comma = std::min(text.find(',', pos), text.size());
    const std::string d = text.substr(pos, comma - pos);
    if (d.empty() || d.size() > 10 || d.find_first_not_of("0123456789") != std::string::npos || std::stoll(d) <= 0 ||
        std::stoll(d) > (int64_t{1} << 31))
      throw InputError(fmt::format("--input-shape '{}': dimension '{}' is not a positive integer", text, d));
    dims.push_back(std::stoll(d));
    pos = comma + 1;
  }
  if (dims.size() > 8) throw InputError(fmt::format("--input-shape '{}': more than 8 dimensions", text));
  return {text.substr(0, eq), dims};
}

}  // namespace qforge::nn::onnx_import
