// AIMET encodings files (aimet-compat.md §3): schema 0.6.1 (default) and 1.0.0, write and read; 2.0.0, write.
//
// 0.6.1: {"version", "activation_encodings": {name: [Enc...]}, "param_encodings": {name: [Enc...]},
//         "excluded_layers", "quantizer_args"}, Enc = {"bitwidth", "dtype": "int", "is_symmetric":
//         "True"|"False" (a string), "min", "max", "offset", "scale"}; float: {"bitwidth": 16, "dtype": "float"}.
// 1.0.0: lists of {"name", "dtype": "INT"|"FLOAT", "enc_type": "PER_TENSOR"|"PER_CHANNEL", "bw",
//         "is_sym" (JSON bool), "scale": [...], "offset": [...]}; no min/max.
// Offsets keep AIMET's sign in both (signed symmetric 8-bit -128, asymmetric -zero_point). One list entry
// per channel (more than one = per-channel). quantizer_args flags are JSON booleans.
// Files are written to a temporary name and renamed (never half-written).
#pragma once

#include "engine/file_io.hpp"  // write_file_atomic

#include "quant/encoding.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace qforge::quant {

struct QuantizerArgs {
  int activation_bitwidth = 8;
  int param_bitwidth = 8;
  std::string dtype = "int";
  bool is_symmetric = true;
  bool per_channel_quantization = false;
  std::string quant_scheme = "post_training_tf";
};

struct EncodingsFile {
  std::map<std::string, std::vector<Encoding>> activations;
  std::map<std::string, std::vector<Encoding>> params;
  std::vector<std::string> excluded_layers;
  QuantizerArgs args;
  std::string version = "0.6.1";
};

// version "0.6.1", "1.0.0" or "2.0.0" (ONNX QuantizeLinear fields: {"version", "encodings": [{"name",
// "output_dtype", "y_scale", "y_zero_point"?, "axis"?}]}, parameters first; written for ONNX exports, not
// read back: the schema does not say which entries are parameters); anything else throws InputError.
nlohmann::json encodings_to_json(const EncodingsFile& f, const std::string& version = "0.6.1");
// Reads either schema (by its "version"; AdaRound-style files without one are read as 0.6.1 params).
EncodingsFile encodings_from_json(const nlohmann::json& j, const std::string& source = "<json>");

void write_encodings(const std::filesystem::path& path, const EncodingsFile& f, const std::string& version = "0.6.1");
EncodingsFile read_encodings(const std::filesystem::path& path);


}  // namespace qforge::quant
