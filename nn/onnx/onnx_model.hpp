// Internal to nn/onnx/: reading an ONNX file into a checked ModelProto, and decoding its tensors.
// The only header (with quant/export's) that includes the ONNX/protobuf headers (DESIGN.md §7).
//
// Note [Hostile ONNX files]
// Every size in the file is checked before anything is allocated from it: the file size (protobuf's 2 GiB
// limit), ParseFromArray's result, each tensor's rank, dims (non-negative, product within
// kMaxTensorElements), data_type (only the types below), and the byte count of raw_data or of the typed
// field against the dims. External data (data_location = EXTERNAL, keys location/offset/length) is read
// relative to the model file's directory; absolute paths and paths that leave the directory ("..", or a
// symbolic link pointing outside) are refused, as are offsets/lengths past the end of the data file.
// ONNX's checker and shape inference run on the parsed model; their exceptions become InputErrors naming
// the node. All problems are InputErrors (exit 2), never crashes.
#pragma once

#include "engine/tensor.hpp"

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qforge::nn::onnx_import {

inline constexpr int64_t kMaxTensorElements = int64_t{1} << 31;
inline constexpr int kMaxTensorRank = 8;
inline constexpr int kMinOpset = 11, kMaxOpset = 17;

// A tensor known at import time: an initializer, a Constant node's value, or a folded result.
// Float types (FLOAT, DOUBLE, FLOAT16) are held as an f32 Tensor; integer and bool types as int64 values.
struct ConstTensor {
  int32_t type = 0;  // onnx::TensorProto_DataType
  Shape dims;
  Tensor f;                   // float types
  std::vector<int64_t> ints;  // integer and bool types
  // Note [Batch provenance]: per element of `ints`, whether it is the model's batch size (it came from
  // Shape of a batch dimension), so a Reshape target that carries it can keep the batch flexible.
  std::vector<uint8_t> batch;
  bool is_float() const { return f.defined(); }
  int64_t numel() const { return shape_numel(dims); }
  std::vector<double> values() const;  // every element as double
};

// The value types the importer understands; anything else is refused naming the tensor.
bool is_float_type(int32_t t);
bool is_int_type(int32_t t);  // INT8..INT64, UINT8..UINT64, BOOL
std::string type_name(int32_t t);

// Decodes `t` (`what` names it in errors, e.g. "initializer 'conv1.weight'"); `model_dir` resolves
// external data.
ConstTensor decode_tensor(const ::onnx::TensorProto& t, const std::filesystem::path& model_dir, const std::string& what);

struct LoadedModel {
  ::onnx::ModelProto proto;
  std::filesystem::path path;
  int64_t opset = 0;  // default-domain opset
  // Shapes from shape inference (after --input-shape overrides): value name -> dims, -1 = unknown.
  std::map<std::string, Shape> shapes;
  std::map<std::string, int32_t> elem_types;
  std::vector<std::string> notes;  // assumptions made (e.g. a dynamic batch dimension taken as 1)
};

// Reads, parses and checks `path`; applies `input_shapes` (graph input name -> dims) to the graph inputs,
// takes a dynamic first dimension as 1 (the batch; the imported model keeps it flexible), runs shape
// inference. InputError on any problem.
LoadedModel load_onnx(const std::filesystem::path& path, const std::map<std::string, Shape>& input_shapes);

// Note [Shape refinement]
// ONNX's shape inference stops at a node whose shape depends on a computed operand (a Pad whose pads
// come from a Shape -> ... -> Cast chain): everything after it has no shape. The importer then folds the
// constants it can (Lowerer::fold_only), and runs shape inference again on a light copy of the graph in
// which those values are initializers (large initializers become typed inputs, so no weights are
// copied); shapes found this way fill the gaps. Repeated while it finds new shapes (at most 4 times).
// True when some node output still has no (fully known) shape.
bool has_unknown_shapes(const LoadedModel& m);
void refine_shapes(LoadedModel& m, const std::map<std::string, const ConstTensor*>& folded);

// "Conv" node '/layer1/conv1/Conv' — how errors name a node.
std::string node_label(const ::onnx::NodeProto& n);

}  // namespace qforge::nn::onnx_import
