// qforge finetune: quantization-aware training of a quantized model directory.
// The optimizer updates the FP32 shadow weights (and, with --range-learning, the quantizers' ranges);
// forward sees the quantized weights and activations. Writes a quantized model directory to --out.
#include "apps/cli.hpp"
#include "apps/eval_modes.hpp"
#include "apps/model_setup.hpp"
#include "apps/quant_setup.hpp"
#include "train/checkpoint.hpp"
#include "train/communicator.hpp"
#include "train/output.hpp"
#include "train/progress.hpp"
#include <iostream>
#include <optional>

namespace qforge::apps {

namespace fs = std::filesystem;

int cmd_finetune(int argc, char** argv) {
  cxxopts::Options opts("qforge finetune", "Quantization-aware training (QAT) of a quantized model directory.");
  opts.add_options()
      ("model-dir", "quantized model directory (from qforge quantize)", cxxopts::value<std::string>())
      ("data", "data spec (default: the one the model was trained on)", cxxopts::value<std::string>())
      ("epochs", "epochs", cxxopts::value<int64_t>()->default_value("1"))
      ("batch-size", "batch size", cxxopts::value<int64_t>()->default_value("64"))
      ("lr", "learning rate for the weights", cxxopts::value<double>()->default_value("1e-3"))
      ("range-lr", "learning rate for the quantization ranges (default: --lr)", cxxopts::value<double>())
      ("optimizer", "sgd | adam | adamw", cxxopts::value<std::string>()->default_value("adam"))
      ("momentum", "SGD momentum", cxxopts::value<double>()->default_value("0.9"))
      ("schedule", "LR schedule (as qforge train)", cxxopts::value<std::string>()->default_value("cosine"))
      ("range-learning", "none | aimet | lsq", cxxopts::value<std::string>()->default_value("none"))
      ("seed", "seed for shuffling", cxxopts::value<uint64_t>()->default_value("0"))
      ("threads", "threads (OpenMP + OpenBLAS); 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("out", "output quantized model directory", cxxopts::value<std::string>())
      ("resume", "continue the fine-tuning saved in --out (its checkpoint/)")
      ("max-steps", "stop after this many steps, with a checkpoint (0: no limit)", cxxopts::value<int64_t>()->default_value("0"))
      ("progress", "auto | bar | lines | none", cxxopts::value<std::string>()->default_value("auto"))
      ("log-every", "progress line every N steps", cxxopts::value<int64_t>()->default_value("50"))
      ("force", "replace --out when it holds a previous qforge quantized model or run (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;
  apply_threads(r["threads"].as<int>());
  const fs::path src = required(r, "model-dir");
  const fs::path out = required(r, "out");
  require_quantized_dir("model-dir", src);
  train::check_no_overlap("--out", out, "--model-dir", src);
  const bool resume = r.count("resume") > 0;
  if (resume && r.count("force")) throw UsageError("--force and --resume exclude each other");
  if (resume && !train::has_checkpoint(out / "checkpoint"))
    throw InputError(fmt::format("--resume: {} has no checkpoint (missing checkpoint/state.json)", out.string()));
  if (!resume && fs::exists(out / "checkpoint") && r.count("force") == 0)
    throw UsageError(fmt::format("--out {} already holds a fine-tuning run; pass --resume to continue it, --force to "
                                 "replace it, or choose another directory",
                                 out.string()));

  train::TrainConfig cfg;
  cfg.epochs = r["epochs"].as<int64_t>();
  cfg.batch_size = r["batch-size"].as<int64_t>();
  cfg.optimizer.type = r["optimizer"].as<std::string>();
  cfg.optimizer.lr = r["lr"].as<double>();
  if (cfg.optimizer.type == "sgd") cfg.optimizer.momentum = r["momentum"].as<double>();
  cfg.schedule = r["schedule"].as<std::string>();
  cfg.seed = r["seed"].as<uint64_t>();
  std::string range_learning = r["range-learning"].as<std::string>();
  if (r.count("range-lr")) cfg.extra_lr = r["range-lr"].as<double>();
  if (resume) {
    // Continue with the configuration stored in the checkpoint; options given again must agree.
    const nlohmann::json ts = train::read_checkpoint_trainer_state(out / "checkpoint");
    const nlohmann::json stored =
        per_rank_config(ts.value("config", nlohmann::json::object()), train::world_communicator()->size(), out);
    const nlohmann::json so = stored.value("optimizer", nlohmann::json::object());
    const nlohmann::json app = stored.value("app", nlohmann::json::object());
    cfg.epochs = resume_value<int64_t>(r, "epochs", stored, "epochs", cfg.epochs, out);
    cfg.batch_size = resume_value<int64_t>(r, "batch-size", stored, "batch_size", cfg.batch_size, out);
    cfg.schedule = resume_value<std::string>(r, "schedule", stored, "schedule", cfg.schedule, out);
    cfg.seed = resume_value<uint64_t>(r, "seed", stored, "seed", cfg.seed, out);
    cfg.optimizer.type = resume_value<std::string>(r, "optimizer", so, "type", cfg.optimizer.type, out);
    cfg.optimizer.lr = resume_value<double>(r, "lr", so, "lr", cfg.optimizer.lr, out);
    cfg.optimizer.momentum = resume_value<double>(r, "momentum", so, "momentum", cfg.optimizer.momentum, out);
    if (stored.contains("extra_lr") && !stored["extra_lr"].is_null())
      cfg.extra_lr = resume_value<double>(r, "range-lr", stored, "extra_lr", cfg.extra_lr.value_or(cfg.optimizer.lr), out);
    else if (stored.contains("extra_lr") && r.count("range-lr"))
      throw UsageError(fmt::format("--range-lr conflicts with the run in {} (it uses --lr for the ranges)", out.string()));
    range_learning = resume_value<std::string>(r, "range-learning", app, "range_learning", range_learning, out);
    const std::string src_abs = fs::absolute(src).lexically_normal().string();
    if (app.contains("source") && app["source"].is_string() && app["source"].get<std::string>() != src_abs)
      throw UsageError(fmt::format("--model-dir {} differs from the model the run in {} fine-tunes ({})", src.string(),
                                   out.string(), app["source"].get<std::string>()));
  }
  cfg.out_dir = out;
  cfg.resume = resume;
  cfg.max_steps = r["max-steps"].as<int64_t>();
  cfg.progress = train::parse_progress_mode(r["progress"].as<std::string>());
  cfg.log_every = r["log-every"].as<int64_t>();
  if (cfg.log_every <= 0) throw UsageError(fmt::format("--log-every {}: must be positive", cfg.log_every));
  if (cfg.max_steps < 0) throw UsageError(fmt::format("--max-steps {}: must be >= 0", cfg.max_steps));
  cfg.augment = false;
  cfg.comm = train::world_communicator();  // Note [Ranks in the CLI]: data parallel under mpirun
  const bool writer = cfg.comm->rank() == 0;
  cfg.app_config = {{"source", fs::absolute(src).lexically_normal().string()}, {"range_learning", range_learning}};
  train::validate(cfg);
  const quant::RangeLearning rl = quant::parse_range_learning(range_learning);

  data::DataSplits data = data_for_dir(src, r.count("data") ? r["data"].as<std::string>() : "");
  quant::QuantizedModel qm = quant::load_quantized_dir(src, sample_batch(data.test));
  quant::QuantSim& sim = *qm.sim;
  if (rl != quant::RangeLearning::none) sim.set_range_learning(rl);
  const auto ranges = sim.range_parameters();
  for (size_t i = 0; i < ranges.size(); ++i) cfg.extra_parameters.push_back({fmt::format("range.{}", i), ranges[i]});

  // Rank 0 alone evaluates and writes (the others hold the same model).
  const train::EvalResult before = writer ? evaluate_on(sim.model(), data.test) : train::EvalResult{};
  say(fmt::format("fine-tuning {} ({} quantizers, range learning {}, {} range parameters): before {:.2f}%",
                  src.string(), sim.num_enabled(), quant::range_learning_name(rl), ranges.size(),
                  before.metrics.accuracy()));
  train::Trainer trainer(qm.dir.model, data.train, data.test, cfg);  // settings checked before publishing
  // Note [Publishing outputs] (train/output.hpp): like train, a fine-tuning run directory is published at
  // its start and updated in place under the lock (checkpoints resumable after any stop); the final
  // quantized files are written last, each atomically.
  if (writer && resume && train::output_kind(out).empty()) {  // a run of an older version: see cmd_train
    (void)train::read_checkpoint_trainer_state(out / "checkpoint");
    say(fmt::format("note: marking {} as a qforge fine-tuning run (written by an older version)", out.string()));
    train::write_output_marker(out, "quantized");
  }
  std::optional<train::OutputDir> od;
  if (writer) {
    od.emplace(out, "quantized", train::OutputOptions{r.count("force") > 0, {src}, resume});
    if (resume && !od->existing())
      throw InputError(fmt::format("--resume: {} is not a qforge fine-tuning run", out.string()));
    od->publish();
  }
  train::TrainResult result;
  {
    train::Trainer::StopOnSignal on_signal(trainer);  // SIGINT and SIGTERM: checkpoint, then exit normally
    try {
      result = trainer.fit();
    } catch (const train::DivergedError&) {
      throw;  // exit 1 (main); names the step and the kept checkpoint; raised by every rank together
    }
  }

  const train::EvalResult after = writer ? evaluate_on(sim.model(), data.test) : train::EvalResult{};
  nlohmann::json report = qm.dir.report;
  report["command"] = "finetune";
  report["source"] = fs::absolute(src).string();
  report["finetune"] = {{"epochs", cfg.epochs}, {"lr", cfg.optimizer.lr}, {"optimizer", cfg.optimizer.type},
                        {"range_learning", quant::range_learning_name(rl)}, {"result", result.to_json()}};
  report["before"] = before.to_json();
  report["sim"] = after.to_json();
  if (!writer) return 0;
  if (result.finished) {
    // Learned ranges become the exported encodings; training state stays in checkpoint/.
    quant::save_quantized_dir(out, sim, report);
  } else {
    say(fmt::format("stopped ({}) after {} steps; continue with: qforge finetune --model-dir {} --out {} --resume",
                    result.stop_reason, result.steps, src.string(), out.string()));
  }
  nlohmann::json summary = {{"out", out.string()},
                            {"accuracy_before", before.metrics.accuracy()},
                            {"accuracy", after.metrics.accuracy()},
                            {"loss", after.metrics.loss()},
                            {"samples", after.metrics.count},
                            {"epochs_completed", result.epochs_completed},
                            {"finished", result.finished},
                            {"range_learning", quant::range_learning_name(rl)}};
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
