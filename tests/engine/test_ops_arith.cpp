#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

using namespace qforge;
using testing::rand_input;

TEST_CASE("add/sub/mul/div: broadcasting forward values") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = Tensor::from_vector<float>({10, 20, 30}, {3});
  CHECK(ops::add(a, b).to_vector<float>() == std::vector<float>{11, 22, 33, 14, 25, 36});
  CHECK(ops::sub(a, b).to_vector<float>() == std::vector<float>{-9, -18, -27, -6, -15, -24});
  Tensor c = Tensor::from_vector<float>({2, 4}, {2, 1});
  CHECK(ops::mul(a, c).to_vector<float>() == std::vector<float>{2, 4, 6, 16, 20, 24});
  CHECK(ops::div(a, c).to_vector<float>() == std::vector<float>{0.5f, 1, 1.5f, 1, 1.25f, 1.5f});
  CHECK(ops::add(a.transpose(0, 1), Tensor::scalar(1)).to_vector<float>() ==
        std::vector<float>{2, 5, 3, 6, 4, 7});
}

TEST_CASE("add/sub/mul/div: backward matches finite differences with broadcasting") {
  auto x = rand_input({2, 3, 4}, 1);
  auto y = rand_input({3, 1}, 2, 0.5, 2.0);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::add(in[0], in[1]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::sub(in[1], in[0]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::mul(in[0], in[1]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::div(in[0], in[1]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::div(in[1], ops::add(in[0].narrow(0, 0, 1), 3.0)); }, {x, y});
}

TEST_CASE("maximum/minimum/pow/where: backward matches finite differences") {
  auto x = rand_input({3, 4}, 3);
  auto y = rand_input({4}, 4);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::maximum(in[0], in[1]); }, {x, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::minimum(in[0], in[1]); }, {x, y});
  auto p = rand_input({3, 4}, 5, 0.5, 2);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::pow(in[0], in[1]); }, {p, y});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::pow(in[0], 3.0); }, {x});
  Tensor cond = ops::gt(x.detach(), Tensor::zeros({}, DType::f64));
  CHECK_GRADCHECK([cond](const std::vector<Tensor>& in) { return ops::where(cond, in[0], in[1]); }, {x, y});
}

TEST_CASE("maximum: ties split the gradient evenly") {
  Tensor a = Tensor::from_vector<float>({1, 2}, {2}).set_requires_grad();
  Tensor b = Tensor::from_vector<float>({1, 3}, {2}).set_requires_grad();
  ops::sum(ops::maximum(a, b)).backward();
  CHECK(a.grad().to_vector<float>() == std::vector<float>{0.5f, 0});
  CHECK(b.grad().to_vector<float>() == std::vector<float>{0.5f, 1});
}

TEST_CASE("binary ops: dtype mismatch names the op and both shapes") {
  Tensor a = Tensor::zeros({2}, DType::f32), b = Tensor::zeros({2}, DType::f64);
  CHECK_THROWS_WITH_AS(ops::mul(a, b), doctest::Contains("mul: dtype mismatch f32 [2] vs f64 [2]"), Error);
}
