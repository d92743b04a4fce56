// QuantSim: placement by config (supergroups, model input), BN folding, calibration, recurrent
// quantizers, enable/freeze, listing, encodings export/import (0.6.1 and 1.0.0) with strict/partial/freeze.
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/layers.hpp"
#include "nn/recurrent.hpp"
#include "nn/zoo.hpp"
#include "quant/quantsim.hpp"
#include "tests/support/batch_norm.hpp"
#include "tests/support/fixtures.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

using namespace qforge;
using namespace qforge::quant;
using qforge::testing::perturb_bn;  // mean and beta ~ N(0, 1)

namespace {

Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return ops::mul(Tensor::randn(shape, g), scale);
}


std::shared_ptr<nn::Graph> mnist_cnn() {
  auto m = nn::build_zoo_model("mnist-cnn");
  perturb_bn(*m, 3);
  m->eval();
  return m;
}

void calibrate(QuantSim& sim, const Tensor& x) {
  sim.compute_encodings([&](nn::Module& m) { m(x); });
}

std::filesystem::path tmp_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("qforge_quant_test_" + name);
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

}  // namespace

TEST_CASE("quantsim: BN folding keeps the eval-mode model equal to the unfolded one") {
  auto model = mnist_cnn();
  Tensor x = randn({4, 1, 28, 28}, 1);
  Tensor ref;
  {
    NoGradGuard ng;
    ref = (*model)(x);
  }
  QuantSim sim(model, {x});
  CHECK(sim.folded_bn().size() == 2);
  for (const auto& q : sim.quantizers()) q.quantizer->set_enabled(false);
  Tensor y;
  {
    NoGradGuard ng;
    y = sim.model()(x);
  }
  CHECK(qforge::testing::max_abs_diff(y, ref) < 1e-4);
  // train mode: the bypassed BN no longer normalises with batch statistics
  sim.model().train();
  Tensor yt;
  {
    NoGradGuard ng;
    yt = sim.model()(x);
  }
  CHECK(qforge::testing::max_abs_diff(yt, ref) < 1e-4);
}

TEST_CASE("quantsim: default config places quantizers like AIMET (supergroups, model input, bias off)") {
  auto model = mnist_cnn();
  Tensor x = randn({2, 1, 28, 28}, 2);
  QuantSim sim(model, {x});
  // Conv+(folded BN)+Relu is a supergroup: only the ReLU output is quantized
  CHECK_FALSE(sim.quantizer("conv1.output").enabled());
  CHECK(sim.quantizer("relu1.output").enabled());
  CHECK(sim.quantizer("conv1.input").enabled());  // model input
  CHECK_FALSE(sim.quantizer("conv2.input").enabled());
  CHECK(sim.quantizer("conv1.weight").enabled());
  CHECK(sim.quantizer("conv1.weight").settings().grid.symmetric);
  CHECK_FALSE(sim.quantizer("conv1.weight").settings().per_channel);
  CHECK_FALSE(sim.quantizer("conv1.bias").enabled());
  CHECK_FALSE(sim.quantizer("conv1.output").settings().grid.symmetric);
  CHECK(sim.quantizer("fc.output").enabled());
  CHECK_FALSE(sim.has_quantizer("bn1.output"));
  CHECK_THROWS_WITH_AS(sim.quantizer("conv1.outptu"), doctest::Contains("conv1.output"), Error);

  QuantSimOptions pc;
  pc.config = "per_channel";
  auto model2 = mnist_cnn();
  QuantSim sim2(model2, {x}, pc);
  CHECK(sim2.quantizer("conv1.weight").settings().per_channel);
  CHECK_FALSE(sim2.quantizer("fc.weight").settings().per_channel);  // Gemm per-tensor in that config
}

TEST_CASE("quantsim: compute_encodings calibrates, listing shows every quantizer, W8A8 stays close to FP32") {
  auto model = mnist_cnn();
  Tensor x = randn({8, 1, 28, 28}, 4);
  Tensor ref;
  {
    NoGradGuard ng;
    ref = (*model)(x);
  }
  QuantSim sim(model, {x});
  const int n = sim.compute_encodings([&](nn::Module& m) { m(x); });
  CHECK(n == sim.num_enabled());
  for (const auto& q : sim.quantizers())
    if (q.quantizer->enabled()) CHECK_MESSAGE(q.quantizer->has_encoding(), q.name);
  Tensor y;
  {
    NoGradGuard ng;
    y = sim.model()(x);
  }
  const double err = qforge::testing::max_abs_diff(y, ref);
  CHECK(err > 0);
  CHECK(err < 0.1 * (1 + ops::max(ops::abs(ref)).item()));
  const std::string l = sim.listing();
  CHECK(l.find("conv1.weight") != std::string::npos);
  CHECK(l.find("relu2.output") != std::string::npos);
  // enable/disable by name
  sim.set_enabled("fc.output", false);
  CHECK_FALSE(sim.quantizer("fc.output").enabled());
  // frozen quantizers keep their encoding through compute_encodings
  const Encoding before = sim.quantizer("relu1.output").encodings()[0];
  sim.freeze("relu1.output");
  calibrate(sim, ops::mul(x, 3.0));
  CHECK(sim.quantizer("relu1.output").encodings()[0] == before);
  CHECK_FALSE(sim.quantizer("relu2.output").encodings()[0] == before);
}

