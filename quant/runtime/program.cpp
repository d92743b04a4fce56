// Program description and bundle I/O. See program.hpp.
#include "quant/runtime/program.hpp"

#include "engine/error.hpp"
#include "engine/file_io.hpp"
#include "engine/json_util.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

namespace qforge::quant::runtime {

using json = nlohmann::json;

namespace {

constexpr const char* kKinds[] = {"conv2d",  "linear",  "maxpool2d", "avgpool2d",         "global_avgpool", "add",
                                  "requant", "flatten", "image_as_sequence", "last_step", "lstm",           "gru"};
constexpr int kNumKinds = 12;

json qparams_json(const QParams& q) {
  return {{"scale", q.scale}, {"zero_point", q.zero_point}, {"qmin", q.qmin}, {"qmax", q.qmax}};
}

QParams qparams_from(const JsonView& j) {
  QParams q;
  q.scale = j["scale"].f32();
  q.zero_point = j["zero_point"].int32(-128, 127);
  q.qmin = j["qmin"].int32(-128, 127);
  q.qmax = j["qmax"].int32(-128, 127);
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

template <class T> std::vector<T> take(const std::string& blob, const JsonView& j, const std::string& what) {
  const auto off = j["offset"].uinteger(), count = j["count"].uinteger();
  if (off > blob.size() || count > (blob.size() - off) / sizeof(T))
    j.fail(fmt::format("array '{}' (offset {}, {} elements) lies outside program.bin ({} bytes)", what, off, count,
                       blob.size()));
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
                                                const JsonView& where) {
  if (q.size() != s.size()) where.fail(fmt::format("{} multipliers but {} shifts", q.size(), s.size()));
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
            {"add_float", {o.add.method == kernels::AddMethod::float_fma, o.add.a_ratio, o.add.b_ratio, o.add.fixed,
                           o.add.code_offset}},
            {"m", {o.m.multiplier, o.m.shift}},
            {"identity", o.identity},
            {"cell",
             {o.cell.cell_exp, o.cell.cell_clip, o.cell.hidden.multiplier, o.cell.hidden.shift,
              o.cell.hidden_zero_point, o.cell.hidden_min, o.cell.hidden_max}},
            {"hidden", o.hidden}};
  return j;
}

// Limits of what a bundle may describe (far beyond any model qforge lowers; small enough that every
// size product below fits int32/int64 in the executors).
constexpr std::int64_t kMaxDim = std::int64_t{1} << 24;          // one dimension, channel count, hidden size
constexpr std::int64_t kMaxNumel = std::int64_t{1} << 28;        // elements of one value or one weight array
constexpr std::int64_t kMaxTotalNumel = std::int64_t{1} << 30;  // all values of one sample
constexpr std::int64_t kMaxKernel = 1024, kMaxStride = 1024, kMaxPad = 1024, kMaxDilation = 1024;

std::int64_t pair_at(const JsonView& j, const char* key, int i, std::int64_t lo, std::int64_t hi) {
  return j[key].list(2)[static_cast<std::size_t>(i)].integer(lo, hi);
}

kernels::QuantizedMultiplier read_mult(const JsonView& m) {
  return {m[std::size_t{0}].int32(0, INT32_MAX), m[std::size_t{1}].int32(-31, 30)};
}

Op op_from_scalars(const JsonView& j) {
  Op o;
  const std::string kind = j["kind"].str();
  const auto* k = std::find(std::begin(kKinds), std::end(kKinds), kind);
  if (k == std::end(kKinds)) j["kind"].fail(fmt::format("unknown op kind '{}'", kind));
  o.kind = static_cast<OpKind>(k - std::begin(kKinds));
  o.name = j["name"].str();
  const JsonView ins = j["inputs"];
  for (std::size_t i = 0; i < ins.size(); ++i) o.inputs.push_back(ins[i].int32(0, INT32_MAX));
  o.output = j["output"].int32(0, INT32_MAX);
  o.in_c = j["in_c"].integer(0, kMaxDim);
  o.out_c = j["out_c"].integer(0, kMaxDim);
  o.kh = pair_at(j, "kernel", 0, 1, kMaxKernel);
  o.kw = pair_at(j, "kernel", 1, 1, kMaxKernel);
  o.stride_h = pair_at(j, "stride", 0, 1, kMaxStride);
  o.stride_w = pair_at(j, "stride", 1, 1, kMaxStride);
  o.pad_h = pair_at(j, "padding", 0, 0, kMaxPad);
  o.pad_w = pair_at(j, "padding", 1, 0, kMaxPad);
  o.dilation_h = pair_at(j, "dilation", 0, 1, kMaxDilation);
  o.dilation_w = pair_at(j, "dilation", 1, 1, kMaxDilation);
  o.groups = j["groups"].integer(1, kMaxDim);
  o.per_channel = j["per_channel"].boolean();
  const JsonView r = j["range"].list(2);
  o.range = {r[std::size_t{0}].int32(-128, 127), r[std::size_t{1}].int32(-128, 127)};
  o.act = j["act"].str();
  o.count_include_pad = j["count_include_pad"].boolean();
  const JsonView a = j["add"].list(8);
  auto ai = [&](std::size_t i, std::int32_t lo, std::int32_t hi) { return a[i].int32(lo, hi); };
  o.add = {ai(0, -128, 127), ai(1, -128, 127), ai(2, -128, 127), ai(3, 0, 32767),
           ai(4, 0, 32767),  ai(5, 0, 30),     ai(6, -128, 127),  ai(7, -128, 127)};
  if (const auto af = j.find("add_float")) {  // absent in bundles of older versions (dsp)
    const JsonView f = af->list(5);
    o.add.method = f[std::size_t{0}].boolean() ? kernels::AddMethod::float_fma : kernels::AddMethod::fixed_point;
    auto finite = [&](std::size_t i) {
      const double v = f[i].number();
      if (!std::isfinite(v) || std::fabs(v) > 3.0e38) f[i].fail(fmt::format("{} is not a finite float", v));
      return static_cast<float>(v);
    };
    o.add.a_ratio = finite(1);
    o.add.b_ratio = finite(2);
    o.add.fixed = finite(3);
    o.add.code_offset = f[std::size_t{4}].int32(0, 128);
  }
  const auto m = read_mult(j["m"].list(2));
  o.m = {m.multiplier, m.shift};
  o.identity = j["identity"].boolean();
  const JsonView c = j["cell"].list(7);
  o.cell.cell_exp = c[std::size_t{0}].int32(-15, 0);
  o.cell.cell_clip = c[std::size_t{1}].int32(0, 32767);
  o.cell.hidden = {c[std::size_t{2}].int32(0, INT32_MAX), c[std::size_t{3}].int32(-31, 30)};
  o.cell.hidden_zero_point = c[std::size_t{4}].int32(-128, 127);
  o.cell.hidden_min = c[std::size_t{5}].int32(-128, 127);
  o.cell.hidden_max = c[std::size_t{6}].int32(-128, 127);
  o.hidden = j["hidden"].integer(0, kMaxDim);
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
  const json desc = {{"format", "qforge-int8-bundle"}, {"version", 1}, {"model", p.model},
                     {"profile", kernels::profile_name(p.profile)}, {"input", p.input},
                     {"output", p.output}, {"blob", "program.bin"}, {"blob_bytes", blob.bytes().size()},
                     {"values", vs}, {"ops", os}};
  write_file_atomic(dir / "program.bin", blob.bytes());
  write_file_atomic(dir / "program.json", desc.dump(1) + "\n");
}

Program load_bundle(const std::filesystem::path& dir) {
  const auto jpath = dir / "program.json";
  const std::string source = jpath.string();
  const json desc = parse_json(read_file(jpath), source);
  return program_from_bundle(desc, [&](const std::string& name) { return read_file(dir / name); }, source);
}

Program program_from_bundle(const json& desc_json, const std::function<std::string(const std::string&)>& read_blob,
                            const std::string& source) {
  const JsonView desc(desc_json, source);
  desc.expect_object();
  if (desc.str_or("format", "") != "qforge-int8-bundle")
    throw InputError(fmt::format("{}: not a qforge int8 bundle (format '{}')", source, desc.str_or("format", "")));
  const std::int64_t version = desc["version"].integer();
  if (version != 1) desc["version"].fail(fmt::format("unsupported bundle version {} (this qforge reads 1)", version));
  // The blob is a plain file name next to program.json (never a path: a bundle cannot make qforge read
  // files elsewhere).
  const std::string blob_name = desc["blob"].str();
  if (blob_name != "program.bin") desc["blob"].fail(fmt::format("blob must be \"program.bin\", got \"{}\"", blob_name));
  const std::string blob = read_blob(blob_name);
  const std::uint64_t blob_bytes = desc["blob_bytes"].uinteger();
  if (blob.size() != blob_bytes)
    desc["blob_bytes"].fail(fmt::format("program.bin has {} bytes, program.json expects {}", blob.size(), blob_bytes));
  Program p;
  p.model = desc["model"].str();
  {
    const std::string prof = desc.str_or("profile", "dsp");  // bundles of older versions: dsp
    if (!kernels::parse_profile(prof, &p.profile))
      desc["profile"].fail(fmt::format("unknown arithmetic profile '{}' (dsp or onnxruntime)", prof));
  }
  const JsonView values = desc["values"];
  for (std::size_t i = 0; i < values.size(); ++i) {
    const JsonView v = values[i];
    Value val;
    val.name = v["name"].str();
    val.module = v["module"].str();
    const JsonView sh = v["shape"];
    for (std::size_t d = 0; d < sh.size(); ++d) val.shape.push_back(sh[d].integer(1, kMaxDim));
    if (val.shape.empty() || val.shape.size() > 3)
      sh.fail(fmt::format("a value has 1 to 3 per-sample dimensions, got {}", val.shape.size()));
    std::int64_t n = 1;
    for (auto d : val.shape) {
      n *= d;  // ≤ 2^24 · 2^24 before the check below: no overflow
      if (n > kMaxNumel) sh.fail(fmt::format("{} elements exceed the limit of {}", n, kMaxNumel));
    }
    val.q = qparams_from(v["q"]);
    p.values.push_back(std::move(val));
  }
  p.input = desc["input"].int32(0, INT32_MAX);
  p.output = desc["output"].int32(0, INT32_MAX);
  const JsonView ops = desc["ops"];
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const JsonView j = ops[i];
    Op o = op_from_scalars(j);
    const JsonView a = j["arrays"];
    o.weights = take<std::int8_t>(blob, a["weights"], o.name + ".weights");
    o.weights_hh = take<std::int8_t>(blob, a["weights_hh"], o.name + ".weights_hh");
    o.bias = take<std::int32_t>(blob, a["bias"], o.name + ".bias");
    o.bias_hh = take<std::int32_t>(blob, a["bias_hh"], o.name + ".bias_hh");
    o.mult = mults(take<std::int32_t>(blob, a["mult_q"], o.name + ".mult_q"),
                   take<std::int32_t>(blob, a["mult_shift"], o.name + ".mult_shift"), a);
    o.mult_hh = mults(take<std::int32_t>(blob, a["mult_hh_q"], o.name + ".mult_hh_q"),
                      take<std::int32_t>(blob, a["mult_hh_shift"], o.name + ".mult_hh_shift"), a);
    p.ops.push_back(std::move(o));
  }
  validate_program(p, source);
  return p;
}

namespace {

// Geometry of one op checked against its values and arrays (Note [bundle validation] in program.hpp).
class Validator {
public:
  Validator(const Program& p, const std::string& source) : p_(p), source_(source) {}

