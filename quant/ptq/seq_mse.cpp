// Sequential MSE. See seq_mse.hpp (Note [SeqMSE candidate grids]).
#include "quant/ptq/seq_mse.hpp"

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/graph_util.hpp"
#include "quant/qdq_kernels.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace qforge::quant::ptq {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Per-channel (or per-tensor) candidates: channel c's range [lo_c, hi_c] scaled by the fraction.
class PerChannelCandidates final : public CandidateGrids {
public:
  PerChannelCandidates(const Tensor& w, const GridSpec& grid, bool per_channel)
      : w_(w.contiguous().to(DType::f32).to_vector<float>()), grid_(grid), per_channel_(per_channel) {
    QFORGE_CHECK(w.dim() >= 1 && w.numel() > 0, "SeqMSE: empty weight");
    o_ = w.size(0);
    inner_ = w.numel() / o_;
    const int64_t ranges = per_channel ? o_ : 1;
    lo_.assign(ranges, 0.0);
    hi_.assign(ranges, 0.0);
    for (int64_t c = 0; c < o_; ++c) {
      const int64_t r = per_channel ? c : 0;
      for (int64_t k = 0; k < inner_; ++k) {
        const double v = w_[c * inner_ + k];
        lo_[r] = std::min(lo_[r], v);
        hi_[r] = std::max(hi_[r], v);
      }
    }
    if (grid.symmetric)  // AIMET: symmetric candidates are [-max|w|, max|w|] * fraction
      for (int64_t r = 0; r < ranges; ++r) {
        hi_[r] = std::max(-lo_[r], hi_[r]);
        lo_[r] = -hi_[r];
      }
  }
  int64_t channels() const override { return o_; }
  int64_t inner() const override { return inner_; }
  bool shared() const override { return !per_channel_; }
  void fake_quant_row(int64_t c, double fraction, float* out) const override {
    const AffineParams a = affine_params(encoding(per_channel_ ? c : 0, fraction));
    detail::qdq_forward<kernels::Tie::half_up>(w_.data() + c * inner_, out, inner_, detail::QdqParams<float>(a));
  }
  std::vector<Encoding> encodings(const std::vector<double>& fraction) const override {
    std::vector<Encoding> e;
    for (int64_t r = 0; r < (per_channel_ ? o_ : 1); ++r) e.push_back(encoding(r, fraction.at(r)));
    return e;
  }

private:
  Encoding encoding(int64_t r, double f) const { return compute_encoding(lo_[r] * f, hi_[r] * f, grid_); }

  std::vector<float> w_;
  GridSpec grid_;
  bool per_channel_;
  int64_t o_ = 0, inner_ = 0;
  std::vector<double> lo_, hi_;
};

Tensor concat_rows(const std::vector<Tensor>& xs) {
  return (xs.size() == 1 ? xs[0] : ops::concat(xs, 0)).contiguous().to(DType::f32);
}

}  // namespace

SeqMseLoss parse_seq_mse_loss(const std::string& s) {
  if (s == "mse") return SeqMseLoss::mse;
  if (s == "l1") return SeqMseLoss::l1;
  if (s == "sqnr") return SeqMseLoss::sqnr;
  throw InputError(fmt::format("SeqMSE: unknown loss '{}' (expected mse, l1 or sqnr)", s));
}

const char* seq_mse_loss_name(SeqMseLoss l) {
  switch (l) {
    case SeqMseLoss::mse: return "mse";
    case SeqMseLoss::l1: return "l1";
    case SeqMseLoss::sqnr: return "sqnr";
  }
  return "?";
}

void validate(const SeqMseOptions& o) {
  if (o.num_candidates < 1)
    throw InputError(fmt::format("SeqMSE: the number of candidates must be at least 1, got {}", o.num_candidates));
  if (o.num_samples < 1) throw InputError(fmt::format("SeqMSE: number of samples must be > 0, got {}", o.num_samples));
  if (o.sim.param_bw < 2 || o.sim.param_bw > 16)
    throw InputError(fmt::format("SeqMSE: parameter bitwidth {} is not supported: it searches integer weight grids of "
                                 "2 to 16 bits", o.sim.param_bw));
}

std::unique_ptr<CandidateGrids> per_channel_candidates(const Tensor& w, const GridSpec& grid, bool per_channel) {
  if (grid.is_float) throw InputError("SeqMSE: float (half precision) weight quantizers have no range to search");
  return std::make_unique<PerChannelCandidates>(w, grid, per_channel);
}

