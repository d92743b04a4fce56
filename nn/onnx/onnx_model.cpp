// Reading and checking ONNX files; decoding their tensors (Note [Hostile ONNX files] in onnx_model.hpp).
#include "nn/onnx/onnx_model.hpp"

#include "engine/half.hpp"
#include "engine/json_util.hpp"

#include <onnx/checker.h>
#include <onnx/shape_inference/implementation.h>

#include <cstring>
#include <fstream>
#include <set>

// Exported by libonnx 1.12 but not declared in its checker.h: the overload that takes the context, so
// the checker resolves external data relative to the model's directory (check_model(model) cannot).
namespace onnx::checker {
void check_model(const ModelProto& model, CheckerContext& ctx);
}

namespace qforge::nn::onnx_import {

namespace fs = std::filesystem;
using TP = ::onnx::TensorProto;

std::string node_label(const ::onnx::NodeProto& n) {
  return fmt::format("{} node '{}'", n.op_type(), n.name().empty() ? (n.output_size() ? n.output(0) : "") : n.name());
}

bool is_float_type(int32_t t) { return t == TP::FLOAT || t == TP::DOUBLE || t == TP::FLOAT16; }
bool is_int_type(int32_t t) {
  return t == TP::INT8 || t == TP::INT16 || t == TP::INT32 || t == TP::INT64 || t == TP::UINT8 || t == TP::UINT16 ||
         t == TP::UINT32 || t == TP::UINT64 || t == TP::BOOL;
}
std::string type_name(int32_t t) {
  return TP::DataType_IsValid(t) ? TP::DataType_Name(static_cast<TP::DataType>(t)) : fmt::format("#{}", t);
}

std::vector<double> ConstTensor::values() const {
  if (is_float()) return f.to_vector<double>();
  return std::vector<double>(ints.begin(), ints.end());
}

namespace {

size_t element_bytes(int32_t t) {
  switch (t) {
    case TP::DOUBLE: case TP::INT64: case TP::UINT64: return 8;
    case TP::FLOAT: case TP::INT32: case TP::UINT32: return 4;
    case TP::FLOAT16: case TP::INT16: case TP::UINT16: return 2;
    default: return 1;
  }
}

// Little-endian bytes of `n` elements of type `t` -> the ConstTensor's storage.
void decode_bytes(ConstTensor& c, const char* p, int64_t n) {
  if (c.type == TP::FLOAT) {
    c.f = Tensor::from_buffer(p, c.dims, DType::f32);
    return;
  }
  if (is_float_type(c.type)) {
    c.f = Tensor::uninitialized(c.dims, DType::f32);
    float* out = c.f.data<float>();
    for (int64_t i = 0; i < n; ++i) {
      if (c.type == TP::DOUBLE) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      } else {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = half_to_float(h);
      }
    }
    return;
  }
  c.ints.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const char* e = p + i * element_bytes(c.type);
    int64_t v = 0;
    switch (c.type) {
      case TP::INT8: v = static_cast<int8_t>(*e); break;
      case TP::UINT8: case TP::BOOL: v = static_cast<uint8_t>(*e); break;
      case TP::INT16: { int16_t x; std::memcpy(&x, e, 2); v = x; break; }
      case TP::UINT16: { uint16_t x; std::memcpy(&x, e, 2); v = x; break; }
      case TP::INT32: { int32_t x; std::memcpy(&x, e, 4); v = x; break; }
      case TP::UINT32: { uint32_t x; std::memcpy(&x, e, 4); v = x; break; }
      case TP::INT64: std::memcpy(&v, e, 8); break;
      case TP::UINT64: { uint64_t x; std::memcpy(&x, e, 8); v = static_cast<int64_t>(std::min<uint64_t>(x, INT64_MAX)); break; }
      default: break;
    }
    c.ints[size_t(i)] = v;
  }
}

