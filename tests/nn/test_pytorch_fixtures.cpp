// Layers and zoo models against PyTorch (fixtures from tools/gen_fixtures_nn.py, see its docstring):
// the same weights (a safetensors file written as a PyTorch user would) and inputs give the same
// outputs (within 1e-5) and gradients w.r.t. inputs and every parameter (within 1e-4), relative to the
// magnitude of the reference when it exceeds 1; in train mode the updated BN buffers match too.
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"
#include "tests/support/fixtures.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>

using namespace qforge;
namespace fs = std::filesystem;

namespace {

// max over elements of |a - b| / max(1, |b|)
double max_rel_err(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = std::abs(a[i] - b[i]) / std::max(1.0, std::abs(b[i]));
    worst = std::isnan(d) ? INFINITY : std::max(worst, d);
  }
  return worst;
}

std::vector<double> strided(const Tensor& t, int64_t stride) {
  const auto v = t.to_vector<double>();
  std::vector<double> out;
  for (size_t i = 0; i < v.size(); i += size_t(stride)) out.push_back(v[i]);
  return out;
}

std::shared_ptr<nn::Module> build_case(const nlohmann::json& c) {
  if (c.at("kind") == "zoo")
    return nn::build_zoo_model(c.at("zoo").get<std::string>(), {.vocab = c.at("vocab").get<int64_t>()});
  return nn::build_model(c.at("spec"));
}

void run_case(const nlohmann::json& c) {
  const std::string name = c.at("name").get<std::string>();
  CAPTURE(name);
  auto model = build_case(c);
  nn::load_weights(*model, testing::fixture_path(c.at("weights").get<std::string>()), true);
  model->train(c.at("train").get<bool>());
  const nn::TensorMap io = nn::load_safetensors(testing::fixture_path(c.at("io").get<std::string>()));
  std::vector<Tensor> inputs;
  for (int k = 0; k < c.at("num_inputs").get<int>(); ++k) {
    Tensor x = io.at(fmt::format("input.{}", k)).clone();
    if (is_floating(x.dtype())) x.set_requires_grad(true);
    inputs.push_back(x);
  }
  const auto outs = (*model)(inputs);
  const int n_out = c.at("num_outputs").get<int>();
  REQUIRE(int(outs.size()) == n_out);
  Tensor loss;
  for (int k = 0; k < n_out; ++k) {
    CAPTURE(k);
    const Tensor& ref = io.at(fmt::format("output.{}", k));
    REQUIRE(outs[k].shape() == ref.shape());
    CHECK(max_rel_err(outs[k].to_vector<double>(), ref.to_vector<double>()) < 1e-5);
    const Tensor term = ops::sum(outs[k] * io.at(fmt::format("outw.{}", k)).to(outs[k].dtype()));
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  for (size_t k = 0; k < inputs.size(); ++k) {
    if (!inputs[k].requires_grad()) continue;
    CAPTURE(k);
    REQUIRE(inputs[k].grad().defined());
    CHECK(max_rel_err(inputs[k].grad().to_vector<double>(), io.at(fmt::format("grad.input.{}", k)).to_vector<double>()) <
          1e-4);
  }
  const auto& strides = c.at("grad_strides");
  int checked = 0;
  for (const auto& [pname, p] : model->named_parameters()) {
    CAPTURE(pname);
    const std::string key = "grad.param." + pname;
    REQUIRE(io.count(key) == 1);
    REQUIRE(p.grad().defined());
    const int64_t stride = strides.contains(pname) ? strides.at(pname).get<int64_t>() : 1;
    CHECK(max_rel_err(strided(p.grad(), stride), io.at(key).to_vector<double>()) < 1e-4);
    ++checked;
  }
  int grads_in_file = 0;
  for (const auto& [k, v] : io) grads_in_file += k.rfind("grad.param.", 0) == 0;
  CHECK(checked == grads_in_file);  // every PyTorch parameter has a qforge counterpart
  for (const auto& [bname, b] : model->named_buffers()) {
    const std::string key = "after." + bname;
    if (!c.at("train").get<bool>()) break;
    CAPTURE(bname);
    REQUIRE(io.count(key) == 1);
    CHECK(max_rel_err(b.to_vector<double>(), io.at(key).to_vector<double>()) < 1e-5);
  }
}

nlohmann::json cases() { return testing::load_fixture("nn/cases.json"); }

}  // namespace

TEST_CASE("pytorch fixtures: every layer type matches PyTorch in outputs and gradients") {
  int n = 0;
  for (const auto& c : cases())
    if (c.at("kind") == "layer") {
      run_case(c);
      ++n;
    }
  CHECK(n >= 62);  // 37 layer cases + 5 single-step cells + 20 of the ONNX node types
}