std::vector<double> channel_losses(const Tensor& y, const Tensor& target, int64_t channel_axis, SeqMseLoss loss) {
  QFORGE_CHECK(y.shape() == target.shape(), "SeqMSE: output shape {} differs from the target's {}", shape_str(y.shape()),
               shape_str(target.shape()));
  const int64_t axis = channel_axis < 0 ? channel_axis + y.dim() : channel_axis;
  QFORGE_CHECK(axis >= 0 && axis < y.dim(), "SeqMSE: channel axis {} out of range for shape {}", channel_axis,
               shape_str(y.shape()));
  const auto pv = y.contiguous().to(DType::f32).to_vector<float>();
  const auto tv = target.contiguous().to(DType::f32).to_vector<float>();
  const int64_t C = y.size(axis);
  int64_t inner = 1;
  for (int64_t d = axis + 1; d < y.dim(); ++d) inner *= y.size(d);
  const int64_t outer = y.numel() / (C * inner);
  std::vector<double> err(C, 0.0), sig(C, 0.0);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < C; ++c) {
      const size_t base = static_cast<size_t>((o * C + c) * inner);
      for (int64_t k = 0; k < inner; ++k) {
        const double t = tv[base + k], d = static_cast<double>(pv[base + k]) - t;
        err[c] += loss == SeqMseLoss::l1 ? std::fabs(d) : d * d;
        sig[c] += t * t;
      }
    }
  if (loss == SeqMseLoss::sqnr) {
    // AIMET neg_sqnr: means over the channel's elements, eps 1e-10 on the noise.
    const double n = static_cast<double>(outer * inner);
    for (int64_t c = 0; c < C; ++c) err[c] = -10.0 * std::log10((sig[c] / n) / (err[c] / n + 1e-10));
  }
  return err;
}

CandidateSearch search_candidates(const CandidateGrids& grids, const Shape& w_shape, int64_t num_candidates,
                                  SeqMseLoss loss, const std::function<Tensor(const Tensor&)>& layer,
                                  const Tensor& target, int64_t channel_axis) {
  QFORGE_CHECK(num_candidates >= 1, "SeqMSE: need at least one candidate");
  const int64_t O = grids.channels(), inner = grids.inner();
  std::vector<float> wq(static_cast<size_t>(O * inner));
  // losses[i - 1][c]: candidate i of channel c.
  std::vector<std::vector<double>> losses;
  for (int64_t i = 1; i <= num_candidates; ++i) {
    const double f = static_cast<double>(i) / static_cast<double>(num_candidates);
    for (int64_t c = 0; c < O; ++c) grids.fake_quant_row(c, f, wq.data() + c * inner);
    std::vector<double> l = channel_losses(layer(Tensor::from_vector(wq, w_shape)), target, channel_axis, loss);
    QFORGE_CHECK(static_cast<int64_t>(l.size()) == O, "SeqMSE: the layer output has {} channels, the weight {}",
                 l.size(), O);
    for (auto& v : l)
      if (std::isnan(v)) v = std::numeric_limits<double>::infinity();
    losses.push_back(std::move(l));
  }
  // Smallest loss wins; scanning from the widest range down with a strict '<', ties keep the wider range.
  CandidateSearch s;
  s.choice.assign(O, num_candidates);
  s.loss_full = losses.back();
  if (grids.shared()) {
    auto total = [&](int64_t i) {
      double sum = 0;
      for (double v : losses[i - 1]) sum += v;
      return sum;
    };
    int64_t best = num_candidates;
    double best_sum = total(best);
    for (int64_t i = num_candidates - 1; i >= 1; --i)
      if (const double sum = total(i); sum < best_sum) best_sum = sum, best = i;
    s.choice.assign(O, best);
  } else {
    for (int64_t c = 0; c < O; ++c)
      for (int64_t i = num_candidates - 1; i >= 1; --i)
        if (losses[i - 1][c] < losses[s.choice[c] - 1][c]) s.choice[c] = i;
  }
  for (int64_t c = 0; c < O; ++c) s.loss_chosen.push_back(losses[s.choice[c] - 1][c]);
  return s;
}

void SeqMseResult::apply_to(QuantSim& sim) const { set_frozen_param_encodings(sim, param_encodings, "SeqMSE"); }

nlohmann::json SeqMseResult::to_json() const {
  nlohmann::json j = {{"seconds", seconds},
                      {"candidates", options.num_candidates},
                      {"loss", seq_mse_loss_name(options.loss)},
                      {"samples", options.num_samples},
                      {"quantize_activations", options.quantize_activations},
                      {"param_bw", options.sim.param_bw},
                      {"layers", nlohmann::json::array()}};
  for (const auto& l : layers)
    j["layers"].push_back({{"name", l.name}, {"per_channel", l.per_channel}, {"loss_tf", l.loss_tf},
                           {"loss_seq_mse", l.loss_seq_mse}, {"mean_fraction", l.mean_fraction},
                           {"seconds", l.seconds}});
  return j;
}

