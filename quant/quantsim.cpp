// QuantSim: tracing, BN folding, quantizer placement and hooks. See quantsim.hpp.
#include "quant/quantsim.hpp"

#include "engine/autograd.hpp"
#include "engine/kernels/quantize.hpp"
#include "nn/layers.hpp"
#include "nn/recurrent.hpp"
#include "nn/safetensors.hpp"

#include <algorithm>
#include <cmath>
#include <set>

namespace qforge::quant {

std::string onnx_type(const std::string& t) {
  static const std::map<std::string, std::string> m = {
      {"Conv2d", "Conv"},         {"Linear", "Gemm"},
      {"ReLU", "Relu"},           {"ReLU6", "Clip"},
      {"LeakyReLU", "LeakyRelu"}, {"Hardswish", "HardSwish"},
      {"Sigmoid", "Sigmoid"},     {"Tanh", "Tanh"},
      {"BatchNorm1d", "BatchNormalization"}, {"BatchNorm2d", "BatchNormalization"},
      {"MaxPool2d", "MaxPool"},   {"AvgPool2d", "AveragePool"},
      {"AdaptiveAvgPool2d", "GlobalAveragePool"}, {"Flatten", "Flatten"},
      {"Dropout", "Dropout"},     {"Add", "Add"},
      {"Embedding", "Gather"},    {"LSTM", "LSTM"},
      {"GRU", "GRU"},             {"RNN", "RNN"},
      {"Identity", "Identity"},   {"LastTimeStep", "Gather"},
      {"ImageAsSequence", "Transpose"},
      // Note [ONNX layers] (nn/layers.hpp): one ONNX node type each; Hardtanh is ONNX Clip.
      {"Sub", "Sub"},             {"Mul", "Mul"},
      {"Div", "Div"},             {"Constant", "Constant"},
      {"Concat", "Concat"},       {"Split", "Split"},
      {"Slice", "Slice"},         {"Transpose", "Transpose"},
      {"Reshape", "Reshape"},     {"Squeeze", "Squeeze"},
      {"Unsqueeze", "Unsqueeze"}, {"Pad", "Pad"},
      {"Softmax", "Softmax"},     {"LogSoftmax", "LogSoftmax"},
      {"ReduceMean", "ReduceMean"}, {"HardSigmoid", "HardSigmoid"},
      {"Hardtanh", "Clip"}};
  auto it = m.find(t);
  return it == m.end() ? t : it->second;
}

namespace {

bool is_recurrent(const nn::Module& m) { return dynamic_cast<const nn::RNNBase*>(&m) != nullptr; }
bool is_bn(const std::string& t) { return t == "BatchNorm1d" || t == "BatchNorm2d"; }

}  // namespace

QuantSim::QuantSim(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs, QuantSimOptions opt)
    : model_(std::move(model)), opt_(std::move(opt)) {
  QFORGE_CHECK(model_ != nullptr, "QuantSim: null model");
  check_bitwidth(opt_.act_bw, false, false, "QuantSim activation bitwidth");
  check_bitwidth(opt_.param_bw, false, false, "QuantSim parameter bitwidth");
  check_bitwidth(opt_.bias_bw, true, false, "QuantSim bias bitwidth");
  cfg_ = opt_.config_obj ? *opt_.config_obj : config_from_name_or_path(opt_.config);
  graph_ = nn::trace(*model_, sample_inputs);
  if (opt_.fold_bn) fold_batch_norms();
  place_quantizers();
  install_hooks();
}

QuantSim::~QuantSim() {
  for (auto& [m, h] : hooks_) m->remove_hook(h);
  for (nn::Module* m : transformed_) m->clear_param_transform();
  for (nn::Module* m : cell_hooked_) static_cast<nn::RNNBase*>(m)->clear_cell_hook();
}

// ---- BN folding ------------------------------------------------------------------------------------

void QuantSim::fold_batch_norms() {
  std::map<nn::Module*, int> calls;
  for (const auto& n : graph_.nodes()) calls[n.module.get()]++;
  for (const auto& b : graph_.nodes()) {
    if (!is_bn(b.type) || calls[b.module.get()] != 1 || b.inputs.size() != 1) continue;
    const auto& srcs = b.inputs[0].sources;
    if (srcs.size() != 1 || !srcs[0].direct || srcs[0].node < 0 || srcs[0].index != 0) continue;
    const auto& p = graph_.node(srcs[0].node);
    if ((p.type != "Conv2d" && p.type != "Linear") || calls[p.module.get()] != 1) continue;
    const auto cons = graph_.consumers(p.id);
    if (cons.size() != 1 || graph_.feeds_model_output(p.id)) continue;
    if (p.module->param_transform() || b.module->param_transform()) continue;
    auto* bn = dynamic_cast<nn::BatchNorm*>(b.module.get());
    if (bn == nullptr) continue;

    NoGradGuard ng;
    nn::Module& conv = *p.module;
    // Register a missing bias first: registering moves the parameter list (references into it dangle).
    if (!conv.has_param("bias")) conv.register_parameter("bias", Tensor::zeros({conv.raw_param("weight").size(0)}));
    Tensor& w = conv.raw_param("weight");
    QFORGE_CHECK(w.dtype() == DType::f32, "QuantSim BN fold: {} weight must be f32", p.name);
    const int64_t c = w.size(0);
    QFORGE_CHECK(c == bn->num_features(), "QuantSim BN fold: {} has {} channels, {} has {}", p.name, c, b.name,
                 bn->num_features());
    const auto mean = bn->buffer("running_mean").to_vector<double>();
    const auto var = bn->buffer("running_var").to_vector<double>();
    std::vector<double> gamma(c, 1.0), beta(c, 0.0);
    if (bn->affine()) {
      gamma = bn->raw_param("weight").to_vector<double>();
      beta = bn->raw_param("bias").to_vector<double>();
    }
    Tensor& bias = conv.raw_param("bias");
    float* pw = w.data<float>();
    float* pb = bias.data<float>();
    kernels::fold_bn_into_layer(pw, c, w.numel() / c, pb, gamma.data(), beta.data(), mean.data(), var.data(),
                                bn->eps());
    w.bump_version();
    bias.bump_version();
    // BN becomes the identity (eval mode) and is bypassed (train mode).
    bn->buffer("running_mean").fill_(0.0);
    bn->buffer("running_var").fill_(1.0 - bn->eps());
    if (bn->affine()) {
      bn->raw_param("weight").fill_(1.0);
      bn->raw_param("bias").fill_(0.0);
    }
    // The bypass must also keep the statistics at the identity: in train mode BatchNorm's forward still
    // runs (before the hook) and would update its running statistics, which a reload would fold again.
    const double num_tracked = bn->has_buffer("num_batches_tracked") ? bn->buffer("num_batches_tracked").item() : 0.0;
    const int h = bn->add_forward_hook(
        [num_tracked](nn::Module& m, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
          out[0] = in[0];
          if (m.is_training()) {
            NoGradGuard no_grad;
            m.buffer("running_mean").fill_(0.0);
            m.buffer("running_var").fill_(1.0 - static_cast<nn::BatchNorm&>(m).eps());
            if (m.has_buffer("num_batches_tracked")) m.buffer("num_batches_tracked").fill_(num_tracked);
          }
        });
    hooks_.emplace_back(bn, h);
    bypassed_bn_.push_back(bn);
    folds_.emplace_back(p.name, b.name);
  }
}

// ---- placement -------------------------------------------------------------------------------------

Quantizer* QuantSim::add(const std::string& name, const std::string& kind, const std::string& module,
                         const std::string& export_key, QuantizerSettings s) {
  QFORGE_CHECK(!by_name_.count(name), "QuantSim: duplicate quantizer name {}", name);
  s.seed = opt_.seed + owned_.size() * 0x9E3779B97F4A7C15ull;
  owned_.push_back(std::make_unique<Quantizer>(s, name));
  by_name_[name] = infos_.size();
  infos_.push_back({name, kind, module, export_key, owned_.back().get()});
  return owned_.back().get();
}

namespace {

struct NodeQ {
  std::vector<Quantizer*> in, out;
  std::map<std::string, Quantizer*> params;
};

}  // namespace

void QuantSim::place_quantizers() {
  const auto& nodes = graph_.nodes();
  std::set<nn::Module*> folded_bn(bypassed_bn_.begin(), bypassed_bn_.end());
  std::map<nn::Module*, int> first_call;
  for (const auto& n : nodes)
    if (!first_call.count(n.module.get())) first_call[n.module.get()] = n.id;
  std::vector<NodeQ> nq(nodes.size());

  auto act_settings = [&](bool sym, bool on) {
    QuantizerSettings s;
    s.grid.bitwidth = opt_.act_bw;
    s.grid.symmetric = sym;
    s.grid.strict_symmetric = cfg_.strict_symmetric && sym;
    s.grid.unsigned_symmetric = cfg_.unsigned_symmetric && sym;
    s.scheme = opt_.scheme;
    s.percentile = opt_.percentile;
    s.rounding = opt_.rounding;
    s.range_learning = opt_.range_learning;
    s.enabled = on;
    return s;
  };
  auto param_settings = [&](const std::string& pname, bool sym, bool on, bool per_channel) {
    QuantizerSettings s = act_settings(sym, on);
    const bool bias = pname.rfind("bias", 0) == 0;
    s.grid.bitwidth = bias ? opt_.bias_bw : opt_.param_bw;
    s.allow_32 = bias;
    s.is_param = true;
    s.per_channel = per_channel && !bias;
    s.axis = 0;
    return s;
  };

  for (const auto& n : nodes) {
    if (first_call[n.module.get()] != n.id) continue;  // one set of quantizers per module
    if (folded_bn.count(n.module.get())) continue;
    nn::Module& m = *n.module;
    const std::string type = onnx_type(n.type);
    const std::string prefix = n.name.empty() ? n.type : n.name;

    if (is_recurrent(m)) {
      auto& rnn = static_cast<nn::RNNBase&>(m);
      const ResolvedOp r = resolve_op(cfg_, type, {"weight", "bias"});
      const auto& o = rnn.options();
      for (int64_t k = 0; k < o.num_layers; ++k) {
        const std::string sfx = fmt::format("_l{}", k);
        std::string wkeys, rkeys, bkeys;
        for (int64_t d = 0; d < rnn.num_directions(); ++d) {
          const std::string ps = nn::RNNBase::param_suffix(k, d == 1);
          wkeys += (wkeys.empty() ? "" : ",") + prefix + ".weight_ih" + ps;
          rkeys += (rkeys.empty() ? "" : ",") + prefix + ".weight_hh" + ps;
          if (o.bias)
            bkeys += (bkeys.empty() ? "" : ",") + prefix + ".bias_ih" + ps + "," + prefix + ".bias_hh" + ps;
        }
        add(prefix + ".input" + sfx, "recurrent", prefix, prefix + ".input" + sfx, act_settings(r.act_symmetric, true));
        add(prefix + ".hidden" + sfx, "recurrent", prefix, prefix + ".hidden" + sfx, act_settings(r.act_symmetric, true));
        if (opt_.quantize_cell_state && rnn.cell_type() == nn::CellType::lstm)
          add(prefix + ".cell" + sfx, "recurrent", prefix, prefix + ".cell" + sfx, act_settings(r.act_symmetric, true));
        if (opt_.quantize_gates)
          add(prefix + ".gates" + sfx, "recurrent", prefix, prefix + ".gates" + sfx, act_settings(r.act_symmetric, true));
        const auto& w = r.params.at("weight");
        add(prefix + ".W" + sfx, "param", prefix, wkeys, param_settings("weight", w.symmetric, w.quantized, false));
        add(prefix + ".R" + sfx, "param", prefix, rkeys, param_settings("weight", w.symmetric, w.quantized, false));
        if (o.bias) {
          const auto& b = r.params.at("bias");
          add(prefix + ".bias" + sfx, "param", prefix, bkeys, param_settings("bias", b.symmetric, b.quantized, false));
        }
      }
      continue;
    }

    std::vector<std::string> pnames;
    for (const auto& [pn, t] : m.own_parameters())
      if (is_floating(t.dtype())) pnames.push_back(pn);
    const ResolvedOp r = resolve_op(cfg_, type, pnames);
    const bool pc_capable = type == "Conv" || type == "Gemm" || type == "MatMul";
    for (size_t i = 0; i < n.output_shapes.size(); ++i) {
      QuantizerSettings s = act_settings(r.act_symmetric, r.output_quantized);
      s.constraint_min = r.constraint_min;
      s.constraint_max = r.constraint_max;
      const std::string nm = prefix + (i == 0 ? ".output" : fmt::format(".output{}", i));
      nq[n.id].out.push_back(add(nm, "output", prefix, nm, s));
    }
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      if (!is_floating(n.inputs[i].dtype)) {
        nq[n.id].in.push_back(nullptr);
        continue;
      }
      const std::string nm = prefix + (i == 0 ? ".input" : fmt::format(".input{}", i));
      nq[n.id].in.push_back(add(nm, "input", prefix, nm, act_settings(r.act_symmetric, r.input_quantized)));
    }
    for (const auto& pn : pnames) {
      const auto& rp = r.params.at(pn);
      const std::string nm = prefix + "." + pn;
      nq[n.id].params[pn] = add(nm, "param", prefix, nm, param_settings(pn, rp.symmetric, rp.quantized, r.per_channel && pc_capable));
    }
  }

