// Per-layer comparison. See compare.hpp.
#include "quant/runtime/compare.hpp"

#include "engine/autograd.hpp"
#include "quant/runtime/exact.hpp"

#include <cmath>
#include <limits>
#include <map>

namespace qforge::quant::runtime {

namespace kn = qforge::kernels;
using json = nlohmann::json;

double sqnr_db(const Tensor& ref, const Tensor& y) {
  const auto r = ref.to_vector<double>(), v = y.to_vector<double>();
  QFORGE_CHECK(r.size() == v.size(), "sqnr: {} vs {} elements", r.size(), v.size());
  double s = 0, n = 0;
  for (std::size_t i = 0; i < r.size(); ++i) {
    s += r[i] * r[i];
    n += (r[i] - v[i]) * (r[i] - v[i]);
  }
  if (n == 0) return std::numeric_limits<double>::infinity();
  return 10.0 * std::log10(s / n);
}

namespace {

json db(double v) { return std::isfinite(v) ? json(v) : json(nullptr); }

// Runs the sim's model and records output 0 of every traced module (by name).
std::map<std::string, Tensor> capture(QuantSim& sim, const Tensor& x) {
  std::map<std::string, Tensor> out;
  std::vector<std::pair<nn::Module*, int>> hooks;
  for (const auto& n : sim.graph().nodes()) {
    if (n.call != 0 || n.name.empty()) continue;
    const std::string name = n.name;
    hooks.emplace_back(n.module.get(),
                       n.module->add_forward_hook([&out, name](nn::Module&, const std::vector<Tensor>&, std::vector<Tensor>& o) {
                         if (!o.empty() && o[0].defined()) out[name] = o[0].detach().contiguous();
                       }));
  }
  const bool was_training = sim.model().is_training();
  sim.model().eval();
  try {
    NoGradGuard ng;
    sim.forward({x});
  } catch (...) {
    for (auto [m, h] : hooks) m->remove_hook(h);
    sim.model().train(was_training);
    throw;
  }
  for (auto [m, h] : hooks) m->remove_hook(h);
  sim.model().train(was_training);
  return out;
}

Tensor dequant(const Tensor& codes, const QParams& q) {
  const auto c = codes.to_vector<double>();
  std::vector<double> d(c.size());
  for (std::size_t i = 0; i < c.size(); ++i) d[i] = kn::dequantize_value(static_cast<std::int32_t>(c[i]), q.scale, q.zero_point);
  return Tensor::from_vector(d, codes.shape());
}

}  // namespace

json compare_layers(QuantSim& sim, const Tensor& x, const CompareOptions& opt) {
  Program prog = lower(sim, opt.lower);
  const auto exact = execute_exact_all(prog, x);
  Runtime rt(prog, opt.runtime);
  const auto int8 = rt.run_all(x);
  const auto sim_out = capture(sim, x);
  std::map<std::string, Tensor> fp32;
  {
    std::vector<bool> was;
    for (const auto& i : sim.quantizers()) {
      was.push_back(i.quantizer->enabled());
      i.quantizer->set_enabled(false);
    }
    try {
      fp32 = capture(sim, x);
    } catch (...) {
      for (std::size_t k = 0; k < was.size(); ++k) sim.quantizers()[k].quantizer->set_enabled(was[k]);
      throw;
    }
    for (std::size_t k = 0; k < was.size(); ++k) sim.quantizers()[k].quantizer->set_enabled(was[k]);
  }

  std::map<int, std::string> producer;
  for (const auto& op : prog.ops) producer[op.output] = op.name;
  json layers = json::array();
  for (std::size_t v = 0; v < prog.values.size(); ++v) {
    const Value& val = prog.values[v];
    if (val.module.empty() || !sim_out.count(val.module) || !fp32.count(val.module)) continue;
    const Tensor& s = sim_out.at(val.module);
    const Tensor& f = fp32.at(val.module);
    if (s.numel() != int8[v].numel() || f.numel() != int8[v].numel()) continue;
    const Tensor i8 = dequant(int8[v], val.q);
    const auto sv = s.to_vector<float>();
    const auto ic = int8[v].to_vector<std::int32_t>();
    const auto ec = exact[v].to_vector<std::int32_t>();
    const float inv = 1.0f / val.q.scale;
    std::int64_t differing = 0, exact_diff = 0, max_lsb = 0;
    for (std::size_t k = 0; k < sv.size(); ++k) {
      const std::int32_t sc = kn::quantize_value(sv[k], inv, val.q.zero_point, val.q.qmin, val.q.qmax);
      const std::int64_t d = std::llabs(static_cast<long long>(sc) - ic[k]);
      differing += d != 0;
      max_lsb = std::max(max_lsb, d);
      exact_diff += ec[k] != ic[k];
    }
    layers.push_back({{"layer", val.module},
                      {"op", producer.count(static_cast<int>(v)) ? producer[static_cast<int>(v)] : ""},
                      {"shape", val.shape},
                      {"scale", val.q.scale},
                      {"zero_point", val.q.zero_point},
                      {"numel", int8[v].numel()},
                      {"sqnr_sim_db", db(sqnr_db(f, s))},
                      {"sqnr_int8_db", db(sqnr_db(f, i8))},
                      {"sqnr_int8_vs_sim_db", db(sqnr_db(s, i8))},
                      {"max_diff_lsb", max_lsb},
                      {"differing", differing},
                      {"exact_vs_int8_differing", exact_diff}});
  }
  // Output agreement (argmax over the last dim).
  const Tensor out_i8 = dequant(int8[prog.output], prog.output_value().q);
  auto argmax_agree = [&](const Tensor& a, const Tensor& b) -> json {
    if (a.numel() != b.numel() || a.dim() < 2) return nullptr;
    const auto va = a.to_vector<double>(), vb = b.to_vector<double>();
    const std::int64_t C = a.size(-1), rows = a.numel() / C;
    std::int64_t agree = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      std::int64_t ia = 0, ib = 0;
      for (std::int64_t c = 1; c < C; ++c) {
        if (va[r * C + c] > va[r * C + ia]) ia = c;
        if (vb[r * C + c] > vb[r * C + ib]) ib = c;
      }
      agree += ia == ib;
    }
    return static_cast<double>(agree) / static_cast<double>(rows);
  };
  json output = {{"value", prog.output_value().name}};
  const std::string om = prog.output_value().module;
  if (sim_out.count(om)) output["argmax_agree_int8_vs_sim"] = argmax_agree(out_i8, sim_out.at(om));
  if (fp32.count(om)) output["argmax_agree_int8_vs_fp32"] = argmax_agree(out_i8, fp32.at(om));
  std::int64_t out_diff = 0;
  {
    const auto a = exact[prog.output].to_vector<std::int32_t>(), b = int8[prog.output].to_vector<std::int32_t>();
    for (std::size_t k = 0; k < a.size(); ++k) out_diff += a[k] != b[k];
  }
  output["exact_vs_int8_differing"] = out_diff;
  return {{"samples", x.size(0)}, {"layers", layers}, {"output", output}};
}

}  // namespace qforge::quant::runtime
