// PyTorch 1.13's HistogramObserver (torch/ao/quantization/observer.py), float32 arithmetic as torch's.
// See torch_observers.hpp and Note [torch float32 order] in torch_observers.cpp.
//
// Note [torch histogram] forward(x):
//   first batch (or min == max so far): min/max = aminmax(x); histogram = histc(x, bins, int(min), int(max))
//     where int() truncates toward zero, so values outside [int(min), int(max)] are dropped
//     (pytorch/pytorch#83672; reproduced, it is what torch computes);
//   later batches: the combined range [min(min, new_min), max(max, new_max)] is widened on the right by
//     _adjust_min_max so that it is an integer number (downsample_rate) of old histogram widths; the new
//     data is binned with histc over [int(cmin), int(cmax)]; the old histogram is up-sampled by
//     upsample_rate (each count repeated), placed at start_idx, integrated in double and down-sampled
//     (_combine_histograms), and added in float32.
// histc (aten Histogram.cpp, linear interpolation without local search): edges float32 [lo, hi];
// pos = int64((x - lo) * bins / (hi - lo)) in float32; x == hi goes to the last bin; x outside is skipped.
//
// Note [torch histogram search] calculate_qparams() runs _non_linear_param_search (caffe2's
// NormMinimization): cumulative sums (float32 stored, double accumulated), quantile cuts advancing by 1e-5
// on the sparser side, and _compute_quantization_error as torch evaluates it: Python-double bin widths
// rounded to float32 operands, float32 elementwise terms, and torch.sum's float32 cascade (8 lanes, 4-way
// ILP, 4 levels; torch's AVX2/default kernel) for the total. The search stops when the error increases.
#include "quant/torch_observers.hpp"

#include <algorithm>
#include <array>
#include <cmath>

namespace qforge::quant {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// at::native::utils::CeilLog2
int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  return 64 - __builtin_clzll(static_cast<uint64_t>(x - 1));
}

// torch.sum of a contiguous float32 vector on CPU (SumKernel.cpp cascade_sum -> vectorized_inner_sum with
// Vectorized<float> of 8 lanes, row_sum with ilp_factor 4, multi_row_sum with 4 levels).
float torch_sum_f32(const std::vector<float>& x) {
  constexpr int64_t L = 8, kIlp = 4, kLevels = 4;
  using Vec = std::array<float, L>;
  const auto n = static_cast<int64_t>(x.size());
  const int64_t vec_size = n / L;
  auto load = [&](int64_t v) {
    Vec r;
    for (int64_t l = 0; l < L; ++l) r[l] = x[v * L + l];
    return r;
  };
  auto add = [](Vec& a, const Vec& b) {
    for (int64_t l = 0; l < L; ++l) a[l] += b[l];
  };
  // multi_row_sum over rows of kIlp vectors
  const int64_t size = vec_size / kIlp;
  const int64_t level_power = std::max<int64_t>(4, ceil_log2(size) / kLevels);
  const int64_t level_step = int64_t(1) << level_power, level_mask = level_step - 1;
  Vec acc[kLevels][kIlp] = {};
  int64_t i = 0;
  for (; i + level_step <= size;) {
    for (int64_t j = 0; j < level_step; ++j, ++i)
      for (int64_t k = 0; k < kIlp; ++k) add(acc[0][k], load(i * kIlp + k));
    for (int64_t j = 1; j < kLevels; ++j) {
      for (int64_t k = 0; k < kIlp; ++k) {
        add(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k] = Vec{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i)
    for (int64_t k = 0; k < kIlp; ++k) add(acc[0][k], load(i * kIlp + k));
  for (int64_t j = 1; j < kLevels; ++j)
    for (int64_t k = 0; k < kIlp; ++k) add(acc[0][k], acc[j][k]);
  // row_sum tail and ILP combination
  Vec part = acc[0][0];
  for (int64_t v = size * kIlp; v < vec_size; ++v) add(part, load(v));
  for (int64_t k = 1; k < kIlp; ++k) add(part, acc[0][k]);
  float total = 0;
  for (int64_t k = vec_size * L; k < n; ++k) total += x[k];
  for (int64_t l = 0; l < L; ++l) total += part[l];
  return total;
}

// Python int(float): truncation toward zero; torch raises when it does not fit the int64 Scalar.
double trunc_to_int(float v, const char* what) {
  if (!(std::fabs(v) < 9.2233720368547758e18f))
    throw InputError(fmt::format("HistogramObserver: {} {} does not fit torch.histc's integer range", what, v));
  return std::trunc(static_cast<double>(v));
}

// torch.histc(x, bins, min=lo, max=hi) in float32 (Note [torch histogram]).
std::vector<float> histc(const float* x, int64_t n, int bins, double lo, double hi) {
  if (lo == hi && n > 0) {
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
    }
    lo = mn;
    hi = mx;
  }
  if (lo == hi) {
    lo -= 1;
    hi += 1;
  }
  QFORGE_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo < hi, "HistogramObserver: histc range [{}, {}] invalid",
               lo, hi);
  const auto left = static_cast<float>(lo), right = static_cast<float>(hi);
  std::vector<float> h(bins, 0.0f);
  const auto fb = static_cast<float>(bins);
  for (int64_t i = 0; i < n; ++i) {
    const float e = x[i];
    if (!(e >= left && e <= right)) continue;
    auto pos = static_cast<int64_t>((e - left) * fb / (right - left));
    if (pos == bins) pos -= 1;
    h[pos] += 1.0f;
  }
  return h;
}

// Python floor division of floats (c10 div_floor_floating), float32.
float div_floor(float a, float b) {
  if (b == 0) return a / b;
  const float mod = std::fmod(a, b);
  float div = (a - mod) / b;
  if (mod != 0 && ((b < 0) != (mod < 0))) div -= 1.0f;
  if (div != 0) {
    float fl = std::floor(div);
    if (div - fl > 0.5f) fl += 1.0f;
    return fl;
  }
  return std::copysign(0.0f, a / b);
}

// HistogramObserver._get_norm: density * ((end^3 - begin^3) / 3), float32 in torch's order.
inline float get_norm(float begin, float end, float density) {
  const float e3 = end * end * end, b3 = begin * begin * begin;
  const float norm = (e3 - b3) / 3.0f;
  return density * norm;
}

}  // namespace

