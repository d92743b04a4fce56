#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/op.hpp"
#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

using namespace qforge;

TEST_CASE("autograd: gradients accumulate into leaves across backward calls") {
  Tensor x = Tensor::from_vector<float>({1, 2, 3}, {3}).set_requires_grad();
  Tensor y = ops::sum(ops::mul(x, x));
  y.backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 4, 6});
  Tensor y2 = ops::sum(ops::mul(x, 3.0));
  y2.backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{5, 7, 9});
  x.zero_grad();
  CHECK(!x.grad().defined());
}

TEST_CASE("autograd: a tensor used twice gets the sum of both paths") {
  Tensor x = Tensor::from_vector<double>({2}, {1}).set_requires_grad();
  Tensor a = ops::mul(x, 3.0);
  Tensor y = ops::sum(ops::add(ops::mul(a, a), a));  // 9x^2 + 3x -> 18x + 3
  y.backward();
  CHECK(x.grad().item() == doctest::Approx(39));
}

TEST_CASE("autograd: a leaf's gradient never aliases the caller's or another leaf's tensor") {
  // add's backward hands the incoming gradient itself to both inputs: each leaf must get its own copy,
  // and neither may share the caller's buffer.
  Tensor a = Tensor::from_vector<float>({1, 2}, {2}).set_requires_grad();
  Tensor b = Tensor::from_vector<float>({3, 4}, {2}).set_requires_grad();
  Tensor g = Tensor::from_vector<float>({5, 6}, {2});
  ops::add(a, b).backward(g);
  g.fill_(0.0);
  CHECK(a.grad().to_vector<float>() == std::vector<float>{5, 6});
  CHECK(b.grad().to_vector<float>() == std::vector<float>{5, 6});
  a.grad().fill_(1.0);
  CHECK(b.grad().to_vector<float>() == std::vector<float>{5, 6});
  // A leaf that is the root keeps a copy of the caller's gradient too.
  Tensor c = Tensor::from_vector<float>({1, 2}, {2}).set_requires_grad();
  Tensor gc = Tensor::from_vector<float>({7, 8}, {2});
  c.backward(gc);
  gc.fill_(0.0);
  CHECK(c.grad().to_vector<float>() == std::vector<float>{7, 8});
}

TEST_CASE("autograd: retain_graph allows a second backward, otherwise it is refused") {
  Tensor x = Tensor::from_vector<float>({1, 2}, {2}).set_requires_grad();
  Tensor y = ops::sum(ops::mul(x, x));
  y.backward(Tensor(), true);
  y.backward();
  CHECK(x.grad().to_vector<float>() == std::vector<float>{4, 8});
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("second time"), Error);
}

TEST_CASE("autograd: no-grad guard records nothing; detach cuts the graph") {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  {
    NoGradGuard g;
    Tensor y = ops::mul(x, 2.0);
    CHECK(!y.requires_grad());
  }
  CHECK(autograd::grad_mode_enabled());
  Tensor d = ops::mul(x, 2.0).detach();
  CHECK(!d.requires_grad());
  CHECK(d.storage() != nullptr);
}

TEST_CASE("autograd: modifying a saved tensor in place is reported at backward") {
  Tensor x = Tensor::from_vector<float>({1, 2}, {2}).set_requires_grad();
  Tensor w = Tensor::from_vector<float>({3, 4}, {2});
  Tensor y = ops::sum(ops::mul(x, w));
  w.set({0}, 10);  // w was saved by mul for x's gradient
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("modified in place"), Error);
}

TEST_CASE("autograd: in-place writes to tensors requiring grad are refused") {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  CHECK_THROWS_AS(x.fill_(3), Error);
  NoGradGuard g;
  x.fill_(3);
  CHECK(x.at({0}) == 3);
}

TEST_CASE("autograd: non-scalar backward needs an explicit gradient") {
  Tensor x = Tensor::ones({2}).set_requires_grad();
  Tensor y = ops::mul(x, 2.0);
  CHECK_THROWS_AS(y.backward(), Error);
  y.backward(Tensor::from_vector<float>({1, 10}, {2}));
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 20});
}

TEST_CASE("autograd: views propagate gradients back to the base") {
  CHECK_GRADCHECK([](const std::vector<Tensor>& in) {
    const Tensor& x = in[0];
    Tensor t = x.transpose(0, 1).reshape({3, 4}).narrow(0, 1, 2);
    Tensor e = x.select(0, 1).unsqueeze(0).expand({3, 2, 3});
    return ops::add(ops::mul(t, t), ops::sum(ops::sum(e, {0}).slice(1, 0, 3, 2)).reshape({1, 1}));
  }, {testing::rand_input({4, 3}, 1).reshape({2, 2, 3}).detach().contiguous().set_requires_grad()});
}

namespace {
// A deliberately wrong op (backward returns 2x the true gradient) to prove gradcheck can fail.
struct WrongSquareOp : ops::OpBase {
  static constexpr const char* kName = "wrong_square";
  ops::SavedTensor x;
  Tensor forward(const Tensor& in) {
    if (recording) x = in;
    return ops::mul(in, in);
  }
  std::vector<Tensor> backward(const Tensor& g) { return {ops::mul(ops::mul(g, x.get(kName)), 4.0)}; }
};
}  // namespace

TEST_CASE("gradcheck: detects a wrong backward") {
  const std::string msg = testing::gradcheck(
      [](const std::vector<Tensor>& in) { return ops::apply(WrongSquareOp{}, in[0]); }, {testing::rand_input({3}, 9)});
  CHECK(msg.find("analytic") != std::string::npos);
}
