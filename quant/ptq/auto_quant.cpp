// AutoQuant-style pipeline. See auto_quant.hpp.
#include "quant/ptq/auto_quant.hpp"

#include "nn/graph.hpp"
#include "nn/spec.hpp"
#include "quant/ptq/bias_correction.hpp"
#include "quant/ptq/bn_fold.hpp"
#include "quant/ptq/cle.hpp"

namespace qforge::quant::ptq {

std::unique_ptr<QuantSim> make_calibrated_sim(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                                              const std::vector<Tensor>& calib_batches, const QuantSimOptions& options,
                                              QuantScheme weight_scheme, const AdaroundResult* adaround) {
  auto sim = std::make_unique<QuantSim>(model, sample_inputs, options);
  if (weight_scheme != options.scheme)
    for (const auto& info : sim->quantizers())
      if (info.kind == "param") {
        QuantizerSettings s = info.quantizer->settings();
        s.scheme = weight_scheme;
        info.quantizer->set_settings(s);
      }
  if (adaround) adaround->apply_to(*sim);
  sim->compute_encodings([&](nn::Module& m) {
    for (const auto& b : calib_batches) m(std::vector<Tensor>{b});
  });
  return sim;
}

void adopt_model_state(nn::Module& dst, nn::Module& src) {
  auto* gd = dynamic_cast<nn::Graph*>(&dst);
  auto* gs = dynamic_cast<nn::Graph*>(&src);
  QFORGE_CHECK(gd && gs && gd->nodes().size() == gs->nodes().size(), "adopt_model_state: needs two Graphs of the same shape");
  for (size_t i = 0; i < gd->nodes().size(); ++i)
    if (gd->nodes()[i].module->type_name() != gs->nodes()[i].module->type_name() && gs->nodes()[i].module->state_dict().empty())
      gd->replace_node_module(static_cast<int>(i), gs->nodes()[i].module);
  dst.load_state_dict(src.state_dict(), true);
}

void validate_passes(const PassSelection& p) {
  if (!p.bias_correction.empty()) parse_bias_correction_mode(p.bias_correction);
  if (p.bn_reestimate < 0) throw InputError(fmt::format("BN re-estimation: number of batches must be >= 0, got {}", p.bn_reestimate));
  if (p.auto_quant && (p.cle || p.adaround || !p.bias_correction.empty()))
    throw InputError("the AutoQuant pipeline chooses its passes itself (BN fold, scheme, CLE, AdaRound): do not combine "
                     "it with explicit CLE, bias correction or AdaRound");
  if ((p.adaround || p.auto_quant) && (p.param_bw > 8 || p.param_bw < 2))
    throw InputError(fmt::format("AdaRound needs an integer weight grid of 2 to 8 bits, got a parameter bitwidth of {} "
                                 "(at 16 bits nearest rounding is already near-lossless)", p.param_bw));
  if (p.adaround && !p.bias_correction.empty())
    throw InputError("bias correction and AdaRound should not be combined (AIMET's advice): AdaRound's layer-wise "
                     "reconstruction already compensates the output shift; choose one");
}

nlohmann::json AutoQuantResult::to_json() const {
  nlohmann::json j = {{"fp32_accuracy", fp32_accuracy}, {"target", target}, {"best_stage", best_stage},
                      {"best_accuracy", best_accuracy}, {"target_met", target_met}, {"message", message},
                      {"weight_scheme", scheme_name(weight_scheme)}, {"activation_scheme", scheme_name(options.scheme)},
                      {"percentile", options.percentile}, {"cle_applied", cle_applied}, {"stages", nlohmann::json::array()}};
  for (const auto& s : stages)
    j["stages"].push_back({{"stage", s.name}, {"accuracy", s.accuracy}, {"target_met", s.target_met}, {"note", s.note}});
  if (adaround) j["adaround"] = adaround->to_json();
  return j;
}

AutoQuantResult auto_quant(std::shared_ptr<nn::Module> model, const std::vector<Tensor>& sample_inputs,
                           const std::vector<Tensor>& calib_batches, const EvalCallback& eval, const AutoQuantOptions& opt) {
  QFORGE_CHECK(model != nullptr && eval, "auto_quant: needs a model and an evaluation callback");
  if (calib_batches.empty()) throw InputError("auto_quant: needs calibration data (at least one batch)");
  if (!(opt.allowed_drop >= 0)) throw InputError(fmt::format("auto_quant: allowed accuracy drop must be >= 0, got {}", opt.allowed_drop));
  if (opt.try_adaround) {
    AdaroundOptions ao = opt.adaround;
    ao.sim = opt.sim;
    validate(ao);
  }
  auto log = [&](const std::string& s) {
    if (opt.log) opt.log(s);
  };
  AutoQuantResult r;
  r.options = opt.sim;
  r.fp32_accuracy = eval(*model);
  r.target = r.fp32_accuracy - opt.allowed_drop;
  r.stages.push_back({"fp32", r.fp32_accuracy, true, ""});
  log(fmt::format("fp32 accuracy {:.2f}, target {:.2f}", r.fp32_accuracy, r.target));
  auto stage = [&](const std::string& name, double acc, const std::string& note = "") {
    const bool met = acc >= r.target;
    r.stages.push_back({name, acc, met, note});
    log(fmt::format("{}: {:.2f}{}", name, acc, met ? " (target met)" : ""));
    if (acc > r.best_accuracy || r.best_stage.empty()) {
      r.best_accuracy = acc;
      r.best_stage = name;
    }
    return met;
  };
  auto quant_acc = [&](const QuantSimOptions& so, QuantScheme ws, const AdaroundResult* ar = nullptr, bool weights = true) {
    auto sim = make_calibrated_sim(model, sample_inputs, calib_batches, so, ws, ar);
    if (!weights)
      for (const auto& info : sim->quantizers())
        if (info.kind == "param") info.quantizer->set_enabled(false);
    return eval(sim->model());
  };

  const BnFoldResult folds = fold_all_batch_norms(*model, sample_inputs);
  if (!folds.folds.empty()) log(fmt::format("folded {} BatchNorm layers", folds.folds.size()));

  // 1. scheme
  struct Cand {
    QuantScheme w, a;
    double pct;
    const char* name;
  };
  const Cand cands[] = {{QuantScheme::tf, QuantScheme::tf, 100, "scheme tf/tf"},
                        {QuantScheme::tf_enhanced, QuantScheme::tf, 100, "scheme tf_enhanced/tf"},
                        {QuantScheme::tf_enhanced, QuantScheme::tf_enhanced, 100, "scheme tf_enhanced/tf_enhanced"},
                        {QuantScheme::tf_enhanced, QuantScheme::percentile, 99.9, "scheme tf_enhanced/percentile 99.9"},
                        {QuantScheme::tf_enhanced, QuantScheme::percentile, 99.99, "scheme tf_enhanced/percentile 99.99"}};
  double best_scheme = -1;
  for (const auto& c : cands) {
    QuantSimOptions so = opt.sim;
    so.scheme = c.a;
    so.percentile = c.pct;
    const double acc = quant_acc(so, c.w);
    const bool met = stage(c.name, acc);
    if (acc > best_scheme) {
      best_scheme = acc;
      r.options = so;
      r.weight_scheme = c.w;
    }
    if (met) {
      r.target_met = true;
      r.message = fmt::format("target met by quant scheme selection ({})", c.name);
      return r;
    }
  }
  // 2. activations only
  {
    const double acc = quant_acc(r.options, r.weight_scheme, nullptr, false);
    r.stages.push_back({"weights fp32 (activations only)", acc, acc >= r.target, "diagnostic"});
    log(fmt::format("weights fp32 (activations only): {:.2f}", acc));
    if (acc < r.target) {
      r.message = fmt::format("activation quantization alone gives {:.2f} < target {:.2f}: weight passes cannot reach "
                              "the target (try higher activation bitwidth or QAT)", acc, r.target);
      return r;
    }
  }
  // 3. CLE on a copy
  if (opt.try_cle) {
    auto copy = nn::clone_model(*model);
    CleOptions co;
    co.prior_folds = &folds;
    const CleResult cle = equalize_model(*copy, sample_inputs, co);
    std::string note = cle.applied() ? fmt::format("{} sets", cle.sets.size()) : "no eligible layer sets";
    double acc = -1;
    {
      auto sim = make_calibrated_sim(copy, sample_inputs, calib_batches, r.options, r.weight_scheme);
      acc = eval(sim->model());
    }
    const double before = r.best_accuracy;
    const bool met = stage("cle", acc, note);
    if (acc > before) {
      adopt_model_state(*model, *copy);
      r.cle_applied = true;
    } else {
      r.stages.back().note += "; not adopted (no improvement)";
    }
    if (met) {
      r.target_met = true;
      r.message = "target met after CLE";
      return r;
    }
  }
  // 4. AdaRound
  if (opt.try_adaround) {
    AdaroundOptions ao = opt.adaround;
    ao.sim = r.options;
    ao.sim.scheme = r.weight_scheme;
    ao.num_samples = std::min<int64_t>(ao.num_samples, 2000);
    auto ar = apply_adaround(model, sample_inputs, calib_batches, ao);
    const double acc = quant_acc(r.options, r.weight_scheme, &ar);
    r.adaround = std::move(ar);
    if (stage("adaround", acc)) {
      r.target_met = true;
      r.message = "target met after AdaRound";
      return r;
    }
  }
  r.message = fmt::format("target {:.2f} not met; best {:.2f} ({})", r.target, r.best_accuracy, r.best_stage);
  return r;
}

}  // namespace qforge::quant::ptq
