// AdaRound. See adaround.hpp (Note [AdaRound speed]).
#include "quant/ptq/adaround.hpp"

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "engine/random.hpp"
#include "nn/spec.hpp"
#include "quant/encodings_io.hpp"
#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/graph_util.hpp"

#include <chrono>
#include <cmath>
#include <cstring>

namespace qforge::quant::ptq {

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Rows idx of a [N, ...] contiguous f32 tensor.
Tensor gather_rows(const Tensor& cache, const std::vector<int64_t>& idx) {
  Shape s = cache.shape();
  const int64_t row = cache.numel() / s[0];
  s[0] = static_cast<int64_t>(idx.size());
  Tensor out = Tensor::uninitialized(s);
  const float* src = cache.data<float>();
  float* dst = out.data<float>();
  for (size_t i = 0; i < idx.size(); ++i) std::memcpy(dst + i * row, src + idx[i] * row, row * sizeof(float));
  return out;
}

Tensor first_rows(const Tensor& cache, int64_t n) { return cache.narrow(0, 0, std::min(n, cache.size(0))).contiguous(); }

struct LayerFn {
  bool conv = false;
  ops::Conv2dParams p;
  Tensor forward(const Tensor& x, const Tensor& w, const Tensor& b) const {
    return conv ? ops::conv2d(x, w, b, p) : ops::linear(x, w, b);
  }
};

// In-place activation of a target cache and the activation's derivative mask.
void apply_act(Tensor& t, const std::string& act) {
  if (act.empty()) return;
  float* p = t.data<float>();
  const int64_t n = t.numel();
  const float hi = act == "ReLU6" ? 6.0f : INFINITY;
  for (int64_t i = 0; i < n; ++i) p[i] = std::min(std::max(p[i], 0.0f), hi);
}

// Reconstruction loss: sum over dim 1, mean over the rest; and optionally d(loss)/d(y) (pre-activation).
double recon(const Tensor& y, const Tensor& target, const std::string& act, Tensor* grad) {
  const int64_t n = y.numel();
  const int64_t c = y.dim() >= 2 ? y.size(1) : 1;
  const double m = static_cast<double>(n / c);
  const float* py = y.data<float>();
  const float* pt = target.data<float>();
  float* pg = grad ? grad->data<float>() : nullptr;
  const float hi = act == "ReLU6" ? 6.0f : INFINITY;
  const bool has_act = !act.empty();
  const float k = static_cast<float>(2.0 / m);
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    float v = py[i];
    bool pass = true;
    if (has_act) {
      pass = v > 0.0f && v < hi;
      v = std::min(std::max(v, 0.0f), hi);
    }
    const float d = v - pt[i];
    loss += static_cast<double>(d) * d;
    if (pg) pg[i] = pass ? k * d : 0.0f;
  }
  return loss / m;
}

Tensor concat_rows(const std::vector<Tensor>& xs) { return xs.size() == 1 ? xs[0].contiguous() : ops::concat(xs, 0).contiguous(); }

}  // namespace

void validate(const AdaroundOptions& o) {
  if (o.sim.param_bw > 8 || o.sim.param_bw < 2)
    throw InputError(fmt::format("AdaRound: parameter bitwidth {} is not supported: AdaRound optimises the rounding "
                                 "of integer weight grids of 2 to 8 bits (at 16 bits nearest rounding is already "
                                 "near-lossless)", o.sim.param_bw));
  if (o.num_iterations < 0) throw InputError(fmt::format("AdaRound: iterations must be >= 0, got {}", o.num_iterations));
  if (o.batch_size <= 0) throw InputError(fmt::format("AdaRound: batch size must be > 0, got {}", o.batch_size));
  if (o.num_samples <= 0) throw InputError(fmt::format("AdaRound: number of samples must be > 0, got {}", o.num_samples));
  if (!(o.warm_start >= 0 && o.warm_start < 1))
    throw InputError(fmt::format("AdaRound: warm start must be in [0, 1), got {}", o.warm_start));
  if (!(o.lr > 0)) throw InputError(fmt::format("AdaRound: learning rate must be > 0, got {}", o.lr));
  if (!(o.reg_param >= 0)) throw InputError(fmt::format("AdaRound: regularisation weight must be >= 0, got {}", o.reg_param));
  if (!(o.beta_start >= o.beta_end && o.beta_end > 0))
    throw InputError(fmt::format("AdaRound: beta range must satisfy start >= end > 0, got {} -> {}", o.beta_start, o.beta_end));
  if (!(o.zeta > 1 && o.gamma < 0)) throw InputError("AdaRound: stretch parameters need zeta > 1 and gamma < 0");
}

