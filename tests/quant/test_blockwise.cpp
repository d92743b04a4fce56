// Blockwise and LPBQ weight quantization (quant/blockwise.hpp): block layout, calibration, LSQ block
// scales, LPBQ compression, the QuantSim conversion, and the int8 runtime == exact mode on LPBQ models.
#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/zoo.hpp"
#include "quant/blockwise_sim.hpp"
#include "quant/quantizer.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/lower.hpp"
#include "tests/quant/runtime/helpers.hpp"
#include "tests/support/fixtures.hpp"

#include <cmath>

using namespace qforge;
using namespace qforge::quant;
using qforge::testing::error_of;

namespace {

Tensor randn(const Shape& shape, uint64_t seed, double scale = 1.0) {
  Generator g(seed);
  return ops::mul(Tensor::randn(shape, g), scale);
}

QuantizerSettings weight_settings(int bw, int64_t block, int dbw = 0) {
  QuantizerSettings s;
  s.grid.bitwidth = bw;
  s.grid.symmetric = true;
  s.is_param = true;
  s.block.block_size = block;
  s.block.decompressed_bw = dbw;
  return s;
}

Quantizer calibrated(const QuantizerSettings& s, const Tensor& w) {
  Quantizer q(s, "w");
  q.start_calibration();
  q.forward(w);
  REQUIRE(q.compute_encoding());
  return q;
}

double block_absmax(const Tensor& w, int64_t o, int64_t b, int64_t block) {
  const int64_t in = w.size(1), k = w.numel() / (w.size(0) * in);
  const auto v = w.contiguous().to_vector<float>();
  double m = 0;
  for (int64_t i = b * block; i < (b + 1) * block; ++i)
    for (int64_t j = 0; j < k; ++j) m = std::max(m, std::fabs(double(v[(o * in + i) * k + j])));
  return m;
}

// A zoo model in a W4A8 per-channel QuantSim calibrated on random images, then made LPBQ/blockwise.
qforge::testing::SimFixture lpbq_sim(const std::string& name, int64_t block, bool lpbq = true) {
  QuantSimOptions opt;
  opt.config = "per_channel";
  opt.param_bw = 4;
  auto f = qforge::testing::make_sim(name, opt);
  BlockwiseOptions bo;
  bo.block_size = block;
  bo.lpbq = lpbq;
  const auto r = apply_blockwise(*f.sim, bo);
  REQUIRE(!r.converted.empty());
  return f;
}

}  // namespace

TEST_CASE("blockwise: one encoding per (output channel, block), each from its own block's range") {
  Tensor w = randn({3, 8}, 1);
  {
    NoGradGuard ng;
    w.data<float>()[1 * 8 + 5] = 9.0f;  // block (1, 1) of size 4 gets a large value
  }
  Quantizer q = calibrated(weight_settings(4, 4), w);
  const auto& e = q.encodings();
  REQUIRE(e.size() == 6);
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t b = 0; b < 2; ++b) CHECK(e[o * 2 + b].delta == doctest::Approx(block_absmax(w, o, b, 4) / 7));
  CHECK(e[3].delta == doctest::Approx(9.0 / 7));
  CHECK(e[2].delta < 0.5 * e[3].delta);  // the other block of that channel keeps a fine grid
  // Fake-quant: every element lies on its own block's grid.
  NoGradGuard ng;
  const auto y = q.forward(w).to_vector<float>();
  for (int64_t o = 0; o < 3; ++o)
    for (int64_t i = 0; i < 8; ++i) {
      const double d = e[o * 2 + i / 4].delta, v = y[o * 8 + i] / d;
      CHECK(std::fabs(v - std::nearbyint(v)) < 1e-3);
    }
}

TEST_CASE("blockwise: conv blocks span block_size input channels times the whole kernel") {
  Tensor w = randn({2, 4, 3, 3}, 2);
  Quantizer q = calibrated(weight_settings(8, 2), w);
  REQUIRE(q.encodings().size() == 4);
  for (int64_t o = 0; o < 2; ++o)
    for (int64_t b = 0; b < 2; ++b)
      CHECK(q.encodings()[o * 2 + b].delta == doctest::Approx(block_absmax(w, o, b, 2) / 127));
}

