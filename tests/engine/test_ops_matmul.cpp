#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

#include <array>
#include <vector>

using namespace qforge;
using testing::max_abs_diff;
using testing::rand_input;

namespace {

// Naive [n, k] x [k, m] in double, through element access (any layout).
Tensor naive_mm(const Tensor& a, const Tensor& b) {
  const int64_t n = a.size(0), k = a.size(1), m = b.size(1);
  Tensor out = Tensor::zeros({n, m}, DType::f64);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) {
      double s = 0;
      for (int64_t t = 0; t < k; ++t) s += a.at({i, t}) * b.at({t, j});
      out.set({i, j}, s);
    }
  return out;
}

Tensor naive_linear(const Tensor& x2, const Tensor& w, const Tensor& b) {
  Tensor out = naive_mm(x2, w.transpose(0, 1));
  if (b.defined())
    for (int64_t i = 0; i < out.size(0); ++i)
      for (int64_t j = 0; j < out.size(1); ++j) out.set({i, j}, out.at({i, j}) + b.at({j}));
  return out;
}

Tensor f32(const Tensor& t) { return t.detach().to(DType::f32); }

}  // namespace

TEST_CASE("matmul: 2-D product matches a naive reference in f32 and f64") {
  Tensor a = rand_input({5, 7}, 1, -1, 1, false), b = rand_input({7, 3}, 2, -1, 1, false);
  CHECK(max_abs_diff(ops::matmul(a, b), naive_mm(a, b)) < 1e-12);
  Tensor c = ops::matmul(f32(a), f32(b));
  CHECK(c.dtype() == DType::f32);
  CHECK(max_abs_diff(c.to(DType::f64), naive_mm(a, b)) < 1e-5);
}

TEST_CASE("matmul: transposed and strided operands give the same result as contiguous copies") {
  Tensor a = rand_input({6, 4}, 3, -1, 1, false), b = rand_input({5, 6}, 4, -1, 1, false);
  Tensor at = a.transpose(0, 1);  // [4, 6], column-major view
  Tensor bt = b.transpose(0, 1);  // [6, 5]
  CHECK(max_abs_diff(ops::matmul(at, bt), naive_mm(at.contiguous(), bt.contiguous())) < 1e-12);
  Tensor big = rand_input({6, 10}, 5, -1, 1, false);
  Tensor sl = big.narrow(1, 2, 5);        // row stride 10, 5 columns
  Tensor step = big.slice(1, 0, 10, 2);   // column stride 2: not BLAS-able, copied
  CHECK(max_abs_diff(ops::matmul(at, sl), naive_mm(at.contiguous(), sl.contiguous())) < 1e-12);
  CHECK(max_abs_diff(ops::matmul(at, step), naive_mm(at.contiguous(), step.contiguous())) < 1e-12);
}

TEST_CASE("matmul: products large enough to be split over threads match the naive reference in every layout") {
  // Above detail::kParallelGemmWork multiply-adds gemm() splits C's longer side (columns when wide,
  // rows when tall) into one block per OpenMP thread; transposed operands take the other offsets.
  for (const auto& [n, k, m] : std::vector<std::array<int64_t, 3>>{{40, 700, 190}, {190, 700, 40}}) {
    CAPTURE(n);
    CAPTURE(m);
    Tensor a = rand_input({n, k}, 20, -1, 1, false), b = rand_input({k, m}, 21, -1, 1, false);
    const Tensor want = naive_mm(a, b);
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        // A transposed layout: the operand stored transposed and viewed back.
        Tensor aa = ta ? a.transpose(0, 1).contiguous().transpose(0, 1) : a;
        Tensor bb = tb ? b.transpose(0, 1).contiguous().transpose(0, 1) : b;
        CHECK(max_abs_diff(ops::matmul(aa, bb), want) < 1e-10);
        CHECK(max_abs_diff(ops::matmul(f32(aa), f32(bb)).to(DType::f64), want) < 1e-3);
      }
  }
}

TEST_CASE("matmul: 1-D operands follow torch.matmul (dot, mv, vm)") {
  Tensor v = rand_input({4}, 6, -1, 1, false), w = rand_input({4}, 7, -1, 1, false);
  Tensor m = rand_input({3, 4}, 8, -1, 1, false), m2 = rand_input({4, 2}, 9, -1, 1, false);
  Tensor dot = ops::matmul(v, w);
  CHECK(dot.dim() == 0);
  double ref = 0;
  for (int64_t i = 0; i < 4; ++i) ref += v.at({i}) * w.at({i});
  CHECK(dot.item() == doctest::Approx(ref).epsilon(1e-12));
  Tensor mv = ops::matmul(m, v);
  CHECK(mv.shape() == Shape{3});
  CHECK(max_abs_diff(mv, naive_mm(m, v.reshape({4, 1})).reshape({3})) < 1e-12);
  Tensor vm = ops::matmul(v, m2);
  CHECK(vm.shape() == Shape{2});
  CHECK(max_abs_diff(vm, naive_mm(v.reshape({1, 4}), m2).reshape({2})) < 1e-12);
  Tensor bv = ops::matmul(rand_input({2, 3, 4}, 10, -1, 1, false), v);
  CHECK(bv.shape() == Shape{2, 3});
  Tensor vb = ops::matmul(v, rand_input({2, 4, 5}, 11, -1, 1, false));
  CHECK(vb.shape() == Shape{2, 5});
}

