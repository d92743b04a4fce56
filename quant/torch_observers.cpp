// PyTorch 1.13 observers: min/max, moving average, per-channel, qparams, the fused op. See
// torch_observers.hpp; the histogram observer is in torch_histogram_observer.cpp.
//
// Note [torch float32 order] torch keeps min_val/max_val/scale in float32 tensors and every Python
// expression is one float32 tensor op (a Python float operand is first rounded to float32, as a wrapped
// scalar of a float32 tensor op is). So `min + c*(cur - min)` is three float32 roundings, `scale =
// max_pos/(float(qmax - qmin)/2)` one float32 division, and torch.round is round-half-even (nearbyint).
// This file writes each such expression as the same float32 operations in the same order; the compiler
// must not contract them (qforge is built without -ffast-math, and x86-64 baseline has no FMA).
#include "quant/torch_observers.hpp"

#include "engine/kernels/quantize.hpp"
#include "quant/fake_quant.hpp"

#include <algorithm>
#include <cmath>

namespace qforge::quant {

bool is_per_channel(TorchQScheme q) {
  return q == TorchQScheme::per_channel_affine || q == TorchQScheme::per_channel_symmetric;
}
bool is_symmetric(TorchQScheme q) {
  return q == TorchQScheme::per_tensor_symmetric || q == TorchQScheme::per_channel_symmetric;
}

namespace {

int64_t floor_div2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }  // Python v // 2

constexpr float kInf = std::numeric_limits<float>::infinity();

// x as a float32 vector (torch observes x.to(float32)).
std::vector<float> as_f32(const Tensor& x) { return x.detach().to_vector<float>(); }

// Rows [channels][inner] with `axis` moved to the front (torch: permute(0 <-> axis), flatten(1)); the
// order inside a row does not matter for min/max.
std::vector<float> rows_of(const Tensor& x, int64_t axis, int64_t& channels, int64_t& inner) {
  QFORGE_CHECK(x.dim() >= 1, "torch per-channel observer: input must have at least one dimension");
  QFORGE_CHECK(axis >= 0 && axis < x.dim(), "torch per-channel observer: ch_axis {} out of range for shape {}",
               axis, shape_str(x.shape()));
  const std::vector<float> v = as_f32(x);
  int64_t outer = 1, in = 1;
  for (int64_t d = 0; d < axis; ++d) outer *= x.size(d);
  for (int64_t d = axis + 1; d < x.dim(); ++d) in *= x.size(d);
  channels = x.size(axis);
  inner = outer * in;
  std::vector<float> r(v.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < in; ++i) r[c * inner + o * in + i] = v[(o * channels + c) * in + i];
  return r;
}

std::pair<float, float> aminmax(const float* x, int64_t n) {
  float mn = x[0], mx = x[0];
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  return {mn, mx};
}

// torch.min / torch.max of two float32 values (NaN propagates).
float tmin(float a, float b) { return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : std::min(a, b); }
float tmax(float a, float b) { return (a != a || b != b) ? std::numeric_limits<float>::quiet_NaN() : std::max(a, b); }

// One moving-average step (observer.py and fused_obs_fake_quant.cpp: m + c*(cur - m), float32).
float ema(float m, float c, float cur) {
  const float d = cur - m;
  const float cd = c * d;
  return m + cd;
}

}  // namespace

