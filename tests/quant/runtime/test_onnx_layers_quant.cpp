// The ONNX layer types (Note [ONNX layers] in nn/layers.hpp) under quantization: QuantSim places their
// quantizers by AIMET config rules keyed by ONNX op type, the float simulation runs and trains a model
// made of them, and lowering to the integer program refuses one it has no kernel for, naming the node.
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/spec.hpp"
#include "quant/config.hpp"
#include "quant/quantsim.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/lower.hpp"
#include "tests/support/gradcheck.hpp"

#include <nlohmann/json.hpp>

using namespace qforge;
using namespace qforge::quant;
using nlohmann::json;

namespace {

json node(const std::string& name, const std::string& type, json args, std::vector<std::string> inputs) {
  return {{"name", name}, {"type", type}, {"args", std::move(args)}, {"inputs", std::move(inputs)}};
}

// A squeeze-and-excitation style block: conv -> relu -> [N,C,1,1] gate (ReduceMean, HardSigmoid) times
// the [N,C,H,W] features (broadcast Mul), joined with the features (Concat), NHWC (Transpose), flattened
// (Reshape 0, -1), classified (Linear).
std::shared_ptr<nn::Graph> se_block() {
  json spec = {{"inputs", {"input"}},
               {"nodes", json::array({
                             node("conv", "Conv2d", {{"in_channels", 3}, {"out_channels", 4}, {"kernel_size", 3}, {"padding", 1}},
                                  {"input"}),
                             node("relu", "ReLU", json::object(), {"conv"}),
                             node("pool", "ReduceMean", {{"dims", {2, 3}}, {"keepdim", true}}, {"relu"}),
                             node("gate", "HardSigmoid", json::object(), {"pool"}),
                             node("scale", "Mul", json::object(), {"gate", "relu"}),
                             node("cat", "Concat", {{"dim", 1}}, {"scale", "relu"}),
                             node("nhwc", "Transpose", {{"perm", {0, 2, 3, 1}}}, {"cat"}),
                             node("flat", "Reshape", {{"shape", {0, -1}}}, {"nhwc"}),
                             node("fc", "Linear", {{"in_features", 8 * 6 * 6}, {"out_features", 5}}, {"flat"}),
                         })}};
  return nn::build_model(spec, {.seed = 5});
}

Tensor inputs(uint64_t seed) {
  Generator g(seed);
  return Tensor::randn({4, 3, 6, 6}, g);
}

QuantSimConfig config_with_op_types(const std::string& op_type_json) {
  return parse_config(R"({"defaults": {"ops": {"is_output_quantized": "True"},
      "params": {"is_quantized": "True", "is_symmetric": "True"}},
      "params": {"bias": {"is_quantized": "False"}}, "op_type": )" +
                      op_type_json + R"(, "supergroups": [{"op_list": ["Conv", "Relu"]}],
      "model_input": {"is_input_quantized": "True"}, "model_output": {}})");
}

}  // namespace

TEST_CASE("onnx layers in quantsim: each new module type maps to its ONNX op type") {
  const std::vector<std::pair<std::string, std::string>> expected = {
      {"Add", "Add"},         {"Sub", "Sub"},       {"Mul", "Mul"},
      {"Div", "Div"},         {"Constant", "Constant"}, {"Concat", "Concat"},
      {"Split", "Split"},     {"Slice", "Slice"},   {"Transpose", "Transpose"},
      {"Reshape", "Reshape"}, {"Squeeze", "Squeeze"}, {"Unsqueeze", "Unsqueeze"},
      {"Pad", "Pad"},         {"Softmax", "Softmax"}, {"LogSoftmax", "LogSoftmax"},
      {"ReduceMean", "ReduceMean"}, {"HardSigmoid", "HardSigmoid"}, {"Hardtanh", "Clip"}};
  for (const auto& [module, onnx] : expected) CHECK_MESSAGE(onnx_type(module) == onnx, module);
}

