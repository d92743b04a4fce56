// AIMET encodings files (aimet-compat.md §3): schemas 0.6.1 (default), 1.0.0, 2.0.0 and 2.1.0, written and read.
//
// 0.6.1: {"version", "activation_encodings": {name: [Enc...]}, "param_encodings": {name: [Enc...]},
//         "excluded_layers", "quantizer_args"}, Enc = {"bitwidth", "dtype": "int", "is_symmetric":
//         "True"|"False" (a string), "min", "max", "offset", "scale"}; float: {"bitwidth": 16, "dtype": "float"}.
// 1.0.0: lists of {"name", "dtype": "INT"|"FLOAT", "enc_type": "PER_TENSOR"|"PER_CHANNEL", "bw",
//         "is_sym" (JSON bool), "scale": [...], "offset": [...]}; no min/max.
//         Blockwise: "enc_type": "PER_BLOCK", "block_size", one scale/offset per block; LPBQ: "enc_type": "LPBQ",
//         "bw" = decompressed width, "compressed_bw", per-channel "scale"/"offset", "per_block_int_scale".
// Offsets keep AIMET's sign in both (signed symmetric 8-bit -128, asymmetric -zero_point). One list entry
// per channel (more than one = per-channel). quantizer_args flags are JSON booleans.
// 2.0.0: {"version", "encodings": [{"name", "output_dtype": "int<bw>"|"uint<bw>", "y_scale", "y_zero_point"?,
//         "axis"?, "block_size"?}]} — ONNX QuantizeLinear's fields, y_zero_point = −offset (signed dtypes:
//         −offset − 2^(bw−1)), omitted when all zero; per-channel: axis 0; blockwise: axis 1, block_size,
//         y_scale flat in (o, b) order; LPBQ: per_block_int_scale + per_channel_float_scale (no y_scale).
// 2.1.0: 2.0.0, but LPBQ's y_scale is the meta encoding {"x": multipliers, "x_scale": per-channel scales,
//         "axis": 0} (DequantizeLinear of the integer block scales).
// 2.x files do not say which entries are parameters: on read, entries with block fields, int32 entries and
// names whose last dotted component starts with "weight" or "bias" (PyTorch state_dict keys, e.g.
// conv1.weight, lstm.weight_ih_l0) are parameters, the rest activations. 2.x knows only int2/4/8/16/32
// grids: other bitwidths are refused on write (use 1.0.0). Strict symmetric grids read back as plain
// symmetric (2.x has no such flag; the codes a strict grid produces are the same). LPBQ's decompressed
// width is not in 2.x files: it is read as 2 × the weights' bitwidth, as AIMET does.
// Files are written to a temporary name and renamed (never half-written).
#pragma once

#include "engine/file_io.hpp"  // write_file_atomic

#include "quant/blockwise.hpp"
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
  // Blockwise/LPBQ parameters: their block layout (params[name] holds the block encodings, (o, b) order).
  std::map<std::string, BlockEntry> blocks;
  std::vector<std::string> excluded_layers;
  QuantizerArgs args;
  std::string version = "0.6.1";
};

// version "0.6.1", "1.0.0", "2.0.0" or "2.1.0" (parameters first); anything else, or content the schema
// cannot express (blockwise in 0.6.1, a 3-bit grid in 2.x), throws InputError naming the tensor.
nlohmann::json encodings_to_json(const EncodingsFile& f, const std::string& version = "0.6.1");
// Reads any schema above (by its "version"; AdaRound-style files without one are read as 0.6.1 params),
// checking every field: errors name the file, the JSON path (tensor entry) and the field.
EncodingsFile encodings_from_json(const nlohmann::json& j, const std::string& source = "<json>");

void write_encodings(const std::filesystem::path& path, const EncodingsFile& f, const std::string& version = "0.6.1");
EncodingsFile read_encodings(const std::filesystem::path& path);


}  // namespace qforge::quant
