// qforge train: build a zoo model (or a spec) and train it; writes a model directory.
#include "apps/cli.hpp"
#include "apps/model_setup.hpp"
#include "nn/model_dir.hpp"
#include "nn/spec.hpp"
#include "nn/zoo.hpp"
#include "train/checkpoint.hpp"
#include "train/communicator.hpp"
#include "train/output.hpp"
#include "train/progress.hpp"
#include "train/trainer.hpp"

#include <cmath>
#include <iostream>
#include <optional>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

// Sensible per-optimizer defaults when --lr / --momentum are not given.
train::OptimizerConfig optimizer_from(const cxxopts::ParseResult& r) {
  train::OptimizerConfig o;
  o.type = r["optimizer"].as<std::string>();
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw")
    throw UsageError(fmt::format("--optimizer {}: expected sgd, adam or adamw", o.type));
  o.lr = r.count("lr") ? r["lr"].as<double>() : (o.type == "sgd" ? 0.02 : 2e-3);
  o.momentum = r.count("momentum") ? r["momentum"].as<double>() : (o.type == "sgd" ? 0.9 : 0.0);
  o.nesterov = r["nesterov"].as<bool>();
  o.weight_decay = r["weight-decay"].as<double>();
  if (!(o.lr > 0) || !std::isfinite(o.lr)) throw UsageError(fmt::format("--lr {}: must be positive and finite", o.lr));
  if (!(o.momentum >= 0 && o.momentum < 1)) throw UsageError(fmt::format("--momentum {}: must be in [0, 1)", o.momentum));
  if (!(o.weight_decay >= 0) || !std::isfinite(o.weight_decay))
    throw UsageError(fmt::format("--weight-decay {}: must be finite and >= 0", o.weight_decay));
  return o;
}

// The path part of a data spec ("mnist:DIR" -> DIR), empty for synthetic data.
fs::path data_path(const std::string& spec) {
  const auto colon = spec.find(':');
  if (colon == std::string::npos || spec.substr(0, colon) == "synthetic") return {};
  return spec.substr(colon + 1);
}

}  // namespace

