// AdaRound. See adaround.hpp (Note [AdaRound speed]).
#include "quant/ptq/adaround.hpp"

#include "engine/autograd.hpp"
#include "engine/ops/blas.hpp"
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

// Note [AdaRound rows] A layer is evaluated as GEMMs on "rows": each output position of each sample is
// one row holding its receptive field (im2col, K = in/groups * kh * kw columns, grouped by conv group),
// and the targets are stored the same way ([rows, O]). Rows are built once per layer; a step gathers
// the rows of its batch and runs, per group, Y[:, g] = X[:, g] W_g^T and dW_g = dY[:, g]^T X[:, g].
struct Rows {
  int64_t n = 0;       // samples
  int64_t p = 1;       // rows per sample (output positions)
  int64_t k = 0;       // columns (receptive field, all groups)
  int64_t o = 0;       // output channels
  int64_t groups = 1;
  std::vector<float> x;  // [n, p, k]
  std::vector<float> t;  // [n, p, o] targets, activation applied
};

// im2col of NCHW inputs for a conv, or the rows of a linear layer's [..., in] inputs.
void build_input_rows(Rows& r, const Tensor& xs, const nn::Conv2d* conv) {
  const float* px = xs.data<float>();
  if (!conv) {
    r.k = xs.size(-1);
    r.n = xs.numel() / r.k;
    r.p = 1;
    r.x.assign(px, px + xs.numel());
    return;
  }
  const auto& o = conv->options();
  const int64_t N = xs.size(0), C = xs.size(1), H = xs.size(2), W = xs.size(3);
  const int64_t kh = o.kernel_size[0], kw = o.kernel_size[1];
  const int64_t OH = (H + 2 * o.padding[0] - o.dilation[0] * (kh - 1) - 1) / o.stride[0] + 1;
  const int64_t OW = (W + 2 * o.padding[1] - o.dilation[1] * (kw - 1) - 1) / o.stride[1] + 1;
  r.n = N;
  r.p = OH * OW;
  r.k = C * kh * kw;
  r.groups = o.groups;
  r.x.assign(static_cast<size_t>(N * r.p * r.k), 0.0f);
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow) {
        float* row = r.x.data() + ((n * OH + oh) * OW + ow) * r.k;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t i = 0; i < kh; ++i) {
            const int64_t ih = oh * o.stride[0] - o.padding[0] + i * o.dilation[0];
            if (ih < 0 || ih >= H) continue;
            for (int64_t j = 0; j < kw; ++j) {
              const int64_t iw = ow * o.stride[1] - o.padding[1] + j * o.dilation[1];
              if (iw < 0 || iw >= W) continue;
              row[(c * kh + i) * kw + j] = px[((n * C + c) * H + ih) * W + iw];
            }
          }
      }
}

// Targets [N, O, P...] (conv) or [..., O] (linear) -> rows [N*P, O], then the activation.
void build_target_rows(Rows& r, const Tensor& ys, bool conv, const std::string& act) {
  const float* py = ys.data<float>();
  r.o = conv ? ys.size(1) : ys.size(-1);
  r.t.resize(static_cast<size_t>(ys.numel()));
  if (conv) {
    const int64_t N = ys.size(0), O = r.o, P = ys.numel() / (N * O);
    QFORGE_ASSERT(P == r.p && N == r.n);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < O; ++c)
        for (int64_t q = 0; q < P; ++q) r.t[(n * P + q) * O + c] = py[(n * O + c) * P + q];
  } else {
    std::copy(py, py + ys.numel(), r.t.begin());
  }
  if (!act.empty()) {
    const float hi = act == "ReLU6" ? 6.0f : INFINITY;
    for (auto& v : r.t) v = std::min(std::max(v, 0.0f), hi);
  }
}

// Y[rows, O] = X[rows, K] W^T + b, per group.
void layer_forward(const Rows& r, const float* x, int64_t rows, const float* w, const float* bias, float* y) {
  const int64_t kg = r.k / r.groups, og = r.o / r.groups;
  for (int64_t g = 0; g < r.groups; ++g)
    ops::detail::gemm(false, true, rows, og, kg, 1.0f, x + g * kg, r.k, w + g * og * kg, kg, 0.0f, y + g * og, r.o);
  if (bias)
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t c = 0; c < r.o; ++c) y[i * r.o + c] += bias[c];
}

// dW[O, K/groups] = dY^T X, per group.
void layer_weight_grad(const Rows& r, const float* x, int64_t rows, const float* gy, float* gw) {
  const int64_t kg = r.k / r.groups, og = r.o / r.groups;
  for (int64_t g = 0; g < r.groups; ++g)
    ops::detail::gemm(true, false, og, kg, rows, 1.0f, gy + g * og, r.o, x + g * kg, r.k, 0.0f, gw + g * og * kg, kg);
}