  void run() {
    const auto nv = static_cast<int>(p_.values.size());
    if (nv == 0) fail_program("has no values");
    if (p_.input < 0 || p_.input >= nv) fail_program(fmt::format("input value {} of {}", p_.input, nv));
    if (p_.output < 0 || p_.output >= nv) fail_program(fmt::format("output value {} of {}", p_.output, nv));
    std::int64_t total = 0;
    for (int v = 0; v < nv; ++v) {
      check_value(v);
      total += p_.values[v].numel();
      if (total > kMaxTotalNumel) fail_program(fmt::format("values hold more than {} elements per sample", kMaxTotalNumel));
    }
    std::vector<bool> defined(p_.values.size(), false);
    defined[p_.input] = true;
    for (std::size_t i = 0; i < p_.ops.size(); ++i) {
      op_ = &p_.ops[i];
      index_ = i;
      for (int v : op_->inputs) {
        if (v < 0 || v >= nv) fail(fmt::format("reads value {} of {}", v, nv));
        if (!defined[v]) fail(fmt::format("reads value {} ('{}') before any op writes it", v, p_.values[v].name));
      }
      if (op_->output < 0 || op_->output >= nv) fail(fmt::format("writes value {} of {}", op_->output, nv));
      if (defined[op_->output])
        fail(fmt::format("writes value {} ('{}'), which is already defined", op_->output, p_.values[op_->output].name));
      check_op();
      defined[op_->output] = true;
    }
    if (!defined[p_.output]) fail_program(fmt::format("no op writes the output value {}", p_.output));
  }

private:
  [[noreturn]] void fail_program(const std::string& msg) const {
    throw InputError(fmt::format("{}: bundle program {}", source_, msg));
  }
  [[noreturn]] void fail(const std::string& msg) const {
    throw InputError(fmt::format("{}: /ops/{} ('{}', {}): {}", source_, index_, op_->name, op_kind_name(op_->kind), msg));
  }
  void require(bool cond, const std::string& what) const {
    if (!cond) fail(what);
  }

