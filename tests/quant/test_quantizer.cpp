// Quantizer: fused QDQ op (bit-exact with the int8 runtime's quantize/dequantize), STE, calibration and
// analyzers, range learning (AIMET min/max and LSQ), stochastic rounding, float quantizer.
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/kernels/requant.hpp"
#include "engine/ops/ops.hpp"
#include "quant/fake_quant.hpp"
#include "quant/quantizer.hpp"
#include "tests/support/gradcheck.hpp"

#include <cmath>
#include <vector>

using namespace qforge;
using namespace qforge::quant;

namespace {

QuantizerSettings settings(int bw, bool sym, QuantScheme scheme = QuantScheme::tf) {
  QuantizerSettings s;
  s.grid.bitwidth = bw;
  s.grid.symmetric = sym;
  s.scheme = scheme;
  return s;
}

Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  Tensor t = Tensor::randn(shape, g);
  return ops::mul(t, scale);
}

Quantizer calibrated(QuantizerSettings s, const Tensor& x) {
  Quantizer q(s, "q");
  q.start_calibration();
  q.forward(x);
  REQUIRE(q.compute_encoding());
  return q;
}

}  // namespace

TEST_CASE("quantizer: qdq equals the int8 runtime's dequantize(quantize(x)) bit for bit, ties included") {
  for (bool sym : {false, true}) {
    Tensor x = randn({4096}, 7, 2.0);
    Quantizer q = calibrated(settings(8, sym), x);
    const Encoding e = q.encodings()[0];
    const AffineParams p = affine_params(e);
    // add exact ties of the grid and out-of-range values
    std::vector<float> xs = x.to_vector<float>();
    for (int k = -140; k < 140; ++k) xs.push_back((k + 0.5f) * p.scale);
    xs.push_back(1e30f);
    xs.push_back(-1e30f);
    Tensor xt = Tensor::from_vector(xs, {static_cast<int64_t>(xs.size())});
    Tensor y = q.forward(xt);
    const float* py = y.data<float>();
    const int32_t z = static_cast<int32_t>(-e.offset);
    const int32_t qmax = static_cast<int32_t>(e.steps());
    int bad = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const int32_t code = kernels::quantize_value(xs[i], p.inv_scale, z, 0, qmax);
      const float ref = kernels::dequantize_value(code, p.scale, z);
      if (!(ref == py[i])) ++bad;
    }
    CHECK(bad == 0);
  }
}

TEST_CASE("quantizer: straight-through gradient inside the grid, zero outside") {
  Quantizer q(settings(8, false), "act");
  q.set_encodings({compute_encoding(-1, 3, GridSpec{})});
  // grid: r in [-64, 191] with scale 4/255; edges at -64.5 and 191.5 (ties round up)
  const float s = static_cast<float>(4.0 / 255);
  Tensor x = Tensor::from_vector(std::vector<float>{0.5f, -1.0f, -1.2f, 2.99f, 3.2f, -64.5f * s, 191.5f * s, 191.4f * s},
                                 {8})
                 .set_requires_grad(true);
  Tensor y = q.forward(x);
  y.backward(Tensor::full({8}, 2.0));
  const auto g = x.grad().to_vector<float>();
  CHECK(g == std::vector<float>{2, 2, 0, 2, 0, 2, 0, 2});
  CHECK(y.to_vector<float>()[0] == doctest::Approx(0.5019608).epsilon(1e-6));
  CHECK(y.to_vector<float>()[4] == doctest::Approx(2.9960784).epsilon(1e-6));
}

TEST_CASE("quantizer: disabled or uncalibrated quantizers pass values through") {
  Quantizer q(settings(4, false), "q");
  Tensor x = randn({10}, 1);
  CHECK(q.forward(x).same(x));
  q.set_encodings({compute_encoding(-1, 1, q.settings().grid)});
  CHECK_FALSE(q.forward(x).same(x));
  q.set_enabled(false);
  CHECK(q.forward(x).same(x));
  CHECK_THROWS_AS(Quantizer(settings(1, false)), Error);
  CHECK_THROWS_AS(Quantizer(settings(32, false)), Error);
  QuantizerSettings b = settings(32, true);
  b.allow_32 = true;
  CHECK_NOTHROW(Quantizer{b});
}

