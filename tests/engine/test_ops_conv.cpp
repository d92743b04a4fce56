#include <doctest/doctest.h>

#include "engine/kernels/kernels.hpp"
#include "engine/ops/ops.hpp"
#include "tests/support/gradcheck.hpp"

#include <omp.h>

#include <string>
#include <vector>

using namespace qforge;
using testing::max_abs_diff;
using testing::rand_input;

namespace {

// Direct 7-loop convolution in double, straight from the definition.
Tensor naive_conv(const Tensor& x_in, const Tensor& w_in, const Tensor& b_in, const ops::Conv2dParams& p) {
  const Tensor x = x_in.detach().to(DType::f64).contiguous(), w = w_in.detach().to(DType::f64).contiguous();
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = w.size(0), I = w.size(1), KH = w.size(2), KW = w.size(3);
  const int64_t OH = (H + 2 * p.padding[0] - p.dilation[0] * (KH - 1) - 1) / p.stride[0] + 1;
  const int64_t OW = (W + 2 * p.padding[1] - p.dilation[1] * (KW - 1) - 1) / p.stride[1] + 1;
  const int64_t og = O / p.groups;
  REQUIRE(C == I * p.groups);
  Tensor out = Tensor::zeros({N, O, OH, OW}, DType::f64);
  const double* px = x.data<double>();
  const double* pw = w.data<double>();
  double* po = out.data<double>();
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < OH; ++oy)
        for (int64_t ox = 0; ox < OW; ++ox) {
          double s = b_in.defined() ? b_in.at({o}) : 0.0;
          for (int64_t i = 0; i < I; ++i) {
            const int64_t c = (o / og) * I + i;
            for (int64_t ky = 0; ky < KH; ++ky)
              for (int64_t kx = 0; kx < KW; ++kx) {
                const int64_t iy = oy * p.stride[0] - p.padding[0] + ky * p.dilation[0];
                const int64_t ix = ox * p.stride[1] - p.padding[1] + kx * p.dilation[1];
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                s += px[((n * C + c) * H + iy) * W + ix] * pw[((o * I + i) * KH + ky) * KW + kx];
              }
          }
          po[((n * O + o) * OH + oy) * OW + ox] = s;
        }
  return out;
}

struct ConvCase {
  std::string name;
  Shape x, w;
  bool bias;
  ops::Conv2dParams p;
};

ops::Conv2dParams params(std::array<int64_t, 2> s, std::array<int64_t, 2> pad, std::array<int64_t, 2> d, int64_t g) {
  ops::Conv2dParams p;
  p.stride = s;
  p.padding = pad;
  p.dilation = d;
  p.groups = g;
  return p;
}

// Awkward configurations covering both kernels (im2col+GEMM and direct depthwise).
std::vector<ConvCase> cases() {
  return {
      {"3x3 pad 1", {2, 3, 5, 6}, {4, 3, 3, 3}, true, params({1, 1}, {1, 1}, {1, 1}, 1)},
      {"stride 2, non-square kernel", {2, 2, 7, 6}, {3, 2, 3, 2}, true, params({2, 2}, {1, 0}, {1, 1}, 1)},
      {"stride (2,1), padding (0,2)", {1, 2, 6, 5}, {2, 2, 2, 3}, false, params({2, 1}, {0, 2}, {1, 1}, 1)},
      {"dilation 2", {2, 2, 7, 7}, {3, 2, 3, 3}, true, params({1, 1}, {2, 2}, {2, 2}, 1)},
      {"groups 2", {2, 4, 5, 5}, {6, 2, 3, 3}, true, params({1, 1}, {1, 1}, {1, 1}, 2)},
      {"depthwise", {2, 3, 6, 5}, {3, 1, 3, 3}, true, params({1, 1}, {1, 1}, {1, 1}, 3)},
      {"depthwise stride 2 dilation 2", {1, 2, 8, 7}, {2, 1, 3, 3}, false, params({2, 2}, {2, 1}, {2, 2}, 2)},
      {"depthwise multiplier 2", {2, 2, 5, 5}, {4, 1, 2, 3}, true, params({1, 2}, {1, 1}, {1, 1}, 2)},
      {"depthwise stride 3, uneven padding", {1, 2, 8, 10}, {2, 1, 3, 3}, true, params({3, 3}, {1, 2}, {1, 1}, 2)},
      {"pointwise 1x1", {2, 3, 4, 5}, {2, 3, 1, 1}, true, params({1, 1}, {0, 0}, {1, 1}, 1)},
      {"1x1 stride 2", {1, 3, 5, 4}, {2, 3, 1, 1}, false, params({2, 2}, {0, 0}, {1, 1}, 1)},
      {"batch 1, single channel, padding only on one side of the output", {1, 1, 4, 9}, {2, 1, 4, 2}, true,
       params({1, 3}, {1, 1}, {1, 1}, 1)},
  };
}