  void check_value(int v) const {
    const Value& val = p_.values[v];
    auto bad = [&](const std::string& msg) {
      throw InputError(fmt::format("{}: /values/{} ('{}'): {}", source_, v, val.name, msg));
    };
    if (val.shape.empty() || val.shape.size() > 3) bad(fmt::format("{} dimensions (expected 1 to 3)", val.shape.size()));
    std::int64_t n = 1;
    for (auto d : val.shape) {
      if (d < 1 || d > kMaxDim) bad(fmt::format("dimension {} out of range [1, {}]", d, kMaxDim));
      n *= d;
      if (n > kMaxNumel) bad(fmt::format("more than {} elements", kMaxNumel));
    }
    const QParams& q = val.q;
    if (!(q.scale > 0.0f) || !std::isfinite(q.scale)) bad(fmt::format("scale {} must be positive and finite", q.scale));
    if (q.qmin < -128 || q.qmax > 127 || q.qmin > q.qmax) bad(fmt::format("code range [{}, {}] is not within [-128, 127]", q.qmin, q.qmax));
    if (q.zero_point < -128 || q.zero_point > 127) bad(fmt::format("zero point {} outside [-128, 127]", q.zero_point));
  }

  const Value& in(std::size_t k = 0) const { return p_.values[op_->inputs[k]]; }
  const Value& out() const { return p_.values[op_->output]; }

