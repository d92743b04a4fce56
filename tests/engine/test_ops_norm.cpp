#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>

using namespace qforge;
using testing::rand_input;

TEST_CASE("batch_norm training: normalises per channel and updates running stats with unbiased var") {
  // [N=4, C=2]: channel 0 = {1, 2, 3, 4}, channel 1 = {10, 10, 10, 10}
  Tensor x = Tensor::from_vector<double>({1, 10, 2, 10, 3, 10, 4, 10}, {4, 2});
  Tensor rm = Tensor::zeros({2}, DType::f64), rv = Tensor::ones({2}, DType::f64);
  Tensor y = ops::batch_norm(x, rm, rv, Tensor(), Tensor(), true, 0.1, 1e-5);
  const double inv = 1 / std::sqrt(1.25 + 1e-5);  // biased var of {1,2,3,4} = 1.25
  CHECK(y.at({0, 0}) == doctest::Approx(-1.5 * inv).epsilon(1e-12));
  CHECK(y.at({3, 0}) == doctest::Approx(1.5 * inv).epsilon(1e-12));
  CHECK(y.at({2, 1}) == 0);
  CHECK(rm.at({0}) == doctest::Approx(0.25).epsilon(1e-14));           // 0.9*0 + 0.1*2.5
  CHECK(rm.at({1}) == doctest::Approx(1.0).epsilon(1e-14));            // 0.1*10
  CHECK(rv.at({0}) == doctest::Approx(0.9 + 0.1 * 5.0 / 3).epsilon(1e-14));  // unbiased var 5/3
  CHECK(rv.at({1}) == doctest::Approx(0.9).epsilon(1e-14));
}

TEST_CASE("batch_norm eval: uses the running stats, leaves them unchanged, f32 running stats accepted") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor rm = Tensor::from_vector<float>({1, -1}, {2}), rv = Tensor::from_vector<float>({4, 0.25f}, {2});
  Tensor w = Tensor::from_vector<float>({2, 1}, {2}), b = Tensor::from_vector<float>({0.5f, 0}, {2});
  Tensor y = ops::batch_norm(x, rm, rv, w, b, false, 0.1, 0.0);
  CHECK(y.to_vector<float>() == std::vector<float>{0.5f, 6, 2.5f, 10});
  CHECK(rm.to_vector<float>() == std::vector<float>{1, -1});
  CHECK(rv.to_vector<float>() == std::vector<float>{4, 0.25f});
}

TEST_CASE("batch_norm: backward matches finite differences, training and eval, [N,C] and [N,C,H,W]") {
  auto x2 = rand_input({5, 3}, 41, -2, 2);
  auto x4 = rand_input({2, 3, 3, 4}, 42, -1, 3);
  auto w = rand_input({3}, 43, 0.5, 1.5);
  auto b = rand_input({3}, 44);
  for (bool training : {true, false}) {
    auto f = [training](const std::vector<Tensor>& in) {
      Tensor rm = Tensor::full({3}, 0.2, DType::f64), rv = Tensor::full({3}, 1.5, DType::f64);
      return ops::batch_norm(in[0], rm, rv, in[1], in[2], training, 0.1, 1e-5);
    };
    CHECK_GRADCHECK(f, {x2, w, b});
    CHECK_GRADCHECK(f, {x4, w, b});
  }
  // no affine parameters, no running stats (track_running_stats=False), strided input
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
    return ops::batch_norm(in[0].transpose(2, 3), Tensor(), Tensor(), Tensor(), Tensor(), true, 0.1, 1e-5);
  }, {x4});
}

TEST_CASE("batch_norm: f32 matches f64 on a larger (parallel) input") {
  Tensor x = rand_input({8, 16, 16, 16}, 45, -2, 5, false);
  Tensor rm64 = Tensor::zeros({16}, DType::f64), rv64 = Tensor::ones({16}, DType::f64);
  Tensor rm32 = Tensor::zeros({16}), rv32 = Tensor::ones({16});
  Tensor y64 = ops::batch_norm(x, rm64, rv64, Tensor(), Tensor(), true);
  Tensor y32 = ops::batch_norm(x.to(DType::f32), rm32, rv32, Tensor(), Tensor(), true);
  CHECK(testing::max_abs_diff(y64, y32.to(DType::f64)) < 1e-5);
  CHECK(testing::max_abs_diff(rv64, rv32.to(DType::f64)) < 1e-5);
}

TEST_CASE("batch_norm: errors name the op and the shapes") {
  Tensor x = Tensor::zeros({4, 3});
  CHECK_THROWS_WITH_AS(ops::batch_norm(x, Tensor::zeros({2}), Tensor::ones({3}), Tensor(), Tensor(), true),
                       doctest::Contains("batch_norm: running_mean must be a floating [3] for input [4, 3], got f32 [2]"), Error);
  CHECK_THROWS_WITH_AS(ops::batch_norm(Tensor::zeros({1, 3}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                       doctest::Contains("expected more than 1 value per channel when training, got input [1, 3]"), Error);
  CHECK_THROWS_WITH_AS(ops::batch_norm(x, Tensor(), Tensor(), Tensor(), Tensor(), false),
                       doctest::Contains("eval mode needs running_mean and running_var"), Error);
  CHECK_THROWS_WITH_AS(ops::batch_norm(Tensor::zeros({4}), Tensor(), Tensor(), Tensor(), Tensor(), true),
                       doctest::Contains("batch_norm: input must be [N, C] or [N, C, H, W], got [4]"), Error);
  CHECK_THROWS_WITH_AS(ops::batch_norm(x, Tensor(), Tensor(), Tensor::ones({3}, DType::f64), Tensor(), true),
                       doctest::Contains("batch_norm: dtype mismatch"), Error);
}

TEST_CASE("batch_norm: the fused op matches its composition from primitives in forward and backward") {
  Tensor x0 = rand_input({3, 4, 2, 5}, 46, -2, 3, false);
  Tensor w0 = rand_input({4}, 47, 0.5, 1.5, false), b0 = rand_input({4}, 48, -1, 1, false);
  Tensor go = rand_input({3, 4, 2, 5}, 49, -1, 1, false);
  auto run = [&](bool fused) {
    Tensor x = x0.clone().set_requires_grad(), w = w0.clone().set_requires_grad(), b = b0.clone().set_requires_grad();
    Tensor y;
    if (fused) {
      y = ops::batch_norm(x, Tensor(), Tensor(), w, b, true, 0.1, 1e-5);
    } else {
      Tensor mu = ops::mean(x, {0, 2, 3}, true);
      Tensor d = ops::sub(x, mu);
      Tensor var = ops::mean(ops::mul(d, d), {0, 2, 3}, true);
      Tensor xhat = ops::div(d, ops::sqrt(ops::add(var, 1e-5)));
      y = ops::add(ops::mul(xhat, w.reshape({1, 4, 1, 1})), b.reshape({1, 4, 1, 1}));
    }
    ops::sum(ops::mul(y, go)).backward();
    return std::vector<Tensor>{y.detach(), x.grad(), w.grad(), b.grad()};
  };
  auto f = run(true), c = run(false);
  for (size_t i = 0; i < f.size(); ++i) CHECK(testing::max_abs_diff(f[i], c[i]) < 1e-12);
}
