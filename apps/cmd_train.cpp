// qforge train: build a zoo model (or a spec) and train it; writes a model directory.
#include "apps/cli.hpp"
#include "apps/model_setup.hpp"
#include "nn/model_dir.hpp"
#include "nn/spec.hpp"
#include "train/progress.hpp"
#include "train/trainer.hpp"

#include <csignal>
#include <iostream>

namespace qforge::apps {

namespace fs = std::filesystem;

namespace {

train::Trainer* g_active_trainer = nullptr;

extern "C" void on_sigint(int) {
  if (g_active_trainer != nullptr) g_active_trainer->request_stop();
}

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
  if (!(o.lr > 0)) throw UsageError(fmt::format("--lr {}: must be positive", o.lr));
  return o;
}

}  // namespace

int cmd_train(int argc, char** argv) {
  cxxopts::Options opts("qforge train", "Train a model; writes model.json, weights.safetensors, report.json, "
                                        "metrics.jsonl and checkpoint/ into --out.");
  opts.add_options()
      ("model", "zoo model name (qforge models) or a model spec .json", cxxopts::value<std::string>())
      ("data", "synthetic (default) | mnist:DIR | cifar10:DIR | text:FILE", cxxopts::value<std::string>())
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
      ("json", "print one JSON result object as the last line of stdout");
  cxxopts::ParseResult r;
  if (parse_or_help(opts, argc, argv, r)) return 0;

  const bool resume = r.count("resume") > 0;
  fs::path out = r.count("out") ? fs::path(r["out"].as<std::string>()) : fs::path();
  if (resume) {
    const fs::path rdir = r["resume"].as<std::string>();
    if (!out.empty() && fs::weakly_canonical(out) != fs::weakly_canonical(rdir))
      throw UsageError("--resume DIR continues training in DIR; give --out the same directory or leave it out");
    out = rdir;
    if (!fs::exists(out / "checkpoint")) throw InputError(fmt::format("--resume {}: no checkpoint/ in it", out.string()));
  }
  if (out.empty()) throw UsageError("--out is required (see --help)");

  // On resume, the model and the data come from the directory's report unless given again.
  nlohmann::json prior = nlohmann::json::object();
  if (resume && fs::exists(out / "report.json")) prior = nn::read_json_file(out / "report.json");
  const std::string model_arg = r.count("model") ? r["model"].as<std::string>() : prior.value("model", "");
  if (model_arg.empty()) throw UsageError("--model is required (see --help)");
  const std::string data_arg =
      r.count("data") ? r["data"].as<std::string>() : prior.value("data", std::string("synthetic"));

  train::TrainConfig cfg;
  cfg.epochs = r["epochs"].as<int64_t>();
  cfg.batch_size = r["batch-size"].as<int64_t>();
  cfg.optimizer = optimizer_from(r);
  cfg.schedule = r["schedule"].as<std::string>();
  cfg.clip_grad_norm = r["clip-grad-norm"].as<double>();
  cfg.seed = r["seed"].as<uint64_t>();
  cfg.threads = r["threads"].as<int>();
  cfg.out_dir = out;
  cfg.resume = resume;
  cfg.max_steps = r["max-steps"].as<int64_t>();
  cfg.progress = train::parse_progress_mode(r["progress"].as<std::string>());
  cfg.log_every = r["log-every"].as<int64_t>();
  train::validate(cfg);  // bad numbers -> InputError (exit 2) before any data is read
  apply_threads(cfg.threads);

  data::DataOptions dopt;
  dopt.seed = cfg.seed;
  dopt.seq_len = r["seq-len"].as<int64_t>();
  data::DataSplits data = data::load_data(data_arg, dopt);
  ModelChoice choice = choose_model(model_arg, data);
  check_model_fits_data(choice.name, data);
  check_out_dir(out, choice.spec, resume);

  nn::BuildOptions bopt;
  bopt.seed = cfg.seed;
  std::shared_ptr<nn::Graph> model = nn::build_model(choice.spec, bopt);
  fs::create_directories(out);
  nn::write_json_file(out / "model.json", nn::write_spec(*model));

  say(fmt::format("training {} ({} parameters) on {}: {} train / {} test examples, {} epochs, batch {}, {} lr {}",
                  choice.name, model->num_parameters(), data.spec, data.train->size(), data.test->size(), cfg.epochs,
                  cfg.batch_size, cfg.optimizer.type, cfg.optimizer.lr));

  train::Trainer trainer(model, data.train, data.test, cfg);
  g_active_trainer = &trainer;
  auto prev = std::signal(SIGINT, on_sigint);
  train::TrainResult result;
  try {
    result = trainer.fit();
  } catch (const train::DivergedError& e) {
    std::signal(SIGINT, prev);
    g_active_trainer = nullptr;
    throw Error(e.what());  // names the step and the kept checkpoint
  }
  std::signal(SIGINT, prev);
  g_active_trainer = nullptr;

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
      {"parameters", model->num_parameters()},
      {"result", result.to_json()},
  };
  if (data.vocab) report["vocab_size"] = data.train->num_classes();
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
  nn::write_json_file(out / "report.json", report);
  if (!result.finished)
    say(fmt::format("stopped ({}) after {} steps; continue with: qforge train --resume {}", result.stop_reason,
                    result.steps, out.string()));
  print_result(r, summary);
  return 0;
}

}  // namespace qforge::apps
