// kernels.hpp — qforge's int8 compute kernels: pure functions over raw buffers (DESIGN.md §3).
//
// Layering: kernels know nothing about Tensor. Each kernel takes raw pointers, sizes/strides and a params
// struct (usually a pre-packed "weights view"), allocates nothing, throws nothing and returns nothing. The
// arithmetic they implement is defined once in requant.hpp; each kernel exists as
//   ref::         scalar reference, the textbook formula (engine/kernels/ref/*.cpp)
//   baseline::    SSE4.2 (x86-64-v2) translation units            (*__baseline.cpp)
//   avx2::        AVX2 + FMA                                       (*__avx2.cpp)
//   avx512vnni::  AVX-512 F/BW/VL/DQ + VNNI                        (*__avx512vnni.cpp)
//   neon::        AArch64 Advanced SIMD (armv8-a)                  (*__neon.cpp)
//   neondot::     AArch64 Advanced SIMD + dot product (armv8.2-a)  (*__neondot.cpp)
// and every variant produces bit-identical integers (tests/engine/kernels). Only the host architecture's
// ISAs are compiled (x86-64: ref, baseline, avx2, avx512vnni; aarch64: ref, neon, neondot). The active ISA
// is picked once from cpuid/xgetbv (x86) or AT_HWCAP (aarch64), overridable with QFORGE_ISA=<name> or
// force_isa().
//
// Data layout conventions:
// - 8-bit activations are raw bytes, interpreted as int8 or uint8 per ActType; images are NHWC with an
//   explicit pixel stride (elements between consecutive pixels, ≥ channels) so channel slices work.
// - GEMM: C[m][n] = requant(Σ_k (A[m][k] − z_in)·W[n][k] + b[n]). A is row-major M×K with row stride lda;
//   W is given as PyTorch Linear weights [N][K] and packed once (PackedGemm): zero-point and bias
//   corrections are folded into the packed bias, requantization constants are stored per column, and
//   the epilogue requantizes in registers.
// - Weights are int8 symmetric, on either grid ([-128,127] or [-127,127]); no kernel saturates an
//   intermediate (VNNI vpdpbusd does not, the AVX2/SSE paths widen to int16 and use pmaddwd; see Note
//   [vpmaddubsw trap] in gemm__avx2.cpp).
// - Note [acc wrap]: accumulators are int32 and wrap modulo 2^32 on overflow in every variant (only
//   possible for K ≳ 66,000 at full range); the reference computes the same residue.
// - threads: OpenMP threads used by a call (≤ 1 = run on the calling thread). Results never depend on it;
//   GEMMs below 2^21 multiply-adds always run serially.
//
// Usage (a quantized Linear layer, s8 in/out, per-channel weights):
//   std::vector<QuantizedMultiplier> m(n);
//   for (int c = 0; c < n; ++c) m[c] = quantize_multiplier(s_in, s_w[c], s_out);
//   GemmLayer l{.weights = w, .n = n, .k = k, .bias = b_q, .in_zero_point = z_in, .multipliers = m.data(),
//               .per_channel = true, .out_zero_point = z_out,
//               .range = activation_range(FusedAct::relu, s_out, z_out, ActType::s8)};
//   const PackedGemm packed(l);                                   // once
//   active_kernels().gemm_requant(batch, x, k, packed.view(), y, n, threads);   // per call
// The exact simulation must produce the same bytes: either call the same kernels, or accumulate
// Σ(x − z_in)·w + b exactly and apply requantize_output() from requant.hpp.
#pragma once

#include "engine/kernels/arith_profile.hpp"
#include "engine/kernels/requant.hpp"

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