HistogramObserver::HistogramObserver(TorchObserverOptions o) : TorchObserverBase(o, "HistogramObserver") {
  if (is_per_channel(opt_.qscheme))
    throw InputError("HistogramObserver: qscheme must be per_tensor_affine or per_tensor_symmetric");
  if (opt_.bins < 1) throw InputError(fmt::format("HistogramObserver: bins must be positive, got {}", opt_.bins));
  if (opt_.upsample_rate < 1)
    throw InputError(fmt::format("HistogramObserver: upsample_rate must be positive, got {}", opt_.upsample_rate));
  hist_.assign(opt_.bins, 0.0f);
  // dst_nbins = 2^bits of the dtype; qint32 would be 2^32 bins (torch computes it; nobody uses it).
  dst_nbins_ = opt_.dtype == TorchDType::qint32 ? (int64_t(1) << 32) : 256;
}

void HistogramObserver::forward(const Tensor& x) {
  if (x.numel() == 0) return;
  const std::vector<float> v = x.detach().to_vector<float>();
  forward(v.data(), static_cast<int64_t>(v.size()));
}

void HistogramObserver::forward(const float* x, int64_t n) {
  if (n <= 0) return;
  const int bins = opt_.bins;
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  const bool same_values = min_ == max_;
  const bool uninitialized = min_ == kInf && max_ == -kInf;
  if (uninitialized || same_values) {
    min_ = mn;
    max_ = mx;
    hist_ = histc(x, n, bins, trunc_to_int(mn, "min"), trunc_to_int(mx, "max"));
    return;
  }
  float cmin = std::min(mn, min_), cmax = std::max(mx, max_);
  // _adjust_min_max
  const int64_t up = opt_.upsample_rate;
  const float hist_bin_width = (max_ - min_) / static_cast<float>(static_cast<int64_t>(bins) * up);
  const float span = static_cast<float>(bins) * hist_bin_width;
  const float ratio = std::ceil((cmax - cmin) / span);
  QFORGE_CHECK(std::isfinite(ratio) && ratio >= 1, "HistogramObserver: degenerate histogram width {}", hist_bin_width);
  const auto downsample_rate = static_cast<int64_t>(ratio);
  const float e = static_cast<float>(downsample_rate) * span - (cmax - cmin);
  cmax = cmax + e;
  const auto start_idx = static_cast<int64_t>(std::nearbyint((min_ - cmin) / hist_bin_width));

  std::vector<float> combined =
      histc(x, n, bins, trunc_to_int(cmin, "combined min"), trunc_to_int(cmax, "combined max"));
  if (cmin == min_ && cmax == max_) {
    for (int i = 0; i < bins; ++i) combined[i] += hist_[i];
  } else {
    // _combine_histograms(combined, hist_, up, downsample_rate, start_idx, bins)
    const int64_t out_len = static_cast<int64_t>(bins) * downsample_rate;
    QFORGE_CHECK(start_idx >= 0 && start_idx + bins * up <= out_len,
                 "HistogramObserver: old histogram [{}, {}) does not fit the combined one of {} bins (torch raises)",
                 start_idx, start_idx + bins * up, out_len);
    std::vector<double> integral(bins);
    double cum = 0;
    int64_t k = 0;
    for (int64_t j = 0; j < out_len; ++j) {
      const int64_t src = j - start_idx;
      if (src >= 0 && src < bins * up) cum += static_cast<double>(hist_[src / up]);
      if ((j + 1) % downsample_rate == 0) integral[k++] = cum;
    }
    for (int i = 0; i < bins; ++i) {
      const double shifted = i == 0 ? 0.0 : static_cast<double>(static_cast<float>(integral[i - 1]));
      const double interp = (integral[i] - shifted) / static_cast<double>(up);
      combined[i] = combined[i] + static_cast<float>(interp);
    }
  }
  hist_ = std::move(combined);
  min_ = cmin;
  max_ = cmax;
}

