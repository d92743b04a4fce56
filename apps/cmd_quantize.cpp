// qforge quantize: post-training quantization of a trained model directory.
//   load FP32 model -> QuantSim (AIMET config, BN folded) -> calibrate on training batches ->
//   evaluate the simulated model -> write a quantized model directory (quant/quant_dir.hpp).
// PTQ passes (CLE, bias correction, AdaRound, AutoQuant) run between folding and calibration when asked.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "apps/ptq_passes.hpp"
#include "apps/quant_setup.hpp"
#include "engine/file_io.hpp"
#include "quant/blockwise_sim.hpp"
#include "quant/config.hpp"
#include "train/communicator.hpp"
#include "train/output.hpp"

#include <iostream>
#include <optional>

namespace qforge::apps {

namespace fs = std::filesystem;

int cmd_quantize(int argc, char** argv) {
  cxxopts::Options opts("qforge quantize",
                        "Post-training quantization: calibrate, evaluate the simulated model, write a quantized model "
                        "directory (model + encodings.json + quantsim.json).");
  opts.add_options()
      ("model-dir", "trained FP32 model directory", cxxopts::value<std::string>())
      ("data", "data spec (default: the one the model was trained on)", cxxopts::value<std::string>())
      ("out", "output quantized model directory", cxxopts::value<std::string>())
      ("config", "AIMET quantsim config: default | per_channel | FILE.json", cxxopts::value<std::string>()->default_value("default"))
      ("scheme", "tf | tf_enhanced | percentile | mse | torch_minmax | torch_moving_average | torch_histogram", cxxopts::value<std::string>()->default_value("tf"))
      ("param-bw", "weight bitwidth (2-16)", cxxopts::value<int>()->default_value("8"))
      ("output-bw", "activation bitwidth (2-16)", cxxopts::value<int>()->default_value("8"))
      ("per-channel", "per-channel weight quantization (overrides the config's default)")
      ("calib-batches", "calibration batches from the training split", cxxopts::value<int64_t>()->default_value("16"))
      ("batch-size", "calibration and evaluation batch size", cxxopts::value<int64_t>()->default_value("64"))
      ("no-fold-bn", "keep BatchNorm layers unfolded")
      ("target", "integer arithmetic of exact mode and the int8 runtime: dsp (fixed point) | onnxruntime (ONNX Runtime's CPU arithmetic)",
       cxxopts::value<std::string>()->default_value("dsp"))
      ("encodings-version", "AIMET encodings schema: 0.6.1 | 1.0.0 | 2.0.0 | 2.1.0 (blockwise: 1.0.0 unless given)",
       cxxopts::value<std::string>()->default_value("0.6.1"))
      ("block-size", "blockwise weights (Conv/Linear/LSTM/GRU): input channels per block; must divide each layer's "
       "input channels (layers with fewer keep per-channel)", cxxopts::value<int64_t>()->default_value("0"))
      ("lpbq", "LPBQ weights (AIMET low-power blockwise quantization): block scales = per-channel scale x integer "
       "multiplier, so the int8 runtime runs them per-channel; block size 64 unless --block-size")
      ("decompressed-bw", "LPBQ: bitwidth of the per-channel scale grid", cxxopts::value<int>()->default_value("8"))
      ("seed", "seed (calibration order, AdaRound)", cxxopts::value<uint64_t>()->default_value("0"))
      ("threads", "threads (OpenMP + OpenBLAS); 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("force", "replace --out when it holds a previous qforge quantized model (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  add_ptq_options(opts);
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());

  const fs::path src = required(r, "model-dir");
  const fs::path out = required(r, "out");
  const int param_bw = r["param-bw"].as<int>(), output_bw = r["output-bw"].as<int>();
  if (param_bw < 2 || param_bw > 16) throw UsageError(fmt::format("--param-bw {}: supported bitwidths are 2-16", param_bw));
  if (output_bw < 2 || output_bw > 16) throw UsageError(fmt::format("--output-bw {}: supported bitwidths are 2-16", output_bw));
  const int64_t calib = r["calib-batches"].as<int64_t>(), batch = r["batch-size"].as<int64_t>();
  if (calib <= 0) throw UsageError(fmt::format("--calib-batches {}: must be positive", calib));
  if (batch <= 0) throw UsageError(fmt::format("--batch-size {}: must be positive", batch));
  // Blockwise / LPBQ weights (quant/blockwise_sim.hpp); 0.6.1 has no blockwise entries, so a blockwise
  // model is written as 1.0.0 unless a version is asked for.
  quant::BlockwiseOptions blockwise;
  blockwise.block_size = r["block-size"].as<int64_t>();
  blockwise.lpbq = r.count("lpbq") > 0;
  blockwise.decompressed_bw = r["decompressed-bw"].as<int>();
  if (blockwise.block_size < 0) throw UsageError(fmt::format("--block-size {}: must be positive", blockwise.block_size));
  if (blockwise.lpbq && blockwise.block_size == 0) blockwise.block_size = 64;  // AIMET's default
  if (blockwise.lpbq && (blockwise.decompressed_bw <= param_bw || blockwise.decompressed_bw > 8))
    throw UsageError(fmt::format("--decompressed-bw {}: LPBQ needs --param-bw ({}) < decompressed bitwidth <= 8",
                                 blockwise.decompressed_bw, param_bw));
  std::string enc_version = r["encodings-version"].as<std::string>();
  if (enc_version != "0.6.1" && enc_version != "1.0.0" && enc_version != "2.0.0" && enc_version != "2.1.0")
    throw UsageError(fmt::format("--encodings-version {}: expected 0.6.1, 1.0.0, 2.0.0 or 2.1.0", enc_version));
  if (blockwise.block_size > 0 && r.count("encodings-version") == 0) enc_version = "1.0.0";
  if (blockwise.block_size > 0 && enc_version == "0.6.1")
    throw UsageError("--encodings-version 0.6.1 has no blockwise entries: use 1.0.0, 2.0.0 or 2.1.0 with --block-size/--lpbq");
  if (quant::is_quantized_dir(src))
    throw UsageError(fmt::format("--model-dir {} is already quantized; quantize the FP32 model directory", src.string()));
  if (!fs::is_directory(src)) throw UsageError(fmt::format("--model-dir {}: not a directory", src.string()));

  quant::QuantSimOptions qopt;
  qopt.scheme = quant::parse_scheme(r["scheme"].as<std::string>());
  qopt.param_bw = param_bw;
  qopt.act_bw = output_bw;
  qopt.fold_bn = r.count("no-fold-bn") == 0;
  if (const std::string target = r["target"].as<std::string>(); !kernels::parse_profile(target, &qopt.target))
    throw UsageError(fmt::format("--target {}: expected dsp or onnxruntime", target));
  qopt.seed = r["seed"].as<uint64_t>();
  qopt.config = r["config"].as<std::string>();
  if (r.count("per-channel")) {
    quant::QuantSimConfig cfg = quant::config_from_name_or_path(qopt.config);
    cfg.per_channel = true;
    qopt.config_obj = cfg;
    if (qopt.config == "default") qopt.config = "per_channel";
  } else {
    qopt.config_obj = quant::config_from_name_or_path(qopt.config);  // errors in the config surface before any work
  }
  const PtqRequest ptq = ptq_request_from(r, param_bw, output_bw);
  if (blockwise.block_size > 0 && ptq.amp)
    throw UsageError("--block-size/--lpbq with --amp: AMP chooses per-layer bitwidths on per-channel/per-tensor grids");
  if (blockwise.block_size > 0 && (ptq.adaround || ptq.automatic))
    throw UsageError("--block-size/--lpbq with --adaround or --auto-quant: those passes choose per-channel/per-tensor "
                     "weight grids; blockwise weights are applied after calibration and would discard them");
  // Note [Publishing outputs] (train/output.hpp): the quantized directory is built in a temporary sibling
  // and published with one rename; an existing --out is replaced only with --force and only if qforge wrote it.
  // Under mpirun (Note [Ranks in the CLI]) every rank calibrates on its shard of the calibration batches
  // and merges the statistics (train/calibration.hpp); rank 0 alone writes.
  const bool writer = train::world_communicator()->rank() == 0;
  std::optional<train::OutputDir> od;
  if (writer) od.emplace(out, "quantized", train::OutputOptions{r.count("force") > 0, {src}});

  nn::ModelDir md = nn::load_model_dir(src);
  data::DataSplits data = data_for_dir(src, r.count("data") ? r["data"].as<std::string>() : "");
  const uint64_t seed = r["seed"].as<uint64_t>();

  say(fmt::format("quantizing {} (W{}A{}, {}, config {}{})", src.string(), param_bw, output_bw,
                  r["scheme"].as<std::string>(), qopt.config, r.count("per-channel") ? ", per-channel" : ""));
  const train::EvalResult fp32 = evaluate_on(*md.model, data.test);
  say(fmt::format("FP32: accuracy {:.2f}%  loss {:.4f}", fp32.metrics.accuracy(), fp32.metrics.loss()));

  PtqContext ctx{md.model, data, qopt, calib, batch, seed, fp32.metrics.accuracy()};
  PtqOutcome q = run_ptq(ctx, ptq);
  quant::QuantSim& sim = *q.sim;
  if (blockwise.block_size > 0) {
    const quant::BlockwiseResult br = quant::apply_blockwise(sim, blockwise);
    say(fmt::format("{} weights, block size {}: {} quantizers converted{}", blockwise.lpbq ? "LPBQ" : "blockwise",
                    blockwise.block_size, br.converted.size(),
                    br.skipped.empty() ? "" : fmt::format("; kept per-channel: {}", fmt::join(br.skipped, "; "))));
    q.stages.push_back({{"stage", blockwise.lpbq ? "lpbq" : "blockwise"},
                        {"block_size", blockwise.block_size},
                        {"converted", br.converted},
                        {"skipped", br.skipped}});
  }
  const train::EvalResult simres = evaluate_on(sim.model(), data.test);
  say(fmt::format("simulated {}: accuracy {:.2f}%  loss {:.4f}  ({} quantizers enabled)",
                  ptq.amp ? std::string("AMP mixed precision") : fmt::format("W{}A{}", param_bw, output_bw),
                  simres.metrics.accuracy(), simres.metrics.loss(), sim.num_enabled()));

  nlohmann::json prior = md.report;
  nlohmann::json report = {
      {"command", "quantize"},
      {"model", prior.value("model", md.spec.value("name", std::string("model")))},
      {"data", absolute_data_spec(data.spec)},
      {"seed", prior.value("seed", uint64_t{0})},
      {"seq_len", prior.value("seq_len", int64_t{100})},
      {"source", fs::absolute(src).string()},
      {"param_bw", param_bw},
      {"output_bw", output_bw},
      {"scheme", r["scheme"].as<std::string>()},
      {"config", qopt.config},
      {"per_channel", r.count("per-channel") > 0},
      {"block_size", blockwise.block_size},
      {"lpbq", blockwise.lpbq},
      {"calib_batches", calib},
      {"target", kernels::profile_name(qopt.target)},
      {"fp32", fp32.to_json()},
      {"sim", simres.to_json()},
      {"ptq", q.stages},
  };
  if (prior.contains("vocab")) report["vocab"] = prior["vocab"];  // text models carry their vocabulary
  if (writer) {
    quant::save_quantized_dir(od->staging(), sim, report, enc_version);
    if (ptq.amp) {  // --amp: the Pareto points, their plot and the chosen per-layer configuration
      write_file_atomic(od->staging() / "amp_pareto.json", q.amp_pareto.dump(2) + "\n");
      write_file_atomic(od->staging() / "amp_pareto.svg", q.amp_svg);
      write_file_atomic(od->staging() / "amp_config_override.json", q.amp_override.dump(2) + "\n");
    }
    od->publish();
  }
  nlohmann::json summary = {{"out", out.string()},
                            {"fp32_accuracy", fp32.metrics.accuracy()},
                            {"accuracy", simres.metrics.accuracy()},
                            {"loss", simres.metrics.loss()},
                            {"samples", simres.metrics.count},
                            {"drop", fp32.metrics.accuracy() - simres.metrics.accuracy()},
                            {"param_bw", param_bw},
                            {"output_bw", output_bw},
                            {"quantizers_enabled", sim.num_enabled()},
                            {"ptq", q.stages}};
  if (r.count("json")) {
    emit_json(summary);
  } else {
    std::cout << sim.listing() << "\n" << summary.dump(2) << std::endl;
  }
  return 0;
}

}  // namespace qforge::apps