TEST_CASE("blockwise: equals per-channel quantization of the [O*nb, B*K] view, values and LSQ gradients") {
  Tensor w0 = randn({4, 12}, 3);
  QuantizerSettings sb = weight_settings(4, 3);
  sb.range_learning = RangeLearning::lsq;
  QuantizerSettings sc = weight_settings(4, 0);
  sc.per_channel = true;
  sc.range_learning = RangeLearning::lsq;
  Quantizer qb = calibrated(sb, w0);
  Quantizer qc = calibrated(sc, w0.reshape({16, 3}));
  REQUIRE(qb.parameters().size() == 1);
  REQUIRE(qb.parameters()[0].numel() == 16);  // one learnable scale per block
  Tensor g = randn({4, 12}, 4);
  Tensor xb = w0.clone().set_requires_grad(true), xc = w0.reshape({16, 3}).clone().set_requires_grad(true);
  Tensor yb = qb.forward(xb), yc = qc.forward(xc);
  CHECK(yb.to_vector<float>() == yc.to_vector<float>());
  ops::sum(ops::mul(yb, g)).backward();
  ops::sum(ops::mul(yc, g.reshape({16, 3}))).backward();
  CHECK(qb.parameters()[0].grad().to_vector<float>() == qc.parameters()[0].grad().to_vector<float>());
  CHECK(xb.grad().to_vector<float>() == xc.grad().to_vector<float>());
  // a loss on block (2, 1) alone moves only that block's scale
  Quantizer q2 = calibrated(sb, w0);
  Tensor mask = Tensor::zeros({4, 12});
  {
    NoGradGuard ng;
    for (int i = 3; i < 6; ++i) mask.data<float>()[2 * 12 + i] = 1.0f;
  }
  ops::sum(ops::mul(q2.forward(w0), mask)).backward();
  const auto gr = q2.parameters()[0].grad().to_vector<float>();
  for (int i = 0; i < 16; ++i) CHECK((gr[i] != 0.0f) == (i == 2 * 4 + 1));
}

TEST_CASE("blockwise: a block size that does not divide the input channels is refused, naming the tensor") {
  Quantizer q(weight_settings(4, 5), "fc.weight");
  q.start_calibration();
  CHECK(error_of([&] { q.forward(randn({2, 12}, 5)); }).find("block size 5 does not divide the 12 input channels") !=
        std::string::npos);
  auto f = qforge::testing::make_sim("mnist-cnn");
  BlockwiseOptions bo;
  bo.block_size = 5;  // conv2 has 16 input channels, fc 1568
  const std::string msg = error_of([&] { apply_blockwise(*f.sim, bo); });
  CHECK(msg.find("conv2.weight") != std::string::npos);
  CHECK(msg.find("does not divide") != std::string::npos);
  CHECK(!f.sim->quantizer("fc.weight").settings().block.blockwise());  // nothing changed
}

TEST_CASE("lpbq: per-channel scale = max block scale / 2^(dbw-bw), multipliers rounded half to even in [1, 16]") {
  const double c = 0.1 / 16;
  const LpbqScales s = lpbq_compress({0.1, 0.05, 2.5 * c, 3.5 * c, 1e-9, 0.2, 0.2}, 1, 4);
  REQUIRE(s.channel_scale.size() == 1);
  CHECK(s.channel_scale[0] == doctest::Approx(0.2 / 16));
  const LpbqScales t = lpbq_compress({0.1, 0.05, 2.5 * c, 3.5 * c, 1e-9}, 1, 4);
  CHECK(t.channel_scale[0] == doctest::Approx(c));
  CHECK(t.multiplier == std::vector<int32_t>{16, 8, 2, 4, 1});  // 2.5 -> 2, 3.5 -> 4, tiny -> 1
  const auto e = lpbq_block_encodings(t, 4);
  REQUIRE(e.size() == 5);
  CHECK(e[1].delta == doctest::Approx(8 * c));
  CHECK(e[1].offset == -8);
}

