#include <doctest/doctest.h>

#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>
#include <limits>

using namespace qforge;
using testing::max_abs_diff;
using testing::rand_input;

namespace {

ops::Pool2dParams pool(std::array<int64_t, 2> k, std::array<int64_t, 2> s, std::array<int64_t, 2> p,
                       bool include_pad = true) {
  ops::Pool2dParams q;
  q.kernel = k;
  q.stride = s;
  q.padding = p;
  q.count_include_pad = include_pad;
  return q;
}

// Naive pools in double, straight from PyTorch's definitions (ceil_mode = false).
Tensor naive_pool(const Tensor& x, const ops::Pool2dParams& p, bool is_max) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t OH = (H + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1;
  const int64_t OW = (W + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1;
  Tensor out = Tensor::zeros({N, C, OH, OW}, DType::f64);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          double best = -std::numeric_limits<double>::infinity(), sum = 0;
          int64_t count = 0, padded = 0;
          for (int64_t ky = 0; ky < p.kernel[0]; ++ky)
            for (int64_t kx = 0; kx < p.kernel[1]; ++kx) {
              const int64_t iy = oy * p.stride[0] - p.padding[0] + ky, ix = ox * p.stride[1] - p.padding[1] + kx;
              if (iy < H + p.padding[0] && ix < W + p.padding[1]) ++padded;
              if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
              const double v = x.at({n, c, iy, ix});
              best = std::max(best, v);
              sum += v;
              ++count;
            }
          out.set({n, c, oy, ox}, is_max ? best : sum / static_cast<double>(p.count_include_pad ? padded : count));
        }
  return out;
}

Tensor naive_adaptive(const Tensor& x, int64_t OH, int64_t OW) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  Tensor out = Tensor::zeros({N, C, OH, OW}, DType::f64);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          const auto y0 = static_cast<int64_t>(std::floor(double(oy * H) / double(OH)));
          const auto y1 = static_cast<int64_t>(std::ceil(double((oy + 1) * H) / double(OH)));
          const auto x0 = static_cast<int64_t>(std::floor(double(ox * W) / double(OW)));
          const auto x1 = static_cast<int64_t>(std::ceil(double((ox + 1) * W) / double(OW)));
          double s = 0;
          for (int64_t y = y0; y < y1; ++y)
            for (int64_t xx = x0; xx < x1; ++xx) s += x.at({n, c, y, xx});
          out.set({n, c, oy, ox}, s / double((y1 - y0) * (x1 - x0)));
        }
  return out;
}

// Distinct values so max pooling has no ties and finite differences are valid.
Tensor distinct_input(const Shape& s, uint64_t seed) {
  Tensor t = rand_input(s, seed, -1, 1, false);
  Tensor r = ops::add(t, ops::mul(Tensor::arange(0, double(t.numel()), 1, DType::f64).reshape(s), 0.37));
  return r.detach().set_requires_grad();
}

}  // namespace

TEST_CASE("max_pool2d/avg_pool2d: forward matches a naive reference over awkward geometries") {
  const std::vector<ops::Pool2dParams> geoms = {
      pool({2, 2}, {2, 2}, {0, 0}),       pool({3, 3}, {2, 2}, {1, 1}),        pool({3, 2}, {1, 2}, {1, 0}),
      pool({3, 3}, {2, 2}, {1, 1}, false), pool({2, 3}, {3, 1}, {0, 1}, false), pool({5, 5}, {1, 1}, {2, 2}, false),
  };
  Tensor x = rand_input({2, 3, 7, 6}, 1, -2, 2, false);
  for (const auto& p : geoms) {
    CAPTURE(p.kernel);
    CAPTURE(p.stride);
    CAPTURE(p.padding);
    CAPTURE(p.count_include_pad);
    CHECK(max_abs_diff(ops::max_pool2d(x, p), naive_pool(x, p, true)) < 1e-12);
    CHECK(max_abs_diff(ops::avg_pool2d(x, p), naive_pool(x, p, false)) < 1e-12);
    CHECK(max_abs_diff(ops::avg_pool2d(x.to(DType::f32), p).to(DType::f64), naive_pool(x, p, false)) < 1e-6);
  }
}