namespace qforge::kernels {

// ---------------------------------------------------------------------------------------------------
// ISAs and dispatch

// Every ISA has an enumerator on every architecture (code naming one compiles anywhere), but only the host
// architecture's are compiled, registered and ever supported. Within an architecture a larger value is a
// faster ISA (best_isa).
enum class Isa : std::uint8_t { ref = 0, baseline = 1, avx2 = 2, avx512vnni = 3, neon = 4, neondot = 5 };
inline constexpr int kNumIsas = 6;

const char* isa_name(Isa isa) noexcept;
bool parse_isa(std::string_view name, Isa* out) noexcept;  // "ref" | "baseline" | ... | "neondot"
bool isa_compiled(Isa isa) noexcept;                        // built for this architecture (in the registry)
bool isa_supported(Isa isa) noexcept;                       // compiled + CPU/OS support (cpuid/xgetbv, hwcap)
Isa best_isa() noexcept;                                    // the fastest supported ISA
Isa active_isa() noexcept;                                  // the ISA active_kernels() dispatches to
// Force an ISA for this process (tests, benchmarks, `--isa`). Returns false (and changes nothing) if the
// machine cannot run it.
bool force_isa(Isa isa) noexcept;

// ---------------------------------------------------------------------------------------------------
// Packed GEMM weights

inline constexpr int kPanelWidth = 64;  // columns per packed panel (4 zmm of int32)
inline constexpr int kColBlock = 16;    // N is padded to a multiple of this

// What GEMM kernels read: a view of a PackedGemm (plain pointers; valid while the PackedGemm lives).
// Note [packed layout]: N is padded to n_pad (multiple of 16), K to k4 (multiple of 4). Panel p holds
// columns [64p, 64p + w_p), w_p = min(64, n_pad − 64p), at byte offset 64·p·k4, stored as [k4/4][w_p][4]:
// for each group of 4 consecutive k, the 4 weights of each column are adjacent (the operand layout of
// vpdpbusd). Padding bytes are 0 and only ever meet zero activations.
// Note [s8 activations on VNNI]: vpdpbusd multiplies an unsigned by a signed byte. For u8 activations the
// activations are the unsigned operand and weights are stored as is. For s8 activations the weights are
// stored as w ^ 0x80 = w + 128 (u8) and the activations are the signed operand, so
//   Σ_k x·w = Σ_k x·(w + 128) − 128·Σ_k x,
// and the kernel subtracts 128·(row sum of x), computed once per row block (≈2% of the work). This avoids
// XOR-ing every activation broadcast (which would compete with vpdpbusd for the two vector ALU ports).
// AVX2/baseline undo the XOR when they widen the weights. Both cases fold b_eff = b − z_in·Σ_k w.
struct GemmWeights {
  const std::int8_t* panels = nullptr;
  const std::int32_t* bias_eff = nullptr;    // [n_pad] b[n] − z_in·Σ_k W[n][k]
  const std::int32_t* bias = nullptr;        // [n] raw int32 bias (zeros if none); for the reference
  const std::int32_t* multiplier = nullptr;  // [n_pad] per-column QuantizedMultiplier (per-tensor: repeated)
  const std::int32_t* shift = nullptr;       // [n_pad]
  std::int32_t n = 0, k = 0, k4 = 0, n_pad = 0;
  ActType in_type = ActType::s8;
  std::int32_t in_zero_point = 0;
  ActType out_type = ActType::s8;
  std::int32_t out_zero_point = 0, act_min = -128, act_max = 127;
  Rounding rounding = Rounding::single;
  // Note [int16 panels]: the same weights widened to int16 for the vpmaddwd kernels (AVX2), laid out
  // [n_pad/16][k4/2][16][2]: per 16-column panel and per k-pair i, the 16 columns' (w[2i], w[2i+1]) as
  // adjacent int16 (two ymm), true signed values (no 0x80 offset). Zero padding as in `panels`.
  const std::int16_t* panels16 = nullptr;
};

inline namespace QFORGE_KERNELS_ISA_NS {
// Weight of column n at reduction index k in a packed view (used by references and tests).
inline std::int8_t packed_weight(const GemmWeights& w, int n, int k) noexcept {
  const int p = n / kPanelWidth, j = n % kPanelWidth;
  const int wp = (w.n_pad - p * kPanelWidth) < kPanelWidth ? (w.n_pad - p * kPanelWidth) : kPanelWidth;
  const auto byte = static_cast<std::uint8_t>(
      w.panels[static_cast<std::int64_t>(p) * kPanelWidth * w.k4 + static_cast<std::int64_t>(k / 4) * wp * 4 + j * 4 +
               k % 4]);
  return static_cast<std::int8_t>(w.in_type == ActType::s8 ? byte ^ 0x80 : byte);
}
}  // inline namespace QFORGE_KERNELS_ISA_NS

// An unpacked quantized linear layer, the input of PackedGemm.
struct GemmLayer {
  const std::int8_t* weights = nullptr;  // [n][k], row stride ldw (PyTorch Linear layout)
  std::int64_t ldw = 0;                  // 0 = k
  int n = 0, k = 0;
  const std::int32_t* bias = nullptr;    // [n] at scale s_in·s_w[n], or null
  ActType in_type = ActType::s8;
  std::int32_t in_zero_point = 0;
  const QuantizedMultiplier* multipliers = nullptr;  // [n] if per_channel, else [1]; null = unused (s32 GEMM)
  bool per_channel = false;
  ActType out_type = ActType::s8;
  std::int32_t out_zero_point = 0;
  ActivationRange range{-128, 127};
  Rounding rounding = Rounding::single;
};

// Owns packed weights; pack once, run many times. Packing allocates (not a hot kernel). The packed data
// is immutable and shared between copies.
class PackedGemm {
public:
  PackedGemm() = default;
  explicit PackedGemm(const GemmLayer& layer);