nlohmann::json AdaroundResult::encodings_json() const {
  EncodingsFile f;
  f.params = param_encodings;
  nlohmann::json j = encodings_to_json(f, "0.6.1");
  return {{"param_encodings", j.at("param_encodings")}};
}

void AdaroundResult::save_encodings(const std::filesystem::path& path) const {
  write_file_atomic(path, encodings_json().dump(2) + "\n");
}

void AdaroundResult::apply_to(QuantSim& sim) const {
  for (const auto& [key, enc] : param_encodings) {
    Quantizer* q = nullptr;
    for (const auto& info : sim.quantizers())
      if (info.kind == "param" && info.export_key == key) q = info.quantizer;
    if (!q) throw InputError(fmt::format("AdaRound encodings: the QuantSim has no parameter quantizer for '{}'", key));
    q->set_encodings(enc);
    q->freeze();
  }
}

nlohmann::json AdaroundResult::to_json() const {
  nlohmann::json j = {{"seconds", seconds}, {"param_bw", sim_options.param_bw}, {"scheme", scheme_name(sim_options.scheme)},
                      {"config", sim_options.config}, {"layers", nlohmann::json::array()}};
  for (const auto& l : layers)
    j["layers"].push_back({{"name", l.name}, {"iterations", l.iterations}, {"per_channel", l.per_channel},
                           {"loss_nearest", l.loss_nearest}, {"loss_adaround", l.loss_adaround},
                           {"changed_fraction", l.changed}, {"seconds", l.seconds}});
  return j;
}

