// Layers: gradcheck through each module's forward (f64), PyTorch names/shapes/reprs, init distributions,
// BatchNorm running statistics, Dropout determinism, error messages.
#include "engine/autograd.hpp"
#include "nn/init.hpp"
#include "nn/layers.hpp"
#include "tests/support/gradcheck.hpp"

#include <doctest/doctest.h>

#include <cmath>

using namespace qforge;
using namespace qforge::nn;
using qforge::testing::gradcheck;
using qforge::testing::rand_input;

namespace {

// Gradcheck of module m (converted to f64) w.r.t. its input and every own parameter. `before` runs
// before each evaluation (e.g. to reseed a dropout generator).
std::string module_gradcheck(Module& m, const Shape& x_shape, uint64_t seed, std::function<void()> before = {},
                             testing::GradcheckOptions opt = {}) {
  m.to(DType::f64);
  std::vector<std::string> names;
  std::vector<Tensor> inputs{rand_input(x_shape, seed)};
  for (auto& [n, p] : m.own_parameters()) {
    names.push_back(n);
    inputs.push_back(p.detach().clone().set_requires_grad(true));
  }
  return gradcheck(
      [&](const std::vector<Tensor>& in) {
        for (size_t i = 0; i < names.size(); ++i) m.set_param(names[i], in[i + 1]);
        if (before) before();
        return m(in[0]);
      },
      inputs, opt);
}

std::vector<std::string> keys(const Module& m) {
  std::vector<std::string> out;
  for (auto& [n, t] : m.state_dict()) out.push_back(n);
  return out;
}

}  // namespace

TEST_CASE("linear: backward matches finite differences, with and without bias") {
  Generator g(1);
  Linear a(5, 3, true, g);
  CHECK(module_gradcheck(a, {4, 5}, 11).empty());
  Linear b(5, 3, false, g);
  CHECK(module_gradcheck(b, {2, 3, 5}, 12).empty());
  CHECK(keys(a) == std::vector<std::string>{"weight", "bias"});
  CHECK(keys(b) == std::vector<std::string>{"weight"});
  CHECK(a.raw_param("weight").shape() == Shape{3, 5});
}

TEST_CASE("conv2d: backward matches finite differences for stride, padding, dilation, groups, no bias") {
  Generator g(2);
  struct Case {
    Conv2dOptions o;
    Shape x;
  };
  std::vector<Case> cases;
  Conv2dOptions o;
  o.in_channels = 2, o.out_channels = 3, o.kernel_size = {3, 3}, o.padding = {1, 1};
  cases.push_back({o, {2, 2, 5, 5}});
  o.stride = {2, 1}, o.dilation = {1, 2}, o.bias = false;
  cases.push_back({o, {1, 2, 6, 7}});
  o = {};
  o.in_channels = 4, o.out_channels = 4, o.kernel_size = {3, 3}, o.stride = {2, 2}, o.padding = {1, 1}, o.groups = 4;
  cases.push_back({o, {2, 4, 5, 5}});
  o = {};
  o.in_channels = 4, o.out_channels = 6, o.kernel_size = {1, 2}, o.groups = 2;
  cases.push_back({o, {1, 4, 3, 4}});
  for (auto& c : cases) {
    Conv2d conv(c.o, g);
    CAPTURE(conv.to_string());
    CHECK(module_gradcheck(conv, c.x, 21).empty());
  }
}

TEST_CASE("conv2d: parameter shapes, PyTorch repr and input errors") {
  Generator g(3);
  Conv2dOptions o;
  o.in_channels = 16, o.out_channels = 16, o.kernel_size = {3, 3}, o.stride = {2, 2}, o.padding = {1, 1}, o.groups = 16;
  Conv2d dw(o, g);
  CHECK(dw.raw_param("weight").shape() == Shape{16, 1, 3, 3});
  CHECK(dw.to_string() == "Conv2d(16, 16, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=16)");
  o = {};
  o.in_channels = 1, o.out_channels = 16, o.padding = {1, 1}, o.bias = false;
  Conv2d c(o, g);
  CHECK(c.to_string() == "Conv2d(1, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)");
  CHECK_THROWS_WITH_AS(c(Tensor::zeros({1, 2, 4, 4})), doctest::Contains("[1, 2, 4, 4]"), Error);
  o.groups = 3;
  CHECK_THROWS_WITH_AS(Conv2d(o, g), doctest::Contains("groups=3"), Error);
}