double HistogramObserver::compute_quantization_error(int64_t next_start_bin, int64_t next_end_bin) const {
  const int bins = opt_.bins;
  const double bin_width = (static_cast<double>(max_) - static_cast<double>(min_)) / bins;
  const double dst_bin_width = bin_width * static_cast<double>(next_end_bin - next_start_bin + 1) /
                               static_cast<double>(dst_nbins_);
  if (dst_bin_width == 0.0) return 0.0;
  const auto bw = static_cast<float>(bin_width), dbw = static_cast<float>(dst_bin_width);
  const auto half = static_cast<float>(dst_bin_width / 2), neg_half = static_cast<float>(-dst_bin_width / 2);
  const auto top = static_cast<float>(dst_nbins_ - 1);
  const float mid_norm_unit = [&] {  // (y^3 - x^3)/3 of the 0-dim tensors, before the density product
    const float y3 = half * half * half, x3 = neg_half * neg_half * neg_half;
    return (y3 - x3) / 3.0f;
  }();
  std::vector<float> norm(bins, 0.0f);
  for (int i = 0; i < bins; ++i) {
    const float src_begin = static_cast<float>(i - next_start_bin) * bw;
    const float src_end = src_begin + bw;
    const float dst_of_begin = std::clamp(div_floor(src_begin, dbw), 0.0f, top);
    const float dst_of_begin_center = (dst_of_begin + 0.5f) * dbw;
    const float dst_of_end = std::clamp(div_floor(src_end, dbw), 0.0f, top);
    const float density = hist_[i] / bw;
    float nm = 0.0f;
    nm += get_norm(src_begin - dst_of_begin_center, half * 1.0f, density);
    nm += ((dst_of_end - dst_of_begin) - 1.0f) * (density * mid_norm_unit);
    const float dst_of_end_center = dst_of_end * dbw + half;
    nm += get_norm(neg_half, src_end - dst_of_end_center, density);
    norm[i] = nm;
  }
  return static_cast<double>(torch_sum_f32(norm));
}

std::pair<float, float> HistogramObserver::non_linear_param_search() const {
  const int bins = opt_.bins;
  const float bin_width = (max_ - min_) / static_cast<float>(bins);
  const auto total = static_cast<double>(torch_sum_f32(hist_));
  std::vector<float> csum(bins);
  double acc = 0;
  for (int i = 0; i < bins; ++i) {
    acc += static_cast<double>(hist_[i]);
    csum[i] = static_cast<float>(acc);
  }
  const double stepsize = 1e-5;
  double alpha = 0.0, beta = 1.0;
  int64_t start_bin = 0, end_bin = bins - 1;
  double norm_min = std::numeric_limits<double>::infinity();
  while (alpha < beta) {
    const double next_alpha = alpha + stepsize, next_beta = beta - stepsize;
    // cSum[l] < next_alpha * total: a float32 tensor against a Python float, compared in float32.
    const auto lo_cut = static_cast<float>(next_alpha * total), hi_cut = static_cast<float>(next_beta * total);
    int64_t l = start_bin, r = end_bin;
    while (l < end_bin && csum[l] < lo_cut) ++l;
    while (r > start_bin && csum[r] > hi_cut) --r;
    int64_t next_start_bin = start_bin, next_end_bin = end_bin;
    if ((l - start_bin) > (end_bin - r)) {
      next_start_bin = l;
      alpha = next_alpha;
    } else {
      next_end_bin = r;
      beta = next_beta;
    }
    if (next_start_bin == start_bin && next_end_bin == end_bin) continue;
    const double norm = compute_quantization_error(next_start_bin, next_end_bin);
    if (norm > norm_min) break;
    norm_min = norm;
    start_bin = next_start_bin;
    end_bin = next_end_bin;
  }
  const float new_min = min_ + bin_width * static_cast<float>(start_bin);
  const float new_max = min_ + bin_width * static_cast<float>(end_bin + 1);
  return {new_min, new_max};
}

TorchQParams HistogramObserver::calculate_qparams() const {
  if (!observed()) return {{1.0f}, {0}};
  const auto [mn, mx] = non_linear_param_search();
  return torch_calculate_qparams(&mn, &mx, 1, opt_);
}

}  // namespace qforge::quant
