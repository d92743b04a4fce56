// Cross-layer equalization. See cle.hpp.
#include "quant/ptq/cle.hpp"

#include "engine/autograd.hpp"
#include "nn/layers.hpp"
#include "nn/trace.hpp"
#include "quant/ptq/graph_util.hpp"

#include <cmath>
#include <map>
#include <set>

namespace qforge::quant::ptq {

nlohmann::json CleResult::to_json() const {
  return {{"bn_folds", folds.to_json()}, {"relu6_replaced", relu6_replaced}, {"sets", sets},
          {"high_bias_absorbed_pairs", hba_pairs}, {"messages", messages}};
}

int replace_relu6_with_relu(nn::Module& model, const std::vector<Tensor>& sample_inputs) {
  const nn::TracedGraph g = nn::trace(model, sample_inputs);
  std::set<std::string> done;
  for (const auto& n : g.nodes()) {
    if (n.type != "ReLU6" || done.count(n.name)) continue;
    QFORGE_CHECK(!n.name.empty(), "CLE: the model itself is a ReLU6");
    replace_module(model, n.name, std::make_shared<nn::ReLU>());
    done.insert(n.name);
  }
  return static_cast<int>(done.size());
}

namespace {

struct Link {
  int next = -1;
  std::string activation;
};

bool eligible_conv(const nn::TraceNode& n, const std::vector<int>& calls) {
  if (!is_conv(n) || calls[n.id] != 1 || n.module->param_transform()) return false;
  if (n.module->raw_param("weight").dtype() != DType::f32) return false;
  return conv_groups(*n.module) == 1 || is_depthwise(*n.module);
}

std::vector<double> ones(size_t n) { return std::vector<double>(n, 1.0); }

Tensor* bias_of(nn::Module& m) { return m.has_param("bias") ? &m.raw_param("bias") : nullptr; }  // valid until a parameter is added

}  // namespace

CleResult equalize_model(nn::Module& model, const std::vector<Tensor>& sample_inputs, const CleOptions& opt) {
  CleResult r;
  if (opt.prior_folds) r.folds = *opt.prior_folds;
  if (opt.fold_bn) {
    BnFoldResult f = fold_all_batch_norms(model, sample_inputs);
    for (auto& x : f.folds) r.folds.folds.push_back(std::move(x));
    r.folds.not_folded = std::move(f.not_folded);
  }
  if (opt.replace_relu6) r.relu6_replaced = replace_relu6_with_relu(model, sample_inputs);
  if (!opt.cross_layer_scaling) return r;

  const nn::TracedGraph g = nn::trace(model, sample_inputs);
  const auto calls = call_counts(g);
  std::map<int, Link> link;
  std::set<int> has_pred;
  for (const auto& n : g.nodes()) {
    if (!eligible_conv(n, calls)) continue;
    const Hop h = next_node(g, n.id, true);
    if (h.node < 0 || h.activation == "ReLU6" || !eligible_conv(g.node(h.node), calls)) continue;
    // A depthwise layer must keep the channel count; a regular conv's input channels must match.
    link[n.id] = {h.node, h.activation};
    has_pred.insert(h.node);
  }

  struct Set {
    std::vector<int> ids;
    std::vector<std::string> acts;  // activation between ids[k] and ids[k+1]
  };
  std::vector<Set> sets;
  for (const auto& n : g.nodes()) {
    if (!link.count(n.id) || has_pred.count(n.id)) continue;
    std::vector<int> chain{n.id};
    std::vector<std::string> acts;
    while (link.count(chain.back())) {
      acts.push_back(link[chain.back()].activation);
      chain.push_back(link[chain.back()].next);
    }
    size_t i = 0;
    while (i + 1 < chain.size()) {
      if (is_depthwise(*g.node(chain[i + 1]).module) && i + 2 < chain.size()) {
        sets.push_back({{chain[i], chain[i + 1], chain[i + 2]}, {acts[i], acts[i + 1]}});
        i += 2;
      } else {
        sets.push_back({{chain[i], chain[i + 1]}, {acts[i]}});
        i += 1;
      }
    }
  }
  if (sets.empty()) {
    r.messages.push_back("cross-layer equalization: no eligible Conv->Conv or Conv->Depthwise->Conv layer sets in "
                         "this model; weights left unscaled");
    return r;
  }

  // Output scale divisors per layer (for the BN statistics used by HBA).
  std::map<std::string, std::vector<double>> out_div;
  auto record_div = [&](const std::string& name, const std::vector<double>& d) {
    auto& v = out_div[name];
    if (v.empty()) v = ones(d.size());
    for (size_t c = 0; c < d.size(); ++c) v[c] *= d[c];
  };

  NoGradGuard ng;
  for (const auto& s : sets) {
    std::vector<std::string> names;
    for (int id : s.ids) names.push_back(node_label(g.node(id)));
    r.sets.push_back(names);
    nn::Module& m1 = *g.node(s.ids[0]).module;
    nn::Module& m2 = *g.node(s.ids[1]).module;
    Tensor w1 = m1.raw_param("weight");
    Tensor w2 = m2.raw_param("weight");
    const bool dw2 = is_depthwise(m2);
    const auto r1 = out_channel_absmax(w1);
    if (s.ids.size() == 2) {
      const auto r2 = in_channel_absmax(w2, dw2);
      QFORGE_CHECK(r1.size() == r2.size(), "CLE: {} has {} output channels but {} takes {}", names[0], r1.size(), names[1],
                   r2.size());
      std::vector<double> sc(r1.size(), 1.0), inv(r1.size(), 1.0);
      for (size_t c = 0; c < sc.size(); ++c) {
        if (r1[c] > 0 && r2[c] > 0) sc[c] = std::sqrt(r1[c] / r2[c]);
        inv[c] = 1.0 / sc[c];
      }
      scale_out_channels(w1, bias_of(m1), inv);
      scale_in_channels(w2, sc, dw2);
      record_div(names[0], sc);
    } else {
      nn::Module& m3 = *g.node(s.ids[2]).module;
      Tensor w3 = m3.raw_param("weight");
      const auto r2 = out_channel_absmax(w2);
      const auto r3 = in_channel_absmax(w3, is_depthwise(m3));
      QFORGE_CHECK(r1.size() == r2.size() && r2.size() == r3.size(), "CLE: channel mismatch in set {}, {}, {}", names[0],
                   names[1], names[2]);
      const size_t C = r1.size();
      std::vector<double> s12(C, 1.0), s23(C, 1.0), inv12(C), mid(C), inv23(C);
      for (size_t c = 0; c < C; ++c) {
        const double prod = r1[c] * r2[c] * r3[c];
        if (prod > 0) {
          const double cb = std::cbrt(prod);
          s12[c] = r1[c] / cb;
          s23[c] = cb / r3[c];
        }
        inv12[c] = 1.0 / s12[c];
        mid[c] = s12[c] / s23[c];
        inv23[c] = 1.0 / s23[c];
      }
      scale_out_channels(w1, bias_of(m1), inv12);
      scale_out_channels(w2, nullptr, mid);
      if (Tensor* b2 = bias_of(m2)) {
        float* pb = b2->data<float>();
        for (size_t c = 0; c < C; ++c) pb[c] = static_cast<float>(pb[c] * inv23[c]);
        b2->bump_version();
      }
      scale_in_channels(w3, s23, is_depthwise(m3));
      record_div(names[0], s12);
      record_div(names[1], s23);
    }
  }
  // BN statistics follow the scaling of their layer's output.
  for (auto& f : r.folds.folds) {
    if (f.bn_before_layer) continue;
    auto it = out_div.find(f.layer);
    if (it == out_div.end()) continue;
    for (size_t c = 0; c < f.gamma.size() && c < it->second.size(); ++c) {
      f.gamma[c] /= it->second[c];
      f.beta[c] /= it->second[c];
    }
  }

  if (opt.high_bias_absorption) {
    for (const auto& s : sets) {
      for (size_t k = 0; k + 1 < s.ids.size(); ++k) {
        const std::string n1 = node_label(g.node(s.ids[k]));
        BnFold* f = r.folds.find_layer(n1, false);
        if (!f) continue;
        nn::Module& m1 = *g.node(s.ids[k]).module;
        nn::Module& m2 = *g.node(s.ids[k + 1]).module;
        const bool relu = !s.acts[k].empty();
        const size_t C = f->beta.size();
        std::vector<double> c(C);
        bool any = false;
        for (size_t i = 0; i < C; ++i) {
          c[i] = relu ? std::max(0.0, f->beta[i] - 3.0 * std::fabs(f->gamma[i])) : f->beta[i];
          any = any || c[i] != 0.0;
        }
        if (!any) continue;
        Tensor* b1 = bias_of(m1);
        QFORGE_ASSERT(b1 != nullptr);  // a folded layer always has a bias
        Tensor w2 = m2.raw_param("weight");
        const int64_t o2 = w2.size(0);
        if (!m2.has_param("bias")) m2.register_parameter("bias", Tensor::zeros({o2}));
        Tensor b2 = m2.raw_param("bias");
        float* p1 = b1->data<float>();
        float* p2 = b2.data<float>();
        for (size_t i = 0; i < C; ++i) p1[i] = static_cast<float>(p1[i] - c[i]);
        const auto ws = spatial_sum(w2);
        if (is_depthwise(m2)) {
          for (int64_t o = 0; o < o2; ++o) p2[o] = static_cast<float>(p2[o] + ws[o] * c[o]);
        } else {
          const int64_t ci = w2.size(1);
          for (int64_t o = 0; o < o2; ++o) {
            double acc = p2[o];
            for (int64_t i = 0; i < ci; ++i) acc += ws[o * ci + i] * c[i];
            p2[o] = static_cast<float>(acc);
          }
        }
        b1->bump_version();
        b2.bump_version();
        for (size_t i = 0; i < C; ++i) f->beta[i] -= c[i];
        ++r.hba_pairs;
      }
    }
  }
  return r;
}

}  // namespace qforge::quant::ptq
