// kernels16.hpp — kernels for 16-bit activations (W8A16, issue 18): int16 activation codes, int8
// symmetric weights, the arithmetic of requant.hpp Note [16-bit activations] (exact int64 accumulation,
// single-rounding requantization to int16). Same rules as kernels.hpp: pure noexcept functions over raw
// buffers, no allocation; every kernel exists as a scalar reference (ref/ops16.cpp, the textbook formula)
// and per-ISA variants (ops16__<isa>.cpp, generic/ops16_impl.inc) that must equal it bit for bit.
//
// The 16-bit kernels have their own table (Kernel16Table) and registry list (kernel16_registry()), kept
// next to the 8-bit ones so that the int8 registry stays unchanged; active_kernels16() follows the ISA
// active_kernels() dispatches to (QFORGE_ISA / force_isa select both).
//
// Layouts: activations are int16 codes, images NHWC with pixel strides as in kernels.hpp. GEMM:
//   C[m][n] = clamp(requantize_single64(Σ_k (A[m][k] − z_in)·W[n][k] + b[n], M_n) + z_out, act_min, act_max)
// with W given as PyTorch Linear weights [N][K] and packed once (PackedGemm16).
#pragma once

#include "engine/kernels/kernels.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace qforge::kernels {

inline constexpr int kGemm16Cols = 16;  // columns per packed panel

// Note [gemm16 packing]: N padded to n_pad (multiple of 16), K to 2·k2. Panel p (columns 16p..16p+15) at
// int16 offset 32·p·k2 holds, per k-pair i, the 16 columns' (w[2i], w[2i+1]) as adjacent int16 (the operand
// layout of vpmaddwd / vpdpwssd with the activation pair broadcast). Padding is 0. bias_eff folds the input
// zero point: b[n] − z_in·Σ_k W[n][k] (int64), so kernels multiply the raw codes.
struct Gemm16Weights {
  const std::int16_t* panels = nullptr;
  const std::int64_t* bias_eff = nullptr;    // [n_pad]
  const std::int32_t* bias = nullptr;        // [n] raw bias (zeros if none), for the reference
  const std::int32_t* multiplier = nullptr;  // [n_pad]
  const std::int32_t* shift = nullptr;       // [n_pad]
  std::int32_t n = 0, k = 0, k2 = 0, n_pad = 0;
  std::int32_t in_zero_point = 0, out_zero_point = 0, act_min = -32768, act_max = 32767;
};

// The reference reads weights back through this.
inline namespace QFORGE_KERNELS_ISA_NS {
inline std::int32_t packed16_weight(const Gemm16Weights& w, int n, int k) noexcept {
  return w.panels[(static_cast<std::int64_t>(n / kGemm16Cols) * w.k2 + k / 2) * 2 * kGemm16Cols +
                  (n % kGemm16Cols) * 2 + k % 2];
}
}  // inline namespace QFORGE_KERNELS_ISA_NS

struct Gemm16Layer {
  const std::int8_t* weights = nullptr;  // [n][k] (row stride k)
  int n = 0, k = 0;
  const std::int32_t* bias = nullptr;    // [n] or null
  std::int32_t in_zero_point = 0;
  const QuantizedMultiplier* multipliers = nullptr;  // [n] (per_channel) or [1]
  bool per_channel = true;
  std::int32_t out_zero_point = 0;
  ActivationRange range{-32768, 32767};
};

class PackedGemm16 {
public:
  PackedGemm16() = default;
  explicit PackedGemm16(const Gemm16Layer& layer);
  const Gemm16Weights& view() const noexcept { return view_; }

private:
  std::shared_ptr<const void> storage_;
  Gemm16Weights view_{};
};

// a: M×K int16 (row stride lda), c: M×N int16 (row stride ldc).
using Gemm16RequantFn = void (*)(int m, const std::int16_t* a, std::int64_t lda, const Gemm16Weights& w,
                                 std::int16_t* c, std::int64_t ldc, int threads) noexcept;

