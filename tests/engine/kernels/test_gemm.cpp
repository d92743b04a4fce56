// GEMM: the reference against an independent naive loop on unpacked weights, hand-computed folding,
// the no-saturation guarantee, and thread-count invariance on every supported ISA.
#include "tests/engine/kernels/kernel_checks.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <tuple>
#include <utility>

using namespace qforge::kernels;
using namespace qforge::kernels::testing;

namespace {

std::vector<Isa> supported_isas() {
  std::vector<Isa> v;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) v.push_back(static_cast<Isa>(i));
  return v;
}

PackedGemm pack(const std::vector<std::int8_t>& w, int n, int k, const std::int32_t* bias, ActType in, int zin,
                const QuantizedMultiplier* m = nullptr, bool per_channel = false, int zout = 0,
                ActivationRange range = {-128, 127}) {
  GemmLayer l;
  l.weights = w.data();
  l.n = n;
  l.k = k;
  l.bias = bias;
  l.in_type = in;
  l.in_zero_point = zin;
  l.multipliers = m;
  l.per_channel = per_channel;
  l.out_zero_point = zout;
  l.range = range;
  return PackedGemm(l);
}

}  // namespace

TEST_CASE("gemm reference: equals a naive integer GEMM on the unpacked weights") {
  std::mt19937 rng(3);
  for (int m : {1, 3, 8}) {
    for (int n : {1, 17, 70}) {
      for (int k : {1, 5, 33}) {
        GemmCase c;
        c.m = m;
        c.n = n;
        c.k = k;
        c.in = (n + k) % 2 ? ActType::u8 : ActType::s8;
        c.lda_extra = 3;
        c.ldc_extra = 2;
        GemmData d = make_gemm(c, rng);
        const GemmWeights& w = d.packed.view();
        std::vector<std::uint8_t> y(static_cast<std::size_t>(m) * d.ldc, 0);
        std::vector<std::int32_t> acc(static_cast<std::size_t>(m) * d.ldc, 0);
        kernel_table(Isa::ref).gemm_requant(m, d.a.data(), d.lda, w, y.data(), d.ldc, 1);
        kernel_table(Isa::ref).gemm_s32(m, d.a.data(), d.lda, w, acc.data(), d.ldc, 1);
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            std::int64_t s = d.bias[j];
            for (int kk = 0; kk < k; ++kk) {
              const std::uint8_t byte = d.a[i * d.lda + kk];
              const int x = c.in == ActType::s8 ? static_cast<std::int8_t>(byte) : byte;
              s += (x - w.in_zero_point) * d.w[j * k + kk];
            }
            REQUIRE(acc[i * d.ldc + j] == s);
            const QuantizedMultiplier qm = d.mult[c.per_channel ? j : 0];
            const std::int32_t want = requantize_output(static_cast<std::int32_t>(s), qm, w.out_zero_point, w.act_min, w.act_max);
            REQUIRE(static_cast<std::int8_t>(y[i * d.ldc + j]) == static_cast<std::int8_t>(want));
          }
      }
    }
  }
}

TEST_CASE("gemm: zero-point and bias folding reproduces the worked example (603) on every ISA") {
  // x_s8 = [-5, 10, 127], z_in = -3, w = [2, -1, 4], b = 100 → 603 (integer-arithmetic.md §6).
  const std::vector<std::int8_t> w = {2, -1, 4};
  const std::int32_t bias = 100;
  const PackedGemm p = pack(w, 1, 3, &bias, ActType::s8, -3);
  const std::int8_t x[3] = {-5, 10, 127};
  for (Isa isa : supported_isas()) {
    std::int32_t y = 0;
    kernel_table(isa).gemm_s32(1, x, 3, p.view(), &y, 1, 1);
    INFO(isa_name(isa));
    CHECK(y == 603);
  }
  CHECK(p.view().bias_eff[0] == 100 - (-3) * 5);
}

