// The PTQ pipeline behind `qforge quantize`: optional passes on the FP32 model (CLE, bias correction,
// SeqMSE, AdaRound, AutoQuant), then QuantSim construction and calibration.
#pragma once

#include "apps/cli.hpp"
#include "data/data.hpp"
#include "nn/graph.hpp"
#include "quant/quantsim.hpp"

#include <memory>

namespace qforge::apps {

struct PtqRequest {
  bool cle = false;
  std::string bias_correction;  // "", "empirical", "analytical"
  bool adaround = false;
  int64_t adaround_iterations = 0;  // 0: AIMET's default
  bool automatic = false;
  double max_drop = 1.0;
  int64_t bn_reestimate = 0;
  bool seq_mse = false;
  int64_t seq_mse_candidates = 20;  // AIMET's default
  std::string seq_mse_loss = "mse";
  // --amp (quant/ptq/amp.hpp): per-layer candidates chosen within --max-drop
  bool amp = false;
  std::string amp_candidates = "W4A8,W8A8,W8A16";
  std::string amp_cost = "latency";
  std::string amp_costs_file;  // recorded costs (amp_pareto.json) to replay
};

struct PtqContext {
  std::shared_ptr<nn::Graph> model;
  data::DataSplits& data;
  quant::QuantSimOptions options;
  int64_t calib_batches;
  int64_t batch_size;
  uint64_t seed;
  double fp32_accuracy;
};

struct PtqOutcome {
  std::unique_ptr<quant::QuantSim> sim;
  Json stages = Json::array();  // [{"stage", "accuracy", ...}] for the passes that ran
  // --amp: amp_pareto.json, amp_config_override.json and amp_pareto.svg for the quantized directory
  Json amp_pareto, amp_override;
  std::string amp_svg;
};

void add_ptq_options(cxxopts::Options& opts);
// Validates the combination with quant::ptq::validate_passes (e.g. AdaRound needs param-bw <= 8):
// InputError otherwise.
PtqRequest ptq_request_from(const cxxopts::ParseResult& r, int param_bw, int act_bw);
PtqOutcome run_ptq(PtqContext& ctx, const PtqRequest& req);
// --amp on the calibrated out.sim (called by run_ptq): leaves it at the chosen configuration.
void run_amp(PtqContext& ctx, const PtqRequest& req, PtqOutcome& out);

}  // namespace qforge::apps
