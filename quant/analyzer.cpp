// Calibration statistics and analyzers. See analyzer.hpp.
#include "quant/analyzer.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>

namespace qforge::quant {

QuantScheme parse_scheme(const std::string& s) {
  if (s == "tf" || s == "post_training_tf" || s == "training_range_learning_with_tf_init") return QuantScheme::tf;
  if (s == "tf_enhanced" || s == "post_training_tf_enhanced" || s == "training_range_learning_with_tf_enhanced_init")
    return QuantScheme::tf_enhanced;
  if (s == "percentile" || s == "post_training_percentile") return QuantScheme::percentile;
  if (s == "mse") return QuantScheme::mse;
  if (s == "torch_minmax") return QuantScheme::torch_minmax;
  if (s == "torch_moving_average") return QuantScheme::torch_moving_average;
  if (s == "torch_histogram") return QuantScheme::torch_histogram;
  throw InputError(fmt::format("unknown quant scheme '{}' (expected tf, tf_enhanced, percentile, mse, torch_minmax, "
                               "torch_moving_average or torch_histogram)", s));
}

const char* scheme_name(QuantScheme s) {
  switch (s) {
    case QuantScheme::tf: return "tf";
    case QuantScheme::tf_enhanced: return "tf_enhanced";
    case QuantScheme::percentile: return "percentile";
    case QuantScheme::mse: return "mse";
    case QuantScheme::torch_minmax: return "torch_minmax";
    case QuantScheme::torch_moving_average: return "torch_moving_average";
    case QuantScheme::torch_histogram: return "torch_histogram";
  }
  return "?";
}

bool is_torch_scheme(QuantScheme s) {
  return s == QuantScheme::torch_minmax || s == QuantScheme::torch_moving_average || s == QuantScheme::torch_histogram;
}

const char* aimet_scheme_name(QuantScheme s) {
  switch (s) {
    case QuantScheme::tf: return "post_training_tf";
    case QuantScheme::tf_enhanced: return "post_training_tf_enhanced";
    case QuantScheme::percentile: return "post_training_percentile";
    case QuantScheme::mse: return "mse";
    case QuantScheme::torch_minmax:  // AIMET has no torch observers: the qforge name
    case QuantScheme::torch_moving_average:
    case QuantScheme::torch_histogram: return scheme_name(s);
  }
  return "?";
}

// ---- statistics ------------------------------------------------------------------------------------

TensorStats::TensorStats(bool keep_histogram, HistogramOptions opt, QuantScheme scheme)
    : keep_hist_(keep_histogram && !is_torch_scheme(scheme)), opt_(opt), scheme_(scheme) {
  if (scheme_ == QuantScheme::torch_minmax) torch_mm_.emplace();
  if (scheme_ == QuantScheme::torch_moving_average) torch_ma_.emplace();
  if (scheme_ == QuantScheme::torch_histogram) torch_hist_.emplace();
  QFORGE_CHECK(opt_.bins >= 2 && opt_.expand >= 1.0, "TensorStats: bins {} / expand {} invalid", opt_.bins,
               opt_.expand);
}

void TensorStats::reset() {
  batches_ = 0;
  min_ = max_ = 0;
  lo_ = width_ = 0;
  pdf_.clear();
  hist_batches_ = 0;
  if (torch_mm_) torch_mm_.emplace();
  if (torch_ma_) torch_ma_.emplace();
  if (torch_hist_) torch_hist_.emplace();
}

namespace {
std::mutex g_recorder_mu;
std::atomic<StatsRecorder*> g_recorder{nullptr};
void note_update(TensorStats* s) {
  if (g_recorder.load(std::memory_order_relaxed) == nullptr) return;
  std::lock_guard<std::mutex> lock(g_recorder_mu);
  if (StatsRecorder* r = g_recorder.load()) r->note(s);
}
}  // namespace

StatsRecorder::StatsRecorder() {
  StatsRecorder* expected = nullptr;
  QFORGE_CHECK(g_recorder.compare_exchange_strong(expected, this), "StatsRecorder: another recorder is active");
}
StatsRecorder::~StatsRecorder() {
  std::lock_guard<std::mutex> lock(g_recorder_mu);
  g_recorder.store(nullptr);
}
void StatsRecorder::note(TensorStats* s) {
  auto it = std::lower_bound(sorted_.begin(), sorted_.end(), static_cast<const TensorStats*>(s));
  if (it != sorted_.end() && *it == s) return;
  sorted_.insert(it, s);
  stats_.push_back(s);
  initial_.push_back(*s);  // note() runs before the update: the state before the first batch
}

void StatsRecorder::restore_initial() const {
  for (size_t i = 0; i < stats_.size(); ++i) *stats_[i] = initial_[i];
}

void TensorStats::update(const float* x, int64_t n) {
  note_update(this);
  update_impl(x, n);
}
void TensorStats::update(const double* x, int64_t n) {
  note_update(this);
  update_impl(x, n);
}

// Note [Merging stats]
// Flat layout: [batches, min, max, hist_batches, hist_lo, hist_width, bins, pdf...]. min/max merge
// exactly (so the tf scheme gives the same encodings as one pass over all the batches). Histograms are
// defined by their batch sequence (first-batch range, growth), which a merge cannot replay: the other
// pdf is re-binned (overlap-proportionally, like a growth) onto this one's range widened to the union,
// and the two are averaged weighted by their histogram batch counts -- the equal-weight batch average
// one pass computes, up to the re-binning.
std::vector<double> TensorStats::to_flat() const {
  std::vector<double> f = {static_cast<double>(batches_), min_, max_, static_cast<double>(hist_batches_), lo_, width_,
                           static_cast<double>(pdf_.size())};
  f.insert(f.end(), pdf_.begin(), pdf_.end());
  return f;
}

void TensorStats::merge_flat(const std::vector<double>& f) {
  QFORGE_CHECK(f.size() >= 7 && f.size() == 7 + static_cast<size_t>(f[6]), "TensorStats::merge_flat: {} values",
               f.size());
  const auto batches = static_cast<int64_t>(f[0]);
  if (batches == 0) return;
  min_ = batches_ == 0 ? f[1] : std::min(min_, f[1]);
  max_ = batches_ == 0 ? f[2] : std::max(max_, f[2]);
  batches_ += batches;
  const auto ohb = static_cast<int64_t>(f[3]);
  const size_t bins = static_cast<size_t>(f[6]);
  if (!keep_hist_ || bins == 0 || ohb == 0) return;
  QFORGE_CHECK(bins == static_cast<size_t>(opt_.bins), "TensorStats::merge_flat: {} bins, expected {}", bins, opt_.bins);
  const double olo = f[4], ow = f[5];
  if (pdf_.empty()) {
    lo_ = olo;
    width_ = ow;
    pdf_.assign(f.begin() + 7, f.end());
    hist_batches_ = ohb;
    return;
  }
  const double nlo = std::min(lo_, olo), nhi = std::max(lo_ + width_ * opt_.bins, olo + ow * opt_.bins);
  if (nlo < lo_ || nhi > lo_ + width_ * opt_.bins) grow_to(nlo, nhi);
  std::vector<double> np(pdf_.size(), 0.0);
  const int nb = opt_.bins;
  for (int i = 0; i < nb; ++i) {
    const double m = f[7 + static_cast<size_t>(i)];
    if (m == 0) continue;
    const double a = olo + i * ow, b = a + ow;
    const int j0 = std::clamp(static_cast<int>(std::floor((a - lo_) / width_)), 0, nb - 1);
    const int j1 = std::clamp(static_cast<int>(std::floor((b - lo_) / width_)), 0, nb - 1);
    for (int j = j0; j <= j1; ++j) {
      const double ja = lo_ + j * width_, jb = ja + width_;
      const double ov = std::min(b, jb) - std::max(a, ja);
      if (ov > 0) np[j] += m * ov / ow;
    }
  }
  const double wa = static_cast<double>(hist_batches_), wb = static_cast<double>(ohb);
  for (size_t j = 0; j < pdf_.size(); ++j) pdf_[j] = (pdf_[j] * wa + np[j] * wb) / (wa + wb);
  hist_batches_ += ohb;
}

void TensorStats::grow_to(double nlo, double nhi) {
  const int bins = opt_.bins;
  const double nw = (nhi - nlo) / bins;
  std::vector<double> np(bins, 0.0);
  for (int i = 0; i < bins; ++i) {
    const double m = pdf_[i];
    if (m == 0) continue;
    const double a = lo_ + i * width_, b = a + width_;
    int j0 = std::clamp(static_cast<int>(std::floor((a - nlo) / nw)), 0, bins - 1);
    const int j1 = std::clamp(static_cast<int>(std::floor((b - nlo) / nw)), 0, bins - 1);
    for (int j = j0; j <= j1; ++j) {
      const double ja = nlo + j * nw, jb = ja + nw;
      const double ov = std::min(b, jb) - std::max(a, ja);
      if (ov > 0) np[j] += m * ov / width_;
    }
  }
  pdf_.swap(np);
  lo_ = nlo;
  width_ = nw;
}

template <class T> void TensorStats::update_impl(const T* x, int64_t n) {
  if (n <= 0) return;
  if (torch_mm_ || torch_ma_ || torch_hist_) {
    const float* xf = nullptr;
    if constexpr (std::is_same_v<T, float>) {
      xf = x;
    } else {
      torch_scratch_.assign(x, x + n);
      xf = torch_scratch_.data();
    }
    if (torch_mm_) torch_mm_->forward(xf, n);
    if (torch_ma_) torch_ma_->forward(xf, n);
    if (torch_hist_) torch_hist_->forward(xf, n);
  }
  T bmin = std::numeric_limits<T>::infinity(), bmax = -std::numeric_limits<T>::infinity();
#pragma omp simd reduction(min : bmin) reduction(max : bmax)
  for (int64_t i = 0; i < n; ++i) {
    bmin = std::min(bmin, x[i]);
    bmax = std::max(bmax, x[i]);
  }
  const double lo = std::isfinite(double(bmin)) ? double(bmin) : -double(std::numeric_limits<float>::max());
  const double hi = std::isfinite(double(bmax)) ? double(bmax) : double(std::numeric_limits<float>::max());
  if (batches_ == 0) {
    min_ = lo;
    max_ = hi;
  } else {
    min_ = std::min(min_, lo);
    max_ = std::max(max_, hi);
  }
  ++batches_;
  if (!keep_hist_) return;
  const int bins = opt_.bins;
  if (pdf_.empty()) {
    if (lo == 0 && hi == 0) return;  // AIMET initialises the histogram on the first non-zero batch
    const double c = 0.5 * (lo + hi);
    double half = 0.5 * (hi - lo) * opt_.expand;
    if (half <= 0) half = std::max(std::abs(c), 1e-6);
    lo_ = c - half;
    width_ = 2 * half / bins;
    pdf_.assign(bins, 0.0);
  } else if (!opt_.fixed_range && (lo < lo_ || hi > lo_ + width_ * bins)) {
    // Grow by at least 1.5x so that a slowly drifting range is not re-binned every batch.
    const double cur_lo = lo_, cur_hi = lo_ + width_ * bins;
    double nlo = std::min(cur_lo, lo), nhi = std::max(cur_hi, hi);
    const double min_width = 1.5 * (cur_hi - cur_lo);
    if (nhi - nlo < min_width) {
      const double extra = min_width - (nhi - nlo);
      if (lo < cur_lo) nlo -= extra; else nhi += extra;
    }
    grow_to(nlo, nhi);
  }
  scratch_.assign(bins, 0.0);
  const double inv_w = 1.0 / width_;
  for (int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x[i]);
    const double f = std::floor((v - lo_) * inv_w);
    if (!(f >= 0 && f <= bins)) continue;  // dropped (fixed range) or NaN
    scratch_[std::min(static_cast<int>(f), bins - 1)] += 1.0;
  }
  const double it = static_cast<double>(hist_batches_);
  for (int j = 0; j < bins; ++j) pdf_[j] = (pdf_[j] * it + scratch_[j] / static_cast<double>(n)) / (it + 1.0);
  ++hist_batches_;
}