TEST_CASE("gemm: extreme operands never saturate an intermediate (the vpmaddubsw trap)") {
  // u8 255 × int8 -128 and 127 at K = 1001: pair sums exceed int16 by far; the accumulators must be exact.
  const int k = 1001;
  for (std::int8_t wv : {std::int8_t{-128}, std::int8_t{127}, std::int8_t{-127}}) {
    const std::vector<std::int8_t> w(k, wv);
    const std::vector<std::uint8_t> a(k, 255);
    const PackedGemm pu = pack(w, 1, k, nullptr, ActType::u8, 0);
    const PackedGemm ps = pack(w, 1, k, nullptr, ActType::s8, -128);  // s8 byte 0xFF = -1, (−1 + 128) = 127
    for (Isa isa : supported_isas()) {
      std::int32_t yu = 0, ys = 0;
      kernel_table(isa).gemm_s32(1, a.data(), k, pu.view(), &yu, 1, 1);
      kernel_table(isa).gemm_s32(1, a.data(), k, ps.view(), &ys, 1, 1);
      INFO(isa_name(isa), " w = ", int(wv));
      CHECK(yu == 255 * wv * k);
      CHECK(ys == 127 * wv * k);
    }
  }
}

TEST_CASE("gemm: results do not depend on the thread count") {
  std::mt19937 rng(9);
  for (Isa isa : supported_isas()) {
    // Above the 2^21-MAC serial threshold: split N (many panels) and split M (one panel, many rows).
    for (auto [m, n, k] : {std::tuple{7, 1024, 517}, std::tuple{64, 200, 301}, std::tuple{601, 64, 67},
                           std::tuple{13, 64, 9}}) {
      GemmCase c;
      c.m = m;
      c.n = n;
      c.k = k;
      GemmData d = make_gemm(c, rng);
      std::vector<std::uint8_t> y1(static_cast<std::size_t>(m) * d.ldc), y2(y1.size(), 1);
      kernel_table(isa).gemm_requant(m, d.a.data(), d.lda, d.packed.view(), y1.data(), d.ldc, 1);
      kernel_table(isa).gemm_requant(m, d.a.data(), d.lda, d.packed.view(), y2.data(), d.ldc, 2);
      INFO(isa_name(isa), " ", m, "x", n, "x", k);
      CHECK(y1 == y2);
    }
  }
}

TEST_CASE("gemm: per-tensor multipliers, fused ReLU clamp and u8 output on the active ISA") {
  const std::vector<std::int8_t> w = {1, 1, -1, -1};  // n = 2, k = 2
  const QuantizedMultiplier half = quantize_multiplier(0.5);
  const PackedGemm p = pack(w, 2, 2, nullptr, ActType::s8, 0, &half, false, 10, {10, 127});  // ReLU at z_out
  const std::int8_t x[2] = {3, 4};
  std::int8_t y[2] = {0, 0};
  active_kernels().gemm_requant(1, x, 2, p.view(), y, 2, 1);
  CHECK(y[0] == 14);  // 7·0.5 = 3.5 → 4, + 10
  CHECK(y[1] == 10);  // −3.5 → −3, + 10 = 7, clamped to 10
}

TEST_CASE("gemm: multi-chunk rows and large K are bit-exact on every ISA (s8/u8, requant/s32, 1 and 2 threads)") {
  // The VNNI driver splits rows into chunks of at least 16 row blocks (96 rows), more for small K: these
  // shapes give two or more chunks with a partial last row block (M not a multiple of 6), a partial last
  // panel (N not a multiple of 64), K not a multiple of 4, and saturating operands (every column's
  // multiplier is then mixed-sign in shift, the 64-bit clamp path) or ordinary ones (32-bit clamp path).
  std::mt19937 rng(21);
  int i = 0;
  for (Isa isa : supported_isas()) {
    if (isa == Isa::ref) continue;
    for (auto [m, n, k] : {std::tuple{103, 70, 1501}, std::tuple{197, 129, 262}, std::tuple{301, 17, 5},
                           std::tuple{13, 200, 2049}}) {
      for (int variant = 0; variant < 4; ++variant, ++i) {
        GemmCase c;
        c.m = m;
        c.n = n;
        c.k = k;
        c.in = variant % 2 ? ActType::u8 : ActType::s8;
        c.out = i % 3 == 1 ? ActType::u8 : ActType::s8;
        c.saturate = variant >= 2;
        c.per_channel = i % 4 != 3;
        c.lda_extra = i % 3;
        c.ldc_extra = i % 5;
        c.threads = 1 + i % 2;
        CHECK(check_gemm(isa, c, rng, /*s32=*/false) == 0);
        CHECK(check_gemm(isa, c, rng, /*s32=*/true) == 0);
      }
    }
  }
}