TEST_CASE("quantizer: tf calibration keeps running min/max over batches") {
  Quantizer q(settings(8, false), "q");
  q.start_calibration();
  q.forward(Tensor::from_vector(std::vector<float>{-0.5f, 1.0f}, {2}));
  q.forward(Tensor::from_vector(std::vector<float>{0.1f, 3.0f}, {2}));
  q.forward(Tensor::from_vector(std::vector<float>{-1.0f, 0.0f}, {2}));
  REQUIRE(q.compute_encoding());
  const Encoding e = q.encodings()[0];
  const Encoding ref = compute_encoding(-1, 3, q.settings().grid);
  CHECK(e == ref);
  CHECK_FALSE(q.calibrating());
  // nothing observed: compute_encoding reports it
  Quantizer empty(settings(8, false));
  empty.start_calibration();
  CHECK_FALSE(empty.compute_encoding());
}

TEST_CASE("quantizer: all-zero data gives AIMET's [-1, 1] encoding") {
  Quantizer q = calibrated(settings(8, false), Tensor::zeros({16}));
  CHECK(q.encodings()[0].min == doctest::Approx(-1.00392).epsilon(1e-5));
  CHECK(q.encodings()[0].max == doctest::Approx(0.996078).epsilon(1e-5));
}

TEST_CASE("quantizer: per-channel axis 0 gives one encoding per output channel") {
  Tensor w = Tensor::from_vector(std::vector<float>{-0.5f, 0.25f, 1.0f, 0, 0, 0, -2.0f, 0.1f, 0.3f}, {3, 3});
  QuantizerSettings s = settings(8, true);
  s.per_channel = true;
  s.is_param = true;
  Quantizer q = calibrated(s, w);
  REQUIRE(q.encodings().size() == 3);
  CHECK(q.encodings()[0].delta == doctest::Approx(1.0 / 127));
  CHECK(q.encodings()[2].delta == doctest::Approx(2.0 / 127));
  Tensor y = q.forward(w);
  CHECK(y.at({2, 0}) == doctest::Approx(-2.0));
  CHECK_THROWS_AS(q.forward(Tensor::zeros({4, 3})), Error);
}

TEST_CASE("quantizer: tf_enhanced, percentile and mse clip outliers that tf keeps") {
  // At 4 bits one outlier in 20000 costs more in quantization noise than in clipping noise.
  Tensor x = randn({20000}, 3);
  std::vector<float> v = x.to_vector<float>();
  v[0] = 40.0f;
  Tensor xo = Tensor::from_vector(v, {20000});
  const Encoding tf = calibrated(settings(4, false, QuantScheme::tf), xo).encodings()[0];
  const Encoding tfe = calibrated(settings(4, false, QuantScheme::tf_enhanced), xo).encodings()[0];
  QuantizerSettings ps = settings(4, false, QuantScheme::percentile);
  ps.percentile = 99.9;
  const Encoding pct = calibrated(ps, xo).encodings()[0];
  const Encoding mse = calibrated(settings(4, false, QuantScheme::mse), xo).encodings()[0];
  CHECK(tf.max == doctest::Approx(40.0).epsilon(0.02));
  CHECK(tfe.max < 20.0);
  CHECK(pct.max < 10.0);
  CHECK(mse.max < 20.0);
  // symmetric tf_enhanced keeps AIMET's symmetric offset
  const Encoding tfes = calibrated(settings(4, true, QuantScheme::tf_enhanced), xo).encodings()[0];
  CHECK(tfes.offset == -8);
  CHECK(tfes.max < 20.0);
  // at 8 bits tf_enhanced keeps the outlier (the saturation cost dominates), like AIMET
  const Encoding tfe8 = calibrated(settings(8, false, QuantScheme::tf_enhanced), xo).encodings()[0];
  CHECK(tfe8.max > 30.0);
  // measured error on the data: the histogram schemes beat tf
  auto err = [&](const Encoding& e) {
    Quantizer q(settings(4, e.symmetric), "e");
    q.set_encodings({e});
    Tensor y = q.forward(xo);
    return ops::mse_loss(y, xo).item();
  };
  CHECK(err(tfe) < err(tf));
  CHECK(err(mse) < err(tf));
  CHECK(err(mse) <= err(tfe) * 1.05);
  // percentile 100 is tf
  QuantizerSettings p100 = settings(4, false, QuantScheme::percentile);
  p100.percentile = 100;
  CHECK(calibrated(p100, xo).encodings()[0] == tf);
}