SeqMseResult apply_seq_mse(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                           const std::vector<Tensor>& batches, const SeqMseOptions& opt) {
  validate(opt);
  QFORGE_CHECK(model != nullptr, "SeqMSE: null model");
  if (batches.empty()) throw InputError("SeqMSE: needs at least one batch of unlabeled data");
  const auto t0 = Clock::now();
  SeqMseResult res;
  res.options = opt;
  res.options.on_layer = nullptr;

  fold_all_batch_norms(*model, sample_inputs);
  std::vector<Tensor> data;  // the first num_samples rows of the batches
  int64_t have = 0;
  for (const auto& b : batches) {
    if (have >= opt.num_samples) break;
    const int64_t take = std::min(b.size(0), opt.num_samples - have);
    data.push_back(take == b.size(0) ? b : b.narrow(0, 0, take));
    have += take;
  }

  QuantSimOptions so = opt.sim;
  so.fold_bn = true;
  QuantSim sim(model, sample_inputs, so);
  if (opt.quantize_activations)  // activation encodings as the final calibration will compute them
    sim.compute_encodings([&](nn::Module& m) {
      for (const auto& b : batches) m(std::vector<Tensor>{b});
    });
  else
    calibrate_weights_only(sim, sample_inputs);

  const auto& g = sim.graph();
  struct Target {
    int id;
    std::string name;
    Quantizer* q;
  };
  std::vector<Target> todo;
  for (const QuantizedWeightLayer& l : quantized_weight_layers(sim, opt.ignore)) {
    const QuantizerSettings& st = l.weight->settings();
    if (st.grid.is_float || (st.per_channel && st.axis != 0)) continue;
    todo.push_back({l.id, l.name, l.weight});
  }
  if (todo.empty()) throw InputError("SeqMSE: the model has no Conv2d/Linear layer with an integer weight quantizer");

  for (size_t li = 0; li < todo.size(); ++li) {
    const Target& t = todo[li];
    const auto tl = Clock::now();
    nn::Module& mod = *g.node(t.id).module;
    Tensor xs;
    {  // x_q: the layer's input in the sim, earlier layers on their chosen encodings
      NoGradGuard ng;
      std::vector<Tensor> in;
      const int h = mod.add_forward_pre_hook([&](nn::Module&, std::vector<Tensor>& v) { in.push_back(v[0].detach().contiguous()); });
      const bool was = sim.model().is_training();
      sim.model().eval();
      try {
        for (const auto& b : data) sim.model()(std::vector<Tensor>{b});
      } catch (...) {
        mod.remove_hook(h);
        sim.model().train(was);
        throw;
      }
      mod.remove_hook(h);
      sim.model().train(was);
      xs = concat_rows(in);
    }
    auto* conv = dynamic_cast<nn::Conv2d*>(&mod);
    ops::Conv2dParams cp;
    if (conv) {
      const auto& o = conv->options();
      cp = {{o.stride[0], o.stride[1]}, {o.padding[0], o.padding[1]}, {o.dilation[0], o.dilation[1]}, o.groups};
    }
    auto layer = [&](const Tensor& w) {
      NoGradGuard ng;
      return conv ? ops::conv2d(xs, w, Tensor(), cp) : ops::linear(xs, w);
    };
    const Tensor w = mod.raw_param("weight").detach().contiguous().to(DType::f32);
    const Tensor target = layer(w);
    const bool per_channel = t.q->settings().per_channel;
    const auto grids = per_channel_candidates(w, t.q->settings().grid, per_channel);
    const CandidateSearch s =
        search_candidates(*grids, w.shape(), opt.num_candidates, opt.loss, layer, target, conv ? 1 : -1);

    std::vector<double> fraction;
    for (int64_t c = 0; c < (per_channel ? grids->channels() : 1); ++c)
      fraction.push_back(static_cast<double>(s.choice[c]) / static_cast<double>(opt.num_candidates));
    const std::vector<Encoding> enc = grids->encodings(fraction);
    t.q->set_encodings(enc);
    t.q->freeze();
    std::string key = t.name + ".weight";
    for (const auto& info : sim.quantizers())
      if (info.quantizer == t.q) key = info.export_key;
    res.param_encodings[key] = enc;

    SeqMseLayer rep;
    rep.name = t.name;
    rep.per_channel = per_channel;
    for (size_t c = 0; c < s.choice.size(); ++c) {
      rep.loss_tf += s.loss_full[c];
      rep.loss_seq_mse += s.loss_chosen[c];
      rep.mean_fraction += static_cast<double>(s.choice[c]) / static_cast<double>(opt.num_candidates);
    }
    rep.mean_fraction /= static_cast<double>(s.choice.size());
    rep.seconds = since(tl);
    res.layers.push_back(rep);
    if (opt.on_layer) opt.on_layer(t.name, static_cast<int>(li), static_cast<int>(todo.size()));
  }
  res.seconds = since(t0);
  return res;
}

}  // namespace qforge::quant::ptq