// The external data file of `t`: its location must be relative and stay inside `model_dir`.
fs::path external_file(const TP& t, const fs::path& model_dir, const std::string& what) {
  std::string location;
  for (const auto& kv : t.external_data())
    if (kv.key() == "location") location = kv.value();
  if (location.empty()) throw InputError(fmt::format("{}: external data without a 'location'", what));
  const fs::path rel(location);
  if (rel.is_absolute() || rel.has_root_name() || rel.has_root_directory())
    throw InputError(fmt::format("{}: external data location '{}' is an absolute path (refused)", what, location));
  for (const auto& part : rel)
    if (part == "..") throw InputError(fmt::format("{}: external data location '{}' leaves the model's directory (refused)", what, location));
  const fs::path dir = model_dir.empty() ? fs::path(".") : model_dir;
  const fs::path file = dir / rel;
  std::error_code ec;
  if (!fs::exists(file, ec))
    throw InputError(fmt::format("{}: external data file '{}' does not exist", what, file.string()));
  const fs::path canon_dir = fs::weakly_canonical(dir, ec), canon = fs::weakly_canonical(file, ec);
  const auto mismatch = std::mismatch(canon_dir.begin(), canon_dir.end(), canon.begin(), canon.end());
  if (ec || mismatch.first != canon_dir.end())
    throw InputError(fmt::format("{}: external data file '{}' lies outside the model's directory (refused)", what, location));
  return file;
}

// The external data file of `t`, checked to stay inside `model_dir`, read at offset/length.
std::string read_external(const TP& t, const fs::path& model_dir, const std::string& what, uint64_t nbytes) {
  std::string location;
  uint64_t offset = 0;
  std::optional<uint64_t> length;
  for (const auto& kv : t.external_data()) {
    auto number = [&](const std::string& s) -> uint64_t {
      if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
        throw InputError(fmt::format("{}: external data {} '{}' is not a non-negative integer", what, kv.key(), s));
      return std::stoull(s);
    };
    if (kv.key() == "location") location = kv.value();
    else if (kv.key() == "offset") offset = number(kv.value());
    else if (kv.key() == "length") length = number(kv.value());
  }
  const fs::path file = external_file(t, model_dir, what);
  std::error_code ec;
  if (!fs::is_regular_file(file, ec))
    throw InputError(fmt::format("{}: external data file '{}' is not a regular file", what, file.string()));
  const uint64_t size = fs::file_size(file, ec);
  if (length && *length != nbytes)
    throw InputError(fmt::format("{}: external data length {} does not match its dims ({} bytes)", what, *length, nbytes));
  if (offset > size || nbytes > size - offset)
    throw InputError(fmt::format("{}: external data [{}, {}) lies past the end of '{}' ({} bytes)", what, offset,
                                 offset + nbytes, file.string(), size));
  std::ifstream f(file, std::ios::binary);
  std::string bytes(nbytes, '\0');
  f.seekg(static_cast<std::streamoff>(offset));
  f.read(bytes.data(), static_cast<std::streamsize>(nbytes));
  if (!f) throw InputError(fmt::format("{}: cannot read external data from '{}'", what, file.string()));
  return bytes;
}

}  // namespace

