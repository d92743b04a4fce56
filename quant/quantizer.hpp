// Quantizer: one tensor quantizer of the simulation (DESIGN.md §4).
//
// A Quantizer owns its settings (grid, per-channel axis, scheme, rounding, range learning), its
// encoding(s) — one per tensor, or one per channel along `axis` (0 for conv/linear weights) — its
// calibration statistics, an enabled flag and, with range learning, its learnable range parameters.
//
// forward(x) depends on the state:
//   disabled, or no encoding yet  -> x unchanged (an uncalibrated quantizer is a pass-through);
//   calibrating                   -> statistics updated from x, x returned unchanged (AIMET's ANALYSIS
//                                    mode: calibration sees float activations everywhere);
//   float quantizer (bitwidth 16) -> rounded to half precision and back, gradient passed through;
//   otherwise                     -> quantize-dequantize, one fused autograd op (QdqOp in quantizer.cpp).
//
// Note [STE mask] The gradient w.r.t. x is the straight-through estimator clipped to the grid: g where
// the rounded value r = round(x/delta) lies on the grid [offset, N + offset], 0 outside. This is
// AIMET's and PyTorch's mask (inclusive, on the rounded value).
//
// Range learning (RangeLearning):
//   aimet  learnable min/max per channel (AIMET v1 LearnedGridQuantWrapper, aimet-compat.md §6.2):
//          dL/dmin = -S/N + max*N/(max-min)^2 * delta*O,  dL/dmax = S/N - min*N/(max-min)^2 * delta*O,
//          symmetric: dL/dmax = S/floor(N/2), dL/dmin = -dL/dmax, where S = sum g*(in ? r - x/delta :
//          clamp(r)) and O = sum of g over clipped elements (sums over all but the channel axis). The
//          parameters are gated to min <= 0 <= max, max >= min + 1e-5 before every forward (as AIMET).
//   lsq    learnable scale and (for asymmetric grids) zero point, LSQ/PyTorch gradients
//          (dscale = S, dzp = -scale*O) times LSQ's gradient scale g = 1/sqrt(numel * Qp): numel = the
//          elements sharing one scale (per sample for activations: numel / batch), Qp = the number of
//          positive grid levels (N + offset). Symmetric grids keep the zero point fixed (no gradient).
// The encoding always reflects the current parameters (encodings() re-derives it).
//
// Weights: quantizers see the FP32 shadow weights; only the forward value is quantized. A parameter
// quantizer without range learning keeps the encoding it was calibrated with (AIMET v2 behaviour; call
// compute_encoding again to refresh it).
#pragma once

#include "engine/random.hpp"
#include "engine/tensor.hpp"
#include "quant/analyzer.hpp"
#include "quant/blockwise.hpp"
#include "quant/encoding.hpp"

#include <optional>
#include <string>
#include <vector>

namespace qforge::quant {

enum class RangeLearning { none, aimet, lsq };
enum class RoundingMode { nearest, stochastic };

RangeLearning parse_range_learning(const std::string& s);  // none | aimet | lsq
const char* range_learning_name(RangeLearning r);

struct QuantizerSettings {
  GridSpec grid;
  bool per_channel = false;
  int64_t axis = 0;  // channel axis when per_channel
  // Blockwise / LPBQ weights (quant/blockwise.hpp Note [Blockwise layout], Note [LPBQ]): one encoding per
  // (output channel, block of block_size input channels). Implies per_channel along axis 0.
  BlockSpec block;
  QuantScheme scheme = QuantScheme::tf;
  double percentile = 99.99;
  RoundingMode rounding = RoundingMode::nearest;
  RangeLearning range_learning = RangeLearning::none;
  bool enabled = true;
  bool is_param = false;    // weights/biases: histogram without first-batch expansion, bitwidth 32 allowed
  bool allow_32 = false;    // biases may use 32 bits
  HistogramOptions histogram;
  std::optional<double> constraint_min, constraint_max;  // AIMET encoding_constraints
  uint64_t seed = 0;        // stochastic rounding stream
};

class Quantizer {
public:
  explicit Quantizer(QuantizerSettings s = {}, std::string name = "");

  const std::string& name() const { return name_; }
  void set_name(std::string n) { name_ = std::move(n); }
  const QuantizerSettings& settings() const { return s_; }
  // Changing the grid/scheme/per-channel drops the encoding (recalibrate afterwards).
  void set_settings(const QuantizerSettings& s);