TEST_CASE("quantsim: QAT step flows gradients to shadow weights and LSQ range parameters") {
  auto model = mnist_cnn();
  Tensor x = randn({4, 1, 28, 28}, 5);
  QuantSimOptions o;
  o.range_learning = RangeLearning::lsq;
  o.act_bw = 4;
  o.param_bw = 4;
  QuantSim sim(model, {x}, o);
  calibrate(sim, x);
  auto params = sim.range_parameters();
  CHECK(params.size() > 5);
  sim.model().train();
  Tensor target = Tensor::from_vector(std::vector<int32_t>{1, 2, 3, 4}, {4});
  Tensor loss = ops::cross_entropy(sim.model()(x), target);
  loss.backward();
  CHECK(sim.model().find("conv1")->raw_param("weight").grad().defined());
  int with_grad = 0;
  for (auto& p : params) with_grad += p.grad().defined() ? 1 : 0;
  CHECK(with_grad == static_cast<int>(params.size()));
}

TEST_CASE("quantsim: hand-written model with a residual Add+ReLU supergroup") {
  struct Net : nn::Module {
    std::shared_ptr<nn::Linear> a, b;
    std::shared_ptr<nn::Add> add;
    std::shared_ptr<nn::ReLU> relu;
    explicit Net(Generator& g) : nn::Module("Net") {
      a = register_module("a", std::make_shared<nn::Linear>(6, 6, true, g));
      b = register_module("b", std::make_shared<nn::Linear>(6, 6, true, g));
      add = register_module("add", std::make_shared<nn::Add>());
      relu = register_module("relu", std::make_shared<nn::ReLU>());
    }
    std::vector<Tensor> forward(const std::vector<Tensor>& in) override {
      Tensor h = (*a)(in[0]);
      Tensor r = (*b)(h);
      return {(*relu)((*add)(std::vector<Tensor>{h, r})[0])};
    }
  };
  Generator g(1);
  auto net = std::make_shared<Net>(g);
  Tensor x = randn({3, 6}, 6);
  QuantSim sim(net, {x});
  CHECK_FALSE(sim.quantizer("add.output").enabled());
  CHECK(sim.quantizer("relu.output").enabled());
  CHECK(sim.quantizer("a.output").enabled());  // branches: not a supergroup
  CHECK(sim.quantizer("a.input").enabled());
  calibrate(sim, x);
  CHECK(sim.quantizer("relu.output").has_encoding());
}

TEST_CASE("quantsim: recurrent layers get input, W, R, hidden (per step) quantizers; cell/gates optional") {
  Generator g(2);
  nn::RecurrentOptions ro;
  ro.input_size = 5;
  ro.hidden_size = 4;
  ro.num_layers = 2;
  ro.bidirectional = true;
  ro.batch_first = true;
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back("lstm", std::make_shared<nn::LSTM>(ro, g));
  Tensor x = randn({2, 6, 5}, 7);
  QuantSimOptions o;
  o.quantize_cell_state = true;
  QuantSim sim(seq, {x}, o);
  for (const char* n : {"lstm.input_l0", "lstm.hidden_l0", "lstm.W_l0", "lstm.R_l0", "lstm.bias_l0", "lstm.input_l1",
                        "lstm.hidden_l1", "lstm.W_l1", "lstm.R_l1", "lstm.cell_l0"})
    CHECK_MESSAGE(sim.has_quantizer(n), n);
  CHECK_FALSE(sim.has_quantizer("lstm.gates_l0"));
  CHECK_FALSE(sim.has_quantizer("lstm.output"));
  CHECK_FALSE(sim.quantizer("lstm.bias_l0").enabled());
  CHECK(sim.quantizer("lstm.hidden_l0").enabled());
  calibrate(sim, x);
  Tensor y;
  {
    NoGradGuard ng;
    y = sim.model()(x);
  }
  // the last layer's sequence output is its quantized hidden state: every value on the hidden_l1 grid
  const Encoding e = sim.quantizer("lstm.hidden_l1").encodings()[0];
  for (double v : y.to_vector<double>()) {
    const double k = v / static_cast<float>(e.delta);
    CHECK(std::abs(k - std::round(k)) < 1e-3);
  }
  // parameter encodings are exported under PyTorch's parameter names, both directions
  EncodingsFile f = sim.encodings();
  CHECK(f.params.count("lstm.weight_ih_l0"));
  CHECK(f.params.count("lstm.weight_hh_l1_reverse"));
  CHECK(f.activations.count("lstm.hidden_l1"));
}

