#include "train/trainer.hpp"

#include "engine/autograd.hpp"
#include "engine/json_util.hpp"
#include "engine/ops/ops.hpp"
#include "nn/layers.hpp"
#include "nn/safetensors.hpp"
#include "train/checkpoint.hpp"
#include "train/data_parallel.hpp"
#include "train/threads.hpp"

#include <chrono>
#include <csignal>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>

namespace qforge::train {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

struct LossOut {
  Tensor loss;
  int64_t correct = 0, count = 0;
};

// Cross-entropy over the last dimension of `out` against integer targets; [N, T, V] is flattened.
LossOut classification_loss(const Tensor& out, const Tensor& targets, bool need_correct = true) {
  Tensor logits = out, t = targets;
  if (logits.dim() > 2) {
    const int64_t v = logits.size(-1);
    logits = logits.reshape({logits.numel() / v, v});
    t = t.reshape({t.numel()});
  }
  QFORGE_CHECK(logits.dim() == 2 && t.dim() == 1 && t.size(0) == logits.size(0),
               "trainer: model output {} does not match targets {}", shape_str(out.shape()), shape_str(targets.shape()));
  LossOut r;
  r.loss = ops::cross_entropy(logits, t);
  r.count = t.size(0);
  if (need_correct) r.correct = count_correct(logits, t);
  return r;
}

uint64_t mix_seed(uint64_t seed, uint64_t salt) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + salt;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

int64_t count_correct(const Tensor& logits_in, const Tensor& targets_in) {
  NoGradGuard no_grad;
  const Tensor logits = logits_in.detach().to(DType::f32).contiguous();
  const Tensor t = targets_in.to(DType::i32).contiguous();
  const int64_t c = logits.size(-1), n = logits.numel() / c;
  QFORGE_CHECK(t.numel() == n, "count_correct: {} targets for {} rows of logits", t.numel(), n);
  const float* p = logits.data<float>();
  const int32_t* y = t.data<int32_t>();
  int64_t correct = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = p + i * c;
    int64_t best = 0;
    for (int64_t k = 1; k < c; ++k)
      if (row[k] > row[best]) best = k;
    correct += best == y[i];
  }
  return correct;
}

void validate(const TrainConfig& c) {
  if (c.epochs <= 0) throw InputError(fmt::format("epochs must be positive, got {}", c.epochs));
  if (c.epochs > 1000000) throw InputError(fmt::format("epochs {} is unreasonably large (at most 1000000)", c.epochs));
  if (c.log_every <= 0) throw InputError(fmt::format("log interval must be positive, got {}", c.log_every));
  if (c.threads < 0 || c.threads > kMaxThreads)
    throw InputError(fmt::format("thread count must be 0 (all cores) or 1-{}, got {}", kMaxThreads, c.threads));
  if (!std::isfinite(c.clip_grad_norm) || c.clip_grad_norm < 0)
    throw InputError(fmt::format("gradient clipping norm must be finite and >= 0, got {}", c.clip_grad_norm));
  const OptimizerConfig& o = c.optimizer;
  if (o.type != "sgd" && o.type != "adam" && o.type != "adamw")
    throw InputError(fmt::format("optimizer '{}': expected sgd, adam or adamw", o.type));
  if (!std::isfinite(o.weight_decay) || o.weight_decay < 0)
    throw InputError(fmt::format("weight decay must be finite and >= 0, got {}", o.weight_decay));
  if (!std::isfinite(o.momentum) || o.momentum < 0 || o.momentum >= 1)
    throw InputError(fmt::format("momentum must be in [0, 1), got {}", o.momentum));
  if (c.extra_lr && (!std::isfinite(*c.extra_lr) || *c.extra_lr <= 0))
    throw InputError(fmt::format("range learning rate must be positive, got {}", *c.extra_lr));
  if (!std::isfinite(c.divergence_norm_factor))
    throw InputError("divergence norm factor must be finite");
  if (c.batch_size <= 0) throw InputError(fmt::format("batch size must be positive, got {}", c.batch_size));
  if (c.eval_batch_size <= 0) throw InputError(fmt::format("eval batch size must be positive, got {}", c.eval_batch_size));
  if (!(c.optimizer.lr > 0) || !std::isfinite(c.optimizer.lr))
    throw InputError(fmt::format("learning rate must be positive, got {}", c.optimizer.lr));
  if (c.checkpoint_every < 0 || c.max_steps < 0)
    throw InputError("checkpoint interval and max steps must be >= 0");
  if ((c.resume || !c.resume_from.empty()) && c.out_dir.empty())
    throw InputError("resuming needs an output directory");
}