// ---- analyzers ------------------------------------------------------------------------------------

namespace {

// qdq on the quantizer's grid (Note [Tie rule]: ties toward +inf), in double.
inline double qdq_value(double m, double delta, double offset, double steps) {
  const double r = std::floor(m / delta + 0.5);
  return (std::clamp(r - offset, 0.0, steps) + offset) * delta;
}

struct Candidate {
  double delta, offset;
};

// Note [tf_enhanced] AIMET v1 TfEnhancedEncodingAnalyzer (aimet-compat.md §5): candidates around the
// observed range, cost = quantization noise of the in-range bins + GAMMA (3) * saturation noise of the
// clipped bins (distance to the midpoint of the bin holding the clip level), on 2^bw - 1 steps even in
// strict mode. The observed range is the left edges of the first and last non-empty bins.
constexpr double kGamma = 3.0;

double sqnr_cost(const TensorStats& st, const Candidate& c, double steps) {
  const auto& p = st.pdf();
  const int bins = static_cast<int>(p.size());
  const double lo = st.hist_lo(), w = st.hist_width();
  const double cmin = c.delta * c.offset, cmax = c.delta * (c.offset + steps);
  const int bmin = std::clamp(static_cast<int>(std::floor((cmin - lo) / w)), 0, bins - 1);
  const int bmax = std::clamp(static_cast<int>(std::floor((cmax - lo) / w)), 0, bins - 1);
  const double mmin = lo + (bmin + 0.5) * w, mmax = lo + (bmax + 0.5) * w;
  double quant = 0, sat = 0;
  for (int i = 0; i < bins; ++i) {
    if (p[i] == 0) continue;
    const double m = lo + (i + 0.5) * w;
    if (m < cmin) {
      sat += p[i] * (m - mmin) * (m - mmin);
    } else if (m > cmax) {
      sat += p[i] * (m - mmax) * (m - mmax);
    } else {
      const double e = m - qdq_value(m, c.delta, c.offset, steps);
      quant += p[i] * e * e;
    }
  }
  return quant + kGamma * sat;
}

Encoding tf_enhanced(const TensorStats& st, const GridSpec& g) {
  const auto& p = st.pdf();
  const int bins = static_cast<int>(p.size());
  int i0 = 0, i1 = bins - 1;
  while (i0 < bins && p[i0] == 0) ++i0;
  while (i1 >= 0 && p[i1] == 0) --i1;
  double omin = st.hist_lo() + i0 * st.hist_width(), omax = st.hist_lo() + i1 * st.hist_width();
  omin = std::min(omin, 0.0);
  omax = std::max(omax, 0.0);
  omax = std::max(omax, omin + kMinRange);
  const double n = static_cast<double>(num_steps(g.bitwidth, false));  // cost on 2^bw - 1 steps
  std::vector<Candidate> cands;
  if (g.symmetric) {
    if (g.unsigned_symmetric && omin >= 0) {
      const double dmax = omax / n;
      for (int k = 1; k <= 101; ++k) cands.push_back({dmax * k / 100.0, 0.0});
    } else {
      const double dmax = std::max(std::abs(omin), std::abs(omax)) / (n / 2);
      const double off = g.strict_symmetric ? -std::floor(n / 2) : std::floor(-n / 2);
      for (int k = 1; k <= 101; ++k) cands.push_back({dmax * k / 100.0, off});
    }
  } else {
    GridSpec ag = g;
    ag.symmetric = false;
    const Encoding obs = compute_encoding(omin, omax, ag);
    const double dmax = obs.delta;
    for (int k = 1; k <= 17; ++k) {
      const double d = dmax * k / 16.0;
      for (int i = 0; i <= 20; ++i) {
        const double off = std::trunc(-n + i * n / 20.0);
        double tmin = d * off, tmax = tmin + d * n;
        if (tmin < omin && tmax > omax) continue;  // exceeds the observed range on both sides
        tmin = std::max(omin, tmin);
        tmax = std::min(omax, tmax);
        if (tmax <= tmin) continue;
        const double nd = (tmax - tmin) / n;
        cands.push_back({nd, std::round(tmin / nd)});
      }
    }
    cands.push_back({obs.delta, obs.offset});
  }
  Candidate best = cands.front();
  double best_cost = std::numeric_limits<double>::infinity();
  for (const auto& c : cands) {
    const double cost = sqnr_cost(st, c, n);
    if (cost < best_cost) {
      best_cost = cost;
      best = c;
    }
  }
  return encoding_from_scale_offset(best.delta, best.offset, g);
}

Encoding percentile_encoding(const TensorStats& st, const GridSpec& g, double pct) {
  if (pct >= 100.0) return compute_encoding(st.min(), st.max(), g);
  const auto& p = st.pdf();
  const int bins = static_cast<int>(p.size());
  const double lo_q = (100.0 - pct) / 100.0, hi_q = pct / 100.0;
  double cum = 0;
  int ilo = 0, ihi = bins - 1;
  bool found_lo = false;
  for (int i = 0; i < bins; ++i) {
    cum += p[i];
    if (!found_lo && cum >= lo_q) {
      ilo = i;
      found_lo = true;
    }
    if (cum >= hi_q - 1e-12) {
      ihi = i;
      break;
    }
  }
  const double mn = std::max(st.min(), st.hist_lo() + ilo * st.hist_width());
  const double mx = std::min(st.max(), st.hist_lo() + (ihi + 1) * st.hist_width());
  return compute_encoding(mn, mx, g);
}

Encoding mse_encoding(const TensorStats& st, const GridSpec& g) {
  const double steps = static_cast<double>(num_steps(g.bitwidth, g.symmetric && g.strict_symmetric));
  Encoding best = compute_encoding(st.min(), st.max(), g);
  double best_cost = histogram_qdq_error(st, best.delta, best.offset, static_cast<int64_t>(steps));
  auto consider = [&](double mn, double mx) {
    const Encoding e = compute_encoding(mn, mx, g);
    const double c = histogram_qdq_error(st, e.delta, e.offset, static_cast<int64_t>(steps));
    if (c < best_cost) {
      best_cost = c;
      best = e;
    }
  };
  const double mn = std::min(st.min(), 0.0), mx = std::max(st.max(), 0.0);
  if (g.symmetric) {
    for (int k = 1; k < 100; ++k) {
      const double f = k / 100.0;
      if (g.unsigned_symmetric && mn >= 0) consider(0, mx * f);
      else consider(mn * f, mx * f);
    }
  } else {
    for (int a = 1; a <= 20; ++a)
      for (int b = 1; b <= 20; ++b) consider(mn * a / 20.0, mx * b / 20.0);
  }
  return best;
}

// The torch scheme's encoding: torch's qparams for the grid (is_torch_scheme in analyzer.hpp).
Encoding torch_encoding(const TensorStats& st, QuantScheme scheme, const GridSpec& g) {
  const TorchObserverOptions o = torch_options_for_grid(g);
  float mn = 0, mx = 0;
  if (scheme == QuantScheme::torch_histogram && st.torch_histogram()) {
    std::tie(mn, mx) = st.torch_histogram()->non_linear_param_search();
  } else if (scheme == QuantScheme::torch_moving_average && st.torch_moving_average()) {
    mn = st.torch_moving_average()->min_val();
    mx = st.torch_moving_average()->max_val();
  } else if (scheme == QuantScheme::torch_minmax && st.torch_minmax()) {
    mn = st.torch_minmax()->min_val();
    mx = st.torch_minmax()->max_val();
  } else if (scheme == QuantScheme::torch_minmax) {
    mn = static_cast<float>(st.min());  // running min/max of float32 data: exact
    mx = static_cast<float>(st.max());
  } else {
    throw Error(fmt::format("analyze: scheme {} needs statistics collected for it", scheme_name(scheme)));
  }
  const TorchQParams q = torch_calculate_qparams(&mn, &mx, 1, o);
  const auto [qmin, qmax] = torch_qmin_qmax(o);
  return encoding_from_torch_qparams(q.scale[0], q.zero_point[0], qmin, qmax, g, scheme_name(scheme));
}

}  // namespace

