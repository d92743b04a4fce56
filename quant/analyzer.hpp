// Calibration statistics and encoding analyzers (aimet-compat.md §5).
//
// TensorStats accumulates, over calibration batches, the running min/max of one tensor (or one channel)
// and, for the histogram-based schemes, AIMET's probability histogram: PDF_SIZE = 512 bins whose range is
// set by the first non-zero batch as its [min, max] expanded x3 about the centre; each batch histogram is
// normalised by its element count and averaged with equal weight (pdf <- (pdf*it + p)/(it + 1)).
// Unlike AIMET v1, which silently drops later values outside that range (aimet-compat.md §12.12), the
// histogram GROWS by default: the range is widened and the old mass re-binned. `fixed_range` restores v1.
//
// Analyzers turn stats into an Encoding:
//   tf           running min/max -> compute_encoding (all-zero data -> [-1, 1] as AIMET's tests assert);
//   tf_enhanced  AIMET's SQNR candidate search over the histogram (see analyzer.cpp, Note [tf_enhanced]);
//   percentile   the p-th / (100-p)-th percentile bin edges -> compute_encoding (p = 100: exact min/max);
//   mse          the candidate range minimising sum p_i (m_i - qdq(m_i))^2 over the histogram, clipping
//                error included (libpymo's MSE analyzer is not public; this is qforge's definition).
#pragma once

#include "quant/encoding.hpp"
#include "quant/torch_observers.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace qforge::quant {

enum class QuantScheme { tf, tf_enhanced, percentile, mse, torch_minmax, torch_moving_average, torch_histogram };

// torch_minmax / torch_moving_average / torch_histogram: PyTorch 1.13's MinMaxObserver,
// MovingAverageMinMaxObserver (averaging constant 0.01) and HistogramObserver (2048 bins) with torch's exact
// float32 arithmetic (quant/torch_observers.hpp). Each TensorStats.update() is one observed batch. The
// encoding is torch's (scale, zero point) for the quantizer's grid (torch_options_for_grid): asymmetric ->
// per_tensor_affine on [0, N], symmetric -> per_tensor_symmetric (zero point 0, scale max|x|/((qmax-qmin)/2)).
bool is_torch_scheme(QuantScheme s);

// Accepts qforge names (tf, tf_enhanced, percentile, mse) and AIMET's (post_training_tf, ...,
// training_range_learning_with_tf_init -> tf, ..._tf_enhanced_init -> tf_enhanced). Throws InputError.
QuantScheme parse_scheme(const std::string& name);
const char* scheme_name(QuantScheme s);          // "tf", ...
const char* aimet_scheme_name(QuantScheme s);    // "post_training_tf", ... (encodings quantizer_args)

struct HistogramOptions {
  int bins = 512;          // AIMET PDF_SIZE
  double expand = 3.0;     // first-batch range expansion about its centre
  bool fixed_range = false;  // AIMET v1: drop values outside the first range instead of growing
};

class TensorStats {
public:
  explicit TensorStats(bool keep_histogram = false, HistogramOptions opt = {}, QuantScheme scheme = QuantScheme::tf);
  void update(const float* x, int64_t n);
  void update(const double* x, int64_t n);
  void reset();

  bool empty() const { return batches_ == 0; }
  double min() const { return min_; }
  double max() const { return max_; }
  bool has_histogram() const { return keep_hist_; }
  // Histogram view: bin i covers [lo + i*width, lo + (i+1)*width); pdf sums to 1 (when non-empty).
  double hist_lo() const { return lo_; }
  double hist_width() const { return width_; }
  const std::vector<double>& pdf() const { return pdf_; }
  int64_t hist_batches() const { return hist_batches_; }
  // The torch observer these statistics feed (torch schemes only; null otherwise).
  const MinMaxObserver* torch_minmax() const { return torch_mm_ ? &*torch_mm_ : nullptr; }
  const MovingAverageMinMaxObserver* torch_moving_average() const { return torch_ma_ ? &*torch_ma_ : nullptr; }
  const HistogramObserver* torch_histogram() const { return torch_hist_ ? &*torch_hist_ : nullptr; }

  // Data-parallel calibration (the exchange itself happens above quant/, train/calibration.hpp): the
  // statistics as a flat buffer, and merging another TensorStats' buffer into these (Note [Merging stats]).
  std::vector<double> to_flat() const;
  void merge_flat(const std::vector<double>& flat);

private:
  template <class T> void update_impl(const T* x, int64_t n);
  void grow_to(double lo, double hi);

  bool keep_hist_;
  HistogramOptions opt_;
  int64_t batches_ = 0;
  double min_ = 0, max_ = 0;
  double lo_ = 0, width_ = 0;
  std::vector<double> pdf_;
  int64_t hist_batches_ = 0;
  std::vector<double> scratch_;
  QuantScheme scheme_ = QuantScheme::tf;
  std::optional<MinMaxObserver> torch_mm_;
  std::optional<MovingAverageMinMaxObserver> torch_ma_;
  std::optional<HistogramObserver> torch_hist_;
  std::vector<float> torch_scratch_;  // f64 batches observed as float32, as torch does
};

// While alive, records every TensorStats that update() touches, in first-touch order without duplicates,
// so a caller can export and merge what a calibration pass collected without reaching into the quantizers
// that own the statistics. One recorder at a time; the recorded objects must outlive its use.
class StatsRecorder {
public:
  StatsRecorder();
  ~StatsRecorder();
  StatsRecorder(const StatsRecorder&) = delete;
  StatsRecorder& operator=(const StatsRecorder&) = delete;
  const std::vector<TensorStats*>& stats() const { return stats_; }
  void note(TensorStats* s);
  // Puts every recorded TensorStats back into the state it had just before its first update (to observe
  // the same batches again from scratch, whatever the scheme).
  void restore_initial() const;

private:
  std::vector<TensorStats*> stats_;
  std::vector<TensorStats> initial_;  // copies taken at first touch
  std::vector<const TensorStats*> sorted_;  // for the duplicate check
};

// Encoding for one tensor/channel from its statistics. percentile in [50, 100].
Encoding analyze(const TensorStats& stats, QuantScheme scheme, const GridSpec& grid, double percentile = 99.99);

// Cost of an encoding over a histogram: sum p_i (m_i - qdq(m_i))^2 (+ gamma * saturation for tf_enhanced).
double histogram_qdq_error(const TensorStats& stats, double delta, double offset, int64_t steps);

}  // namespace qforge::quant