// One step's loss and d(loss)/d(y) in place: y [B*P, O] without bias (added here), targets read from the
// cache by sample index (no gather copy).
void recon_step(float* y, const Rows& r, const std::vector<int64_t>& sidx, const float* bias, const std::string& act) {
  const int64_t per = r.p * r.o, rows = static_cast<int64_t>(sidx.size()) * r.p;
  const float hi = act == "ReLU6" ? 6.0f : INFINITY;
  const bool has_act = !act.empty();
  const float k = static_cast<float>(2.0 / static_cast<double>(rows));
  for (size_t j = 0; j < sidx.size(); ++j) {
    float* yj = y + j * per;
    const float* tj = r.t.data() + sidx[j] * per;
    for (int64_t q = 0; q < r.p; ++q) {
      float* yr = yj + q * r.o;
      const float* tr = tj + q * r.o;
      for (int64_t c = 0; c < r.o; ++c) {
        float v = yr[c] + (bias ? bias[c] : 0.0f);
        bool pass = true;
        if (has_act) {
          pass = v > 0.0f && v < hi;
          v = std::min(std::max(v, 0.0f), hi);
        }
        yr[c] = pass ? k * (v - tr[c]) : 0.0f;
      }
    }
  }
}

// Reconstruction loss over [rows, O]: sum over channels, mean over rows; optional d(loss)/d(y) in place of y.
double recon(float* y, const float* t, int64_t rows, int64_t o, const std::string& act, bool grad) {
  const int64_t n = rows * o;
  const float hi = act == "ReLU6" ? 6.0f : INFINITY;
  const bool has_act = !act.empty();
  const float k = static_cast<float>(2.0 / static_cast<double>(rows));
  double loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    float v = y[i];
    bool pass = true;
    if (has_act) {
      pass = v > 0.0f && v < hi;
      v = std::min(std::max(v, 0.0f), hi);
    }
    const float d = v - t[i];
    loss += static_cast<double>(d) * d;
    if (grad) y[i] = pass ? k * d : 0.0f;
  }
  return loss / static_cast<double>(rows);
}