Tensor run_conv(const std::vector<Tensor>& v, const ops::Conv2dParams& p) {
  return ops::conv2d(v[0], v[1], v.size() > 2 ? v[2] : Tensor(), p);
}

}  // namespace

TEST_CASE("conv2d: forward matches a naive reference in f64 and f32") {
  uint64_t seed = 100;
  for (const auto& c : cases()) {
    CAPTURE(c.name);
    Tensor x = rand_input(c.x, seed++, -1, 1, false), w = rand_input(c.w, seed++, -1, 1, false);
    Tensor b = c.bias ? rand_input({c.w[0]}, seed++, -1, 1, false) : Tensor();
    Tensor ref = naive_conv(x, w, b, c.p);
    Tensor y = ops::conv2d(x, w, b, c.p);
    REQUIRE(y.shape() == ref.shape());
    CHECK(max_abs_diff(y, ref) < 1e-12);
    Tensor y32 = ops::conv2d(x.to(DType::f32), w.to(DType::f32), b.defined() ? b.to(DType::f32) : Tensor(), c.p);
    CHECK(y32.dtype() == DType::f32);
    CHECK(max_abs_diff(y32.to(DType::f64), ref) < 1e-5);
  }
}

TEST_CASE("conv2d: backward matches finite differences") {
  uint64_t seed = 200;
  for (const auto& c : cases()) {
    CAPTURE(c.name);
    std::vector<Tensor> in = {rand_input(c.x, seed++), rand_input(c.w, seed++)};
    if (c.bias) in.push_back(rand_input({c.w[0]}, seed++));
    const auto p = c.p;
    CHECK_GRADCHECK([p](const std::vector<Tensor>& v) { return run_conv(v, p); }, in);
  }
}

TEST_CASE("conv2d: gradient of one input only (others constant) matches finite differences") {
  const auto p = params({2, 1}, {1, 1}, {1, 1}, 2);
  CHECK_GRADCHECK([p](const std::vector<Tensor>& v) { return run_conv(v, p); },
                  {rand_input({2, 4, 5, 4}, 300), rand_input({2, 2, 3, 3}, 301, -1, 1, false)});
  CHECK_GRADCHECK([p](const std::vector<Tensor>& v) { return run_conv(v, p); },
                  {rand_input({2, 4, 5, 4}, 302, -1, 1, false), rand_input({2, 2, 3, 3}, 303),
                   rand_input({2}, 304, -1, 1, false)});
}

TEST_CASE("conv2d: f32 gradients at a larger batch agree with the f64 computation") {
  // Exercises the multi-threaded batch split and per-thread weight-gradient accumulators in f32.
  for (int64_t groups : {1, 16}) {
    CAPTURE(groups);
    const auto p = params({1, 1}, {1, 1}, {1, 1}, groups);
    Tensor x64 = rand_input({10, 16, 20, 20}, 400), w64 = rand_input({16, 16 / groups, 3, 3}, 401);
    Tensor b64 = rand_input({16}, 402);
    Tensor x32 = x64.detach().to(DType::f32).set_requires_grad(), w32 = w64.detach().to(DType::f32).set_requires_grad();
    Tensor b32 = b64.detach().to(DType::f32).set_requires_grad();
    Tensor g = rand_input({10, 16, 20, 20}, 403, -1, 1, false);
    ops::conv2d(x64, w64, b64, p).backward(g);
    ops::conv2d(x32, w32, b32, p).backward(g.to(DType::f32));
    CHECK(max_abs_diff(x32.grad().to(DType::f64), x64.grad()) < 1e-4);
    CHECK(max_abs_diff(w32.grad().to(DType::f64), w64.grad()) < 1e-3);
    CHECK(max_abs_diff(b32.grad().to(DType::f64), b64.grad()) < 1e-3);
  }
}

