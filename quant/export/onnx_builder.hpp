// Internal to quant/export: a small writer of ONNX graphs on top of libonnx's protobuf classes (Debian's
// libonnx-dev 1.12). The exporters describe a model as nodes and initializers; the builder names tensors
// uniquely, records value types for the graph's inputs and outputs, runs ONNX's checker and writes the
// file atomically. Only quant/export includes this header (DESIGN.md §7: ONNX headers stay in nn/onnx
// and quant/export).
#pragma once

#include <onnx/onnx_pb.h>

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <set>
#include <string>
#include <vector>

namespace qforge::quant::exporter {

// An attribute of a node: an int, a float, a list of ints, or a string.
struct OnnxAttr {
  std::string name;
  enum class Kind { i, f, ints, s } kind = Kind::i;
  int64_t i = 0;
  float f = 0;
  std::vector<int64_t> ints;
  std::string s;

  static OnnxAttr integer(std::string n, int64_t v) { return {std::move(n), Kind::i, v, 0, {}, {}}; }
  static OnnxAttr real(std::string n, float v) { return {std::move(n), Kind::f, 0, v, {}, {}}; }
  static OnnxAttr list(std::string n, std::vector<int64_t> v) { return {std::move(n), Kind::ints, 0, 0, std::move(v), {}}; }
  static OnnxAttr text(std::string n, std::string v) { return {std::move(n), Kind::s, 0, 0, {}, std::move(v)}; }
};

class OnnxBuilder {
public:
  // opset: the default domain's opset; com.microsoft is never used.
  OnnxBuilder(std::string graph_name, int64_t opset);

  // A fresh tensor name derived from `base` ("x", "x_1", "x_2", ...); reserved names are never returned.
  std::string fresh(const std::string& base);
  // Claims an exact name (graph inputs/outputs, original initializer names); throws Error if taken.
  std::string claim(const std::string& name);
  // Keeps fresh() from ever returning `name`, so it can be claimed later.
  void reserve(const std::string& name) { reserved_.insert(name); }

  // Initializers (the name is claimed exactly when `exact`, else made fresh).
  std::string add_float(const std::string& name, const std::vector<int64_t>& dims, const float* data, bool exact = true);
  std::string add_int8(const std::string& name, const std::vector<int64_t>& dims, const int8_t* data, bool exact = true);
  std::string add_uint8(const std::string& name, const std::vector<int64_t>& dims, const uint8_t* data, bool exact = true);
  std::string add_int32(const std::string& name, const std::vector<int64_t>& dims, const int32_t* data, bool exact = true);
  std::string add_int64(const std::string& name, const std::vector<int64_t>& dims, const int64_t* data, bool exact = true);
  // Scalars (0-d) with a fresh name.
  std::string scalar_float(const std::string& base, float v);
  std::string scalar_uint8(const std::string& base, uint8_t v);
  std::string scalar_int8(const std::string& base, int8_t v);
  std::string ints(const std::string& base, const std::vector<int64_t>& v);  // 1-d int64

  // Appends a node; `outputs` are names already made fresh or claimed. Returns outputs[0].
  std::string node(const std::string& op, const std::vector<std::string>& inputs, const std::vector<std::string>& outputs,
                   const std::vector<OnnxAttr>& attrs = {}, const std::string& node_name = "");
  // One-output convenience: the output is fresh(out_base).
  std::string op(const std::string& op, const std::vector<std::string>& inputs, const std::string& out_base,
                 const std::vector<OnnxAttr>& attrs = {});

  // Graph inputs/outputs: elem_type is an onnx::TensorProto_DataType; a dim < 0 is symbolic ("batch").
  void input(const std::string& name, int32_t elem_type, const std::vector<int64_t>& dims);
  void output(const std::string& name, int32_t elem_type, const std::vector<int64_t>& dims);

  // Metadata stored in the model (producer name/version are set by the builder).
  void metadata(const std::string& key, const std::string& value);

  // Runs onnx::checker::check_model (Error naming the failure) and returns the model.
  const onnx::ModelProto& finish();
  // finish() + write to `path` through a temporary sibling and a rename.
  void save(const std::filesystem::path& path);

  int64_t num_nodes() const { return graph_->node_size(); }

private:
  onnx::TensorProto* new_initializer(const std::string& name, bool exact, int32_t type, const std::vector<int64_t>& dims);

  onnx::ModelProto model_;
  onnx::GraphProto* graph_;
  std::set<std::string> used_, reserved_, node_names_;
  bool finished_ = false;
};

}  // namespace qforge::quant::exporter
