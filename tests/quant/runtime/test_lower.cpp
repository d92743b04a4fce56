// Lowering: program structure (fusion, folding, requantization points) and refusal of unsupported
// settings with a message naming the layer and the reason.
#include <doctest/doctest.h>

#include "nn/spec.hpp"
#include "quant/quant_dir.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/program16.hpp"

#include <filesystem>
#include "tests/quant/runtime/helpers.hpp"

using namespace qforge;
using namespace qforge::quant;
using namespace qforge::quant::runtime;
using qforge::testing::images;
using qforge::testing::make_sim;

namespace {

QuantSimConfig config_with(const std::string& params_json) {
  return parse_config(R"({"defaults": {"ops": {"is_output_quantized": "True"}, "params": )" + params_json +
                          R"(}, "params": {"bias": {"is_quantized": "False"}}, "op_type": {},
      "supergroups": [{"op_list": ["Conv", "Relu"]}, {"op_list": ["Gemm", "Relu"]}],
      "model_input": {"is_input_quantized": "True"}, "model_output": {}})");
}

int count(const Program& p, OpKind k) {
  int n = 0;
  for (const auto& op : p.ops) n += op.kind == k;
  return n;
}

}  // namespace

TEST_CASE("lower: mnist-cnn becomes conv+relu, maxpool, conv+relu, maxpool, flatten, linear") {
  auto f = make_sim("mnist-cnn");
  const Program p = lower(*f.sim);
  CHECK(count(p, OpKind::conv2d) == 2);
  CHECK(count(p, OpKind::maxpool2d) == 2);
  CHECK(count(p, OpKind::flatten) == 1);
  CHECK(count(p, OpKind::linear) == 1);
  for (const auto& op : p.ops)
    if (op.kind == OpKind::conv2d) {
      CHECK(op.act == "relu");
      CHECK(op.range.min == p.values[op.output].q.zero_point);  // ReLU as the clamp
    }
  CHECK(p.values[p.output].shape == std::vector<std::int64_t>{10});
  CHECK(p.input_value().shape == std::vector<std::int64_t>{1, 28, 28});
  // Weights are exactly the sim's grid: dequantized int8 weights equal the fake-quantized weights.
  const auto& conv1 = p.ops[0];
  Tensor wq;
  {
    NoGradGuard ng;
    Tensor w;
    for (auto& [n, t] : f.sim->model().named_parameters())
      if (n == "conv1.weight") w = t;
    wq = f.sim->quantizer("conv1.weight").forward(w);
  }
  const auto wv = wq.to_vector<float>();
  const float s = f.sim->quantizer("conv1.weight").encodings()[0].delta;
  for (std::size_t k = 0; k < wv.size(); ++k) REQUIRE(std::abs(wv[k] - s * conv1.weights[k]) <= 1e-6f * std::abs(wv[k]) + 1e-12f);
}

TEST_CASE("lower: dw-cnn fuses ReLU6 as a clamp and resnet-tiny gets residual adds with fused ReLU") {
  auto f = make_sim("dw-cnn");
  const Program p = lower(*f.sim);
  int relu6 = 0;
  for (const auto& op : p.ops)
    if (op.kind == OpKind::conv2d && op.act == "relu6") {
      ++relu6;
      const auto& q = p.values[op.output].q;
      CHECK(op.range.max <= q.zero_point + static_cast<int>(std::round(6.0f / q.scale)));
    }
  CHECK(relu6 == 5);
  CHECK(count(p, OpKind::global_avgpool) == 1);
  auto g = make_sim("resnet-tiny");
  const Program r = lower(*g.sim);
  CHECK(count(r, OpKind::add) == 2);
  for (const auto& op : r.ops)
    if (op.kind == OpKind::add) CHECK(op.act == "relu");
}

