// Built-in quantsim configs: byte-identical copies of quant/configs/*.json (a test checks it), equal in
// effect to AIMET's default_config.json and default_config_per_channel.json.
#include "quant/config.hpp"

namespace qforge::quant {

const std::string& default_config_json() {
  static const std::string s = R"JSON({
  "defaults": {
    "ops": {"is_output_quantized": "True"},
    "params": {"is_quantized": "True", "is_symmetric": "True"},
    "strict_symmetric": "False",
    "per_channel_quantization": "False"
  },
  "params": {
    "bias": {"is_quantized": "False"}
  },
  "op_type": {
    "Cast": {"is_output_quantized": "False"},
    "Dropout": {"is_output_quantized": "False"},
    "Expand": {"is_output_quantized": "False"},
    "Squeeze": {"is_output_quantized": "False"},
    "Pad": {"is_output_quantized": "False"},
    "Mean": {"is_output_quantized": "False"},
    "Gather": {"is_output_quantized": "False"}
  },
  "supergroups": [
    {"op_list": ["Conv", "Relu"]},
    {"op_list": ["ConvTranspose", "Relu"]},
    {"op_list": ["Conv", "Clip"]},
    {"op_list": ["Add", "Relu"]},
    {"op_list": ["Gemm", "Relu"]}
  ],
  "model_input": {"is_input_quantized": "True"},
  "model_output": {}
}
)JSON";
  return s;
}

const std::string& per_channel_config_json() {
  static const std::string s = R"JSON({
  "defaults": {
    "ops": {"is_output_quantized": "True"},
    "params": {"is_quantized": "True", "is_symmetric": "True"},
    "strict_symmetric": "False",
    "per_channel_quantization": "True"
  },
  "params": {
    "bias": {"is_quantized": "False"}
  },
  "op_type": {
    "Cast": {"is_output_quantized": "False"},
    "Dropout": {"is_output_quantized": "False"},
    "Expand": {"is_output_quantized": "False"},
    "Squeeze": {"is_output_quantized": "False"},
    "Pad": {"is_output_quantized": "False"},
    "Mean": {"is_output_quantized": "False"},
    "Gemm": {"per_channel_quantization": "False"},
    "MatMul": {"per_channel_quantization": "False"},
    "LayerNorm": {"per_channel_quantization": "False"},
    "Gather": {"is_output_quantized": "False"}
  },
  "supergroups": [
    {"op_list": ["Conv", "Relu"]},
    {"op_list": ["Conv", "Clip"]},
    {"op_list": ["ConvTranspose", "Relu"]},
    {"op_list": ["Add", "Relu"]},
    {"op_list": ["Gemm", "Relu"]}
  ],
  "model_input": {"is_input_quantized": "True"},
  "model_output": {}
}
)JSON";
  return s;
}

}  // namespace qforge::quant