std::pair<int64_t, int64_t> torch_qmin_qmax(const TorchObserverOptions& o) {
  const bool custom = o.quant_min.has_value() && o.quant_max.has_value();
  if (custom) {
    const int64_t qmin = *o.quant_min, qmax = *o.quant_max;
    if (!(qmin <= 0 && 0 <= qmax))
      throw InputError(fmt::format("torch observer: quant_min/quant_max [{}, {}] must include 0", qmin, qmax));
    if (!(qmin < qmax))
      throw InputError(fmt::format("torch observer: quant_min {} must be less than quant_max {}", qmin, qmax));
    const int64_t len = qmax - qmin + 1;
    if (o.dtype == TorchDType::qint8 && len > 256)
      throw InputError(fmt::format("torch observer: quant range [{}, {}] exceeds qint8's 256 values", qmin, qmax));
    if (o.dtype == TorchDType::qint32 && len > (int64_t(1) << 31))
      throw InputError(fmt::format("torch observer: quant range [{}, {}] exceeds 2^31 values", qmin, qmax));
    if (o.reduce_range) return {floor_div2(qmin), floor_div2(qmax)};
    return {qmin, qmax};
  }
  switch (o.dtype) {
    case TorchDType::qint8: return o.reduce_range ? std::pair<int64_t, int64_t>{-64, 63} : std::pair<int64_t, int64_t>{-128, 127};
    case TorchDType::quint8: return o.reduce_range ? std::pair<int64_t, int64_t>{0, 127} : std::pair<int64_t, int64_t>{0, 255};
    case TorchDType::qint32: return {-(int64_t(1) << 31), (int64_t(1) << 31) - 1};
  }
  return {0, 255};
}

TorchQParams torch_calculate_qparams(const float* min_val, const float* max_val, int64_t n,
                                     const TorchObserverOptions& o) {
  TorchQParams r;
  // check_min_max_valid: nothing observed -> ([1.0], [0]).
  if (n == 0 || (n == 1 && min_val[0] == kInf && max_val[0] == -kInf)) {
    r.scale = {1.0f};
    r.zero_point = {0};
    return r;
  }
  const auto [qmin, qmax] = torch_qmin_qmax(o);
  const bool custom = o.quant_min.has_value() && o.quant_max.has_value();
  r.scale.resize(n);
  r.zero_point.assign(n, 0);
  for (int64_t i = 0; i < n; ++i) {
    QFORGE_CHECK(min_val[i] <= max_val[i], "torch observer: min {} should be less than max {} (channel {})",
                 min_val[i], max_val[i], i);
    const float min_neg = tmin(min_val[i], 0.0f);
    float max_pos = tmax(max_val[i], 0.0f);
    if (is_symmetric(o.qscheme)) {
      max_pos = tmax(-min_neg, max_pos);
      const auto half = static_cast<float>(static_cast<double>(qmax - qmin) / 2);
      r.scale[i] = tmax(max_pos / half, o.eps);
      if (o.dtype == TorchDType::quint8) r.zero_point[i] = static_cast<int32_t>(custom ? floor_div2(qmin + qmax) : 128);
    } else {
      const float range = max_pos - min_neg;
      const float s = tmax(range / static_cast<float>(qmax - qmin), o.eps);
      r.scale[i] = s;
      const float q = std::nearbyint(min_neg / s);  // torch.round: half to even
      const int64_t zp = qmin - static_cast<int64_t>(static_cast<int32_t>(q));
      r.zero_point[i] = static_cast<int32_t>(std::clamp(zp, qmin, qmax));
    }
  }
  return r;
}