TEST_CASE("encodings export: 0.6.1 and 1.0.0 key names, offset signs, formulas re-derived from min/max") {
  auto model = mnist_cnn();
  Tensor x = randn({4, 1, 28, 28}, 8);
  QuantSimOptions o;
  o.config = "per_channel";
  QuantSim sim(model, {x}, o);
  calibrate(sim, x);
  const auto dir = tmp_dir("export");
  sim.export_encodings(dir / "e061.json", "0.6.1");
  sim.export_encodings(dir / "e100.json", "1.0.0");
  std::ifstream in061(dir / "e061.json"), in100(dir / "e100.json");
  const auto j061 = nlohmann::json::parse(in061);
  const auto j100 = nlohmann::json::parse(in100);
  CHECK(j061["version"] == "0.6.1");
  for (const char* k : {"activation_encodings", "param_encodings", "excluded_layers", "quantizer_args"})
    CHECK(j061.contains(k));
  CHECK(j061["quantizer_args"]["per_channel_quantization"] == true);
  CHECK(j061["quantizer_args"]["is_symmetric"].is_boolean());
  const auto& w = j061["param_encodings"]["conv1.weight"];
  CHECK(w.size() == 16);  // per channel
  int checked = 0;
  for (const char* sec : {"activation_encodings", "param_encodings"}) {
    for (const auto& [name, list] : j061[sec].items()) {
      for (const auto& e : list) {
        CHECK(e["is_symmetric"].is_string());
        CHECK(e["dtype"] == "int");
        const int bw = e["bitwidth"];
        const double n = std::pow(2.0, bw) - 1;
        const double mn = e["min"].get<double>(), mx = e["max"].get<double>(), scale = e["scale"].get<double>();
        const double offset = e["offset"].get<double>();
        // re-derive with AIMET's formulas (aimet-compat.md §4.1): the exported min/max are already gated
        if (e["is_symmetric"] == "True") {
          CHECK(offset == -std::ceil(n / 2));
          CHECK(scale == doctest::Approx(mx / std::floor(n / 2)).epsilon(1e-9));
          CHECK(mn == doctest::Approx(offset * scale).epsilon(1e-9));
        } else {
          CHECK(scale == doctest::Approx((mx - mn) / n).epsilon(1e-9));
          CHECK(offset == -std::clamp(std::round(-mn / scale), 0.0, n));
          CHECK(mn == doctest::Approx(scale * offset).epsilon(1e-9));
        }
        ++checked;
      }
    }
  }
  CHECK(checked > 20);
  // 1.0.0: lists, name inside, no min/max, same offsets
  CHECK(j100["version"] == "1.0.0");
  CHECK(j100["param_encodings"].is_array());
  bool seen = false;
  for (const auto& e : j100["param_encodings"]) {
    CHECK_FALSE(e.contains("min"));
    CHECK(e["is_sym"].is_boolean());
    if (e["name"] == "conv1.weight") {
      seen = true;
      CHECK(e["enc_type"] == "PER_CHANNEL");
      CHECK(e["dtype"] == "INT");
      CHECK(e["offset"][0] == -128);
      CHECK(e["scale"].size() == 16);
      const double s3 = e["scale"][3].get<double>(), w3 = w[3]["scale"].get<double>();
      CHECK(s3 == w3);
    }
  }
  CHECK(seen);
  // both schemas read back to the same encodings
  EncodingsFile a = read_encodings(dir / "e061.json"), b = read_encodings(dir / "e100.json");
  CHECK(a.params.size() == b.params.size());
  CHECK(a.activations.size() == b.activations.size());
  for (const auto& [k, v] : a.params) {
    REQUIRE(b.params.count(k));
    for (size_t i = 0; i < v.size(); ++i) {
      CHECK(v[i].delta == b.params[k][i].delta);
      CHECK(v[i].offset == b.params[k][i].offset);
    }
  }
}

