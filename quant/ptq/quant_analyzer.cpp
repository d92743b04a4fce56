// Quantization analyzer: measurements. The HTML page is in analyzer_report.cpp.
#include "quant/ptq/quant_analyzer.hpp"

#include "engine/autograd.hpp"
#include "quant/blockwise_sim.hpp"
#include "quant/encodings_io.hpp"
#include "quant/ptq/graph_util.hpp"

#include <cmath>
#include <map>

namespace qforge::quant::ptq {

namespace {

// Restores every quantizer's enabled flag on scope exit.
class EnabledGuard {
public:
  explicit EnabledGuard(QuantSim& sim) : sim_(sim) {
    for (const auto& i : sim.quantizers()) saved_.push_back(i.quantizer->enabled());
  }
  ~EnabledGuard() {
    for (size_t k = 0; k < saved_.size(); ++k) sim_.quantizers()[k].quantizer->set_enabled(saved_[k]);
  }
  bool was(size_t k) const { return saved_[k]; }

private:
  QuantSim& sim_;
  std::vector<bool> saved_;
};

struct Sampler {
  std::vector<float> v;
  int64_t limit = 200000;
  void add(const Tensor& t) {
    const Tensor c = t.detach().contiguous().to(DType::f32);
    const float* p = c.data<float>();
    const int64_t n = c.numel();
    const int64_t room = limit - static_cast<int64_t>(v.size());
    if (room <= 0) return;
    const int64_t step = std::max<int64_t>(1, (n + room - 1) / room);
    for (int64_t i = 0; i < n; i += step) v.push_back(p[i]);
  }
};

}  // namespace

Analysis analyze(QuantSim& sim, const std::vector<Tensor>& batches, const std::function<double(nn::Module&)>& eval,
                 const AnalyzerOptions& opt) {
  QFORGE_CHECK(static_cast<bool>(eval), "analyze: needs an evaluation callback");
  if (batches.empty()) throw InputError("analyze: needs at least one batch of data");
  Analysis a;
  a.options = {{"scheme", scheme_name(sim.options().scheme)}, {"act_bw", sim.options().act_bw},
               {"param_bw", sim.options().param_bw}, {"config", sim.options().config}};
  a.block_scales = block_scale_stats(sim);
  EnabledGuard guard(sim);
  const auto& infos = sim.quantizers();
  auto set_all = [&](auto&& pred) {
    for (size_t k = 0; k < infos.size(); ++k) infos[k].quantizer->set_enabled(guard.was(k) && pred(k));
  };
  auto is_param = [&](size_t k) { return infos[k].kind == "param"; };

  set_all([](size_t) { return false; });
  a.fp32 = eval(sim.model());
  set_all(is_param);
  a.weights_only = eval(sim.model());
  set_all([&](size_t k) { return !is_param(k); });
  a.activations_only = eval(sim.model());
  set_all([](size_t) { return true; });
  a.quantized = eval(sim.model());

  for (size_t k = 0; k < infos.size(); ++k) {
    QuantizerAnalysis q;
    q.name = infos[k].name;
    q.kind = infos[k].kind;
    q.module = infos[k].module;
    q.enabled = guard.was(k);
    if (infos[k].quantizer->has_encoding()) q.encodings = infos[k].quantizer->encodings();
    a.quantizers.push_back(q);
  }
  if (opt.sweeps)
    for (size_t k = 0; k < infos.size(); ++k) {
      if (!guard.was(k)) continue;
      set_all([&](size_t j) { return j == k; });
      a.quantizers[k].acc_only_this = eval(sim.model());
      set_all([&](size_t j) { return j != k; });
      a.quantizers[k].acc_without_this = eval(sim.model());
    }

  // ---- per-layer SQNR/MSE and histograms ----
  const auto& g = sim.graph();
  std::map<std::string, int> first_node;
  for (const auto& n : g.nodes())
    if (!first_node.count(n.name)) first_node[n.name] = n.id;
  std::vector<Sampler> samples(infos.size());
  for (auto& s : samples) s.limit = opt.max_histogram_values;
  for (size_t k = 0; k < infos.size(); ++k)
    if (infos[k].kind == "param") {
      const auto it = first_node.find(infos[k].module);
      if (it == first_node.end()) continue;
      nn::Module& m = *g.node(it->second).module;
      const std::string pname = infos[k].name.substr(infos[k].module.size() + 1);
      if (m.has_param(pname)) samples[k].add(m.raw_param(pname));
    }
  struct Acc {
    double sig = 0, noise = 0;
    int64_t n = 0;
  };
  std::vector<Acc> acc(g.size());
  std::vector<std::vector<Tensor>> fp_out(g.size());
  std::vector<std::pair<nn::Module*, int>> hooks;
  bool fp_pass = true;
  std::map<nn::Module*, int> node_of;
  for (const auto& n : g.nodes())
    if (!node_of.count(n.module.get())) node_of[n.module.get()] = n.id;
  // Quantizers per module, for the histograms of the FP32 pass.
  std::map<std::string, std::vector<size_t>> q_of_module;
  for (size_t k = 0; k < infos.size(); ++k)
    if (infos[k].kind == "input" || infos[k].kind == "output") q_of_module[infos[k].module].push_back(k);
  for (auto& [mod, id] : node_of) {
    const int nid = id;
    hooks.emplace_back(mod, mod->add_forward_hook([&, nid](nn::Module&, const std::vector<Tensor>& in, std::vector<Tensor>& out) {
      if (out.empty() || !out[0].defined() || !is_floating(out[0].dtype())) return;
      if (fp_pass) {
        fp_out[nid].push_back(out[0].detach());
        const auto it = q_of_module.find(node_label(g.node(nid)));
        if (it != q_of_module.end())
          for (size_t k : it->second) {
            const std::string& nm = infos[k].name;
            const bool is_out = infos[k].kind == "output";
            const size_t idx = is_out ? (nm.size() > 7 && nm.substr(nm.size() - 7) == ".output" ? 0 : std::stoul(nm.substr(nm.rfind("output") + 6)))
                                      : (nm.size() > 6 && nm.substr(nm.size() - 6) == ".input" ? 0 : std::stoul(nm.substr(nm.rfind("input") + 5)));
            const auto& src = is_out ? out : in;
            if (idx < src.size() && src[idx].defined() && is_floating(src[idx].dtype())) samples[k].add(src[idx]);
          }
      } else if (!fp_out[nid].empty()) {
        const Tensor f = fp_out[nid].front().contiguous().to(DType::f64);
        fp_out[nid].erase(fp_out[nid].begin());
        const Tensor q = out[0].detach().contiguous().to(DType::f64);
        if (f.numel() != q.numel()) return;
        const double* pf = f.data<double>();
        const double* pq = q.data<double>();
        for (int64_t i = 0; i < f.numel(); ++i) {
          acc[nid].sig += pf[i] * pf[i];
          acc[nid].noise += (pq[i] - pf[i]) * (pq[i] - pf[i]);
        }
        acc[nid].n += f.numel();
      }
    }));
  }
  {
    NoGradGuard ng;
    const bool was = sim.model().is_training();
    sim.model().eval();
    const int64_t nb = std::min<int64_t>(opt.num_batches, batches.size());
    try {
      for (int64_t b = 0; b < nb; ++b) {
        fp_pass = true;
        set_all([](size_t) { return false; });
        sim.model()(std::vector<Tensor>{batches[b]});
        fp_pass = false;
        set_all([](size_t) { return true; });
        sim.model()(std::vector<Tensor>{batches[b]});
      }
    } catch (...) {
      for (auto& [m, h] : hooks) m->remove_hook(h);
      throw;
    }
    for (auto& [m, h] : hooks) m->remove_hook(h);
    sim.model().train(was);
  }
  for (const auto& n : g.nodes()) {
    if (node_of[n.module.get()] != n.id || acc[n.id].n == 0) continue;
    LayerAnalysis l;
    l.name = node_label(n);
    l.type = n.type;
    l.mse = acc[n.id].noise / acc[n.id].n;
    l.sqnr_db = acc[n.id].noise > 0 ? 10.0 * std::log10(acc[n.id].sig / acc[n.id].noise) : INFINITY;
    a.layers.push_back(l);
  }
  for (size_t k = 0; k < infos.size(); ++k) {
    auto& v = samples[k].v;
    if (v.empty()) continue;
    auto& q = a.quantizers[k];
    double lo = *std::min_element(v.begin(), v.end()), hi = *std::max_element(v.begin(), v.end());
    for (const auto& e : q.encodings)
      if (!e.is_float) {
        lo = std::min(lo, e.min);
        hi = std::max(hi, e.max);
      }
    if (hi <= lo) hi = lo + 1e-6;
    q.hist_lo = lo;
    q.hist_hi = hi;
    q.hist.assign(opt.histogram_bins, 0);
    for (float x : v) {
      int b = static_cast<int>((x - lo) / (hi - lo) * opt.histogram_bins);
      q.hist[std::clamp(b, 0, opt.histogram_bins - 1)]++;
    }
  }
  return a;
}

nlohmann::json Analysis::to_json() const {
  nlohmann::json j = {{"accuracy", {{"fp32", fp32}, {"weights_only", weights_only}, {"activations_only", activations_only},
                                    {"quantized", quantized}}},
                      {"options", options}, {"quantizers", nlohmann::json::array()}, {"layers", nlohmann::json::array()}};
  if (!block_scales.empty()) j["block_scales"] = block_scales;
  for (const auto& q : quantizers) {
    nlohmann::json e = nlohmann::json::array();
    for (const auto& x : q.encodings)
      e.push_back(x.is_float ? nlohmann::json{{"bitwidth", x.bitwidth}, {"dtype", "float"}}
                             : nlohmann::json{{"bitwidth", x.bitwidth}, {"min", x.min}, {"max", x.max}, {"scale", x.delta},
                                              {"offset", x.offset}, {"is_symmetric", x.symmetric}});
    nlohmann::json qj = {{"name", q.name}, {"kind", q.kind}, {"module", q.module}, {"enabled", q.enabled}, {"encodings", e}};
    if (q.acc_only_this >= 0) qj["accuracy_only_this_enabled"] = q.acc_only_this;
    if (q.acc_without_this >= 0) qj["accuracy_only_this_disabled"] = q.acc_without_this;
    if (!q.hist.empty()) qj["histogram"] = {{"lo", q.hist_lo}, {"hi", q.hist_hi}, {"counts", q.hist}};
    j["quantizers"].push_back(qj);
  }
  for (const auto& l : layers)
    j["layers"].push_back({{"name", l.name}, {"type", l.type}, {"mse", l.mse},
                           {"sqnr_db", std::isfinite(l.sqnr_db) ? nlohmann::json(l.sqnr_db) : nlohmann::json(nullptr)}});
  return j;
}

void Analysis::write_report(const std::filesystem::path& dir) const {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw InputError(fmt::format("analyze: cannot create {}: {}", dir.string(), ec.message()));
  write_file_atomic(dir / "analysis.json", to_json().dump(2) + "\n");
  write_file_atomic(dir / "analysis.html", to_html());
}

}  // namespace qforge::quant::ptq