  Tensor forward(const Tensor& x);
  Tensor operator()(const Tensor& x) { return forward(x); }

  // ---- calibration ----
  void start_calibration();  // reset stats, observe on forward
  bool calibrating() const { return calibrating_; }
  void observe(const Tensor& x);
  // Encoding(s) from the statistics; ends calibration; initialises range parameters. A frozen
  // quantizer keeps its encoding. Returns false (and keeps the old state) when nothing was observed.
  bool compute_encoding();
  void reset_stats();
  void cancel_calibration() { calibrating_ = false; }  // keeps the previous encoding

  // ---- state ----
  bool enabled() const { return s_.enabled; }
  void set_enabled(bool on) { s_.enabled = on; }
  bool frozen() const { return frozen_; }
  void freeze() { frozen_ = true; }
  void unfreeze() { frozen_ = false; }
  bool has_encoding() const { return !enc_.empty(); }
  // Current encoding(s), re-derived from learnable parameters when range learning is on.
  const std::vector<Encoding>& encodings() const;
  void set_encodings(std::vector<Encoding> e);  // also initialises the range parameters
  // LPBQ quantizers: the per-channel scales and block multipliers behind encodings() (Note [LPBQ]);
  // empty otherwise. set_lpbq sets them (and the block encodings) as loaded from a file.
  const LpbqScales& lpbq() const;
  void set_lpbq(const LpbqScales& s, int bitwidth);
  // Encodings as read from a file: per-tensor, per-channel (more than one), or blockwise/LPBQ when `block`
  // is given (its spec replaces this quantizer's; without it the quantizer stops being blockwise).
  void assign(std::vector<Encoding> e, const BlockEntry* block);
  // Blockwise: blocks per output channel of the last tensor seen (0 before any); the file form of the
  // block layout (BlockEntry) of this quantizer, nullopt unless blockwise.
  int64_t blocks_per_row() const { return nb_; }
  std::optional<BlockEntry> block_entry() const;
  void clear_encoding();

  // Learnable range parameters (empty without range learning or before an encoding exists):
  // aimet: {min, max}; lsq: {scale} or {scale, zero_point}. The optimizer updates them in place.
  std::vector<Tensor> parameters() const;
  void set_range_learning(RangeLearning r);

  // For callers that run this quantizer inside their own loop (the fused recurrent sequence op,
  // nn/recurrent_cells.hpp Note [Fused range learning]): what forward(x) would do to an x of shape
  // `x_shape`, as plain data; nullopt unless that is a nearest-rounding per-tensor integer grid of at
  // most 2^16 levels (not disabled, uncalibrated, calibrating, per-channel, stochastic or float). With
  // range learning the parameters are gated first, as forward does, and their gradients are
  // dp0 = s0*S + o0*O, dp1 = s1*S + o1*O over the GradSums S, O (quant/qdq_kernels.hpp) of every element
  // quantized with this description: the same rule (and LSQ gradient scale) as the quantizer op.
  struct FusedQdq {
    AffineParams grid;
    Tensor p0, p1;  // range parameters; undefined without range learning
    double s0 = 0, o0 = 0, s1 = 0, o1 = 0;
  };
  std::optional<FusedQdq> fused_qdq(const Shape& x_shape);

  std::string describe() const;  // one line: name, settings, encoding(s)

private:
  void init_params();
  void set_settings_checked(const QuantizerSettings& s);
  Encoding compute_encoding_float() const;
  void gate_params();
  void check_input(const Tensor& x) const;
  std::vector<AffineParams> affine_from_params() const;
  void snap_lpbq(std::vector<double>& deltas) const;  // LPBQ: block scales onto c[o]*m[o,b]

  QuantizerSettings s_;
  std::string name_;
  bool calibrating_ = false;
  bool frozen_ = false;
  std::vector<TensorStats> stats_;
  mutable std::vector<Encoding> enc_;
  mutable LpbqScales lpbq_;
  mutable int64_t nb_ = 0;  // blockwise: blocks per output channel (from the last observed/checked tensor)  // LPBQ only: enc_[i].delta == channel_scale[o] * multiplier[i]
  Tensor p0_, p1_;  // range parameters (see class comment)
  Generator gen_;
};

}  // namespace qforge::quant
