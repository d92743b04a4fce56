#include "apps/ptq_passes.hpp"

#include "apps/quant_setup.hpp"
#include "quant/ptq/amp.hpp"
#include "quant/ptq/ptq.hpp"
#include "quant/runtime/lower.hpp"
#include "quant/runtime/runtime.hpp"

#include <algorithm>
#include <fstream>

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
      ("seq-mse-loss", "--seq-mse: mse | l1 | sqnr on the layer output", cxxopts::value<std::string>()->default_value("mse"))
      ("amp", "automatic mixed precision: one candidate per Conv/Linear/LSTM/GRU layer, cheapest within --max-drop "
       "of FP32 (writes amp_pareto.json/.svg and amp_config_override.json)")
      ("candidates", "--amp: candidates W<weight bits>A<activation bits>", cxxopts::value<std::string>()->default_value("W4A8,W8A8,W8A16"))
      ("amp-cost", "--amp: latency (measured in the integer runtime) | bops (MACs x w_bits x a_bits)",
       cxxopts::value<std::string>()->default_value("latency"))
      ("amp-costs", "--amp: replay the costs recorded in an amp_pareto.json (exact reruns)", cxxopts::value<std::string>());
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
  q.amp = r.count("amp") > 0;
  q.amp_candidates = r["candidates"].as<std::string>();
  q.amp_cost = r["amp-cost"].as<std::string>();
  if (r.count("amp-costs")) q.amp_costs_file = r["amp-costs"].as<std::string>();
  if (!q.amp && (r.count("candidates") || r.count("amp-cost") || r.count("amp-costs")))
    throw UsageError("--candidates/--amp-cost/--amp-costs need --amp");
  if (q.amp) {
    quant::ptq::parse_amp_candidates(q.amp_candidates);  // InputError (exit 2) before any work
    quant::ptq::parse_amp_cost(q.amp_cost);
    if (q.automatic || q.adaround || q.seq_mse)
      throw UsageError("--amp with --auto/--adaround/--seq-mse: those passes fix weight grids for one bitwidth");
  }
  return q;
}

namespace {

// Note [AMP latency measurement] The sim is lowered and run in the integer runtime with one thread on the
// first calibration batch: one warm-up run, then kAmpRuns runs; each op's time is the median of its
// per-run times. One thread keeps the numbers comparable on a shared machine (quant/ptq/amp_search.cpp
// Note [AMP cost] says how they become per-layer costs).
constexpr int kAmpRuns = 7;

std::vector<quant::ptq::AmpOpTime> measure_ops(quant::QuantSim& sim, const Tensor& x) {
  namespace rt = quant::runtime;
  rt::Program prog = rt::lower(sim);
  std::vector<quant::ptq::AmpOpTime> out(prog.ops.size());
  for (size_t i = 0; i < prog.ops.size(); ++i) {
    const rt::Op& op = prog.ops[i];
    const rt::Value& o = prog.values.at(op.output);
    out[i].module = o.module;
    if (op.kind == rt::OpKind::conv2d || op.kind == rt::OpKind::linear) {
      out[i].macs = static_cast<double>(op.weights.size()) * static_cast<double>(o.numel()) / std::max<int64_t>(1, op.out_c);
    } else if (op.kind == rt::OpKind::lstm || op.kind == rt::OpKind::gru) {
      const auto& in = prog.values.at(op.inputs.at(0)).shape;
      const double steps = in.size() == 2 ? static_cast<double>(in[0]) : 1.0;
      out[i].macs = steps * static_cast<double>(op.weights.size() + op.weights_hh.size());
    }
  }
  rt::Runtime runtime(std::move(prog), {.threads = 1});
  runtime.run(x);
  std::vector<std::vector<double>> per(out.size());
  for (int k = 0; k < kAmpRuns; ++k) {
    const std::vector<double> before = runtime.op_seconds();
    runtime.run(x);
    for (size_t i = 0; i < out.size(); ++i) per[i].push_back(runtime.op_seconds()[i] - before[i]);
  }
  for (size_t i = 0; i < out.size(); ++i) {
    std::sort(per[i].begin(), per[i].end());
    out[i].seconds = per[i][per[i].size() / 2];
  }
  return out;
}

}  // namespace

void run_amp(PtqContext& ctx, const PtqRequest& req, PtqOutcome& out) {
  namespace ptq = quant::ptq;
  ptq::AmpOptions ao;
  ao.candidates = ptq::parse_amp_candidates(req.amp_candidates);
  ao.cost = ptq::parse_amp_cost(req.amp_cost);
  ao.max_drop = req.max_drop;
  if (!req.amp_costs_file.empty()) {
    std::ifstream f(req.amp_costs_file);
    if (!f) throw InputError(fmt::format("--amp-costs {}: cannot read", req.amp_costs_file));
    try {
      ao.recorded_costs = Json::parse(f);
    } catch (const Json::exception& e) {
      throw InputError(fmt::format("--amp-costs {}: {}", req.amp_costs_file, e.what()));
    }
  }
  ao.log = [](const std::string& s) { say("amp: " + s); };
  const std::vector<Tensor> batch = calibration_batches(ctx.data.train, 1, ctx.batch_size, ctx.seed);
  QFORGE_CHECK(!batch.empty(), "amp: no calibration batch");
  auto calibrate = [&](quant::QuantSim& s) {
    s.compute_encodings(calibration_pass(ctx.data.train, ctx.calib_batches, ctx.batch_size, ctx.seed));
  };
  auto evaluate = [&](quant::QuantSim& s) { return evaluate_on(s.model(), ctx.data.test).metrics.accuracy(); };
  auto measure = [&](quant::QuantSim& s) { return measure_ops(s, batch[0]); };
  const ptq::AmpResult r = ptq::choose_mixed_precision(*out.sim, ctx.fp32_accuracy, ao, calibrate, evaluate, measure);
  out.amp_pareto = r.to_json();
  out.amp_pareto["max_drop"] = req.max_drop;
  out.amp_pareto["cost_kind"] = req.amp_cost;
  out.amp_pareto["seed"] = ctx.seed;
  // The chosen configuration as one program, when the runtime can run it (all 8-bit or all 16-bit
  // activations, program16.hpp Note [16-bit codes]); mixed 8/16-bit configurations have only the
  // cost-model sum.
  try {
    double total = 0;
    for (const auto& op : measure_ops(*out.sim, batch[0])) total += op.seconds;
    out.amp_pareto["chosen_program_seconds_per_batch"] = total;
    say(fmt::format("amp: chosen configuration measured as one program: {:.1f} us per batch", total * 1e6));
  } catch (const Error& e) {
    out.amp_pareto["chosen_program_seconds_per_batch"] = nullptr;
    out.amp_pareto["chosen_program_note"] = std::string("not runnable as one integer program: ") + e.what();
  }
  out.amp_svg = ptq::amp_pareto_svg(r);
  const auto& chosen = r.walk.points.at(r.walk.chosen);
  out.amp_override = ptq::amp_override_json(*out.sim, r.groups, r.table.candidates, chosen.choice);
  out.stages.push_back({{"stage", "amp"},
                        {"chosen", out.amp_pareto["points"][r.walk.chosen]},
                        {"top", out.amp_pareto["points"][0]},
                        {"points", r.walk.points.size()}});
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
  if (req.amp) run_amp(ctx, req, out);
  return out;
}

}  // namespace qforge::apps