  void check_mult(const kernels::QuantizedMultiplier& m, const std::string& what) const {
    if (m.multiplier < 0 || m.shift < -31 || m.shift > 30)
      fail(fmt::format("{} (multiplier {}, shift {}) outside multiplier [0, 2^31), shift [-31, 30]", what, m.multiplier,
                       m.shift));
  }
  void check_range() const {
    const auto& r = op_->range;
    require(r.min >= -128 && r.max <= 127 && r.min <= r.max,
            fmt::format("output clamp [{}, {}] is not an int8 range", r.min, r.max));
  }
  template <class T> void check_size(const std::vector<T>& v, std::int64_t expected, const char* what) const {
    if (static_cast<std::int64_t>(v.size()) != expected)
      fail(fmt::format("{} has {} elements, the op's geometry needs {}", what, v.size(), expected));
  }
  void check_inputs(std::size_t n) const {
    require(op_->inputs.size() == n, fmt::format("takes {} input(s), lists {}", n, op_->inputs.size()));
  }
  void check_rank(const Value& v, std::size_t rank, const char* what) const {
    require(v.shape.size() == rank, fmt::format("{} '{}' must have {} per-sample dimensions, has {}", what, v.name, rank,
                                                v.shape.size()));
  }
  void check_shape(const std::vector<std::int64_t>& got, const std::vector<std::int64_t>& want) const {
    require(got == want, fmt::format("output '{}' has shape [{}], the op produces [{}]", out().name, fmt::join(got, ", "),
                                     fmt::join(want, ", ")));
  }
  void check_same_q() const {
    require(in().q == out().q, fmt::format("output '{}' must keep the input's encoding (this op does not requantize)",
                                           out().name));
  }
  void check_mults(const std::vector<kernels::QuantizedMultiplier>& m, std::int64_t n, const char* what) const {
    check_size(m, n, what);
    for (std::size_t c = 0; c < m.size(); ++c) check_mult(m[c], fmt::format("{}[{}]", what, c));
  }
  // Requantization multipliers of conv/linear/global average: under onnxruntime a float32 scale's bits
  // (requant.hpp Note [float requantization]): shift 0 and a finite, non-negative float.
  void check_layer_mult(const kernels::QuantizedMultiplier& m, const std::string& what) const {
    check_mult(m, what);
    if (p_.profile == kernels::ArithProfile::onnxruntime)
      require(m.shift == 0 && m.multiplier <= 0x7F7FFFFF,
              fmt::format("{} (bits {:#x}, shift {}) is not a finite float32 scale", what, m.multiplier, m.shift));
  }
  void check_layer_mults(const std::vector<kernels::QuantizedMultiplier>& m, std::int64_t n, const char* what) const {
    check_size(m, n, what);
    for (std::size_t c = 0; c < m.size(); ++c) check_layer_mult(m[c], fmt::format("{}[{}]", what, c));
  }
  // Extent of a pooled/convolved axis; fails when the window does not fit.
  std::int64_t extent(std::int64_t in, std::int64_t pad, std::int64_t dil, std::int64_t k, std::int64_t stride,
                      const char* axis) const {
    const std::int64_t span = in + 2 * pad - dil * (k - 1) - 1;
    if (span < 0)
      fail(fmt::format("{} window {} (dilation {}) does not fit the padded input {} + 2·{}", axis, k, dil, in, pad));
    return span / stride + 1;
  }