Tensor concat_rows(const std::vector<Tensor>& xs) {
  return (xs.size() == 1 ? xs[0] : ops::concat(xs, 0)).contiguous().to(DType::f32);
}

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
    if (q->settings().per_channel != (enc.size() > 1) || q->settings().grid.bitwidth != enc[0].bitwidth)
      throw InputError(fmt::format("AdaRound encodings for '{}' ({} entries, {} bits) do not fit the QuantSim's quantizer "
                                   "({}, {} bits): build the sim with the options AdaRound used", key, enc.size(),
                                   enc[0].bitwidth, q->settings().per_channel ? "per-channel" : "per-tensor",
                                   q->settings().grid.bitwidth));
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
                           {"changed_fraction", l.changed}, {"seconds", l.seconds},
                           {"cache_seconds", l.cache_seconds}});
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
  if (opt.weight_encodings) set_frozen_param_encodings(sim, *opt.weight_encodings, "AdaRound");
  calibrate_weights_only(sim, sample_inputs);

  const auto& g = sim.graph();
  struct Target {
    int id;
    std::string name, act;
    Quantizer* q;
  };
  std::vector<Target> todo;
  for (const QuantizedWeightLayer& l : quantized_weight_layers(sim, opt.ignore)) {
    if (l.weight->settings().grid.is_float) continue;
    const Hop h = next_node(g, l.id, true);
    todo.push_back({l.id, l.name, h.activation, l.weight});  // f: the ReLU/ReLU6 right after the layer, if any
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
      ys = concat_rows(out);
    }

    auto* conv = dynamic_cast<nn::Conv2d*>(&mod);
    const double cache_s = since(tl);
    Rows rows;
    build_input_rows(rows, xs, conv);
    xs = Tensor();
    build_target_rows(rows, ys, conv != nullptr, t.act);
    ys = Tensor();
    const int64_t N = rows.n;
    Tensor w = mod.raw_param("weight");
    std::vector<float> bias;
    if (mod.has_param("bias")) bias = mod.raw_param("bias").to_vector<float>();
    const float* pbias = bias.empty() ? nullptr : bias.data();
    const auto enc = t.q->encodings();
    const int64_t O = w.size(0), numel = w.numel(), inner = numel / O;
    const bool per_channel = enc.size() > 1;
    std::vector<AffineParams> ap;
    for (const auto& e : enc) ap.push_back(affine_params(e));

    const std::vector<float> wv = w.to_vector<float>();
    std::vector<float> fl(numel), alpha(numel), m1(numel, 0.0f), m2(numel, 0.0f), wt(numel), gw(numel);
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
      std::vector<float> out(numel);
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        out[i] = std::min(std::max(fl[i] + h_of(i), a.lo), a.hi) * a.scale;
      }
      return out;
    };
    const int64_t eval_n = std::min<int64_t>(N, 256);
    auto eval_loss = [&](const std::vector<float>& wq) {
      std::vector<float> y(static_cast<size_t>(eval_n * rows.p * rows.o));
      layer_forward(rows, rows.x.data(), eval_n * rows.p, wq.data(), pbias, y.data());
      return recon(y.data(), rows.t.data(), eval_n * rows.p, rows.o, t.act, false);
    };
    AdaroundLayer rep;
    rep.cache_seconds = cache_s;
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
    const int64_t brows = B * rows.p, xrow = rows.p * rows.k;
    std::vector<float> xb(static_cast<size_t>(brows * rows.k)), yb(static_cast<size_t>(brows * rows.o));
    std::vector<int64_t> sidx(B);
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double b1t = 1, b2t = 1;
    for (int64_t it = 0; it < iters; ++it) {
      for (int64_t j = 0; j < B; ++j) {
        const int64_t s = static_cast<int64_t>(gen.next_u64() % static_cast<uint64_t>(N));
        sidx[j] = s;
        std::memcpy(xb.data() + j * xrow, rows.x.data() + s * xrow, xrow * sizeof(float));
      }
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        const float sg = 1.0f / (1.0f + std::exp(-alpha[i]));
        const float h = std::min(std::max(sg * static_cast<float>(zg) + static_cast<float>(opt.gamma), 0.0f), 1.0f);
        wt[i] = std::min(std::max(fl[i] + h, a.lo), a.hi) * a.scale;
      }
      layer_forward(rows, xb.data(), brows, wt.data(), nullptr, yb.data());
      recon_step(yb.data(), rows, sidx, pbias, t.act);
      layer_weight_grad(rows, xb.data(), brows, yb.data(), gw.data());
      const float* pg = gw.data();
      const bool reg = it >= warm && opt.reg_param > 0;
      double beta = opt.beta_start;
      if (reg) {
        const double rel = iters > warm ? static_cast<double>(it - warm) / static_cast<double>(iters - warm) : 0.0;
        beta = opt.beta_end + 0.5 * (opt.beta_start - opt.beta_end) * (1 + std::cos(M_PI * rel));
      }
      b1t *= b1;
      b2t *= b2;
      const float lr_t = static_cast<float>(opt.lr * std::sqrt(1 - b2t) / (1 - b1t));
      const float eps_t = eps * static_cast<float>(std::sqrt(1 - b2t));
      const float lam = static_cast<float>(opt.reg_param), fb = static_cast<float>(beta);
      const float fzg = static_cast<float>(zg), fgam = static_cast<float>(opt.gamma);
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        const float sg = 1.0f / (1.0f + std::exp(-alpha[i]));
        const float hs = sg * fzg + fgam;
        // Clipped h: neither loss moves alpha (the gradient is 0; Adam's moments still decay).
        const float dh = (hs > 0.0f && hs < 1.0f) ? sg * (1.0f - sg) * fzg : 0.0f;
        const float q = fl[i] + std::min(std::max(hs, 0.0f), 1.0f);
        float gr = (q >= a.lo && q <= a.hi) ? pg[i] * a.scale : 0.0f;
        if (reg && dh != 0.0f) {
          const float v = 2.0f * hs - 1.0f;
          const float av = std::fabs(v);
          if (av > 0.0f) gr += -lam * fb * std::pow(av, fb - 1.0f) * (v > 0 ? 2.0f : -2.0f);
        }
        const float grad = gr * dh;
        m1[i] = b1 * m1[i] + (1 - b1) * grad;
        m2[i] = b2 * m2[i] + (1 - b2) * grad * grad;
        alpha[i] -= lr_t * m1[i] / (std::sqrt(m2[i]) + eps_t);
      }
    }

    // ---- hard rounding, written back ----
    const std::vector<float> final_w = weights_with([&](int64_t i) { return alpha[i] >= 0 ? 1.0f : 0.0f; });
    rep.loss_adaround = eval_loss(final_w);
    int64_t changed = 0;
    {
      const float* pf = final_w.data();
      for (int64_t i = 0; i < numel; ++i) {
        const AffineParams& a = ap[per_channel ? i / inner : 0];
        const float nearest = std::min(std::max(std::nearbyint(wv[i] * a.inv_scale), a.lo), a.hi) * a.scale;
        changed += pf[i] != nearest;
      }
      NoGradGuard ng;
      w.copy_(Tensor::from_vector(final_w, w.shape()));
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
