// DataLoader: batches of a Dataset, shuffled per epoch from a seed, optionally built ahead of time on a
// background worker thread.
//
// Note [Loader determinism]
// Batch b of epoch e is a pure function of (dataset, options, seed, e, b): the epoch's permutation comes
// from Generator(mix(seed, e)) and the augmentation randomness of batch b from Generator(mix(seed, e, b)).
// Nothing depends on timing or on how far the worker has run ahead, so prefetching gives the same bytes as
// synchronous loading, and resuming mid-epoch (start_epoch(e, b)) continues exactly where an
// uninterrupted run would be.
#pragma once

#include "data/dataset.hpp"

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <optional>
#include <thread>

namespace qforge::data {

struct LoaderOptions {
  int64_t batch_size = 64;
  bool shuffle = true;
  bool drop_last = false;
  bool augment = true;       // use the dataset's augmentation (if it has any)
  bool as_sequence = false;  // image [B, 1, H, W] -> [B, H, W] (rows as time steps, for recurrent models)
  bool prefetch = true;      // build batches on a worker thread
  int64_t prefetch_depth = 2;
  uint64_t seed = 0;
};

class DataLoader {
public:
  DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options);
  ~DataLoader();
  DataLoader(const DataLoader&) = delete;
  DataLoader& operator=(const DataLoader&) = delete;

  int64_t num_batches() const;
  int64_t num_examples() const { return dataset_->size(); }
  const Dataset& dataset() const { return *dataset_; }
  const LoaderOptions& options() const { return opt_; }

  // Begins epoch `epoch` at batch `start_batch` (for resuming); next() then yields its batches in order.
  void start_epoch(int64_t epoch, int64_t start_batch = 0);
  // The next batch of the current epoch, or nullopt when the epoch is done.
  std::optional<Batch> next();

  // Batch `index` of epoch `epoch`, built synchronously (what next() returns at that position).
  Batch batch(int64_t epoch, int64_t index) const;
  // The example order of an epoch.
  std::vector<int64_t> permutation(int64_t epoch) const;

private:
  Batch build(const std::vector<int64_t>& perm, int64_t epoch, int64_t index) const;
  void stop_worker();

  std::shared_ptr<const Dataset> dataset_;
  LoaderOptions opt_;
  int64_t epoch_ = -1, next_index_ = 0;
  std::vector<int64_t> perm_;

  // Prefetch worker: produces batches [next_index_, num_batches) into queue_ (bounded by prefetch_depth).
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  std::exception_ptr error_;
  bool stop_ = false, worker_done_ = true;
};

}  // namespace qforge::data
