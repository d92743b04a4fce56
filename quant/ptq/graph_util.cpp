#include "quant/ptq/graph_util.hpp"

#include "engine/autograd.hpp"
#include "nn/graph.hpp"

#include <algorithm>
#include <cmath>

namespace qforge::quant::ptq {

void calibrate_weights_only(QuantSim& sim, const std::vector<Tensor>& sample_inputs) {
  for (const auto& info : sim.quantizers())
    if (info.kind != "param") info.quantizer->set_enabled(false);
  sim.compute_encodings([&](nn::Module& m) { m(std::vector<Tensor>{sample_inputs}); });
}

void set_frozen_param_encodings(QuantSim& sim, const std::map<std::string, std::vector<Encoding>>& encs, const char* who) {
  for (const auto& [key, enc] : encs) {
    Quantizer* q = nullptr;
    for (const auto& info : sim.quantizers())
      if (info.kind == "param" && info.export_key == key) q = info.quantizer;
    if (!q) throw InputError(fmt::format("{} encodings: the QuantSim has no parameter quantizer for '{}'", who, key));
    if (enc.empty() || q->settings().per_channel != (enc.size() > 1) || q->settings().grid.bitwidth != enc[0].bitwidth)
      throw InputError(fmt::format("{} encodings for '{}' ({} entries, {} bits) do not fit the QuantSim's quantizer "
                                   "({}, {} bits): build the sim with the options the pass used", who, key, enc.size(),
                                   enc.empty() ? 0 : enc[0].bitwidth, q->settings().per_channel ? "per-channel" : "per-tensor",
                                   q->settings().grid.bitwidth));
    q->set_encodings(enc);
    q->freeze();
  }
}

bool is_conv(const nn::TraceNode& n) { return n.type == "Conv2d"; }

std::vector<QuantizedWeightLayer> quantized_weight_layers(QuantSim& sim, const std::vector<std::string>& ignore) {
  const auto& g = sim.graph();
  const auto calls = call_counts(g);
  std::vector<QuantizedWeightLayer> out;
  for (const auto& n : g.nodes()) {
    if ((!is_conv(n) && !is_linear(n)) || calls[n.id] != 1) continue;
    const std::string name = node_label(n);
    if (std::find(ignore.begin(), ignore.end(), name) != ignore.end()) continue;
    if (!sim.has_quantizer(name + ".weight")) continue;
    Quantizer& q = sim.quantizer(name + ".weight");
    if (q.enabled() && q.has_encoding()) out.push_back({n.id, name, &q});
  }
  return out;
}
bool is_linear(const nn::TraceNode& n) { return n.type == "Linear"; }
bool is_bn(const nn::TraceNode& n) { return n.type == "BatchNorm1d" || n.type == "BatchNorm2d"; }
bool is_relu_like(const nn::TraceNode& n) { return n.type == "ReLU" || n.type == "ReLU6"; }

int64_t conv_groups(const nn::Module& conv) {
  auto* c = dynamic_cast<const nn::Conv2d*>(&conv);
  return c ? c->options().groups : 1;
}

bool is_depthwise(const nn::Module& conv) {
  auto* c = dynamic_cast<const nn::Conv2d*>(&conv);
  if (!c) return false;
  const auto& o = c->options();
  return o.groups > 1 && o.groups == o.in_channels && o.groups == o.out_channels;
}

bool is_identity_bn(const nn::Module& m) {
  auto* bn = dynamic_cast<const nn::BatchNorm*>(&m);
  if (!bn) return false;
  auto& b = const_cast<nn::BatchNorm&>(*bn);
  const float one_minus_eps = static_cast<float>(1.0 - bn->eps());
  for (float v : b.buffer("running_mean").to_vector<float>())
    if (v != 0.0f) return false;
  for (float v : b.buffer("running_var").to_vector<float>())
    if (v != one_minus_eps) return false;
  if (bn->affine()) {
    for (float v : b.raw_param("weight").to_vector<float>())
      if (v != 1.0f) return false;
    for (float v : b.raw_param("bias").to_vector<float>())
      if (v != 0.0f) return false;
  }
  return true;
}

void set_identity_bn(nn::BatchNorm& bn) {
  NoGradGuard ng;
  bn.buffer("running_mean").fill_(0.0);
  bn.buffer("running_var").fill_(1.0 - bn.eps());
  if (bn.affine()) {
    bn.raw_param("weight").fill_(1.0);
    bn.raw_param("bias").fill_(0.0);
  }
}

std::vector<int> call_counts(const nn::TracedGraph& g) {
  std::vector<int> out(g.size(), 0);
  for (const auto& a : g.nodes())
    for (const auto& b : g.nodes())
      if (a.module == b.module) out[a.id]++;
  return out;
}

int sole_consumer(const nn::TracedGraph& g, int id) {
  if (g.feeds_model_output(id) || g.node(id).output_shapes.size() != 1) return -1;
  const auto cons = g.consumers(id);
  if (cons.size() != 1) return -1;
  const auto& in = g.node(cons[0].first).inputs;
  if (in.size() != 1 || in[0].sources.size() != 1 || !in[0].sources[0].direct) return -1;
  return cons[0].first;
}

int sole_producer(const nn::TracedGraph& g, int id) {
  const auto& in = g.node(id).inputs;
  if (in.size() != 1 || in[0].sources.size() != 1 || !in[0].sources[0].direct) return -1;
  const auto& s = in[0].sources[0];
  if (s.node < 0 || s.index != 0) return -1;
  return s.node;
}

Hop next_node(const nn::TracedGraph& g, int id, bool allow_activation) {
  Hop h;
  int cur = id;
  while (true) {
    const int nxt = sole_consumer(g, cur);
    if (nxt < 0) return h;
    const auto& n = g.node(nxt);
    const bool transparent = (is_bn(n) && is_identity_bn(*n.module)) || n.type == "Identity" || n.type == "Dropout";
    if (transparent) {
      h.passed.push_back(nxt);
      cur = nxt;
      continue;
    }
    if (allow_activation && is_relu_like(n) && h.activation.empty()) {
      h.activation = n.type;
      h.passed.push_back(nxt);
      cur = nxt;
      continue;
    }
    h.node = nxt;
    return h;
  }
}

std::string node_label(const nn::TraceNode& n) { return n.name.empty() ? n.type : n.name; }

void replace_module(nn::Module& root, const std::string& name, nn::ModulePtr replacement) {
  if (auto* g = dynamic_cast<nn::Graph*>(&root)) {
    const int i = g->node_index(name);
    if (i >= 0) {
      g->replace_node_module(i, std::move(replacement));
      return;
    }
  }
  // A child of some parent: find the longest prefix that names a module whose child is the rest.
  for (size_t pos = name.size(); pos != std::string::npos && pos > 0; pos = name.rfind('.', pos - 1)) {
    const std::string parent = pos == name.size() ? "" : name.substr(0, pos);
    const std::string child = pos == name.size() ? name : name.substr(pos + 1);
    if (pos == name.size()) {
      if (root.child(name)) {
        root.register_child(name, std::move(replacement));
        return;
      }
      continue;
    }
    nn::ModulePtr p;
    try {
      p = root.find(parent);
    } catch (const Error&) {
      continue;
    }
    if (auto* g = dynamic_cast<nn::Graph*>(p.get())) {
      const int i = g->node_index(child);
      if (i >= 0) {
        g->replace_node_module(i, std::move(replacement));
        return;
      }
    }
    if (p->child(child)) {
      p->register_child(child, std::move(replacement));
      return;
    }
  }
  throw Error(fmt::format("replace_module: no module '{}' to replace", name));
}

// ---- weights ----

namespace {

void check_weight(const Tensor& w, const char* who) {
  QFORGE_CHECK(w.dtype() == DType::f32 && w.is_contiguous() && w.dim() >= 2, "{}: expected a contiguous f32 weight "
               "of rank >= 2, got {} {}", who, dtype_name(w.dtype()), shape_str(w.shape()));
}

int64_t spatial(const Tensor& w) { return w.dim() > 2 ? w.numel() / (w.size(0) * w.size(1)) : 1; }

}  // namespace

std::vector<double> out_channel_absmax(const Tensor& w) {
  check_weight(w, "out_channel_absmax");
  const int64_t c = w.size(0), inner = w.numel() / c;
  const float* p = w.data<float>();
  std::vector<double> r(c, 0.0);
  for (int64_t i = 0; i < c; ++i)
    for (int64_t k = 0; k < inner; ++k) r[i] = std::max(r[i], static_cast<double>(std::fabs(p[i * inner + k])));
  return r;
}

std::vector<double> in_channel_absmax(const Tensor& w, bool depthwise) {
  if (depthwise) return out_channel_absmax(w);
  check_weight(w, "in_channel_absmax");
  const int64_t o = w.size(0), ci = w.size(1), hw = spatial(w);
  const float* p = w.data<float>();
  std::vector<double> r(ci, 0.0);
  for (int64_t a = 0; a < o; ++a)
    for (int64_t b = 0; b < ci; ++b)
      for (int64_t k = 0; k < hw; ++k) r[b] = std::max(r[b], static_cast<double>(std::fabs(p[(a * ci + b) * hw + k])));
  return r;
}

void scale_out_channels(Tensor& w, Tensor* bias, const std::vector<double>& f) {
  check_weight(w, "scale_out_channels");
  NoGradGuard ng;
  const int64_t c = w.size(0), inner = w.numel() / c;
  QFORGE_CHECK(static_cast<int64_t>(f.size()) == c, "scale_out_channels: {} factors for {} channels", f.size(), c);
  float* p = w.data<float>();
  for (int64_t i = 0; i < c; ++i)
    for (int64_t k = 0; k < inner; ++k) p[i * inner + k] = static_cast<float>(p[i * inner + k] * f[i]);
  w.bump_version();
  if (bias && bias->defined()) {
    float* b = bias->data<float>();
    for (int64_t i = 0; i < c; ++i) b[i] = static_cast<float>(b[i] * f[i]);
    bias->bump_version();
  }
}

void scale_in_channels(Tensor& w, const std::vector<double>& f, bool depthwise) {
  if (depthwise) return scale_out_channels(w, nullptr, f);
  check_weight(w, "scale_in_channels");
  NoGradGuard ng;
  const int64_t o = w.size(0), ci = w.size(1), hw = spatial(w);
  QFORGE_CHECK(static_cast<int64_t>(f.size()) == ci, "scale_in_channels: {} factors for {} input channels", f.size(), ci);
  float* p = w.data<float>();
  for (int64_t a = 0; a < o; ++a)
    for (int64_t b = 0; b < ci; ++b)
      for (int64_t k = 0; k < hw; ++k) p[(a * ci + b) * hw + k] = static_cast<float>(p[(a * ci + b) * hw + k] * f[b]);
  w.bump_version();
}

std::vector<double> spatial_sum(const Tensor& w) {
  check_weight(w, "spatial_sum");
  const int64_t n = w.size(0) * w.size(1), hw = spatial(w);
  const float* p = w.data<float>();
  std::vector<double> r(n, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < hw; ++k) r[i] += p[i * hw + k];
  return r;
}

}  // namespace qforge::quant::ptq
