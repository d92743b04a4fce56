// Bias correction. See bias_correction.hpp.
#include "quant/ptq/bias_correction.hpp"

#include "engine/autograd.hpp"
#include "nn/spec.hpp"
#include "quant/ptq/graph_util.hpp"

#include <cmath>
#include <map>

namespace qforge::quant::ptq {

namespace {

double phi(double x) { return std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI); }
double Phi(double x) { return 0.5 * std::erfc(-x / std::sqrt(2.0)); }

// Per-channel means of a layer output: conv [N, C, ...] channel dim 1, linear [..., C] last dim.
struct ChannelMean {
  std::vector<double> sum;
  int64_t count = 0;
  void add(const Tensor& y, bool channel_last) {
    const Tensor t = y.detach().contiguous().to(DType::f32);
    const float* p = t.data<float>();
    if (channel_last) {
      const int64_t c = t.size(-1), rows = t.numel() / c;
      if (sum.empty()) sum.assign(c, 0.0);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t k = 0; k < c; ++k) sum[k] += p[r * c + k];
      count += rows;
    } else {
      const int64_t n = t.size(0), c = t.size(1), inner = t.numel() / (n * c);
      if (sum.empty()) sum.assign(c, 0.0);
      for (int64_t i = 0; i < n; ++i)
        for (int64_t k = 0; k < c; ++k) {
          const float* q = p + (i * c + k) * inner;
          double s = 0;
          for (int64_t j = 0; j < inner; ++j) s += q[j];
          sum[k] += s;
        }
      count += n * inner;
    }
  }
  std::vector<double> mean() const {
    std::vector<double> m(sum.size());
    for (size_t i = 0; i < m.size(); ++i) m[i] = count ? sum[i] / count : 0.0;
    return m;
  }
};

std::vector<Tensor> take_samples(const std::vector<Tensor>& batches, int64_t n) {
  std::vector<Tensor> out;
  int64_t have = 0;
  for (const auto& b : batches) {
    if (have >= n) break;
    const int64_t k = std::min(b.size(0), n - have);
    out.push_back(k == b.size(0) ? b : b.narrow(0, 0, k));
    have += k;
  }
  return out;
}

Tensor& bias_param(nn::Module& m) {
  if (!m.has_param("bias")) m.register_parameter("bias", Tensor::zeros({m.raw_param("weight").size(0)}));
  return m.raw_param("bias");
}

double apply_shift(nn::Module& m, const std::vector<double>& shift) {
  NoGradGuard ng;
  Tensor b = bias_param(m);
  QFORGE_CHECK(static_cast<int64_t>(shift.size()) == b.numel(), "bias correction: {} shifts for a bias of {}", shift.size(),
               b.numel());
  float* p = b.data<float>();
  double s = 0;
  for (size_t i = 0; i < shift.size(); ++i) {
    p[i] = static_cast<float>(p[i] - shift[i]);
    s += std::fabs(shift[i]);
  }
  b.bump_version();
  return shift.empty() ? 0.0 : s / shift.size();
}

}  // namespace

BiasCorrectionMode parse_bias_correction_mode(const std::string& s) {
  if (s == "empirical") return BiasCorrectionMode::empirical;
  if (s == "analytical") return BiasCorrectionMode::analytical;
  throw InputError(fmt::format("bias correction mode '{}': expected empirical or analytical", s));
}

double activation_mean(double mu, double sigma, const std::string& act) {
  sigma = std::fabs(sigma);
  if (act.empty()) return mu;
  if (sigma < 1e-12) return act == "ReLU6" ? std::clamp(mu, 0.0, 6.0) : std::max(mu, 0.0);
  const double a = -mu / sigma;  // standardised 0
  if (act == "ReLU") return mu * (1 - Phi(a)) + sigma * phi(a);
  QFORGE_CHECK(act == "ReLU6", "activation_mean: unknown activation {}", act);
  const double b = (6.0 - mu) / sigma;  // standardised 6
  return mu * (Phi(b) - Phi(a)) + sigma * (phi(a) - phi(b)) + 6.0 * (1 - Phi(b));
}

nlohmann::json BiasCorrectionResult::to_json() const {
  nlohmann::json j = {{"layers", nlohmann::json::array()}, {"messages", messages}};
  for (const auto& l : layers) j["layers"].push_back({{"name", l.name}, {"method", l.method}, {"mean_abs_shift", l.mean_abs_shift}});
  return j;
}

