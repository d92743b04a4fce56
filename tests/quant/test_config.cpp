// AIMET quantsim config parsing: the real AIMET files, built-in configs, precedence, bad input.
#include <doctest/doctest.h>

#include "engine/error.hpp"
#include "quant/config.hpp"
#include "tests/support/fixtures.hpp"

#include <fstream>
#include <sstream>

using namespace qforge;
using namespace qforge::quant;

namespace {

std::filesystem::path aimet_config(const std::string& name) {
  return qforge::testing::source_root() / ".." / "shared" / "reference" / "aimet-configs" / name;
}

std::string read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

const char* kMinimal = R"({"defaults": {"ops": {}, "params": {}}, "params": {}, "op_type": {}, "supergroups": [],
  "model_input": {}, "model_output": {}})";

std::string with(const std::string& section, const std::string& value) {
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  j[section] = nlohmann::json::parse(value);
  return j.dump();
}

}  // namespace

TEST_CASE("config: AIMET default_config.json parses with AIMET's meaning") {
  const auto p = aimet_config("default_config.json");
  if (!std::filesystem::exists(p)) {
    MESSAGE("shared reference configs not found; skipping");
    return;
  }
  QuantSimConfig c = load_config(p);
  CHECK(c.output_quantized);
  CHECK(c.param_defaults.is_quantized == true);
  CHECK(c.param_defaults.is_symmetric == true);
  CHECK_FALSE(c.per_channel);
  CHECK_FALSE(c.strict_symmetric);
  CHECK(c.params.at("bias").is_quantized == false);
  CHECK(c.op_type.at("Dropout").is_output_quantized == false);
  CHECK(c.supergroups.size() == 5);
  CHECK(is_supergroup(c, {"Conv", "Relu"}));
  CHECK(is_supergroup(c, {"Add", "Relu"}));
  CHECK(c.model_input_quantized);
  CHECK_FALSE(c.model_output_quantized);
  // precedence: defaults -> params -> op_type
  ResolvedOp conv = resolve_op(c, "Conv", {"weight", "bias"});
  CHECK(conv.output_quantized);
  CHECK_FALSE(conv.act_symmetric);
  CHECK(conv.params.at("weight").quantized);
  CHECK(conv.params.at("weight").symmetric);
  CHECK_FALSE(conv.params.at("bias").quantized);
  CHECK_FALSE(resolve_op(c, "Dropout", {}).output_quantized);
}

TEST_CASE("config: built-in configs equal AIMET's default and per-channel configs in effect") {
  for (auto [builtin, file] : {std::pair{default_config(), std::string("default_config.json")},
                               std::pair{per_channel_config(), std::string("default_config_per_channel.json")}}) {
    const auto p = aimet_config(file);
    if (!std::filesystem::exists(p)) continue;
    QuantSimConfig a = load_config(p);
    CHECK(explain(a).substr(explain(a).find('\n')) == explain(builtin).substr(explain(builtin).find('\n')));
  }
  // and the shipped files under quant/configs are the built-in text
  const auto root = qforge::testing::source_root() / "quant" / "configs";
  CHECK(read(root / "default_config.json") == default_config_json());
  CHECK(read(root / "per_channel_config.json") == per_channel_config_json());
  QuantSimConfig pc = per_channel_config();
  CHECK(pc.per_channel);
  CHECK(resolve_op(pc, "Conv", {"weight"}).per_channel);
  CHECK_FALSE(resolve_op(pc, "Gemm", {"weight"}).per_channel);
  CHECK(config_from_name_or_path("per_channel").per_channel);
}

TEST_CASE("config: AIMET htp_quantsim_config_v73.json parses; duplicate key and hw_version reported") {
  const auto p = aimet_config("htp_quantsim_config_v73.json");
  if (!std::filesystem::exists(p)) return;
  QuantSimConfig c = load_config(p);
  CHECK(c.hw_version == "V73");
  CHECK(c.per_channel);
  CHECK_FALSE(c.unsigned_symmetric);
  CHECK(c.op_type.at("GroupNormalization").params.at("bias").is_quantized == true);
  CHECK(c.op_type.at("Sigmoid").constraint_min == 0.0);
  CHECK(c.op_type.at("Sigmoid").constraint_max == 1.0);
  CHECK(c.op_type.at("BatchNormalization").params.at("running_mean").is_quantized == false);
  CHECK(is_supergroup(c, {"Conv", "BatchNormalization", "Relu"}));
  CHECK(c.supergroups.size() == 12);
  bool dup = false, hw = false;
  for (const auto& n : c.notes) {
    dup |= n.find("GroupNormalization") != std::string::npos;
    hw |= n.find("hw_version") != std::string::npos;
  }
  CHECK(dup);
  CHECK(hw);
  ResolvedOp ln = resolve_op(c, "LayerNormalization", {"weight", "bias"});
  CHECK_FALSE(ln.per_channel);
  CHECK_FALSE(ln.params.at("weight").symmetric);
  CHECK_FALSE(resolve_op(c, "Reshape", {}).output_quantized);
}

