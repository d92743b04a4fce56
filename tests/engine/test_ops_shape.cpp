#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

using namespace qforge;
using testing::rand_input;

TEST_CASE("concat: joins along any dim, including strided inputs") {
  Tensor a = Tensor::from_vector<float>({1, 2, 3, 4}, {2, 2});
  Tensor b = Tensor::from_vector<float>({5, 6}, {2, 1});
  Tensor c = ops::concat({a, b}, 1);
  CHECK(c.shape() == Shape{2, 3});
  CHECK(c.to_vector<float>() == std::vector<float>{1, 2, 5, 3, 4, 6});
  Tensor d = ops::concat({a.transpose(0, 1), Tensor::from_vector<float>({9, 9}, {1, 2})}, 0);
  CHECK(d.to_vector<float>() == std::vector<float>{1, 3, 2, 4, 9, 9});
  Tensor e = ops::concat({a, Tensor::zeros({0, 2})}, 0);
  CHECK(e.to_vector<float>() == a.to_vector<float>());
}

TEST_CASE("concat/stack: backward matches finite differences") {
  auto x = rand_input({2, 3, 4}, 21);
  auto y = rand_input({2, 1, 4}, 22);
  auto z = rand_input({2, 3, 4}, 23);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::concat({in[0], in[1], in[2]}, 1); }, {x, y, z});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::concat({in[0], in[1].transpose(1, 2).transpose(1, 2)}, -1); }, {x, z});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::stack({in[0], in[1]}, 0); }, {x, z});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::stack({in[0], in[1]}, 3); }, {x, z});
  // only some inputs require grad
  Tensor c = rand_input({2, 3, 4}, 24, -1, 1, false);
  CHECK_GRADCHECK([c](const std::vector<Tensor>& in) { return ops::concat({c, in[0]}, 0); }, {x});
}

TEST_CASE("stack: adds a new dimension") {
  Tensor a = Tensor::from_vector<float>({1, 2}, {2});
  Tensor b = Tensor::from_vector<float>({3, 4}, {2});
  Tensor s = ops::stack({a, b}, 1);
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_vector<float>() == std::vector<float>{1, 3, 2, 4});
  CHECK(ops::stack({a, b}, -1).shape() == Shape{2, 2});
}

TEST_CASE("split/chunk: sizes follow PyTorch and backward matches finite differences") {
  Tensor x = Tensor::arange(0, 10).reshape({5, 2});
  auto parts = ops::split(x, 2, 0);
  REQUIRE(parts.size() == 3);
  CHECK(parts[2].shape() == Shape{1, 2});
  CHECK(parts[1].to_vector<float>() == std::vector<float>{4, 5, 6, 7});
  auto ch = ops::chunk(Tensor::zeros({6, 1}), 4, 0);  // ceil(6/4) = 2 -> 3 chunks, like torch.chunk
  CHECK(ch.size() == 3);
  CHECK(ops::chunk(Tensor::zeros({7}), 3, 0).back().shape() == Shape{1});
  auto v = rand_input({3, 7}, 25);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
    auto p = ops::split(in[0], 3, 1);
    return ops::concat({ops::mul(p[0], 2.0), p[2], p[1]}, 1);
  }, {v});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::chunk(in[0], 2, 0)[1]; }, {v});
}

TEST_CASE("pad: PyTorch order (last dim first), fill value and negative pads crop") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor p = ops::pad(x, {1, 0}, -1);
  CHECK(p.shape() == Shape{2, 4});
  CHECK(p.to_vector<float>() == std::vector<float>{-1, 1, 2, 3, -1, 4, 5, 6});
  Tensor q = ops::pad(x, {0, 0, 1, 1});
  CHECK(q.shape() == Shape{4, 3});
  CHECK(q.to_vector<float>() == std::vector<float>{0, 0, 0, 1, 2, 3, 4, 5, 6, 0, 0, 0});
  Tensor r = ops::pad(x, {-1, 1});
  CHECK(r.to_vector<float>() == std::vector<float>{2, 3, 0, 5, 6, 0});
  CHECK(ops::pad(x, {-3, 0}).shape() == Shape{2, 0});
}

TEST_CASE("pad: backward matches finite differences") {
  auto x = rand_input({2, 3, 4, 5}, 26);
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::pad(in[0], {1, 2, 0, 1}, 0.5); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::pad(in[0], {-1, 2, 1, -2, 1, 0}); }, {x});
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) { return ops::pad(in[0].transpose(2, 3), {1, 1}); }, {x});
}

TEST_CASE("shape ops: errors name the op and the shapes") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({3, 3});
  CHECK_THROWS_WITH_AS(ops::concat({a, b}, 1), doctest::Contains("concat: shapes [2, 3] and [3, 3] differ outside dimension 1"), Error);
  CHECK_THROWS_WITH_AS(ops::concat({a, Tensor::zeros({2, 3}, DType::f64)}, 0), doctest::Contains("concat: dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(ops::concat({}, 0), doctest::Contains("concat: needs at least one tensor"), Error);
  CHECK_THROWS_WITH_AS(ops::stack({a, b}, 0), doctest::Contains("stack: shapes [2, 3] and [3, 3] differ"), Error);
  CHECK_THROWS_WITH_AS(ops::split(a, 0, 1), doctest::Contains("split: split_size must be positive"), Error);
  CHECK_THROWS_WITH_AS(ops::chunk(a, 0, 1), doctest::Contains("chunk: number of chunks must be positive"), Error);
  CHECK_THROWS_WITH_AS(ops::pad(a, {1}), doctest::Contains("pad: 1 pad values for a tensor of shape [2, 3]"), Error);
  CHECK_THROWS_WITH_AS(ops::pad(a, {-2, -2}), doctest::Contains("negative size -1"), Error);
}