BiasCorrectionResult correct_bias(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                                  const std::vector<Tensor>& batches, const BiasCorrectionOptions& opt) {
  QFORGE_CHECK(model != nullptr, "bias correction: null model");
  if (opt.mode == BiasCorrectionMode::empirical && batches.empty())
    throw InputError("empirical bias correction needs calibration data (at least one batch)");
  BiasCorrectionResult res;
  BnFoldResult folds = fold_all_batch_norms(*model, sample_inputs);
  const BnFoldResult& stats = opt.bn_folds ? *opt.bn_folds : folds;
  const auto data = take_samples(batches, opt.num_samples);

  std::shared_ptr<nn::Module> fp;
  if (!data.empty()) {
    fp = nn::clone_model(*model);
    fp->eval();
  }
  QuantSimOptions so = opt.sim;
  so.fold_bn = true;
  QuantSim sim(model, sample_inputs, so);
  if (opt.weight_encodings) set_frozen_param_encodings(sim, *opt.weight_encodings, "bias correction");
  calibrate_weights_only(sim, sample_inputs);

  const auto& g = sim.graph();
  struct L {
    int id;
    std::string name;
    Quantizer* q;
  };
  std::vector<L> layers;
  for (const QuantizedWeightLayer& l : quantized_weight_layers(sim, opt.ignore)) layers.push_back({l.id, l.name, l.weight});
  if (layers.empty()) {
    res.messages.push_back("bias correction: no Conv2d/Linear layer with a quantized weight; nothing to correct");
    return res;
  }

  // FP32 output means of every layer, in one pass over the FP32 copy.
  std::map<std::string, ChannelMean> fp_mean;
  if (fp) {
    std::vector<std::pair<nn::Module*, int>> hooks;
    for (const auto& l : layers) {
      nn::Module* fm = fp->find(l.name).get();
      const bool last = is_linear(g.node(l.id));
      ChannelMean* cm = &fp_mean[l.name];
      hooks.emplace_back(fm, fm->add_forward_hook([cm, last](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) {
        cm->add(o[0], last);
      }));
    }
    NoGradGuard ng;
    for (const auto& b : data) (*fp)(std::vector<Tensor>{b});
    for (auto& [m, h] : hooks) m->remove_hook(h);
  }

  const bool was = sim.model().is_training();
  sim.model().eval();
  for (const auto& l : layers) {
    nn::Module& m = *g.node(l.id).module;
    BiasCorrectionLayer rep{l.name, "", 0};
    bool done = false;
    if (opt.mode == BiasCorrectionMode::analytical) {
      // Walk back to the layer whose folded BN produced this input: [ReLU|ReLU6] <- [identity BN]* <- layer.
      std::string act;
      int p = sole_producer(g, l.id);
      if (p >= 0 && is_relu_like(g.node(p))) {
        act = g.node(p).type;
        p = sole_producer(g, p);
      }
      while (p >= 0 && is_bn(g.node(p)) && is_identity_bn(*g.node(p).module)) p = sole_producer(g, p);
      const BnFold* f = p >= 0 ? stats.find_layer(node_label(g.node(p)), false) : nullptr;
      if (f) {
        NoGradGuard ng;
        const Tensor w = m.raw_param("weight").detach();
        const Tensor wq = l.q->forward(w).contiguous();
        const Tensor err = ops::sub(wq, w).contiguous();
        const auto eps = spatial_sum(err);
        const bool dw = is_depthwise(m);
        const int64_t o = w.size(0), ci = w.size(1);
        std::vector<double> ex(f->beta.size());
        for (size_t c = 0; c < ex.size(); ++c) ex[c] = activation_mean(f->beta[c], f->gamma[c], act);
        std::vector<double> shift(o, 0.0);
        if (dw) {
          for (int64_t k = 0; k < o; ++k) shift[k] = eps[k] * ex[k];
        } else if (static_cast<int64_t>(ex.size()) == ci) {
          for (int64_t k = 0; k < o; ++k)
            for (int64_t c = 0; c < ci; ++c) shift[k] += eps[k * ci + c] * ex[c];
        }
        if (dw || static_cast<int64_t>(ex.size()) == ci) {
          rep.mean_abs_shift = apply_shift(m, shift);
          rep.method = "analytical";
          done = true;
        }
      }
    }
    if (!done && fp) {
      ChannelMean qm;
      const bool last = is_linear(g.node(l.id));
      const int h = m.add_forward_hook([&qm, last](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) { qm.add(o[0], last); });
      {
        NoGradGuard ng;
        try {
          for (const auto& b : data) sim.model()(std::vector<Tensor>{b});
        } catch (...) {
          m.remove_hook(h);
          throw;
        }
      }
      m.remove_hook(h);
      const auto mq = qm.mean(), mf = fp_mean[l.name].mean();
      std::vector<double> shift(mq.size());
      for (size_t c = 0; c < shift.size(); ++c) shift[c] = mq[c] - mf[c];
      rep.mean_abs_shift = apply_shift(m, shift);
      rep.method = "empirical";
      done = true;
    }
    if (!done) {
      rep.method = "skipped: input not produced by a folded BatchNorm and no data for empirical correction";
      res.messages.push_back(fmt::format("bias correction: {} skipped (no BN statistics for its input, no data)", l.name));
    }
    res.layers.push_back(rep);
  }
  sim.model().train(was);
  return res;
}

}  // namespace qforge::quant::ptq