ConstTensor decode_tensor(const TP& t, const fs::path& model_dir, const std::string& what) {
  ConstTensor c;
  c.type = t.data_type();
  if (!is_float_type(c.type) && !is_int_type(c.type))
    throw InputError(fmt::format("{}: data type {} is not supported", what, type_name(c.type)));
  if (t.dims_size() > kMaxTensorRank) throw InputError(fmt::format("{}: rank {} is above {}", what, t.dims_size(), kMaxTensorRank));
  std::optional<uint64_t> n = 1;
  for (int64_t d : t.dims()) {
    if (d < 0) throw InputError(fmt::format("{}: negative dimension {}", what, d));
    n = n ? checked_mul(*n, static_cast<uint64_t>(d), kMaxTensorElements) : n;
    c.dims.push_back(d);
  }
  if (!n) throw InputError(fmt::format("{}: dims {} hold more than {} elements", what, shape_str(c.dims), kMaxTensorElements));
  const int64_t count = static_cast<int64_t>(*n);
  const uint64_t nbytes = *n * element_bytes(c.type);
  if (t.has_data_location() && t.data_location() == TP::EXTERNAL) {
    const std::string bytes = read_external(t, model_dir, what, nbytes);
    decode_bytes(c, bytes.data(), count);
    return c;
  }
  if (t.has_raw_data()) {
    if (t.raw_data().size() != nbytes)
      throw InputError(fmt::format("{}: raw_data holds {} bytes, its dims {} of {} need {}", what, t.raw_data().size(),
                                   shape_str(c.dims), type_name(c.type), nbytes));
    decode_bytes(c, t.raw_data().data(), count);
    return c;
  }
  // Typed fields (ONNX's rules: which field holds which type).
  auto need = [&](int64_t have, const char* field) {
    if (have != count)
      throw InputError(fmt::format("{}: {} holds {} values, its dims {} need {}", what, field, have, shape_str(c.dims), count));
  };
  switch (c.type) {
    case TP::FLOAT:
      need(t.float_data_size(), "float_data");
      c.f = Tensor::from_buffer(t.float_data().data(), c.dims, DType::f32);
      break;
    case TP::DOUBLE: {
      need(t.double_data_size(), "double_data");
      c.f = Tensor::uninitialized(c.dims, DType::f32);
      for (int64_t i = 0; i < count; ++i) c.f.data<float>()[i] = static_cast<float>(t.double_data(int(i)));
      break;
    }
    case TP::FLOAT16: {
      need(t.int32_data_size(), "int32_data");
      c.f = Tensor::uninitialized(c.dims, DType::f32);
      for (int64_t i = 0; i < count; ++i) c.f.data<float>()[i] = half_to_float(static_cast<uint16_t>(t.int32_data(int(i))));
      break;
    }
    case TP::INT64:
      need(t.int64_data_size(), "int64_data");
      c.ints.assign(t.int64_data().begin(), t.int64_data().end());
      break;
    case TP::UINT32: case TP::UINT64:
      need(t.uint64_data_size(), "uint64_data");
      for (uint64_t v : t.uint64_data()) c.ints.push_back(static_cast<int64_t>(std::min<uint64_t>(v, INT64_MAX)));
      break;
    default:
      need(t.int32_data_size(), "int32_data");
      c.ints.assign(t.int32_data().begin(), t.int32_data().end());
      break;
  }
  return c;
}

namespace {

// ONNX's checker and shape inference throw std exceptions whose text names the node; keep the first lines.
std::string onnx_message(const std::exception& e) {
  std::string s = e.what();
  if (s.size() > 600) s = s.substr(0, 600) + " ...";
  return s;
}

void read_shapes(LoadedModel& m) {
  auto add = [&](const ::onnx::ValueInfoProto& v) {
    if (!v.type().has_tensor_type()) return;
    const auto& tt = v.type().tensor_type();
    m.elem_types[v.name()] = tt.elem_type();
    if (!tt.has_shape()) return;
    Shape s;
    for (const auto& d : tt.shape().dim()) s.push_back(d.has_dim_value() && d.dim_value() >= 0 ? d.dim_value() : -1);
    m.shapes[v.name()] = s;
  };
  const auto& g = m.proto.graph();
  for (const auto& v : g.input()) add(v);
  for (const auto& v : g.value_info()) add(v);
  for (const auto& v : g.output()) add(v);
  for (const auto& t : g.initializer()) {
    m.shapes[t.name()] = Shape(t.dims().begin(), t.dims().end());
    m.elem_types[t.name()] = t.data_type();
  }
}

}  // namespace

bool has_unknown_shapes(const LoadedModel& m) {
  for (const auto& n : m.proto.graph().node())
    for (const auto& o : n.output()) {
      if (o.empty()) continue;
      auto it = m.shapes.find(o);
      if (it == m.shapes.end() || std::any_of(it->second.begin(), it->second.end(), [](int64_t d) { return d < 0; })) return true;
    }
  return false;
}

