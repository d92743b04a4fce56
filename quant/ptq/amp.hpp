// Automatic mixed precision (AMP, issue 18 §2; AIMET's choose_mixed_precision, aimet-compat.md §8.8).
//
// Given candidates (W4A8, W8A8, W8A16, ...) AMP chooses one candidate per quantizable layer
// (Conv/Linear/LSTM/GRU) so that the model is as cheap as possible while its accuracy stays within
// max_drop points of the FP32 reference:
//   phase 1  sensitivity: for each layer and each candidate, the accuracy with only that layer at the
//            candidate and every other layer at the highest-accuracy candidate (the most bits);
//   phase 2  greedy walk (Note [AMP greedy walk]) from the all-highest configuration downwards, one layer
//            lowered per step, each configuration evaluated and recorded as a Pareto point (cost,
//            accuracy); the walk stops at the first point outside max_drop and the last point within it
//            is the chosen configuration.
// Cost (Note [AMP cost]) is the measured latency of each layer in the integer runtime for each candidate
// (qforge's twist) or bit-operations MACs × w_bits × a_bits (AIMET's measure, `--amp-cost bops`).
//
// Note [AMP layer groups]: a layer's candidate sets the bitwidth of its weight quantizers (every enabled
// param quantizer except 32-bit-capable biases) and of every enabled activation quantizer from the layer
// up to the next quantizable layer in execution order (its output, a fused ReLU's output, pooling/flatten
// outputs; quantizers before the first layer, such as the model input's, belong to the first layer).
// This is AIMET's quantizer-group idea on a chain: one group per layer, no quantizer in two groups.
//
// This library does not run the integer runtime (quant/runtime sits beside ptq, not below it): latency
// is measured by the caller through AmpMeasure, which lowers a sim and returns per-op times.
#pragma once

#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <functional>
#include <string>
#include <vector>

namespace qforge::quant::ptq {

struct AmpCandidate {
  int param_bw = 8;
  int act_bw = 8;
  std::string name() const;  // "W8A16"
  bool operator==(const AmpCandidate&) const = default;
};

// "W4A8,W8A8,W8A16" -> candidates (order kept). InputError for malformed or duplicate names, bitwidths
// outside 2..16, or an empty list.
std::vector<AmpCandidate> parse_amp_candidates(const std::string& s);

enum class AmpCost { latency, bops };
AmpCost parse_amp_cost(const std::string& s);  // "latency" | "bops"; InputError otherwise

// ---- phase 2 on a table (pure; what the tests drive) ----
struct AmpTable {
  std::vector<std::string> layers;
  std::vector<AmpCandidate> candidates;
  std::vector<std::vector<double>> cost;         // [layer][candidate]
  std::vector<std::vector<double>> sensitivity;  // [layer][candidate]: accuracy, phase 1
  int top = 0;                                   // the highest-accuracy candidate (start of the walk)
};

struct AmpPoint {
  double cost = 0;
  double accuracy = 0;
  std::vector<int> choice;  // candidate index per layer
  bool within = true;       // accuracy >= reference - max_drop
};

struct AmpWalk {
  std::vector<AmpPoint> points;  // in walk order, the first is all-top
  int chosen = 0;                // index into points
};

// Note [AMP greedy walk]. evaluate(choice) -> accuracy of that configuration.
AmpWalk amp_greedy_walk(const AmpTable& t, double reference, double max_drop,
                        const std::function<double(const std::vector<int>&)>& evaluate);

// The highest-accuracy candidate: most activation bits, then most weight bits, then first listed.
int amp_top_candidate(const std::vector<AmpCandidate>& c);

// ---- on a QuantSim ----
struct AmpGroup {
  std::string layer;                    // module name of the Conv/Linear/LSTM/GRU
  std::string type;                     // its ONNX type
  std::vector<std::string> params;      // weight quantizer names
  std::vector<std::string> activations; // activation quantizer names (Note [AMP layer groups])
  std::vector<std::string> modules;     // every traced module whose ops count towards this layer's cost
};
std::vector<AmpGroup> amp_groups(const QuantSim& sim);  // Error when the model has no quantizable layer

// Sets every group's bitwidths (choice[i] indexes candidates); encodings must be recomputed afterwards.
void apply_amp_choice(QuantSim& sim, const std::vector<AmpGroup>& groups, const std::vector<AmpCandidate>& cands,
                      const std::vector<int>& choice);

// The configuration as an override file (Note [AMP override file]) and back.
nlohmann::json amp_override_json(const QuantSim& sim, const std::vector<AmpGroup>& groups,
                                 const std::vector<AmpCandidate>& cands, const std::vector<int>& choice);
// Applies an override file's bitwidths to the sim; InputError naming the entry for unknown quantizers or
// bitwidths outside 2..16. Returns how many quantizers were set.
int apply_amp_overrides(QuantSim& sim, const nlohmann::json& overrides);

// ---- the whole search ----
struct AmpOpTime {
  std::string module;  // the traced module the op's output belongs to ("" = unknown: previous op's group)
  double seconds = 0;  // median over the measured runs
  double macs = 0;     // per sample
};
// Lowers the (calibrated) sim, runs it, returns one entry per op. Throws when the sim cannot be lowered.
using AmpMeasure = std::function<std::vector<AmpOpTime>(QuantSim&)>;

struct AmpOptions {
  std::vector<AmpCandidate> candidates;
  double max_drop = 0.5;
  AmpCost cost = AmpCost::latency;
  // Recorded costs to reuse (amp_pareto.json's "costs" object): no measurement, exactly reproducible.
  nlohmann::json recorded_costs;
  std::function<void(const std::string&)> log;
};

struct AmpResult {
  std::vector<AmpGroup> groups;
  AmpTable table;
  AmpWalk walk;
  double reference = 0;           // FP32 accuracy
  nlohmann::json costs;           // {"unit", "per_layer": {layer: {cand: cost}}, "notes": [...]}
  nlohmann::json measured;        // all-candidate program latencies (seconds, sum over ops) when measured
  nlohmann::json to_json() const; // amp_pareto.json
};

// calibrate(sim) recomputes encodings; evaluate(sim) -> accuracy on the evaluation split. Leaves the sim
// at the chosen configuration, calibrated.
AmpResult choose_mixed_precision(QuantSim& sim, double reference, const AmpOptions& opt,
                                 const std::function<void(QuantSim&)>& calibrate,
                                 const std::function<double(QuantSim&)>& evaluate, const AmpMeasure& measure);

// The Pareto curve as a standalone SVG (amp_report.cpp).
std::string amp_pareto_svg(const AmpResult& r);

}  // namespace qforge::quant::ptq
