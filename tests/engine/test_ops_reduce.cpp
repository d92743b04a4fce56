#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>
#include <limits>

using namespace qforge;
using testing::rand_input;

TEST_CASE("sum/mean: backward matches finite differences over dims with and without keepdim") {
  auto x = rand_input({2, 3, 4}, 11);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sum(in[0]); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sum(in[0], {0, 2}); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mean(in[0], {-1}, true); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mean(in[0].transpose(0, 2), {1}); }, {x});
}

TEST_CASE("max/min over a dim: values, keepdim shapes and first-index argmax") {
  Tensor x = Tensor::from_vector<float>({1, 5, 3, 7, 2, 7, 0, -1, 4, 4, 9, -3}, {2, 2, 3});
  Tensor m = ops::max(x, 2);
  CHECK(m.shape() == Shape{2, 2});
  CHECK(m.to_vector<float>() == std::vector<float>{5, 7, 4, 9});
  CHECK(ops::max(x, 2, true).shape() == Shape{2, 2, 1});
  CHECK(ops::min(x, 0).to_vector<float>() == std::vector<float>{0, -1, 3, 4, 2, -3});
  CHECK(ops::min(x, -2, true).shape() == Shape{2, 1, 3});
  Tensor am = ops::argmax(x, 2);
  CHECK(am.dtype() == DType::i32);
  CHECK(am.to_vector<int32_t>() == std::vector<int32_t>{1, 0, 2, 1});  // row [7, 2, 7]: first maximum
  CHECK(ops::argmax(x, 1, true).shape() == Shape{2, 1, 3});
  CHECK(ops::argmax(x, 1).to_vector<int32_t>() == std::vector<int32_t>{1, 0, 1, 1, 1, 0});
}

TEST_CASE("max/min: backward matches finite differences (dim and all elements)") {
  auto x = rand_input({3, 4, 5}, 12);
  for (int64_t d : {0, 1, 2, -1}) {
    CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return ops::max(in[0], d); }, {x});
    CHECK_GRADCHECK([d](const std::vector<Tensor>& in) { return ops::min(in[0], d, true); }, {x});
  }
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::max(in[0]); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::min(in[0].transpose(0, 1)); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::max(in[0].narrow(2, 1, 3), 1); }, {x});
}

TEST_CASE("max over a dim: ties send the whole gradient to the first index") {
  Tensor x = Tensor::from_vector<double>({2, 5, 5, 1, 1, 1}, {2, 3}).set_requires_grad();
  ops::sum(ops::max(x, 1)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 0, 1, 0, 0});
  Tensor y = Tensor::from_vector<double>({3, 1, 3, 1}, {2, 2}).set_requires_grad();
  ops::sum(ops::min(y, 0)).backward();
  CHECK(y.grad().to_vector<double>() == std::vector<double>{1, 1, 0, 0});
}

TEST_CASE("max over all elements: ties split the gradient evenly (PyTorch 1.13)") {
  Tensor x = Tensor::from_vector<double>({1, 4, 4, 0, 4, 2}, {2, 3}).set_requires_grad();
  Tensor m = ops::max(x);
  CHECK(m.dim() == 0);
  CHECK(m.item() == 4);
  ops::mul(m, 3.0).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{0, 1, 1, 0, 1, 0});
  Tensor y = Tensor::from_vector<float>({-2, 3, -2}, {3}).set_requires_grad();
  ops::min(y).backward();
  CHECK(y.grad().to_vector<float>() == std::vector<float>{0.5f, 0, 0.5f});
}

TEST_CASE("max/argmax: NaN propagates as the extreme value") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  Tensor x = Tensor::from_vector<double>({1, nan, 3, 2}, {1, 4});
  CHECK(std::isnan(ops::max(x, 1).item()));
  CHECK(std::isnan(ops::min(x).item()));
  CHECK(ops::argmax(x, 1).to_vector<int32_t>() == std::vector<int32_t>{1});
}

TEST_CASE("max/min: f32 and f64 give the same result on strided input") {
  Tensor x = rand_input({4, 6}, 13, -1, 1, false);
  Tensor xt = x.transpose(0, 1);
  CHECK(testing::max_abs_diff(ops::max(xt, 1).to(DType::f64), ops::max(xt.to(DType::f32), 1).to(DType::f64)) < 1e-6);
  CHECK(ops::argmax(xt, 0).to_vector<int32_t>() == ops::argmax(xt.to(DType::f32), 0).to_vector<int32_t>());
}

TEST_CASE("max/min/argmax: errors name the op and the shape") {
  Tensor x = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(ops::max(x, 2), doctest::Contains("max: dimension 2 out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::argmax(x, -3), doctest::Contains("argmax: dimension -3 out of range"), Error);
  CHECK_THROWS_WITH_AS(ops::min(Tensor::zeros({2, 0}), 1), doctest::Contains("min: cannot reduce over dimension 1 of size 0 in shape [2, 0]"), Error);
  CHECK_THROWS_WITH_AS(ops::max(Tensor::zeros({0})), doctest::Contains("max: cannot reduce an empty tensor"), Error);
  CHECK_THROWS_WITH_AS(ops::max(Tensor::zeros({2}, DType::i32), 0), doctest::Contains("max: expected a floating tensor"), Error);
}