TEST_CASE("load_encodings: strict / partial / freeze behaviour and errors listing names") {
  auto model = mnist_cnn();
  Tensor x = randn({4, 1, 28, 28}, 9);
  QuantSim sim(model, {x});
  calibrate(sim, x);
  const auto dir = tmp_dir("load");
  sim.export_encodings(dir / "enc.json");
  Tensor y_ref;
  {
    NoGradGuard ng;
    y_ref = sim.model()(x);
  }
  // a fresh sim loads them and computes the same outputs
  auto model2 = mnist_cnn();
  QuantSim sim2(model2, {x});
  sim2.load_encodings(dir / "enc.json", {.freeze = true});
  Tensor y2;
  {
    NoGradGuard ng;
    y2 = sim2.model()(x);
  }
  CHECK(qforge::testing::max_abs_diff(y2, y_ref) == 0);
  // frozen: calibration does not overwrite them
  calibrate(sim2, ops::mul(x, 5.0));
  CHECK(sim2.quantizer("relu1.output").encodings()[0] == sim.quantizer("relu1.output").encodings()[0]);

  // mismatching names: error listing them, nothing applied
  EncodingsFile f = read_encodings(dir / "enc.json");
  f.activations["ghost.output"] = f.activations.begin()->second;
  f.activations.erase("relu2.output");
  auto model3 = mnist_cnn();
  QuantSim sim3(model3, {x});
  try {
    sim3.load_encodings(f);
    FAIL("expected an error");
  } catch (const InputError& e) {
    const std::string m = e.what();
    CHECK(m.find("ghost.output") != std::string::npos);
    CHECK(m.find("relu2.output") != std::string::npos);
  }
  CHECK_FALSE(sim3.quantizer("relu1.output").has_encoding());
  // partial + non-strict: loads what matches
  sim3.load_encodings(f, {.strict = false, .partial = true});
  CHECK(sim3.quantizer("relu1.output").has_encoding());
  CHECK_FALSE(sim3.quantizer("relu2.output").has_encoding());
  // AIMET partial=False: quantizers without an entry are disabled
  auto model4 = mnist_cnn();
  QuantSim sim4(model4, {x});
  sim4.load_encodings(f, {.strict = false, .partial = true, .disable_missing = true});
  CHECK_FALSE(sim4.quantizer("relu2.output").enabled());
  // params only (set_and_freeze_param_encodings)
  auto model5 = mnist_cnn();
  QuantSim sim5(model5, {x});
  sim5.load_encodings(dir / "enc.json", {.freeze = true, .params_only = true});
  CHECK(sim5.quantizer("conv1.weight").frozen());
  CHECK_FALSE(sim5.quantizer("relu1.output").has_encoding());
  // bad files
  CHECK_THROWS_AS(sim5.load_encodings(dir / "missing.json"), InputError);
  CHECK_THROWS_AS(encodings_from_json(nlohmann::json::parse(R"({"version": "1.0.0", "param_encodings": [{"name": "w", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 3, "is_sym": true, "scale": [0.1], "offset": [-4]}], "activation_encodings": [{"name": "a", "dtype": "INT", "enc_type": "PER_TENSOR", "bw": 17, "is_sym": true, "scale": [0.1], "offset": [0]}]})")),
                  InputError);
}

TEST_CASE("quantsim export_dir writes encodings.json, quantsim.json and weights.safetensors") {
  auto model = mnist_cnn();
  Tensor x = randn({2, 1, 28, 28}, 10);
  QuantSim sim(model, {x});
  calibrate(sim, x);
  const auto dir = tmp_dir("dir");
  sim.export_dir(dir);
  CHECK(std::filesystem::exists(dir / "encodings.json"));
  CHECK(std::filesystem::exists(dir / "quantsim.json"));
  CHECK(std::filesystem::exists(dir / "weights.safetensors"));
  std::ifstream in(dir / "quantsim.json");
  const auto j = nlohmann::json::parse(in);
  CHECK(j["quantizers"].size() == sim.quantizers().size());
  CHECK(j["folded_bn"].size() == 2);
}

TEST_CASE("quantsim: unsupported bitwidths are rejected") {
  auto model = mnist_cnn();
  Tensor x = randn({1, 1, 28, 28}, 11);
  QuantSimOptions o;
  o.act_bw = 1;
  CHECK_THROWS_AS(QuantSim(model, {x}, o), Error);
  o.act_bw = 8;
  o.param_bw = 32;
  CHECK_THROWS_AS(QuantSim(model, {x}, o), Error);
}