TEST_CASE("gemm: requantization near the int32 limits matches the reference (multipliers below and above 1)") {
  // Accumulators near ±2^31 (through the bias) with multipliers < 1 (shift ≤ 0: the VNNI epilogue
  // clamps in 32 bits) and > 1 (shift > 0: 64-bit clamp), per-channel within one 16-column block and
  // separately, against a narrow output range.
  const int n = 48, k = 7, m = 9;
  std::mt19937 rng(5);
  std::vector<std::int8_t> w(static_cast<std::size_t>(n) * k);
  for (auto& x : w) x = static_cast<std::int8_t>(std::uniform_int_distribution<int>(-128, 127)(rng));
  std::vector<std::int32_t> bias(n);
  std::vector<QuantizedMultiplier> mult(n);
  for (int j = 0; j < n; ++j) {
    bias[j] = j % 2 ? INT32_MAX - 300000 : INT32_MIN + 300000;
    // columns 0–15: all < 1; 16–31: all ≥ 1; 32–47: mixed
    const double s = j < 16 ? 0.999 - 0.05 * (j % 7) : j < 32 ? 1.0 + 0.7 * (j % 5) : (j % 3 ? 0.75 : 3.0);
    mult[j] = quantize_multiplier(s);
  }
  std::vector<std::uint8_t> a(static_cast<std::size_t>(m) * k);
  for (auto& x : a) x = static_cast<std::uint8_t>(std::uniform_int_distribution<int>(0, 255)(rng));
  for (ActType in : {ActType::s8, ActType::u8}) {
    for (ActivationRange range : {ActivationRange{-128, 127}, ActivationRange{-3, 90}}) {
      const PackedGemm p = pack(w, n, k, bias.data(), in, in == ActType::s8 ? -7 : 131, mult.data(), true, 11, range);
      std::vector<std::uint8_t> want(static_cast<std::size_t>(m) * n), got(want.size());
      kernel_table(Isa::ref).gemm_requant(m, a.data(), k, p.view(), want.data(), n, 1);
      for (Isa isa : supported_isas()) {
        std::fill(got.begin(), got.end(), 0x5A);
        kernel_table(isa).gemm_requant(m, a.data(), k, p.view(), got.data(), n, 1);
        INFO(isa_name(isa), " range [", range.min, ", ", range.max, "]");
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("gemm packing: the int16 panels hold the same weights as the int8 panels, zero-padded") {
  std::mt19937 rng(11);
  for (auto [n, k] : {std::pair{1, 1}, {17, 5}, {33, 64}, {70, 9}}) {
    for (ActType in : {ActType::s8, ActType::u8}) {
      std::vector<std::int8_t> w(static_cast<std::size_t>(n) * k);
      std::uniform_int_distribution<int> d(-128, 127);
      for (auto& x : w) x = static_cast<std::int8_t>(d(rng));
      const PackedGemm p = pack(w, n, k, nullptr, in, 0);
      const GemmWeights& v = p.view();
      REQUIRE(v.panels16 != nullptr);
      for (int col = 0; col < v.n_pad; ++col)
        for (int kk = 0; kk < v.k4; ++kk) {
          const std::int16_t got = v.panels16[static_cast<std::int64_t>(col / 16) * 16 * v.k4 + (kk / 2) * 32 +
                                              (col % 16) * 2 + kk % 2];
          const int want = col < n && kk < k ? w[static_cast<std::size_t>(col) * k + kk] : 0;
          REQUIRE(got == want);
          if (col < n && kk < k) REQUIRE(packed_weight(v, col, kk) == want);
        }
    }
  }
}

TEST_CASE("gemm_kernel_name: names the micro-kernel each ISA runs (AVX2: 6x16c2 tile, 4x8c4 for GEMV rows)") {
  const std::vector<std::int8_t> w(64 * 32, 1);
  const PackedGemm p = pack(w, 64, 32, nullptr, ActType::s8, 0);
  for (int i = 0; i < kNumIsas; ++i) {
    const auto isa = static_cast<Isa>(i);
    if (!isa_compiled(isa)) continue;
    const std::string name = gemm_kernel_name(p.view(), isa, 64);
    CHECK(name.find(std::string("__") + isa_name(isa)) != std::string::npos);
  }
  if (isa_compiled(Isa::avx2)) {
    CHECK(std::string(gemm_kernel_name(p.view(), Isa::avx2, 64)) == "qs8_qc8w_gemm_6x16c2_requant__avx2");
    CHECK(std::string(gemm_kernel_name(p.view(), Isa::avx2, 1)) == "qs8_qc8w_gemm_4x8c4_requant__avx2");
  }
}