// Convolution over int16 NHWC: per group, im2col rows (K ordered kh, kw, c; padded taps hold z_in, so they
// contribute 0) and the group's GEMM. Depthwise convolutions are groups = channels (K = kh·kw).
struct Conv2d16Weights {
  Conv2dShape shape;
  const Gemm16Weights* groups = nullptr;  // [shape.groups]
};
class PackedConv2d16 {
public:
  PackedConv2d16() = default;
  // weights OIHW [out_c][in_c/groups][kh][kw]; multipliers [out_c].
  PackedConv2d16(const Conv2dShape& shape, const std::int8_t* weights_oihw, const std::int32_t* bias,
                 std::int32_t in_zero_point, const QuantizedMultiplier* multipliers, std::int32_t out_zero_point,
                 ActivationRange range);
  PackedConv2d16(const PackedConv2d16& o) : shape_(o.shape_), gemms_(o.gemms_) { bind(); }
  PackedConv2d16& operator=(const PackedConv2d16& o) {
    if (this != &o) {
      shape_ = o.shape_;
      gemms_ = o.gemms_;
      bind();
    }
    return *this;
  }
  const Conv2d16Weights& view() const noexcept { return view_; }
  // Bytes of im2col workspace a call needs per image (0 for dense 1x1 stride-1 ungrouped convs).
  std::size_t workspace_bytes() const noexcept;

private:
  void bind() noexcept;
  Conv2dShape shape_;
  std::vector<PackedGemm16> gemms_;
  std::vector<Gemm16Weights> views_;
  Conv2d16Weights view_{};
};
// workspace: workspace_bytes() (one image at a time).
using Conv2d16Fn = void (*)(const Conv2d16Weights& w, const std::int16_t* x, std::int16_t* y, void* workspace,
                            int threads) noexcept;

// Pooling (Pool2dParams of kernels.hpp; `type`, `float_average` unused): max ignores padded taps; average
// z + average_value(Σ(x − z), count).
using Pool2d16Fn = void (*)(const Pool2dParams& p, const std::int16_t* x, std::int16_t* y, int threads) noexcept;
// Global average: requantize_output64(Σ_s (x − z_in), multiplier, z_out, act_min, act_max).
using GlobalAvgPool16Fn = void (*)(const GlobalAvgPoolParams& p, const std::int16_t* x, std::int16_t* y,
                                   int threads) noexcept;
// y = add_value64(a, b, p) (fixed_point AddParams only).
using Add16Fn = void (*)(std::int64_t n, const std::int16_t* a, const std::int16_t* b, std::int16_t* y,
                         const AddParams& p) noexcept;
// Requantization between 16-bit encodings: identity → clamp; else requantize_output64(x − z_in, ...).
using Requant16Fn = void (*)(std::int64_t n, const std::int16_t* x, std::int16_t* y, const RequantParams& p) noexcept;
// y = quantize_value(x, inv_scale, z, qmin, qmax); y = dequantize_value(x, scale, z).
using Quantize16Fn = void (*)(std::int64_t n, const float* x, std::int16_t* y, float inv_scale, std::int32_t zero_point,
                              std::int32_t qmin, std::int32_t qmax) noexcept;
using Dequantize16Fn = void (*)(std::int64_t n, const std::int16_t* x, float* y, float scale,
                                std::int32_t zero_point) noexcept;

// LSTM step with int16 x and h (kernels.hpp RnnWeights semantics): `input`/`recurrent` are GEMMs whose
// epilogue is the Q3.12 gate requantization (z_out 0, range [−32768, 32767]), so the gate pre-activation is
// gate_preactivation64 of the two accumulators. c: [batch][hidden] int16. h_out may alias h_prev.
// workspace: 8·hidden·batch int16.
struct Rnn16Weights {
  Gemm16Weights input, recurrent;
  LstmCellParams cell;
  int hidden = 0;
};
using Lstm16StepFn = void (*)(const Rnn16Weights& w, int batch, const std::int16_t* x, std::int64_t ldx,
                              const std::int16_t* h_prev, std::int64_t ldh, std::int16_t* c, std::int16_t* h_out,
                              std::int64_t ldo, std::int16_t* workspace, int threads) noexcept;

enum class Kernel16Kind : std::uint8_t {
  gemm_requant, conv2d, maxpool2d, avgpool2d, global_avgpool, add, requant, quantize, dequantize, lstm_step
};
inline constexpr int kNumKernel16Kinds = 10;

struct Kernel16Table {
  Isa isa;
  Gemm16RequantFn gemm_requant;
  Conv2d16Fn conv2d;
  Pool2d16Fn maxpool2d, avgpool2d;
  GlobalAvgPool16Fn global_avgpool;
  Add16Fn add;
  Requant16Fn requant;
  Quantize16Fn quantize;
  Dequantize16Fn dequantize;
  Lstm16StepFn lstm_step;
};

struct Kernel16Info {
  const char* name;  // e.g. "qs16_qc8w_gemm_4x16c2_requant__avx2"
  Kernel16Kind kind;
  Isa isa;
};

const Kernel16Table& kernel16_table(Isa isa) noexcept;   // null functions unless compiled
const Kernel16Table& active_kernels16() noexcept;        // kernel16_table(active_isa())
std::span<const Kernel16Info> kernel16_registry() noexcept;
const char* kernel16_kind_name(Kernel16Kind kind) noexcept;
const char* kernel16_name(Kernel16Kind kind, Isa isa) noexcept;  // "?" if absent

}  // namespace qforge::kernels
