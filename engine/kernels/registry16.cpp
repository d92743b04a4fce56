// Packing and the registry of the 16-bit-activation kernels (kernels16.hpp). Compiled for the
// architecture's baseline only, like registry.cpp; the ISA is the one active_kernels() uses.
#include "engine/kernels/isa_kernels16.hpp"

#include <algorithm>
#include <cstring>

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "qforge kernels: unsupported architecture (x86-64 and aarch64 only)"
#endif

namespace qforge::kernels {
namespace {

struct Gemm16Storage {
  std::vector<std::int16_t> panels;
  std::vector<std::int64_t> bias_eff;
  std::vector<std::int32_t> bias, multiplier, shift;
};

#define QFORGE_TABLE16(ns)                                                                                    \
  Kernel16Table {                                                                                             \
    Isa::ns, ns::gemm16_requant, ns::conv2d16, ns::maxpool2d16, ns::avgpool2d16, ns::global_avgpool16,        \
        ns::add16, ns::requant16, ns::quantize16, ns::dequantize16, ns::lstm16_step                           \
  }
#define QFORGE_ABSENT16(ns) \
  Kernel16Table { Isa::ns, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr }

#if defined(__x86_64__)
const Kernel16Table kTables16[kNumIsas] = {QFORGE_TABLE16(ref),        QFORGE_TABLE16(baseline), QFORGE_TABLE16(avx2),
                                           QFORGE_TABLE16(avx512vnni), QFORGE_ABSENT16(neon),    QFORGE_ABSENT16(neondot)};
#else
const Kernel16Table kTables16[kNumIsas] = {QFORGE_TABLE16(ref),          QFORGE_ABSENT16(baseline),
                                           QFORGE_ABSENT16(avx2),        QFORGE_ABSENT16(avx512vnni),
                                           QFORGE_TABLE16(neon),         QFORGE_TABLE16(neondot)};
#endif

// Names: <types>_<op>[_<tile>]_<epilogue>__<isa>; the GEMM tile says what the micro-kernel computes.
#define QFORGE_NAMES16(isa, gemm_tile)                                                        \
  {"qs16_qc8w_gemm" gemm_tile "_requant__" #isa, Kernel16Kind::gemm_requant, Isa::isa},       \
      {"qs16_qc8w_conv2d_im2col_requant__" #isa, Kernel16Kind::conv2d, Isa::isa},              \
      {"q16_maxpool2d__" #isa, Kernel16Kind::maxpool2d, Isa::isa},                             \
      {"q16_avgpool2d__" #isa, Kernel16Kind::avgpool2d, Isa::isa},                             \
      {"q16_global_avgpool_requant__" #isa, Kernel16Kind::global_avgpool, Isa::isa},           \
      {"q16_vadd_requant__" #isa, Kernel16Kind::add, Isa::isa},                                \
      {"q16_requant__" #isa, Kernel16Kind::requant, Isa::isa},                                 \
      {"f32_q16_quantize__" #isa, Kernel16Kind::quantize, Isa::isa},                           \
      {"q16_f32_dequantize__" #isa, Kernel16Kind::dequantize, Isa::isa},                       \
      {"qs16_qc8w_lstm_step_16x8_16__" #isa, Kernel16Kind::lstm_step, Isa::isa}

const Kernel16Info kRegistry16[] = {
    QFORGE_NAMES16(ref, ""),
#if defined(__x86_64__)
    QFORGE_NAMES16(baseline, "_4x16c2"),
    QFORGE_NAMES16(avx2, "_4x16c2"),
    QFORGE_NAMES16(avx512vnni, "_4x16c2"),
#else
    QFORGE_NAMES16(neon, "_4x16c2"),
    QFORGE_NAMES16(neondot, "_4x16c2"),
#endif
};

}  // namespace

const Kernel16Table& kernel16_table(Isa isa) noexcept { return kTables16[static_cast<int>(isa)]; }
const Kernel16Table& active_kernels16() noexcept { return kernel16_table(active_isa()); }
std::span<const Kernel16Info> kernel16_registry() noexcept { return kRegistry16; }

const char* kernel16_kind_name(Kernel16Kind kind) noexcept {
  static const char* const kNames[kNumKernel16Kinds] = {"gemm_requant", "conv2d",  "maxpool2d", "avgpool2d",
                                                        "global_avgpool", "add", "requant",   "quantize",
                                                        "dequantize",   "lstm_step"};
  return kNames[static_cast<int>(kind)];
}

const char* kernel16_name(Kernel16Kind kind, Isa isa) noexcept {
  for (const Kernel16Info& k : kRegistry16)
    if (k.kind == kind && k.isa == isa) return k.name;
  return "?";
}

PackedGemm16::PackedGemm16(const Gemm16Layer& l) {
  auto st = std::make_shared<Gemm16Storage>();
  const int n_pad = (l.n + kGemm16Cols - 1) / kGemm16Cols * kGemm16Cols, k2 = (l.k + 1) / 2;
  st->panels.assign(static_cast<std::size_t>(n_pad) * 2 * static_cast<std::size_t>(k2), 0);
  st->bias_eff.assign(static_cast<std::size_t>(n_pad), 0);
  st->bias.assign(static_cast<std::size_t>(std::max(l.n, 1)), 0);
  st->multiplier.assign(static_cast<std::size_t>(n_pad), 0);
  st->shift.assign(static_cast<std::size_t>(n_pad), 0);
  for (int n = 0; n < l.n; ++n) {
    std::int64_t wsum = 0;
    for (int k = 0; k < l.k; ++k) {
      const std::int8_t v = l.weights[static_cast<std::int64_t>(n) * l.k + k];
      wsum += v;
      st->panels[(static_cast<std::size_t>(n / kGemm16Cols) * k2 + k / 2) * 2 * kGemm16Cols + (n % kGemm16Cols) * 2 +
                 k % 2] = v;
    }
    st->bias[n] = l.bias ? l.bias[n] : 0;
    st->bias_eff[n] = std::int64_t{st->bias[n]} - std::int64_t{l.in_zero_point} * wsum;
    const QuantizedMultiplier m = l.multipliers ? l.multipliers[l.per_channel ? n : 0] : QuantizedMultiplier{};
    st->multiplier[n] = m.multiplier;
    st->shift[n] = m.shift;
  }
  view_.panels = st->panels.data();
  view_.bias_eff = st->bias_eff.data();
  view_.bias = st->bias.data();
  view_.multiplier = st->multiplier.data();
  view_.shift = st->shift.data();
  view_.n = l.n;
  view_.k = l.k;
  view_.k2 = k2;
  view_.n_pad = n_pad;
  view_.in_zero_point = l.in_zero_point;
  view_.out_zero_point = l.out_zero_point;
  view_.act_min = l.range.min;
  view_.act_max = l.range.max;
  storage_ = std::move(st);
}

PackedConv2d16::PackedConv2d16(const Conv2dShape& s, const std::int8_t* w, const std::int32_t* bias,
                               std::int32_t in_zero_point, const QuantizedMultiplier* multipliers,
                               std::int32_t out_zero_point, ActivationRange range)
    : shape_(s) {
  const int G = s.groups, ng = s.out_c / G, cg = s.in_c / G, K = s.kernel_h * s.kernel_w * cg;
  std::vector<std::int8_t> rows(static_cast<std::size_t>(ng) * K);
  for (int g = 0; g < G; ++g) {
    for (int j = 0; j < ng; ++j) {
      const std::int64_t o = static_cast<std::int64_t>(g) * ng + j;
      for (int kh = 0; kh < s.kernel_h; ++kh)
        for (int kw = 0; kw < s.kernel_w; ++kw)
          for (int c = 0; c < cg; ++c)
            rows[static_cast<std::size_t>(j) * K + (kh * s.kernel_w + kw) * cg + c] =
                w[((o * cg + c) * s.kernel_h + kh) * s.kernel_w + kw];
    }
    Gemm16Layer l;
    l.weights = rows.data();
    l.n = ng;
    l.k = K;
    l.bias = bias ? bias + static_cast<std::int64_t>(g) * ng : nullptr;
    l.in_zero_point = in_zero_point;
    l.multipliers = multipliers + static_cast<std::int64_t>(g) * ng;
    l.per_channel = true;
    l.out_zero_point = out_zero_point;
    l.range = range;
    gemms_.emplace_back(l);
  }
  bind();
}

void PackedConv2d16::bind() noexcept {
  views_.clear();
  for (const auto& g : gemms_) views_.push_back(g.view());
  view_.shape = shape_;
  view_.groups = views_.data();
}

std::size_t PackedConv2d16::workspace_bytes() const noexcept {
  const Conv2dShape& s = shape_;
  const bool direct = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 &&
                      s.pad_left == 0 && s.pad_bottom == 0 && s.pad_right == 0 && s.groups == 1;
  if (direct) return 0;
  const std::size_t K = static_cast<std::size_t>(s.kernel_h) * s.kernel_w * (s.in_c / s.groups);
  return static_cast<std::size_t>(s.out_h()) * s.out_w() * K * sizeof(std::int16_t) + 64;
}

}  // namespace qforge::kernels
