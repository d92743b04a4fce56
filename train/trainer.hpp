// The training loop.
//
//   TrainConfig cfg;  cfg.epochs = 3;  cfg.optimizer = {.type = "sgd", .lr = 0.02, .momentum = 0.9};
//   Trainer trainer(model, data.train, data.test, cfg);
//   TrainResult r = trainer.fit();          // epochs, evaluation after each, checkpoints, progress
//
// Each step: lr = base_lr * schedule(step); forward; cross-entropy loss (language models: over every
// position, logits [N, T, V] flattened); backward; optional clipping by global norm; optimizer step.
//
// Note [Divergence]: training stops with DivergedError (the CLI: exit 1), naming the step, when
//   - the loss is non-finite (checked before anything is updated), or
//   - after the update, a parameter holds a non-finite value (named; a NaN behind a ReLU or in an unused
//     path never shows in the loss), or the global parameter norm exceeds divergence_norm_factor times
//     max(1, the norm at the start of fit()) (an exploding run whose loss is still finite).
// Nothing is saved after the fault, so the last checkpoint stays the last good one.
//
// Determinism and resuming: the model's initialisation and its Dropout generators come from the seed the
// caller built it with; the loader shuffles and augments from `seed` (Note [Loader determinism] in
// data/loader.hpp). A checkpoint (checkpoint.hpp) stores the weights, optimizer state, epoch/batch
// position, step, every Dropout generator's state and the running metrics of the current epoch, so a run
// resumed from any checkpoint produces the same bytes as one that never stopped (same thread count).
//
// Output directory (when set): metrics.jsonl (one JSON object per logged step and per epoch; a resumed
// run first drops lines written after its checkpoint), checkpoint/, best.safetensors (weights of the
// best epoch: highest test accuracy, or lowest test loss for language models), weights.safetensors (the
// final weights, when all epochs are done).
//
// Data parallel over N ranks (config.comm): train/data_parallel.hpp, Notes [Data-parallel step],
// [Data-parallel BatchNorm], [Data-parallel resume]. One rank takes exactly the one-process path.
#pragma once

#include "data/dataset.hpp"
#include "data/loader.hpp"
#include "nn/module.hpp"
#include "train/communicator.hpp"
#include "train/metrics.hpp"
#include "train/optimizer.hpp"
#include "train/progress.hpp"
#include "train/schedule.hpp"

#include <nlohmann/json.hpp>

#include <atomic>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace qforge::train {

struct TrainConfig {
  int64_t epochs = 1;
  int64_t batch_size = 64;
  OptimizerConfig optimizer;
  std::string schedule = "constant";  // parse_schedule syntax
  bool no_decay_on_bias_and_norm = true;  // biases/BN parameters (<= 1 dim) get no weight decay
  double clip_grad_norm = 0;              // <= 0: no clipping
  uint64_t seed = 0;                      // shuffling and augmentation
  int threads = 0;                        // OpenMP + OpenBLAS threads; <= 0: leave as is
  bool sequence_view = false;             // feed images as [B, H, W] (models without ImageAsSequence)
  bool augment = true;                    // use the training set's augmentation, if any
  bool drop_last = false;
  bool prefetch = true;
  int64_t eval_batch_size = 256;
  bool evaluate_each_epoch = true;
  std::filesystem::path out_dir;  // empty: write nothing
  int64_t checkpoint_every = 0;   // also checkpoint every N steps (0: only at the end of each epoch)
  bool resume = false;            // continue from out_dir/checkpoint when it exists
  std::filesystem::path resume_from;  // or from this run directory (its checkpoint/ and metrics.jsonl)
  int64_t max_steps = 0;          // stop (with a checkpoint) after this many steps in total; 0: no limit
  ProgressMode progress = ProgressMode::automatic;
  int64_t log_every = 50;  // plain progress lines and metrics.jsonl step lines every N steps
  bool save_final_weights = true;  // out_dir/weights.safetensors when all epochs are done
  double divergence_norm_factor = 1e4;  // Note [Divergence]; <= 0: only non-finite values stop training
  // Stored with every checkpoint beside the trainer's own configuration (e.g. the CLI's model and data
  // specs), so a resumed run can be checked against / continued with the full configuration.
  nlohmann::json app_config = nlohmann::json::object();
  // Trainable tensors that are not model parameters (QuantSim's learnable quantization ranges): one more
  // parameter group "extra" with its own lr (unset: the optimizer's) and no weight decay. Their values
  // are saved in checkpoints with the trainer state, so resuming stays bit-identical.
  NamedTensors extra_parameters;
  std::optional<double> extra_lr;
  // Data parallelism (train/data_parallel.hpp): null or a one-rank communicator trains in this process
  // alone. With N ranks, `batch_size` is the per-rank batch (the global batch is N times it), rank 0
  // alone reads and writes out_dir and shows progress.
  CommunicatorPtr comm;
};

// Throws InputError for non-positive epochs, batch size, learning rate, log interval, etc.
void validate(const TrainConfig& config);

// The configuration a checkpoint records ("config" in its trainer state): epochs, (global) batch size,
// ranks, optimizer,
// schedule, clipping, seed, ... and `app_config` under "app".
nlohmann::json config_to_json(const TrainConfig& config);