TEST_CASE("quantizer: histogram grows to cover later batches instead of dropping them") {
  QuantizerSettings s = settings(8, false, QuantScheme::percentile);
  s.percentile = 100.0 - 1e-9;
  Quantizer q(s, "q");
  q.start_calibration();
  q.forward(randn({1000}, 1, 0.1));
  q.forward(randn({1000}, 2, 5.0));
  REQUIRE(q.compute_encoding());
  CHECK(q.encodings()[0].max > 5.0);
  // AIMET v1 compat: fixed first-batch range
  s.histogram.fixed_range = true;
  Quantizer f(s, "f");
  f.start_calibration();
  f.forward(randn({1000}, 1, 0.1));
  f.forward(randn({1000}, 2, 5.0));
  REQUIRE(f.compute_encoding());
  CHECK(f.encodings()[0].max < 1.0);
}

TEST_CASE("quantizer: encoding constraints pin the range") {
  QuantizerSettings s = settings(8, false);
  s.constraint_min = 0.0;
  s.constraint_max = 1.0;
  Quantizer q = calibrated(s, randn({100}, 4, 3.0));
  CHECK(q.encodings()[0].min == 0);
  CHECK(q.encodings()[0].max == doctest::Approx(1.0));
}

namespace {

// Naive per-element reference for the AIMET range-learning gradients (aimet-compat.md §6.2), in double.
struct AimetRef {
  double dmin = 0, dmax = 0;
  std::vector<double> dx;
};
AimetRef aimet_reference(const std::vector<float>& x, const std::vector<float>& g, double mn, double mx, int bw,
                         bool sym) {
  const double n = std::pow(2.0, bw) - 1;
  const float delta = static_cast<float>(sym ? mx / std::floor(n / 2) : (mx - mn) / n);
  const double off = sym ? -std::ceil(n / 2) : -std::clamp(std::round(-mn / double(delta)), 0.0, n);
  const float inv = 1.0f / delta;
  double S = 0, O = 0;
  AimetRef r;
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = x[i] * inv;
    const double rr = kernels::round_half_up(v);
    const bool in = rr - off >= 0 && rr - off <= n;
    r.dx.push_back(in ? g[i] : 0.0);
    const double q = std::clamp(rr - off, 0.0, n);
    S += (q + off - (in ? double(v) : 0.0)) * g[i];
    O += in ? 0.0 : g[i];
  }
  if (sym) {
    r.dmax = S / std::floor(n / 2);
    r.dmin = -r.dmax;
  } else {
    const double w = mx - mn;
    r.dmin = -S / n + mx * n / (w * w) * double(delta) * O;
    r.dmax = S / n - mn * n / (w * w) * double(delta) * O;
  }
  return r;
}

}  // namespace

TEST_CASE("quantizer: AIMET range learning gives AIMET's min/max gradients (asymmetric and symmetric)") {
  for (bool sym : {false, true}) {
    QuantizerSettings s = settings(4, sym);
    s.range_learning = RangeLearning::aimet;
    Tensor x0 = randn({3000}, 11, 1.5);  // large enough to take the chunked/parallel path
    Quantizer q(s, "q");
    q.set_encodings({compute_encoding(-1.0, 2.0, s.grid)});
    auto params = q.parameters();
    REQUIRE(params.size() == 2);
    const double mn = params[0].item(), mx = params[1].item();
    Tensor x = x0.clone().set_requires_grad(true);
    Tensor g = randn({3000}, 12);
    q.forward(x).backward(g);
    const AimetRef ref = aimet_reference(x0.to_vector<float>(), g.to_vector<float>(), mn, mx, 4, sym);
    CHECK(params[0].grad().item() == doctest::Approx(ref.dmin).epsilon(1e-4));
    CHECK(params[1].grad().item() == doctest::Approx(ref.dmax).epsilon(1e-4));
    CHECK(x.grad().to_vector<double>() == ref.dx);
  }
}