TEST_CASE("avg_pool2d: count_include_pad changes only the border divisor") {
  Tensor x = Tensor::ones({1, 1, 3, 3}, DType::f64);
  Tensor with = ops::avg_pool2d(x, pool({3, 3}, {1, 1}, {1, 1}, true));
  Tensor without = ops::avg_pool2d(x, pool({3, 3}, {1, 1}, {1, 1}, false));
  CHECK(with.at({0, 0, 0, 0}) == doctest::Approx(4.0 / 9.0));
  CHECK(with.at({0, 0, 1, 1}) == doctest::Approx(1.0));
  CHECK(with.at({0, 0, 0, 1}) == doctest::Approx(6.0 / 9.0));
  CHECK(max_abs_diff(without, Tensor::ones({1, 1, 3, 3}, DType::f64)) < 1e-15);
}

TEST_CASE("max_pool2d: the gradient goes to the first maximum of the window") {
  // All equal: PyTorch routes each window's gradient to its first (top-left) element.
  Tensor x = Tensor::ones({1, 1, 4, 4}, DType::f64).set_requires_grad();
  ops::sum(ops::max_pool2d(x, pool({2, 2}, {2, 2}, {0, 0}))).backward();
  const std::vector<double> want = {1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0};
  CHECK(x.grad().to_vector<double>() == want);
  // Overlapping windows accumulate into a shared maximum.
  Tensor y = Tensor::from_vector<double>({0, 1, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}).set_requires_grad();
  ops::sum(ops::max_pool2d(y, pool({2, 2}, {1, 1}, {0, 0}))).backward();
  CHECK(y.grad().at({0, 0, 1, 1}) == 4);
  CHECK(ops::sum(y.grad()).item() == 4);
}

TEST_CASE("max_pool2d: a NaN in the window propagates to the output and takes the gradient") {
  Tensor x = Tensor::from_vector<float>({1, std::nanf(""), 3, 2}, {1, 1, 2, 2});
  CHECK(std::isnan(ops::max_pool2d(x, pool({2, 2}, {2, 2}, {0, 0})).item()));
  // As in PyTorch, the last NaN of the window wins, on the 2x2 fast path and on the general one.
  for (const auto& p : {pool({2, 2}, {2, 2}, {0, 0}), pool({2, 2}, {1, 1}, {0, 0})}) {
    CAPTURE(p.stride);
    Tensor y = Tensor::from_vector<float>({std::nanf(""), 5, std::nanf(""), 2}, {1, 1, 2, 2}).set_requires_grad();
    ops::sum(ops::max_pool2d(y, p)).backward();
    CHECK(y.grad().to_vector<float>() == std::vector<float>{0, 0, 1, 0});
  }
}

TEST_CASE("max_pool2d/avg_pool2d: backward matches finite differences") {
  const std::vector<ops::Pool2dParams> geoms = {pool({2, 2}, {2, 2}, {0, 0}), pool({3, 3}, {2, 2}, {1, 1}),
                                                pool({3, 2}, {1, 2}, {1, 0}, false), pool({2, 3}, {3, 1}, {0, 1})};
  for (const auto& p : geoms) {
    CAPTURE(p.kernel);
    CAPTURE(p.padding);
    CHECK_GRADCHECK([p](const std::vector<Tensor>& v) { return ops::max_pool2d(v[0], p); },
                    {distinct_input({2, 2, 5, 6}, 10)});
    CHECK_GRADCHECK([p](const std::vector<Tensor>& v) { return ops::avg_pool2d(v[0], p); },
                    {rand_input({2, 2, 5, 6}, 11)});
  }
}

TEST_CASE("adaptive_avg_pool2d: windows follow PyTorch's floor/ceil formulas") {
  Tensor x = rand_input({2, 3, 7, 5}, 20, -1, 1, false);
  for (auto [oh, ow] : std::vector<std::pair<int64_t, int64_t>>{{3, 2}, {1, 1}, {7, 5}, {4, 4}, {10, 3}}) {
    CAPTURE(oh);
    CAPTURE(ow);
    Tensor y = ops::adaptive_avg_pool2d(x, {oh, ow});
    REQUIRE(y.shape() == Shape{2, 3, oh, ow});
    CHECK(max_abs_diff(y, naive_adaptive(x, oh, ow)) < 1e-12);
  }
  // Hand-checked: 5 -> 3 uses windows [0,2), [1,4), [3,5).
  Tensor r = Tensor::arange(0, 5, 1, DType::f64).reshape({1, 1, 1, 5});
  Tensor a = ops::adaptive_avg_pool2d(r, {1, 3});
  CHECK(a.to_vector<double>() == std::vector<double>{0.5, 2.0, 3.5});
}