TEST_CASE("quantsim: AIMET HTP v73 config without BN folding fuses Conv+BatchNormalization+Relu") {
  const auto p = qforge::testing::source_root() / ".." / "shared" / "reference" / "aimet-configs" /
                 "htp_quantsim_config_v73.json";
  if (!std::filesystem::exists(p)) return;
  auto model = mnist_cnn();
  Tensor x = randn({2, 1, 28, 28}, 12);
  QuantSimOptions o;
  o.config = p.string();
  o.fold_bn = false;
  QuantSim sim(model, {x}, o);
  CHECK(sim.folded_bn().empty());
  CHECK_FALSE(sim.quantizer("conv1.output").enabled());
  CHECK_FALSE(sim.quantizer("bn1.output").enabled());
  CHECK_FALSE(sim.quantizer("relu1.input").enabled());
  CHECK(sim.quantizer("relu1.output").enabled());
  CHECK(sim.quantizer("conv1.weight").settings().per_channel);
  CHECK_FALSE(sim.quantizer("pool1.output").enabled());  // MaxPool output off in the HTP config
  CHECK(sim.config().hw_version == "V73");
  calibrate(sim, x);
  CHECK(sim.quantizer("relu1.output").has_encoding());
}

TEST_CASE("quantsim: op_type output False keeps the tensor unquantized at its consumers too") {
  auto cfg = default_config();
  cfg.op_type["MaxPool"].is_output_quantized = false;
  auto model = mnist_cnn();
  Tensor x = randn({2, 1, 28, 28}, 13);
  QuantSimOptions o;
  o.config_obj = cfg;
  QuantSim sim(model, {x}, o);
  CHECK_FALSE(sim.quantizer("pool1.output").enabled());
  CHECK_FALSE(sim.quantizer("conv2.input").enabled());  // consumer of the unquantized pool output
  CHECK(sim.quantizer("conv1.input").enabled());  // model input
}

TEST_CASE("quantsim: conflicting op_type rules on one tensor are an error, like AIMET") {
  auto cfg = default_config();
  cfg.op_type["MaxPool"].is_output_quantized = false;  // pool1 -> conv2 unquantized ...
  cfg.op_type["Conv"].is_input_quantized = true;       // ... and quantized: a conflict
  auto model = mnist_cnn();
  Tensor x = randn({1, 1, 28, 28}, 14);
  QuantSimOptions o;
  o.config_obj = cfg;
  CHECK_THROWS_WITH_AS(QuantSim(model, {x}, o), doctest::Contains("Conflicting tensor quantizer settings"), InputError);
}

TEST_CASE("quantsim: GRU with gate pre-activation quantizers (optional) runs and calibrates") {
  Generator g(3);
  nn::RecurrentOptions ro;
  ro.input_size = 3;
  ro.hidden_size = 4;
  auto seq = std::make_shared<nn::Sequential>();
  seq->push_back("gru", std::make_shared<nn::GRU>(ro, g));
  Tensor x = randn({5, 2, 3}, 15);
  QuantSimOptions o;
  o.quantize_gates = true;
  o.quantize_cell_state = true;  // ignored for GRU (no cell state)
  QuantSim sim(seq, {x}, o);
  CHECK(sim.has_quantizer("gru.gates_l0"));
  CHECK_FALSE(sim.has_quantizer("gru.cell_l0"));
  calibrate(sim, x);
  CHECK(sim.quantizer("gru.gates_l0").has_encoding());
  CHECK(sim.quantizer("gru.hidden_l0").has_encoding());
  Tensor y = sim.model()(x);
  y.backward(Tensor::ones(y.shape()));
  CHECK(seq->find("gru")->raw_param("weight_hh_l0").grad().defined());
}

namespace {

// One QAT forward/backward of `model` on x; returns the output followed by d/dx, every parameter's
// gradient and then every range parameter's gradient (`range`, e.g. sim.range_parameters()). `fused`
// false removes the hook's fused_hidden description (forces the per-step path); `hidden_calls` counts
// the per-step hidden-site calls.
std::vector<Tensor> qat_step(nn::Module& model, nn::RNNBase& rnn, const Tensor& x0, bool fused, int& hidden_calls,
                             std::vector<Tensor> range = {}) {
  const nn::CellHook orig = rnn.cell_hook();
  nn::CellHook h = orig;
  if (!fused) h.fused_hidden = nullptr;
  h.fn = [&hidden_calls, f = orig.fn](int64_t l, bool r, nn::CellSite s, const Tensor& t) {
    if (s == nn::CellSite::hidden) ++hidden_calls;
    return f(l, r, s, t);
  };
  rnn.set_cell_hook(h);
  model.zero_grad();
  for (auto& p : range) p.zero_grad();
  Tensor x = x0.detach().clone().set_requires_grad(true);
  Tensor y = model(x);
  Generator gw(5);
  ops::sum(y * Tensor::rand(y.shape(), gw, -1, 1, y.dtype())).backward();
  rnn.set_cell_hook(orig);
  std::vector<Tensor> out = {y.detach(), x.grad()};
  for (const auto& [name, p] : model.named_parameters()) out.push_back(p.grad());
  for (const auto& p : range) out.push_back(p.grad());
  return out;
}

}  // namespace