TEST_CASE("quantizer: LSQ gradients equal the learnable PyTorch op with LSQ's gradient scale") {
  QuantizerSettings s = settings(4, false);
  s.range_learning = RangeLearning::lsq;
  Quantizer q(s, "q");
  q.set_encodings({compute_encoding(-0.8, 1.7, s.grid)});
  const Encoding e = q.encodings()[0];
  Tensor x0 = randn({8, 50}, 21);
  Tensor g = randn({8, 50}, 22);
  Tensor x = x0.clone().set_requires_grad(true);
  q.forward(x).backward(g);
  auto params = q.parameters();
  REQUIRE(params.size() == 2);
  // reference: torch's op on the [0, N] grid with zp = -offset; N per sample = 50, Qp = N + offset
  const double gf = 1.0 / std::sqrt(50.0 * (15 + e.offset));
  Tensor xs = x0.clone().set_requires_grad(true);
  Tensor sc = Tensor::from_vector(std::vector<float>{static_cast<float>(e.delta)}, {1}).set_requires_grad(true);
  Tensor zp = Tensor::from_vector(std::vector<float>{static_cast<float>(-e.offset)}, {1}).set_requires_grad(true);
  Tensor yr = _fake_quantize_learnable_per_tensor_affine(xs, sc, zp, 0, 15, gf);
  yr.backward(g);
  CHECK(qforge::testing::max_abs_diff(q.forward(x0), yr) == 0);
  CHECK(qforge::testing::max_abs_diff(x.grad(), xs.grad()) == 0);
  CHECK(params[0].grad().item() == doctest::Approx(sc.grad().item()).epsilon(1e-4));
  CHECK(params[1].grad().item() == doctest::Approx(zp.grad().item()).epsilon(1e-4));
}

TEST_CASE("quantizer: LSQ training steps reduce the quantization error") {
  QuantizerSettings s = settings(3, true);
  s.range_learning = RangeLearning::lsq;
  Tensor x = randn({1, 2000}, 31);
  Quantizer q(s, "q");
  q.set_encodings({compute_encoding(-4, 4, s.grid)});  // far too wide
  auto params = q.parameters();
  REQUIRE(params.size() == 1);  // symmetric: zero point fixed
  double first = 0, last = 0;
  for (int step = 0; step < 100; ++step) {
    Tensor loss = ops::mse_loss(q.forward(x), x);
    if (step == 0) first = loss.item();
    last = loss.item();
    params[0].zero_grad();
    loss.backward();
    NoGradGuard ng;
    float* p = params[0].data<float>();
    p[0] -= 10.0f * params[0].grad().data<float>()[0];
    params[0].bump_version();
  }
  CHECK(last < 0.5 * first);
}

TEST_CASE("quantizer: stochastic rounding is unbiased and stays on the grid") {
  QuantizerSettings s = settings(8, false);
  s.rounding = RoundingMode::stochastic;
  s.seed = 5;
  Quantizer q(s, "q");
  q.set_encodings({compute_encoding(-1, 1, s.grid)});
  const double delta = q.encodings()[0].delta;
  Tensor x = Tensor::full({20000}, 0.3 * delta + 0.1);
  Tensor y = q.forward(x);
  const auto v = y.to_vector<double>();
  double mean = 0;
  for (double a : v) {
    mean += a;
    const double k = a / delta;
    CHECK(std::abs(k - std::round(k)) < 1e-3);
  }
  mean /= v.size();
  CHECK(mean == doctest::Approx(0.3 * delta + 0.1).epsilon(2e-4));
}

TEST_CASE("quantizer: float quantizer rounds to half precision and passes the gradient") {
  QuantizerSettings s;
  s.grid.bitwidth = 16;
  s.grid.is_float = true;
  Quantizer q(s, "f");
  q.start_calibration();
  q.forward(Tensor::ones({2}));
  q.compute_encoding();
  Tensor x = Tensor::from_vector(std::vector<float>{1.0009765625f * 1.00001f, 1.0f / 3.0f, 70000.0f}, {3})
                 .set_requires_grad(true);
  Tensor y = q.forward(x);
  const auto v = y.to_vector<float>();
  CHECK(v[0] == 1.0009765625f);
  CHECK(v[1] == 0.333251953125f);
  CHECK(std::isinf(v[2]));
  y.backward(Tensor::ones({3}));
  CHECK(x.grad().to_vector<float>() == std::vector<float>{1, 1, 1});
  QuantizerSettings bad = s;
  bad.grid.bitwidth = 8;
  CHECK_THROWS_AS(Quantizer{bad}, Error);
}

TEST_CASE("quantizer: describe lists name, settings and encoding") {
  Quantizer q = calibrated(settings(8, false), Tensor::from_vector(std::vector<float>{-1, 3}, {2}));
  q.set_name("conv1.output");
  const std::string d = q.describe();
  CHECK(d.find("conv1.output") != std::string::npos);
  CHECK(d.find("offset=-64") != std::string::npos);
}