  // Resolve graph-level rules. Folded BNs are transparent.
  auto consumers_of = [&](int id) {
    std::vector<std::pair<int, int>> out;
    std::vector<std::pair<int, int>> stack = graph_.consumers(id);
    while (!stack.empty()) {
      auto c = stack.back();
      stack.pop_back();
      if (folded_bn.count(nodes[c.first].module.get())) {
        for (auto cc : graph_.consumers(c.first)) stack.push_back(cc);
        if (graph_.feeds_model_output(c.first)) out.emplace_back(-1, 0);
      } else {
        out.push_back(c);
      }
    }
    return out;
  };
  auto set_all = [](std::vector<Quantizer*>& v, bool on) {
    for (Quantizer* q : v)
      if (q) q->set_enabled(on);
  };
  // op_type is_output_quantized "False": the consumers' inputs stay unquantized too.
  for (const auto& n : nodes) {
    auto it = cfg_.op_type.find(onnx_type(n.type));
    if (it == cfg_.op_type.end() || !it->second.is_output_quantized || *it->second.is_output_quantized) continue;
    for (auto [cid, slot] : consumers_of(n.id)) {
      if (cid < 0 || slot >= static_cast<int>(nq[cid].in.size()) || !nq[cid].in[slot]) continue;
      // Two op_type rules setting one tensor quantizer differently: AIMET's error (_modify_tensor_quantizers).
      auto ct = cfg_.op_type.find(onnx_type(nodes[cid].type));
      if (ct != cfg_.op_type.end() && ct->second.is_input_quantized.value_or(false))
        throw InputError(fmt::format(
            "quantsim config {}: Conflicting tensor quantizer settings for the tensor {} -> {}: op_type {} sets "
            "is_output_quantized \"False\" but op_type {} sets is_input_quantized \"True\"",
            cfg_.source, nodes[n.id].name, nodes[cid].name, onnx_type(n.type), onnx_type(nodes[cid].type)));
      nq[cid].in[slot]->set_enabled(false);
    }
  }
  // supergroups: linear chains of the listed types; only the last op's output is quantized.
  for (const auto& n : nodes) {
    for (const auto& pattern : cfg_.supergroups) {
      std::vector<int> chain{n.id};
      if (onnx_type(n.type) != pattern[0] || folded_bn.count(n.module.get())) continue;
      bool ok = true;
      for (size_t k = 1; k < pattern.size() && ok; ++k) {
        const int cur = chain.back();
        const auto cons = consumers_of(cur);
        if (cons.size() != 1 || cons[0].first < 0 || graph_.feeds_model_output(cur)) {
          ok = false;
          break;
        }
        const int next = cons[0].first;
        if (onnx_type(nodes[next].type) != pattern[k]) ok = false;
        chain.push_back(next);
      }
      if (!ok) continue;
      for (size_t k = 0; k < chain.size(); ++k) {
        if (k + 1 < chain.size()) set_all(nq[chain[k]].out, false);
        if (k > 0) set_all(nq[chain[k]].in, false);
      }
    }
  }
  // model_input: quantize inputs fed by a model input.
  if (cfg_.model_input_quantized)
    for (const auto& n : nodes)
      for (size_t i = 0; i < n.inputs.size() && i < nq[n.id].in.size(); ++i)
        for (const auto& s : n.inputs[i].sources)
          if (s.node == nn::TraceSource::kModelInput && nq[n.id].in[i]) nq[n.id].in[i]->set_enabled(true);
  // model_output
  if (cfg_.model_output_quantized)
    for (const auto& n : nodes)
      if (graph_.feeds_model_output(n.id)) set_all(nq[n.id].out, true);