TEST_CASE("quantsim: zoo lstm's static hidden quantizer runs inside the fused sequence op, equal to the step path") {
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    auto model = nn::build_zoo_model("lstm");
    model->to(dt);
    nn::RNNBase* rnn = nullptr;
    for (auto& [name, m] : model->named_modules())
      if (auto* r = dynamic_cast<nn::RNNBase*>(m.get())) rnn = r;
    REQUIRE(rnn);
    const Tensor x = randn(nn::zoo_input_shape("lstm", 6), 21).to(dt);
    QuantSim sim(model, {x});
    int calls = 0;
    {
      // calibration must observe every h_t: the step path runs while the quantizers calibrate
      nn::CellHook orig = rnn->cell_hook(), h = orig;
      h.fn = [&calls, f = orig.fn](int64_t l, bool r, nn::CellSite s, const Tensor& t) {
        if (s == nn::CellSite::hidden) ++calls;
        return f(l, r, s, t);
      };
      rnn->set_cell_hook(h);
      calibrate(sim, x);
      rnn->set_cell_hook(orig);
    }
    CHECK(calls == 28);
    int fused_calls = 0, step_calls = 0;
    const auto a = qat_step(*model, *rnn, x, true, fused_calls);
    const auto b = qat_step(*model, *rnn, x, false, step_calls);
    CHECK(fused_calls == 0);
    CHECK(step_calls == 28);
    REQUIRE(a.size() == b.size());
    // The quantized forward is bit-identical in f64 (both paths use libm activations there; gradients
    // differ in the last bit from the summation order, as without quantization). In f32 the fused
    // activations are xsimd's (a few ulp from libm's), so values agree to rounding (measured: outputs
    // identical, gradients within 1e-7) unless an h_t lies within an ulp of a rounding boundary.
    if (dt == DType::f64) CHECK(testing::max_abs_diff(a[0], b[0]) == 0.0);
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      REQUIRE(a[i].defined());
      REQUIRE(b[i].defined());
      CHECK(testing::max_abs_diff(a[i], b[i]) < (dt == DType::f64 ? 1e-12 : 1e-5));
    }
    // learnable ranges run fused too (next test case); stochastic rounding keeps the step path
    QuantizerSettings st = sim.quantizer("lstm.hidden_l0").settings();
    for (RangeLearning rl : {RangeLearning::lsq, RangeLearning::aimet}) {
      st.range_learning = rl;
      sim.quantizer("lstm.hidden_l0").set_settings(st);
      int learn_calls = 0;
      qat_step(*model, *rnn, x, true, learn_calls);
      CHECK(learn_calls == 0);
    }
    st.range_learning = RangeLearning::none;
    st.rounding = RoundingMode::stochastic;
    sim.quantizer("lstm.hidden_l0").set_settings(st);
    int stochastic_calls = 0;
    qat_step(*model, *rnn, x, true, stochastic_calls);
    CHECK(stochastic_calls == 28);
  }
}

namespace {

// A recurrent layer (LSTM or GRU) alone in a Sequential, wrapped in a calibrated W8A8 QuantSim.
struct RnnSim {
  std::shared_ptr<nn::Sequential> model;
  nn::RNNBase* rnn = nullptr;
  std::unique_ptr<QuantSim> sim;
};
RnnSim rnn_sim(nn::CellType type, const nn::RecurrentOptions& ro, const Tensor& x, RangeLearning rl) {
  Generator g(4);
  RnnSim r;
  r.model = std::make_shared<nn::Sequential>();
  std::shared_ptr<nn::RNNBase> layer;
  if (type == nn::CellType::lstm) layer = std::make_shared<nn::LSTM>(ro, g);
  else layer = std::make_shared<nn::GRU>(ro, g);
  r.rnn = layer.get();
  r.model->push_back("rnn", layer);
  r.model->to(x.dtype());
  QuantSimOptions o;
  o.range_learning = rl;
  r.sim = std::make_unique<QuantSim>(r.model, std::vector<Tensor>{x}, o);
  calibrate(*r.sim, x);
  return r;
}

}  // namespace