TEST_CASE("lpbq: calibrated block scales lie on the per-channel grid; LSQ steps keep them there") {
  Tensor w = randn({3, 16}, 6);
  QuantizerSettings s = weight_settings(4, 4, 8);
  s.range_learning = RangeLearning::lsq;
  Quantizer q = calibrated(s, w);
  auto on_grid = [&] {
    const LpbqScales& l = q.lpbq();
    REQUIRE(l.channel_scale.size() == 3);
    REQUIRE(l.multiplier.size() == 12);
    for (int64_t i = 0; i < 12; ++i) {
      CHECK(l.multiplier[i] >= 1);
      CHECK(l.multiplier[i] <= 16);
      CHECK(q.encodings()[i].delta == doctest::Approx(l.channel_scale[i / 4] * l.multiplier[i]).epsilon(1e-12));
    }
    for (int64_t o = 0; o < 3; ++o)
      CHECK(*std::max_element(l.multiplier.begin() + o * 4, l.multiplier.begin() + o * 4 + 4) == 16);
  };
  on_grid();
  auto params = q.parameters();
  REQUIRE(params.size() == 1);
  for (int step = 0; step < 5; ++step) {
    params[0].zero_grad();
    ops::mse_loss(q.forward(w), w).backward();
    NoGradGuard ng;
    float* p = params[0].data<float>();
    const float* g = params[0].grad().data<float>();
    for (int64_t i = 0; i < params[0].numel(); ++i) p[i] -= 0.05f * g[i];
    params[0].bump_version();
  }
  on_grid();
}

TEST_CASE("lpbq: int8 runtime equals exact mode on every value (mnist-cnn, lstm, char-lstm-like text model)") {
  struct Case {
    std::string model;
    int64_t block;
  };
  for (const Case& c : {Case{"mnist-cnn", 16}, Case{"mnist-cnn", 4}, Case{"lstm", 4}, Case{"mlp", 16}}) {
    CAPTURE(c.model);
    CAPTURE(c.block);
    auto f = lpbq_sim(c.model, c.block);
    const runtime::Program p = runtime::lower(*f.sim);
    // The expanded codes reach beyond the 4-bit range (q * multiplier), at per-channel scales.
    bool wide = false, pc = false;
    for (const auto& op : p.ops) {
      pc = pc || op.per_channel;
      for (int8_t v : op.weights) wide = wide || v > 7 || v < -8;
    }
    CHECK(pc);
    CHECK(wide);
    const Tensor x = qforge::testing::images(6, 42);
    CHECK(qforge::testing::count_differences(p, x) == 0);
    // exact mode stays close to the float simulation (same grid, integer requantization)
    NoGradGuard ng;
    const Tensor sim_out = f.sim->forward({x})[0];
    const Tensor exact_out = runtime::execute_exact(p, x);
    const auto a = sim_out.to_vector<float>(), b = exact_out.to_vector<float>();
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      num += (a[i] - b[i]) * (a[i] - b[i]);
      den += a[i] * a[i];
    }
    CHECK(num < 0.05 * den);
  }
}

TEST_CASE("blockwise: plain blockwise weights are refused by the int8 lowering, naming the layer") {
  auto f = lpbq_sim("mnist-cnn", 16, /*lpbq=*/false);
  std::string msg;
  try {
    runtime::lower(*f.sim);
  } catch (const Error& e) {
    msg = e.what();
  }
  CHECK(msg.find("layer conv2") != std::string::npos);
  CHECK(msg.find("LPBQ") != std::string::npos);
}

TEST_CASE("blockwise: layers with fewer input channels than a block keep per-channel; stats describe blocks") {
  auto f = lpbq_sim("mnist-cnn", 32);
  CHECK(!f.sim->quantizer("conv1.weight").settings().block.blockwise());  // 1 input channel
  CHECK(!f.sim->quantizer("conv2.weight").settings().block.blockwise());  // 16 < 32
  CHECK(f.sim->quantizer("fc.weight").settings().block.lpbq());          // 1568 = 49 x 32
  const auto st = block_scale_stats(*f.sim);
  REQUIRE(st.size() == 1);
  CHECK(st[0]["name"] == "fc.weight");
  CHECK(st[0]["blocks"] == 10 * 49);
  CHECK(st[0]["channels"] == 10);
  CHECK(st[0]["mean_channel_spread"].get<double>() >= 1.0);
  int64_t total = 0;
  for (auto& h : st[0]["multiplier_histogram"]) total += h.get<int64_t>();
  CHECK(total == 490);
  CHECK(st[0]["multiplier_histogram"][15].get<int64_t>() >= 10);  // every channel has a block at 16
}