TEST_CASE("init: default weights and biases are U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded") {
  Generator g1(42), g2(42);
  Conv2dOptions o;
  o.in_channels = 8, o.out_channels = 64, o.kernel_size = {3, 3};
  Conv2d a(o, g1), b(o, g2);
  const double bound = 1.0 / std::sqrt(8.0 * 9.0);
  auto w = a.raw_param("weight").to_vector<float>();
  double mx = 0, sum = 0, sq = 0;
  for (float v : w) {
    mx = std::max(mx, std::abs(double(v)));
    sum += v;
    sq += double(v) * v;
  }
  const double n = double(w.size());
  CHECK(mx <= bound);
  CHECK(mx > 0.95 * bound);
  CHECK(std::abs(sum / n) < 0.05 * bound);
  CHECK(std::sqrt(sq / n) == doctest::Approx(bound / std::sqrt(3.0)).epsilon(0.05));  // std of U(-b,b)
  CHECK(a.raw_param("weight").to_vector<float>() == b.raw_param("weight").to_vector<float>());
  auto bias = a.raw_param("bias").to_vector<float>();
  for (float v : bias) CHECK(std::abs(v) <= bound);

  Generator g3(7);
  Embedding e(100, 50, g3);
  auto ev = e.raw_param("weight").to_vector<float>();
  double es = 0, esq = 0;
  for (float v : ev) es += v, esq += double(v) * v;
  CHECK(std::abs(es / ev.size()) < 0.05);
  CHECK(std::sqrt(esq / ev.size()) == doctest::Approx(1.0).epsilon(0.05));
  CHECK(init::fan_in_out({64, 8, 3, 3}) == std::pair<int64_t, int64_t>{72, 576});
}

TEST_CASE("batchnorm: backward matches finite differences in training and eval mode") {
  BatchNorm2d bn(3);
  CHECK(module_gradcheck(bn, {4, 3, 2, 3}, 31).empty());
  BatchNorm1d bn1(5);
  CHECK(module_gradcheck(bn1, {6, 5}, 32).empty());
  BatchNorm1d bn3(2);
  CHECK(module_gradcheck(bn3, {3, 2, 4}, 33).empty());  // [N, C, L]
  bn.eval();
  CHECK(module_gradcheck(bn, {2, 3, 2, 2}, 34).empty());
}

