// Program description and bundle I/O. See program.hpp.
#include "quant/runtime/program.hpp"

#include "engine/error.hpp"
#include "engine/file_io.hpp"

#include <fmt/format.h>

#include <cstring>

namespace qforge::quant::runtime {

using json = nlohmann::json;

namespace {

constexpr const char* kKinds[] = {"conv2d",  "linear",  "maxpool2d", "avgpool2d",         "global_avgpool", "add",
                                  "requant", "flatten", "image_as_sequence", "last_step", "lstm",           "gru"};
constexpr int kNumKinds = 12;

json qparams_json(const QParams& q) {
  return {{"scale", q.scale}, {"zero_point", q.zero_point}, {"qmin", q.qmin}, {"qmax", q.qmax}};
}

QParams qparams_from(const json& j) {
  QParams q;
  q.scale = j.at("scale").get<float>();
  q.zero_point = j.at("zero_point").get<std::int32_t>();
  q.qmin = j.at("qmin").get<std::int32_t>();
  q.qmax = j.at("qmax").get<std::int32_t>();
  return q;
}

// FNV-1a over bytes: a cheap checksum for descriptions.
template <class T> std::uint64_t checksum(const std::vector<T>& v) {
  std::uint64_t h = 1469598103934665603ull;
  const auto* p = reinterpret_cast<const unsigned char*>(v.data());
  for (std::size_t i = 0; i < v.size() * sizeof(T); ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

// The blob: arrays appended with 8-byte alignment; the JSON records {"offset", "count"}.
class BlobWriter {
public:
  template <class T> json put(const std::vector<T>& v) {
    while (bytes_.size() % 8) bytes_.push_back('\0');
    const std::size_t off = bytes_.size();
    bytes_.resize(off + v.size() * sizeof(T));
    if (!v.empty()) std::memcpy(bytes_.data() + off, v.data(), v.size() * sizeof(T));
    return {{"offset", off}, {"count", v.size()}};
  }
  const std::string& bytes() const { return bytes_; }

private:
  std::string bytes_;
};

template <class T> std::vector<T> take(const std::string& blob, const json& j, const std::string& what) {
  const auto off = j.at("offset").get<std::uint64_t>(), count = j.at("count").get<std::uint64_t>();
  if (off > blob.size() || count > (blob.size() - off) / sizeof(T))
    throw InputError(fmt::format("bundle: array '{}' (offset {}, {} elements) lies outside program.bin ({} bytes)",
                                 what, off, count, blob.size()));
  std::vector<T> v(count);
  if (count) std::memcpy(v.data(), blob.data() + off, count * sizeof(T));
  return v;
}

std::vector<std::int32_t> mult_q(const std::vector<kernels::QuantizedMultiplier>& m) {
  std::vector<std::int32_t> v;
  for (const auto& x : m) v.push_back(x.multiplier);
  return v;
}
std::vector<std::int32_t> mult_s(const std::vector<kernels::QuantizedMultiplier>& m) {
  std::vector<std::int32_t> v;
  for (const auto& x : m) v.push_back(x.shift);
  return v;
}
std::vector<kernels::QuantizedMultiplier> mults(const std::vector<std::int32_t>& q, const std::vector<std::int32_t>& s,
                                                const std::string& what) {
  if (q.size() != s.size())
    throw InputError(fmt::format("bundle: {} has {} multipliers but {} shifts", what, q.size(), s.size()));
  std::vector<kernels::QuantizedMultiplier> m(q.size());
  for (std::size_t i = 0; i < q.size(); ++i) m[i] = {q[i], s[i]};
  return m;
}

json op_scalars(const Op& o) {
  json j = {{"kind", op_kind_name(o.kind)},
            {"name", o.name},
            {"inputs", o.inputs},
            {"output", o.output},
            {"in_c", o.in_c},
            {"out_c", o.out_c},
            {"kernel", {o.kh, o.kw}},
            {"stride", {o.stride_h, o.stride_w}},
            {"padding", {o.pad_h, o.pad_w}},
            {"dilation", {o.dilation_h, o.dilation_w}},
            {"groups", o.groups},
            {"per_channel", o.per_channel},
            {"range", {o.range.min, o.range.max}},
            {"act", o.act},
            {"count_include_pad", o.count_include_pad},
            {"add",
             {o.add.a_zero_point, o.add.b_zero_point, o.add.out_zero_point, o.add.a_multiplier, o.add.b_multiplier,
              o.add.shift, o.add.act_min, o.add.act_max}},
            {"m", {o.m.multiplier, o.m.shift}},
            {"identity", o.identity},
            {"cell",
             {o.cell.cell_exp, o.cell.cell_clip, o.cell.hidden.multiplier, o.cell.hidden.shift,
              o.cell.hidden_zero_point, o.cell.hidden_min, o.cell.hidden_max}},
            {"hidden", o.hidden}};
  return j;
}

Op op_from_scalars(const json& j) {
  Op o;
  o.kind = parse_op_kind(j.at("kind").get<std::string>());
  o.name = j.at("name").get<std::string>();
  o.inputs = j.at("inputs").get<std::vector<int>>();
  o.output = j.at("output").get<int>();
  o.in_c = j.at("in_c");
  o.out_c = j.at("out_c");
  o.kh = j.at("kernel")[0];
  o.kw = j.at("kernel")[1];
  o.stride_h = j.at("stride")[0];
  o.stride_w = j.at("stride")[1];
  o.pad_h = j.at("padding")[0];
  o.pad_w = j.at("padding")[1];
  o.dilation_h = j.at("dilation")[0];
  o.dilation_w = j.at("dilation")[1];
  o.groups = j.at("groups");
  o.per_channel = j.at("per_channel");
  o.range = {j.at("range")[0], j.at("range")[1]};
  o.act = j.at("act").get<std::string>();
  o.count_include_pad = j.at("count_include_pad");
  const auto& a = j.at("add");
  o.add = {a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7]};
  o.m = {j.at("m")[0], j.at("m")[1]};
  o.identity = j.at("identity");
  const auto& c = j.at("cell");
  o.cell.cell_exp = c[0];
  o.cell.cell_clip = c[1];
  o.cell.hidden = {c[2], c[3]};
  o.cell.hidden_zero_point = c[4];
  o.cell.hidden_min = c[5];
  o.cell.hidden_max = c[6];
  o.hidden = j.at("hidden");
  return o;
}

json value_json(const Value& v) {
  return {{"name", v.name}, {"module", v.module}, {"shape", v.shape}, {"q", qparams_json(v.q)}};
}

}  // namespace

const char* op_kind_name(OpKind k) { return kKinds[static_cast<int>(k)]; }

OpKind parse_op_kind(const std::string& s) {
  for (int i = 0; i < kNumKinds; ++i)
    if (s == kKinds[i]) return static_cast<OpKind>(i);
  throw InputError(fmt::format("bundle: unknown op kind '{}'", s));
}

std::int64_t Value::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::int64_t Program::weight_bytes() const {
  std::int64_t b = 0;
  for (const auto& o : ops)
    b += static_cast<std::int64_t>(o.weights.size() + o.weights_hh.size() + 4 * (o.bias.size() + o.bias_hh.size()) +
                                   8 * (o.mult.size() + o.mult_hh.size()));
  return b;
}

json Program::describe() const {
  json vs = json::array(), os = json::array();
  for (const auto& v : values) vs.push_back(value_json(v));
  for (const auto& o : ops) {
    json j = op_scalars(o);
    j["weights"] = {{"count", o.weights.size()}, {"checksum", checksum(o.weights)}};
    if (!o.weights_hh.empty()) j["weights_hh"] = {{"count", o.weights_hh.size()}, {"checksum", checksum(o.weights_hh)}};
    os.push_back(std::move(j));
  }
  return {{"format", "qforge-int8-program"}, {"version", 1}, {"model", model}, {"input", input}, {"output", output},
          {"values", vs}, {"ops", os}, {"weight_bytes", weight_bytes()}};
}

void save_bundle(const Program& p, const std::filesystem::path& dir) {
  std::filesystem::create_directories(dir);
  BlobWriter blob;
  json vs = json::array(), os = json::array();
  for (const auto& v : p.values) vs.push_back(value_json(v));
  for (const auto& o : p.ops) {
    json j = op_scalars(o);
    j["arrays"] = {{"weights", blob.put(o.weights)},       {"weights_hh", blob.put(o.weights_hh)},
                   {"bias", blob.put(o.bias)},             {"bias_hh", blob.put(o.bias_hh)},
                   {"mult_q", blob.put(mult_q(o.mult))},   {"mult_shift", blob.put(mult_s(o.mult))},
                   {"mult_hh_q", blob.put(mult_q(o.mult_hh))}, {"mult_hh_shift", blob.put(mult_s(o.mult_hh))}};
    os.push_back(std::move(j));
  }
  const json desc = {{"format", "qforge-int8-bundle"}, {"version", 1}, {"model", p.model}, {"input", p.input},
                     {"output", p.output}, {"blob", "program.bin"}, {"blob_bytes", blob.bytes().size()},
                     {"values", vs}, {"ops", os}};
  write_file_atomic(dir / "program.bin", blob.bytes());
  write_file_atomic(dir / "program.json", desc.dump(1) + "\n");
}

Program load_bundle(const std::filesystem::path& dir) {
  const auto jpath = dir / "program.json";
  json desc;
  try {
    desc = json::parse(read_file(jpath));
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: not valid JSON: {}", jpath.string(), e.what()));
  }
  try {
    if (desc.value("format", "") != "qforge-int8-bundle")
      throw InputError(fmt::format("{}: not a qforge int8 bundle (format '{}')", jpath.string(), desc.value("format", "")));
    const std::string blob = read_file(dir / desc.at("blob").get<std::string>());
    if (blob.size() != desc.at("blob_bytes").get<std::size_t>())
      throw InputError(fmt::format("{}: program.bin has {} bytes, program.json expects {}", dir.string(), blob.size(),
                                   desc.at("blob_bytes").get<std::size_t>()));
    Program p;
    p.model = desc.at("model").get<std::string>();
    p.input = desc.at("input");
    p.output = desc.at("output");
    for (const auto& v : desc.at("values"))
      p.values.push_back({v.at("name"), v.at("module"), v.at("shape").get<std::vector<std::int64_t>>(),
                          qparams_from(v.at("q"))});
    for (const auto& j : desc.at("ops")) {
      Op o = op_from_scalars(j);
      const auto& a = j.at("arrays");
      o.weights = take<std::int8_t>(blob, a.at("weights"), o.name + ".weights");
      o.weights_hh = take<std::int8_t>(blob, a.at("weights_hh"), o.name + ".weights_hh");
      o.bias = take<std::int32_t>(blob, a.at("bias"), o.name + ".bias");
      o.bias_hh = take<std::int32_t>(blob, a.at("bias_hh"), o.name + ".bias_hh");
      o.mult = mults(take<std::int32_t>(blob, a.at("mult_q"), o.name), take<std::int32_t>(blob, a.at("mult_shift"), o.name),
                     o.name);
      o.mult_hh = mults(take<std::int32_t>(blob, a.at("mult_hh_q"), o.name),
                        take<std::int32_t>(blob, a.at("mult_hh_shift"), o.name), o.name);
      for (int v : o.inputs)
        if (v < 0 || v >= static_cast<int>(p.values.size()))
          throw InputError(fmt::format("{}: op '{}' reads value {} of {}", jpath.string(), o.name, v, p.values.size()));
      if (o.output < 0 || o.output >= static_cast<int>(p.values.size()))
        throw InputError(fmt::format("{}: op '{}' writes value {} of {}", jpath.string(), o.name, o.output, p.values.size()));
      p.ops.push_back(std::move(o));
    }
    if (p.input < 0 || p.output < 0 || p.input >= static_cast<int>(p.values.size()) ||
        p.output >= static_cast<int>(p.values.size()))
      throw InputError(fmt::format("{}: input/output value out of range", jpath.string()));
    return p;
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: malformed bundle description: {}", jpath.string(), e.what()));
  }
}

bool same_program(const Program& a, const Program& b) {
  if (a.input != b.input || a.output != b.output || a.values.size() != b.values.size() || a.ops.size() != b.ops.size())
    return false;
  for (std::size_t i = 0; i < a.values.size(); ++i)
    if (value_json(a.values[i]) != value_json(b.values[i])) return false;
  for (std::size_t i = 0; i < a.ops.size(); ++i) {
    const Op &x = a.ops[i], &y = b.ops[i];
    if (op_scalars(x) != op_scalars(y) || x.weights != y.weights || x.weights_hh != y.weights_hh || x.bias != y.bias ||
        x.bias_hh != y.bias_hh || x.mult != y.mult || x.mult_hh != y.mult_hh)
      return false;
  }
  return true;
}

}  // namespace qforge::quant::runtime
