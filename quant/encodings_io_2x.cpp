// AIMET encodings 2.0.0 and 2.1.0 (aimet-compat.md §3.4, onnx-qdq-ort.md §1.2), written and read.
// See encodings_io.hpp for the entry shapes.
//
// Note [2.x grids] AIMET's real = delta·(q + offset), q ∈ [0, N], is QuantizeLinear's
// real = y_scale·(y − y_zero_point):
//   signed symmetric (offset −2^(bw−1))   -> int<bw>, zero point 0 (omitted)
//   strict symmetric (offset −2^(bw−1)+1) -> int<bw>, zero point 0 (the grid loses its −2^(bw−1) guard)
//   otherwise (asymmetric, unsigned)      -> uint<bw>, y_zero_point = −offset (omitted when all zero)
// On read, int<bw> with zero point z is offset −2^(bw−1) − z (symmetric when z = 0), uint<bw> is offset −z.
// Only ONNX's integer widths exist as dtypes; fp16/bf16 quantizers give an entry with the name alone.
#include "engine/json_util.hpp"
#include "quant/encodings_io_detail.hpp"

#include <cmath>
#include <set>

namespace qforge::quant::detail {

namespace {

bool onnx_int_width(int bw) { return bw == 2 || bw == 4 || bw == 8 || bw == 16 || bw == 32; }

json enc_2x(const std::string& name, const std::vector<Encoding>& es, const BlockEntry* block, bool v210) {
  const Encoding& e0 = es.front();
  if (e0.is_float) return {{"name", name}};
  const int bw = e0.bitwidth;
  if (!onnx_int_width(bw))
    throw InputError(fmt::format("encodings 2.x: {}: a {}-bit grid has no ONNX integer type (2.x knows int2/4/8/16/32 "
                                 "and their unsigned forms); write 1.0.0 instead",
                                 name, bw));
  const double half = std::ldexp(1.0, bw - 1);
  const bool is_signed = e0.symmetric && (e0.offset == -half || e0.offset == -half + 1);
  json j = {{"name", name}, {"output_dtype", fmt::format("{}int{}", is_signed ? "" : "u", bw)}};
  if (block != nullptr && block->spec.lpbq()) {
    j["axis"] = 1;
    j["block_size"] = block->spec.block_size;
    if (v210) {
      j["y_scale"] = {{"x", block->lpbq.multiplier}, {"x_scale", block->lpbq.channel_scale}, {"axis", 0}};
    } else {
      j["per_block_int_scale"] = block->lpbq.multiplier;
      j["per_channel_float_scale"] = block->lpbq.channel_scale;
    }
    return j;
  }
  json scale = json::array(), zero = json::array();
  bool any_zero = false;
  for (const auto& e : es) {
    scale.push_back(e.delta);
    const auto zp = is_signed ? int64_t{0} : static_cast<int64_t>(-e.offset);
    zero.push_back(zp);
    any_zero = any_zero || zp != 0;
  }
  if (es.size() == 1 && block == nullptr) {
    j["y_scale"] = scale[0];
    if (any_zero) j["y_zero_point"] = zero[0];
    return j;
  }
  j["y_scale"] = scale;
  j["axis"] = block != nullptr ? 1 : 0;
  if (block != nullptr) j["block_size"] = block->spec.block_size;
  if (any_zero) j["y_zero_point"] = zero;
  return j;
}

// Note [2.x parameters]: see encodings_io.hpp.
bool looks_like_param(const std::string& name) {
  const auto dot = name.rfind('.');
  const std::string last = dot == std::string::npos ? name : name.substr(dot + 1);
  return last.rfind("weight", 0) == 0 || last.rfind("bias", 0) == 0;
}

// A number or a list of numbers (one level of nesting flattened: blocked scales may be written [O][nb]).
std::vector<double> scale_list(const Reader& r, const json& v, const std::string& p) {
  if (v.is_number()) return {v.get<double>()};
  if (!v.is_array()) r.fail(p, fmt::format("expected a number or a list of numbers, got {}", json_excerpt(v)));
  json flat = json::array();
  for (const auto& x : v) {
    if (x.is_array())
      for (const auto& y : x) flat.push_back(y);
    else
      flat.push_back(x);
  }
  return r.numbers(flat, p);
}

int64_t opt_int(const Reader& r, const json& e, const char* key, const std::string& p, int64_t dflt) {
  if (!e.contains(key) || e[key].is_null()) return dflt;
  if (!e[key].is_number_integer()) r.fail(p + "/" + key, fmt::format("expected an integer, got {}", json_excerpt(e[key])));
  return e[key].get<int64_t>();
}

struct Dtype {
  bool is_signed = true;
  int bw = 8;
};

Dtype parse_dtype(const Reader& r, const json& v, const std::string& p) {
  if (!v.is_string()) r.fail(p, "expected a string such as \"int8\" or \"uint8\"");
  std::string s = v.get<std::string>();
  Dtype d;
  if (s.rfind("uint", 0) == 0) {
    d.is_signed = false;
    s = s.substr(4);
  } else if (s.rfind("int", 0) == 0) {
    s = s.substr(3);
  } else {
    r.fail(p, fmt::format("unsupported output_dtype {} (qforge reads int2/4/8/16/32 and uint2/4/8/16)", json_excerpt(v)));
  }
  if (s.empty() || s.size() > 2 || s.find_first_not_of("0123456789") != std::string::npos || !onnx_int_width(std::stoi(s)) ||
      (!d.is_signed && s == "32"))
    r.fail(p, fmt::format("unsupported output_dtype {} (qforge reads int2/4/8/16/32 and uint2/4/8/16)", json_excerpt(v)));
  d.bw = std::stoi(s);
  return d;
}

// LPBQ entry: 2.0.0 per_block_int_scale + per_channel_float_scale, 2.1.0 y_scale meta encoding.
std::vector<Encoding> read_lpbq(const Reader& r, const json& e, const std::string& p, const Dtype& d,
                                const std::string& version, std::optional<BlockEntry>* block) {
  if (!d.is_signed) r.fail(p + "/output_dtype", "LPBQ weights are signed (int<bw>)");
  if (d.bw > 8) r.fail(p + "/output_dtype", fmt::format("LPBQ weights of {} bits (at most 8)", d.bw));
  const int dbw = 2 * d.bw;  // not in the file: AIMET reads it as twice the weights' bitwidth
  const int64_t bs = r.block_size(e, p);
  if (opt_int(r, e, "axis", p, 1) != 1) r.fail(p + "/axis", "blockwise weights are blocked along axis 1 (input channels)");
  if (e.contains("y_zero_point") && !e["y_zero_point"].is_null())
    for (double z : scale_list(r, e["y_zero_point"], p + "/y_zero_point"))
      if (z != 0) r.fail(p + "/y_zero_point", "LPBQ weights are symmetric (zero point 0)");
  std::vector<double> cs;
  std::vector<int32_t> mult;
  const bool meta = e.contains("y_scale") && e["y_scale"].is_object();
  if (meta) {
    if (version == "2.0.0") r.fail(p + "/y_scale", "a meta encoding (an object) needs version 2.1.0");
    const json& m = e["y_scale"];
    const std::string mp = p + "/y_scale";
    if (opt_int(r, m, "axis", mp, 0) != 0) r.fail(mp + "/axis", "LPBQ channel scales are along axis 0");
    if (m.contains("block_size")) r.fail(mp + "/block_size", "block-quantized LPBQ channel scales are not supported");
    if (m.contains("x_zero_point") && !m["x_zero_point"].is_null())
      for (double z : scale_list(r, m["x_zero_point"], mp + "/x_zero_point"))
        if (z != 0) r.fail(mp + "/x_zero_point", "LPBQ block multipliers have zero point 0");
    if (m.contains("input_dtype") && !(m["input_dtype"].is_string() && m["input_dtype"].get<std::string>().find("int") !=
                                                                             std::string::npos))
      r.fail(mp + "/input_dtype", "LPBQ block multipliers are integers");
    cs = r.numbers(r.at(m, "x_scale", mp), mp + "/x_scale");
    json xs = r.at(m, "x", mp);
    json flat = json::array();
    if (xs.is_array())
      for (const auto& x : xs) {
        if (x.is_array())
          for (const auto& y : x) flat.push_back(y);
        else
          flat.push_back(x);
      }
    mult = r.multipliers(xs.is_array() ? flat : xs, mp + "/x", d.bw, dbw);
  } else {
    if (e.contains("y_scale")) r.fail(p + "/y_scale", "an LPBQ entry has per_channel_float_scale instead of y_scale");
    cs = r.numbers(r.at(e, "per_channel_float_scale", p), p + "/per_channel_float_scale");
    mult = r.multipliers(r.at(e, "per_block_int_scale", p), p + "/per_block_int_scale", d.bw, dbw);
  }
  return r.lpbq_entry(cs, mult, bs, d.bw, dbw, p, block);
}

}  // namespace

json encodings_to_json_2x(const EncodingsFile& f, const std::string& version) {
  const bool v210 = version == "2.1.0";
  json l = json::array();
  for (const auto& [k, es] : f.params) {
    auto it = f.blocks.find(k);
    l.push_back(enc_2x(k, es, it == f.blocks.end() ? nullptr : &it->second, v210));
  }
  for (const auto& [k, es] : f.activations) l.push_back(enc_2x(k, es, nullptr, v210));
  return {{"version", version}, {"encodings", l}};
}

EncodingsFile encodings_from_json_2x(const json& j, const Reader& r, const std::string& version) {
  EncodingsFile f;
  f.version = version;
  const json& l = r.at(j, "encodings", "");
  if (!l.is_array()) r.fail("/encodings", "expected a list");
  std::set<std::string> seen;
  for (size_t i = 0; i < l.size(); ++i) {
    const json& e = l[i];
    std::string p = fmt::format("/encodings/{}", i);
    if (!e.is_object()) r.fail(p, "expected an object");
    const json& nj = r.at(e, "name", p);
    if (!nj.is_string()) r.fail(p + "/name", "expected a string");
    const std::string name = nj.get<std::string>();
    p += " (" + name + ")";
    if (!seen.insert(name).second) r.fail(p + "/name", "a second entry for this tensor");
    if (!e.contains("output_dtype")) {  // a float quantizer: the name alone
      GridSpec g;
      g.is_float = true;
      g.bitwidth = 16;
      (looks_like_param(name) ? f.params : f.activations)[name] = {compute_encoding(0, 0, g)};
      continue;
    }
    const Dtype d = parse_dtype(r, e["output_dtype"], p + "/output_dtype");
    const bool lpbq = (e.contains("y_scale") && e["y_scale"].is_object()) || e.contains("per_block_int_scale") ||
                      e.contains("per_channel_float_scale");
    std::optional<BlockEntry> block;
    if (lpbq) {
      f.params[name] = read_lpbq(r, e, p, d, version, &block);
      f.blocks[name] = *block;
      continue;
    }
    const auto scales = scale_list(r, r.at(e, "y_scale", p), p + "/y_scale");
    std::vector<double> zps(scales.size(), 0.0);
    if (e.contains("y_zero_point") && !e["y_zero_point"].is_null()) {
      zps = scale_list(r, e["y_zero_point"], p + "/y_zero_point");
      if (zps.size() != scales.size())
        r.fail(p + "/y_zero_point", fmt::format("{} zero points for {} scales", zps.size(), scales.size()));
    }
    const double half = std::ldexp(1.0, d.bw - 1);
    const double zlo = d.is_signed ? -half : 0, zhi = d.is_signed ? half - 1 : 2 * half - 1;
    std::vector<Encoding> es;
    for (size_t k = 0; k < scales.size(); ++k) {
      const double z = zps[k];
      if (z != std::floor(z) || z < zlo || z > zhi)
        r.fail(fmt::format("{}/y_zero_point/{}", p, k),
               fmt::format("zero point {} is not an integer of {}int{}", z, d.is_signed ? "" : "u", d.bw));
      GridSpec g;
      g.bitwidth = d.bw;
      g.symmetric = d.is_signed && z == 0;
      const double offset = d.is_signed ? -half - z : -z;
      r.check_scale_offset(scales[k], offset, d.bw, fmt::format("{}/y_scale/{}", p, k));
      es.push_back(encoding_from_scale_offset(scales[k], offset, g));
    }
    const bool has_block = e.contains("block_size") && !e["block_size"].is_null();
    if (has_block) {
      BlockEntry b;
      b.spec.block_size = r.block_size(e, p);
      if (opt_int(r, e, "axis", p, -1) != 1) r.fail(p + "/axis", "blockwise weights are blocked along axis 1 (input channels)");
      f.params[name] = es;
      f.blocks[name] = b;
      continue;
    }
    if (es.size() > 1 && opt_int(r, e, "axis", p, -1) != 0)
      r.fail(p + "/axis", "per-channel entries are along axis 0 (output channels)");
    (d.bw == 32 || looks_like_param(name) ? f.params : f.activations)[name] = es;
  }
  return f;
}

}  // namespace qforge::quant::detail