TEST_CASE("pytorch fixtures: every zoo model loads PyTorch weights and matches outputs and gradients") {
  std::set<std::string> seen;
  for (const auto& c : cases())
    if (c.at("kind") == "zoo") {
      run_case(c);
      seen.insert(c.at("zoo").get<std::string>());
    }
  for (const auto& z : nn::zoo_names()) CHECK_MESSAGE(seen.count(z) == 1, "no PyTorch fixture for zoo model " << z);
}

TEST_CASE("pytorch fixtures: a missing, unexpected or mis-shaped weight is rejected naming file and tensor") {
  const fs::path dir = fs::temp_directory_path() / fmt::format("qforge-test-weights-{}", ::getpid());
  fs::create_directories(dir);
  const fs::path src = testing::fixture_path("nn/zoo_resnet_tiny.weights.safetensors");
  nn::TensorMap sd = nn::load_safetensors(src);
  auto expect_error = [&](const nn::TensorMap& m, const std::string& needle) {
    const fs::path p = dir / "bad.safetensors";
    nn::save_safetensors(p, m);
    auto model = nn::build_zoo_model("resnet-tiny");
    try {
      nn::load_weights(*model, p, true);
      FAIL("no error for " << needle);
    } catch (const InputError& e) {
      const std::string msg = e.what();
      CHECK_MESSAGE(msg.find(p.string()) != std::string::npos, msg);
      CHECK_MESSAGE(msg.find(needle) != std::string::npos, msg);
    }
  };
  nn::TensorMap missing = sd;
  missing.erase("block2.proj.conv.weight");
  expect_error(missing, "block2.proj.conv.weight");
  nn::TensorMap extra = sd;
  extra["block3.conv1.weight"] = Tensor::ones({2});
  expect_error(extra, "block3.conv1.weight");
  nn::TensorMap shape = sd;
  shape["fc.weight"] = Tensor::ones({10, 31});
  expect_error(shape, "fc.weight");
  // Non-strict loading reports the key lists instead.
  const fs::path p = dir / "partial.safetensors";
  nn::save_safetensors(p, missing);
  auto model = nn::build_zoo_model("resnet-tiny");
  const auto r = nn::load_weights(*model, p, false);
  CHECK(r.missing_keys == std::vector<std::string>{"block2.proj.conv.weight"});
  fs::remove_all(dir);
}

TEST_CASE("pytorch fixtures: qforge-written weights re-read bit-exactly and reproduce the model") {
  // With QFORGE_EXPORT_DIR set, the files are left there for `tools/gen_fixtures_nn.py --check-qforge DIR`,
  // which loads them into the PyTorch models and compares the outputs recorded here.
  const char* env = std::getenv("QFORGE_EXPORT_DIR");
  const fs::path dir = env ? fs::path(env) : fs::temp_directory_path() / fmt::format("qforge-test-export-{}", ::getpid());
  fs::create_directories(dir);
  for (const std::string& name : nn::zoo_names()) {
    CAPTURE(name);
    const nn::ZooOptions zopt{.vocab = 11};
    auto model = nn::build_zoo_model(name, zopt, {.seed = 123});
    model->eval();
    const fs::path wpath = dir / (name + ".safetensors");
    nn::save_weights(*model, wpath);
    Generator g(5);
    Tensor x = name == "char-lstm" ? Tensor::rand({2, 6}, g, 0, 10.99).to(DType::i32)
                                   : Tensor::rand(nn::zoo_input_shape(name, 2), g);
    Tensor y;
    {
      NoGradGuard ng;
      y = (*model)(x);
    }
    nn::save_safetensors(dir / (name + ".io.safetensors"), {{"input.0", x}, {"output.0", y}});
    // Bit-exact re-read, and a fresh model (other seed) loaded from the file computes the same output.
    const nn::TensorMap back = nn::load_safetensors(wpath);
    for (const auto& [k, t] : model->state_dict()) {
      CAPTURE(k);
      REQUIRE(back.count(k) == 1);
      CHECK(back.at(k).to_vector<double>() == t.to_vector<double>());
    }
    auto fresh = nn::build_zoo_model(name, zopt, {.seed = 999});
    fresh->eval();
    nn::load_weights(*fresh, wpath, true);
    NoGradGuard ng;
    CHECK(testing::max_abs_diff((*fresh)(x), y) == 0);
  }
  if (!env) fs::remove_all(dir);
}