TEST_CASE("batchnorm: running statistics, num_batches_tracked and cumulative momentum as PyTorch") {
  BatchNorm1d bn(2);
  CHECK(keys(bn) == std::vector<std::string>{"weight", "bias", "running_mean", "running_var", "num_batches_tracked"});
  CHECK(bn.to_string() == "BatchNorm1d(2, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  // x channel 0: 1,2,3,4 (mean 2.5, unbiased var 5/3); channel 1: 0,0,0,4 (mean 1, unbiased var 4)
  Tensor x = Tensor::from_vector<float>({1, 0, 2, 0, 3, 0, 4, 4}, {4, 2});
  bn(x);
  CHECK(bn.buffer("running_mean").at({0}) == doctest::Approx(0.25));
  CHECK(bn.buffer("running_var").at({0}) == doctest::Approx(0.9 + 0.1 * 5.0 / 3.0));
  CHECK(bn.buffer("running_var").at({1}) == doctest::Approx(0.9 + 0.4));
  CHECK(bn.buffer("num_batches_tracked").item() == 1);
  CHECK(bn.buffer("num_batches_tracked").dtype() == DType::i32);
  bn.eval();
  Tensor y = bn(x);
  CHECK(bn.buffer("num_batches_tracked").item() == 1);
  CHECK(y.at({0, 0}) == doctest::Approx((1 - 0.25) / std::sqrt(0.9 + 0.5 / 3.0 + 1e-5)).epsilon(1e-4));

  BatchNorm1d cum(2, 1e-5, std::nullopt);  // momentum=None: running stats = plain average of batches
  cum(x);
  cum(ops::mul(x, 3.0));
  CHECK(cum.buffer("running_mean").at({0}) == doctest::Approx((2.5 + 7.5) / 2));
  CHECK(cum.buffer("num_batches_tracked").item() == 2);
  CHECK(cum.to_string().find("momentum=None") != std::string::npos);

  BatchNorm2d nobias(4, 1e-3, 0.2, /*affine=*/false);
  CHECK(nobias.named_parameters().empty());
  CHECK(module_gradcheck(nobias, {2, 4, 2, 2}, 35).empty());
  CHECK_THROWS_WITH_AS(nobias(Tensor::zeros({2, 3, 2, 2})), doctest::Contains("BatchNorm2d(4)"), Error);
}

TEST_CASE("activations: backward matches finite differences") {
  std::vector<ModulePtr> acts{std::make_shared<ReLU>(), std::make_shared<ReLU6>(), std::make_shared<LeakyReLU>(0.2),
                              std::make_shared<Hardswish>(), std::make_shared<Sigmoid>(), std::make_shared<Tanh>(),
                              std::make_shared<Identity>()};
  for (auto& a : acts) {
    CAPTURE(a->type_name());
    // inputs in [-8, 8] cover ReLU6's and Hardswish's flat regions; kinks are measure-zero
    testing::GradcheckOptions o;
    Tensor x = rand_input({3, 7}, 41, -8, 8);
    CHECK(gradcheck([&](const std::vector<Tensor>& in) { return (*a)(in[0]); }, {x}, o).empty());
  }
  CHECK(LeakyReLU(0.1).to_string() == "LeakyReLU(negative_slope=0.1)");
  CHECK(ReLU6().to_string() == "ReLU6()");
  Tensor x = Tensor::from_vector<float>({-7, -1, 0.5, 7}, {4});
  CHECK(ReLU6()(x).to_vector<float>() == std::vector<float>{0, 0, 0.5, 6});
}

TEST_CASE("pooling and flatten: backward matches finite differences; PyTorch reprs") {
  MaxPool2d mp({2, 2});
  CHECK(module_gradcheck(mp, {2, 3, 4, 6}, 51).empty());
  MaxPool2d mp3({3, 3}, Pair{2, 2}, {1, 1});
  CHECK(module_gradcheck(mp3, {1, 2, 5, 5}, 52).empty());
  AvgPool2d ap({2, 2});
  CHECK(module_gradcheck(ap, {2, 2, 4, 4}, 53).empty());
  AvgPool2d ap3({3, 3}, Pair{1, 1}, {1, 1}, false);
  CHECK(module_gradcheck(ap3, {1, 2, 4, 4}, 54).empty());
  AdaptiveAvgPool2d gap;
  CHECK(module_gradcheck(gap, {2, 3, 3, 5}, 55).empty());
  CHECK(gap(Tensor::ones({2, 3, 3, 5})).shape() == Shape{2, 3, 1, 1});
  Flatten fl;
  CHECK(module_gradcheck(fl, {2, 3, 2, 2}, 56).empty());
  CHECK(fl(Tensor::ones({2, 3, 2, 2})).shape() == Shape{2, 12});
  CHECK(mp.to_string() == "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  CHECK(ap.to_string() == "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  CHECK(gap.to_string() == "AdaptiveAvgPool2d(output_size=1)");
  CHECK(fl.to_string() == "Flatten(start_dim=1, end_dim=-1)");
  CHECK_THROWS_WITH_AS(mp(Tensor::ones({2, 3})), doctest::Contains("MaxPool2d"), Error);
}

TEST_CASE("sequence reshapes: image rows as time steps, last step selection; gradients flow") {
  ImageAsSequence rows;
  Tensor img = Tensor::arange(0, 2 * 1 * 3 * 4).reshape({2, 1, 3, 4});
  Tensor seq = rows(img);
  CHECK(seq.shape() == Shape{2, 3, 4});
  CHECK(seq.at({1, 2, 3}) == img.at({1, 0, 2, 3}));
  Tensor img2 = Tensor::arange(0, 2 * 2 * 3 * 4).reshape({2, 2, 3, 4});
  Tensor seq2 = rows(img2);
  CHECK(seq2.shape() == Shape{2, 3, 8});
  CHECK(seq2.at({1, 2, 5}) == img2.at({1, 1, 2, 1}));
  LastTimeStep last;
  CHECK(last(seq).shape() == Shape{2, 4});
  CHECK(last(seq).at({1, 3}) == seq.at({1, 2, 3}));
  CHECK(module_gradcheck(rows, {2, 2, 3, 2}, 61).empty());
  CHECK(module_gradcheck(last, {2, 3, 4}, 62).empty());
  LastTimeStep tf(false);
  CHECK(tf(seq).shape() == Shape{3, 4});
}

TEST_CASE("dropout: seeded, scaled by 1/(1-p) in training, identity in eval; backward matches") {
  Dropout d(0.5, 9);
  Tensor x = Tensor::ones({1000});
  Tensor y = d(x);
  auto v = y.to_vector<float>();
  int zeros = 0;
  for (float e : v) {
    CHECK((e == 0.0f || e == 2.0f));
    zeros += e == 0.0f;
  }
  CHECK(zeros > 400);
  CHECK(zeros < 600);
  Dropout d2(0.5, 9);
  CHECK(d2(x).to_vector<float>() == v);
  d.eval();
  CHECK(d(x).to_vector<float>() == x.to_vector<float>());
  d.train();
  CHECK(module_gradcheck(d, {3, 5}, 71, [&] { d.generator().reseed(5); }).empty());
  CHECK(d.to_string() == "Dropout(p=0.5, inplace=False)");
}

TEST_CASE("embedding: lookup and weight gradient match finite differences") {
  Generator g(8);
  Embedding e(6, 3, g);
  CHECK(e.to_string() == "Embedding(6, 3)");
  Tensor idx = Tensor::from_vector<int32_t>({0, 5, 2, 2}, {2, 2});
  Tensor y = e(idx);
  CHECK(y.shape() == Shape{2, 2, 3});
  CHECK(y.at({0, 1, 2}) == e.raw_param("weight").at({5, 2}));
  e.to(DType::f64);
  Tensor w = e.raw_param("weight").detach().clone().set_requires_grad(true);
  CHECK(gradcheck(
            [&](const std::vector<Tensor>& in) {
              e.set_param("weight", in[0]);
              return e(idx);
            },
            {w})
            .empty());
}

TEST_CASE("sequential and add: chain children, names 0,1,..., residual sum with gradients") {
  Generator g(9);
  auto seq = std::make_shared<Sequential>(std::vector<ModulePtr>{std::make_shared<Linear>(4, 3, true, g),
                                                                 std::make_shared<ReLU>(),
                                                                 std::make_shared<Linear>(3, 2, true, g)});
  CHECK(keys(*seq) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
  CHECK(seq->to_string() ==
        "Sequential(\n  (0): Linear(in_features=4, out_features=3, bias=True)\n  (1): ReLU()\n"
        "  (2): Linear(in_features=3, out_features=2, bias=True)\n)");
  CHECK((*seq)(Tensor::ones({5, 4})).shape() == Shape{5, 2});
  CHECK(seq->num_parameters() == 4 * 3 + 3 + 3 * 2 + 2);
  seq->to(DType::f64);
  Tensor x = rand_input({2, 4}, 81);
  CHECK(gradcheck([&](const std::vector<Tensor>& in) { return (*seq)(in[0]); }, {x}).empty());

  Add add;
  Tensor a = rand_input({2, 3}, 82), b = rand_input({3}, 83);
  CHECK(gradcheck([&](const std::vector<Tensor>& in) { return add({in[0], in[1]})[0]; }, {a, b}).empty());
  CHECK_THROWS_WITH_AS(add({a}), doctest::Contains("Add: expects 2 inputs"), Error);
}