nlohmann::json config_to_json(const TrainConfig& c) {
  const OptimizerConfig& o = c.optimizer;
  const int ranks = c.comm ? c.comm->size() : 1;
  return {{"epochs", c.epochs},
          {"batch_size", c.batch_size * ranks},  // global (Note [Data-parallel resume])
          {"ranks", ranks},
          {"optimizer",
           {{"type", o.type}, {"lr", o.lr}, {"weight_decay", o.weight_decay}, {"momentum", o.momentum},
            {"dampening", o.dampening}, {"nesterov", o.nesterov}, {"beta1", o.beta1}, {"beta2", o.beta2},
            {"eps", o.eps}, {"amsgrad", o.amsgrad}}},
          {"schedule", c.schedule},
          {"no_decay_on_bias_and_norm", c.no_decay_on_bias_and_norm},
          {"clip_grad_norm", c.clip_grad_norm},
          {"seed", c.seed},
          {"sequence_view", c.sequence_view},
          {"augment", c.augment},
          {"drop_last", c.drop_last},
          {"eval_batch_size", c.eval_batch_size},
          {"checkpoint_every", c.checkpoint_every},
          {"log_every", c.log_every},
          {"extra_lr", c.extra_lr ? nlohmann::json(*c.extra_lr) : nlohmann::json(nullptr)},
          {"app", c.app_config}};
}

// ---- evaluation ------------------------------------------------------------------------------------

nlohmann::json EvalResult::to_json() const {
  nlohmann::json j = {{"loss", metrics.loss()}, {"accuracy", metrics.accuracy()}, {"samples", metrics.examples},
                      {"seconds", seconds}};
  if (language_model) {
    j["perplexity"] = metrics.perplexity();
    j["bits_per_char"] = metrics.bits_per_char();
    j["predictions"] = metrics.count;
  }
  return j;
}

EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const EvalOptions& opt) {
  const auto t0 = Clock::now();
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  data::DataLoader loader(dataset, {.batch_size = opt.batch_size,
                                    .shuffle = false,
                                    .drop_last = false,
                                    .augment = false,
                                    .as_sequence = opt.sequence_view,
                                    .prefetch = opt.prefetch});
  EvalResult r;
  r.language_model = dataset->kind() == data::TaskKind::language_model;
  std::vector<Tensor> outs;
  loader.start_epoch(0);
  while (auto b = loader.next()) {
    Tensor out = model(b->inputs);
    LossOut l = classification_loss(out, b->targets);
    r.metrics.add(l.loss.item(), l.correct, l.count, b->size());
    if (opt.keep_logits) outs.push_back(out.detach());
  }
  if (opt.keep_logits && !outs.empty()) r.logits = ops::concat(outs, 0);
  model.train(was_training);
  r.seconds = seconds_since(t0);
  return r;
}

