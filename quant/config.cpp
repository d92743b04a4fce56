// AIMET quantsim config parsing and resolution. See config.hpp.
#include "quant/config.hpp"

#include "engine/error.hpp"
#include "engine/json_util.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

namespace qforge::quant {

using nlohmann::json;

namespace {

struct Ctx {
  std::string source;
  [[noreturn]] void fail(const std::string& path, const std::string& msg) const {
    throw InputError(fmt::format("quantsim config {}: {}: {}", source, path.empty() ? "/" : path, msg));
  }
};

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void check_keys(const Ctx& c, const json& j, const std::string& path, const std::vector<std::string>& allowed) {
  if (!j.is_object()) c.fail(path, fmt::format("expected an object, got {}", j.type_name()));
  for (const auto& [k, v] : j.items())
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
      c.fail(path + "/" + k, fmt::format("unknown key (allowed here: {})", join(allowed)));
}

bool str_bool(const Ctx& c, const json& j, const std::string& path) {
  if (j.is_boolean())
    c.fail(path, fmt::format("booleans are the strings \"True\"/\"False\" in AIMET configs, got JSON {}", j.dump()));
  if (!j.is_string()) c.fail(path, fmt::format("expected \"True\" or \"False\", got {} {}", j.type_name(), j.dump()));
  const auto s = j.get<std::string>();
  if (s == "True") return true;
  if (s == "False") return false;
  c.fail(path, fmt::format("expected \"True\" or \"False\", got \"{}\"", s));
}

// A flag that AIMET's semantic validation only allows to be "True".
bool true_only(const Ctx& c, const json& j, const std::string& path) {
  if (!str_bool(c, j, path)) c.fail(path, "may only be \"True\" (AIMET rejects \"False\" here)");
  return true;
}

ParamRule parse_param_rule(const Ctx& c, const json& j, const std::string& path) {
  check_keys(c, j, path, {"is_quantized", "is_symmetric"});
  ParamRule r;
  if (j.contains("is_quantized")) r.is_quantized = str_bool(c, j["is_quantized"], path + "/is_quantized");
  if (j.contains("is_symmetric")) r.is_symmetric = str_bool(c, j["is_symmetric"], path + "/is_symmetric");
  return r;
}

std::vector<KernelSpec> parse_kernels(const Ctx& c, const json& j, const std::string& path, bool need_param) {
  if (!j.is_array()) c.fail(path, fmt::format("expected a list, got {}", j.type_name()));
  std::vector<KernelSpec> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string p = fmt::format("{}/{}", path, i);
    check_keys(c, j[i], p, {"activation", "param"});
    if (!j[i].contains("activation")) c.fail(p, "missing required key 'activation'");
    if (need_param && !j[i].contains("param")) c.fail(p, "missing required key 'param'");
    auto half = [&](const json& h, const std::string& hp, int& bw, std::string& dt) {
      check_keys(c, h, hp, {"bitwidth", "dtype"});
      if (!h.contains("bitwidth") || !h["bitwidth"].is_number_integer())
        c.fail(hp + "/bitwidth", "required integer bitwidth (4, 8, 16 or 32)");
      const std::int64_t bw64 = h["bitwidth"].get<std::int64_t>();
      bw = bw64 >= 0 && bw64 <= 64 ? static_cast<int>(bw64) : -1;
      if (bw != 4 && bw != 8 && bw != 16 && bw != 32)
        c.fail(hp + "/bitwidth", fmt::format("{} not in {{4, 8, 16, 32}}", h["bitwidth"].dump()));
      if (!h.contains("dtype") || !h["dtype"].is_string()) c.fail(hp + "/dtype", "required \"int\" or \"float\"");
      dt = h["dtype"].get<std::string>();
      if (dt != "int" && dt != "float") c.fail(hp + "/dtype", fmt::format("\"{}\" is not \"int\" or \"float\"", dt));
      if (dt == "float" && bw != 16 && bw != 32) c.fail(hp, fmt::format("float kernels need bitwidth 16 or 32, got {}", bw));
    };
    KernelSpec k;
    half(j[i]["activation"], p + "/activation", k.act_bitwidth, k.act_dtype);
    if (j[i].contains("param")) {
      int bw = 0;
      std::string dt;
      half(j[i]["param"], p + "/param", bw, dt);
      k.param_bitwidth = bw;
      k.param_dtype = dt;
    }
    out.push_back(k);
  }
  return out;
}

OpRule parse_op_rule(const Ctx& c, const json& j, const std::string& path) {
  check_keys(c, j, path,
             {"is_input_quantized", "is_output_quantized", "is_symmetric", "per_channel_quantization",
              "supported_kernels", "params", "encoding_constraints"});
  OpRule r;
  if (j.contains("is_input_quantized")) r.is_input_quantized = true_only(c, j["is_input_quantized"], path + "/is_input_quantized");
  if (j.contains("is_output_quantized")) r.is_output_quantized = str_bool(c, j["is_output_quantized"], path + "/is_output_quantized");
  if (j.contains("is_symmetric")) r.is_symmetric = str_bool(c, j["is_symmetric"], path + "/is_symmetric");
  if (j.contains("per_channel_quantization"))
    r.per_channel_quantization = str_bool(c, j["per_channel_quantization"], path + "/per_channel_quantization");
  if (j.contains("supported_kernels")) r.supported_kernels = parse_kernels(c, j["supported_kernels"], path + "/supported_kernels", false);
  if (j.contains("params")) {
    const auto& p = j["params"];
    if (!p.is_object()) c.fail(path + "/params", fmt::format("expected an object, got {}", p.type_name()));
    for (const auto& [k, v] : p.items()) r.params[k] = parse_param_rule(c, v, path + "/params/" + k);
  }
  if (j.contains("encoding_constraints")) {
    const auto& e = j["encoding_constraints"];
    const std::string ep = path + "/encoding_constraints";
    check_keys(c, e, ep, {"min", "max"});
    for (const char* k : {"min", "max"}) {
      if (!e.contains(k)) continue;
      if (!e[k].is_number()) c.fail(ep + "/" + k, fmt::format("expected a number, got {}", e[k].type_name()));
      (std::string(k) == "min" ? r.constraint_min : r.constraint_max) = e[k].get<double>();
    }
    if (r.constraint_min && r.constraint_max && *r.constraint_min >= *r.constraint_max)
      c.fail(ep, fmt::format("min {} must be below max {}", *r.constraint_min, *r.constraint_max));
  }
  return r;
}

}  // namespace