TEST_CASE("quantsim: learnable-range (lsq, aimet) hidden quantizers run inside the fused sequence op; outputs and "
          "input, weight and range-parameter gradients equal the step path") {
  struct Config {
    nn::CellType type;
    nn::RecurrentOptions opt;
    bool symmetric_hidden = false;  // AIMET's tied min/max rule; LSQ without a learnable zero point
  };
  const std::vector<Config> configs = {
      {nn::CellType::lstm, {.input_size = 5, .hidden_size = 6, .num_layers = 2, .batch_first = true, .bidirectional = true}},
      {nn::CellType::gru, {.input_size = 5, .hidden_size = 6, .num_layers = 2, .bidirectional = true}},
      {nn::CellType::lstm, {.input_size = 5, .hidden_size = 40}},
      {nn::CellType::gru, {.input_size = 5, .hidden_size = 6, .bidirectional = true}, true},
  };
  for (RangeLearning rl : {RangeLearning::lsq, RangeLearning::aimet}) {
    for (DType dt : {DType::f64, DType::f32}) {
      for (const auto& cfg : configs) {
        CAPTURE(range_learning_name(rl));
        CAPTURE(dtype_name(dt));
        CAPTURE(nn::cell_type_name(cfg.type));
        CAPTURE(cfg.opt.num_layers);
        CAPTURE(cfg.symmetric_hidden);
        const int64_t T = 7, B = 4;
        const Tensor x = randn(cfg.opt.batch_first ? Shape{B, T, 5} : Shape{T, B, 5}, 41).to(dt);
        RnnSim r = rnn_sim(cfg.type, cfg.opt, x, rl);
        // Narrow every hidden range to 60% of the calibrated one, so that the clipped terms (O) count.
        for (int64_t k = 0; k < cfg.opt.num_layers; ++k) {
          Quantizer& q = r.sim->quantizer(fmt::format("rnn.hidden_l{}", k));
          const Encoding e = q.encodings()[0];
          QuantizerSettings st = q.settings();
          st.grid.symmetric = cfg.symmetric_hidden;
          q.set_settings(st);
          q.set_encodings({compute_encoding(0.6 * e.min, 0.6 * e.max, st.grid)});
          CHECK(q.encodings()[0].symmetric == cfg.symmetric_hidden);
        }
        const std::vector<Tensor> range = r.sim->range_parameters();
        int fused_calls = 0, step_calls = 0;
        const auto a = qat_step(*r.model, *r.rnn, x, true, fused_calls, range);
        const auto b = qat_step(*r.model, *r.rnn, x, false, step_calls, range);
        const int64_t D = cfg.opt.bidirectional ? 2 : 1;
        CHECK(fused_calls == 0);
        CHECK(step_calls == T * D * cfg.opt.num_layers);
        REQUIRE(a.size() == b.size());
        // The hidden quantizers' own range gradients (the ones the fused op computes) must be non-zero.
        size_t hidden_range = 0;
        for (size_t i = 0; i < range.size(); ++i)
          for (int64_t k = 0; k < cfg.opt.num_layers; ++k)
            for (const auto& p : r.sim->quantizer(fmt::format("rnn.hidden_l{}", k)).parameters())
              if (p.data<float>() == range[i].data<float>()) {
                ++hidden_range;
                CHECK(std::abs(a[a.size() - range.size() + i].item()) > 0.0);
              }
        // two parameters per quantizer, but LSQ on a symmetric grid keeps its zero point fixed
        const size_t per_quantizer = cfg.symmetric_hidden && rl == RangeLearning::lsq ? 1 : 2;
        CHECK(hidden_range == per_quantizer * size_t(cfg.opt.num_layers));
        if (dt == DType::f64) CHECK(testing::max_abs_diff(a[0], b[0]) == 0.0);  // same grid, same arithmetic
        for (size_t i = 0; i < a.size(); ++i) {
          CAPTURE(i);
          REQUIRE(a[i].defined());
          REQUIRE(b[i].defined());
          if (i + range.size() < a.size()) {  // output, input and weight gradients
            CHECK(testing::max_abs_diff(a[i], b[i]) < (dt == DType::f64 ? 1e-12 : 1e-5));
          } else {  // range parameters (f32): per-step float sums in the step path, one double sum fused
            const double va = a[i].item(), vb = b[i].item();
            CHECK(std::abs(va - vb) <= 1e-5 * std::abs(vb) + 1e-9);
          }
        }
      }
    }
  }
}

