// Zoo: every model builds, has PyTorch's state_dict names and parameter counts, produces the right
// shapes, and its backward (through the whole model) matches finite differences.
#include "engine/autograd.hpp"
#include "nn/zoo.hpp"
#include "tests/support/gradcheck.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <map>

using namespace qforge;
using namespace qforge::nn;
using qforge::testing::gradcheck;

namespace {

bool has_key(const Module& m, const std::string& k) {
  for (auto& [n, t] : m.state_dict())
    if (n == k) return true;
  return false;
}

// A perturbation `d` placed at the origin of a tensor of shape `full` (zeros elsewhere).
Tensor embed_delta(const Tensor& d, const Shape& full) {
  std::vector<int64_t> pads;
  for (int64_t i = static_cast<int64_t>(full.size()) - 1; i >= 0; --i) {
    pads.push_back(0);
    pads.push_back(full[i] - d.shape()[i]);
  }
  return ops::pad(d, pads);
}

Shape corner(const Shape& s, int64_t k) {
  Shape c = s;
  for (auto& v : c) v = std::min<int64_t>(v, k);
  return c;
}

// Gradcheck of the whole model (f64, training mode) w.r.t. a corner of the input (if floating) and a
// corner of each named parameter, so every layer's backward lies on a checked path.
std::string zoo_gradcheck(Graph& m, const Tensor& x, const std::vector<std::string>& params) {
  m.to(DType::f64);
  m.train();
  struct P {
    ModulePtr owner;
    std::string name;
    Tensor base;
  };
  std::vector<P> ps;
  std::vector<Tensor> deltas;
  const bool x_float = is_floating(x.dtype());
  Tensor xb = x_float ? x.to(DType::f64) : x;
  if (x_float) deltas.push_back(testing::rand_input(corner(x.shape(), 3), 5, -0.1, 0.1));
  for (const auto& full : params) {
    const auto dot = full.rfind('.');
    P p{m.find(full.substr(0, dot)), full.substr(dot + 1), Tensor()};
    p.base = p.owner->raw_param(p.name).detach();
    deltas.push_back(testing::rand_input(corner(p.base.shape(), 2), 6, -0.1, 0.1));
    ps.push_back(p);
  }
  auto f = [&](const std::vector<Tensor>& d) {
    size_t k = 0;
    Tensor in = x_float ? ops::add(xb, embed_delta(d[k++], xb.shape())) : xb;
    for (auto& p : ps) p.owner->set_param(p.name, ops::add(p.base, embed_delta(d[k++], p.base.shape())));
    return m(in);
  };
  testing::GradcheckOptions opt;
  opt.atol = 1e-5;
  std::string r = gradcheck(f, deltas, opt);
  // The check is not vacuous: every perturbed corner influences the output.
  ops::sum(ops::mul(f(deltas), f(deltas).detach())).backward();
  for (size_t k = 0; k < deltas.size(); ++k)
    if (!deltas[k].grad().defined() || ops::max(ops::abs(deltas[k].grad())).item() == 0)
      r += fmt::format(" perturbation {} has no gradient;", k);
  for (auto& p : ps) p.owner->set_param(p.name, p.base.set_requires_grad(true));
  return r;
}

Tensor zoo_input(const std::string& name, int64_t batch, uint64_t seed) {
  Shape s = zoo_input_shape(name, batch);
  Generator g(seed);
  if (name == "char-lstm") {
    std::vector<int32_t> idx(shape_numel(s));
    for (auto& v : idx) v = static_cast<int32_t>(g.below(11));
    return Tensor::from_vector(idx, s);
  }
  return Tensor::rand(s, g);
}

}  // namespace

TEST_CASE("zoo: every model builds with PyTorch's parameter counts and output shapes") {
  // Counts computed with torch 1.13: sum(p.numel() for p in model.parameters()).
  const std::map<std::string, int64_t> counts = {{"mlp", 203530},  {"mnist-cnn", 20586}, {"dw-cnn", 4266},
                                                 {"resnet-tiny", 19706}, {"lstm", 82186}, {"gru", 61962},
                                                 {"char-lstm", 350593}};  // char-lstm with vocab 65
  CHECK(zoo_names().size() == counts.size());
  for (const auto& name : zoo_names()) {
    CAPTURE(name);
    ZooOptions zo;
    zo.vocab = 65;
    auto m = build_zoo_model(name, zo);
    CHECK(m->num_parameters() == counts.at(name));
    Tensor x = zoo_input(name, 3, 1);
    if (name == "char-lstm") x = ops::clamp(x.to(DType::f32), 0, 64).to(DType::i32);
    autograd::NoGradGuard ng;
    m->eval();
    auto out = (*m)(std::vector<Tensor>{x});
    REQUIRE(out.size() >= 1);
    if (name == "char-lstm")
      CHECK(out[0].shape() == Shape{3, 32, 65});
    else
      CHECK(out[0].shape() == Shape{3, 10});
    CHECK(!zoo_description(name).empty());
  }
}

