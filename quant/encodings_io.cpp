// AIMET encodings JSON, schemas 0.6.1 and 1.0.0 (read and written) and 2.0.0 (written). See encodings_io.hpp.
#include "quant/encodings_io.hpp"

#include "engine/json_util.hpp"

#include <cmath>
#include <limits>
#include <fstream>
#include <sstream>

namespace qforge::quant {

using nlohmann::json;

namespace {

json enc_061(const Encoding& e) {
  if (e.is_float) return {{"bitwidth", e.bitwidth}, {"dtype", "float"}};
  return {{"bitwidth", e.bitwidth},         {"dtype", "int"},   {"is_symmetric", e.symmetric ? "True" : "False"},
          {"max", e.max},                   {"min", e.min},     {"offset", static_cast<int64_t>(e.offset)},
          {"scale", e.delta}};
}

json enc_100(const std::string& name, const std::vector<Encoding>& es) {
  const Encoding& e0 = es.front();
  if (e0.is_float) return {{"name", name}, {"dtype", "FLOAT"}, {"enc_type", "PER_TENSOR"}, {"bw", e0.bitwidth}};
  json scale = json::array(), offset = json::array();
  for (const auto& e : es) {
    scale.push_back(e.delta);
    offset.push_back(static_cast<int64_t>(e.offset));
  }
  return {{"name", name},          {"dtype", "INT"},  {"enc_type", es.size() > 1 ? "PER_CHANNEL" : "PER_TENSOR"},
          {"bw", e0.bitwidth},     {"is_sym", e0.symmetric}, {"scale", scale}, {"offset", offset}};
}

// Schema 2.0.0 (aimet-compat.md §3.4): one entry per tensor, field for field ONNX QuantizeLinear's inputs.
// AIMET's real = delta·(q + offset), q ∈ [0, N], is QuantizeLinear's real = y_scale·(y − y_zero_point):
//   signed symmetric (offset −2^(bw−1))   -> int<bw>, zero point 0 (omitted)
//   strict symmetric (offset −2^(bw−1)+1) -> int<bw>, zero point 0 (the grid loses its −2^(bw−1) guard)
//   otherwise (asymmetric, unsigned)      -> uint<bw>, y_zero_point = −offset (omitted when all zero)
// Only ONNX's integer widths exist as dtypes; fp16/bf16 quantizers give an entry with the name alone.
json enc_200(const std::string& name, const std::vector<Encoding>& es) {
  const Encoding& e0 = es.front();
  if (e0.is_float) return {{"name", name}};
  const int bw = e0.bitwidth;
  if (bw != 4 && bw != 8 && bw != 16 && bw != 32)
    throw InputError(fmt::format("encodings 2.0.0: {}: a {}-bit grid has no ONNX integer type (2.0.0 knows int4/8/16/32 "
                                 "and their unsigned forms); write 1.0.0 instead",
                                 name, bw));
  const double half = std::ldexp(1.0, bw - 1);
  const bool is_signed = e0.symmetric && (e0.offset == -half || e0.offset == -half + 1);
  json scale = json::array(), zero = json::array();
  bool any_zero = false;
  for (const auto& e : es) {
    scale.push_back(e.delta);
    const auto zp = is_signed ? int64_t{0} : static_cast<int64_t>(-e.offset);
    zero.push_back(zp);
    any_zero = any_zero || zp != 0;
  }
  json j = {{"name", name}, {"output_dtype", fmt::format("{}int{}", is_signed ? "" : "u", bw)}};
  if (es.size() == 1) {
    j["y_scale"] = scale[0];
    if (any_zero) j["y_zero_point"] = zero[0];
  } else {
    j["y_scale"] = scale;
    j["axis"] = 0;
    if (any_zero) j["y_zero_point"] = zero;
  }
  return j;
}

json args_json(const QuantizerArgs& a) {
  return {{"activation_bitwidth", a.activation_bitwidth}, {"param_bitwidth", a.param_bitwidth},
          {"dtype", a.dtype}, {"is_symmetric", a.is_symmetric},
          {"per_channel_quantization", a.per_channel_quantization}, {"quant_scheme", a.quant_scheme}};
}

struct Reader {
  std::string source;
  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw InputError(fmt::format("encodings {}: {}: {}", source, path, msg));
  }
  const json& at(const json& j, const char* key, const std::string& path) const {
    if (!j.is_object() || !j.contains(key)) fail(path + "/" + key, "missing");
    return j[key];
  }
  double num(const json& j, const char* key, const std::string& path) const {
    const json& v = at(j, key, path);
    if (!v.is_number()) fail(path + "/" + key, fmt::format("expected a number, got {}", v.type_name()));
    return v.get<double>();
  }
  int bitwidth(const json& v, const std::string& path, bool is_float) const {
    if (!v.is_number_integer()) fail(path, "expected an integer bitwidth");
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() > 64 : (v.get<std::int64_t>() < 0 || v.get<std::int64_t>() > 64))
      fail(path, fmt::format("bitwidth {} is out of range", json_excerpt(v)));
    const int bw = static_cast<int>(v.get<std::int64_t>());
    try {
      check_bitwidth(bw, true, is_float, "encoding");
    } catch (const Error& e) {
      fail(path, e.what());
    }
    return bw;
  }
  // A scale a float32 holds (as a normal number) and an integer offset within ±2^bw (AIMET writes
  // offsets in [−(2^bw − 1), 0]; anything far outside is a corrupt file and would overflow integer casts).
  void check_scale_offset(double scale, double offset, int bw, const std::string& path) const {
    if (!(scale >= static_cast<double>(std::numeric_limits<float>::min())) ||
        !(scale <= static_cast<double>(std::numeric_limits<float>::max())))
      fail(path, fmt::format("scale {} is not a positive normal float32", scale));
    if (offset != std::round(offset) || std::fabs(offset) > std::ldexp(1.0, bw))
      fail(path, fmt::format("offset {} is not an integer within ±2^{}", offset, bw));
  }
  bool strict_of(bool sym, int bw, double offset) const {
    return sym && offset == -static_cast<double>((int64_t(1) << (bw - 1)) - 1);
  }