QuantSimConfig parse_config(const std::string& text, const std::string& source) {
  Ctx c{source};
  QuantSimConfig cfg;
  cfg.source = source;
  // Parse, recording duplicate keys (the later value wins, as with Python's json module).
  std::vector<std::set<std::string>> keys;
  std::vector<std::string> dups;
  const json j = parse_json(text, fmt::format("quantsim config {}", source), kMaxJsonDepth,
                            [&](int, json::parse_event_t ev, json& parsed) {
                              if (ev == json::parse_event_t::object_start) keys.emplace_back();
                              else if (ev == json::parse_event_t::object_end && !keys.empty()) keys.pop_back();
                              else if (ev == json::parse_event_t::key && !keys.empty()) {
                                const auto k = parsed.get<std::string>();
                                if (!keys.back().insert(k).second) dups.push_back(k);
                              }
                              return true;
                            });
  for (const auto& d : dups) cfg.notes.push_back(fmt::format("duplicate key '{}': the later entry wins", d));

  check_keys(c, j, "", {"defaults", "params", "op_type", "supergroups", "model_input", "model_output",
                        "supergroup_pass_list"});
  for (const char* s : {"defaults", "params", "op_type", "supergroups", "model_input", "model_output"})
    if (!j.contains(s)) c.fail(std::string("/") + s, "missing required section");

  // defaults
  const json& d = j["defaults"];
  check_keys(c, d, "/defaults",
             {"ops", "params", "strict_symmetric", "unsigned_symmetric", "per_channel_quantization",
              "supported_kernels", "hw_version"});
  if (!d.contains("ops")) c.fail("/defaults/ops", "missing required key");
  if (!d.contains("params")) c.fail("/defaults/params", "missing required key");
  const json& dops = d["ops"];
  check_keys(c, dops, "/defaults/ops", {"is_input_quantized", "is_output_quantized", "is_symmetric"});
  if (dops.contains("is_input_quantized"))
    c.fail("/defaults/ops/is_input_quantized", "not allowed in defaults (AIMET rejects it; use op_type or model_input)");
  if (dops.contains("is_output_quantized"))
    cfg.output_quantized = true_only(c, dops["is_output_quantized"], "/defaults/ops/is_output_quantized");
  if (dops.contains("is_symmetric")) cfg.act_symmetric = str_bool(c, dops["is_symmetric"], "/defaults/ops/is_symmetric");
  cfg.param_defaults = parse_param_rule(c, d["params"], "/defaults/params");
  if (d.contains("strict_symmetric")) cfg.strict_symmetric = str_bool(c, d["strict_symmetric"], "/defaults/strict_symmetric");
  if (d.contains("unsigned_symmetric"))
    cfg.unsigned_symmetric = str_bool(c, d["unsigned_symmetric"], "/defaults/unsigned_symmetric");
  if (d.contains("per_channel_quantization"))
    cfg.per_channel = str_bool(c, d["per_channel_quantization"], "/defaults/per_channel_quantization");
  if (d.contains("supported_kernels")) {
    cfg.supported_kernels = parse_kernels(c, d["supported_kernels"], "/defaults/supported_kernels", true);
    cfg.notes.push_back("/defaults/supported_kernels: informational (AIMET uses it only for mixed precision)");
  }
  if (d.contains("hw_version")) {
    if (!d["hw_version"].is_string()) c.fail("/defaults/hw_version", "expected a string");
    cfg.hw_version = d["hw_version"].get<std::string>();
    cfg.notes.push_back(fmt::format("/defaults/hw_version \"{}\": accepted, not used by qforge", cfg.hw_version));
  }

  // params
  const json& p = j["params"];
  if (!p.is_object()) c.fail("/params", fmt::format("expected an object, got {}", p.type_name()));
  for (const auto& [k, v] : p.items()) cfg.params[k] = parse_param_rule(c, v, "/params/" + k);

  // op_type
  const json& ot = j["op_type"];
  if (!ot.is_object()) c.fail("/op_type", fmt::format("expected an object, got {}", ot.type_name()));
  for (const auto& [k, v] : ot.items()) {
    cfg.op_type[k] = parse_op_rule(c, v, "/op_type/" + k);
    if (!cfg.op_type[k].supported_kernels.empty())
      cfg.notes.push_back(fmt::format("/op_type/{}/supported_kernels: informational", k));
  }

  // supergroups
  const json& sg = j["supergroups"];
  if (!sg.is_array()) c.fail("/supergroups", fmt::format("expected a list, got {}", sg.type_name()));
  for (size_t i = 0; i < sg.size(); ++i) {
    const std::string sp = fmt::format("/supergroups/{}", i);
    check_keys(c, sg[i], sp, {"op_list"});
    if (!sg[i].contains("op_list")) c.fail(sp + "/op_list", "missing required key");
    const json& ol = sg[i]["op_list"];
    if (!ol.is_array()) c.fail(sp + "/op_list", "expected a list of op types");
    if (ol.size() < 2) c.fail(sp + "/op_list", fmt::format("needs at least 2 op types, got {}", ol.size()));
    std::vector<std::string> ops;
    for (size_t k = 0; k < ol.size(); ++k) {
      if (!ol[k].is_string()) c.fail(fmt::format("{}/op_list/{}", sp, k), "expected an op type string");
      ops.push_back(ol[k].get<std::string>());
    }
    cfg.supergroups.push_back(ops);
  }

  // model_input / model_output
  const json& mi = j["model_input"];
  check_keys(c, mi, "/model_input", {"is_input_quantized"});
  if (mi.contains("is_input_quantized"))
    cfg.model_input_quantized = true_only(c, mi["is_input_quantized"], "/model_input/is_input_quantized");
  const json& mo = j["model_output"];
  check_keys(c, mo, "/model_output", {"is_output_quantized"});
  if (mo.contains("is_output_quantized"))
    cfg.model_output_quantized = true_only(c, mo["is_output_quantized"], "/model_output/is_output_quantized");

  if (j.contains("supergroup_pass_list")) {
    const json& pl = j["supergroup_pass_list"];
    if (!pl.is_array()) c.fail("/supergroup_pass_list", "expected a list of pass names");
    for (size_t k = 0; k < pl.size(); ++k) {
      if (!pl[k].is_string()) c.fail(fmt::format("/supergroup_pass_list/{}", k), "expected a string");
      cfg.supergroup_pass_list.push_back(pl[k].get<std::string>());
    }
    cfg.notes.push_back("/supergroup_pass_list: accepted (AIMET 2025 key), ignored by qforge");
  }
  return cfg;
}