TEST_CASE("adaptive_avg_pool2d/global_avg_pool2d: backward matches finite differences") {
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return ops::adaptive_avg_pool2d(v[0], {3, 2}); },
                  {rand_input({2, 2, 7, 5}, 30)});
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return ops::adaptive_avg_pool2d(v[0], {4, 6}); },
                  {rand_input({1, 2, 3, 4}, 31)});
  CHECK_GRADCHECK([](const std::vector<Tensor>& v) { return ops::global_avg_pool2d(v[0]); },
                  {rand_input({2, 3, 4, 5}, 32)});
}

TEST_CASE("global_avg_pool2d: mean over each plane, shape [N, C, 1, 1]") {
  Tensor x = rand_input({2, 3, 4, 5}, 40, -1, 1, false);
  Tensor y = ops::global_avg_pool2d(x);
  REQUIRE(y.shape() == Shape{2, 3, 1, 1});
  CHECK(max_abs_diff(y, ops::mean(x, {2, 3}, true)) < 1e-12);
}

TEST_CASE("pooling: larger f32 inputs (threaded path) agree with f64") {
  Tensor x = rand_input({4, 16, 32, 30}, 50);
  Tensor x32 = x.detach().to(DType::f32).set_requires_grad();
  const auto p = pool({3, 3}, {2, 2}, {1, 1}, false);
  for (int which = 0; which < 2; ++which) {
    CAPTURE(which);
    x.zero_grad();
    x32.zero_grad();
    Tensor y = which == 0 ? ops::max_pool2d(x, p) : ops::avg_pool2d(x, p);
    Tensor y32 = which == 0 ? ops::max_pool2d(x32, p) : ops::avg_pool2d(x32, p);
    CHECK(max_abs_diff(y32.to(DType::f64), y) < 1e-6);
    ops::sum(y).backward();
    ops::sum(y32).backward();
    CHECK(max_abs_diff(x32.grad().to(DType::f64), x.grad()) < 1e-6);
  }
}

TEST_CASE("pooling: unbatched [C, H, W] input is pooled per channel") {
  Tensor x = rand_input({3, 6, 6}, 60, -1, 1, false);
  Tensor y = ops::max_pool2d(x, pool({2, 2}, {2, 2}, {0, 0}));
  CHECK(y.shape() == Shape{3, 3, 3});
  CHECK(max_abs_diff(y, ops::max_pool2d(x.unsqueeze(0), pool({2, 2}, {2, 2}, {0, 0})).squeeze(0)) == 0);
}

TEST_CASE("pooling: bad shapes and parameters name the op and the shapes") {
  CHECK_THROWS_WITH_AS(ops::max_pool2d(Tensor::zeros({4, 5}), pool({2, 2}, {2, 2}, {0, 0})),
                       doctest::Contains("max_pool2d: input must be [N, C, H, W] or [C, H, W], got [4, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::avg_pool2d(Tensor::zeros({1, 1, 4, 4}), pool({2, 2}, {2, 2}, {2, 0})),
                       doctest::Contains("avg_pool2d: padding [2, 0] must be at most half the kernel [2, 2]"), Error);
  CHECK_THROWS_WITH_AS(ops::max_pool2d(Tensor::zeros({1, 1, 2, 2}), pool({3, 3}, {1, 1}, {0, 0})),
                       doctest::Contains("larger than the padded input [1, 1, 2, 2]"), Error);
  CHECK_THROWS_WITH_AS(ops::avg_pool2d(Tensor::zeros({1, 1, 4, 4}), pool({2, 2}, {0, 2}, {0, 0})),
                       doctest::Contains("avg_pool2d: invalid kernel"), Error);
  CHECK_THROWS_WITH_AS(ops::adaptive_avg_pool2d(Tensor::zeros({1, 1, 4, 4}), {0, 2}),
                       doctest::Contains("adaptive_avg_pool2d: invalid output size [0, 2] for input [1, 1, 4, 4]"),
                       Error);
  CHECK_THROWS_WITH_AS(ops::global_avg_pool2d(Tensor::zeros({2, 3})),
                       doctest::Contains("global_avg_pool2d: input must be [N, C, H, W], got [2, 3]"), Error);
  CHECK_THROWS_AS(ops::max_pool2d(Tensor::zeros({1, 1, 4, 4}, DType::i32), pool({2, 2}, {2, 2}, {0, 0})), Error);
}