  Encoding from_061(const json& e, const std::string& p) const {
    const json& dt = at(e, "dtype", p);
    const bool is_float = dt.is_string() && dt.get<std::string>() == "float";
    if (!is_float && !(dt.is_string() && dt.get<std::string>() == "int")) fail(p + "/dtype", "expected \"int\" or \"float\"");
    GridSpec g;
    g.is_float = is_float;
    g.bitwidth = bitwidth(at(e, "bitwidth", p), p + "/bitwidth", is_float);
    if (is_float) return compute_encoding(0, 0, g);
    const json& sym = at(e, "is_symmetric", p);
    if (!sym.is_string() || (sym != "True" && sym != "False"))
      fail(p + "/is_symmetric", "expected the string \"True\" or \"False\"");
    g.symmetric = sym == "True";
    const double scale = num(e, "scale", p), offset = num(e, "offset", p);
    check_scale_offset(scale, offset, g.bitwidth, p);
    g.strict_symmetric = strict_of(g.symmetric, g.bitwidth, offset);
    Encoding enc = encoding_from_scale_offset(scale, offset, g);
    enc.min = num(e, "min", p);  // keep the file's exact min/max
    enc.max = num(e, "max", p);
    return enc;
  }

  std::vector<Encoding> from_100(const json& e, const std::string& p) const {
    const json& dt = at(e, "dtype", p);
    if (!dt.is_string() || (dt != "INT" && dt != "FLOAT")) fail(p + "/dtype", "expected \"INT\" or \"FLOAT\"");
    GridSpec g;
    g.is_float = dt == "FLOAT";
    g.bitwidth = bitwidth(at(e, "bw", p), p + "/bw", g.is_float);
    if (g.is_float) return {compute_encoding(0, 0, g)};
    const json& et = at(e, "enc_type", p);
    if (!et.is_string() || (et != "PER_TENSOR" && et != "PER_CHANNEL"))
      fail(p + "/enc_type", "expected PER_TENSOR or PER_CHANNEL (other types are not supported)");
    const json& sym = at(e, "is_sym", p);
    if (!sym.is_boolean()) fail(p + "/is_sym", "expected a JSON boolean");
    g.symmetric = sym.get<bool>();
    const json& sc = at(e, "scale", p);
    const json& of = at(e, "offset", p);
    if (!sc.is_array() || !of.is_array() || sc.size() != of.size() || sc.empty())
      fail(p, "scale and offset must be non-empty lists of equal length");
    std::vector<Encoding> out;
    for (size_t i = 0; i < sc.size(); ++i) {
      if (!sc[i].is_number() || !of[i].is_number()) fail(fmt::format("{}/scale/{}", p, i), "expected numbers");
      const double s = sc[i].get<double>(), o = of[i].get<double>();
      check_scale_offset(s, o, g.bitwidth, fmt::format("{}/{}", p, i));
      g.strict_symmetric = strict_of(g.symmetric, g.bitwidth, o);
      out.push_back(encoding_from_scale_offset(s, o, g));
    }
    return out;
  }
};

}  // namespace