QuantSimConfig load_config(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("quantsim config {}: cannot open file", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str(), path.string());
}

QuantSimConfig default_config() { return parse_config(default_config_json(), "<builtin:default>"); }
QuantSimConfig per_channel_config() { return parse_config(per_channel_config_json(), "<builtin:per_channel>"); }

QuantSimConfig config_from_name_or_path(const std::string& s) {
  if (s.empty() || s == "default") return default_config();
  if (s == "per_channel" || s == "default_per_channel") return per_channel_config();
  return load_config(s);
}

ResolvedOp resolve_op(const QuantSimConfig& cfg, const std::string& type, const std::vector<std::string>& param_names) {
  ResolvedOp r;
  // defaults
  r.output_quantized = cfg.output_quantized;
  r.act_symmetric = cfg.act_symmetric.value_or(false);
  r.per_channel = cfg.per_channel;
  for (const auto& name : param_names) {
    ResolvedParam rp;
    rp.quantized = cfg.param_defaults.is_quantized.value_or(false);
    rp.symmetric = cfg.param_defaults.is_symmetric.value_or(false);
    // params section
    if (auto it = cfg.params.find(name); it != cfg.params.end()) {
      if (it->second.is_quantized) rp.quantized = *it->second.is_quantized;
      if (it->second.is_symmetric) rp.symmetric = *it->second.is_symmetric;
    }
    r.params[name] = rp;
  }
  // op_type section
  if (auto it = cfg.op_type.find(type); it != cfg.op_type.end()) {
    const OpRule& o = it->second;
    if (o.is_input_quantized) r.input_quantized = *o.is_input_quantized;
    if (o.is_output_quantized) r.output_quantized = *o.is_output_quantized;
    if (o.is_symmetric) r.act_symmetric = *o.is_symmetric;
    if (o.per_channel_quantization) r.per_channel = *o.per_channel_quantization;
    r.constraint_min = o.constraint_min;
    r.constraint_max = o.constraint_max;
    for (auto& [name, rp] : r.params) {
      if (auto pit = o.params.find(name); pit != o.params.end()) {
        if (pit->second.is_quantized) rp.quantized = *pit->second.is_quantized;
        if (pit->second.is_symmetric) rp.symmetric = *pit->second.is_symmetric;
      }
    }
  }
  return r;
}

