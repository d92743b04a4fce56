// SeqMSE: the search equals a brute-force scan over the candidates for each loss, the chosen encodings
// are frozen, bad options are refused, and W4 per-channel SeqMSE beats tf encodings on a small model.
#include <doctest/doctest.h>

#include "quant/ptq/seq_mse.hpp"
#include "tests/quant/ptq/ptq_test_util.hpp"

#include <cmath>
#include <limits>

using namespace qforge;
using namespace qforge::quant::ptq;
using namespace qforge::ptq_test;

namespace {

// Weight [O, K] with one outlier per row (so clipping the range can pay off) and inputs [N, K].
struct Layer {
  int64_t O = 6, K = 24, N = 96;
  std::vector<float> w, x;
  Layer() {
    w = randn({O, K}, 7, 0.3).to_vector<float>();
    x = randn({N, K}, 8).to_vector<float>();
    for (int64_t o = 0; o < O; ++o) w[o * K + (o * 5) % K] = static_cast<float>(1.0 + 0.4 * o) * (o % 2 ? -1.0f : 1.0f);
  }
};

// Brute force, written independently of the library's search: for candidate i of channel c, the
// encoding compute_encoding(-m_c i/N, m_c i/N) (symmetric) applied by a per-tensor Quantizer to the row
// alone, the row's outputs x . wq_c in double, the loss by its definition. Ties keep the wider range.
std::vector<int64_t> brute_force(const Layer& L, int64_t N, SeqMseLoss loss, const quant::GridSpec& grid) {
  std::vector<int64_t> best(L.O);
  for (int64_t c = 0; c < L.O; ++c) {
    std::vector<float> row(L.w.begin() + c * L.K, L.w.begin() + (c + 1) * L.K);
    double m = 0;
    for (float v : row) m = std::max(m, std::fabs(static_cast<double>(v)));
    double best_loss = std::numeric_limits<double>::infinity();
    for (int64_t i = N; i >= 1; --i) {
      quant::QuantizerSettings s;
      s.grid = grid;
      s.is_param = true;
      quant::Quantizer q(s);
      q.set_encodings({quant::compute_encoding(-m * i / N, m * i / N, grid)});
      const auto wq = q.forward(Tensor::from_vector(row, {L.K})).to_vector<float>();
      double err = 0, sig = 0;
      for (int64_t n = 0; n < L.N; ++n) {
        double y = 0, t = 0;
        for (int64_t k = 0; k < L.K; ++k) {
          y += static_cast<double>(L.x[n * L.K + k]) * wq[k];
          t += static_cast<double>(L.x[n * L.K + k]) * row[k];
        }
        err += loss == SeqMseLoss::l1 ? std::fabs(y - t) : (y - t) * (y - t);
        sig += t * t;
      }
      const double l = loss == SeqMseLoss::sqnr ? -10 * std::log10((sig / L.N) / (err / L.N + 1e-10)) : err;
      if (best[c] == 0 || l < best_loss - 1e-9 * std::fabs(best_loss)) best_loss = l, best[c] = i;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("seq_mse: the per-channel search picks the candidate a brute-force scan picks, for mse, l1 and sqnr") {
  const Layer L;
  quant::GridSpec grid;
  grid.bitwidth = 4;
  grid.symmetric = true;
  const Tensor w = Tensor::from_vector(L.w, {L.O, L.K}), x = Tensor::from_vector(L.x, {L.N, L.K});
  auto layer = [&](const Tensor& wq) { return ops::linear(x, wq); };
  const Tensor target = layer(w);
  for (SeqMseLoss loss : {SeqMseLoss::mse, SeqMseLoss::l1, SeqMseLoss::sqnr}) {
    CAPTURE(seq_mse_loss_name(loss));
    const auto grids = per_channel_candidates(w, grid, true);
    const CandidateSearch s = search_candidates(*grids, w.shape(), 20, loss, layer, target, -1);
    const auto expect = brute_force(L, 20, loss, grid);
    for (int64_t c = 0; c < L.O; ++c) {
      CAPTURE(c);
      CHECK(s.choice[c] == expect[c]);
    }
    int64_t clipped = 0;
    for (int64_t c = 0; c < L.O; ++c) {
      CHECK(s.loss_chosen[c] <= s.loss_full[c]);
      clipped += s.choice[c] < 20;
    }
    CHECK(clipped > 0);  // the outliers make a narrower range win somewhere: the search did something
    // The encodings are the candidates' own: channel c at choice/N of its max |w|.
    std::vector<double> frac;
    for (auto i : s.choice) frac.push_back(i / 20.0);
    const auto enc = grids->encodings(frac);
    REQUIRE(enc.size() == static_cast<size_t>(L.O));
    double m0 = 0;
    for (int64_t k = 0; k < L.K; ++k) m0 = std::max(m0, std::fabs(static_cast<double>(L.w[k])));
    CHECK(enc[0] == quant::compute_encoding(-m0 * frac[0], m0 * frac[0], grid));
  }
}

TEST_CASE("seq_mse: a per-tensor quantizer gets one candidate for the whole tensor, the best summed loss") {
  const Layer L;
  quant::GridSpec grid;
  grid.bitwidth = 3;
  const Tensor w = Tensor::from_vector(L.w, {L.O, L.K}), x = Tensor::from_vector(L.x, {L.N, L.K});
  auto layer = [&](const Tensor& wq) { return ops::linear(x, wq); };
  const Tensor target = layer(w);
  const auto grids = per_channel_candidates(w, grid, false);
  const CandidateSearch s = search_candidates(*grids, w.shape(), 10, SeqMseLoss::mse, layer, target, -1);
  for (auto i : s.choice) CHECK(i == s.choice[0]);
  // Brute force over the 10 tensor-wide candidates (asymmetric grid: [min, max] * i/10).
  const auto wv = w.to_vector<float>();
  const double lo = *std::min_element(wv.begin(), wv.end()), hi = *std::max_element(wv.begin(), wv.end());
  int64_t best = 0;
  double best_loss = std::numeric_limits<double>::infinity();
  for (int64_t i = 10; i >= 1; --i) {
    quant::QuantizerSettings qs;
    qs.grid = grid;
    quant::Quantizer q(qs);
    q.set_encodings({quant::compute_encoding(lo * i / 10, hi * i / 10, grid)});
    const double l = [&] { const Tensor d = ops::sub(ops::linear(x, q.forward(w)), target); return ops::sum(ops::mul(d, d)).item(); }();
    if (best == 0 || l < best_loss * (1 - 1e-6)) best_loss = l, best = i;
  }
  CHECK(s.choice[0] == best);
  CHECK(grids->encodings({best / 10.0}).size() == 1);
}

TEST_CASE("seq_mse: bad options are refused with a clear message") {
  SeqMseOptions o;
  o.num_candidates = 0;
  CHECK_THROWS_WITH_AS(validate(o), doctest::Contains("at least 1"), InputError);
  o.num_candidates = 20;
  o.num_samples = 0;
  CHECK_THROWS_AS(validate(o), InputError);
  o.num_samples = 16;
  o.sim.param_bw = 1;
  CHECK_THROWS_AS(validate(o), InputError);
  o.sim.param_bw = 4;
  CHECK_NOTHROW(validate(o));
  CHECK_THROWS_WITH_AS(parse_seq_mse_loss("l2"), doctest::Contains("mse, l1 or sqnr"), InputError);
  CHECK(parse_seq_mse_loss("sqnr") == SeqMseLoss::sqnr);
  auto m = tiny_cnn(2);
  o.num_candidates = 0;
  CHECK_THROWS_AS(apply_seq_mse(m, {randn({4, 3, 6, 6}, 1)}, {randn({4, 3, 6, 6}, 1)}, o), InputError);
}

TEST_CASE("seq_mse: W4 per-channel encodings are frozen through calibration and beat tf on the conv layers' output MSE") {
  auto m = tiny_cnn(5);
  perturb_bn(*m, 4);
  const auto calib = batches({32, 3, 6, 6}, 4, 90);
  const auto held_out = batches({64, 3, 6, 6}, 2, 300);
  quant::QuantSimOptions so;
  so.param_bw = 4;
  so.config = "per_channel";
  SeqMseOptions o;
  o.sim = so;
  o.num_samples = 128;
  const SeqMseResult r = apply_seq_mse(m, {calib[0]}, calib, o);  // folds the BNs of m
  REQUIRE(r.layers.size() == 3);
  CHECK(r.param_encodings.at("conv1.weight").size() == 8);
  CHECK(r.param_encodings.at("conv2.weight").size() == 8);
  for (const auto& l : r.layers) CHECK(l.loss_seq_mse <= l.loss_tf);

  // Layer outputs (after the output quantizers in a sim) on held-out data, against the FP32 model's.
  const std::vector<std::string> names = {"conv1", "conv2", "fc"};
  auto outputs = [&](nn::Module& model) {
    std::vector<std::vector<Tensor>> out(names.size());
    std::vector<std::pair<nn::Module*, int>> hooks;
    for (size_t i = 0; i < names.size(); ++i) {
      nn::Module* mod = model.find(names[i]).get();
      REQUIRE(mod != nullptr);
      hooks.push_back({mod, mod->add_forward_hook([&out, i](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) {
                         out[i].push_back(o[0].detach().contiguous());
                       })});
    }
    for (const auto& x : held_out) run(model, x);
    for (auto& [mod, h] : hooks) mod->remove_hook(h);
    return out;
  };
  const auto fp = outputs(*m);
  auto calibrate = [&](nn::Module& mm) {
    for (const auto& b : calib) mm(b);
  };
  // Per layer: mean squared error relative to the FP32 output's mean square.
  auto layer_mse = [&](quant::QuantSim& sim) {
    const auto q = outputs(sim.model());
    std::vector<double> e(names.size());
    for (size_t i = 0; i < names.size(); ++i) {
      double num = 0, den = 0;
      for (size_t b = 0; b < held_out.size(); ++b) {
        const Tensor d = ops::sub(q[i][b], fp[i][b]);
        num += ops::mean(ops::mul(d, d)).item();
        den += ops::mean(ops::mul(fp[i][b], fp[i][b])).item();
      }
      e[i] = num / den;
    }
    return e;
  };
  std::vector<double> tf_mse, seq_mse;
  bool differs = false;
  {
    quant::QuantSim sim(m, {calib[0]}, so);
    sim.compute_encodings(calibrate);
    tf_mse = layer_mse(sim);
    for (const auto& [key, enc] : r.param_encodings)
      differs |= sim.quantizer(key.substr(0, key.find('.')) + ".weight").encodings() != enc;
  }
  {
    quant::QuantSim sim(m, {calib[0]}, so);
    r.apply_to(sim);
    sim.compute_encodings(calibrate);
    for (const auto& [key, enc] : r.param_encodings) {
      quant::Quantizer& q = sim.quantizer(key.substr(0, key.find('.')) + ".weight");
      CHECK(q.frozen());
      CHECK(q.encodings() == enc);  // calibration kept them
    }
    seq_mse = layer_mse(sim);
  }
  CHECK(differs);  // SeqMSE chose something other than the min/max ranges
  for (size_t i = 0; i < names.size(); ++i) {
    MESSAGE(names[i] << ": W4A8 per-channel relative output MSE on held-out data: tf " << tf_mse[i] << ", SeqMSE " << seq_mse[i]);
  }
  // The searched per-channel convs; fc is per-tensor under this config and inherits its inputs' error.
  CHECK(seq_mse[0] < tf_mse[0]);
  CHECK(seq_mse[1] < tf_mse[1]);
}