AdaroundResult apply_adaround(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                              const std::vector<Tensor>& batches, const AdaroundOptions& opt) {
  validate(opt);
  QFORGE_CHECK(model != nullptr, "AdaRound: null model");
  if (batches.empty()) throw InputError("AdaRound: needs at least one batch of unlabeled data");
  const auto t0 = Clock::now();
  AdaroundResult res;
  res.sim_options = opt.sim;

  fold_all_batch_norms(*model, sample_inputs);
  std::shared_ptr<nn::Module> fp = nn::clone_model(*model);
  fp->eval();

  // Samples used: the first num_samples rows of the batches.
  std::vector<Tensor> data;
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
  for (const auto& info : sim.quantizers())
    if (info.kind != "param") info.quantizer->set_enabled(false);
  sim.compute_encodings([&](nn::Module& m) { m(std::vector<Tensor>{sample_inputs}); });

  const auto& g = sim.graph();
  const auto calls = call_counts(g);
  struct Target {
    int id;
    std::string name, act;
    Quantizer* q;
  };
  std::vector<Target> todo;
  for (const auto& n : g.nodes()) {
    if ((!is_conv(n) && !is_linear(n)) || calls[n.id] != 1) continue;
    const std::string name = node_label(n);
    if (std::find(opt.ignore.begin(), opt.ignore.end(), name) != opt.ignore.end()) continue;
    if (!sim.has_quantizer(name + ".weight")) continue;
    Quantizer& q = sim.quantizer(name + ".weight");
    if (!q.enabled() || !q.has_encoding() || q.settings().grid.is_float) continue;
    const Hop h = next_node(g, n.id, true);
    std::string act = h.activation;
    if (act.empty() && h.node >= 0 && is_relu_like(g.node(h.node)) && sole_consumer(g, n.id) >= 0) act = g.node(h.node).type;
    todo.push_back({n.id, name, act, &q});
  }
  if (todo.empty()) throw InputError("AdaRound: the model has no Conv2d/Linear layer with an integer weight quantizer");

  const int64_t iters = opt.iterations();
  const int64_t warm = static_cast<int64_t>(std::ceil(opt.warm_start * iters));
  for (size_t li = 0; li < todo.size(); ++li) {
    const Target& t = todo[li];
    const auto tl = Clock::now();
    nn::Module& mod = *g.node(t.id).module;
    nn::Module& fmod = *fp->find(t.name);

    // ---- cache inputs (quantized model) and targets (FP32 model) ----
    Tensor xs, ys;
    {
      NoGradGuard ng;
      std::vector<Tensor> in, out;
      const int h1 = mod.add_forward_pre_hook([&](nn::Module&, std::vector<Tensor>& v) { in.push_back(v[0].detach().contiguous()); });
      const int h2 = fmod.add_forward_hook([&](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) {
        out.push_back(o[0].detach().contiguous());
      });
      const bool was = sim.model().is_training();
      sim.model().eval();
      try {
        for (const auto& b : data) {
          sim.model()(std::vector<Tensor>{b});
          (*fp)(std::vector<Tensor>{b});
        }
      } catch (...) {
        mod.remove_hook(h1);
        fmod.remove_hook(h2);
        throw;
      }
      mod.remove_hook(h1);
      fmod.remove_hook(h2);
      sim.model().train(was);
      xs = concat_rows(in);
      ys = concat_rows(out).clone();
      apply_act(ys, t.act);
    }
    const int64_t N = xs.size(0);

    LayerFn fn;
    if (auto* c = dynamic_cast<nn::Conv2d*>(&mod)) {
      fn.conv = true;
      const auto& o = c->options();
      fn.p = {o.stride, o.padding, o.dilation, o.groups};
    }
    Tensor w = mod.raw_param("weight");
    const Tensor bias = mod.has_param("bias") ? mod.raw_param("bias").detach() : Tensor();
    const auto enc = t.q->encodings();
    const int64_t O = w.size(0), numel = w.numel(), inner = numel / O;
    const bool per_channel = enc.size() > 1;
    std::vector<AffineParams> ap;
    for (const auto& e : enc) ap.push_back(affine_params(e));

    const std::vector<float> wv = w.to_vector<float>();
    std::vector<float> fl(numel), alpha(numel), m1(numel, 0.0f), m2(numel, 0.0f);
    const double zg = opt.zeta - opt.gamma;
    for (int64_t i = 0; i < numel; ++i) {
      const AffineParams& a = ap[per_channel ? i / inner : 0];
      const float v = wv[i] * a.inv_scale;
      fl[i] = std::floor(v);
      const double rest = v - fl[i];
      const double p = std::clamp((rest - opt.gamma) / zg, 1e-6, 1 - 1e-6);
      alpha[i] = static_cast<float>(std::log(p / (1 - p)));
    }
    auto weights_with = [&](auto&& h_of) {
      Tensor wt = Tensor::uninitialized(w.shape());
      float* pw = wt.data<float>();
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        pw[i] = std::min(std::max(fl[i] + h_of(i), a.lo), a.hi) * a.scale;
      }
      return wt;
    };
    const Tensor x_eval = first_rows(xs, 256), y_eval = first_rows(ys, 256);
    auto eval_loss = [&](const Tensor& wt) {
      NoGradGuard ng;
      return recon(fn.forward(x_eval, wt, bias).contiguous(), y_eval, t.act, nullptr);
    };
    AdaroundLayer rep;
    rep.name = t.name;
    rep.iterations = iters;
    rep.per_channel = per_channel;
    rep.loss_nearest = eval_loss(weights_with([&](int64_t i) {
      const AffineParams& a = ap[per_channel ? i / inner : 0];
      return std::nearbyint(wv[i] * a.inv_scale) - fl[i];
    }));

    // ---- optimisation ----
    Generator gen(opt.seed * 0x9E3779B97F4A7C15ull + li + 1);
    const int64_t B = std::min(opt.batch_size, N);
    std::vector<int64_t> idx(B);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double b1t = 1, b2t = 1;
    for (int64_t it = 0; it < iters; ++it) {
      for (auto& v : idx) v = static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(N));
      const Tensor xb = gather_rows(xs, idx), yb = gather_rows(ys, idx);
      Tensor wt = Tensor::uninitialized(w.shape());
      {
        float* pw = wt.data<float>();
        for (int64_t i = 0; i < numel; ++i) {
          const AffineParams& a = ap[per_channel ? i / inner : 0];
          const float s = 1.0f / (1.0f + std::exp(-alpha[i]));
          const float h = std::min(std::max(s * static_cast<float>(zg) + static_cast<float>(opt.gamma), 0.0f), 1.0f);
          pw[i] = std::min(std::max(fl[i] + h, a.lo), a.hi) * a.scale;
        }
      }
      wt.set_requires_grad(true);
      Tensor y = fn.forward(xb, wt, bias);
      Tensor gy = Tensor::uninitialized(y.shape());
      recon(y.contiguous(), yb, t.act, &gy);
      y.backward(gy);
      const Tensor gw = wt.grad().contiguous();
      const float* pg = gw.data<float>();
      const bool reg = it >= warm && opt.reg_param > 0;
      double beta = opt.beta_start;
      if (reg) {
        const double rel = iters > warm ? static_cast<double>(it - warm) / static_cast<double>(iters - warm) : 0.0;
        beta = opt.beta_end + 0.5 * (opt.beta_start - opt.beta_end) * (1 + std::cos(M_PI * rel));
      }
      b1t *= b1;
      b2t *= b2;
      const float lr_t = static_cast<float>(opt.lr * std::sqrt(1 - b2t) / (1 - b1t));
      const float lam = static_cast<float>(opt.reg_param), fb = static_cast<float>(beta);
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        const float s = 1.0f / (1.0f + std::exp(-alpha[i]));
        const float hs = s * static_cast<float>(zg) + static_cast<float>(opt.gamma);
        const float dh = (hs > 0.0f && hs < 1.0f) ? s * (1.0f - s) * static_cast<float>(zg) : 0.0f;
        if (dh == 0.0f) {
          // h is clipped: neither loss moves alpha (Adam's moments still decay).
          m1[i] *= b1;
          m2[i] *= b2;
          continue;
        }
        const float h = hs;
        const float q = fl[i] + h;
        float gr = (q >= a.lo && q <= a.hi) ? pg[i] * a.scale : 0.0f;
        if (reg) {
          const float v = 2.0f * h - 1.0f;
          const float av = std::fabs(v);
          if (av > 0.0f) gr += -lam * fb * std::pow(av, fb - 1.0f) * (v > 0 ? 2.0f : -2.0f);
        }
        const float grad = gr * dh;
        m1[i] = b1 * m1[i] + (1 - b1) * grad;
        m2[i] = b2 * m2[i] + (1 - b2) * grad * grad;
        alpha[i] -= lr_t * m1[i] / (std::sqrt(m2[i]) + eps * static_cast<float>(std::sqrt(1 - b2t)));
      }
    }

    // ---- hard rounding, written back ----
    const Tensor final_w = weights_with([&](int64_t i) { return alpha[i] >= 0 ? 1.0f : 0.0f; });
    rep.loss_adaround = eval_loss(final_w);
    int64_t changed = 0;
    {
      const float* pf = final_w.data<float>();
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        const float nearest = std::min(std::max(std::nearbyint(wv[i] * a.inv_scale), a.lo), a.hi) * a.scale;
        changed += pf[i] != nearest;
      }
      NoGradGuard ng;
      w.copy_(final_w);
      w.bump_version();
    }
    rep.changed = static_cast<double>(changed) / numel;
    t.q->freeze();
    std::string key = t.name + ".weight";
    for (const auto& info : sim.quantizers())
      if (info.quantizer == t.q) key = info.export_key;
    res.param_encodings[key] = enc;
    rep.seconds = since(tl);
    res.layers.push_back(rep);
    if (opt.on_layer) opt.on_layer(t.name, static_cast<int>(li), static_cast<int>(todo.size()));
  }
  res.seconds = since(t0);
  return res;
}

}  // namespace qforge::quant::ptq