namespace {

void to_proto(const ConstTensor& c, const std::string& name, TP* t) {
  t->set_name(name);
  for (int64_t d : c.dims) t->add_dims(d);
  if (c.is_float()) {
    t->set_data_type(TP::FLOAT);
    const std::vector<float> v = c.f.to_vector<float>();
    t->set_raw_data(v.data(), v.size() * sizeof(float));
  } else if (c.type == TP::INT64 || c.type == TP::UINT64 || c.type == TP::UINT32) {
    t->set_data_type(TP::INT64);
    for (int64_t v : c.ints) t->add_int64_data(v);
  } else {
    t->set_data_type(c.type);
    for (int64_t v : c.ints) t->add_int32_data(static_cast<int32_t>(v));
  }
}

}  // namespace

void refine_shapes(LoadedModel& m, const std::map<std::string, const ConstTensor*>& folded) {
  constexpr int64_t kCopyLimit = 4096;  // larger initializers enter the copy as typed inputs
  const auto& g = m.proto.graph();
  ::onnx::ModelProto copy;
  copy.set_ir_version(m.proto.ir_version());
  *copy.mutable_opset_import() = m.proto.opset_import();
  auto* cg = copy.mutable_graph();
  cg->set_name(g.name());
  std::set<std::string> inits;
  for (const auto& t : g.initializer()) {
    inits.insert(t.name());
    int64_t n = 1;
    for (int64_t d : t.dims()) n *= d;
    if (n <= kCopyLimit && t.data_location() != TP::EXTERNAL) {
      *cg->add_initializer() = t;
    } else {
      auto* in = cg->add_input();
      in->set_name(t.name());
      auto* tt = in->mutable_type()->mutable_tensor_type();
      tt->set_elem_type(t.data_type());
      for (int64_t d : t.dims()) tt->mutable_shape()->add_dim()->set_dim_value(d);
    }
  }
  for (const auto& in : g.input())
    if (!inits.count(in.name())) *cg->add_input() = in;
  for (const auto& [name, c] : folded)
    if (c->numel() <= kCopyLimit) to_proto(*c, name, cg->add_initializer());
  for (const auto& n : g.node()) {
    bool all_folded = n.output_size() > 0;
    for (const auto& o : n.output()) all_folded = all_folded && (o.empty() || folded.count(o));
    if (!all_folded) *cg->add_node() = n;
  }
  for (const auto& o : g.output()) {
    auto* out = cg->add_output();
    out->set_name(o.name());
    if (o.type().has_tensor_type()) out->mutable_type()->mutable_tensor_type()->set_elem_type(o.type().tensor_type().elem_type());
  }
  try {
    ::onnx::ShapeInferenceOptions opts(false, 0, true);
    ::onnx::shape_inference::InferShapes(copy, ::onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception&) {
    return;  // the first pass's shapes stay; lowering names what it cannot resolve
  }
  LoadedModel refined;
  refined.proto.Swap(&copy);
  read_shapes(refined);
  for (const auto& [name, s] : refined.shapes) {
    auto it = m.shapes.find(name);
    const bool better = it == m.shapes.end() || (it->second.size() == s.size() &&
        std::count(s.begin(), s.end(), -1) < std::count(it->second.begin(), it->second.end(), -1));
    if (better) m.shapes[name] = s;
  }
}

LoadedModel load_onnx(const fs::path& path, const std::map<std::string, Shape>& input_shapes) {
  LoadedModel m;
  m.path = path;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw InputError(fmt::format("{}: no such file", path.string()));
  if (!fs::is_regular_file(path, ec)) throw InputError(fmt::format("{}: not a regular file", path.string()));
  const uint64_t size = fs::file_size(path, ec);
  if (ec || size >= (uint64_t{1} << 31))
    throw InputError(fmt::format("{}: {} bytes; ONNX files (protobuf) are limited to 2 GiB (use external data)", path.string(), size));
  std::string bytes;
  {
    std::ifstream f(path, std::ios::binary);
    bytes.resize(size);
    f.read(bytes.data(), static_cast<std::streamsize>(size));
    if (!f) throw InputError(fmt::format("{}: cannot read the file", path.string()));
  }
  if (!m.proto.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())))
    throw InputError(fmt::format("{}: not a valid ONNX model (protobuf parse failed: truncated or corrupt)", path.string()));
  bytes = std::string();  // the parsed proto holds its own copy
  if (!m.proto.has_graph() || m.proto.graph().node_size() == 0)
    throw InputError(fmt::format("{}: not an ONNX model (no graph nodes)", path.string()));
  for (const auto& op : m.proto.opset_import())
    if (op.domain().empty() || op.domain() == "ai.onnx") m.opset = op.version();
  if (m.opset < kMinOpset || m.opset > kMaxOpset)
    throw InputError(fmt::format("{}: opset {} is not supported (qforge imports opsets {}-{})", path.string(), m.opset,
                                 kMinOpset, kMaxOpset));
  // External data locations are checked before ONNX's checker looks at (and opens) them.
  for (const auto& t : m.proto.graph().initializer())
    if (t.has_data_location() && t.data_location() == TP::EXTERNAL)
      external_file(t, path.parent_path(), fmt::format("{}: initializer '{}'", path.string(), t.name()));
  try {
    ::onnx::checker::CheckerContext ctx;
    ctx.set_model_dir(path.parent_path().empty() ? std::string(".") : path.parent_path().string());
    ::onnx::checker::check_model(m.proto, ctx);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: ONNX checker: {}", path.string(), onnx_message(e)));
  }

  // Graph inputs (those without an initializer) get their shapes: --input-shape, else the file's, with a
  // dynamic first dimension taken as 1 (the batch: the imported model runs at any batch size).
  auto* g = m.proto.mutable_graph();
  std::set<std::string> inits;
  for (const auto& t : g->initializer()) inits.insert(t.name());
  std::set<std::string> used;
  for (auto& in : *g->mutable_input()) {
    if (inits.count(in.name())) continue;
    if (!in.type().has_tensor_type())
      throw InputError(fmt::format("{}: graph input '{}' is not a tensor", path.string(), in.name()));
    auto* shape = in.mutable_type()->mutable_tensor_type()->mutable_shape();
    if (auto it = input_shapes.find(in.name()); it != input_shapes.end()) {
      used.insert(in.name());
      if (shape->dim_size() != 0 && shape->dim_size() != static_cast<int>(it->second.size()))
        throw InputError(fmt::format("--input-shape {}: {} dims given, the model's input has rank {}", in.name(),
                                     it->second.size(), shape->dim_size()));
      shape->clear_dim();
      for (int64_t d : it->second) shape->add_dim()->set_dim_value(d);
      continue;
    }
    for (int i = 0; i < shape->dim_size(); ++i) {
      auto* d = shape->mutable_dim(i);
      if (d->has_dim_value() && d->dim_value() > 0) continue;
      if (i == 0) {
        m.notes.push_back(fmt::format("input '{}': dynamic first dimension{} taken as batch 1 for import", in.name(),
                                      d->has_dim_param() ? " '" + d->dim_param() + "'" : ""));
        d->set_dim_value(1);
      }
    }
  }
  for (const auto& [name, s] : input_shapes)
    if (!used.count(name)) throw InputError(fmt::format("--input-shape {}: the model has no input of that name", name));
  // Shape inference from scratch on the (possibly re-shaped) inputs: drop the exporter's intermediate and
  // output shapes, which may disagree with an --input-shape override.
  g->clear_value_info();
  for (auto& out : *g->mutable_output())
    if (out.type().has_tensor_type()) out.mutable_type()->mutable_tensor_type()->clear_shape();
  try {
    ::onnx::ShapeInferenceOptions opts(/*check_type=*/false, /*strict=*/1, /*data_prop=*/true);
    ::onnx::shape_inference::InferShapes(m.proto, ::onnx::OpSchemaRegistry::Instance(), opts);
  } catch (const std::exception& e) {
    throw InputError(fmt::format("{}: ONNX shape inference: {}", path.string(), onnx_message(e)));
  }
  read_shapes(m);
  return m;
}

}  // namespace qforge::nn::onnx_import