TorchChosenQParams torch_choose_qparams(float min, float max, int32_t qmin, int32_t qmax, bool preserve_sparsity) {
  QFORGE_CHECK(min <= max, "ChooseQuantizationParams: min {} should be less than or equal to max {}", min, max);
  if (min < 0 && max > 0 && preserve_sparsity) {
    const int symmetric_qmin = -((qmax - qmin) / 2 + 1);
    const int symmetric_qmax = (qmax - qmin) / 2;
    const double max_scale = std::max(std::fabs(min / static_cast<float>(symmetric_qmin)),
                                      std::fabs(max / static_cast<float>(symmetric_qmax)));
    min = static_cast<float>(max_scale * symmetric_qmin);
    max = static_cast<float>(max_scale * symmetric_qmax);
  }
  min = std::min(min, 0.f);
  max = std::max(max, 0.f);
  QFORGE_CHECK(qmin < qmax, "ChooseQuantizationParams: qmin {} should be less than qmax {}", qmin, qmax);
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) scale = 0.1;
  constexpr float kSmallScale = 6.1e-5f;  // SMALL_SCALE_THRESHOLD
  if (scale < kSmallScale) {
    const auto org_scale = static_cast<float>(scale);
    scale = kSmallScale;
    if (min == 0.0f) {
      max = kSmallScale * static_cast<float>(qmax - qmin);
    } else if (max == 0.0f) {
      min = -kSmallScale * static_cast<float>(qmax - qmin);
    } else {
      const float amplifier = kSmallScale / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zp_from_min = qmin - min / scale;
  const double zp_from_max = qmax - max / scale;
  const double zp_from_min_error = std::abs(qmin) - std::abs(min / scale);
  const double zp_from_max_error = std::abs(qmax) - std::abs(max / scale);
  double initial = zp_from_min_error < zp_from_max_error ? zp_from_min : zp_from_max;
  if (min < 0 && max > 0 && preserve_sparsity) initial = static_cast<double>(qmin + qmax) / 2;
  int32_t nudged = 0;
  if (initial < qmin) nudged = qmin;
  else if (initial > qmax) nudged = qmax;
  else nudged = static_cast<int32_t>(std::nearbyint(initial));
  return {static_cast<float>(scale), nudged};
}

// ---- observers ---------------------------------------------------------------------------------------

TorchObserverBase::TorchObserverBase(TorchObserverOptions o, const char* who) : opt_(o) {
  std::tie(qmin_, qmax_) = torch_qmin_qmax(opt_);
  if (is_symmetric(opt_.qscheme) && opt_.reduce_range && opt_.dtype == TorchDType::quint8)
    throw InputError(fmt::format("{}: cannot reduce range for symmetric quantization for quint8", who));
  if (!(opt_.eps > 0)) throw InputError(fmt::format("{}: eps must be positive, got {}", who, opt_.eps));
}

MinMaxObserver::MinMaxObserver(TorchObserverOptions o) : MinMaxObserver(o, "MinMaxObserver") {}

MinMaxObserver::MinMaxObserver(TorchObserverOptions o, const char* who) : TorchObserverBase(o, who) {
  if (is_per_channel(opt_.qscheme))
    throw InputError(fmt::format("{}: qscheme must be per_tensor_affine or per_tensor_symmetric", who));
}

void MinMaxObserver::forward(const Tensor& x) {
  if (x.numel() == 0) return;
  const std::vector<float> v = as_f32(x);
  forward(v.data(), static_cast<int64_t>(v.size()));
}

void MinMaxObserver::forward(const float* x, int64_t n) {
  if (n <= 0) return;
  const auto [cmin, cmax] = aminmax(x, n);
  if (!moving_average_) {
    min_ = tmin(cmin, min_);
    max_ = tmax(cmax, max_);
  } else if (min_ == kInf && max_ == -kInf) {
    min_ = cmin;
    max_ = cmax;
  } else {
    min_ = ema(min_, opt_.averaging_constant, cmin);
    max_ = ema(max_, opt_.averaging_constant, cmax);
  }
}

TorchQParams MinMaxObserver::calculate_qparams() const { return torch_calculate_qparams(&min_, &max_, 1, opt_); }

void MinMaxObserver::reset_min_max_vals() {
  min_ = kInf;
  max_ = -kInf;
}

MovingAverageMinMaxObserver::MovingAverageMinMaxObserver(TorchObserverOptions o)
    : MinMaxObserver(o, "MovingAverageMinMaxObserver") {
  moving_average_ = true;
}

PerChannelMinMaxObserver::PerChannelMinMaxObserver(TorchObserverOptions o)
    : PerChannelMinMaxObserver(o, "PerChannelMinMaxObserver") {}

PerChannelMinMaxObserver::PerChannelMinMaxObserver(TorchObserverOptions o, const char* who)
    : TorchObserverBase(o, who) {
  if (!is_per_channel(opt_.qscheme))
    throw InputError(fmt::format("{}: qscheme must be per_channel_affine or per_channel_symmetric", who));
}

void PerChannelMinMaxObserver::forward(const Tensor& x) {
  if (x.numel() == 0) return;
  int64_t channels = 0, inner = 0;
  const std::vector<float> r = rows_of(x, opt_.ch_axis, channels, inner);
  forward_rows(r.data(), channels, inner);
}

void PerChannelMinMaxObserver::forward_rows(const float* x, int64_t channels, int64_t inner) {
  if (channels * inner == 0) return;
  const bool first = min_.empty();
  QFORGE_CHECK(first || static_cast<int64_t>(min_.size()) == channels,
               "torch per-channel observer: {} channels after {} in earlier batches", channels, min_.size());
  if (first) {
    min_.assign(channels, 0.0f);
    max_.assign(channels, 0.0f);
  }
  for (int64_t c = 0; c < channels; ++c) {
    const auto [cmin, cmax] = aminmax(x + c * inner, inner);
    if (first) {
      min_[c] = cmin;
      max_[c] = cmax;
    } else if (moving_average_) {
      min_[c] = ema(min_[c], opt_.averaging_constant, cmin);
      max_[c] = ema(max_[c], opt_.averaging_constant, cmax);
    } else {
      min_[c] = tmin(cmin, min_[c]);
      max_[c] = tmax(cmax, max_[c]);
    }
  }
}

TorchQParams PerChannelMinMaxObserver::calculate_qparams() const {
  return torch_calculate_qparams(min_.data(), max_.data(), static_cast<int64_t>(min_.size()), opt_);
}

MovingAveragePerChannelMinMaxObserver::MovingAveragePerChannelMinMaxObserver(TorchObserverOptions o)
    : PerChannelMinMaxObserver(o, "MovingAveragePerChannelMinMaxObserver") {
  moving_average_ = true;
}

// ---- fused observer + fake quant --------------------------------------------------------------------

FusedMovingAvgObsFakeQuantize::FusedMovingAvgObsFakeQuantize(TorchObserverOptions o) : opt_(o) {
  const char* who = "FusedMovingAvgObsFakeQuantize";
  if (opt_.quant_min && opt_.quant_max) {
    const int64_t lo = opt_.dtype == TorchDType::quint8 ? 0 : (opt_.dtype == TorchDType::qint8 ? -128 : INT32_MIN);
    const int64_t hi = opt_.dtype == TorchDType::quint8 ? 255 : (opt_.dtype == TorchDType::qint8 ? 127 : INT32_MAX);
    if (*opt_.quant_min > *opt_.quant_max)
      throw InputError(fmt::format("{}: quant_min {} must be <= quant_max {}", who, *opt_.quant_min, *opt_.quant_max));
    if (*opt_.quant_min < lo || *opt_.quant_max > hi)
      throw InputError(fmt::format("{}: quant_min/quant_max [{}, {}] out of the dtype's bounds [{}, {}]", who,
                                   *opt_.quant_min, *opt_.quant_max, lo, hi));
  }
  const TorchObserverBase base(opt_, who);  // validates like the wrapped observer
  qmin_ = base.quant_min();
  qmax_ = base.quant_max();
  per_channel_ = is_per_channel(opt_.qscheme);
  symmetric_ = is_symmetric(opt_.qscheme);
  if (per_channel_ && opt_.ch_axis != 0)
    throw InputError(fmt::format("{}: per-channel fake quant is only supported on ch_axis 0, got {}", who,
                                 opt_.ch_axis));
  if (!per_channel_) {
    min_ = {kInf};
    max_ = {-kInf};
  }
}

Tensor FusedMovingAvgObsFakeQuantize::forward(const Tensor& x) {
  if (per_channel_) {
    QFORGE_CHECK(x.dim() >= 2, "FusedMovingAvgObsFakeQuantize: per-channel input needs >= 2 dimensions, got {}",
                 shape_str(x.shape()));
    const int64_t c = x.size(0);
    if (min_.empty()) {
      min_.assign(c, kInf);
      max_.assign(c, -kInf);
      scale_.assign(c, 1.0f);
      zero_point_.assign(c, 0);
    }
    QFORGE_CHECK(static_cast<int64_t>(min_.size()) == c, "FusedMovingAvgObsFakeQuantize: {} channels, expected {}",
                 c, min_.size());
  }
  if (observer_enabled && x.numel() > 0) {
    const std::vector<float> v = as_f32(x);
    const int64_t rows = per_channel_ ? x.size(0) : 1;
    const int64_t inner = static_cast<int64_t>(v.size()) / rows;
    for (int64_t r = 0; r < rows; ++r) {
      const auto [cmin, cmax] = aminmax(v.data() + r * inner, inner);
      min_[r] = std::isinf(min_[r]) ? cmin : ema(min_[r], opt_.averaging_constant, cmin);
      max_[r] = std::isinf(max_[r]) ? cmax : ema(max_[r], opt_.averaging_constant, cmax);
    }
  }
  if (!fake_quant_enabled) return x;
  for (size_t r = 0; r < min_.size(); ++r) {
    const TorchChosenQParams q = torch_choose_qparams(min_[r], max_[r], static_cast<int32_t>(qmin_),
                                                      static_cast<int32_t>(qmax_), symmetric_);
    scale_[r] = q.scale;
    zero_point_[r] = q.zero_point;
  }
  if (!per_channel_) return fake_quantize_per_tensor_affine(x, scale_[0], zero_point_[0], qmin_, qmax_);
  const auto c = static_cast<int64_t>(scale_.size());
  return fake_quantize_per_channel_affine(x, Tensor::from_vector(scale_, {c}), Tensor::from_vector(zero_point_, {c}),
                                          0, qmin_, qmax_);
}

TorchQParams FusedMovingAvgObsFakeQuantize::calculate_qparams() const {
  return torch_calculate_qparams(min_.data(), max_.data(), static_cast<int64_t>(min_.size()), opt_);
}

// ---- encodings ----------------------------------------------------------------------------------------

Encoding encoding_from_torch_qparams(float scale, int32_t zero_point, int64_t qmin, int64_t qmax,
                                     const GridSpec& grid, const char* who) {
  if (!(scale > 0) || !std::isfinite(scale))
    throw InputError(fmt::format("{}: torch scale {} is not a positive finite number (range too wide?)", who, scale));
  const int64_t steps = num_steps(grid.bitwidth, grid.symmetric && grid.strict_symmetric);
  QFORGE_CHECK(qmax - qmin == steps, "{}: torch range [{}, {}] does not have the grid's {} steps", who, qmin, qmax,
               steps);
  return encoding_from_scale_offset(static_cast<double>(scale), static_cast<double>(qmin - zero_point), grid);
}

TorchObserverOptions torch_options_for_grid(const GridSpec& g) {
  TorchObserverOptions o;
  const int64_t b = g.bitwidth;
  if (!g.symmetric) {
    o.qscheme = TorchQScheme::per_tensor_affine;
    o.dtype = TorchDType::quint8;
    if (b != 8) {
      o.quant_min = 0;
      o.quant_max = (int64_t(1) << b) - 1;
    }
    return o;
  }
  o.qscheme = TorchQScheme::per_tensor_symmetric;
  o.dtype = b <= 8 ? TorchDType::qint8 : TorchDType::qint32;
  const int64_t half = int64_t(1) << (b - 1);
  if (b != 8 || g.strict_symmetric) {
    o.quant_min = g.strict_symmetric ? -half + 1 : -half;
    o.quant_max = half - 1;
  }
  return o;
}

}  // namespace qforge::quant
