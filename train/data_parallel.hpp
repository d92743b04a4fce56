// Data parallelism for the Trainer over a Communicator (communicator.hpp): batch sharding, the flat
// gradient buffer, and keeping every rank's state equal to rank 0's.
//
// Note [Data-parallel step]
// With N ranks and per-rank batch b, the loader yields the global batch of B = b*N examples of the
// epoch's permutation (seed + epoch, Note [Loader determinism]); rank r keeps rows [r*R/N, (r+1)*R/N) of a
// global batch of R rows (R = B except the epoch's last batch, which has the remainder exactly as in one
// process, split as evenly as it goes). Each rank builds the whole global batch and keeps its rows: a
// gather of already-loaded examples, done ahead on the loader's worker thread, and the augmentation
// randomness stays what one process draws for that batch (the stream is per batch, not per example).
// Each step:
//   1. forward + loss on the local rows (none: nothing to compute);
//   2. one double allreduce of [loss*n, correct, n, rows, non-finite flag per rank]: every rank learns
//      the global metrics and whether ANY rank's loss is non-finite, and then all stop together at the
//      same step with the same message (Note [Failure on one rank] in communicator.hpp);
//   3. backward; every gradient (model parameters, then the extra parameters such as learnable
//      quantization ranges: the optimizer's fixed parameter order) scaled by n_r / n_total is packed into
//      one flat float buffer, plus one "defined" flag per tensor, reduced in buckets of kBucketFloats with
//      the deterministic ring (Note [Ring order]) and unpacked. The sum is the gradient of the global
//      batch's mean loss, as one process computes it (up to the order of float additions);
//   4. clipping and the optimizer step then run identically on every rank: parameters stay equal.
//
// Note [Data-parallel BatchNorm]
// BatchNorm normalises with per-rank batch statistics (each rank's b rows, as PyTorch DDP without
// SyncBatchNorm); the running statistics (every floating-point buffer) are averaged over ranks at the
// end of each epoch, before evaluation and the checkpoint. A model with BatchNorm therefore trains
// slightly differently with N ranks of b than with one process of N*b; models without BN differ only by
// float summation order. Dropout draws from each rank's own generator (same seed on every rank).
//
// Note [Data-parallel resume]
// Rank 0 alone reads and writes the run directory. At the start of fit() (and so on resume) rank 0
// broadcasts its trainer state (position, metrics, best epoch, extra parameters), every parameter and
// buffer, and the optimizer state. A checkpoint records the GLOBAL batch size, so a run of N ranks with
// batch b resumes with M ranks of batch N*b/M (e.g. one process with --batch-size N*b).
#pragma once

#include "data/dataset.hpp"
#include "nn/module.hpp"
#include "train/communicator.hpp"
#include "train/optimizer.hpp"

#include <nlohmann/json.hpp>

namespace qforge::train {

inline constexpr size_t kBucketFloats = size_t{25} << 18;  // 25 MiB of floats per ring allreduce

// Rows [first, first + count) of a global batch of `rows` rows that rank `rank` of `size` keeps.
std::pair<int64_t, int64_t> shard_rows(int64_t rows, int rank, int size);
data::Batch shard_batch(const data::Batch& global, int rank, int size);

// Note [Data-parallel step] 3: sums weight * grad over ranks in place (weight = this rank's share of the
// global batch). Tensors without a gradient on every rank keep none.
void allreduce_gradients(Communicator& comm, const std::vector<Tensor>& params, double weight,
                         std::vector<float>& scratch);

// Copies root's values into every rank's tensors (same shapes and dtypes on every rank).
void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int root = 0);
// Every parameter and persistent buffer of `model`, then the optimizer's state, from rank 0.
void broadcast_model_and_optimizer(Communicator& comm, nn::Module& model, Optimizer& optimizer);
// Averages every floating-point buffer of `model` over ranks (Note [Data-parallel BatchNorm]).
void average_buffers(Communicator& comm, nn::Module& model);

}  // namespace qforge::train
