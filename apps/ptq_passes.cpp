#include "apps/ptq_passes.hpp"

#include "apps/quant_setup.hpp"

namespace qforge::apps {

void add_ptq_options(cxxopts::Options& opts) {
  opts.add_options("post-training passes")
      ("cle", "cross-layer equalization (ReLU6->ReLU, scaling, high-bias absorption) before quantizing")
      ("bias-correction", "empirical | analytical", cxxopts::value<std::string>())
      ("adaround", "AdaRound the weights (AIMET defaults)")
      ("adaround-iterations", "AdaRound iterations per layer (default: AIMET's)", cxxopts::value<int64_t>()->default_value("0"))
      ("auto", "AutoQuant-style pipeline: fold -> scheme -> CLE -> AdaRound, stopping at --max-drop")
      ("max-drop", "--auto: acceptable accuracy drop in points", cxxopts::value<double>()->default_value("1.0"))
      ("bn-reestimate", "re-estimate BatchNorm statistics over N batches before folding", cxxopts::value<int64_t>()->default_value("0"));
}

PtqRequest ptq_request_from(const cxxopts::ParseResult& r, int param_bw) {
  PtqRequest q;
  q.cle = r.count("cle") > 0;
  if (r.count("bias-correction")) {
    q.bias_correction = r["bias-correction"].as<std::string>();
    if (q.bias_correction != "empirical" && q.bias_correction != "analytical")
      throw UsageError(fmt::format("--bias-correction {}: expected empirical or analytical", q.bias_correction));
  }
  q.adaround = r.count("adaround") > 0;
  q.adaround_iterations = r["adaround-iterations"].as<int64_t>();
  q.automatic = r.count("auto") > 0;
  q.max_drop = r["max-drop"].as<double>();
  q.bn_reestimate = r["bn-reestimate"].as<int64_t>();
  if ((q.adaround || q.automatic) && param_bw > 8)
    throw UsageError(fmt::format("--adaround with --param-bw {}: AdaRound rounds integer weight grids of at most 8 "
                                 "bits; {}-bit weights are already near-lossless",
                                 param_bw, param_bw));
  if (q.adaround_iterations < 0) throw UsageError("--adaround-iterations must not be negative");
  if (q.bn_reestimate < 0) throw UsageError("--bn-reestimate must not be negative");
  if (!(q.max_drop >= 0)) throw UsageError("--max-drop must not be negative");
  return q;
}

PtqOutcome run_ptq(PtqContext& ctx, const PtqRequest& req) {
  if (req.cle || !req.bias_correction.empty() || req.adaround || req.automatic || req.bn_reestimate > 0)
    throw UsageError("post-training passes (--cle, --bias-correction, --adaround, --auto, --bn-reestimate) are not "
                     "available in this build yet");
  PtqOutcome out;
  auto sample = sample_batch(ctx.data.test);
  out.sim = std::make_unique<quant::QuantSim>(ctx.model, sample, ctx.options);
  out.sim->compute_encodings(calibration_pass(ctx.data.train, ctx.calib_batches, ctx.batch_size, ctx.seed));
  return out;
}

}  // namespace qforge::apps