double histogram_qdq_error(const TensorStats& st, double delta, double offset, int64_t steps) {
  const auto& p = st.pdf();
  const double lo = st.hist_lo(), w = st.hist_width(), n = static_cast<double>(steps);
  double err = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] == 0) continue;
    const double m = lo + (static_cast<double>(i) + 0.5) * w;
    const double e = m - qdq_value(m, delta, offset, n);
    err += p[i] * e * e;
  }
  return err;
}

Encoding analyze(const TensorStats& st, QuantScheme scheme, const GridSpec& g, double pct) {
  QFORGE_CHECK(!st.empty(), "analyze: no calibration statistics (run calibration batches first)");
  QFORGE_CHECK(pct >= 50 && pct <= 100, "analyze: percentile {} outside [50, 100]", pct);
  if (g.is_float) return compute_encoding(0, 0, g);
  if (is_torch_scheme(scheme)) return torch_encoding(st, scheme, g);
  // No non-zero data: AIMET's analyzers give [-1, 1] through the asymmetric formula (aimet-compat.md §4.3).
  if (st.min() == 0 && st.max() == 0) return compute_encoding(-1, 1, g);
  if (scheme == QuantScheme::tf || !st.has_histogram() || st.pdf().empty()) return compute_encoding(st.min(), st.max(), g);
  switch (scheme) {
    case QuantScheme::tf_enhanced: return tf_enhanced(st, g);
    case QuantScheme::percentile: return percentile_encoding(st, g, pct);
    case QuantScheme::mse: return mse_encoding(st, g);
    default: break;
  }
  return compute_encoding(st.min(), st.max(), g);
}

}  // namespace qforge::quant
