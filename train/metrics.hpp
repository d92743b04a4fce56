// Running metrics over batches: mean loss (weighted by the number of predictions), top-1 accuracy, and
// for language models perplexity exp(loss) and bits per character loss / ln 2.
#pragma once

#include "engine/tensor.hpp"

#include "engine/json_util.hpp"

#include <nlohmann/json.hpp>

#include <cmath>

namespace qforge::train {

struct Metrics {
  double loss_sum = 0;  // sum over predictions of the per-prediction loss
  int64_t correct = 0;
  int64_t count = 0;    // predictions (examples, or characters for language models)
  int64_t examples = 0; // batch rows

  void add(double mean_loss, int64_t n_correct, int64_t n, int64_t rows) {
    loss_sum += mean_loss * static_cast<double>(n);
    correct += n_correct;
    count += n;
    examples += rows;
  }
  double loss() const { return count ? loss_sum / static_cast<double>(count) : 0.0; }
  double accuracy() const { return count ? 100.0 * static_cast<double>(correct) / static_cast<double>(count) : 0.0; }
  double perplexity() const { return std::exp(loss()); }
  double bits_per_char() const { return loss() / std::log(2.0); }

  nlohmann::json to_json() const {
    return {{"loss_sum", loss_sum}, {"correct", correct}, {"count", count}, {"examples", examples}};
  }
  // Checked reads (JsonView): a float or negative count is an InputError, not a float-to-int64 conversion.
  static Metrics from_json(const nlohmann::json& j) {
    const JsonView v(j, "checkpoint running metrics");
    Metrics m;
    m.loss_sum = v["loss_sum"].number();
    m.correct = v["correct"].integer(0);
    m.count = v["count"].integer(0);
    m.examples = v["examples"].integer(0);
    return m;
  }
};

// Number of rows of `logits` ([N, C] or [..., C]) whose argmax equals `targets` (i32, N or [...]).
int64_t count_correct(const Tensor& logits, const Tensor& targets);

}  // namespace qforge::train
