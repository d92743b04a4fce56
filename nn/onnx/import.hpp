// ONNX import: an ONNX model file -> an ordinary qforge model (spec + weights), DESIGN.md §7.
//
//   ImportResult r = nn::onnx_import::import_onnx("resnet18.onnx", {});
//   r.model  — a Graph built from r.spec with the ONNX weights loaded; r.report — the op census.
//
// The graph is checked (ONNX's checker, shape inference), constant subgraphs are folded for the input
// shapes (the file's, or ImportOptions::input_shapes), and every remaining node is lowered to real qforge
// layers (Conv -> Conv2d, Gemm/MatMul + Add -> Linear, LSTM -> LSTM, ...; nn/onnx/lower.hpp). The spec's
// inputs and outputs are the ONNX graph's; weights keep their ONNX initializer names through the spec's
// "tensor_names" (Note [Tensor names] in nn/graph.hpp). Nothing downstream knows the model came from ONNX.
// Every problem (truncated or corrupt file, unsupported op or attribute, unresolvable shape, missing
// external data) is an InputError naming the file and the node or tensor.
//
// This header does not include ONNX: the library is built only when meson finds libonnx and protobuf;
// otherwise import_onnx throws an InputError saying so (onnx_available() is false).
#pragma once

#include "nn/graph.hpp"
#include "nn/safetensors.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace qforge::nn::onnx_import {

struct ImportOptions {
  std::map<std::string, Shape> input_shapes;  // graph input name -> dims (overrides dynamic dims)
};

struct ImportResult {
  nlohmann::json spec;    // model.json (with "tensor_names" when names differ from the state_dict keys)
  nlohmann::json report;  // opset, producer, inputs/outputs, op census, folded/removed node counts, notes
  std::shared_ptr<Graph> model;
};

bool onnx_available();
ImportResult import_onnx(const std::filesystem::path& path, const ImportOptions& opt = {});

// Parses an --input-shape value "name=1,3,224,224"; InputError naming the text when malformed.
std::pair<std::string, Shape> parse_input_shape(const std::string& text);

}  // namespace qforge::nn::onnx_import