json encodings_to_json(const EncodingsFile& f, const std::string& version) {
  if (version == "0.6.1") {
    json a = json::object(), p = json::object();
    for (const auto& [k, es] : f.activations) {
      json l = json::array();
      for (const auto& e : es) l.push_back(enc_061(e));
      a[k] = l;
    }
    for (const auto& [k, es] : f.params) {
      json l = json::array();
      for (const auto& e : es) l.push_back(enc_061(e));
      p[k] = l;
    }
    return {{"version", "0.6.1"}, {"activation_encodings", a}, {"param_encodings", p},
            {"excluded_layers", f.excluded_layers}, {"quantizer_args", args_json(f.args)}};
  }
  if (version == "1.0.0") {
    json a = json::array(), p = json::array();
    for (const auto& [k, es] : f.activations) a.push_back(enc_100(k, es));
    for (const auto& [k, es] : f.params) p.push_back(enc_100(k, es));
    return {{"version", "1.0.0"}, {"activation_encodings", a}, {"param_encodings", p},
            {"excluded_layers", f.excluded_layers}, {"quantizer_args", args_json(f.args)}};
  }
  if (version == "2.0.0") {
    json l = json::array();
    for (const auto* m : {&f.params, &f.activations})
      for (const auto& [k, es] : *m) l.push_back(enc_200(k, es));
    return {{"version", "2.0.0"}, {"encodings", l}};
  }
  throw InputError(fmt::format("encodings: unsupported version '{}' (0.6.1, 1.0.0 or 2.0.0)", version));
}

EncodingsFile encodings_from_json(const json& j, const std::string& source) {
  Reader r{source};
  if (!j.is_object()) r.fail("/", "expected an object");
  EncodingsFile f;
  f.version = j.contains("version") && j["version"].is_string() ? j["version"].get<std::string>() : "0.6.1";
  if (f.version != "0.6.1" && f.version != "1.0.0" && f.version != "0.5.1" && f.version != "0.4.0")
    r.fail("/version", fmt::format("unsupported version '{}'", f.version));
  if (f.version == "1.0.0") {
    for (const char* sec : {"activation_encodings", "param_encodings"}) {
      if (!j.contains(sec)) continue;
      const json& l = j[sec];
      if (!l.is_array()) r.fail(std::string("/") + sec, "expected a list in schema 1.0.0");
      for (size_t i = 0; i < l.size(); ++i) {
        const std::string p = fmt::format("/{}/{}", sec, i);
        const json& n = r.at(l[i], "name", p);
        if (!n.is_string()) r.fail(p + "/name", "expected a string");
        auto& dst = std::string(sec) == "activation_encodings" ? f.activations : f.params;
        dst[n.get<std::string>()] = r.from_100(l[i], p);
      }
    }
  } else {
    const bool adaround_style = !j.contains("version") && !j.contains("param_encodings") && !j.contains("activation_encodings");
    auto read_map = [&](const json& m, const std::string& sec, std::map<std::string, std::vector<Encoding>>& dst) {
      if (!m.is_object()) r.fail("/" + sec, "expected an object in schema 0.6.1");
      for (const auto& [k, v] : m.items()) {
        const std::string p = "/" + sec + "/" + k;
        if (!v.is_array() || v.empty()) r.fail(p, "expected a non-empty list of encodings");
        std::vector<Encoding> es;
        for (size_t i = 0; i < v.size(); ++i) es.push_back(r.from_061(v[i], fmt::format("{}/{}", p, i)));
        dst[k] = es;
      }
    };
    if (adaround_style) {
      read_map(j, "", f.params);
    } else {
      if (j.contains("activation_encodings")) read_map(j["activation_encodings"], "activation_encodings", f.activations);
      if (j.contains("param_encodings")) read_map(j["param_encodings"], "param_encodings", f.params);
    }
  }
  if (j.contains("excluded_layers") && j["excluded_layers"].is_array())
    for (const auto& e : j["excluded_layers"])
      if (e.is_string()) f.excluded_layers.push_back(e.get<std::string>());
  if (j.contains("quantizer_args") && j["quantizer_args"].is_object()) {
    const JsonView a = JsonView(j, "encodings " + source)["quantizer_args"];
    f.args.activation_bitwidth = static_cast<int>(a.int_or("activation_bitwidth", 8, 0, 64));
    f.args.param_bitwidth = static_cast<int>(a.int_or("param_bitwidth", 8, 0, 64));
    f.args.dtype = a.str_or("dtype", "int");
    f.args.is_symmetric = a.bool_or("is_symmetric", true);
    f.args.per_channel_quantization = a.bool_or("per_channel_quantization", false);
    f.args.quant_scheme = a.str_or("quant_scheme", "post_training_tf");
  }
  return f;
}

void write_encodings(const std::filesystem::path& path, const EncodingsFile& f, const std::string& version) {
  write_file_atomic(path, encodings_to_json(f, version).dump(2) + "\n");
}

EncodingsFile read_encodings(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("encodings {}: cannot open file", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return encodings_from_json(parse_json(ss.str(), "encodings " + path.string()), path.string());
}

}  // namespace qforge::quant