  void check_op() const {
    const Op& o = *op_;
    switch (o.kind) {
      case OpKind::conv2d: {
        check_inputs(1);
        check_rank(in(), 3, "input");
        check_rank(out(), 3, "output");
        check_range();
        require(o.in_c == in().shape[0], fmt::format("in_c {} but the input has {} channels", o.in_c, in().shape[0]));
        require(o.out_c >= 1, "out_c must be positive");
        require(o.in_c % o.groups == 0 && o.out_c % o.groups == 0,
                fmt::format("groups {} must divide in_c {} and out_c {}", o.groups, o.in_c, o.out_c));
        const std::int64_t oh = extent(in().shape[1], o.pad_h, o.dilation_h, o.kh, o.stride_h, "vertical");
        const std::int64_t ow = extent(in().shape[2], o.pad_w, o.dilation_w, o.kw, o.stride_w, "horizontal");
        check_shape(out().shape, {o.out_c, oh, ow});
        const std::int64_t k = (o.in_c / o.groups) * o.kh * o.kw;
        require(k <= kMaxNumel && k * o.out_c <= kMaxNumel, "weights exceed the size limit");
        // Executor workspaces: the zero-point-padded image and the im2col rows of one sample.
        require((in().shape[1] + 2 * o.pad_h) * (in().shape[2] + 2 * o.pad_w) * o.in_c <= kMaxNumel,
                "padded input exceeds the size limit");
        require(oh * ow * (k + 4 * o.kh) <= (std::int64_t{1} << 30), "im2col workspace exceeds the size limit");
        check_size(o.weights, o.out_c * k, "weights");
        check_size(o.bias, o.out_c, "bias");
        check_layer_mults(o.mult, o.out_c, "multipliers");
        require(o.weights_hh.empty() && o.bias_hh.empty() && o.mult_hh.empty(), "has recurrent arrays");
        break;
      }
      case OpKind::linear: {
        check_inputs(1);
        check_range();
        require(o.in_c >= 1 && o.out_c >= 1, "in_c and out_c must be positive");
        require(in().shape.back() == o.in_c,
                fmt::format("in_c {} but the input's last dimension is {}", o.in_c, in().shape.back()));
        std::vector<std::int64_t> want = in().shape;
        want.back() = o.out_c;
        check_shape(out().shape, want);
        require(o.in_c * o.out_c <= kMaxNumel, "weights exceed the size limit");
        check_size(o.weights, o.out_c * o.in_c, "weights");
        check_size(o.bias, o.out_c, "bias");
        check_layer_mults(o.mult, o.out_c, "multipliers");
        require(o.weights_hh.empty() && o.bias_hh.empty() && o.mult_hh.empty(), "has recurrent arrays");
        break;
      }
      case OpKind::maxpool2d:
      case OpKind::avgpool2d: {
        check_inputs(1);
        check_rank(in(), 3, "input");
        check_rank(out(), 3, "output");
        // QLinearAveragePool (onnxruntime) requantizes to its output encoding; the others keep the input's.
        if (o.kind != OpKind::avgpool2d || p_.profile != kernels::ArithProfile::onnxruntime) check_same_q();
        // PyTorch's rule: padding at most half the window, so every window holds a real pixel.
        require(2 * o.pad_h <= o.kh && 2 * o.pad_w <= o.kw,
                fmt::format("padding ({}, {}) exceeds half the window ({}, {})", o.pad_h, o.pad_w, o.kh, o.kw));
        require(o.dilation_h == 1 && o.dilation_w == 1, "pooling has no dilation");
        const std::int64_t oh = extent(in().shape[1], o.pad_h, 1, o.kh, o.stride_h, "vertical");
        const std::int64_t ow = extent(in().shape[2], o.pad_w, 1, o.kw, o.stride_w, "horizontal");
        check_shape(out().shape, {in().shape[0], oh, ow});
        break;
      }
      case OpKind::global_avgpool: {
        check_inputs(1);
        check_rank(in(), 3, "input");
        check_shape(out().shape, {in().shape[0], 1, 1});
        check_range();
        // Σ(x − z) over H·W taps must fit the int32 accumulator: |x − z| ≤ 255.
        require(in().shape[1] * in().shape[2] <= (std::int64_t{1} << 23), "more than 2^23 pixels to average");
        check_layer_mult(o.m, "m");
        break;
      }
      case OpKind::add: {
        check_inputs(2);
        check_range();
        require(in(0).shape == in(1).shape, "the two inputs have different shapes");
        check_shape(out().shape, in(0).shape);
        const auto& a = o.add;
        require(a.a_zero_point == in(0).q.zero_point && a.b_zero_point == in(1).q.zero_point &&
                    a.out_zero_point == out().q.zero_point,
                fmt::format("add zero points ({}, {} -> {}) differ from the values' ({}, {} -> {})", a.a_zero_point,
                            a.b_zero_point, a.out_zero_point, in(0).q.zero_point, in(1).q.zero_point, out().q.zero_point));
        require(a.a_multiplier >= 0 && a.a_multiplier < 32768 && a.b_multiplier >= 0 && a.b_multiplier < 32768,
                fmt::format("add multipliers {}, {} outside [0, 2^15)", a.a_multiplier, a.b_multiplier));
        require(a.shift >= 1 && a.shift <= 30, fmt::format("add shift {} outside [1, 30]", a.shift));
        require(a.act_min >= -128 && a.act_max <= 127 && a.act_min <= a.act_max,
                fmt::format("add clamp [{}, {}] is not an int8 range", a.act_min, a.act_max));
        break;
      }
      case OpKind::requant: {
        check_inputs(1);
        check_range();
        check_shape(out().shape, in().shape);
        check_mult(o.m, "m");
        if (o.identity)
          require(in().q.scale == out().q.scale && in().q.zero_point == out().q.zero_point,
                  "identity requantization between different encodings");
        break;
      }
      case OpKind::flatten:
        check_inputs(1);
        check_rank(in(), 3, "input");
        check_same_q();
        check_shape(out().shape, {in().shape[0] * in().shape[1] * in().shape[2]});
        break;
      case OpKind::image_as_sequence:
        check_inputs(1);
        check_rank(in(), 3, "input");
        check_same_q();
        check_shape(out().shape, {in().shape[1], in().shape[0] * in().shape[2]});
        break;
      case OpKind::last_step:
        check_inputs(1);
        check_rank(in(), 2, "input");
        check_same_q();
        check_shape(out().shape, {in().shape[1]});
        break;
      case OpKind::lstm:
      case OpKind::gru: {
        check_inputs(1);
        check_rank(in(), 2, "input");
        check_range();
        const std::int64_t gates = o.kind == OpKind::lstm ? 4 : 3, H = o.hidden;
        require(H >= 1, "hidden size must be positive");
        require(o.in_c == in().shape[1], fmt::format("in_c {} but the input has {} features", o.in_c, in().shape[1]));
        require(o.out_c == gates * H, fmt::format("out_c {} must be {}·hidden = {}", o.out_c, gates, gates * H));
        check_shape(out().shape, {in().shape[0], H});
        require(o.out_c * o.in_c <= kMaxNumel && o.out_c * H <= kMaxNumel, "weights exceed the size limit");
        check_size(o.weights, o.out_c * o.in_c, "weights (W_ih)");
        check_size(o.weights_hh, o.out_c * H, "weights_hh (W_hh)");
        check_size(o.bias, o.out_c, "bias");
        check_size(o.bias_hh, o.kind == OpKind::gru ? o.out_c : 0, "bias_hh");
        check_mults(o.mult, o.out_c, "multipliers");
        check_mults(o.mult_hh, o.out_c, "recurrent multipliers");
        const auto& c = o.cell;
        require(c.cell_exp >= -15 && c.cell_exp <= -1, fmt::format("cell_exp {} outside [-15, -1]", c.cell_exp));
        require(c.cell_clip >= 0 && c.cell_clip <= 32767, fmt::format("cell_clip {} outside [0, 32767]", c.cell_clip));
        check_mult(c.hidden, "cell hidden multiplier");
        require(c.hidden_zero_point == out().q.zero_point,
                fmt::format("hidden zero point {} differs from the output's {}", c.hidden_zero_point, out().q.zero_point));
        require(c.hidden_min >= -128 && c.hidden_max <= 127 && c.hidden_min <= c.hidden_max,
                fmt::format("hidden range [{}, {}] is not an int8 range", c.hidden_min, c.hidden_max));
        break;
      }
    }
    if (!o.per_channel && !o.mult.empty())
      for (const auto& m : o.mult)
        require(m == o.mult.front(), "per-tensor op with different per-channel multipliers");
  }

  const Program& p_;
  const std::string& source_;
  const Op* op_ = nullptr;
  std::size_t index_ = 0;
};

}  // namespace

void validate_program(const Program& p, const std::string& source) { Validator(p, source).run(); }

bool same_program(const Program& a, const Program& b) {
  if (a.profile != b.profile || a.input != b.input || a.output != b.output || a.values.size() != b.values.size() || a.ops.size() != b.ops.size())
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