TEST_CASE("zoo: state_dict names are exactly the PyTorch modules'") {
  auto r = build_zoo_model("resnet-tiny");
  for (const char* k : {"stem.conv.weight", "stem.bn.running_var", "block1.conv1.weight", "block1.bn2.num_batches_tracked",
                        "block2.proj.conv.weight", "block2.proj.bn.bias", "fc.weight", "fc.bias"})
    CHECK_MESSAGE(has_key(*r, k), k);
  CHECK_FALSE(has_key(*r, "stem.conv.bias"));
  CHECK(r->state_dict().size() == 1 + 5 + (1 + 5) * 2 + (1 + 5) * 2 + (1 + 5) + 2);
  auto l = build_zoo_model("lstm");
  std::vector<std::string> lk;
  for (auto& [n, t] : l->state_dict()) lk.push_back(n);
  CHECK(lk == std::vector<std::string>{"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "lstm.bias_hh_l0",
                                       "fc.weight", "fc.bias"});
  auto g = build_zoo_model("gru");
  CHECK(has_key(*g, "gru.weight_hh_l0"));
  ZooOptions zo;
  zo.vocab = 11;
  auto c = build_zoo_model("char-lstm", zo);
  CHECK(has_key(*c, "embed.weight"));
  CHECK(c->find("embed")->raw_param("weight").shape() == Shape{11, 64});
  auto d = build_zoo_model("dw-cnn");
  CHECK(d->find("dw2")->raw_param("weight").shape() == Shape{32, 1, 3, 3});
  CHECK(d->find("bn5")->buffer("running_mean").shape() == Shape{64});
}

TEST_CASE("zoo: the same seed builds the same weights, another seed different ones") {
  auto a = build_zoo_model("mnist-cnn", {}, {7});
  auto b = build_zoo_model("mnist-cnn", {}, {7});
  auto c = build_zoo_model("mnist-cnn", {}, {8});
  CHECK(a->find("conv2")->raw_param("weight").to_vector<float>() == b->find("conv2")->raw_param("weight").to_vector<float>());
  CHECK(a->find("conv2")->raw_param("weight").to_vector<float>() != c->find("conv2")->raw_param("weight").to_vector<float>());
}

TEST_CASE("zoo: unknown names and a missing vocabulary are input errors") {
  CHECK_THROWS_WITH_AS(zoo_spec("resnet-huge"), doctest::Contains("resnet-huge"), InputError);
  CHECK_THROWS_WITH_AS(zoo_spec("char-lstm"), doctest::Contains("vocabulary"), InputError);
}

TEST_CASE("zoo: backward through every model matches finite differences") {
  // Only parameters that influence the output are perturbed: a conv bias followed by training-mode
  // BatchNorm (mnist-cnn conv2.bias, dw-cnn dw2.bias) is cancelled by the batch mean, so its exact gradient
  // is zero and any nonzero value is rounding (which differs per ISA). The next case checks that property.
  const std::map<std::string, std::vector<std::string>> params = {
      {"mlp", {"fc1.weight", "fc2.bias"}},
      {"mnist-cnn", {"conv1.weight", "bn1.weight", "conv2.weight", "bn2.bias", "fc.weight"}},
      {"dw-cnn", {"conv1.weight", "dw1.weight", "bn3.weight", "dw2.weight", "pw2.weight", "fc.bias"}},
      {"resnet-tiny", {"stem.conv.weight", "block1.conv2.weight", "block2.bn1.weight", "block2.proj.conv.weight",
                       "block2.proj.bn.bias", "fc.weight"}},
      {"lstm", {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_hh_l0", "fc.bias"}},
      {"gru", {"gru.weight_ih_l0", "gru.weight_hh_l0", "gru.bias_hh_l0", "fc.weight"}},
      {"char-lstm", {"embed.weight", "lstm.weight_hh_l0", "lstm.bias_ih_l0", "fc.bias"}},
  };
  for (const auto& name : zoo_names()) {
    CAPTURE(name);
    ZooOptions zo;
    zo.vocab = 11;
    auto m = build_zoo_model(name, zo, {3});
    // batch 2 (BatchNorm trains on batch statistics); char-lstm: short sequences
    Tensor x = zoo_input(name, 2, 4);
    if (name == "char-lstm") x = Tensor::from_vector<int32_t>({0, 1, 2, 3, 4, 1, 0, 7, 9, 10}, {2, 5});
    const std::string r = zoo_gradcheck(*m, x, params.at(name));
    CHECK_MESSAGE(r.empty(), r);
  }
}

TEST_CASE("zoo: a conv bias followed by training-mode BatchNorm gets a zero gradient up to rounding") {
  // BN subtracts the per-channel batch mean, which contains the bias: d(out)/d(bias) = 0 exactly. In f64
  // the computed gradient is rounding noise, far below the gradients of the weights beside it.
  for (const auto& [model, conv] : std::vector<std::pair<std::string, std::string>>{{"mnist-cnn", "conv2"},
                                                                                    {"dw-cnn", "dw2"}}) {
    CAPTURE(model);
    auto m = build_zoo_model(model, {}, {3});
    m->to(DType::f64);
    m->train();
    const Tensor x = zoo_input(model, 2, 4).to(DType::f64);
    const Tensor y = (*m)(x);
    ops::sum(ops::mul(y, y.detach())).backward();
    const Tensor gb = m->find(conv)->raw_param("bias").grad();
    const Tensor gw = m->find(conv)->raw_param("weight").grad();
    REQUIRE(gb.defined());
    REQUIRE(gw.defined());
    const double bias_grad = ops::max(ops::abs(gb)).item(), weight_grad = ops::max(ops::abs(gw)).item();
    CHECK(weight_grad > 1e-3);
    CHECK(bias_grad <= 1e-10 * weight_grad);
  }
}