TEST_CASE("conv2d: the f32 stride-1 path (shifted-window GEMM) agrees with f64 on every ISA") {
  // f32 stride-1 convolutions run engine/ops/conv_shifted.cpp; f64 runs im2col + GEMM, which the
  // gradchecks above prove. Shapes cover channel counts off the register tiles, grid lengths with
  // vector tails, padding 0 up to the kernel extent, dilation, groups and non-square kernels.
  const std::vector<ConvCase> shifted = {
      {"3x3 pad 1, 13 -> 11 channels", {3, 13, 9, 11}, {11, 13, 3, 3}, true, params({1, 1}, {1, 1}, {1, 1}, 1)},
      {"5x5 pad 2, wide", {2, 3, 6, 37}, {9, 3, 5, 5}, true, params({1, 1}, {2, 2}, {1, 1}, 1)},
      {"3x3 no padding", {2, 4, 8, 8}, {17, 4, 3, 3}, false, params({1, 1}, {0, 0}, {1, 1}, 1)},
      {"dilation 2 pad 2, groups 2", {2, 6, 9, 10}, {10, 3, 3, 3}, true, params({1, 1}, {2, 2}, {2, 2}, 2)},
      {"3x1 kernel, padding (1, 0)", {2, 5, 7, 6}, {8, 5, 3, 1}, true, params({1, 1}, {1, 0}, {1, 1}, 1)},
      {"2x4 kernel, padding (0, 3)", {1, 2, 5, 4}, {3, 2, 2, 4}, false, params({1, 1}, {0, 3}, {1, 1}, 1)},
      {"mnist-cnn conv2", {4, 16, 14, 14}, {32, 16, 3, 3}, true, params({1, 1}, {1, 1}, {1, 1}, 1)},
  };
  const kernels::Isa active = kernels::active_isa();
  uint64_t seed = 1000;
  for (int i = 0; i < kernels::kNumIsas; ++i) {
    const auto isa = static_cast<kernels::Isa>(i);
    if (!kernels::force_isa(isa)) continue;
    CAPTURE(std::string(kernels::isa_name(isa)));
    for (const auto& c : shifted) {
      CAPTURE(c.name);
      Tensor x64 = rand_input(c.x, seed++), w64 = rand_input(c.w, seed++);
      Tensor b64 = c.bias ? rand_input({c.w[0]}, seed++) : Tensor();
      Tensor x32 = x64.detach().to(DType::f32).set_requires_grad();
      Tensor w32 = w64.detach().to(DType::f32).set_requires_grad();
      Tensor b32 = c.bias ? b64.detach().to(DType::f32).set_requires_grad() : Tensor();
      Tensor y64 = ops::conv2d(x64, w64, b64, c.p), y32 = ops::conv2d(x32, w32, b32, c.p);
      CHECK(max_abs_diff(y64, naive_conv(x64, w64, b64, c.p)) < 1e-12);
      CHECK(max_abs_diff(y32.to(DType::f64), y64) < 1e-4);
      Tensor g = rand_input(y64.shape(), seed++, -1, 1, false);
      y64.backward(g);
      y32.backward(g.to(DType::f32));
      CHECK(max_abs_diff(x32.grad().to(DType::f64), x64.grad()) < 1e-4);
      CHECK(max_abs_diff(w32.grad().to(DType::f64), w64.grad()) < 1e-3);
      if (c.bias) CHECK(max_abs_diff(b32.grad().to(DType::f64), b64.grad()) < 1e-3);
    }
  }
  kernels::force_isa(active);
}

TEST_CASE("conv2d: unbatched [C, H, W] input works like a batch of one") {
  Tensor x = rand_input({2, 5, 5}, 500, -1, 1, false), w = rand_input({3, 2, 3, 3}, 501, -1, 1, false);
  const auto p = params({1, 1}, {1, 1}, {1, 1}, 1);
  Tensor y = ops::conv2d(x, w, Tensor(), p);
  CHECK(y.shape() == Shape{3, 5, 5});
  CHECK(max_abs_diff(y, ops::conv2d(x.unsqueeze(0), w, Tensor(), p).squeeze(0)) == 0);
}

TEST_CASE("conv2d: non-contiguous input and weight give the same result as contiguous copies") {
  Tensor x = rand_input({2, 5, 6, 3}, 510, -1, 1, false).permute({0, 3, 1, 2});  // NHWC storage
  Tensor w = rand_input({4, 3, 3, 3}, 511, -1, 1, false).transpose(2, 3);
  const auto p = params({1, 1}, {1, 1}, {1, 1}, 1);
  CHECK(max_abs_diff(ops::conv2d(x, w, Tensor(), p), naive_conv(x, w, Tensor(), p)) < 1e-12);
}