  // Hooks need the per-module lists; keep them in the infos' order via closures in install_hooks.
  node_quantizers_.clear();
  for (const auto& n : nodes)
    if (first_call[n.module.get()] == n.id) node_quantizers_.push_back({n.module.get(), nq[n.id].in, nq[n.id].out, nq[n.id].params});
}

void QuantSim::install_hooks() {
  for (auto& nqz : node_quantizers_) {
    nn::Module* m = nqz.module;
    const bool any_in = std::any_of(nqz.in.begin(), nqz.in.end(), [](Quantizer* q) { return q != nullptr; });
    if (any_in) {
      auto ins = nqz.in;
      hooks_.emplace_back(m, m->add_forward_pre_hook([ins](nn::Module&, std::vector<Tensor>& inputs) {
        for (size_t i = 0; i < inputs.size() && i < ins.size(); ++i)
          if (ins[i] && inputs[i].defined()) inputs[i] = ins[i]->forward(inputs[i]);
      }));
    }
    if (!nqz.out.empty()) {
      auto outs = nqz.out;
      hooks_.emplace_back(m, m->add_forward_hook([outs](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) {
        for (size_t i = 0; i < o.size() && i < outs.size(); ++i)
          if (o[i].defined()) o[i] = outs[i]->forward(o[i]);
      }));
    }
    if (!nqz.params.empty()) {
      QFORGE_CHECK(!m->param_transform(), "QuantSim: module {} already has a parameter transform", m->type_name());
      auto ps = nqz.params;
      m->set_param_transform([ps](nn::Module&, const std::string& name, const Tensor& stored) {
        auto it = ps.find(name);
        return it == ps.end() ? stored : it->second->forward(stored);
      });
      transformed_.push_back(m);
    }
  }
  // Recurrent layers: cell hook for input/W/R/hidden(/cell/gates), parameter transform for biases.
  for (const auto& n : graph_.nodes()) {
    if (!is_recurrent(*n.module)) continue;
    auto* rnn = static_cast<nn::RNNBase*>(n.module.get());
    if (std::find(cell_hooked_.begin(), cell_hooked_.end(), rnn) != cell_hooked_.end()) continue;
    const std::string prefix = n.name.empty() ? n.type : n.name;
    std::map<std::pair<int64_t, int>, Quantizer*> sites;
    std::map<std::string, Quantizer*> biases;
    uint32_t mask = 0;
    for (int64_t k = 0; k < rnn->options().num_layers; ++k) {
      auto bind = [&](nn::CellSite s, const std::string& q) {
        if (!has_quantizer(prefix + q + fmt::format("_l{}", k))) return;
        sites[{k, static_cast<int>(s)}] = &quantizer(prefix + q + fmt::format("_l{}", k));
        mask |= nn::CellHook::bit(s);
      };
      bind(nn::CellSite::input, ".input");
      bind(nn::CellSite::weight_ih, ".W");
      bind(nn::CellSite::weight_hh, ".R");
      bind(nn::CellSite::hidden, ".hidden");
      bind(nn::CellSite::cell, ".cell");
      bind(nn::CellSite::gates, ".gates");
      const std::string bq = prefix + fmt::format(".bias_l{}", k);
      if (has_quantizer(bq))
        for (int d = 0; d < rnn->num_directions(); ++d) {
          const std::string ps = nn::RNNBase::param_suffix(k, d == 1);
          biases["bias_ih" + ps] = &quantizer(bq);
          biases["bias_hh" + ps] = &quantizer(bq);
        }
    }
    nn::CellHook hook;
    hook.sites = mask;
    hook.fn = [sites](int64_t layer, bool, nn::CellSite s, const Tensor& t) {
      auto it = sites.find({layer, static_cast<int>(s)});
      return it == sites.end() ? t : it->second->forward(t);
    };
    // A nearest-rounding per-tensor hidden quantizer, static or with a learnable range, runs inside the
    // fused sequence op (nn/recurrent_cells.hpp Notes [Fused hidden fake-quant], [Fused range learning]);
    // the quantizer describes itself (Quantizer::fused_qdq). Calibration, stochastic rounding,
    // per-channel and float grids keep the per-step path.
    hook.fused_hidden = [sites](int64_t layer, bool, const Shape& step_shape, nn::HiddenFakeQuant& out) {
      auto it = sites.find({layer, static_cast<int>(nn::CellSite::hidden)});
      if (it == sites.end()) return false;
      const auto f = it->second->fused_qdq(step_shape);
      if (!f) return false;
      out.scale = f->grid.scale;
      out.inv_scale = f->grid.inv_scale;
      out.lo = f->grid.lo;
      out.hi = f->grid.hi;
      out.range = {f->p0, f->p1, f->s0, f->o0, f->s1, f->o1};
      return true;
    };
    rnn->set_cell_hook(std::move(hook));
    cell_hooked_.push_back(rnn);
    if (!biases.empty()) {
      rnn->set_param_transform([biases](nn::Module&, const std::string& name, const Tensor& stored) {
        auto it = biases.find(name);
        return it == biases.end() ? stored : it->second->forward(stored);
      });
      transformed_.push_back(rnn);
    }
  }
}

}  // namespace qforge::quant