int cmd_train(int argc, char** argv) {
  cxxopts::Options opts("qforge train", "Train a model; writes model.json, weights.safetensors, report.json, "
                                        "metrics.jsonl and checkpoint/ into --out.");
  opts.add_options()
      ("model", "zoo model name (qforge models) or a model spec .json", cxxopts::value<std::string>())
      ("data", "synthetic (default) | mnist:DIR | cifar10:DIR | text:FILE | tensors:FILE (.npz or .safetensors: input, "
               "label, optional test_input/test_label; without them both splits are the same arrays)",
       cxxopts::value<std::string>())
      ("epochs", "epochs", cxxopts::value<int64_t>()->default_value("3"))
      ("batch-size", "batch size", cxxopts::value<int64_t>()->default_value("64"))
      ("lr", "learning rate (default: 0.02 for sgd, 2e-3 for adam/adamw)", cxxopts::value<double>())
      ("optimizer", "sgd | adam | adamw", cxxopts::value<std::string>()->default_value("sgd"))
      ("momentum", "SGD momentum (default 0.9)", cxxopts::value<double>())
      ("nesterov", "Nesterov momentum", cxxopts::value<bool>()->default_value("false"))
      ("weight-decay", "weight decay (not applied to biases and BatchNorm)", cxxopts::value<double>()->default_value("0"))
      ("schedule", "constant | step:STEP[:GAMMA] | multistep:M1,M2[:GAMMA] | cosine | warmup:N+... (see docs)",
       cxxopts::value<std::string>()->default_value("constant"))
      ("clip-grad-norm", "clip gradients to this global norm (0: off)", cxxopts::value<double>()->default_value("0"))
      ("seed", "seed for initialisation, shuffling, dropout and synthetic data", cxxopts::value<uint64_t>()->default_value("0"))
      ("threads", "threads (OpenMP + OpenBLAS); 0: all cores", cxxopts::value<int>()->default_value("0"))
      ("out", "output model directory", cxxopts::value<std::string>())
      ("resume", "continue the run saved in this directory (its checkpoint/)", cxxopts::value<std::string>())
      ("max-steps", "stop after this many steps in total, with a checkpoint (0: no limit)", cxxopts::value<int64_t>()->default_value("0"))
      ("seq-len", "text: characters per training window", cxxopts::value<int64_t>()->default_value("100"))
      ("progress", "auto | bar | lines | none", cxxopts::value<std::string>()->default_value("auto"))
      ("log-every", "plain progress line and metrics.jsonl line every N steps", cxxopts::value<int64_t>()->default_value("50"))
      ("checkpoint-every", "also checkpoint every N steps (0: at the end of each epoch only)",
       cxxopts::value<int64_t>()->default_value("0"))
      ("force", "replace --out when it holds a previous qforge training run (anything else is never replaced)")
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;

  const bool resume = r.count("resume") > 0;
  fs::path out = r.count("out") ? fs::path(r["out"].as<std::string>()) : fs::path();
  if (resume) {
    const fs::path rdir = r["resume"].as<std::string>();
    if (!out.empty() && fs::weakly_canonical(out) != fs::weakly_canonical(rdir))
      throw UsageError("--resume DIR continues training in DIR; give --out the same directory or leave it out");
    if (r.count("force")) throw UsageError("--force and --resume exclude each other");
    out = rdir;
    if (!train::has_checkpoint(out / "checkpoint"))
      throw InputError(fmt::format("--resume {}: no checkpoint in it (missing checkpoint/state.json)", out.string()));
  }
  if (out.empty()) throw UsageError("--out is required (see --help)");

  // On resume, everything comes from the checkpoint's stored configuration (options given again must
  // agree); checkpoints written before it was stored fall back to report.json for model and data.
  nlohmann::json stored = nullptr, app = nullptr, prior = nlohmann::json::object();
  if (resume) {
    const nlohmann::json ts = train::read_checkpoint_trainer_state(out / "checkpoint");
    if (ts.contains("config") && ts["config"].is_object()) {
      stored = per_rank_config(ts["config"], train::world_communicator()->size(), out);
      app = stored.value("app", nlohmann::json::object());
    } else {
      say(fmt::format("note: the checkpoint in {} does not record its configuration; using the options given",
                      out.string()));
    }
    if (fs::exists(out / "report.json")) prior = nn::read_json_file(out / "report.json");
    if (!prior.is_object()) prior = nlohmann::json::object();
  }
  const nlohmann::json& model_src = app.is_object() ? app : prior;
  std::string model_arg = r.count("model") ? r["model"].as<std::string>() : "";
  if (resume) {
    const std::string given = r.count("model") && !nn::is_zoo_model(model_arg) && app.is_object()
                                  ? fs::absolute(model_arg).lexically_normal().string()
                                  : model_arg;
    model_arg = resume_value<std::string>(r, "model", model_src, "model", given, out);
    // A spec-built model resumes from the run's own model.json, never from a path read from a file.
    if (!model_arg.empty() && !nn::is_zoo_model(model_arg)) model_arg = (out / "model.json").string();
  }
  if (model_arg.empty()) throw UsageError("--model is required (see --help)");
  std::string data_arg = r.count("data") ? r["data"].as<std::string>() : std::string("synthetic");
  if (resume) {
    // Stored specs are absolute: compare the given one made absolute.
    const std::string given = r.count("data") ? absolute_data_spec(data_arg) : data_arg;
    data_arg = resume_value<std::string>(r, "data", model_src, "data", given, out);
  }

  train::TrainConfig cfg;
  cfg.epochs = r["epochs"].as<int64_t>();
  cfg.batch_size = r["batch-size"].as<int64_t>();
  cfg.optimizer = optimizer_from(r);
  cfg.schedule = r["schedule"].as<std::string>();
  cfg.clip_grad_norm = r["clip-grad-norm"].as<double>();
  cfg.seed = r["seed"].as<uint64_t>();
  int64_t seq_len = r["seq-len"].as<int64_t>();
  if (seq_len <= 0 || seq_len > 1000000) throw UsageError(fmt::format("--seq-len {}: expected 1-1000000", seq_len));
  if (resume && stored.is_object()) {
    cfg.epochs = resume_value<int64_t>(r, "epochs", stored, "epochs", cfg.epochs, out);
    cfg.batch_size = resume_value<int64_t>(r, "batch-size", stored, "batch_size", cfg.batch_size, out);
    cfg.schedule = resume_value<std::string>(r, "schedule", stored, "schedule", cfg.schedule, out);
    cfg.clip_grad_norm = resume_value<double>(r, "clip-grad-norm", stored, "clip_grad_norm", cfg.clip_grad_norm, out);
    cfg.seed = resume_value<uint64_t>(r, "seed", stored, "seed", cfg.seed, out);
    const nlohmann::json so = stored.value("optimizer", nlohmann::json::object());
    train::OptimizerConfig& o = cfg.optimizer;
    o.type = resume_value<std::string>(r, "optimizer", so, "type", o.type, out);
    // The defaults of --lr/--momentum depend on the optimizer: compare only what was given.
    o.lr = resume_value<double>(r, "lr", so, "lr", o.lr, out);
    o.momentum = resume_value<double>(r, "momentum", so, "momentum", o.momentum, out);
    o.nesterov = resume_value<bool>(r, "nesterov", so, "nesterov", o.nesterov, out);
    o.weight_decay = resume_value<double>(r, "weight-decay", so, "weight_decay", o.weight_decay, out);
  }
  if (resume && app.is_object()) seq_len = resume_value<int64_t>(r, "seq-len", app, "seq_len", seq_len, out);
  cfg.threads = r["threads"].as<int>();
  cfg.comm = train::world_communicator();  // Note [Ranks in the CLI]: data parallel under mpirun
  const bool writer = cfg.comm->rank() == 0;
  cfg.out_dir = out;
  cfg.resume = resume;
  cfg.max_steps = r["max-steps"].as<int64_t>();
  cfg.checkpoint_every = r["checkpoint-every"].as<int64_t>();
  if (cfg.checkpoint_every < 0)
    throw UsageError(fmt::format("--checkpoint-every {}: must be >= 0", cfg.checkpoint_every));
  cfg.progress = train::parse_progress_mode(r["progress"].as<std::string>());
  cfg.log_every = r["log-every"].as<int64_t>();
  if (cfg.log_every <= 0) throw UsageError(fmt::format("--log-every {}: must be positive", cfg.log_every));
  if (cfg.max_steps < 0) throw UsageError(fmt::format("--max-steps {}: must be >= 0", cfg.max_steps));
  if (!std::isfinite(cfg.clip_grad_norm) || cfg.clip_grad_norm < 0)
    throw UsageError(fmt::format("--clip-grad-norm {}: must be finite and >= 0", cfg.clip_grad_norm));
  apply_threads(cfg.threads);  // validates the range (exit 2) before any work
  train::validate(cfg);        // bad numbers -> InputError (exit 2) before any data is read

  data::DataOptions dopt;
  dopt.seed = cfg.seed;
  dopt.seq_len = seq_len;
  data::DataSplits data = data::load_data(data_arg, dopt);
  // The run's vocabulary (stored in its checkpoint and report), never one rebuilt from the file.
  if (resume) apply_model_vocabulary(data, app.is_object() && app.contains("vocab") ? app : prior, out);
  ModelChoice choice = choose_model(model_arg, data);
  check_model_fits_data(choice.name, data);
  if (resume) check_out_dir(out, choice.spec, resume);  // the directory's model.json must be this model

  nn::BuildOptions bopt;
  bopt.seed = cfg.seed;
  std::shared_ptr<nn::Graph> model = nn::build_model(choice.spec, bopt);
  // Paths are stored absolute so that `--resume DIR` works from any working directory.
  const std::string stored_model = app.is_object() ? app.value("model", std::string()) : std::string();
  cfg.app_config = {{"model", resume && !stored_model.empty() ? stored_model
                              : nn::is_zoo_model(model_arg)  ? model_arg
                                                             : fs::absolute(model_arg).lexically_normal().string()},
                    {"data", absolute_data_spec(data.spec)},
                    {"seq_len", seq_len}};
  if (data.vocab) cfg.app_config["vocab"] = vocabulary_to_json(*data.vocab);
  train::Trainer trainer(model, data.train, data.test, cfg);  // checks the settings (schedule, ...) first

  // Note [Publishing outputs] (train/output.hpp): a new run directory is published at the start (an old
  // qforge run replaced as a whole only with --force) and then updated in place under the lock, every
  // file atomically; the checkpoint's state.json is the commit point, weights.safetensors comes last.
  train::OutputOptions oo;
  oo.force = r.count("force") > 0;
  oo.allow_existing_same_kind = resume;
  if (!data_path(data_arg).empty()) oo.inputs.push_back(data_path(data_arg));
  if (!resume && !nn::is_zoo_model(model_arg)) oo.inputs.push_back(model_arg);
  if (writer && resume && train::output_kind(out).empty()) {
    // A run written before outputs were marked: its valid checkpoint identifies it; resuming writes only
    // the run's own file names, so it is adopted (marked) rather than refused.
    (void)train::read_checkpoint_trainer_state(out / "checkpoint");
    say(fmt::format("note: marking {} as a qforge training run (written by an older version)", out.string()));
    train::write_output_marker(out, "model");
  }
  std::optional<train::OutputDir> od;
  if (writer) {  // rank 0 alone writes
    od.emplace(out, "model", oo);
    if (resume && !od->existing())
      throw InputError(fmt::format("--resume {}: not a qforge training run", out.string()));
    nn::write_json_file(od->staging() / "model.json", nn::write_spec(*model));
    od->publish();  // a new run: the directory appears now, with its model.json (a resumed one already exists)
  }

  say(fmt::format("training {} ({} parameters) on {}: {} train / {} test examples, {} epochs, batch {}{}, {} lr {}",
                  choice.name, model->num_parameters(), data.spec, data.train->size(), data.test->size(), cfg.epochs,
                  cfg.batch_size,
                  cfg.comm->size() > 1 ? fmt::format(" per rank x {} ranks", cfg.comm->size()) : std::string(),
                  cfg.optimizer.type, cfg.optimizer.lr));

  train::TrainResult result;
  {
    train::Trainer::StopOnSignal on_signal(trainer);  // SIGINT and SIGTERM: checkpoint, then exit normally
    try {
      result = trainer.fit();
    } catch (const train::DivergedError&) {
      throw;  // exit 1 (main); names the step and the kept checkpoint; raised by every rank together
    }
  }

  nlohmann::json report = {
      {"command", "train"},
      {"model", choice.name},
      {"data", absolute_data_spec(data.spec)},
      {"seed", cfg.seed},
      {"epochs", cfg.epochs},
      {"batch_size", cfg.batch_size},
      {"optimizer", cfg.optimizer.type},
      {"lr", cfg.optimizer.lr},
      {"seq_len", dopt.seq_len},
      {"config", train::config_to_json(cfg)},
      {"parameters", model->num_parameters()},
      {"result", result.to_json()},
  };
  if (data.vocab) {
    report["vocab_size"] = data.train->num_classes();
    report["vocab"] = vocabulary_to_json(*data.vocab);  // text models carry their vocabulary
  }
  nlohmann::json summary = {{"model", choice.name}, {"data", data.spec}, {"out", out.string()},
                            {"epochs_completed", result.epochs_completed}, {"steps", result.steps},
                            {"finished", result.finished}};
  if (!result.history.empty()) {
    const auto& last = result.history.back();
    if (last.test) {
      const nlohmann::json t = last.test->to_json();
      for (auto it = t.begin(); it != t.end(); ++it) summary[it.key()] = it.value();
    }
    double secs = 0;
    for (const auto& e : result.history) secs += e.train_seconds;
    summary["seconds_per_epoch"] = secs / static_cast<double>(result.history.size());
  }
  report["summary"] = summary;
  if (!writer) return 0;
  nn::write_json_file(out / "report.json", report);
  if (!result.finished)
    say(fmt::format("stopped ({}) after {} steps; continue with: qforge train --resume {}", result.stop_reason,
                    result.steps, out.string()));
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