TEST_CASE("quantsim: fused learnable hidden range gradients equal finite differences where every h_t is clipped") {
  // Where every hidden value is clipped at a bound, q(h) = bound * scale is smooth in the range, so the
  // range-learning gradient is a true derivative: LSQ's dL/dscale = g_LSQ * dL/ds (g_LSQ = 1/sqrt(H * Qp)),
  // AIMET's dL/dmax with min = 0 (offset 0, delta = max/N). (In range the rules use the straight-through
  // estimator, which finite differences cannot see; that part is covered by the step-path equality above
  // and tests/quant/test_quantizer.cpp.) The perturbed quantizer is the last layer's, so nothing
  // downstream rounds the loss.
  struct Config {
    nn::CellType type;
    nn::RecurrentOptions opt;
  };
  const std::vector<Config> configs = {
      {nn::CellType::lstm, {.input_size = 5, .hidden_size = 6, .num_layers = 2, .batch_first = true, .bidirectional = true}},
      {nn::CellType::gru, {.input_size = 5, .hidden_size = 6, .bidirectional = true}},
      {nn::CellType::lstm, {.input_size = 5, .hidden_size = 7}},
  };
  for (RangeLearning rl : {RangeLearning::lsq, RangeLearning::aimet}) {
    for (const auto& cfg : configs) {
      CAPTURE(range_learning_name(rl));
      CAPTURE(nn::cell_type_name(cfg.type));
      CAPTURE(cfg.opt.num_layers);
      const int64_t T = 6, B = 3, H = cfg.opt.hidden_size;
      const Tensor x = randn(cfg.opt.batch_first ? Shape{B, T, 5} : Shape{T, B, 5}, 43).to(DType::f64);
      RnnSim r = rnn_sim(cfg.type, cfg.opt, x, rl);
      Quantizer& q = r.sim->quantizer(fmt::format("rnn.hidden_l{}", cfg.opt.num_layers - 1));
      // A tiny range, written into the parameters (encodings keep AIMET's minimum width of 0.01):
      // LSQ scale 1e-6 and zero point 128; AIMET min 0, max 1e-4.
      std::vector<Tensor> params = q.parameters();
      REQUIRE(params.size() == 2);
      params[0].data<float>()[0] = rl == RangeLearning::lsq ? 1e-6f : 0.0f;
      params[1].data<float>()[0] = rl == RangeLearning::lsq ? 128.0f : 1e-4f;
      Tensor p = rl == RangeLearning::lsq ? params[0] : params[1];  // LSQ scale, AIMET max
      const Encoding e = q.encodings()[0];
      // The loss sees every output of the layer: for the LSTM, c_n carries q(h_t)'s influence on later
      // steps through the (unquantized) cell state, so the recurrent part of dL/dq(h_t) counts.
      Generator gw(9);
      std::vector<Tensor> ws;
      auto loss = [&]() {
        const std::vector<Tensor> outs = (*r.rnn)(std::vector<Tensor>{x});
        Tensor l;
        for (size_t i = 0; i < outs.size(); ++i) {
          if (ws.size() <= i) ws.push_back(Tensor::rand(outs[i].shape(), gw, -1, 1, DType::f64));
          const Tensor term = ops::sum(outs[i] * ws[i]);
          l = l.defined() ? l + term : term;
        }
        return l;
      };
      // analytic (fused path: no per-step hidden calls)
      int calls = 0;
      nn::CellHook orig = r.rnn->cell_hook(), h = orig;
      h.fn = [&calls, f = orig.fn](int64_t l, bool rv, nn::CellSite s, const Tensor& t) {
        if (s == nn::CellSite::hidden) ++calls;
        return f(l, rv, s, t);
      };
      r.rnn->set_cell_hook(h);
      r.model->zero_grad();
      for (auto& t : params) t.zero_grad();
      Tensor y0;
      {
        Tensor l = loss();
        l.backward();
        NoGradGuard ng;
        y0 = (*r.rnn)(std::vector<Tensor>{x})[0];
      }
      r.rnn->set_cell_hook(orig);
      CHECK(calls == 0);
      REQUIRE(p.grad().defined());
      const double analytic = p.grad().item();
      // every value of the last layer's output is at a bound of the grid
      int64_t inside = 0;
      for (double v : y0.to_vector<double>()) {
        const double k = std::round(v / static_cast<float>(e.delta));
        inside += (k != e.offset && k != e.offset + 255) ? 1 : 0;
      }
      REQUIRE(inside == 0);
      // central differences on the f32 parameter (values as stored)
      float* pv = p.data<float>();
      const float v0 = *pv, vp = v0 * 1.01f, vm = v0 * 0.99f;
      double lp, lm;
      {
        NoGradGuard ng;
        *pv = vp;
        lp = loss().item();
        *pv = vm;
        lm = loss().item();
        *pv = v0;
      }
      const double fd = (lp - lm) / (double(vp) - double(vm));
      const double scale = rl == RangeLearning::lsq ? 1.0 / std::sqrt(double(H) * (255.0 + e.offset)) : 1.0;
      CHECK(std::abs(fd) > 1.0);
      CHECK(analytic == doctest::Approx(scale * fd).epsilon(1e-4));
    }
  }
}
