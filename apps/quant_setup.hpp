// Shared steps of the quantization commands (quantize, finetune, eval --mode sim, demo, analyze).
#pragma once

#include "apps/cli.hpp"
#include "data/data.hpp"
#include "nn/module.hpp"
#include "quant/quant_dir.hpp"
#include "train/trainer.hpp"

#include <functional>

namespace qforge::apps {

// The first batch of `ds` (no augmentation): what QuantSim traces.
std::vector<Tensor> sample_batch(const std::shared_ptr<const data::Dataset>& ds, int64_t batch = 8);

// A calibration pass: `batches` batches of the training split in a fixed order (seeded shuffle, no
// augmentation) through `model`.
std::function<void(nn::Module&)> calibration_pass(const std::shared_ptr<const data::Dataset>& ds, int64_t batches,
                                                  int64_t batch_size, uint64_t seed);

// The same batches calibration_pass feeds, as a list (for passes that cache activations).
std::vector<Tensor> calibration_batches(const std::shared_ptr<const data::Dataset>& ds, int64_t batches,
                                        int64_t batch_size, uint64_t seed);

// Evaluates the (possibly quantized) model on the split.
train::EvalResult evaluate_on(nn::Module& model, const std::shared_ptr<const data::Dataset>& ds,
                              int64_t batch_size = 256);

}  // namespace qforge::apps