nlohmann::json EpochRecord::to_json() const {
  nlohmann::json j = {{"event", "epoch"},
                      {"epoch", epoch},
                      {"step", step},
                      {"lr", lr},
                      {"train_loss", train.loss()},
                      {"train_accuracy", train.accuracy()},
                      {"train_samples", train.examples},
                      {"train_seconds", train_seconds},
                      {"samples_per_second", train_seconds > 0 ? static_cast<double>(train.examples) / train_seconds : 0.0},
                      {"best", best}};
  if (ranks > 1) {
    j["ranks"] = ranks;
    j["comm_seconds"] = comm_seconds;
  }
  if (test) {
    j["test_loss"] = test->metrics.loss();
    j["test_accuracy"] = test->metrics.accuracy();
    j["test_seconds"] = test->seconds;
    if (test->language_model) {
      j["test_perplexity"] = test->metrics.perplexity();
      j["test_bits_per_char"] = test->metrics.bits_per_char();
    }
  }
  return j;
}

nlohmann::json TrainResult::to_json() const {
  nlohmann::json h = nlohmann::json::array();
  double secs = 0;
  for (const auto& e : history) {
    h.push_back(e.to_json());
    secs += e.train_seconds;
  }
  nlohmann::json j = {{"epochs_completed", epochs_completed},
                      {"steps", steps},
                      {"finished", finished},
                      {"resumed", resumed},
                      {"best_epoch", best_epoch},
                      {"best_metric", best_metric},
                      {"seconds_per_epoch", history.empty() ? 0.0 : secs / static_cast<double>(history.size())},
                      {"history", h}};
  if (!stop_reason.empty()) j["stop_reason"] = stop_reason;
  if (!history.empty() && history.back().test) j["final"] = history.back().test->to_json();
  return j;
}

// ---- trainer ---------------------------------------------------------------------------------------

namespace {
std::atomic<Trainer*> g_signal_trainer{nullptr};
void (*g_prev_int)(int) = SIG_DFL;
void (*g_prev_term)(int) = SIG_DFL;

extern "C" void on_stop_signal(int sig) {
  if (Trainer* t = g_signal_trainer.load()) t->request_stop();
  std::signal(sig, SIG_DFL);  // a second signal ends the process
}
}  // namespace

Trainer::StopOnSignal::StopOnSignal(Trainer& t) {
  g_signal_trainer.store(&t);
  g_prev_int = std::signal(SIGINT, on_stop_signal);
  g_prev_term = std::signal(SIGTERM, on_stop_signal);
}

Trainer::StopOnSignal::~StopOnSignal() {
  std::signal(SIGINT, g_prev_int == SIG_ERR ? SIG_DFL : g_prev_int);
  std::signal(SIGTERM, g_prev_term == SIG_ERR ? SIG_DFL : g_prev_term);
  g_signal_trainer.store(nullptr);
}

Trainer::Trainer(nn::ModulePtr model, std::shared_ptr<const data::Dataset> train,
                 std::shared_ptr<const data::Dataset> test, TrainConfig config)
    : model_(std::move(model)), train_(std::move(train)), test_(std::move(test)), config_(std::move(config)) {
  QFORGE_CHECK(model_ != nullptr && train_ != nullptr, "Trainer: model and training data are required");
  validate(config_);
  comm_ = config_.comm ? config_.comm : local_communicator();
  writer_ = comm_->rank() == 0;
  const nn::NamedTensors params = model_->named_parameters();
  NamedTensors named(params.begin(), params.end());
  std::vector<ParamGroup> groups = config_.no_decay_on_bias_and_norm ? split_weight_decay(named) : single_group(named);
  if (!config_.extra_parameters.empty()) {
    ParamGroup extra;
    extra.name = "extra";
    for (const auto& [n, t] : config_.extra_parameters) {
      extra.params.push_back(t);
      extra.param_names.push_back(n);
    }
    extra.lr = config_.extra_lr;
    extra.weight_decay = 0.0;
    groups.push_back(std::move(extra));
  }
  optimizer_ = make_optimizer(std::move(groups), config_.optimizer);
  loader_ = std::make_unique<data::DataLoader>(train_, data::LoaderOptions{.batch_size = global_batch_size(),
                                                                           .shuffle = true,
                                                                           .drop_last = config_.drop_last,
                                                                           .augment = config_.augment,
                                                                           .as_sequence = config_.sequence_view,
                                                                           .prefetch = config_.prefetch,
                                                                           .seed = mix_seed(config_.seed, 0x10AD)});
  schedule_ = parse_schedule(config_.schedule, loader_->num_batches(), config_.epochs);
}