// Training diverged (Note [Divergence]).
class DivergedError : public Error {
public:
  DivergedError(const std::string& msg, int64_t step) : Error(msg), step_(step) {}
  int64_t step() const { return step_; }

private:
  int64_t step_;
};

struct EvalResult {
  Metrics metrics;
  bool language_model = false;
  double seconds = 0;
  Tensor logits;  // [N, C] (or [N, T, V]) when requested
  // {"loss", "accuracy", "samples", (+ "perplexity", "bits_per_char" for language models), "seconds"}
  nlohmann::json to_json() const;
};

struct EvalOptions {
  int64_t batch_size = 256;
  bool sequence_view = false;
  bool keep_logits = false;
  bool prefetch = true;
};

// Evaluates `model` (switched to eval mode, no gradients) on every example of `dataset`, in order.
EvalResult evaluate(nn::Module& model, std::shared_ptr<const data::Dataset> dataset, const EvalOptions& options = {});

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  int64_t step = 0;   // global step at the end of the epoch
  double lr = 0;      // group 0's lr at the last step
  Metrics train;
  std::optional<EvalResult> test;
  double train_seconds = 0;
  double comm_seconds = 0;  // data parallel: this rank's time in collectives during the epoch's steps
  int64_t ranks = 1;
  bool best = false;
  nlohmann::json to_json() const;
};

struct TrainResult {
  std::vector<EpochRecord> history;  // epochs completed by this fit() call
  int64_t epochs_completed = 0;      // in total, including those before a resume
  int64_t steps = 0;
  bool finished = false;             // all epochs done
  std::string stop_reason;           // "", "max_steps", "stop requested"
  int64_t best_epoch = 0;            // 1-based; 0: none
  double best_metric = 0;
  bool resumed = false;
  nlohmann::json to_json() const;
};

struct StepInfo {
  int64_t epoch = 0;    // 0-based
  int64_t batch = 0;    // 1-based batches done in this epoch
  int64_t batches = 0;  // per epoch
  int64_t step = 0;     // global steps done
  double loss = 0;
  double lr = 0;
  int64_t batch_size = 0;
};

class Trainer;

class Callback {
public:
  virtual ~Callback() = default;
  virtual void on_train_begin(Trainer&) {}
  virtual void on_step_end(Trainer&, const StepInfo&) {}
  virtual void on_epoch_end(Trainer&, const EpochRecord&) {}
  virtual void on_train_end(Trainer&, const TrainResult&) {}
};

class Trainer {
public:
  Trainer(nn::ModulePtr model, std::shared_ptr<const data::Dataset> train, std::shared_ptr<const data::Dataset> test,
          TrainConfig config);
  ~Trainer();

  void add_callback(std::shared_ptr<Callback> cb) { callbacks_.push_back(std::move(cb)); }
  TrainResult fit();
  // Asks fit() to stop after the current step (with a checkpoint); safe from a signal handler.
  void request_stop() { stop_requested_.store(true); }

  // While alive, SIGINT/SIGTERM call request_stop() on this trainer (training stops after the current
  // step with a checkpoint); a second signal gets the default action. For command-line tools.
  class StopOnSignal {
  public:
    explicit StopOnSignal(Trainer& t);
    ~StopOnSignal();
    StopOnSignal(const StopOnSignal&) = delete;
    StopOnSignal& operator=(const StopOnSignal&) = delete;
  };

  nn::Module& model() { return *model_; }
  Optimizer& optimizer() { return *optimizer_; }
  const TrainConfig& config() const { return config_; }
  int64_t step() const { return step_; }
  int64_t steps_per_epoch() const;
  Communicator& communicator() { return *comm_; }
  int64_t global_batch_size() const { return config_.batch_size * comm_->size(); }
  std::filesystem::path checkpoint_dir() const { return config_.out_dir / "checkpoint"; }

private:
  nlohmann::json trainer_state() const;
  nlohmann::json extra_parameters_json() const;
  void restore(const nlohmann::json& j);
  void save_ckpt();
  void log_jsonl(const nlohmann::json& j);
  void truncate_log_after(int64_t step, const std::filesystem::path& source);
  void check_parameters(double initial_norm, const std::string& where);
  double parameter_norm() const;

  nn::ModulePtr model_;
  std::shared_ptr<const data::Dataset> train_, test_;
  TrainConfig config_;
  std::unique_ptr<Optimizer> optimizer_;
  std::unique_ptr<data::DataLoader> loader_;
  SchedulePtr schedule_;
  std::vector<std::shared_ptr<Callback>> callbacks_;
  std::atomic<bool> stop_requested_{false};
  CommunicatorPtr comm_;
  bool writer_ = true;             // rank 0: writes out_dir, shows progress
  std::vector<float> grad_buffer_;  // flat gradient buffer (Note [Data-parallel step])
  void sync_from_rank0(bool& resumed);
  bool any_rank(bool flag);

  // position and running state (all checkpointed)
  int64_t epoch_ = 0, batch_ = 0, step_ = 0;
  Metrics running_;
  double epoch_seconds_ = 0;
  int64_t best_epoch_ = 0;
  double best_metric_ = 0;
  int64_t last_ckpt_step_ = -1;
};

}  // namespace qforge::train
