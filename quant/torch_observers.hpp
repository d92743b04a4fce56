// PyTorch 1.13's observers with their exact float32 arithmetic (torch/ao/quantization/observer.py,
// fake_quantize.py, aten fused_obs_fake_quant.cpp; reference: pytorch-fake-quant.md §7-§8).
//
//   MinMaxObserver                        running min/max (per tensor)
//   MovingAverageMinMaxObserver           first batch sets min/max, then m <- m + c*(cur - m)
//   PerChannelMinMaxObserver              running min/max per channel along ch_axis
//   MovingAveragePerChannelMinMaxObserver per-channel moving average
//   HistogramObserver                     running histogram + L2 search (torch_histogram_observer.cpp)
//   FusedMovingAvgObsFakeQuantize         moving average + ChooseQuantizationParams + fake quant per step
//
// forward(x) updates the statistics (float32 inputs, as torch observes them); calculate_qparams() returns
// torch's (scale, zero_point): scale is the float32 torch computes, bit for bit, and zero_point the same
// integer. Every formula is torch's order of float32 operations (Note [torch float32 order] in
// torch_observers.cpp); a double-precision rewrite would differ in the last bit.
//
// The calibration schemes `torch_minmax`, `torch_moving_average` and `torch_histogram` (quant/analyzer.hpp)
// run these observers per quantizer and map torch's grid to an Encoding with encoding_from_torch_qparams:
// torch's q in [qmin, qmax] with x = s*(q - z) is AIMET's q' = q - qmin in [0, N], offset = qmin - z.
#pragma once

#include "engine/tensor.hpp"
#include "quant/encoding.hpp"

#include <cstdint>
#include <limits>
#include <optional>
#include <utility>
#include <vector>