TEST_CASE("lower: asymmetric weight encodings are refused naming the layer") {
  QuantSimOptions opt;
  opt.config_obj = config_with(R"({"is_quantized": "True", "is_symmetric": "False"})");
  auto f = make_sim("mnist-cnn", opt);
  CHECK_THROWS_WITH_AS(lower(*f.sim), doctest::Contains("layer conv1: weight has an asymmetric encoding"), Error);
}

TEST_CASE("lower: weights of 2 to 8 bits are int8 codes in their own range; wider weights are refused, 16-bit activations are int16 codes") {
  QuantSimOptions o4;
  o4.param_bw = 4;
  auto w4 = make_sim("mlp", o4);
  const Program p4 = lower(*w4.sim);
  for (const auto& op : p4.ops)
    for (std::int8_t w : op.weights) {
      CHECK(w >= -8);
      CHECK(w <= 7);
    }
  QuantSimOptions opt;
  opt.param_bw = 12;
  auto f = make_sim("mlp", opt);
  CHECK_THROWS_WITH_AS(lower(*f.sim), doctest::Contains("layer fc1: weight bitwidth 12"), Error);
  QuantSimOptions o16;
  o16.act_bw = 16;
  auto g = make_sim("mlp", o16);
  const Program p16 = lower(*g.sim);  // program16.hpp Note [16-bit codes]
  CHECK(is_16bit_program(p16));
  CHECK(p16.input_value().q.qmin == -32768);
  CHECK(p16.input_value().q.qmax == 32767);
}

TEST_CASE("lower: unquantized weights, unquantized input and uncalibrated sims are refused") {
  auto f = make_sim("mlp");
  f.sim->set_enabled("fc2.weight", false);
  CHECK_THROWS_WITH_AS(lower(*f.sim), doctest::Contains("layer fc2: weight is not quantized"), Error);
  auto g = make_sim("mlp");
  g.sim->set_enabled("flatten.input", false);
  CHECK_THROWS_WITH_AS(lower(*g.sim), doctest::Contains("model input"), Error);
  auto model = nn::build_zoo_model("mlp");
  QuantSim raw(model, {images(2, 1)});
  CHECK_THROWS_WITH_AS(lower(raw), doctest::Contains("no encoding"), Error);
}

TEST_CASE("lower: a layer type without an integer kernel is refused naming it") {
  nlohmann::json spec = {{"name", "sig"}, {"inputs", {"input"}}, {"nodes", nlohmann::json::array({
      {{"name", "flatten"}, {"type", "Flatten"}, {"args", nlohmann::json::object()}},
      {{"name", "fc"}, {"type", "Linear"}, {"args", {{"in_features", 784}, {"out_features", 10}}}},
      {{"name", "act"}, {"type", "Sigmoid"}, {"args", nlohmann::json::object()}}})}};
  auto model = nn::build_model(spec);
  const Tensor x = images(4, 3);
  QuantSim sim(model, {x});
  sim.compute_encodings([&](nn::Module& m) { m({x}); });
  CHECK_THROWS_WITH_AS(lower(sim), doctest::Contains("layer act (Sigmoid): no integer kernel"), Error);
}

TEST_CASE("lower: quantized LSTM cell state is refused (the integer cell keeps int16 state)") {
  QuantSimOptions opt;
  opt.quantize_cell_state = true;
  auto f = make_sim("lstm", opt);
  CHECK_THROWS_WITH_AS(lower(*f.sim), doctest::Contains("layer lstm: quantizer lstm.cell_l0 is enabled"), Error);
}

TEST_CASE("lower: a quantized model directory lowers to the same program as the in-memory sim") {
  for (const std::string name : {"resnet-tiny", "lstm"}) {
    CAPTURE(name);
    auto f = make_sim(name);
    const auto dir = std::filesystem::temp_directory_path() / ("qforge_lower_dir_" + name);
    std::filesystem::remove_all(dir);
    save_quantized_dir(dir, *f.sim, {{"model", name}});
    const Program a = lower(*f.sim);
    const Program b = lower_model_dir(dir, images(2, 1));
    CHECK(same_program(a, b));
    std::filesystem::remove_all(dir);
  }
}