Trainer::~Trainer() = default;

int64_t Trainer::steps_per_epoch() const { return loader_->num_batches(); }

nlohmann::json Trainer::trainer_state() const {
  nlohmann::json dropout = nlohmann::json::object();
  for (auto& [name, m] : model_->named_modules())
    if (auto* d = dynamic_cast<nn::Dropout*>(m.get())) dropout[name] = generator_to_json(d->generator());
  return {{"epoch", epoch_},
          {"batch", batch_},
          {"step", step_},
          {"epochs", config_.epochs},
          {"batch_size", global_batch_size()},  // global (Note [Data-parallel resume])
          {"ranks", comm_->size()},
          {"seed", config_.seed},
          {"running", running_.to_json()},
          {"epoch_seconds", epoch_seconds_},
          {"best_epoch", best_epoch_},
          {"best_metric", best_metric_},
          {"dropout_generators", dropout},
          {"extra_parameters", extra_parameters_json()},
          {"config", config_to_json(config_)}};
}

// Extra parameters are small (quantizer ranges): stored as JSON numbers, exact for f32 values.
nlohmann::json Trainer::extra_parameters_json() const {
  nlohmann::json j = nlohmann::json::object();
  for (const auto& [n, t] : config_.extra_parameters) j[n] = t.to_vector<double>();
  return j;
}

void Trainer::restore(const nlohmann::json& j) {
  try {
    // Typed, range-checked reads: a float or out-of-range value is an InputError naming the field, never a
    // float-to-integer conversion (undefined behaviour for values past int64).
    const JsonView v(j, (checkpoint_dir() / "state.json").string() + " trainer");
    const int64_t batch_size = v["batch_size"].integer(1);
    const uint64_t seed = v["seed"].uinteger();
    if (batch_size != global_batch_size() || seed != config_.seed)
      throw InputError(fmt::format(
          "checkpoint in {} was written with batch size {} and seed {}; this run uses {} and {}{}",
          checkpoint_dir().string(), batch_size, seed, global_batch_size(), config_.seed,
          comm_->size() > 1 ? fmt::format(" ({} ranks x per-rank batch {})", comm_->size(), config_.batch_size) : ""));
    epoch_ = v["epoch"].integer(0);
    batch_ = v["batch"].integer(0);
    step_ = v["step"].integer(0);
    running_ = Metrics::from_json(j.at("running"));
    epoch_seconds_ = v["epoch_seconds"].number();
    best_epoch_ = v["best_epoch"].integer(0);
    best_metric_ = j.at("best_metric").get<double>();
    const auto& dropout = j.at("dropout_generators");
    for (auto& [name, m] : model_->named_modules())
      if (auto* d = dynamic_cast<nn::Dropout*>(m.get())) {
        if (!dropout.contains(name))
          throw InputError(fmt::format("checkpoint in {} has no generator state for dropout '{}'",
                                       checkpoint_dir().string(), name));
        generator_from_json(d->generator(), dropout.at(name));
      }
    const auto extra = j.value("extra_parameters", nlohmann::json::object());
    for (auto& [n, t] : config_.extra_parameters) {
      if (!extra.contains(n))
        throw InputError(fmt::format("checkpoint in {} has no value for '{}'", checkpoint_dir().string(), n));
      const auto v = extra.at(n).get<std::vector<double>>();
      if (static_cast<int64_t>(v.size()) != t.numel())
        throw InputError(fmt::format("checkpoint in {}: '{}' has {} values, expected {}", checkpoint_dir().string(), n,
                                     v.size(), t.numel()));
      NoGradGuard no_grad;
      t.copy_(Tensor::from_vector(v, t.shape()));
    }
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("checkpoint in {}: malformed trainer state ({})", checkpoint_dir().string(), e.what()));
  }
  // The position must describe this model and data: checked against the loader and configuration.
  const int64_t nb = loader_->num_batches();
  const std::string where = checkpoint_dir().string();
  if (batch_ < 0 || batch_ > nb)
    throw InputError(fmt::format("checkpoint in {} is at batch {} of an epoch that has {}", where, batch_, nb));
  if (epoch_ < 0 || epoch_ > config_.epochs || (epoch_ == config_.epochs && batch_ != 0))
    throw InputError(fmt::format("checkpoint in {} is at epoch {} (batch {}) of a run of {} epochs", where, epoch_ + 1,
                                 batch_, config_.epochs));
  if (step_ != epoch_ * nb + batch_)
    throw InputError(fmt::format("checkpoint in {}: step {} does not match epoch {} batch {} ({} batches per epoch)",
                                 where, step_, epoch_ + 1, batch_, nb));
  if (best_epoch_ < 0 || best_epoch_ > epoch_ || !std::isfinite(best_metric_) || !std::isfinite(epoch_seconds_))
    throw InputError(fmt::format("checkpoint in {}: inconsistent best epoch {} / metric {}", where, best_epoch_,
                                 best_metric_));
}