TEST_CASE("conv2d: shape mismatches name the op and both shapes") {
  const Tensor x = Tensor::zeros({1, 4, 5, 5});
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({2, 3, 3, 3})),
                       doctest::Contains("conv2d: input [1, 4, 5, 5] and weight [2, 3, 3, 3]"), Error);
  ops::Conv2dParams g2;
  g2.groups = 2;
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({3, 2, 3, 3}), Tensor(), g2),
                       doctest::Contains("[3, 2, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({2, 4, 3, 3}), Tensor::zeros({3})),
                       doctest::Contains("bias [3] does not match weight [2, 4, 3, 3]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({2, 4, 7, 7})),
                       doctest::Contains("larger than the padded input [1, 4, 5, 5]"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d(Tensor::zeros({4, 5}), Tensor::zeros({2, 4, 3, 3})),
                       doctest::Contains("conv2d: input must be"), Error);
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({2, 4, 3, 3}, DType::f64)), doctest::Contains("conv2d"), Error);
  ops::Conv2dParams bad;
  bad.stride = {0, 1};
  CHECK_THROWS_WITH_AS(ops::conv2d(x, Tensor::zeros({2, 4, 3, 3}), Tensor(), bad),
                       doctest::Contains("conv2d: invalid parameters"), Error);
}

TEST_CASE("conv2d: results are bit-identical across runs and thread counts") {
  const int threads = omp_get_max_threads();
  for (int64_t groups : {1, 8}) {
    CAPTURE(groups);
    const auto p = params({1, 1}, {1, 1}, {1, 1}, groups);
    Tensor x = rand_input({8, 8, 16, 16}, 600).to(DType::f32).detach().set_requires_grad();
    Tensor w = rand_input({8, 8 / groups, 3, 3}, 601).to(DType::f32).detach().set_requires_grad();
    Tensor b = rand_input({8}, 603).to(DType::f32).detach().set_requires_grad();
    Tensor g = rand_input({8, 8, 16, 16}, 602, -1, 1, false).to(DType::f32);
    std::vector<float> y0, gx0, gw0, gb0;
    for (int run = 0; run < 3; ++run) {
      CAPTURE(run);
      omp_set_num_threads(run == 2 ? 1 : threads);
      x.zero_grad();
      w.zero_grad();
      b.zero_grad();
      Tensor y = ops::conv2d(x, w, b, p);
      y.backward(g);
      if (run == 0) {
        y0 = y.to_vector<float>();
        gx0 = x.grad().to_vector<float>();
        gw0 = w.grad().to_vector<float>();
        gb0 = b.grad().to_vector<float>();
      } else {
        CHECK(y.to_vector<float>() == y0);
        CHECK(x.grad().to_vector<float>() == gx0);
        CHECK(w.grad().to_vector<float>() == gw0);
        CHECK(b.grad().to_vector<float>() == gb0);
      }
    }
    omp_set_num_threads(threads);
  }
}

TEST_CASE("conv2d: the fused bias matches conv2d without bias plus a broadcast add, forward and backward") {
  for (int64_t groups : {1, 3}) {
    CAPTURE(groups);
    const auto p = params({2, 1}, {1, 1}, {1, 1}, groups);
    Tensor x1 = rand_input({2, 3, 6, 5}, 700), w1 = rand_input({6, 3 / groups, 3, 3}, 701), b1 = rand_input({6}, 702);
    Tensor x2 = x1.detach().clone().set_requires_grad(), w2 = w1.detach().clone().set_requires_grad();
    Tensor b2 = b1.detach().clone().set_requires_grad();
    Tensor y1 = ops::conv2d(x1, w1, b1, p);
    Tensor y2 = ops::add(ops::conv2d(x2, w2, Tensor(), p), b2.reshape({1, 6, 1, 1}));
    CHECK(max_abs_diff(y1, y2) < 1e-12);
    Tensor g = rand_input(y1.shape(), 703, -1, 1, false);
    y1.backward(g);
    y2.backward(g);
    CHECK(max_abs_diff(x1.grad(), x2.grad()) < 1e-12);
    CHECK(max_abs_diff(w1.grad(), w2.grad()) < 1e-12);
    CHECK(max_abs_diff(b1.grad(), b2.grad()) < 1e-12);
  }
}
