// AIMET encodings JSON, schemas 0.6.1 and 1.0.0 (2.0.0/2.1.0: encodings_io_2x.cpp). See encodings_io.hpp.
#include "quant/encodings_io.hpp"

#include "engine/json_util.hpp"
#include "quant/encodings_io_detail.hpp"

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

// PER_BLOCK: one scale/offset per block ((o, b) order) and block_size; LPBQ: bw = the decompressed width,
// compressed_bw, the per-channel scales in `scale`, offsets −2^(bw−1) and the integer block multipliers
// in per_block_int_scale (aimet-compat.md §3.3).
json enc_100(const std::string& name, const std::vector<Encoding>& es, const BlockEntry* block) {
  const Encoding& e0 = es.front();
  if (block != nullptr && block->spec.lpbq()) {
    const int dbw = block->spec.decompressed_bw;
    json off = json::array();
    for (size_t i = 0; i < block->lpbq.channel_scale.size(); ++i) off.push_back(-(int64_t{1} << (dbw - 1)));
    return {{"name", name}, {"dtype", "INT"}, {"enc_type", "LPBQ"}, {"bw", dbw}, {"compressed_bw", e0.bitwidth},
            {"is_sym", true}, {"block_size", block->spec.block_size}, {"scale", block->lpbq.channel_scale},
            {"offset", off}, {"per_block_int_scale", block->lpbq.multiplier}};
  }
  if (e0.is_float) return {{"name", name}, {"dtype", "FLOAT"}, {"enc_type", "PER_TENSOR"}, {"bw", e0.bitwidth}};
  json scale = json::array(), offset = json::array();
  for (const auto& e : es) {
    scale.push_back(e.delta);
    offset.push_back(static_cast<int64_t>(e.offset));
  }
  json j = {{"name", name},          {"dtype", "INT"},  {"enc_type", es.size() > 1 ? "PER_CHANNEL" : "PER_TENSOR"},
            {"bw", e0.bitwidth},     {"is_sym", e0.symmetric}, {"scale", scale}, {"offset", offset}};
  if (block != nullptr) {
    j["enc_type"] = "PER_BLOCK";
    j["block_size"] = block->spec.block_size;
  }
  return j;
}

const BlockEntry* block_of(const EncodingsFile& f, const std::string& name) {
  auto it = f.blocks.find(name);
  return it == f.blocks.end() ? nullptr : &it->second;
}

json args_json(const QuantizerArgs& a) {
  return {{"activation_bitwidth", a.activation_bitwidth}, {"param_bitwidth", a.param_bitwidth},
          {"dtype", a.dtype}, {"is_symmetric", a.is_symmetric},
          {"per_channel_quantization", a.per_channel_quantization}, {"quant_scheme", a.quant_scheme}};
}

}  // namespace

json encodings_to_json(const EncodingsFile& f, const std::string& version) {
  if (version == "0.6.1") {
    if (!f.blocks.empty())
      throw InputError(fmt::format("encodings 0.6.1: {} is blockwise{} (block size {}); schema 0.6.1 has no blockwise "
                                   "entries: write 1.0.0, 2.0.0 or 2.1.0",
                                   f.blocks.begin()->first, f.blocks.begin()->second.spec.lpbq() ? "/LPBQ" : "",
                                   f.blocks.begin()->second.spec.block_size));
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
    for (const auto& [k, es] : f.activations) a.push_back(enc_100(k, es, nullptr));
    for (const auto& [k, es] : f.params) p.push_back(enc_100(k, es, block_of(f, k)));
    return {{"version", "1.0.0"}, {"activation_encodings", a}, {"param_encodings", p},
            {"excluded_layers", f.excluded_layers}, {"quantizer_args", args_json(f.args)}};
  }
  if (version == "2.0.0" || version == "2.1.0") return detail::encodings_to_json_2x(f, version);
  throw InputError(fmt::format("encodings: unsupported version '{}' (0.6.1, 1.0.0, 2.0.0 or 2.1.0)", version));
}

EncodingsFile encodings_from_json(const json& j, const std::string& source) {
  detail::Reader r{source};
  if (!j.is_object()) r.fail("/", "expected an object");
  EncodingsFile f;
  f.version = j.contains("version") && j["version"].is_string() ? j["version"].get<std::string>() : "0.6.1";
  if (f.version == "2.0.0" || f.version == "2.1.0") return detail::encodings_from_json_2x(j, r, f.version);
  if (f.version != "0.6.1" && f.version != "1.0.0" && f.version != "0.5.1" && f.version != "0.4.0")
    r.fail("/version", fmt::format("unsupported version '{}' (0.4.0, 0.5.1, 0.6.1, 1.0.0, 2.0.0, 2.1.0)", f.version));
  if (f.version == "1.0.0") {
    for (const char* sec : {"activation_encodings", "param_encodings"}) {
      if (!j.contains(sec)) continue;
      const json& l = j[sec];
      if (!l.is_array()) r.fail(std::string("/") + sec, "expected a list in schema 1.0.0");
      for (size_t i = 0; i < l.size(); ++i) {
        const std::string p = fmt::format("/{}/{}", sec, i);
        const json& n = r.at(l[i], "name", p);
        if (!n.is_string()) r.fail(p + "/name", "expected a string");
        const bool act = std::string(sec) == "activation_encodings";
        auto& dst = act ? f.activations : f.params;
        std::optional<BlockEntry> block;
        dst[n.get<std::string>()] = r.from_100(l[i], p, &block);
        if (block) {
          if (act) r.fail(p + "/enc_type", "blockwise encodings are for parameters only");
          f.blocks[n.get<std::string>()] = *block;
        }
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
