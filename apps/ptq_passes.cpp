#include "apps/ptq_passes.hpp"

#include "apps/quant_setup.hpp"
#include "quant/ptq/ptq.hpp"

namespace qforge::apps {

void add_ptq_options(cxxopts::Options& opts) {
  opts.add_options("post-training passes")
      ("cle", "cross-layer equalization (ReLU6->ReLU, scaling, high-bias absorption) before quantizing")
      ("bias-correction", "empirical | analytical", cxxopts::value<std::string>())
      ("adaround", "AdaRound the weights (AIMET defaults)")
      ("adaround-iterations", "AdaRound iterations per layer (default: AIMET's)", cxxopts::value<int64_t>()->default_value("0"))
      ("auto", "AutoQuant-style pipeline: fold -> scheme -> CLE -> AdaRound, stopping at --max-drop")
      ("max-drop", "--auto: acceptable accuracy drop in points", cxxopts::value<double>()->default_value("1.0"))
      ("bn-reestimate", "re-estimate BatchNorm statistics over N batches before folding", cxxopts::value<int64_t>()->default_value("0"))
      ("seq-mse", "SeqMSE: choose each Conv/Linear weight encoding by a search over candidate ranges (after CLE, before bias correction/AdaRound)")
      ("seq-mse-candidates", "--seq-mse: candidate ranges per channel, range * i/N (AIMET: 20)", cxxopts::value<int64_t>()->default_value("20"))
      ("seq-mse-loss", "--seq-mse: mse | l1 | sqnr on the layer output", cxxopts::value<std::string>()->default_value("mse"));
}

PtqRequest ptq_request_from(const cxxopts::ParseResult& r, int param_bw, int act_bw) {
  PtqRequest q;
  q.cle = r.count("cle") > 0;
  if (r.count("bias-correction")) q.bias_correction = r["bias-correction"].as<std::string>();
  q.adaround = r.count("adaround") > 0;
  q.adaround_iterations = r["adaround-iterations"].as<int64_t>();
  q.automatic = r.count("auto") > 0;
  q.max_drop = r["max-drop"].as<double>();
  q.bn_reestimate = r["bn-reestimate"].as<int64_t>();
  // Impossible combinations (AdaRound outside 2-8 bit weights, AdaRound with bias correction, --auto
  // with explicit passes, unknown modes) are the library's rules: refused here, before any work.
  quant::ptq::validate_passes({.cle = q.cle,
                               .bias_correction = q.bias_correction,
                               .adaround = q.adaround,
                               .auto_quant = q.automatic,
                               .bn_reestimate = q.bn_reestimate,
                               .param_bw = param_bw,
                               .act_bw = act_bw});
  q.seq_mse = r.count("seq-mse") > 0;
  q.seq_mse_candidates = r["seq-mse-candidates"].as<int64_t>();
  q.seq_mse_loss = r["seq-mse-loss"].as<std::string>();
  if (q.seq_mse_candidates < 1)
    throw UsageError(fmt::format("--seq-mse-candidates {}: needs at least 1 candidate", q.seq_mse_candidates));
  if (q.seq_mse_loss != "mse" && q.seq_mse_loss != "l1" && q.seq_mse_loss != "sqnr")
    throw UsageError(fmt::format("--seq-mse-loss {}: expected mse, l1 or sqnr", q.seq_mse_loss));
  if (!q.seq_mse && (r.count("seq-mse-candidates") || r.count("seq-mse-loss")))
    throw UsageError("--seq-mse-candidates/--seq-mse-loss need --seq-mse");
  if (q.seq_mse && q.automatic) throw UsageError("--seq-mse with --auto: --auto chooses its passes itself");
  if (q.adaround_iterations < 0) throw UsageError("--adaround-iterations must not be negative");
  if (!(q.max_drop >= 0)) throw UsageError("--max-drop must not be negative");
  return q;
}

PtqOutcome run_ptq(PtqContext& ctx, const PtqRequest& req) {
  namespace ptq = quant::ptq;
  PtqOutcome out;
  const auto sample = sample_batch(ctx.data.test);
  const bool any_pass =
      req.cle || !req.bias_correction.empty() || req.adaround || req.automatic || req.bn_reestimate > 0 || req.seq_mse;
  std::vector<Tensor> batches;
  if (any_pass) batches = calibration_batches(ctx.data.train, ctx.calib_batches, ctx.batch_size, ctx.seed);
  auto eval_acc = [&](nn::Module& m) { return evaluate_on(m, ctx.data.test).metrics.accuracy(); };

  if (req.bn_reestimate > 0) {
    ptq::reestimate_bn_stats(*ctx.model, batches, req.bn_reestimate);
    out.stages.push_back({{"stage", "bn_reestimate"}, {"batches", req.bn_reestimate}, {"accuracy", eval_acc(*ctx.model)}});
  }
  if (req.automatic) {
    ptq::AutoQuantOptions ao;
    ao.allowed_drop = req.max_drop;
    ao.sim = ctx.options;
    ao.adaround.num_iterations = req.adaround_iterations;
    ao.adaround.seed = ctx.seed;
    ao.log = [](const std::string& s) { say("auto: " + s); };
    ptq::AutoQuantResult ar = ptq::auto_quant(ctx.model, sample, batches, eval_acc, ao);
    out.stages.push_back({{"stage", "auto"}, {"result", ar.to_json()}});
    quant::QuantSimOptions so = ar.options;
    so.config_obj = ctx.options.config_obj;
    so.config = ctx.options.config;
    out.sim = ptq::make_calibrated_sim(ctx.model, sample, batches, so, ar.weight_scheme,
                                       ar.adaround ? &*ar.adaround : nullptr);
    return out;
  }
  std::optional<ptq::CleResult> cle;
  if (req.cle) {
    cle = ptq::equalize_model(*ctx.model, sample);
    const ptq::CleResult& cr = *cle;
    for (const auto& m : cr.messages) say("cle: " + m);
    out.stages.push_back({{"stage", "cle"}, {"result", cr.to_json()}, {"fp32_accuracy", eval_acc(*ctx.model)}});
  }
  // Note [PTQ pass order] BN fold -> CLE -> SeqMSE -> bias correction | AdaRound -> calibration, as in
  // AIMET's recipes: CLE changes the weights (so it goes first), SeqMSE chooses the weight grid on those
  // weights, and bias correction and AdaRound then work on that grid (they take SeqMSE's encodings as
  // their own, frozen) — the bias shift and the rounding depend on the grid, never the other way round.
  std::optional<ptq::SeqMseResult> seq;
  if (req.seq_mse) {
    ptq::SeqMseOptions so;
    so.num_candidates = req.seq_mse_candidates;
    so.loss = ptq::parse_seq_mse_loss(req.seq_mse_loss);
    so.sim = ctx.options;
    so.on_layer = [](const std::string& name, int i, int n) { say(fmt::format("seq-mse: {} ({}/{})", name, i + 1, n)); };
    seq = ptq::apply_seq_mse(ctx.model, sample, batches, so);
    out.stages.push_back({{"stage", "seq_mse"}, {"result", seq->to_json()}});
  }
  if (!req.bias_correction.empty()) {
    ptq::BiasCorrectionOptions bo;
    if (seq) bo.weight_encodings = &seq->param_encodings;
    bo.mode = ptq::parse_bias_correction_mode(req.bias_correction);
    bo.sim = ctx.options;
    if (cle) bo.bn_folds = &cle->folds;  // CLE folded the BNs: their (rescaled) statistics feed analytical BC
    ptq::BiasCorrectionResult br = ptq::correct_bias(ctx.model, sample, batches, bo);
    for (const auto& m : br.messages) say("bias correction: " + m);
    out.stages.push_back({{"stage", "bias_correction"}, {"mode", req.bias_correction}, {"result", br.to_json()}});
  }
  std::optional<ptq::AdaroundResult> ada;
  if (req.adaround) {
    ptq::AdaroundOptions ao;
    if (seq) ao.weight_encodings = &seq->param_encodings;
    ao.num_iterations = req.adaround_iterations;
    ao.seed = ctx.seed;
    ao.sim.param_bw = ctx.options.param_bw;
    ao.sim.scheme = ctx.options.scheme;  // weight encodings follow --scheme (AIMET's AdaRound default: tf_enhanced)
    ao.sim.config = ctx.options.config;
    ao.sim.config_obj = ctx.options.config_obj;
    ao.on_layer = [](const std::string& name, int i, int n) { say(fmt::format("adaround: {} ({}/{})", name, i, n)); };
    ada = ptq::apply_adaround(ctx.model, sample, batches, ao);
    out.stages.push_back({{"stage", "adaround"}, {"result", ada->to_json()}});
  }
  out.sim = std::make_unique<quant::QuantSim>(ctx.model, sample, ctx.options);
  if (seq) seq->apply_to(*out.sim);
  if (ada) ada->apply_to(*out.sim);  // frozen weight encodings survive calibration
  out.sim->compute_encodings(calibration_pass(ctx.data.train, ctx.calib_batches, ctx.batch_size, ctx.seed));
  return out;
}

}  // namespace qforge::apps