TEST_CASE("config: later duplicate key wins") {
  const std::string t = with("op_type", R"({"Relu": {"is_output_quantized": "False"}, "Relu": {"is_symmetric": "True"}})");
  // nlohmann keeps the later value of a duplicated key
  std::string txt = R"({"defaults": {"ops": {}, "params": {}}, "params": {}, "op_type": {"Relu": {"is_output_quantized": "False"}, "Relu": {"is_symmetric": "True"}}, "supergroups": [], "model_input": {}, "model_output": {}})";
  QuantSimConfig c = parse_config(txt);
  CHECK_FALSE(c.op_type.at("Relu").is_output_quantized.has_value());
  CHECK(c.op_type.at("Relu").is_symmetric == true);
  CHECK(c.notes.size() == 1);
}

TEST_CASE("config: bad configs throw InputError naming the JSON path") {
  auto fails = [](const std::string& text, const std::string& needle) {
    try {
      parse_config(text, "cfg.json");
    } catch (const InputError& e) {
      const std::string m = e.what();
      CHECK_MESSAGE(m.find(needle) != std::string::npos, m);
      CHECK_MESSAGE(m.find("cfg.json") != std::string::npos, m);
      return;
    }
    FAIL("no error for " << text);
  };
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  j["extra"] = nlohmann::json::object();
  fails(j.dump(), "/extra: unknown key");
  j = nlohmann::json::parse(kMinimal);
  j.erase("model_output");
  fails(j.dump(), "/model_output: missing required section");
  fails(with("defaults", R"({"ops": {"is_output_quantized": true}, "params": {}})"),
        "/defaults/ops/is_output_quantized: booleans are the strings");
  fails(with("defaults", R"({"ops": {"is_output_quantized": "yes"}, "params": {}})"), "/defaults/ops/is_output_quantized");
  fails(with("defaults", R"({"ops": {"is_input_quantized": "True"}, "params": {}})"), "/defaults/ops/is_input_quantized");
  fails(with("defaults", R"({"ops": {}, "params": {}, "foo": 1})"), "/defaults/foo: unknown key");
  fails(with("op_type", R"({"Conv": {"is_outptu_quantized": "True"}})"), "/op_type/Conv/is_outptu_quantized: unknown key");
  fails(with("op_type", R"({"Conv": {"params": {"weight": {"is_quantized": 1}}}})"),
        "/op_type/Conv/params/weight/is_quantized");
  fails(with("op_type", R"({"Conv": {"is_input_quantized": "False"}})"), "may only be \"True\"");
  fails(with("op_type", R"({"Sigmoid": {"encoding_constraints": {"min": "0"}}})"), "/op_type/Sigmoid/encoding_constraints/min");
  fails(with("supergroups", R"([{"op_list": ["Conv"]}])"), "/supergroups/0/op_list: needs at least 2");
  fails(with("supergroups", R"({"op_list": ["Conv", "Relu"]})"), "/supergroups: expected a list");
  fails(with("model_input", R"({"is_input_quantized": "False"})"), "/model_input/is_input_quantized");
  fails(with("params", R"({"weight": {"is_quantized": "True", "bits": 8}})"), "/params/weight/bits: unknown key");
  fails(with("defaults", R"({"ops": {}, "params": {}, "supported_kernels": [{"activation": {"bitwidth": 8, "dtype": "int"}}]})"),
        "/defaults/supported_kernels/0: missing required key 'param'");
  fails(with("defaults", R"({"ops": {}, "params": {}, "supported_kernels": [{"activation": {"bitwidth": 8, "dtype": "float"}, "param": {"bitwidth": 8, "dtype": "int"}}]})"),
        "float kernels need bitwidth 16 or 32");
  fails("{not json", "invalid JSON");
  CHECK_THROWS_AS(load_config("/nonexistent/config.json"), InputError);
}

TEST_CASE("config: supergroup_pass_list (AIMET 2025) is accepted and reported") {
  nlohmann::json j = nlohmann::json::parse(kMinimal);
  j["supergroup_pass_list"] = {"LayerNormalization", "MatmulAdd"};
  QuantSimConfig c = parse_config(j.dump());
  CHECK(c.supergroup_pass_list.size() == 2);
  CHECK(explain(c).find("supergroup_pass_list") != std::string::npos);
}
