#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "engine/ops/softmax_kernels.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>

using namespace qforge;
using testing::rand_input;

namespace {
Tensor targets(std::vector<int32_t> v, const Shape& shape) { return Tensor::from_vector(v, shape); }
}  // namespace

TEST_CASE("softmax/log_softmax: rows sum to one, stable for huge logits, in f32 and f64") {
  Tensor x = Tensor::from_vector<float>({1000, 999, -1000, 0, 0, 0}, {2, 3});
  Tensor s = ops::softmax(x, 1);
  auto v = s.to_vector<float>();
  for (float e : v) CHECK(std::isfinite(e));
  CHECK(v[0] + v[1] + v[2] == doctest::Approx(1.0));
  CHECK(v[3] == doctest::Approx(1.0 / 3));
  Tensor ls = ops::log_softmax(x.to(DType::f64), 1);
  CHECK(ls.at({0, 0}) == doctest::Approx(-std::log1p(std::exp(-1.0))).epsilon(1e-12));
  CHECK(ls.at({0, 2}) == doctest::Approx(-2000 - std::log1p(std::exp(-1.0))).epsilon(1e-12));
  // f32 agrees with f64 over a middle dim
  Tensor y = rand_input({2, 5, 3}, 31, -4, 4, false);
  CHECK(testing::max_abs_diff(ops::softmax(y, 1), ops::softmax(y.to(DType::f32), 1).to(DType::f64)) < 1e-6);
}

TEST_CASE("softmax/log_softmax: backward matches finite differences over every dim") {
  auto x = rand_input({2, 3, 4}, 32, -2, 2);
  for (int64_t d : {0, 1, 2, -1}) {
    CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return ops::softmax(in[0], d); }, {x});
    CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return ops::log_softmax(in[0], d); }, {x});
  }
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::softmax(in[0].transpose(0, 2), 1); }, {x});
}

TEST_CASE("cross_entropy: equals log_softmax + nll_loss and its backward matches finite differences") {
  auto x = rand_input({5, 4}, 33, -2, 2);
  Tensor t = targets({0, 3, 1, 1, 2}, {5});
  Tensor fused = ops::cross_entropy(x.detach(), t);
  Tensor composed = ops::nll_loss(ops::log_softmax(x.detach(), 1), t);
  CHECK(fused.item() == doctest::Approx(composed.item()).epsilon(1e-14));
  CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], t); }, {x});
  CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return ops::nll_loss(ops::log_softmax(in[0], 1), t); }, {x});
}

TEST_CASE("cross_entropy: ignore_index and label smoothing, [N,C] and [N,C,d...], gradcheck") {
  auto x = rand_input({6, 5}, 34, -2, 2);
  Tensor t = targets({4, -100, 0, 2, -100, 1}, {6});
  CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], t); }, {x});
  CHECK_GRADCHECK([t](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], t, -100, 0.2); }, {x});
  auto s = rand_input({2, 3, 2, 3}, 35, -2, 2);
  Tensor ts = targets({0, 1, 2, 2, 1, 0, 7, 0, 1, 2, 7, 1}, {2, 2, 3});
  CHECK_GRADCHECK([ts](const std::vector<Tensor>& in) { return ops::cross_entropy(in[0], ts, 7, 0.3); }, {s});
  CHECK_GRADCHECK([ts](const std::vector<Tensor>& in) { return ops::nll_loss(in[0], ts, 7); }, {s});
}

TEST_CASE("cross_entropy: mean over non-ignored targets; ignored rows get zero gradient") {
  Tensor x = Tensor::from_vector<double>({0, 0, 0, 5, -5, 3}, {2, 3}).set_requires_grad();
  Tensor t = targets({1, -100}, {2});
  Tensor l = ops::cross_entropy(x, t);
  CHECK(l.item() == doctest::Approx(std::log(3.0)).epsilon(1e-14));  // only row 0 counts, divided by 1
  l.backward();
  auto g = x.grad().to_vector<double>();
  CHECK(g[0] == doctest::Approx(1.0 / 3));
  CHECK(g[1] == doctest::Approx(1.0 / 3 - 1));
  CHECK(g[3] == 0);
  CHECK(g[4] == 0);
  CHECK(g[5] == 0);
  // label smoothing 1.0 on uniform logits: loss is log(C)
  CHECK(ops::cross_entropy(Tensor::zeros({1, 4}), targets({2}, {1}), -100, 1.0).item() ==
        doctest::Approx(std::log(4.0)));
  // every target ignored: 0/0 like PyTorch
  CHECK(std::isnan(ops::cross_entropy(Tensor::zeros({2, 3}), targets({-100, -100}, {2})).item()));
}