double Trainer::parameter_norm() const {
  double sq = 0;
  for (const Tensor& p : optimizer_->all_params()) {
    const Tensor c = p.detach().contiguous();
    if (c.dtype() == DType::f32) {
      const float* d = c.data<float>();
      for (int64_t i = 0, n = c.numel(); i < n; ++i) sq += static_cast<double>(d[i]) * d[i];
    } else {
      for (double v : c.to_vector<double>()) sq += v * v;
    }
  }
  return std::sqrt(sq);
}

// Note [Divergence]: non-finite parameters (named) or an exploding global norm throw DivergedError.
void Trainer::check_parameters(double initial_norm, const std::string& where) {
  const double norm = parameter_norm();
  const double limit = config_.divergence_norm_factor * std::max(1.0, initial_norm);
  if (std::isfinite(norm) && (config_.divergence_norm_factor <= 0 || norm <= limit)) return;
  std::string what;
  if (!std::isfinite(norm)) {
    NamedTensors named;
    for (const auto& [n, t] : model_->named_parameters()) named.push_back({n, t});
    for (const auto& [n, t] : config_.extra_parameters) named.push_back({n, t});
    for (const auto& [n, t] : named) {
      bool bad = false;
      for (double v : t.detach().to_vector<double>()) bad |= !std::isfinite(v);
      if (bad) {
        what = fmt::format("parameter '{}' holds non-finite values", n);
        break;
      }
    }
    if (what.empty()) what = "the parameters' norm is not finite";
  } else {
    what = fmt::format("the parameters' norm exploded to {:.3g} (more than {:g} x the initial {:.3g})", norm,
                       config_.divergence_norm_factor, initial_norm);
  }
  const std::string msg = fmt::format(
      "training diverged: {} after the update of {}{}", what, where,
      last_ckpt_step_ >= 0 ? fmt::format("; the last good checkpoint (step {}) is kept in {}", last_ckpt_step_,
                                         checkpoint_dir().string())
                           : "");
  log_jsonl({{"event", "diverged"}, {"step", step_ + 1}, {"epoch", epoch_ + 1}, {"reason", what}});
  throw DivergedError(msg, step_ + 1);
}

void Trainer::save_ckpt() {
  if (config_.out_dir.empty() || last_ckpt_step_ == step_) return;
  if (writer_) save_checkpoint(checkpoint_dir(), step_, *model_, *optimizer_, trainer_state());
  last_ckpt_step_ = step_;
}