TEST_CASE("onnx layers in quantsim: output quantizers by the config, float sim runs and trains one step") {
  auto model = se_block();
  const Tensor x = inputs(1);
  Tensor ref;
  {
    NoGradGuard ng;
    ref = (*model)(x);
  }
  QuantSim sim(model, {x});  // the default config: every op output quantized; Conv+Relu a supergroup
  for (const char* q : {"relu.output", "pool.output", "gate.output", "scale.output", "cat.output", "nhwc.output",
                        "flat.output", "fc.output", "conv.weight", "fc.weight"}) {
    REQUIRE_MESSAGE(sim.has_quantizer(q), q);
    CHECK_MESSAGE(sim.quantizer(q).enabled(), q);
  }
  CHECK_FALSE(sim.quantizer("conv.output").enabled());  // Conv+Relu supergroup
  CHECK(sim.has_quantizer("scale.input1"));              // the Mul's second operand has an input quantizer slot
  CHECK_FALSE(sim.quantizer("scale.input1").enabled());

  sim.compute_encodings([&](nn::Module& m) { m(x); });
  Tensor y;
  {
    NoGradGuard ng;
    y = sim.forward({x})[0];
  }
  REQUIRE(y.shape() == ref.shape());
  const double err = testing::max_abs_diff(y, ref);
  CHECK(err > 0.0);  // quantization noise is present ...
  double mag = 0;
  for (float v : ref.to_vector<float>()) mag = std::max(mag, static_cast<double>(std::abs(v)));
  CHECK(err < 0.1 * mag);  // ... and small at 8 bits

  // QAT: one SGD step through the fake-quantized graph moves the FP32 shadow weights.
  const Tensor w0 = model->find("conv")->raw_param("weight").clone();
  const Tensor f0 = model->find("fc")->raw_param("weight").clone();
  const Tensor loss = ops::cross_entropy(sim.forward({x})[0], Tensor::from_vector<int32_t>({0, 1, 2, 3}, {4}));
  loss.backward();
  {
    NoGradGuard ng;
    for (auto& p : model->parameters()) {
      REQUIRE(p.grad().defined());
      p.copy_(ops::add(p, ops::mul(p.grad(), -0.1)));
    }
  }
  CHECK(testing::max_abs_diff(model->find("conv")->raw_param("weight"), w0) > 0.0);
  CHECK(testing::max_abs_diff(model->find("fc")->raw_param("weight"), f0) > 0.0);
}

TEST_CASE("onnx layers in quantsim: op_type rules are keyed by the ONNX name (Mul, Transpose, HardSigmoid)") {
  auto model = se_block();
  const Tensor x = inputs(2);
  QuantSimOptions opt;
  opt.config_obj = config_with_op_types(
      R"({"Mul": {"is_output_quantized": "False"}, "Transpose": {"is_output_quantized": "False"},
          "HardSigmoid": {"is_input_quantized": "True"}})");
  QuantSim sim(model, {x}, opt);
  CHECK_FALSE(sim.quantizer("scale.output").enabled());
  CHECK_FALSE(sim.quantizer("nhwc.output").enabled());
  CHECK(sim.quantizer("gate.input").enabled());
  CHECK(sim.quantizer("cat.output").enabled());
  CHECK(sim.quantizer("flat.output").enabled());
}

TEST_CASE("onnx layers in quantsim: lowering names the node the integer runtime has no kernel for") {
  json spec = {{"inputs", {"input"}},
               {"nodes", json::array({
                             node("flat", "Flatten", json::object(), {"input"}),
                             node("fc", "Linear", {{"in_features", 3 * 6 * 6}, {"out_features", 5}}, {"flat"}),
                             node("logp", "LogSoftmax", {{"dim", 1}}, {"fc"}),
                         })}};
  auto model = nn::build_model(spec);
  const Tensor x = inputs(3);
  QuantSim sim(model, {x});
  sim.compute_encodings([&](nn::Module& m) { m(x); });
  {
    NoGradGuard ng;
    CHECK(sim.forward({x})[0].shape() == Shape{4, 5});  // the float sim runs it
  }
  CHECK_THROWS_WITH_AS(runtime::lower(sim), doctest::Contains("layer logp (LogSoftmax): no integer kernel"), InputError);
  CHECK_THROWS_WITH_AS(runtime::ExactSim{sim}, doctest::Contains("layer logp (LogSoftmax)"), InputError);

  // A Constant operand (no inputs) is refused by name too, not as a missing input.
  json with_const = {{"inputs", {"input"}},
                     {"nodes", json::array({
                                   node("flat", "Flatten", json::object(), {"input"}),
                                   node("fc", "Linear", {{"in_features", 3 * 6 * 6}, {"out_features", 5}}, {"flat"}),
                                   node("bias", "Constant", {{"shape", {5}}}, {}),
                                   node("shifted", "Add", json::object(), {"fc", "bias"}),
                               })}};
  auto model2 = nn::build_model(with_const);
  QuantSim sim2(model2, {x});
  sim2.compute_encodings([&](nn::Module& m) { m(x); });
  CHECK_THROWS_WITH_AS(runtime::lower(sim2), doctest::Contains("layer bias (Constant): no integer kernel"), InputError);
}