bool is_supergroup(const QuantSimConfig& cfg, const std::vector<std::string>& ops) {
  return std::find(cfg.supergroups.begin(), cfg.supergroups.end(), ops) != cfg.supergroups.end();
}

std::string explain(const QuantSimConfig& cfg) {
  auto b = [](bool v) { return v ? "True" : "False"; };
  std::string s = fmt::format("quantsim config {}\n", cfg.source);
  s += fmt::format("  defaults: outputs quantized {}, activations symmetric {}, params quantized {}, params symmetric {}\n",
                   b(cfg.output_quantized), b(cfg.act_symmetric.value_or(false)),
                   b(cfg.param_defaults.is_quantized.value_or(false)), b(cfg.param_defaults.is_symmetric.value_or(false)));
  s += fmt::format("  strict_symmetric {}, unsigned_symmetric {}, per_channel {}, hw_version {}\n",
                   b(cfg.strict_symmetric), b(cfg.unsigned_symmetric), b(cfg.per_channel), cfg.hw_version);
  for (const auto& [k, v] : cfg.params)
    s += fmt::format("  params.{}: quantized {} symmetric {}\n", k, v.is_quantized ? b(*v.is_quantized) : "-",
                     v.is_symmetric ? b(*v.is_symmetric) : "-");
  for (const auto& [k, v] : cfg.op_type) {
    s += fmt::format("  op_type.{}:", k);
    if (v.is_input_quantized) s += fmt::format(" input {}", b(*v.is_input_quantized));
    if (v.is_output_quantized) s += fmt::format(" output {}", b(*v.is_output_quantized));
    if (v.is_symmetric) s += fmt::format(" symmetric {}", b(*v.is_symmetric));
    if (v.per_channel_quantization) s += fmt::format(" per_channel {}", b(*v.per_channel_quantization));
    if (v.constraint_min || v.constraint_max)
      s += fmt::format(" constraints [{}, {}]", v.constraint_min ? fmt::format("{}", *v.constraint_min) : "-",
                       v.constraint_max ? fmt::format("{}", *v.constraint_max) : "-");
    for (const auto& [pn, pr] : v.params)
      s += fmt::format(" params.{}(quantized {}, symmetric {})", pn, pr.is_quantized ? b(*pr.is_quantized) : "-",
                       pr.is_symmetric ? b(*pr.is_symmetric) : "-");
    s += "\n";
  }
  for (const auto& g : cfg.supergroups) s += fmt::format("  supergroup: {}\n", join(g));
  s += fmt::format("  model_input quantized {}, model_output quantized {}\n", b(cfg.model_input_quantized),
                   b(cfg.model_output_quantized));
  for (const auto& n : cfg.notes) s += fmt::format("  note: {}\n", n);
  return s;
}

}  // namespace qforge::quant