void Trainer::log_jsonl(const nlohmann::json& j) {
  if (config_.out_dir.empty() || !writer_) return;
  std::ofstream f(config_.out_dir / "metrics.jsonl", std::ios::app);
  f << j.dump() << '\n';
}

void Trainer::truncate_log_after(int64_t step, const fs::path& source) {
  const fs::path p = config_.out_dir / "metrics.jsonl";
  if (!fs::exists(source)) {
    atomic_write_text(p, "");
    return;
  }
  std::ifstream in(source);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      const auto j = nlohmann::json::parse(line);
      if (j.value("step", int64_t{0}) > step) continue;
    } catch (...) {
      continue;  // a torn last line from a crash
    }
    kept += line + '\n';
  }
  atomic_write_text(p, kept);
}

TrainResult Trainer::fit() {
  set_num_threads(config_.threads);
  TrainResult result;
  if (!config_.out_dir.empty() && writer_) {
    fs::create_directories(config_.out_dir);
    const fs::path from = config_.resume_from.empty() ? config_.out_dir : config_.resume_from;
    if (!config_.resume_from.empty() && !has_checkpoint(from / "checkpoint"))
      throw InputError(fmt::format("cannot resume: {} holds no checkpoint ({} missing)", from.string(),
                                   (from / "checkpoint" / "state.json").string()));
    if ((config_.resume || !config_.resume_from.empty()) && has_checkpoint(from / "checkpoint")) {
      restore(load_checkpoint(from / "checkpoint", *model_, *optimizer_));
      truncate_log_after(step_, from / "metrics.jsonl");
      // A checkpoint in another directory is re-saved here so this run can be resumed in turn.
      if (fs::weakly_canonical(from) != fs::weakly_canonical(config_.out_dir)) save_ckpt();
      last_ckpt_step_ = step_;
      result.resumed = true;
    } else {
      atomic_write_text(config_.out_dir / "metrics.jsonl", "");
    }
  }
  if (comm_->size() > 1) sync_from_rank0(result.resumed);
  for (auto& cb : callbacks_) cb->on_train_begin(*this);
  Progress progress(writer_ ? config_.progress : ProgressMode::none, config_.log_every);
  if (result.resumed)
    progress.message(fmt::format("resuming at epoch {}, step {}", epoch_ + 1, step_));
  const int64_t nb = loader_->num_batches();
  const bool lm = train_->kind() == data::TaskKind::language_model;
  bool stopped = false;
  const double initial_norm = parameter_norm();
  if (!std::isfinite(initial_norm)) check_parameters(0.0, "no step (the starting parameters)");

  while (epoch_ < config_.epochs && !stopped) {
    model_->train();
    loader_->start_epoch(epoch_, batch_);
    progress.begin_epoch(epoch_, config_.epochs, nb, batch_);
    auto t0 = Clock::now();
    const double seconds_before = epoch_seconds_;
    const double comm_before = comm_->comm_seconds();
    int64_t samples_here = 0;
    while (batch_ < nb) {
      std::optional<data::Batch> b = loader_->next();
      QFORGE_ASSERT(b.has_value());
      const double factor = schedule_->factor(step_);
      optimizer_->set_lr_factor(factor);
      // Note [Data-parallel step]: with one rank, `local` is the batch and the step is the one-process step.
      const int ranks = comm_->size();
      const data::Batch local = shard_batch(*b, comm_->rank(), ranks);
      LossOut l;
      double loss = 0;
      if (local.size() > 0) {
        Tensor out = (*model_)(local.inputs);
        l = classification_loss(out, local.targets);
        loss = l.loss.item();
      }
      int64_t correct = l.correct, count = l.count;
      std::string on_rank;
      if (ranks > 1) {
        // [loss*n, correct, n, non-finite flag per rank, stop requested]: one small deterministic allreduce.
        std::vector<double> st(static_cast<size_t>(4 + ranks), 0.0);
        const bool finite = std::isfinite(loss);
        st[0] = finite ? loss * static_cast<double>(l.count) : 0.0;
        st[1] = static_cast<double>(l.correct);
        st[2] = static_cast<double>(l.count);
        st[static_cast<size_t>(3 + comm_->rank())] = finite ? 0.0 : 1.0;
        st[static_cast<size_t>(3 + ranks)] = stop_requested_.load() ? 1.0 : 0.0;
        comm_->allreduce_sum(st.data(), st.size());
        correct = static_cast<int64_t>(st[1]);
        count = static_cast<int64_t>(st[2]);
        const double local_loss = loss;
        loss = count > 0 ? st[0] / static_cast<double>(count) : 0.0;
        for (int r = 0; r < ranks; ++r)
          if (st[static_cast<size_t>(3 + r)] > 0) {
            on_rank = fmt::format(" on rank {} of {}", r, ranks);
            loss = r == comm_->rank() ? local_loss : std::numeric_limits<double>::quiet_NaN();
            break;
          }
        if (st[static_cast<size_t>(3 + ranks)] > 0) stop_requested_.store(true);  // every rank stops together
      }
      if (!std::isfinite(loss)) {
        const std::string msg = fmt::format(
            "training diverged: the loss is {}{} at step {} (epoch {}, batch {}){}", loss, on_rank, step_ + 1, epoch_ + 1, batch_ + 1,
            last_ckpt_step_ >= 0 ? fmt::format("; the last good checkpoint (step {}) is kept in {}", last_ckpt_step_,
                                               checkpoint_dir().string())
                                 : "");
        progress.message(msg);
        log_jsonl({{"event", "diverged"}, {"step", step_ + 1}, {"epoch", epoch_ + 1}, {"loss", std::to_string(loss)}});
        throw DivergedError(msg, step_ + 1);
      }
      optimizer_->zero_grad();
      if (local.size() > 0) l.loss.backward();
      if (ranks > 1)
        allreduce_gradients(*comm_, optimizer_->all_params(),
                            static_cast<double>(l.count) / static_cast<double>(std::max<int64_t>(count, 1)), grad_buffer_);
      if (config_.clip_grad_norm > 0) clip_grad_norm(optimizer_->all_params(), config_.clip_grad_norm);
      optimizer_->step();
      check_parameters(initial_norm, fmt::format("step {} (epoch {}, batch {})", step_ + 1, epoch_ + 1, batch_ + 1));
      ++step_;
      ++batch_;
      running_.add(loss, correct, count, b->size());
      samples_here += b->size();
      epoch_seconds_ = seconds_before + seconds_since(t0);
      const StepInfo info{epoch_, batch_, nb, step_, loss, optimizer_->lr(0), b->size()};
      for (auto& cb : callbacks_) cb->on_step_end(*this, info);
      if (step_ % config_.log_every == 0)
        log_jsonl({{"event", "step"}, {"epoch", epoch_ + 1}, {"step", step_}, {"batch", batch_}, {"loss", loss},
                   {"running_loss", running_.loss()}, {"running_accuracy", running_.accuracy()},
                   {"lr", optimizer_->lr(0)}});
      progress.update(batch_, running_.loss(), running_.accuracy(), samples_here);
      if (config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0 && batch_ < nb) save_ckpt();
      if (stop_requested_.load()) {
        stopped = true;
        result.stop_reason = "stop requested";
      } else if (config_.max_steps > 0 && step_ >= config_.max_steps) {
        stopped = true;
        result.stop_reason = "max_steps";
      }
      if (stopped && batch_ < nb) break;
    }
    if (batch_ < nb) {  // interrupted mid-epoch
      progress.end_epoch(fmt::format("stopped at step {} ({}){}", step_, result.stop_reason,
                                     config_.out_dir.empty() ? "" : "; checkpoint saved in " + checkpoint_dir().string()));
      save_ckpt();
      break;
    }
    // End of epoch: evaluate, track the best model, log, checkpoint.
    EpochRecord rec;
    rec.epoch = epoch_ + 1;
    rec.step = step_;
    rec.lr = optimizer_->lr(0);
    rec.train = running_;
    rec.train_seconds = epoch_seconds_;
    rec.comm_seconds = comm_->comm_seconds() - comm_before;  // of the steps run by this fit() call
    rec.ranks = comm_->size();
    average_buffers(*comm_, *model_);  // Note [Data-parallel BatchNorm]
    if (test_ && config_.evaluate_each_epoch && writer_) {  // rank 0 evaluates (and alone writes)
      rec.test = evaluate(*model_, test_, {.batch_size = config_.eval_batch_size, .sequence_view = config_.sequence_view,
                                           .prefetch = config_.prefetch});
      const double metric = lm ? rec.test->metrics.loss() : rec.test->metrics.accuracy();
      if (best_epoch_ == 0 || (lm ? metric < best_metric_ : metric > best_metric_)) {
        best_epoch_ = rec.epoch;
        best_metric_ = metric;
        rec.best = true;
        if (!config_.out_dir.empty() && writer_) nn::save_weights(*model_, config_.out_dir / "best.safetensors");
      }
    }
    std::string summary = fmt::format("epoch {}/{}: train loss {:.4f} acc {:.2f}% ({:.1f}s)", rec.epoch, config_.epochs,
                                      rec.train.loss(), rec.train.accuracy(), rec.train_seconds);
    if (rec.test) {
      summary += fmt::format(" | {} loss {:.4f} acc {:.2f}%", lm ? "validation" : "test", rec.test->metrics.loss(),
                             rec.test->metrics.accuracy());
      if (lm) summary += fmt::format(" ppl {:.3f} bpc {:.3f}", rec.test->metrics.perplexity(), rec.test->metrics.bits_per_char());
      if (rec.best) summary += " *";
    }
    progress.end_epoch(summary);
    log_jsonl(rec.to_json());
    result.history.push_back(rec);
    ++epoch_;
    batch_ = 0;
    running_ = Metrics{};
    epoch_seconds_ = 0;
    save_ckpt();
    for (auto& cb : callbacks_) cb->on_epoch_end(*this, rec);
    if (any_rank(stop_requested_.load()) && !stopped) {
      stopped = true;
      result.stop_reason = "stop requested";
    }
  }
  result.epochs_completed = epoch_;
  result.steps = step_;
  result.finished = epoch_ >= config_.epochs;
  result.best_epoch = best_epoch_;
  result.best_metric = best_metric_;
  if (result.finished && !config_.out_dir.empty() && config_.save_final_weights && writer_)
    nn::save_weights(*model_, config_.out_dir / "weights.safetensors");
  for (auto& cb : callbacks_) cb->on_train_end(*this, result);
  return result;
}

// Note [Data-parallel resume]: rank 0's position, metrics, extra parameters, weights, buffers and
// optimizer state, on every rank.
void Trainer::sync_from_rank0(bool& resumed) {
  uint8_t flag = resumed ? 1 : 0;
  comm_->broadcast(&flag, 1);
  resumed = flag != 0;
  std::string state = writer_ ? trainer_state().dump() : std::string();
  broadcast_string(*comm_, state);
  if (!writer_) {
    if (resumed) restore(nlohmann::json::parse(state));
    last_ckpt_step_ = resumed ? step_ : -1;
  }
  broadcast_model_and_optimizer(*comm_, *model_, *optimizer_);
  std::vector<Tensor> extra;
  for (const auto& [n, t] : config_.extra_parameters) extra.push_back(t);
  broadcast_tensors(*comm_, extra);
}

bool Trainer::any_rank(bool flag) {
  if (comm_->size() == 1) return flag;
  double v = flag ? 1.0 : 0.0;
  comm_->allreduce_sum(&v, 1);
  return v > 0;
}

}  // namespace qforge::train
