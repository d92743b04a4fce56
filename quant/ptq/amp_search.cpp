// choose_mixed_precision: costs (Note [AMP cost]), phase 1 sensitivities and the greedy walk on a QuantSim.
#include "quant/ptq/amp.hpp"

#include "engine/error.hpp"

#include <fmt/format.h>

#include <cmath>
#include <map>
#include <string>

namespace qforge::quant::ptq {

namespace {

// Note [AMP cost] Latency: for every candidate c, the whole model is set to c, calibrated, lowered and run
// in the integer runtime on one calibration batch (the caller's AmpMeasure: median of several runs per
// op). An op's time counts towards the layer group its output module belongs to (Note [AMP layer
// groups]; ops without a module go to the previous op's group), so cost[l][c] = the time of layer l's ops
// in the all-c program. This assumes a layer's time depends only on its own precision, which holds for
// the int8/int16 kernels (an op's kernel is chosen by its own value widths). The runtime runs all-8-bit
// or all-16-bit programs only (program16.hpp Note [16-bit codes]), so a mixed configuration's cost is the
// sum of these per-layer measurements, not a measurement of the mixed program. Times are in microseconds
// per batch, rounded to 2 significant digits and recorded in amp_pareto.json: measurement noise below
// that rounding cannot change the walk, and `--amp-costs FILE` replays the recorded table exactly.
// Weights of 8 bits or fewer are int8 in the program, so a W4Ax candidate is timed on the W8Ax program
// (equal cost by construction; a note in the output says so).
// Bit-operations: cost[l][c] = MACs(l) × w_bits × a_bits per sample (AIMET's BitOps), MACs from the
// lowered program's conv/linear/recurrent ops.
double round_sig2(double x) {
  if (!(x > 0)) return 0;
  return std::stod(fmt::format("{:.2g}", x));  // the nearest double to the 2-digit decimal (7.3, not 7.3000…01)
}

int group_index(const std::map<std::string, int>& group_of, const std::string& module, int previous) {
  if (module.empty()) return previous;
  const auto it = group_of.find(module);
  return it == group_of.end() ? previous : it->second;
}

}  // namespace

AmpResult choose_mixed_precision(QuantSim& sim, double reference, const AmpOptions& opt,
                                 const std::function<void(QuantSim&)>& calibrate,
                                 const std::function<double(QuantSim&)>& evaluate, const AmpMeasure& measure) {
  if (!(opt.max_drop >= 0)) throw InputError(fmt::format("amp: max-drop {} must not be negative", opt.max_drop));
  if (opt.candidates.empty()) throw InputError("amp: no candidates");
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  AmpResult r;
  r.reference = reference;
  r.groups = amp_groups(sim);
  const int L = static_cast<int>(r.groups.size()), C = static_cast<int>(opt.candidates.size());
  AmpTable& t = r.table;
  t.candidates = opt.candidates;
  t.top = amp_top_candidate(opt.candidates);
  for (const auto& g : r.groups) t.layers.push_back(g.layer);
  std::map<std::string, int> group_of;
  for (int l = 0; l < L; ++l)
    for (const auto& m : r.groups[l].modules) group_of[m] = l;
  auto set_all = [&](const AmpCandidate& c) {
    apply_amp_choice(sim, r.groups, {c}, std::vector<int>(L, 0));
    calibrate(sim);
  };
  const std::string unit = opt.cost == AmpCost::latency ? "us_per_batch" : "bops_per_sample";
  t.cost.assign(L, std::vector<double>(C, 0));
  nlohmann::json notes = nlohmann::json::array();
  if (!opt.recorded_costs.is_null()) {
    const nlohmann::json& rc = opt.recorded_costs.contains("costs") ? opt.recorded_costs["costs"] : opt.recorded_costs;
    if (!rc.is_object() || rc.value("unit", std::string()) != unit || !rc.contains("per_layer"))
      throw InputError(fmt::format("--amp-costs: expected a \"costs\" object with unit \"{}\" and \"per_layer\"", unit));
    for (int l = 0; l < L; ++l)
      for (int c = 0; c < C; ++c) {
        const auto& pl = rc["per_layer"];
        const std::string cn = t.candidates[c].name();
        if (!pl.contains(t.layers[l]) || !pl[t.layers[l]].contains(cn) || !pl[t.layers[l]][cn].is_number())
          throw InputError(fmt::format("--amp-costs: no cost for layer {} at {}", t.layers[l], cn));
        t.cost[l][c] = pl[t.layers[l]][cn].get<double>();
      }
    notes.push_back("costs replayed from a recorded file");
  } else {
    std::map<std::pair<int, int>, std::vector<AmpOpTime>> cache;  // measured programs by (w_bits, a_bits)
    for (int c = 0; c < C; ++c) {
      // Weights of 8 bits or fewer are held as int8 in the integer program (lower.cpp): a W4A8 layer runs
      // the W8A8 kernels, so it is timed on the W8A8 program (equal cost, not a noisy second sample).
      AmpCandidate m = t.candidates[c];
      if (m.param_bw < 8) {
        m.param_bw = 8;
        notes.push_back(fmt::format("{} runs as int8 weights in the integer runtime: timed on the {} program",
                                    t.candidates[c].name(), m.name()));
      }
      auto key = std::pair(m.param_bw, m.act_bw);
      if (!cache.count(key)) {
        set_all(m);
        cache[key] = measure(sim);
      }
      const std::vector<AmpOpTime>& ops = cache[key];
      double total = 0;
      int g = 0;
      std::vector<double> per(L, 0), macs(L, 0);
      for (const auto& op : ops) {
        g = group_index(group_of, op.module, g);
        per[g] += op.seconds;
        macs[g] += op.macs;
        total += op.seconds;
      }
      r.measured[t.candidates[c].name()] = {{"program", m.name()}, {"seconds_per_batch", total}};
      for (int l = 0; l < L; ++l)
        t.cost[l][c] = opt.cost == AmpCost::latency
                           ? round_sig2(per[l] * 1e6)
                           : macs[l] * t.candidates[c].param_bw * t.candidates[c].act_bw;
      log(fmt::format("cost of {} ({} program): {:.1f} us per batch in the integer runtime", t.candidates[c].name(),
                      m.name(), total * 1e6));
    }
  }
  r.costs = {{"unit", unit}, {"per_layer", nlohmann::json::object()}, {"notes", notes}};
  for (int l = 0; l < L; ++l)
    for (int c = 0; c < C; ++c) r.costs["per_layer"][t.layers[l]][t.candidates[c].name()] = t.cost[l][c];

  // Phase 1 and the walk share one evaluation: set the configuration, recalibrate, evaluate.
  std::map<std::vector<int>, double> seen;
  auto eval_choice = [&](const std::vector<int>& ch) {
    if (auto it = seen.find(ch); it != seen.end()) return it->second;
    apply_amp_choice(sim, r.groups, t.candidates, ch);
    calibrate(sim);
    const double a = evaluate(sim);
    seen[ch] = a;
    return a;
  };
  const std::vector<int> top(L, t.top);
  const double base = eval_choice(top);
  t.sensitivity.assign(L, std::vector<double>(C, base));
  for (int l = 0; l < L; ++l)
    for (int c = 0; c < C; ++c) {
      if (c == t.top) continue;
      std::vector<int> ch = top;
      ch[l] = c;
      t.sensitivity[l][c] = eval_choice(ch);
      log(fmt::format("sensitivity: {} at {}: {:.2f}%", t.layers[l], t.candidates[c].name(), t.sensitivity[l][c]));
    }
  r.walk = amp_greedy_walk(t, reference, opt.max_drop, eval_choice);
  for (const auto& p : r.walk.points)
    log(fmt::format("pareto: cost {:.6g}  accuracy {:.2f}%{}", p.cost, p.accuracy, p.within ? "" : "  (outside max-drop)"));
  apply_amp_choice(sim, r.groups, t.candidates, r.walk.points[r.walk.chosen].choice);
  calibrate(sim);
  return r;
}

}  // namespace qforge::quant::ptq
