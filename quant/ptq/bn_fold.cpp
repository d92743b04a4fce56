// BatchNorm folding, fold-to-scale and re-estimation. See bn_fold.hpp.
#include "quant/ptq/bn_fold.hpp"

#include "engine/autograd.hpp"
#include "engine/kernels/quantize.hpp"
#include "nn/layers.hpp"
#include "nn/trace.hpp"
#include "quant/ptq/graph_util.hpp"
#include "quant/quantsim.hpp"

#include <cmath>
#include <map>

namespace qforge::quant::ptq {

namespace {

BnFold capture(const std::string& layer, const std::string& bn_name, nn::Module& m, bool before) {
  auto& bn = dynamic_cast<nn::BatchNorm&>(m);
  BnFold f;
  f.layer = layer;
  f.bn = bn_name;
  f.bn_before_layer = before;
  f.eps = bn.eps();
  f.mean = bn.buffer("running_mean").to_vector<double>();
  f.var = bn.buffer("running_var").to_vector<double>();
  const size_t c = f.mean.size();
  f.gamma.assign(c, 1.0);
  f.beta.assign(c, 0.0);
  if (bn.affine()) {
    f.gamma = bn.raw_param("weight").to_vector<double>();
    f.beta = bn.raw_param("bias").to_vector<double>();
  }
  return f;
}

std::vector<double> bn_scale(const BnFold& f) {
  std::vector<double> s(f.mean.size());
  for (size_t i = 0; i < s.size(); ++i) s[i] = kernels::bn_fold_scale(f.gamma[i], f.var[i], f.eps);
  return s;
}

Tensor& ensure_bias(nn::Module& layer, int64_t c) {
  if (!layer.has_param("bias")) layer.register_parameter("bias", Tensor::zeros({c}));
  return layer.raw_param("bias");
}

// Why a Conv/Linear cannot take part in a fold (empty: it can).
std::string layer_problem(const nn::TraceNode& n, const std::vector<int>& calls) {
  if (!is_conv(n) && !is_linear(n)) return fmt::format("neighbour {} is a {}, not Conv2d/Linear", node_label(n), n.type);
  if (calls[n.id] != 1) return fmt::format("{} is called {} times", node_label(n), calls[n.id]);
  if (n.module->param_transform()) return fmt::format("{} already has a parameter transform (wrapped by a QuantSim?)", node_label(n));
  if (n.module->raw_param("weight").dtype() != DType::f32) return fmt::format("{} weight is not f32", node_label(n));
  return "";
}

}  // namespace

const BnFold* BnFoldResult::find_layer(const std::string& layer, bool bn_before) const {
  for (const auto& f : folds)
    if (f.layer == layer && f.bn_before_layer == bn_before) return &f;
  return nullptr;
}
BnFold* BnFoldResult::find_layer(const std::string& layer, bool bn_before) {
  for (auto& f : folds)
    if (f.layer == layer && f.bn_before_layer == bn_before) return &f;
  return nullptr;
}

nlohmann::json BnFoldResult::to_json() const {
  nlohmann::json j = {{"folded", nlohmann::json::array()}, {"not_folded", not_folded}};
  for (const auto& f : folds)
    j["folded"].push_back({{"layer", f.layer}, {"bn", f.bn}, {"direction", f.bn_before_layer ? "forward" : "backward"}});
  return j;
}

void fold_bn_backward(nn::Module& layer, nn::Module& bn_module) {
  const BnFold f = capture("", "", bn_module, false);
  NoGradGuard ng;
  Tensor w = layer.raw_param("weight");
  const int64_t c = w.size(0);
  QFORGE_CHECK(c == static_cast<int64_t>(f.mean.size()), "BN fold: {} has {} output channels, the BatchNorm {}",
               layer.type_name(), c, f.mean.size());
  Tensor b = ensure_bias(layer, c);
  QFORGE_CHECK(w.dtype() == DType::f32 && w.is_contiguous() && b.dtype() == DType::f32 && b.is_contiguous(),
               "BN fold: {} weight and bias must be contiguous f32", layer.type_name());
  kernels::fold_bn_into_layer(w.data<float>(), c, w.numel() / c, b.data<float>(), f.gamma.data(), f.beta.data(),
                              f.mean.data(), f.var.data(), f.eps);
  w.bump_version();
  b.bump_version();
  set_identity_bn(dynamic_cast<nn::BatchNorm&>(bn_module));
}

void fold_bn_forward(nn::Module& bn_module, nn::Module& layer) {
  const BnFold f = capture("", "", bn_module, true);
  NoGradGuard ng;
  Tensor w = layer.raw_param("weight");
  const int64_t o = w.size(0), ci = w.size(1);
  QFORGE_CHECK(ci == static_cast<int64_t>(f.mean.size()), "BN fold: {} has {} input channels, the BatchNorm {}",
               layer.type_name(), ci, f.mean.size());
  const auto s = bn_scale(f);
  Tensor b = ensure_bias(layer, o);
  const auto wsum = spatial_sum(w);  // before scaling: b' uses the original W
  float* pb = b.data<float>();
  for (int64_t a = 0; a < o; ++a) {
    double acc = pb[a];
    for (int64_t i = 0; i < ci; ++i) acc += wsum[a * ci + i] * (f.beta[i] - f.mean[i] * s[i]);
    pb[a] = static_cast<float>(acc);
  }
  b.bump_version();
  scale_in_channels(w, s, false);
  set_identity_bn(dynamic_cast<nn::BatchNorm&>(bn_module));
}

BnFoldResult fold_all_batch_norms(nn::Module& model, const std::vector<Tensor>& sample_inputs) {
  BnFoldResult r;
  const nn::TracedGraph g = nn::trace(model, sample_inputs);
  const auto calls = call_counts(g);
  for (const auto& b : g.nodes()) {
    if (!is_bn(b) || is_identity_bn(*b.module)) continue;
    const std::string bname = node_label(b);
    if (calls[b.id] != 1) {
      r.not_folded.push_back(fmt::format("{}: called {} times", bname, calls[b.id]));
      continue;
    }
    if (b.module->param_transform()) {
      r.not_folded.push_back(fmt::format("{}: has a parameter transform", bname));
      continue;
    }
    // Backward fold: producer is a conv/linear whose only consumer is this BN.
    const int p = sole_producer(g, b.id);
    std::string why;
    if (p >= 0) {
      const auto& pn = g.node(p);
      why = layer_problem(pn, calls);
      if (why.empty() && sole_consumer(g, p) != b.id) why = fmt::format("{} output has other consumers", node_label(pn));
      if (why.empty() && is_conv(pn) && conv_groups(*pn.module) > 1 && !is_depthwise(*pn.module) &&
          pn.module->raw_param("weight").size(0) != b.module->buffer("running_mean").numel())
        why = fmt::format("{} channel mismatch", node_label(pn));
      if (why.empty()) {
        r.folds.push_back(capture(node_label(pn), bname, *b.module, false));
        fold_bn_backward(*pn.module, *b.module);
        continue;
      }
    } else {
      why = "input is not a single layer output";
    }
    // Forward fold: the BN's only consumer is a conv (padding 0, groups 1) or a linear layer.
    const int c = sole_consumer(g, b.id);
    if (c >= 0) {
      const auto& cn = g.node(c);
      std::string why2 = layer_problem(cn, calls);
      if (why2.empty() && is_conv(cn)) {
        const auto& o = dynamic_cast<nn::Conv2d&>(*cn.module).options();
        if (o.groups != 1 || o.padding[0] != 0 || o.padding[1] != 0)
          why2 = fmt::format("{} has padding or groups (forward fold would change the borders)", node_label(cn));
      }
      if (why2.empty() && is_linear(cn) && b.output_shapes[0].size() != 2)
        why2 = fmt::format("{} input is not [N, C]", node_label(cn));
      if (why2.empty()) {
        r.folds.push_back(capture(node_label(cn), bname, *b.module, true));
        fold_bn_forward(*b.module, *cn.module);
        continue;
      }
      why += "; " + why2;
    }
    r.not_folded.push_back(fmt::format("{}: {}", bname, why));
  }
  return r;
}

// ---- fold to scale ----

int fold_all_batch_norms_to_scale(QuantSim& sim) {
  QFORGE_CHECK(!sim.options().fold_bn || sim.folded_bn().empty(),
               "fold_all_batch_norms_to_scale: the QuantSim already folded its BatchNorms (build it with fold_bn = false)");
  const auto& g = sim.graph();
  const auto calls = call_counts(g);
  int folded = 0;
  for (const auto& b : g.nodes()) {
    if (!is_bn(b) || is_identity_bn(*b.module) || calls[b.id] != 1) continue;
    const int p = sole_producer(g, b.id);
    if (p < 0 || sole_consumer(g, p) != b.id) continue;
    const auto& pn = g.node(p);
    if ((!is_conv(pn) && !is_linear(pn)) || calls[p] != 1) continue;
    const std::string lname = node_label(pn), bname = node_label(b);
    const BnFold f = capture(lname, bname, *b.module, false);
    const auto s = bn_scale(f);
    const std::string wq = lname + ".weight";
    if (sim.has_quantizer(wq)) {
      Quantizer& q = sim.quantizer(wq);
      if (q.has_encoding()) {
        auto enc = q.encodings();
        if (enc.size() == 1 && s.size() > 1) {
          for (double v : s)
            if (std::fabs(std::fabs(v) - std::fabs(s[0])) > 1e-12 * std::fabs(s[0]))
              throw InputError(fmt::format("fold-to-scale: {} has a per-tensor weight encoding but {} scales its "
                                           "channels differently; use a per-channel config", wq, bname));
        }
        for (size_t i = 0; i < enc.size(); ++i) {
          const double k = std::fabs(s[enc.size() == 1 ? 0 : i]);
          enc[i] = encoding_from_scale_offset(enc[i].delta * k, enc[i].offset, q.settings().grid);
        }
        q.set_encodings(enc);
      }
    }
    // Weights (the FP32 shadow) get the fold too; the parameter transform reads them.
    {
      NoGradGuard ng;
      fold_bn_backward(*pn.module, *b.module);
    }
    const std::string bo = bname + ".output", lo = lname + ".output";
    if (sim.has_quantizer(bo) && sim.has_quantizer(lo)) {
      Quantizer& qb = sim.quantizer(bo);
      Quantizer& ql = sim.quantizer(lo);
      if (qb.has_encoding()) ql.set_encodings(qb.encodings());
      ql.set_enabled(qb.enabled());
      qb.set_enabled(false);
    }
    b.module->add_forward_hook([](nn::Module&, const std::vector<Tensor>& in, std::vector<Tensor>& out) { out[0] = in[0]; });
    ++folded;
  }
  return folded;
}

// ---- re-estimation ----

void BnStatsUndo::restore() {
  NoGradGuard ng;
  for (auto& [live, copy] : saved_) {
    Tensor t = live;
    t.copy_(copy);
  }
}

BnStatsUndo reestimate_bn_stats(nn::Module& model, const std::vector<Tensor>& batches, int64_t num_batches) {
  if (batches.empty() || num_batches <= 0)
    throw InputError(fmt::format("reestimate_bn_stats: need at least one batch (got {} batches, num_batches {})",
                                 batches.size(), num_batches));
  std::vector<std::pair<nn::BatchNorm*, bool>> bns;
  for (auto& [name, m] : model.named_modules())
    if (auto* bn = dynamic_cast<nn::BatchNorm*>(m.get()); bn && !is_identity_bn(*bn))  // folded BNs stay folded
      bns.emplace_back(bn, bn->is_training());
  if (bns.empty()) throw InputError("reestimate_bn_stats: the model has no (unfolded) BatchNorm layer");

  BnStatsUndo undo;
  struct Acc {
    std::vector<double> mean, var;
    int64_t n = 0;
  };
  std::vector<Acc> acc(bns.size());
  std::vector<int> hooks;
  for (size_t k = 0; k < bns.size(); ++k) {
    nn::BatchNorm* bn = bns[k].first;
    for (const char* name : {"running_mean", "running_var", "num_batches_tracked"})
      if (bn->has_buffer(name)) undo.saved_.emplace_back(bn->buffer(name), bn->buffer(name).clone());
    const int64_t c = bn->num_features();
    acc[k].mean.assign(c, 0.0);
    acc[k].var.assign(c, 0.0);
    hooks.push_back(bn->add_forward_pre_hook([&acc, k, c](nn::Module&, std::vector<Tensor>& in) {
      const Tensor x = in[0].detach().contiguous().to(DType::f32);
      QFORGE_CHECK(x.dim() >= 2 && x.size(1) == c, "reestimate_bn_stats: BatchNorm input {} has no {} channels in dim 1",
                   shape_str(x.shape()), c);
      const int64_t n = x.size(0), inner = x.numel() / (n * c), cnt = n * inner;
      const float* p = x.data<float>();
      for (int64_t ch = 0; ch < c; ++ch) {
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; ++i) {
          const float* q = p + (i * c + ch) * inner;
          for (int64_t j = 0; j < inner; ++j) s += q[j];
        }
        const double mu = s / cnt;
        for (int64_t i = 0; i < n; ++i) {
          const float* q = p + (i * c + ch) * inner;
          for (int64_t j = 0; j < inner; ++j) s2 += (q[j] - mu) * (q[j] - mu);
        }
        acc[k].mean[ch] += mu;
        acc[k].var[ch] += cnt > 1 ? s2 / (cnt - 1) : 0.0;
      }
      acc[k].n++;
    }));
    bn->train(true);
  }
  try {
    NoGradGuard ng;
    const int64_t nb = std::min<int64_t>(num_batches, batches.size());
    for (int64_t i = 0; i < nb; ++i) model(std::vector<Tensor>{batches[i]});
  } catch (...) {
    for (size_t k = 0; k < bns.size(); ++k) {
      bns[k].first->remove_hook(hooks[k]);
      bns[k].first->train(bns[k].second);
    }
    undo.restore();
    throw;
  }
  NoGradGuard ng;
  for (size_t k = 0; k < bns.size(); ++k) {
    nn::BatchNorm* bn = bns[k].first;
    bn->remove_hook(hooks[k]);
    bn->train(bns[k].second);
    if (acc[k].n == 0) continue;  // never called
    std::vector<float> m(acc[k].mean.size()), v(acc[k].var.size());
    for (size_t c = 0; c < m.size(); ++c) {
      m[c] = static_cast<float>(acc[k].mean[c] / acc[k].n);
      v[c] = static_cast<float>(acc[k].var[c] / acc[k].n);
    }
    bn->buffer("running_mean").copy_(Tensor::from_vector(m, {static_cast<int64_t>(m.size())}));
    bn->buffer("running_var").copy_(Tensor::from_vector(v, {static_cast<int64_t>(v.size())}));
  }
  // num_batches_tracked keeps its old value (the statistics were replaced, not updated).
  for (auto& [live, copy] : undo.saved_)
    if (live.dtype() == DType::i32) {
      Tensor t = live;
      t.copy_(copy);
    }
  return undo;
}

}  // namespace qforge::quant::ptq