  const GemmWeights& view() const noexcept { return view_; }
  int n() const noexcept { return view_.n; }
  int k() const noexcept { return view_.k; }
  std::size_t bytes() const noexcept { return bytes_; }

private:
  std::shared_ptr<const void> storage_;  // one 64-byte-aligned block: panels, bias_eff, bias, multiplier, shift
  std::size_t bytes_ = 0;
  GemmWeights view_{};
};

// GEMM kernels. a: M×K bytes (row stride lda); c: M×N (row stride ldc, in elements).
using GemmRequantFn = void (*)(int m, const void* a, std::int64_t lda, const GemmWeights& w, void* c,
                               std::int64_t ldc, int threads) noexcept;
// int32 output: acc = Σ_k (A − z_in)·W + b, no requantization.
using GemmS32Fn = void (*)(int m, const void* a, std::int64_t lda, const GemmWeights& w, std::int32_t* c,
                           std::int64_t ldc, int threads) noexcept;

// Registry-style name of the GEMM micro-kernel that `isa`'s gemm_requant runs for these weights and m rows
// (e.g. the AVX2 GEMM runs "qs8_qc8w_gemm_6x16c2_requant__avx2" for m ≥ 3, its 4x8c4 GEMV kernel below).
const char* gemm_kernel_name(const GemmWeights& w, Isa isa, int m) noexcept;

// ---------------------------------------------------------------------------------------------------
// Convolutions (NHWC activations)

struct Conv2dShape {
  int batch = 1, in_h = 0, in_w = 0, in_c = 0, out_c = 0;
  int kernel_h = 1, kernel_w = 1, stride_h = 1, stride_w = 1;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  int dilation_h = 1, dilation_w = 1, groups = 1;
  std::int64_t x_pixel_stride = 0, y_pixel_stride = 0;  // 0 = dense (in_c / out_c)
  int out_h() const noexcept { return (in_h + pad_top + pad_bottom - dilation_h * (kernel_h - 1) - 1) / stride_h + 1; }
  int out_w() const noexcept { return (in_w + pad_left + pad_right - dilation_w * (kernel_w - 1) - 1) / stride_w + 1; }
  std::int64_t xs() const noexcept { return x_pixel_stride ? x_pixel_stride : in_c; }
  std::int64_t ys() const noexcept { return y_pixel_stride ? y_pixel_stride : out_c; }
};

// Conv weights view: one packed GEMM per group, K ordered (kh, kw, c) to match the NHWC im2col rows.
struct Conv2dWeights {
  Conv2dShape shape;
  const GemmWeights* groups = nullptr;  // [shape.groups]
  // Note [conv u8 flip]: for s8 activations, the same weights packed for u8 activations x ^ 0x80 = x + 128
  // with zero point z_in + 128 (Σ (x + 128 − (z_in + 128))·w is the same integer); null otherwise. The
  // VNNI conv2d writes its im2col rows flipped and uses these, so its GEMM needs no −128·Σx row
  // correction (Note [s8 activations on VNNI]); other ISAs use `groups`.
  const GemmWeights* groups_u8 = nullptr;  // [shape.groups] or null
};

// Conv layer input: weights in PyTorch OIHW layout [out_c][in_c/groups][kh][kw]; the rest as GemmLayer
// (n = out_c; per-channel multipliers indexed by output channel).
class PackedConv2d {
public:
  PackedConv2d() = default;
  PackedConv2d(const Conv2dShape& shape, const std::int8_t* weights_oihw, const std::int32_t* bias,
               ActType in_type, std::int32_t in_zero_point, const QuantizedMultiplier* multipliers, bool per_channel,
               ActType out_type, std::int32_t out_zero_point, ActivationRange range,
               Rounding rounding = Rounding::single);
  PackedConv2d(const PackedConv2d& o) : shape_(o.shape_), gemms_(o.gemms_), gemms_u8_(o.gemms_u8_) { bind(); }
  PackedConv2d& operator=(const PackedConv2d& o) {
    if (this != &o) {
      shape_ = o.shape_;
      gemms_ = o.gemms_;
      gemms_u8_ = o.gemms_u8_;
      bind();
    }
    return *this;
  }
  const Conv2dWeights& view() const noexcept { return view_; }
  // Bytes of workspace a conv2d call needs (im2col of one group; 0 for dense 1x1 stride-1 convs).
  std::size_t workspace_bytes() const noexcept;

private:
  void bind() noexcept;
  Conv2dShape shape_;
  std::vector<PackedGemm> gemms_;
  std::vector<GemmWeights> views_;
  Conv2dWeights view_{};
  std::vector<PackedGemm> gemms_u8_;  // Note [conv u8 flip] (s8 activations, im2col convs only)
  std::vector<GemmWeights> views_u8_;
};

using Conv2dFn = void (*)(const Conv2dWeights& w, const void* x, void* y, void* workspace, int threads) noexcept;

// Whether conv2d kernels copy the input into a padded image first (Note [padded im2col] in
// generic/ops_impl.inc): im2col convs with groups = 1, dilation 1 and dense input pixels.
inline namespace QFORGE_KERNELS_ISA_NS {
inline bool conv2d_padded_path(const Conv2dShape& s) noexcept {
  const bool direct = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 &&
                      s.pad_left == 0 && s.pad_bottom == 0 && s.pad_right == 0 && s.groups == 1;
  return !direct && s.groups == 1 && s.dilation_h == 1 && s.dilation_w == 1 && s.xs() == s.in_c;
}
}  // inline namespace QFORGE_KERNELS_ISA_NS

// Depthwise 3x3 (channel multiplier 1), NHWC, any stride and padding; padded taps contribute 0 (x = z_in).
struct DwConv3x3Params {
  int batch = 1, in_h = 0, in_w = 0, channels = 0;
  int stride_h = 1, stride_w = 1, pad_top = 1, pad_left = 1, pad_bottom = 1, pad_right = 1;
  std::int64_t x_pixel_stride = 0, y_pixel_stride = 0;  // 0 = dense
  const std::int8_t* weights = nullptr;     // [9][channels] (tap-major: t = 3·kh + kw)
  const std::int32_t* bias = nullptr;       // [channels] (never null; zeros if none)
  const std::int32_t* multiplier = nullptr; // [channels]
  const std::int32_t* shift = nullptr;      // [channels]
  ActType type = ActType::s8;               // input and output
  std::int32_t in_zero_point = 0, out_zero_point = 0, act_min = -128, act_max = 127;
  Rounding rounding = Rounding::single;
  int out_h() const noexcept { return (in_h + pad_top + pad_bottom - 3) / stride_h + 1; }
  int out_w() const noexcept { return (in_w + pad_left + pad_right - 3) / stride_w + 1; }
};
using DwConv3x3Fn = void (*)(const DwConv3x3Params& p, const void* x, void* y, int threads) noexcept;

// Rearranges PyTorch depthwise weights [C][1][3][3] into the tap-major [9][C] layout of DwConv3x3Params.
void pack_dwconv3x3_weights(const std::int8_t* weights_c133, int channels, std::int8_t* out_9c) noexcept;

// ---------------------------------------------------------------------------------------------------
// Pooling (NHWC; output has the input's scale and zero point)

struct Pool2dParams {
  int batch = 1, in_h = 0, in_w = 0, channels = 0;
  int kernel_h = 2, kernel_w = 2, stride_h = 2, stride_w = 2;
  int pad_top = 0, pad_left = 0, pad_bottom = 0, pad_right = 0;
  std::int64_t x_pixel_stride = 0, y_pixel_stride = 0;
  ActType type = ActType::s8;
  std::int32_t zero_point = 0;      // average pooling: padded taps count as z when count_include_pad
  bool count_include_pad = true;    // PyTorch AvgPool2d default
  // Average pooling in ONNX Runtime's float arithmetic (arith_profile.hpp, QLinearAveragePool): taps
  // dequantized and summed in float in window order, divided by count, quantized to the output encoding
  // (which may differ from the input's). `zero_point` is then unused.
  bool float_average = false;
  AvgPoolFloat average;
  int out_h() const noexcept { return (in_h + pad_top + pad_bottom - kernel_h) / stride_h + 1; }
  int out_w() const noexcept { return (in_w + pad_left + pad_right - kernel_w) / stride_w + 1; }
};
// Max pooling ignores padded taps (PyTorch pads with −∞). Average: z + round_half_up(Σ(x − z) / count)
// (requant.hpp average_value), count = window area or the number of valid taps.
using Pool2dFn = void (*)(const Pool2dParams& p, const void* x, void* y, int threads) noexcept;

// ---------------------------------------------------------------------------------------------------
// Element-wise

// y[i] = add_value(a[i], b[i], p) (requant.hpp Note [residual add]); a, b, y share one ActType.
using AddFn = void (*)(std::int64_t n, const void* a, const void* b, void* y, const AddParams& p, ActType type) noexcept;
// y[i] = quantize_value(x[i], inv_scale, zero_point, type range)
using QuantizeFn = void (*)(std::int64_t n, const float* x, void* y, float inv_scale, std::int32_t zero_point,
                            ActType type) noexcept;
// y[i] = quantize_linear_value(x[i], scale, zero_point, type range): ONNX Runtime's QuantizeLinear
// (division, round half to even; arith_profile.hpp).
using QuantizeLinearFn = void (*)(std::int64_t n, const float* x, void* y, float scale, std::int32_t zero_point,
                                  ActType type) noexcept;
// y[i] = dequantize_value(x[i], scale, zero_point)
using DequantizeFn = void (*)(std::int64_t n, const void* x, float* y, float scale, std::int32_t zero_point,
                              ActType type) noexcept;

// Requantization of 8-bit codes from one encoding to another (an input quantizer, a pooling/reshape
// op's output quantizer, a standalone ReLU/ReLU6): y = requantize_output(x − z_in, multiplier, z_out,
// act_min, act_max, rounding), or with `identity` (same encoding) y = clamp(x, act_min, act_max), or with
// dequantize_quantize (onnxruntime: DequantizeLinear → QuantizeLinear) y = dequantize_quantize_value(x,
// in_scale, z_in, out_scale, z_out, act_min, act_max). x and y share one ActType; y may alias x.
struct RequantParams {
  bool dequantize_quantize = false;
  float in_scale = 1.0f, out_scale = 1.0f;
  ActType type = ActType::s8;
  std::int32_t in_zero_point = 0, out_zero_point = 0, act_min = -128, act_max = 127;
  QuantizedMultiplier multiplier;  // s_in/s_out
  Rounding rounding = Rounding::single;
  bool identity = false;
};
using RequantFn = void (*)(std::int64_t n, const void* x, void* y, const RequantParams& p) noexcept;

// Global average pooling, NHWC [batch][pixels][pixel stride] → [batch][channels] (dense):
//   y[b][c] = requantize_output(Σ_s (x[b][s][c] − z_in), multiplier, z_out, act_min, act_max, rounding)
// with multiplier = s_in/(pixels·s_out); the int32 sum wraps like a GEMM accumulator (Note [acc wrap]).
struct GlobalAvgPoolParams {
  int batch = 1, pixels = 1, channels = 0;
  std::int64_t x_pixel_stride = 0;  // 0 = dense
  ActType type = ActType::s8;       // input and output
  std::int32_t in_zero_point = 0, out_zero_point = 0, act_min = -128, act_max = 127;
  QuantizedMultiplier multiplier;
  Rounding rounding = Rounding::single;
};
using GlobalAvgPoolFn = void (*)(const GlobalAvgPoolParams& p, const void* x, void* y, int threads) noexcept;

// ---------------------------------------------------------------------------------------------------
// Recurrent steps (8x8_16 scheme, requant.hpp). Gate order as in PyTorch: LSTM i, f, g, o; GRU r, z, n.

// input: W_ih packed with n = G·H (G = 4 LSTM, 3 GRU), k = input size, in_zero_point = z_x, bias = b_ih (GRU)
//   or b_ih + b_hh (LSTM), multipliers = per-row s_x·s_W/2^-12 (to Q3.12).
// recurrent: W_hh packed with n = G·H, k = H, in_zero_point = z_h, bias = none (LSTM) or b_hh (GRU),
//   multipliers = per-row s_h·s_R/2^-12.
// cell.hidden = quantize_multiplier(2^-30 / s_h); cell.hidden_zero_point = z_h. The hidden state h uses
// one ActType (s8) for input and output.
struct RnnWeights {
  GemmWeights input, recurrent;
  LstmCellParams cell;
  int hidden = 0;
};
// LSTM: c is [batch][hidden] int16 (in/out, scale 2^cell_exp). h_out may alias h_prev (both GEMVs run
// before any output is written). workspace: 8·hidden·batch int32 (the two int32 gate accumulators).
using LstmStepFn = void (*)(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev,
                            std::int64_t ldh, std::int16_t* c, void* h_out, std::int64_t ldo, std::int32_t* workspace,
                            int threads) noexcept;
// GRU: h_out may alias h_prev (element j reads only h_prev[j]). workspace: 6·hidden·batch int32.
using GruStepFn = void (*)(const RnnWeights& w, int batch, const void* x, std::int64_t ldx, const void* h_prev,
                           std::int64_t ldh, void* h_out, std::int64_t ldo, std::int32_t* workspace,
                           int threads) noexcept;

// ---------------------------------------------------------------------------------------------------
// Registry

enum class KernelKind : std::uint8_t {
  gemm_requant, gemm_s32, conv2d, dwconv3x3, maxpool2d, avgpool2d, add, quantize, dequantize, lstm_step, gru_step,
  requant, global_avgpool, quantize_linear
};
inline constexpr int kNumKernelKinds = 14;

// One ISA's implementation of every kernel.
struct KernelTable {
  Isa isa;
  GemmRequantFn gemm_requant;
  GemmS32Fn gemm_s32;
  Conv2dFn conv2d;
  DwConv3x3Fn dwconv3x3;
  Pool2dFn maxpool2d;
  Pool2dFn avgpool2d;
  AddFn add;
  QuantizeFn quantize;
  DequantizeFn dequantize;
  LstmStepFn lstm_step;
  GruStepFn gru_step;
  RequantFn requant;
  GlobalAvgPoolFn global_avgpool;
  QuantizeLinearFn quantize_linear;
};

struct KernelInfo {
  const char* name;  // e.g. "qs8_qc8w_gemm_6x64c4_requant__avx512vnni"
  KernelKind kind;
  Isa isa;
};

const KernelTable& kernel_table(Isa isa) noexcept;  // any ISA; null functions unless compiled; unsupported may SIGILL
const KernelTable& active_kernels() noexcept;       // the dispatched table (chosen once at start-up)
std::span<const KernelInfo> kernel_registry() noexcept;  // every kernel of every ISA, listed once
const char* kernel_kind_name(KernelKind kind) noexcept;

}  // namespace qforge::kernels