TEST_CASE("cross_entropy: f32 matches f64") {
  Tensor x = rand_input({8, 10}, 36, -3, 3, false);
  Tensor t = targets({0, 1, 2, 3, 4, 5, 6, -100}, {8});
  const double a = ops::cross_entropy(x, t, -100, 0.1).item();
  const double b = ops::cross_entropy(x.to(DType::f32), t, -100, 0.1).item();
  CHECK(a == doctest::Approx(b).epsilon(1e-6));
}

TEST_CASE("mse_loss: value and backward for both arguments") {
  Tensor a = Tensor::from_vector<double>({1, 2, 3}, {3});
  Tensor b = Tensor::from_vector<double>({1, 0, 6}, {3});
  CHECK(ops::mse_loss(a, b).item() == doctest::Approx(13.0 / 3));
  auto x = rand_input({3, 4}, 37);
  auto y = rand_input({3, 4}, 38);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mse_loss(in[0], in[1]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mse_loss(in[0].transpose(0, 1), in[1].transpose(0, 1)); }, {x, y});
}

TEST_CASE("losses: errors name the op, the shapes and the bad target") {
  Tensor x = Tensor::zeros({3, 4});
  CHECK_THROWS_WITH_AS(ops::cross_entropy(x, targets({0, 4, 1}, {3})),
                       doctest::Contains("cross_entropy: target 4 out of range for 4 classes"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(x, targets({0, 1}, {2})),
                       doctest::Contains("cross_entropy: input [3, 4] needs target of shape [3], got [2]"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(x, Tensor::zeros({3})), doctest::Contains("target must be i32"), Error);
  CHECK_THROWS_WITH_AS(ops::cross_entropy(x, targets({0, 0, 0}, {3}), -100, 1.5),
                       doctest::Contains("label_smoothing must be in [0, 1]"), Error);
  CHECK_THROWS_WITH_AS(ops::nll_loss(x, targets({0, -1, 1}, {3})),
                       doctest::Contains("nll_loss: target -1 out of range for 4 classes"), Error);
  CHECK_THROWS_WITH_AS(ops::mse_loss(x, Tensor::zeros({4, 3})), doctest::Contains("mse_loss: shapes [3, 4] and [4, 3] differ"), Error);
  CHECK_THROWS_WITH_AS(ops::softmax(x, 2), doctest::Contains("softmax: dimension 2 out of range"), Error);
}

TEST_CASE("cross_entropy: the fused op matches log_softmax + nll_loss + smoothing term in forward and backward") {
  Tensor x0 = rand_input({2, 5, 3}, 39, -3, 3, false);
  Tensor t = targets({0, 4, -100, 2, 2, 1}, {2, 3});
  const double ls = 0.15;
  auto run = [&](bool fused) {
    Tensor x = x0.clone().set_requires_grad();
    Tensor loss;
    if (fused) {
      loss = ops::cross_entropy(x, t, -100, ls);
    } else {
      Tensor lp = ops::log_softmax(x, 1);
      // smoothing term: mean over non-ignored positions of -sum_c lp / C (5 valid positions)
      Tensor valid = Tensor::from_vector<double>({1, 1, 0, 1, 1, 1}, {2, 1, 3});
      Tensor smooth = ops::mul(ops::sum(ops::mul(lp, valid)), -1.0 / (5.0 * 5.0));
      loss = ops::add(ops::mul(ops::nll_loss(lp, t), 1 - ls), ops::mul(smooth, ls));
    }
    loss.backward();
    return std::vector<Tensor>{loss.detach(), x.grad()};
  };
  auto f = run(true), c = run(false);
  CHECK(testing::max_abs_diff(f[0], c[0]) < 1e-13);
  CHECK(testing::max_abs_diff(f[1], c[1]) < 1e-13);
}

TEST_CASE("exp_shifted (vectorised exp used by f32 softmax) is within 3e-7 relative of std::exp, any length") {
  std::vector<float> x(1003), out(1003);
  for (size_t i = 0; i < x.size(); ++i) x[i] = -80.0f + 170.0f * static_cast<float>(i) / 1003.0f;
  ops::detail::exp_shifted<float>(x.data(), out.data(), static_cast<int64_t>(x.size()), 2.5f);
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(static_cast<double>(x[i] - 2.5f));  // same f32 argument
    worst = std::max(worst, std::abs(out[i] - want) / want);
  }
  CHECK(worst < 3e-7);
  float tail[3] = {0, -200, 1};
  ops::detail::exp_shifted<float>(tail, tail, 3, 0.0f);
  CHECK(tail[0] == 1.0f);
  CHECK(tail[1] == 0.0f);
  CHECK(tail[2] == doctest::Approx(std::exp(1.0)));
}
