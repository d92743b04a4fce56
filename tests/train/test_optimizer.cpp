#include "train/optimizer.hpp"
#include "train/schedule.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace qforge;
using namespace qforge::train;

namespace {

void check_close(const Tensor& got, const Tensor& want, double tol, const std::string& what) {
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  REQUIRE(g.size() == w.size());
  double worst = 0;
  size_t at = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double e = std::abs(g[i] - w[i]) / (1e-3 + std::abs(w[i]));
    if (e > worst) worst = e, at = i;
  }
  INFO(what, ": worst relative error ", worst, " at ", at, ": got ", g[at], " want ", w[at]);
  CHECK(worst < tol);
}

OptimizerConfig config_of(const nlohmann::json& c) {
  OptimizerConfig cfg;
  cfg.type = c["type"];
  const auto& d = c["defaults"];
  cfg.lr = d.value("lr", 0.01);
  cfg.weight_decay = d.value("weight_decay", 0.0);
  cfg.momentum = d.value("momentum", 0.0);
  cfg.dampening = d.value("dampening", 0.0);
  cfg.nesterov = d.value("nesterov", false);
  cfg.beta1 = d.value("beta1", 0.9);
  cfg.beta2 = d.value("beta2", 0.999);
  cfg.eps = d.value("eps", 1e-8);
  cfg.amsgrad = d.value("amsgrad", false);
  if (cfg.type == "adamw" && !d.contains("weight_decay")) cfg.weight_decay = 0.01;
  return cfg;
}

struct Setup {
  std::vector<Tensor> params;
  std::unique_ptr<Optimizer> opt;
};

Setup make(const nlohmann::json& c) {
  Setup s;
  std::vector<ParamGroup> groups;
  for (int k = 0; k < 2; ++k) {
    Tensor p = testing::tensor_from_json(c["init"][k], DType::f32).clone();
    p.set_requires_grad(true);
    s.params.push_back(p);
    ParamGroup g{fmt::format("group{}", k), {p}, {}, std::nullopt, std::nullopt};
    const auto& o = c["groups"][k];
    if (o.contains("lr")) g.lr = o["lr"].get<double>();
    if (o.contains("weight_decay")) g.weight_decay = o["weight_decay"].get<double>();
    groups.push_back(g);
  }
  s.opt = make_optimizer(groups, config_of(c));
  return s;
}

void set_grads(Setup& s, const nlohmann::json& c, size_t step) {
  for (int k = 0; k < 2; ++k) s.params[k].set_grad(testing::tensor_from_json(c["grads"][step][k], DType::f32));
}

}  // namespace

TEST_CASE("optimizers: SGD, Adam and AdamW match PyTorch over 5 steps with per-group lr and weight decay") {
  const auto fx = testing::load_fixture("train/optim.json");
  for (const auto& c : fx["optimizers"]) {
    const std::string name = c["name"];
    Setup s = make(c);
    for (size_t step = 0; step < c["grads"].size(); ++step) {
      set_grads(s, c, step);
      s.opt->step();
      for (int k = 0; k < 2; ++k)
        check_close(s.params[k], testing::tensor_from_json(c["after"][step][k], DType::f32), 2e-6,
                    fmt::format("{} step {} param {}", name, step, k));
    }
  }
}

TEST_CASE("optimizers: state save/load resumes bit-identically") {
  const auto fx = testing::load_fixture("train/optim.json");
  for (const auto& c : fx["optimizers"]) {
    Setup a = make(c), b = make(c);
    for (size_t step = 0; step < 2; ++step) {
      set_grads(a, c, step);
      a.opt->step();
    }
    // b: copy params and state from a after 2 steps
    for (int k = 0; k < 2; ++k) b.params[k].detach().copy_(a.params[k].detach());
    std::map<std::string, Tensor> st;
    for (auto& [n, t] : a.opt->state_tensors()) st[n] = t;
    // round-trip the JSON through text
    b.opt->load_state(nlohmann::json::parse(a.opt->state_json().dump()), st);
    CHECK(b.opt->steps() == 2);
    for (size_t step = 2; step < c["grads"].size(); ++step) {
      set_grads(a, c, step);
      set_grads(b, c, step);
      a.opt->step();
      b.opt->step();
    }
    for (int k = 0; k < 2; ++k) CHECK(a.params[k].to_vector<float>() == b.params[k].to_vector<float>());
  }
}

TEST_CASE("optimizers: state from a different optimizer or parameter layout is refused") {
  const auto fx = testing::load_fixture("train/optim.json");
  Setup sgd = make(fx["optimizers"][1]), adam = make(fx["optimizers"][3]);
  set_grads(sgd, fx["optimizers"][1], 0);
  sgd.opt->step();
  std::map<std::string, Tensor> st;
  for (auto& [n, t] : sgd.opt->state_tensors()) st[n] = t;
  CHECK_THROWS_AS(adam.opt->load_state(sgd.opt->state_json(), st), InputError);
  // same type, wrong shape
  Tensor p = Tensor::zeros({2, 2});
  p.set_requires_grad(true);
  OptimizerConfig cfg;
  cfg.momentum = 0.9;
  ParamGroup g1{"a", {p}, {}, std::nullopt, std::nullopt}, g2{"b", {Tensor::zeros({4}).set_requires_grad(true)}, {}, std::nullopt, std::nullopt};
  SGD other({g1, g2}, cfg);
  CHECK_THROWS_AS(other.load_state(sgd.opt->state_json(), st), InputError);
}

