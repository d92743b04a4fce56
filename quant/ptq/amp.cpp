#include "quant/ptq/amp.hpp"

#include "engine/error.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <regex>
#include <set>

namespace qforge::quant::ptq {

std::string AmpCandidate::name() const { return fmt::format("W{}A{}", param_bw, act_bw); }

std::vector<AmpCandidate> parse_amp_candidates(const std::string& s) {
  std::vector<AmpCandidate> out;
  static const std::regex re("^W([0-9]+)A([0-9]+)$");
  size_t start = 0;
  while (start <= s.size()) {
    const size_t comma = s.find(',', start);
    const std::string tok = s.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    std::smatch m;
    if (!std::regex_match(tok, m, re))
      throw InputError(fmt::format("--candidates '{}': '{}' is not a candidate like W8A16 (W<weight bits>A<activation bits>)", s, tok));
    AmpCandidate c{std::stoi(m[1].str()), std::stoi(m[2].str())};
    if (c.param_bw < 2 || c.param_bw > 16 || c.act_bw < 2 || c.act_bw > 16)
      throw InputError(fmt::format("--candidates '{}': {}: bitwidths must be 2-16", s, tok));
    if (std::find(out.begin(), out.end(), c) != out.end())
      throw InputError(fmt::format("--candidates '{}': {} listed twice", s, tok));
    out.push_back(c);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  if (out.empty()) throw InputError("--candidates: empty list");
  return out;
}

AmpCost parse_amp_cost(const std::string& s) {
  if (s == "latency") return AmpCost::latency;
  if (s == "bops") return AmpCost::bops;
  throw InputError(fmt::format("--amp-cost {}: expected latency or bops", s));
}

int amp_top_candidate(const std::vector<AmpCandidate>& c) {
  int best = 0;
  for (int i = 1; i < static_cast<int>(c.size()); ++i)
    if (std::pair(c[i].act_bw, c[i].param_bw) > std::pair(c[best].act_bw, c[best].param_bw)) best = i;
  return best;
}

// Note [AMP greedy walk] Start with every layer at the top candidate. A move lowers one layer l from its
// current candidate to a candidate c that is strictly cheaper for that layer; its score is
//     max(0, base − sensitivity[l][c]) / (cost[l][current] − cost[l][c])
// (accuracy points lost per unit of cost saved, from phase 1; base = the all-top accuracy). The move with
// the lowest score is taken; ties go to the larger saving, then the higher phase-1 accuracy, then the lower
// layer index, then (same layer) the candidate with more bits (activation, then weight), so equal tables
// give equal walks and a W4A8 that saves no more than W8A8 is not preferred to it. After each move the configuration is evaluated and
// recorded; the walk stops after the first point below reference − max_drop (recorded, within = false) or
// when no layer can get cheaper. Candidates that are not cheaper for a layer (with measured latency, W4A8
// costs what W8A8 does: the runtime runs 4-bit weights as int8) are never chosen by a move.
AmpWalk amp_greedy_walk(const AmpTable& t, double reference, double max_drop,
                        const std::function<double(const std::vector<int>&)>& evaluate) {
  const int L = static_cast<int>(t.layers.size()), C = static_cast<int>(t.candidates.size());
  QFORGE_CHECK(static_cast<int>(t.cost.size()) == L && static_cast<int>(t.sensitivity.size()) == L,
               "amp: table has {} layers but {} cost rows and {} sensitivity rows", L, t.cost.size(), t.sensitivity.size());
  if (!(max_drop >= 0)) throw InputError(fmt::format("amp: max-drop {} must not be negative", max_drop));
  std::vector<int> choice(L, t.top);
  auto total = [&](const std::vector<int>& ch) {
    double s = 0;
    for (int l = 0; l < L; ++l) s += t.cost[l][ch[l]];
    return s;
  };
  const double floor_acc = reference - max_drop;
  AmpWalk w;
  const double base = evaluate(choice);
  w.points.push_back({total(choice), base, choice, base >= floor_acc});
  if (!w.points.back().within) return w;  // even the top configuration misses: it is the answer
  for (;;) {
    int bl = -1, bc = -1;
    double bscore = 0, bsave = 0;
    for (int l = 0; l < L; ++l)
      for (int c = 0; c < C; ++c) {
        const double save = t.cost[l][choice[l]] - t.cost[l][c];
        if (!(save > 0)) continue;
        const double score = std::max(0.0, base - t.sensitivity[l][c]) / save;
        bool better = bl < 0 || score < bscore || (score == bscore && save > bsave);
        if (!better && score == bscore && save == bsave) {  // equal: the more accurate, then more bits
          const AmpCandidate &a = t.candidates[c], &b = t.candidates[bc];
          if (t.sensitivity[l][c] != t.sensitivity[bl][bc])
            better = t.sensitivity[l][c] > t.sensitivity[bl][bc];
          else if (l == bl)
            better = std::pair(a.act_bw, a.param_bw) > std::pair(b.act_bw, b.param_bw);
        }
        if (better) {
          bl = l, bc = c, bscore = score, bsave = save;
        }
      }
    if (bl < 0) break;
    choice[bl] = bc;
    const double acc = evaluate(choice);
    w.points.push_back({total(choice), acc, choice, acc >= floor_acc});
    if (!w.points.back().within) break;
    w.chosen = static_cast<int>(w.points.size()) - 1;
  }
  return w;
}

std::vector<AmpGroup> amp_groups(const QuantSim& sim) {
  std::vector<AmpGroup> groups;
  std::map<std::string, int> group_of;  // module name -> group
  std::vector<std::string> before_first;
  for (const auto& n : sim.graph().nodes()) {
    const std::string t = onnx_type(n.type);
    if (t == "Conv" || t == "Gemm" || t == "LSTM" || t == "GRU") {
      if (!group_of.count(n.name)) {
        groups.push_back({n.name, t, {}, {}, {}});
        group_of[n.name] = static_cast<int>(groups.size()) - 1;
      }
      groups[group_of[n.name]].modules.push_back(n.name);
      continue;
    }
    if (group_of.count(n.name)) continue;
    if (groups.empty()) {
      before_first.push_back(n.name);
    } else {
      group_of[n.name] = static_cast<int>(groups.size()) - 1;
      groups.back().modules.push_back(n.name);
    }
  }
  if (groups.empty()) throw InputError("amp: the model has no Conv/Linear/LSTM/GRU layer to choose a precision for");
  for (const auto& m : before_first) {
    group_of[m] = 0;
    groups[0].modules.push_back(m);
  }
  group_of[""] = 0;  // the model input's quantizer
  for (const QuantizerInfo& q : sim.quantizers()) {
    if (!q.quantizer->enabled()) continue;
    const auto it = group_of.find(q.module);
    if (it == group_of.end()) continue;  // a module outside the traced chain: left as it is
    AmpGroup& g = groups[it->second];
    if (q.kind == "param") {
      if (q.quantizer->settings().allow_32) continue;  // biases keep their 32 bits
      if (q.module == g.layer) g.params.push_back(q.name);
    } else {
      g.activations.push_back(q.name);
    }
  }
  return groups;
}

static void set_bitwidth(Quantizer& q, int bw) {
  QuantizerSettings s = q.settings();
  if (s.grid.bitwidth == bw) return;
  s.grid.bitwidth = bw;
  q.set_settings(s);
}

void apply_amp_choice(QuantSim& sim, const std::vector<AmpGroup>& groups, const std::vector<AmpCandidate>& cands,
                      const std::vector<int>& choice) {
  QFORGE_CHECK(choice.size() == groups.size(), "amp: {} choices for {} layers", choice.size(), groups.size());
  for (size_t i = 0; i < groups.size(); ++i) {
    const AmpCandidate& c = cands.at(choice[i]);
    for (const auto& p : groups[i].params) set_bitwidth(sim.quantizer(p), c.param_bw);
    for (const auto& a : groups[i].activations) set_bitwidth(sim.quantizer(a), c.act_bw);
  }
}

// Note [AMP override file] amp_config_override.json, AIMET-style per-op overrides:
//   {"format": "qforge-amp-override", "version": 1, "candidates": ["W4A8", ...],
//    "layers": {"<layer>": "<candidate>"},
//    "ops": {"<module>": {"param_quantizers": {"<quantizer>": {"bitwidth": 4}},
//                         "output_quantizers": {"<quantizer>": {"bitwidth": 8}},
//                         "input_quantizers": {...}, "recurrent_quantizers": {...}}}}
// Keys of the *_quantizers objects are the sim's quantizer names (`qforge quantize` listing), so the
// file names every quantizer it sets; apply_amp_overrides reads only "ops".
nlohmann::json amp_override_json(const QuantSim& sim, const std::vector<AmpGroup>& groups,
                                 const std::vector<AmpCandidate>& cands, const std::vector<int>& choice) {
  std::map<std::string, std::string> module_of;
  std::map<std::string, std::string> kind_of;
  for (const auto& q : sim.quantizers()) module_of[q.name] = q.module, kind_of[q.name] = q.kind;
  nlohmann::json j = {{"format", "qforge-amp-override"}, {"version", 1}};
  j["candidates"] = nlohmann::json::array();
  for (const auto& c : cands) j["candidates"].push_back(c.name());
  j["layers"] = nlohmann::json::object();
  j["ops"] = nlohmann::json::object();
  for (size_t i = 0; i < groups.size(); ++i) {
    const AmpCandidate& c = cands.at(choice.at(i));
    j["layers"][groups[i].layer] = c.name();
    auto put = [&](const std::string& q, int bw) {
      const std::string mod = module_of[q].empty() ? "<model input>" : module_of[q];
      j["ops"][mod][kind_of[q] + "_quantizers"][q] = {{"bitwidth", bw}};
    };
    for (const auto& p : groups[i].params) put(p, c.param_bw);
    for (const auto& a : groups[i].activations) put(a, c.act_bw);
  }
  return j;
}

int apply_amp_overrides(QuantSim& sim, const nlohmann::json& o) {
  if (!o.is_object() || !o.contains("ops") || !o["ops"].is_object())
    throw InputError("amp override: expected an object with an \"ops\" object");
  int n = 0;
  for (const auto& [mod, entry] : o["ops"].items()) {
    if (!entry.is_object()) throw InputError(fmt::format("amp override: /ops/{}: expected an object", mod));
    for (const auto& [kind, qs] : entry.items()) {
      if (kind != "param_quantizers" && kind != "output_quantizers" && kind != "input_quantizers" &&
          kind != "recurrent_quantizers")
        throw InputError(fmt::format("amp override: /ops/{}/{}: unknown key", mod, kind));
      for (const auto& [qname, spec] : qs.items()) {
        const std::string where = fmt::format("/ops/{}/{}/{}", mod, kind, qname);
        if (!sim.has_quantizer(qname)) throw InputError(fmt::format("amp override: {}: the model has no such quantizer", where));
        if (!spec.is_object() || !spec.contains("bitwidth") || !spec["bitwidth"].is_number_integer())
          throw InputError(fmt::format("amp override: {}: expected {{\"bitwidth\": B}}", where));
        const int bw = spec["bitwidth"].get<int>();
        if (bw < 2 || bw > 16) throw InputError(fmt::format("amp override: {}: bitwidth {} outside 2-16", where, bw));
        set_bitwidth(sim.quantizer(qname), bw);
        ++n;
      }
    }
  }
  return n;
}

}  // namespace qforge::quant::ptq