TEST_CASE("matmul: batch dimensions broadcast like torch.matmul") {
  Tensor a = rand_input({2, 1, 3, 4}, 12, -1, 1, false);
  Tensor b = rand_input({3, 4, 5}, 13, -1, 1, false);
  Tensor c = ops::matmul(a, b);
  REQUIRE(c.shape() == Shape{2, 3, 3, 5});
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 3; ++j)
      CHECK(max_abs_diff(c.select(0, i).select(0, j), naive_mm(a.select(0, i).select(0, 0), b.select(0, j))) <
            1e-12);
  Tensor d = ops::matmul(a, rand_input({4, 2}, 14, -1, 1, false));  // folded into one GEMM
  CHECK(d.shape() == Shape{2, 1, 3, 2});
}

TEST_CASE("matmul: backward matches finite differences") {
  auto mm = [](const std::vector<Tensor>& v) { return ops::matmul(v[0], v[1]); };
  SUBCASE("2-D") { CHECK_GRADCHECK(mm, {rand_input({3, 4}, 20), rand_input({4, 5}, 21)}); }
  SUBCASE("1-D x 1-D") { CHECK_GRADCHECK(mm, {rand_input({4}, 22), rand_input({4}, 23)}); }
  SUBCASE("2-D x 1-D and 1-D x 3-D") {
    CHECK_GRADCHECK(mm, {rand_input({3, 4}, 24), rand_input({4}, 25)});
    CHECK_GRADCHECK(mm, {rand_input({4}, 26), rand_input({2, 4, 3}, 27)});
  }
  SUBCASE("broadcast batch on both sides") {
    CHECK_GRADCHECK(mm, {rand_input({2, 1, 3, 4}, 28), rand_input({3, 4, 2}, 29)});
  }
  SUBCASE("3-D x 2-D (folded)") { CHECK_GRADCHECK(mm, {rand_input({2, 3, 4}, 30), rand_input({4, 5}, 31)}); }
  SUBCASE("transposed operands") {
    auto mmt = [](const std::vector<Tensor>& v) {
      return ops::matmul(v[0].transpose(0, 1), v[1].transpose(0, 1));
    };
    CHECK_GRADCHECK(mmt, {rand_input({4, 3}, 32), rand_input({5, 4}, 33)});
  }
  SUBCASE("only one operand requires grad") {
    CHECK_GRADCHECK(mm, {rand_input({3, 4}, 34), rand_input({2, 4, 5}, 35, -1, 1, false)});
    CHECK_GRADCHECK(mm, {rand_input({2, 3, 4}, 36, -1, 1, false), rand_input({4, 5}, 37)});
  }
}

