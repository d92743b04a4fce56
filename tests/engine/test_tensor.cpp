#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "engine/random.hpp"
#include "engine/tensor.hpp"

using namespace qforge;

TEST_CASE("tensor: creation fills shape, strides and values") {
  Tensor t = Tensor::full({2, 3}, 1.5);
  CHECK(t.shape() == Shape{2, 3});
  CHECK(t.strides() == Shape{3, 1});
  CHECK(t.dtype() == DType::f32);
  CHECK(t.at({1, 2}) == 1.5);
  CHECK(Tensor::zeros({4}, DType::i8).at({3}) == 0);
  Tensor a = Tensor::arange(0, 5);
  CHECK(a.numel() == 5);
  CHECK(a.at({4}) == 4);
  CHECK(reinterpret_cast<uintptr_t>(a.raw_data()) % 64 == 0);
  for (DType d : {DType::f32, DType::f64, DType::i32, DType::i16, DType::i8, DType::u8, DType::boolean})
    CHECK(Tensor::ones({2}, d).at({1}) == 1);
}

TEST_CASE("tensor: random creation is deterministic for a seed") {
  Generator g1(7), g2(7), g3(8);
  Tensor a = Tensor::randn({100}, g1), b = Tensor::randn({100}, g2), c = Tensor::randn({100}, g3);
  CHECK(a.to_vector<float>() == b.to_vector<float>());
  CHECK(a.to_vector<float>() != c.to_vector<float>());
  Generator g4(1);
  Tensor u = Tensor::rand({1000}, g4, -2, 3);
  auto v = u.to_vector<float>();
  for (float x : v) CHECK((x >= -2 && x < 3));
  double mean = 0;
  for (float x : Tensor::randn({20000}, g4).to_vector<float>()) mean += x;
  CHECK(std::abs(mean / 20000) < 0.03);
}

TEST_CASE("tensor: views share storage and see writes") {
  Tensor t = Tensor::arange(0, 24).reshape({2, 3, 4});
  Tensor tr = t.transpose(0, 2);
  CHECK(tr.shape() == Shape{4, 3, 2});
  CHECK(!tr.is_contiguous());
  CHECK(tr.at({3, 2, 1}) == t.at({1, 2, 3}));
  Tensor n = t.narrow(2, 1, 2);
  CHECK(n.shape() == Shape{2, 3, 2});
  CHECK(n.at({1, 1, 0}) == 17);
  t.set({1, 1, 1}, 100);
  CHECK(n.at({1, 1, 0}) == 100);
  Tensor s = t.slice(2, 0, 4, 2);
  CHECK(s.shape() == Shape{2, 3, 2});
  CHECK(s.at({0, 1, 1}) == 6);
  Tensor e = Tensor::arange(0, 3).reshape({3, 1}).expand({3, 4});
  CHECK(e.strides()[1] == 0);
  CHECK(e.at({2, 3}) == 2);
  Tensor c = tr.contiguous();
  CHECK(c.is_contiguous());
  CHECK(c.at({3, 2, 1}) == t.at({1, 2, 3}));
  CHECK(t.select(1, 2).shape() == Shape{2, 4});
  CHECK(t.unsqueeze(1).shape() == Shape{2, 1, 3, 4});
  CHECK(t.flatten(1).shape() == Shape{2, 12});
  CHECK(t.permute({2, 0, 1}).shape() == Shape{4, 2, 3});
  CHECK(t.reshape({-1, 4}).shape() == Shape{6, 4});
}

TEST_CASE("tensor: reshape of a non-contiguous tensor copies, view refuses") {
  Tensor t = Tensor::arange(0, 6).reshape({2, 3}).transpose(0, 1);
  CHECK_THROWS_AS(t.view({6}), Error);
  Tensor r = t.reshape({6});
  CHECK(r.to_vector<float>() == std::vector<float>{0, 3, 1, 4, 2, 5});
}

TEST_CASE("tensor: dtype conversion and copy_") {
  Tensor t = Tensor::from_vector<float>({-1.7f, 2.2f, 300.f}, {3});
  Tensor i = t.to(DType::i32);
  CHECK(i.at({0}) == -1);
  CHECK(i.at({2}) == 300);
  Tensor d = Tensor::zeros({2, 3}, DType::f64);
  d.copy_(Tensor::from_vector<float>({1, 2, 3}, {3}));
  CHECK(d.at({1, 2}) == 3);
}

TEST_CASE("tensor: bad use throws qforge::Error with the shapes") {
  Tensor t = Tensor::zeros({2, 3});
  CHECK_THROWS_WITH_AS(t.at({2, 0}), doctest::Contains("[2, 3]"), Error);
  CHECK_THROWS_AS(t.data<double>(), Error);
  CHECK_THROWS_AS(t.reshape({4}), Error);
  CHECK_THROWS_AS(t.narrow(1, 2, 2), Error);
  CHECK_THROWS_AS(Tensor().shape(), Error);
  CHECK_THROWS_WITH_AS(ops::add(t, Tensor::zeros({4})), doctest::Contains("[2, 3] and [4]"), Error);
}

TEST_CASE("tensor: printing shows shape, dtype and values") {
  Tensor t = Tensor::arange(0, 4).reshape({2, 2});
  const std::string s = t.to_string();
  CHECK(s.find("shape=[2, 2]") != std::string::npos);
  CHECK(s.find("[[0, 1],\n [2, 3]]") != std::string::npos);
}