namespace qforge::quant {

enum class TorchDType { quint8, qint8, qint32 };
enum class TorchQScheme { per_tensor_affine, per_tensor_symmetric, per_channel_affine, per_channel_symmetric };

bool is_per_channel(TorchQScheme q);
bool is_symmetric(TorchQScheme q);

struct TorchObserverOptions {
  TorchDType dtype = TorchDType::quint8;
  TorchQScheme qscheme = TorchQScheme::per_tensor_affine;
  bool reduce_range = false;
  std::optional<int64_t> quant_min = std::nullopt;  // both or neither (torch's has_customized_qrange)
  std::optional<int64_t> quant_max = std::nullopt;
  float eps = std::numeric_limits<float>::epsilon();
  float averaging_constant = 0.01f;  // moving-average observers and the fused op
  int64_t ch_axis = 0;               // per-channel observers
  int bins = 2048;                   // HistogramObserver
  int upsample_rate = 128;           // HistogramObserver
};

struct TorchQParams {
  std::vector<float> scale;           // one per tensor, or one per channel
  std::vector<int32_t> zero_point;
};

// torch's calculate_qmin_qmax (with its custom-range asserts, as InputError naming the field).
std::pair<int64_t, int64_t> torch_qmin_qmax(const TorchObserverOptions& o);

// UniformQuantizationObserverBase._calculate_qparams on float32 min/max (per tensor: n = 1). An observer
// that saw nothing (min = +inf, max = -inf) gives scale 1, zero point 0 as torch does.
TorchQParams torch_calculate_qparams(const float* min_val, const float* max_val, int64_t n,
                                     const TorchObserverOptions& o);

// ChooseQuantizationParams (aten/src/ATen/native/quantized/cpu/QuantUtils.h): the fused op's qparams.
struct TorchChosenQParams {
  float scale;
  int32_t zero_point;
};
TorchChosenQParams torch_choose_qparams(float min, float max, int32_t qmin, int32_t qmax, bool preserve_sparsity);

// Base: options, integer range and the qparams formula.
class TorchObserverBase {
public:
  explicit TorchObserverBase(TorchObserverOptions o, const char* who);
  const TorchObserverOptions& options() const { return opt_; }
  int64_t quant_min() const { return qmin_; }
  int64_t quant_max() const { return qmax_; }

protected:
  TorchObserverOptions opt_;
  int64_t qmin_ = 0, qmax_ = 255;
};

class MinMaxObserver : public TorchObserverBase {
public:
  explicit MinMaxObserver(TorchObserverOptions o = {});
  void forward(const Tensor& x);
  void forward(const float* x, int64_t n);  // one observed tensor (a batch)
  TorchQParams calculate_qparams() const;
  float min_val() const { return min_; }
  float max_val() const { return max_; }
  bool observed() const { return !(min_ == kInf && max_ == -kInf); }
  void reset_min_max_vals();

protected:
  MinMaxObserver(TorchObserverOptions o, const char* who);
  static constexpr float kInf = std::numeric_limits<float>::infinity();
  bool moving_average_ = false;
  float min_ = kInf, max_ = -kInf;
};

class MovingAverageMinMaxObserver : public MinMaxObserver {
public:
  explicit MovingAverageMinMaxObserver(TorchObserverOptions o = {});
};

class PerChannelMinMaxObserver : public TorchObserverBase {
public:
  explicit PerChannelMinMaxObserver(TorchObserverOptions o = {.qscheme = TorchQScheme::per_channel_affine});
  void forward(const Tensor& x);
  // x as [channels][inner] rows (ch_axis already moved to the front and the rest flattened).
  void forward_rows(const float* x, int64_t channels, int64_t inner);
  TorchQParams calculate_qparams() const;
  const std::vector<float>& min_val() const { return min_; }
  const std::vector<float>& max_val() const { return max_; }

protected:
  PerChannelMinMaxObserver(TorchObserverOptions o, const char* who);
  bool moving_average_ = false;
  std::vector<float> min_, max_;
};

class MovingAveragePerChannelMinMaxObserver : public PerChannelMinMaxObserver {
public:
  explicit MovingAveragePerChannelMinMaxObserver(
      TorchObserverOptions o = {.qscheme = TorchQScheme::per_channel_affine});
};

// HistogramObserver (torch_histogram_observer.cpp). Per tensor only.
class HistogramObserver : public TorchObserverBase {
public:
  explicit HistogramObserver(TorchObserverOptions o = {});
  void forward(const Tensor& x);
  void forward(const float* x, int64_t n);
  TorchQParams calculate_qparams() const;
  // _non_linear_param_search: the [min, max] handed to _calculate_qparams.
  std::pair<float, float> non_linear_param_search() const;
  float min_val() const { return min_; }
  float max_val() const { return max_; }
  const std::vector<float>& histogram() const { return hist_; }
  bool observed() const { return !(min_ == std::numeric_limits<float>::infinity() &&
                                   max_ == -std::numeric_limits<float>::infinity()); }

private:
  double compute_quantization_error(int64_t next_start_bin, int64_t next_end_bin) const;
  std::vector<float> hist_;
  float min_ = std::numeric_limits<float>::infinity(), max_ = -std::numeric_limits<float>::infinity();
  int64_t dst_nbins_ = 256;
};

// FusedMovingAvgObsFakeQuantize: per step (forward), when observer_enabled the moving average of min/max
// is updated (per tensor, or per channel along axis 0 for per-channel qschemes); when fake_quant_enabled
// scale/zero_point are recomputed with ChooseQuantizationParams (NOT the Python formula: symmetric
// divides by 128/127, scale >= 6.1e-5; pytorch-fake-quant.md §8) and x is fake-quantized with torch's
// fake_quantize_per_tensor_affine / per_channel_affine (quant/fake_quant.hpp: rint(x*(1/s)) ties to even,
// zero point added after rounding, STE mask). Otherwise x is returned unchanged.
// calculate_qparams() is the Python observer's formula on the same running min/max, as in torch.
class FusedMovingAvgObsFakeQuantize {
public:
  // Defaults as torch's: quint8, per_tensor_affine, quant range [0, 255], averaging 0.01.
  explicit FusedMovingAvgObsFakeQuantize(TorchObserverOptions o = {.quant_min = 0, .quant_max = 255});
  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }
  TorchQParams calculate_qparams() const;

  bool observer_enabled = true;
  bool fake_quant_enabled = true;

  const std::vector<float>& scale() const { return scale_; }
  const std::vector<int32_t>& zero_point() const { return zero_point_; }
  const std::vector<float>& running_min() const { return min_; }
  const std::vector<float>& running_max() const { return max_; }
  int64_t quant_min() const { return qmin_; }
  int64_t quant_max() const { return qmax_; }

private:
  TorchObserverOptions opt_;
  int64_t qmin_ = 0, qmax_ = 255;
  bool per_channel_ = false, symmetric_ = false;
  std::vector<float> min_, max_;  // per tensor: one entry, starting at +inf/-inf
  std::vector<float> scale_{1.0f};
  std::vector<int32_t> zero_point_{0};
};

// torch's grid as an Encoding on `grid` (whose steps must equal qmax - qmin): delta = scale (exactly the
// float32 value), offset = qmin - zero_point. Throws InputError naming `who` for a non-finite scale.
Encoding encoding_from_torch_qparams(float scale, int32_t zero_point, int64_t qmin, int64_t qmax,
                                     const GridSpec& grid, const char* who = "torch observer");

// The torch observer options that correspond to a quantizer grid: asymmetric -> per_tensor_affine on
// [0, N] (quint8 for 8 bits), symmetric -> per_tensor_symmetric on [-2^(b-1), 2^(b-1) - 1] with zero point 0
// ([-2^(b-1) + 1, ...] when strict). The unsigned-symmetric variant has no torch equivalent and is
// quantized as signed symmetric.
TorchObserverOptions torch_options_for_grid(const GridSpec& grid);

}  // namespace qforge::quant
