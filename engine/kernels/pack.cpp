// Weight packing for the int8 GEMM/conv kernels (Note [packed layout] in kernels.hpp). ISA-independent:
// every GEMM variant reads the same packed buffer.
#include "engine/kernels/kernels.hpp"

#include <cstdlib>
#include <cstring>

namespace qforge::kernels {
namespace {

std::size_t align64(std::size_t x) { return (x + 63) & ~std::size_t{63}; }

}  // namespace

PackedGemm::PackedGemm(const GemmLayer& l) {
  const int n = l.n, k = l.k;
  const int n_pad = (n + kColBlock - 1) / kColBlock * kColBlock;
  const int k4 = (k + 3) / 4 * 4;
  const std::int64_t ldw = l.ldw ? l.ldw : k;

  const std::size_t panels_bytes = align64(static_cast<std::size_t>(n_pad) * k4);
  const std::size_t vec_bytes = align64(static_cast<std::size_t>(n_pad) * 4);
  const std::size_t panels16_bytes = align64(static_cast<std::size_t>(n_pad) * k4 * 2);
  const std::size_t total = panels_bytes + 4 * vec_bytes + panels16_bytes + 64;
  void* raw = std::aligned_alloc(64, align64(total));
  if (raw == nullptr) throw std::bad_alloc();
  std::memset(raw, 0, align64(total));
  storage_ = std::shared_ptr<const void>(raw, [](const void* p) { std::free(const_cast<void*>(p)); });
  bytes_ = total;

  auto* base = static_cast<char*>(raw);
  auto* panels = reinterpret_cast<std::int8_t*>(base);
  auto* bias_eff = reinterpret_cast<std::int32_t*>(base + panels_bytes);
  auto* bias = reinterpret_cast<std::int32_t*>(base + panels_bytes + vec_bytes);
  auto* mult = reinterpret_cast<std::int32_t*>(base + panels_bytes + 2 * vec_bytes);
  auto* shift = reinterpret_cast<std::int32_t*>(base + panels_bytes + 3 * vec_bytes);
  auto* panels16 = reinterpret_cast<std::int16_t*>(base + panels_bytes + 4 * vec_bytes);

  // Panels: [panel][k/4][w_p][4]. With s8 activations the weights are stored offset to u8 (w ^ 0x80 =
  // w + 128), see Note [s8 activations on VNNI] in kernels.hpp.
  const std::uint8_t flip = l.in_type == ActType::s8 ? 0x80 : 0x00;
  for (int p = 0; p * kPanelWidth < n_pad; ++p) {
    const int wp = n_pad - p * kPanelWidth < kPanelWidth ? n_pad - p * kPanelWidth : kPanelWidth;
    std::int8_t* dst = panels + static_cast<std::int64_t>(p) * kPanelWidth * k4;
    for (int j = 0; j < wp; ++j) {
      const int col = p * kPanelWidth + j;
      if (col >= n) break;
      const std::int8_t* src = l.weights + col * ldw;
      for (int kk = 0; kk < k; ++kk)
        dst[static_cast<std::int64_t>(kk / 4) * wp * 4 + j * 4 + kk % 4] =
            static_cast<std::int8_t>(static_cast<std::uint8_t>(src[kk]) ^ flip);
    }
  }
  // Note [int16 panels]: the same weights widened to int16, [n_pad/16][k4/2][16][2].
  for (int col = 0; col < n; ++col) {
    const std::int8_t* src = l.weights + col * ldw;
    std::int16_t* dst = panels16 + static_cast<std::int64_t>(col / 16) * 16 * k4 + (col % 16) * 2;
    for (int kk = 0; kk < k; ++kk) dst[static_cast<std::int64_t>(kk / 2) * 32 + kk % 2] = src[kk];
  }
  // Bias folding (integer-arithmetic.md §6): b_eff = b − z_in·Σ_k w, computed mod 2^32 like the accumulators.
  for (int col = 0; col < n; ++col) {
    std::int64_t sum = 0;
    for (int kk = 0; kk < k; ++kk) sum += l.weights[col * ldw + kk];
    const std::int64_t b = l.bias ? l.bias[col] : 0;
    bias[col] = static_cast<std::int32_t>(b);
    bias_eff[col] = static_cast<std::int32_t>(static_cast<std::uint32_t>(b - std::int64_t{l.in_zero_point} * sum));
    QuantizedMultiplier qm{};
    if (l.multipliers) qm = l.per_channel ? l.multipliers[col] : l.multipliers[0];
    mult[col] = qm.multiplier;
    shift[col] = qm.shift;
  }

  view_.panels = panels;
  view_.bias_eff = bias_eff;
  view_.bias = bias;
  view_.multiplier = mult;
  view_.shift = shift;
  view_.panels16 = panels16;
  view_.n = n;
  view_.k = k;
  view_.k4 = k4;
  view_.n_pad = n_pad;
  view_.in_type = l.in_type;
  view_.in_zero_point = l.in_zero_point;
  view_.out_type = l.out_type;
  view_.out_zero_point = l.out_zero_point;
  view_.act_min = l.range.min;
  view_.act_max = l.range.max;
  view_.rounding = l.rounding;
}

PackedConv2d::PackedConv2d(const Conv2dShape& shape, const std::int8_t* weights_oihw, const std::int32_t* bias,
                           ActType in_type, std::int32_t in_zero_point, const QuantizedMultiplier* multipliers,
                           bool per_channel, ActType out_type, std::int32_t out_zero_point, ActivationRange range,
                           Rounding rounding)
    : shape_(shape) {
  const int g = shape.groups, og = shape.out_c / g, cg = shape.in_c / g;
  const int kh = shape.kernel_h, kw = shape.kernel_w, k = kh * kw * cg;
  std::vector<std::int8_t> w(static_cast<std::size_t>(og) * k);
  for (int gi = 0; gi < g; ++gi) {
    // OIHW [o][c][y][x] → GEMM row o, column index (y, x, c).
    for (int o = 0; o < og; ++o)
      for (int c = 0; c < cg; ++c)
        for (int y = 0; y < kh; ++y)
          for (int x = 0; x < kw; ++x)
            w[static_cast<std::size_t>(o) * k + (y * kw + x) * cg + c] =
                weights_oihw[(((static_cast<std::int64_t>(gi) * og + o) * cg + c) * kh + y) * kw + x];
    GemmLayer l;
    l.weights = w.data();
    l.n = og;
    l.k = k;
    l.bias = bias ? bias + gi * og : nullptr;
    l.in_type = in_type;
    l.in_zero_point = in_zero_point;
    l.multipliers = multipliers ? (per_channel ? multipliers + gi * og : multipliers) : nullptr;
    l.per_channel = per_channel;
    l.out_type = out_type;
    l.out_zero_point = out_zero_point;
    l.range = range;
    l.rounding = rounding;
    gemms_.emplace_back(l);
    // Note [conv u8 flip]: only the VNNI conv2d reads the flipped packing, so only pack it where VNNI runs.
    const bool direct = kh == 1 && kw == 1 && shape.stride_h == 1 && shape.stride_w == 1 && shape.pad_top == 0 &&
                        shape.pad_left == 0 && shape.pad_bottom == 0 && shape.pad_right == 0 && g == 1;
    if (in_type == ActType::s8 && !direct && isa_supported(Isa::avx512vnni)) {
      l.in_type = ActType::u8;
      l.in_zero_point = in_zero_point + 128;
      gemms_u8_.emplace_back(l);
    }
  }
  bind();
}

void PackedConv2d::bind() noexcept {
  views_.clear();
  for (const auto& gm : gemms_) views_.push_back(gm.view());
  view_.shape = shape_;
  view_.groups = views_.data();
  views_u8_.clear();
  for (const auto& gm : gemms_u8_) views_u8_.push_back(gm.view());
  view_.groups_u8 = views_u8_.empty() ? nullptr : views_u8_.data();
}

std::size_t PackedConv2d::workspace_bytes() const noexcept {
  const Conv2dShape& s = shape_;
  const bool direct = s.kernel_h == 1 && s.kernel_w == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_top == 0 &&
                      s.pad_left == 0 && s.pad_bottom == 0 && s.pad_right == 0 && s.groups == 1;
  if (direct) return 0;
  const std::size_t k = static_cast<std::size_t>(s.kernel_h) * s.kernel_w * (s.in_c / s.groups);
  const std::size_t cols = static_cast<std::size_t>(s.batch) * s.out_h() * s.out_w() * ((k + 3) / 4 * 4);
  if (!conv2d_padded_path(s)) return cols + 64;
  // Note [padded im2col]: the padded input image follows the (64-byte aligned) im2col area.
  const std::size_t padded = static_cast<std::size_t>(s.batch) * (s.in_h + s.pad_top + s.pad_bottom) *
                             (s.in_w + s.pad_left + s.pad_right) * s.in_c;
  return align64(cols) + padded + 64;
}

const char* gemm_kernel_name(const GemmWeights& w, Isa isa, int m) noexcept {
  const char* name = "?";
  for (const KernelInfo& info : kernel_registry())
    if (info.kind == KernelKind::gemm_requant && info.isa == isa) name = info.name;
  // The AVX2 GEMM runs its 6x16c2 tile on the int16 panels except for 1-2 rows (GEMV) and very large K
  // (gemm__avx2.cpp, Note [AVX2 6x16c2 tile]), where it runs the 4x8c4 kernel on the int8 panels.
  if (isa == Isa::avx2 && (m < 3 || w.k4 > 8192)) return "qs8_qc8w_gemm_4x8c4_requant__avx2";
  return name;
}

void pack_dwconv3x3_weights(const std::int8_t* w, int channels, std::int8_t* out) noexcept {
  for (int c = 0; c < channels; ++c)
    for (int t = 0; t < 9; ++t) out[static_cast<std::int64_t>(t) * channels + c] = w[c * 9 + t];
}

}  // namespace qforge::kernels
