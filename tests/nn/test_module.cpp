#include "nn/module.hpp"

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"

#include <doctest/doctest.h>

using namespace qforge;
using namespace qforge::nn;

namespace {
// A tiny hand-written layer: y = x * scale + shift (parameters) ; buffer "count" counts calls.
struct Affine : Module {
  Affine() : Module("Affine") {
    register_parameter("scale", Tensor::full({3}, 2.0));
    register_parameter("shift", Tensor::zeros({3}));
    register_buffer("count", Tensor::zeros({}, DType::i32));
  }
  Tensor forward_tensor(const Tensor& x) override {
    buffer("count").set({}, buffer("count").item() + 1);
    return ops::add(ops::mul(x, param("scale")), param("shift"));
  }
  std::string extra_repr() const override { return "features=3"; }
};

struct Two : Module {
  std::shared_ptr<Affine> a, b;
  Two() : Module("Two") {
    a = register_module("a", std::make_shared<Affine>());
    b = register_module("b", std::make_shared<Affine>());
  }
  Tensor forward_tensor(const Tensor& x) override { return (*b)((*a)(x)); }
};
}  // namespace

TEST_CASE("module: state_dict names are dotted and ordered like PyTorch") {
  auto m = std::make_shared<Two>();
  auto sd = m->state_dict();
  std::vector<std::string> names;
  for (auto& [n, t] : sd) names.push_back(n);
  CHECK(names == std::vector<std::string>{"a.scale", "a.shift", "a.count", "b.scale", "b.shift", "b.count"});
  CHECK(m->named_parameters().size() == 4);
  CHECK(m->named_buffers().size() == 2);
  CHECK(m->num_parameters() == 12);
  CHECK(m->find("a").get() == m->a.get());
  CHECK_THROWS_AS(m->find("c"), Error);
  auto mods = m->named_modules();
  REQUIRE(mods.size() == 3);
  CHECK(mods[0].first == "");
  CHECK(mods[2].first == "b");
}

TEST_CASE("module: load_state_dict copies values and rejects bad keys and shapes naming them") {
  auto m = std::make_shared<Two>();
  auto m2 = std::make_shared<Two>();
  m2->a->raw_param("scale").detach().fill_(5.0);
  m->load_state_dict(m2->state_dict());
  CHECK(m->a->raw_param("scale").at({1}) == 5.0);
  CHECK(m->a->raw_param("scale").requires_grad());

  std::map<std::string, Tensor> sd;
  for (auto& [n, t] : m2->state_dict()) sd[n] = t;
  sd.erase("b.shift");
  sd["extra.weight"] = Tensor::zeros({1});
  try {
    m->load_state_dict(sd);
    FAIL("expected an error");
  } catch (const InputError& e) {
    std::string msg = e.what();
    CHECK(msg.find("b.shift") != std::string::npos);
    CHECK(msg.find("extra.weight") != std::string::npos);
  }
  auto r = m->load_state_dict(sd, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"b.shift"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"extra.weight"});

  sd["b.shift"] = Tensor::zeros({4});
  try {
    m->load_state_dict(sd, false);
    FAIL("expected an error");
  } catch (const InputError& e) {
    std::string msg = e.what();
    CHECK(msg.find("b.shift") != std::string::npos);
    CHECK(msg.find("[4]") != std::string::npos);
  }
}

TEST_CASE("module: train/eval recurse; zero_grad drops gradients") {
  auto m = std::make_shared<Two>();
  m->eval();
  CHECK_FALSE(m->a->is_training());
  m->train();
  CHECK(m->b->is_training());
  Tensor y = (*m)(Tensor::ones({2, 3}));
  ops::sum(y).backward();
  CHECK(m->a->raw_param("scale").grad().defined());
  CHECK(m->a->raw_param("scale").grad().at({0}) == doctest::Approx(2.0 * 2.0));  // d/dscale_a = x*scale_b
  m->zero_grad();
  CHECK_FALSE(m->a->raw_param("scale").grad().defined());
  CHECK(m->a->buffer("count").item() == 1);
}

TEST_CASE("module: hooks replace inputs and outputs; removal restores behaviour") {
  auto m = std::make_shared<Affine>();
  int pre = m->add_forward_pre_hook([](Module&, std::vector<Tensor>& in) { in[0] = ops::add(in[0], 1.0); });
  int post = m->add_forward_hook(
      [](Module&, const std::vector<Tensor>&, std::vector<Tensor>& out) { out[0] = ops::mul(out[0], 10.0); });
  Tensor y = (*m)(Tensor::ones({3}));
  CHECK(y.at({0}) == doctest::Approx((1 + 1) * 2 * 10));
  m->remove_hook(pre);
  m->remove_hook(post);
  CHECK((*m)(Tensor::ones({3})).at({0}) == doctest::Approx(2));
}

TEST_CASE("module: parameter transform is seen by forward, gradients reach the stored shadow") {
  auto m = std::make_shared<Affine>();
  m->set_param_transform([](Module&, const std::string& name, const Tensor& p) {
    return name == "scale" ? ops::mul(p, 3.0) : p;
  });
  Tensor y = (*m)(Tensor::ones({3}));
  CHECK(y.at({0}) == doctest::Approx(6.0));
  CHECK(m->raw_param("scale").at({0}) == 2.0);
  ops::sum(y).backward();
  CHECK(m->raw_param("scale").grad().at({0}) == doctest::Approx(3.0));
  m->clear_param_transform();
  CHECK((*m)(Tensor::ones({3})).at({0}) == doctest::Approx(2.0));
}

TEST_CASE("module: to(f64) converts parameters and keeps requires_grad; printout is readable") {
  auto m = std::make_shared<Two>();
  m->to(DType::f64);
  CHECK(m->a->raw_param("scale").dtype() == DType::f64);
  CHECK(m->a->raw_param("scale").requires_grad());
  CHECK(m->a->buffer("count").dtype() == DType::i32);
  CHECK(m->to_string() == "Two(\n  (a): Affine(features=3)\n  (b): Affine(features=3)\n)");
}

TEST_CASE("module: a module without forward reports it by type name") {
  Module m("Nothing");
  CHECK_THROWS_WITH_AS(m(Tensor::ones({1})), doctest::Contains("Nothing"), Error);
}