TEST_CASE("optimizers: parameters without gradients are skipped; zero_grad drops gradients") {
  Tensor p = Tensor::ones({3});
  p.set_requires_grad(true);
  OptimizerConfig cfg;
  cfg.lr = 0.5;
  SGD sgd({ParamGroup{"g", {p}, {}, std::nullopt, std::nullopt}}, cfg);
  sgd.step();
  CHECK(p.to_vector<float>() == std::vector<float>{1, 1, 1});
  p.set_grad(Tensor::full({3}, 2.0));
  sgd.step();
  CHECK(p.to_vector<float>() == std::vector<float>{0, 0, 0});
  sgd.zero_grad();
  CHECK_FALSE(p.grad().defined());
}

TEST_CASE("optimizers: bad configuration is InputError") {
  Tensor p = Tensor::ones({3}).set_requires_grad(true);
  std::vector<ParamGroup> g{ParamGroup{"g", {p}, {}, std::nullopt, std::nullopt}};
  OptimizerConfig c;
  c.type = "rmsprop";
  CHECK_THROWS_AS(make_optimizer(g, c), InputError);
  c.type = "sgd";
  c.lr = 0;
  CHECK_THROWS_AS(make_optimizer(g, c), InputError);
  c.lr = -1;
  CHECK_THROWS_AS(make_optimizer(g, c), InputError);
  c.lr = 0.1;
  c.nesterov = true;
  CHECK_THROWS_AS(make_optimizer(g, c), InputError);
}

TEST_CASE("optimizers: split_weight_decay puts biases and norm parameters in a no-decay group") {
  NamedTensors named = {{"conv.weight", Tensor::zeros({4, 1, 3, 3})},
                        {"conv.bias", Tensor::zeros({4})},
                        {"bn.weight", Tensor::zeros({4})},
                        {"fc.weight", Tensor::zeros({10, 4})}};
  auto groups = split_weight_decay(named);
  REQUIRE(groups.size() == 2);
  CHECK(groups[0].param_names == std::vector<std::string>{"conv.weight", "fc.weight"});
  CHECK(groups[1].param_names == std::vector<std::string>{"conv.bias", "bn.weight"});
  OptimizerConfig c;
  c.weight_decay = 5e-4;
  for (auto& g : groups)
    for (auto& t : g.params) t.set_requires_grad(true);
  SGD sgd(groups, c);
  CHECK(sgd.weight_decay(0) == 5e-4);
  CHECK(sgd.weight_decay(1) == 0.0);
}

TEST_CASE("clip_grad_norm: matches torch.nn.utils.clip_grad_norm_") {
  const auto fx = testing::load_fixture("train/optim.json")["clip"];
  std::vector<Tensor> ps;
  for (const auto& g : fx["grads"]) {
    Tensor p = Tensor::zeros(g["shape"].get<Shape>()).set_requires_grad(true);
    p.set_grad(testing::tensor_from_json(g, DType::f32));
    ps.push_back(p);
  }
  const double norm = clip_grad_norm(ps, fx["max_norm"].get<double>());
  CHECK(norm == doctest::Approx(fx["norm"].get<double>()).epsilon(1e-6));
  for (size_t k = 0; k < ps.size(); ++k)
    check_close(ps[k].grad(), testing::tensor_from_json(fx["clipped"][k], DType::f32), 1e-6, "clipped grad");
  // below the threshold nothing changes
  const auto before = ps[0].grad().to_vector<float>();
  clip_grad_norm(ps, 1e6);
  CHECK(ps[0].grad().to_vector<float>() == before);
}

TEST_CASE("schedules: step, multistep, cosine and warmup match PyTorch's schedulers") {
  const auto fx = testing::load_fixture("train/optim.json")["schedules"];
  for (const auto& [spec, lrs] : fx.items()) {
    auto s = parse_schedule(spec, 1, static_cast<int64_t>(lrs.size()));
    for (size_t i = 0; i < lrs.size(); ++i) {
      INFO(spec, " step ", i);
      CHECK(s->factor(static_cast<int64_t>(i)) == doctest::Approx(lrs[i].get<double>()).epsilon(1e-9));
    }
  }
}

TEST_CASE("schedules: epochs convert to steps, parts compose by product, bad strings are InputError") {
  auto s = parse_schedule("step:2:0.5", 10, 6);
  CHECK(s->factor(19) == 1.0);
  CHECK(s->factor(20) == 0.5);
  CHECK(s->factor(45) == 0.25);
  auto w = parse_schedule("warmup:10+cosine", 10, 2);
  CHECK(w->factor(0) == 0.0);
  CHECK(w->factor(5) == doctest::Approx(0.5 * (1 + std::cos(M_PI * 5 / 20)) / 2));
  CHECK(w->factor(20) == doctest::Approx(0.0));
  CHECK(parse_schedule("constant", 3, 3)->factor(100) == 1.0);
  for (const char* bad : {"linear", "step", "step:x", "step:0", "cosine:1:2", "warmup:-3", "step:2:abc", "+"})
    CHECK_THROWS_AS(parse_schedule(bad, 10, 5), InputError);
  // nonsense that used to be accepted silently (issue 12): negative or huge factors, empty or unordered
  // milestones, repeated parts, overflowing integers, an empty string
  for (const char* bad : {"step:1:-1", "step:1:1e308", "step:1:0", "multistep:", "multistep:5,3", "multistep:3,3:0.1",
                          "warmup:5+warmup:3+cosine", "step:99999999999999999999", "cosine:-0.5", "warmup:3:2", ""})
    CHECK_THROWS_AS(parse_schedule(bad, 10, 5), InputError);
}
