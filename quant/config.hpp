// AIMET quantsim config files (aimet-compat.md §2): parsing, validation and per-op resolution.
//
// A config has exactly six sections — defaults, params, op_type, supergroups, model_input,
// model_output — with string booleans "True"/"False". parse_config() validates like AIMET's JSON schema
// plus its semantic rules and throws qforge::InputError naming the JSON path of the first problem
// (unknown section or key, JSON boolean instead of a string, wrong type, value a rule forbids).
// Accepted-but-unused content is kept and reported in QuantSimConfig::notes: hw_version,
// supported_kernels, duplicate keys (the later one wins, as Python's json does; the shipped
// htp_quantsim_config_v73.json repeats GroupNormalization) and the 2025 supergroup_pass_list.
//
// Op types are ONNX names (Conv, Gemm, MatMul, Relu, Add, LSTM, ...); qforge layers map to them in
// QuantSim. resolve_op() applies the sections that concern one op in AIMET's precedence
//   (all off, asymmetric) -> defaults -> params -> op_type
// and QuantSim then applies supergroups -> model_input -> model_output on the traced graph.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace qforge::quant {

struct ParamRule {
  std::optional<bool> is_quantized, is_symmetric;
};

struct KernelSpec {
  int act_bitwidth = 8;
  std::string act_dtype = "int";
  std::optional<int> param_bitwidth;
  std::optional<std::string> param_dtype;
};

struct OpRule {
  std::optional<bool> is_input_quantized, is_output_quantized, is_symmetric, per_channel_quantization;
  std::map<std::string, ParamRule> params;
  std::optional<double> constraint_min, constraint_max;
  std::vector<KernelSpec> supported_kernels;
};

struct QuantSimConfig {
  // defaults
  bool output_quantized = false;             // defaults.ops.is_output_quantized
  std::optional<bool> act_symmetric;         // defaults.ops.is_symmetric
  ParamRule param_defaults;                  // defaults.params
  bool strict_symmetric = false;
  bool unsigned_symmetric = false;
  bool per_channel = false;                  // defaults.per_channel_quantization
  std::string hw_version = "default";
  std::vector<KernelSpec> supported_kernels;
  // sections
  std::map<std::string, ParamRule> params;
  std::map<std::string, OpRule> op_type;
  std::vector<std::vector<std::string>> supergroups;
  bool model_input_quantized = false;
  bool model_output_quantized = false;
  std::vector<std::string> supergroup_pass_list;  // [2025], accepted and ignored
  std::vector<std::string> notes;  // accepted but unused content (reported)
  std::string source;              // file name or "<builtin:...>"
};

QuantSimConfig parse_config(const std::string& json_text, const std::string& source = "<string>");
QuantSimConfig load_config(const std::filesystem::path& path);  // InputError if unreadable

// Built-in configs: equal in effect to AIMET's default_config.json and default_config_per_channel.json.
const std::string& default_config_json();
const std::string& per_channel_config_json();
QuantSimConfig default_config();
QuantSimConfig per_channel_config();
// "default" | "per_channel" | a file path.
QuantSimConfig config_from_name_or_path(const std::string& s);

// The settings one op receives from defaults -> params -> op_type.
struct ResolvedParam {
  bool quantized = false;
  bool symmetric = false;
};
struct ResolvedOp {
  bool input_quantized = false;
  bool output_quantized = false;
  bool act_symmetric = false;
  bool per_channel = false;
  std::optional<double> constraint_min, constraint_max;
  std::map<std::string, ResolvedParam> params;  // for the param names asked for
};
ResolvedOp resolve_op(const QuantSimConfig& cfg, const std::string& onnx_type,
                      const std::vector<std::string>& param_names);

// True when `op_list` appears as a supergroup.
bool is_supergroup(const QuantSimConfig& cfg, const std::vector<std::string>& op_list);

// Human-readable dump of the parsed config (what `qforge config --explain` prints).
std::string explain(const QuantSimConfig& cfg);

}  // namespace qforge::quant
