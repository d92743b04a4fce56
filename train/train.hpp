// train/: everything that turns a model and data into a trained model.
//
//   optimizer.hpp   SGD / Adam / AdamW (PyTorch's update rules), parameter groups, gradient clipping
//   schedule.hpp    LR schedules (step, multi-step, cosine, warm-up; composable), parsed from strings
//   metrics.hpp     running loss / top-1 accuracy / perplexity / bits-per-char
//   checkpoint.hpp  atomic checkpoints (weights + optimizer + trainer state incl. RNGs)
//   progress.hpp    progress bar on a terminal, plain lines otherwise
//   threads.hpp     one thread setting for OpenMP and OpenBLAS
//   communicator.hpp  rank/size/allreduce/broadcast: one process or MPI (data_parallel.hpp: sharding, gradients)
//   trainer.hpp     TrainConfig, Trainer (the loop, callbacks, evaluation, best model, resume), evaluate()
#pragma once

#include "train/checkpoint.hpp"
#include "train/communicator.hpp"
#include "train/data_parallel.hpp"
#include "train/metrics.hpp"
#include "train/optimizer.hpp"
#include "train/progress.hpp"
#include "train/schedule.hpp"
#include "train/threads.hpp"
#include "train/trainer.hpp"