TEST_CASE("matmul: shape mismatches name the op and both shapes") {
  Tensor a = Tensor::zeros({2, 3}), b = Tensor::zeros({4, 5});
  CHECK_THROWS_WITH_AS(ops::matmul(a, b), doctest::Contains("matmul: shapes [2, 3] and [4, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros({2, 2, 3}), Tensor::zeros({3, 3, 4})),
                       doctest::Contains("[2, 2, 3] and [3, 3, 4]"), Error);
  CHECK_THROWS_WITH_AS(ops::matmul(Tensor::zeros({2, 3}), Tensor::zeros({3, 4}, DType::f64)),
                       doctest::Contains("matmul"), Error);
  CHECK_THROWS_AS(ops::matmul(Tensor::scalar(1), Tensor::zeros({3})), Error);
}

TEST_CASE("linear: forward matches a naive reference with and without bias") {
  Tensor x = rand_input({4, 6}, 40, -1, 1, false), w = rand_input({3, 6}, 41, -1, 1, false);
  Tensor b = rand_input({3}, 42, -1, 1, false);
  CHECK(max_abs_diff(ops::linear(x, w, b), naive_linear(x, w, b)) < 1e-12);
  CHECK(max_abs_diff(ops::linear(x, w), naive_linear(x, w, Tensor())) < 1e-12);
  Tensor y32 = ops::linear(f32(x), f32(w), f32(b));
  CHECK(max_abs_diff(y32.to(DType::f64), naive_linear(x, w, b)) < 1e-5);
  Tensor x3 = rand_input({2, 2, 6}, 43, -1, 1, false);
  Tensor y3 = ops::linear(x3, w, b);
  CHECK(y3.shape() == Shape{2, 2, 3});
  CHECK(max_abs_diff(y3.reshape({4, 3}), naive_linear(x3.reshape({4, 6}), w, b)) < 1e-12);
  Tensor y1 = ops::linear(x.select(0, 1), w, b);  // 1-D input
  CHECK(y1.shape() == Shape{3});
}

TEST_CASE("linear: backward matches finite differences") {
  auto lin = [](const std::vector<Tensor>& v) { return ops::linear(v[0], v[1], v[2]); };
  auto lin_nb = [](const std::vector<Tensor>& v) { return ops::linear(v[0], v[1]); };
  CHECK_GRADCHECK(lin, {rand_input({5, 4}, 50), rand_input({3, 4}, 51), rand_input({3}, 52)});
  CHECK_GRADCHECK(lin, {rand_input({2, 3, 4}, 53), rand_input({2, 4}, 54), rand_input({2}, 55)});
  CHECK_GRADCHECK(lin_nb, {rand_input({1, 4}, 56), rand_input({3, 4}, 57)});
  CHECK_GRADCHECK(lin, {rand_input({4}, 58), rand_input({3, 4}, 59), rand_input({3}, 60)});
  auto lin_t = [](const std::vector<Tensor>& v) {  // weight given as a transposed view
    return ops::linear(v[0].transpose(0, 1), v[1].transpose(0, 1), v[2]);
  };
  CHECK_GRADCHECK(lin_t, {rand_input({4, 5}, 61), rand_input({4, 3}, 62), rand_input({3}, 63)});
}

TEST_CASE("linear: fused op matches matmul(x, W^T) + b in forward and backward") {
  Tensor x1 = rand_input({2, 3, 5}, 70), w1 = rand_input({4, 5}, 71), b1 = rand_input({4}, 72);
  Tensor x2 = x1.detach().clone().set_requires_grad(), w2 = w1.detach().clone().set_requires_grad();
  Tensor b2 = b1.detach().clone().set_requires_grad();
  Tensor gout = rand_input({2, 3, 4}, 73, -1, 1, false);
  Tensor y1 = ops::linear(x1, w1, b1);
  Tensor y2 = ops::add(ops::matmul(x2, w2.transpose(0, 1)), b2);
  CHECK(max_abs_diff(y1, y2) < 1e-12);
  y1.backward(gout);
  y2.backward(gout);
  CHECK(max_abs_diff(x1.grad(), x2.grad()) < 1e-12);
  CHECK(max_abs_diff(w1.grad(), w2.grad()) < 1e-12);
  CHECK(max_abs_diff(b1.grad(), b2.grad()) < 1e-12);
}

TEST_CASE("linear: shape mismatches name the op and both shapes") {
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 3}), Tensor::zeros({4, 5})),
                       doctest::Contains("linear: input [2, 3] does not match weight [4, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 5}), Tensor::zeros({3})),
                       doctest::Contains("bias [3] does not match weight [4, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::linear(Tensor::zeros({2, 5}), Tensor::zeros({4, 5, 1})),
                       doctest::Contains("[4, 5, 1]"), Error);
}

TEST_CASE("matmul: many small batched products (batch-parallel path) match per-batch 2-D products") {
  Tensor a = rand_input({96, 24, 20}, 80), b = rand_input({96, 20, 24}, 81);
  Tensor g = rand_input({96, 24, 24}, 83, -1, 1, false);
  Tensor y = ops::matmul(a, b);
  y.backward(g);
  for (int64_t i : {0, 37, 95}) {
    CAPTURE(i);
    CHECK(max_abs_diff(y.select(0, i), ops::matmul(a.select(0, i), b.select(0, i))) < 1e-12);
    CHECK(max_abs_diff(a.grad().select(0, i), ops::matmul(g.select(0, i), b.select(0, i).transpose(0, 1))) < 1e-12);
    CHECK(max_abs_diff(b.grad().select(0, i), ops::matmul(a.select(0, i).transpose(0, 1), g.select(0, i))) < 1e-12);
  }
  // A broadcast right operand accumulates its gradient over the batch.
  Tensor w = rand_input({1, 20, 24}, 84);
  Tensor z = ops::matmul(a.detach(), w);
  z.backward(g);
  Tensor ref = ops::matmul(a.detach().reshape({96 * 24, 20}).transpose(0, 1), g.reshape({96 * 24, 24})).unsqueeze(0);
  CHECK(max_abs_diff(w.grad(), ref) < 1e-10);
}
