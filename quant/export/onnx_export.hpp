// ONNX export (DESIGN.md §7): the two ways a qforge model leaves for other runtimes.
//
//   export_onnx_fp32   the float model as plain ONNX (opset 13): every layer of a model spec becomes the
//                      ONNX operators PyTorch's exporter would write for it; weights keep their state_dict
//                      names, or the original ONNX initializer names of an imported model (the spec's
//                      "tensor_names" map).
//   export_onnx_qdq    a quantized model as a QDQ graph laid out the way ONNX Runtime's own quantizer lays it
//                      out (Note [QDQ layout] in qdq_export.cpp), so ORT's graph optimizer fuses it into
//                      QLinearConv / QGemm / QLinearAdd / QLinearAveragePool: int8 weights feeding
//                      DequantizeLinear (per-channel axis 0), int32 biases at scale s_in·s_w, uint8
//                      activations. It is written from the integer Program (quant/runtime), so the
//                      integers in the file are the ones qforge's runtime computes with.
//
// Both check the result with ONNX's checker and write the file atomically. Only this folder includes
// ONNX/protobuf headers; when qforge is built without libonnx (cross builds), onnx_export_available() is
// false and the functions throw Error saying so.
#pragma once

#include "engine/tensor.hpp"
#include "nn/graph.hpp"
#include "quant/runtime/program.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qforge::quant::exporter {

struct OnnxExportResult {
  int64_t nodes = 0;
  std::map<std::string, int64_t> op_census;  // ONNX op type -> count
  std::vector<std::string> input_names, output_names;
  std::vector<std::string> notes;            // decisions worth telling the user (unfused ops, ...)
  // fp32: qforge quantizer/parameter name ("conv1.output", "conv1.input", "conv1.weight") -> ONNX tensor
  // name, for writing encodings that name the exported graph's tensors.
  std::map<std::string, std::string> tensor_of;
  // qdq: the graph's quantization as AIMET encodings 2.0.0 entries (QuantizeLinear/DequantizeLinear inputs
  // of every activation, weight and bias tensor, named as in the graph).
  nlohmann::json encodings_200 = nlohmann::json::array();
  // qdq: layers where ONNX Runtime's AVX2 u8s8 kernels (no VNNI) could saturate: some output channel has two
  // weights of one sign with |w1 + w2| ≥ 129, so 255·(w1 + w2) leaves int16 in vpmaddubsw (Note [vpmaddubsw
  // risk] in export_qdq.cpp). Empty: ORT computes exactly on every x86 machine.
  std::vector<std::string> vpmaddubsw_risk;
  nlohmann::json to_json() const;  // summary (no tensor_of / encodings)
};

bool onnx_export_available();

// model: a spec-built Graph (initializers are named through its tensor_names(), Note [Tensor names] in
// nn/graph.hpp); sample_inputs: one batch per model input (shapes only; the batch dimension is written as
// the symbolic "batch").
OnnxExportResult export_onnx_fp32(nn::Graph& model, const std::vector<Tensor>& sample_inputs,
                                  const std::filesystem::path& out);

struct QdqExportOptions {
  std::string input_name = "input";    // the graph's float input
  std::string output_name = "output";  // the dequantized float output; its uint8 codes are output_name + "_q"
  std::map<std::string, std::string> tensor_names;  // state_dict key -> weight initializer name
};

OnnxExportResult export_onnx_qdq(const runtime::Program& program, const std::filesystem::path& out,
                                 const QdqExportOptions& opt = {});

}  // namespace qforge::quant::exporter
