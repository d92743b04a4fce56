#include "quant/export/onnx_builder.hpp"

#include "engine/error.hpp"
#include "engine/file_io.hpp"

#include <onnx/checker.h>

#include <fmt/format.h>

#include <cstring>

namespace qforge::quant::exporter {

namespace {

int64_t element_count(const std::vector<int64_t>& dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

void set_shape(onnx::ValueInfoProto* v, int32_t elem_type, const std::vector<int64_t>& dims) {
  auto* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(elem_type);
  auto* shape = t->mutable_shape();
  for (int64_t d : dims) {
    auto* dim = shape->add_dim();
    if (d < 0) dim->set_dim_param("batch");
    else dim->set_dim_value(d);
  }
}

}  // namespace

OnnxBuilder::OnnxBuilder(std::string graph_name, int64_t opset) {
  model_.set_ir_version(8);  // IR 8 goes with opsets 13..17 (ONNX's versioning table)
  model_.set_producer_name("qforge");
  model_.set_producer_version("0.1.0");
  auto* op = model_.add_opset_import();
  op->set_domain("");
  op->set_version(opset);
  graph_ = model_.mutable_graph();
  graph_->set_name(std::move(graph_name));
}

std::string OnnxBuilder::fresh(const std::string& base) {
  const std::string b = base.empty() ? "t" : base;
  auto take = [&](const std::string& n) { return !reserved_.count(n) && used_.insert(n).second; };
  if (take(b)) return b;
  for (int k = 1;; ++k) {
    std::string n = fmt::format("{}_{}", b, k);
    if (take(n)) return n;
  }
}

std::string OnnxBuilder::claim(const std::string& name) {
  if (!used_.insert(name).second) throw Error(fmt::format("ONNX export: tensor name '{}' is used twice", name));
  return name;
}

onnx::TensorProto* OnnxBuilder::new_initializer(const std::string& name, bool exact, int32_t type,
                                                 const std::vector<int64_t>& dims) {
  onnx::TensorProto* t = graph_->add_initializer();
  t->set_name(exact ? claim(name) : fresh(name));
  t->set_data_type(type);
  for (int64_t d : dims) t->add_dims(d);
  return t;
}

std::string OnnxBuilder::add_float(const std::string& name, const std::vector<int64_t>& dims, const float* data, bool exact) {
  auto* t = new_initializer(name, exact, onnx::TensorProto_DataType_FLOAT, dims);
  t->set_raw_data(data, sizeof(float) * element_count(dims));  // raw_data is little-endian, like the hosts we build for
  return t->name();
}
std::string OnnxBuilder::add_int8(const std::string& name, const std::vector<int64_t>& dims, const int8_t* data, bool exact) {
  auto* t = new_initializer(name, exact, onnx::TensorProto_DataType_INT8, dims);
  t->set_raw_data(data, element_count(dims));
  return t->name();
}
std::string OnnxBuilder::add_uint8(const std::string& name, const std::vector<int64_t>& dims, const uint8_t* data, bool exact) {
  auto* t = new_initializer(name, exact, onnx::TensorProto_DataType_UINT8, dims);
  t->set_raw_data(data, element_count(dims));
  return t->name();
}
std::string OnnxBuilder::add_int32(const std::string& name, const std::vector<int64_t>& dims, const int32_t* data, bool exact) {
  auto* t = new_initializer(name, exact, onnx::TensorProto_DataType_INT32, dims);
  t->set_raw_data(data, sizeof(int32_t) * element_count(dims));
  return t->name();
}
std::string OnnxBuilder::add_int64(const std::string& name, const std::vector<int64_t>& dims, const int64_t* data, bool exact) {
  auto* t = new_initializer(name, exact, onnx::TensorProto_DataType_INT64, dims);
  t->set_raw_data(data, sizeof(int64_t) * element_count(dims));
  return t->name();
}

std::string OnnxBuilder::scalar_float(const std::string& base, float v) { return add_float(base, {}, &v, false); }
std::string OnnxBuilder::scalar_uint8(const std::string& base, uint8_t v) { return add_uint8(base, {}, &v, false); }
std::string OnnxBuilder::scalar_int8(const std::string& base, int8_t v) { return add_int8(base, {}, &v, false); }
std::string OnnxBuilder::ints(const std::string& base, const std::vector<int64_t>& v) {
  return add_int64(base, {static_cast<int64_t>(v.size())}, v.data(), false);
}

std::string OnnxBuilder::node(const std::string& op, const std::vector<std::string>& inputs,
                              const std::vector<std::string>& outputs, const std::vector<OnnxAttr>& attrs,
                              const std::string& node_name) {
  onnx::NodeProto* n = graph_->add_node();
  n->set_op_type(op);
  // Node names are unique (ORT reports duplicates): "conv1", "conv1_1", ...
  std::string name = node_name.empty() ? op : node_name;
  for (int k = 1; !node_names_.insert(name).second; ++k) name = fmt::format("{}_{}", node_name.empty() ? op : node_name, k);
  n->set_name(name);
  for (const auto& i : inputs) n->add_input(i);
  for (const auto& o : outputs) n->add_output(o);
  for (const auto& a : attrs) {
    onnx::AttributeProto* p = n->add_attribute();
    p->set_name(a.name);
    switch (a.kind) {
      case OnnxAttr::Kind::i: p->set_type(onnx::AttributeProto_AttributeType_INT); p->set_i(a.i); break;
      case OnnxAttr::Kind::f: p->set_type(onnx::AttributeProto_AttributeType_FLOAT); p->set_f(a.f); break;
      case OnnxAttr::Kind::ints:
        p->set_type(onnx::AttributeProto_AttributeType_INTS);
        for (int64_t v : a.ints) p->add_ints(v);
        break;
      case OnnxAttr::Kind::s: p->set_type(onnx::AttributeProto_AttributeType_STRING); p->set_s(a.s); break;
    }
  }
  return outputs.empty() ? std::string() : outputs[0];
}

std::string OnnxBuilder::op(const std::string& op_type, const std::vector<std::string>& inputs,
                            const std::string& out_base, const std::vector<OnnxAttr>& attrs) {
  return node(op_type, inputs, {fresh(out_base)}, attrs);
}

void OnnxBuilder::input(const std::string& name, int32_t elem_type, const std::vector<int64_t>& dims) {
  set_shape(graph_->add_input(), elem_type, dims);
  graph_->mutable_input(graph_->input_size() - 1)->set_name(name);
}

void OnnxBuilder::output(const std::string& name, int32_t elem_type, const std::vector<int64_t>& dims) {
  set_shape(graph_->add_output(), elem_type, dims);
  graph_->mutable_output(graph_->output_size() - 1)->set_name(name);
}

void OnnxBuilder::metadata(const std::string& key, const std::string& value) {
  auto* p = model_.add_metadata_props();
  p->set_key(key);
  p->set_value(value);
}

const onnx::ModelProto& OnnxBuilder::finish() {
  if (!finished_) {
    try {
      onnx::checker::check_model(model_);
    } catch (const std::exception& e) {
      throw Error(fmt::format("ONNX export: the written graph fails ONNX's checker: {}", e.what()));
    }
    finished_ = true;
  }
  return model_;
}

void OnnxBuilder::save(const std::filesystem::path& path) {
  const onnx::ModelProto& m = finish();
  std::string bytes;
  if (!m.SerializeToString(&bytes)) throw Error("ONNX export: protobuf serialization failed (model over 2 GB?)");
  write_file_atomic(path, bytes);
}

}  // namespace qforge::quant::exporter
