// 16-bit-activation kernels (kernels16.hpp): every ISA's kernel equals the scalar reference bit for bit over
// awkward shapes and saturating values, and the reference equals the textbook int64 formula.
#include <doctest/doctest.h>

#include "engine/kernels/kernels16.hpp"

#include <random>
#include <string>
#include <vector>

using namespace qforge::kernels;

namespace {

const Kernel16Table& R() { return kernel16_table(Isa::ref); }

std::vector<Isa> isas() {
  std::vector<Isa> out;
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) out.push_back(static_cast<Isa>(i));
  return out;
}

// Activations: random int16 codes, or only the extremes when `sat`.
std::vector<std::int16_t> codes(std::size_t n, std::mt19937& rng, bool sat) {
  std::uniform_int_distribution<int> d(-32768, 32767), e(0, 1);
  std::vector<std::int16_t> v(n);
  for (auto& x : v) x = static_cast<std::int16_t>(sat ? (e(rng) ? 32767 : -32768) : d(rng));
  return v;
}
std::vector<std::int8_t> weights(std::size_t n, std::mt19937& rng, bool sat) {
  std::uniform_int_distribution<int> d(-128, 127), e(0, 1);
  std::vector<std::int8_t> v(n);
  for (auto& x : v) x = static_cast<std::int8_t>(sat ? (e(rng) ? 127 : -128) : d(rng));
  return v;
}
std::vector<QuantizedMultiplier> mults(int n, int k, std::mt19937& rng) {
  // Multipliers that put the typical |acc| ≈ 2^22·sqrt(k) around a few thousand output LSBs.
  std::uniform_real_distribution<double> d(0.5, 4.0);
  std::vector<QuantizedMultiplier> m(static_cast<std::size_t>(n));
  for (auto& x : m) x = quantize_multiplier(d(rng) * 2e-3 / std::sqrt(static_cast<double>(k)) / 64.0);
  return m;
}

struct Gemm16Data {
  std::vector<std::int8_t> w;
  std::vector<std::int32_t> bias;
  std::vector<QuantizedMultiplier> m;
  std::vector<std::int16_t> a;
  std::int64_t lda, ldc;
  PackedGemm16 packed;
};

// aligned: every product at its extreme with one sign (|acc| = 65535·128·k), the worst case for int32.
Gemm16Data make16(int m, int n, int k, bool sat, std::mt19937& rng, bool aligned = false) {
  const std::int32_t zin = -1234, zout = 77;
  Gemm16Data d;
  d.w = weights(static_cast<std::size_t>(n) * k, rng, sat);
  if (aligned) d.w.assign(d.w.size(), -128);
  std::uniform_int_distribution<int> bd(-1 << 20, 1 << 20);
  for (int i = 0; i < n; ++i) d.bias.push_back(bd(rng));
  d.m = mults(n, k, rng);
  if (sat) d.m[0] = quantize_multiplier(0.999);  // saturates the output
  d.lda = k + 3;
  d.ldc = n + 2;
  d.a = codes(static_cast<std::size_t>(m) * d.lda, rng, sat);
  if (aligned) d.a.assign(d.a.size(), -32768);
  Gemm16Layer l;
  l.weights = d.w.data();
  l.n = n;
  l.k = k;
  l.bias = d.bias.data();
  l.in_zero_point = sat ? 32767 : zin;
  l.multipliers = d.m.data();
  l.per_channel = true;
  l.out_zero_point = zout;
  l.range = {-32768, 32767};
  d.packed = PackedGemm16(l);
  return d;
}

}  // namespace

TEST_CASE("requantize_single64: single rounding of an int64 accumulator (ties toward +inf), = requantize_single in int32") {
  const QuantizedMultiplier half{1 << 30, 0};  // 0.5
  CHECK(requantize_single64(5, half) == 3);
  CHECK(requantize_single64(-5, half) == -2);
  CHECK(requantize_single64(std::int64_t{1} << 40, half) == std::int64_t{1} << 39);
  CHECK(requantize_single64(-(std::int64_t{3} << 40) - 1, half) == -(std::int64_t{3} << 39) - 1 + 1);  // -x.5 → up
  std::mt19937 rng(3);
  std::uniform_int_distribution<std::int32_t> acc(INT32_MIN, INT32_MAX);
  for (int i = 0; i < 20000; ++i) {
    const QuantizedMultiplier m = quantize_multiplier(std::ldexp(1.0, -(i % 30)) * 0.77);
    const std::int32_t a = acc(rng);
    REQUIRE(requantize_single64(a, m) == requantize_single(a, m));
  }
  CHECK(add_value64(100, -7, make_add_params(0.5f, 3, 0.25f, -7, 1.0f, 0, {-32768, 32767})) == 49);
}

TEST_CASE("gemm16 reference: equals the naive int64 formula, including sums beyond int32") {
  std::mt19937 rng(1);
  for (int k : {1, 7, 510, 511, 2049}) {
    CAPTURE(k);
    Gemm16Data d = make16(3, 5, k, true, rng, k == 2049);
    std::vector<std::int16_t> c(3 * d.ldc, 0);
    R().gemm_requant(3, d.a.data(), d.lda, d.packed.view(), c.data(), d.ldc, 1);
    bool beyond32 = false;
    for (int i = 0; i < 3; ++i)
      for (int n = 0; n < 5; ++n) {
        std::int64_t acc = d.bias[n];
        for (int kk = 0; kk < k; ++kk) acc += std::int64_t{d.a[i * d.lda + kk] - 32767} * d.w[n * k + kk];
        beyond32 = beyond32 || acc > INT32_MAX || acc < INT32_MIN;
        REQUIRE(c[i * d.ldc + n] == requantize_output64(acc, d.m[n], 77, -32768, 32767));
      }
    if (k == 2049) CHECK(beyond32);  // the case an int32 accumulator would get wrong
  }
}

TEST_CASE("gemm16: every ISA equals the reference over awkward shapes, saturating values and 1/2 threads") {
  std::mt19937 rng(7);
  for (Isa isa : isas()) {
    const std::string name = isa_name(isa);
    CAPTURE(name);
    const Kernel16Table& t = kernel16_table(isa);
    for (int m : {1, 2, 3, 5, 7, 8, 9, 17})
      for (int n : {1, 2, 3, 16, 17, 63, 64, 65})
        for (int k : {1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 65, 509, 1021})
          for (bool sat : {false, true}) {
            if ((m * 7 + n * 3 + k) % 3 != 0 && !(m == 1 || k > 500)) continue;  // a sparse cover of the grid
            CAPTURE(m);
            CAPTURE(n);
            CAPTURE(k);
            CAPTURE(sat);
            Gemm16Data d = make16(m, n, k, sat, rng);
            std::vector<std::int16_t> want(m * d.ldc, 5), got(m * d.ldc, 5);
            R().gemm_requant(m, d.a.data(), d.lda, d.packed.view(), want.data(), d.ldc, 1);
            t.gemm_requant(m, d.a.data(), d.lda, d.packed.view(), got.data(), d.ldc, 1 + (k % 2));
            REQUIRE(got == want);
          }
  }
}

TEST_CASE("conv2d16: every ISA equals the direct reference (3x3/1x1/5x5, strides, padding, groups, depthwise, dilation)") {
  struct C { int h, w, ci, co, kh, kw, s, pad, g, dil; };
  const C cases[] = {{5, 7, 3, 8, 3, 3, 1, 1, 1, 1},   {9, 9, 16, 17, 3, 3, 2, 1, 1, 1}, {8, 8, 5, 3, 1, 1, 1, 0, 1, 1},
                     {7, 5, 8, 8, 3, 3, 1, 1, 8, 1},   {6, 6, 4, 6, 3, 3, 1, 0, 2, 1},   {9, 8, 3, 5, 5, 5, 1, 2, 1, 1},
                     {8, 9, 2, 3, 3, 3, 1, 2, 1, 2},   {17, 3, 1, 2, 2, 2, 2, 0, 1, 1},  {8, 8, 65, 9, 1, 1, 2, 0, 1, 1}};
  std::mt19937 rng(11);
  for (Isa isa : isas()) {
    const std::string name = isa_name(isa);
    CAPTURE(name);
    int idx = 0;
    for (const C& c : cases) {
      for (bool sat : {false, true}) {
        CAPTURE(idx);
        CAPTURE(sat);
        Conv2dShape s;
        s.batch = 2;
        s.in_h = c.h;
        s.in_w = c.w;
        s.in_c = c.ci;
        s.out_c = c.co;
        s.kernel_h = c.kh;
        s.kernel_w = c.kw;
        s.stride_h = s.stride_w = c.s;
        s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = c.pad;
        s.groups = c.g;
        s.dilation_h = s.dilation_w = c.dil;
        const auto w = weights(static_cast<std::size_t>(c.co) * (c.ci / c.g) * c.kh * c.kw, rng, sat);
        std::vector<std::int32_t> bias(c.co, -999);
        const auto m = mults(c.co, c.ci * c.kh * c.kw, rng);
        const PackedConv2d16 pc(s, w.data(), bias.data(), sat ? -32768 : 321, m.data(), -5, {-30000, 32000});
        const auto x = codes(static_cast<std::size_t>(2) * c.h * c.w * c.ci, rng, sat);
        const std::size_t ny = static_cast<std::size_t>(2) * s.out_h() * s.out_w() * c.co;
        std::vector<std::int16_t> want(ny, 1), got(ny, 2);
        std::vector<std::uint8_t> ws(pc.workspace_bytes() + 64);
        R().conv2d(pc.view(), x.data(), want.data(), nullptr, 1);
        kernel16_table(isa).conv2d(pc.view(), x.data(), got.data(), ws.data(), 2);
        REQUIRE(got == want);
      }
      ++idx;
    }
  }
}

TEST_CASE("pooling, add, requant, quantize, dequantize (16-bit): every ISA equals the reference") {
  std::mt19937 rng(5);
  for (Isa isa : isas()) {
    const std::string name = isa_name(isa);
    CAPTURE(name);
    const Kernel16Table& t = kernel16_table(isa);
    for (int C : {1, 3, 16, 17, 65})
      for (bool sat : {false, true}) {
        CAPTURE(C);
        Pool2dParams p;
        p.batch = 2;
        p.in_h = 7;
        p.in_w = 9;
        p.channels = C;
        p.kernel_h = p.kernel_w = 3;
        p.stride_h = p.stride_w = 2;
        p.pad_top = p.pad_left = p.pad_bottom = p.pad_right = 1;
        p.zero_point = sat ? -32768 : 1000;
        p.count_include_pad = C % 2 == 1;
        const auto x = codes(static_cast<std::size_t>(2) * 7 * 9 * C, rng, sat);
        const std::size_t ny = static_cast<std::size_t>(2) * p.out_h() * p.out_w() * C;
        for (bool mx : {true, false}) {
          std::vector<std::int16_t> want(ny), got(ny);
          (mx ? R().maxpool2d : R().avgpool2d)(p, x.data(), want.data(), 1);
          (mx ? t.maxpool2d : t.avgpool2d)(p, x.data(), got.data(), 2);
          REQUIRE(got == want);
        }
        GlobalAvgPoolParams g;
        g.batch = 2;
        g.pixels = 63;
        g.channels = C;
        g.in_zero_point = -77;
        g.out_zero_point = 3;
        g.act_min = -32768;
        g.act_max = 32767;
        g.multiplier = quantize_multiplier(1.0 / 63 * 1.3);
        std::vector<std::int16_t> want(2 * C), got(2 * C);
        R().global_avgpool(g, x.data(), want.data(), 1);
        t.global_avgpool(g, x.data(), got.data(), 1);
        REQUIRE(got == want);
      }
    for (std::int64_t n : {1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 65, 1000}) {
      CAPTURE(n);
      for (bool sat : {false, true}) {
        const auto a = codes(n, rng, sat), b = codes(n, rng, sat);
        const AddParams ap = make_add_params(3e-4f, -100, 7e-5f, 2000, 2e-4f, -3, {-32768, 32767});
        std::vector<std::int16_t> want(n), got(n);
        R().add(n, a.data(), b.data(), want.data(), ap);
        t.add(n, a.data(), b.data(), got.data(), ap);
        REQUIRE(got == want);
        for (bool id : {false, true}) {
          RequantParams r;
          r.identity = id;
          r.in_zero_point = -5;
          r.out_zero_point = 300;
          r.act_min = -20000;
          r.act_max = 30000;
          r.multiplier = quantize_multiplier(1.7);
          R().requant(n, a.data(), want.data(), r);
          t.requant(n, a.data(), got.data(), r);
          REQUIRE(got == want);
        }
        std::vector<float> f(n), fw(n), fg(n);
        std::uniform_real_distribution<float> fd(-40.0f, 40.0f);
        for (auto& v : f) v = sat ? (fd(rng) > 0 ? 1e30f : -1e30f) : fd(rng);
        R().quantize(n, f.data(), want.data(), 1.0f / 1e-3f, 17, -32768, 32767);
        t.quantize(n, f.data(), got.data(), 1.0f / 1e-3f, 17, -32768, 32767);
        REQUIRE(got == want);
        R().dequantize(n, a.data(), fw.data(), 1e-3f, 17);
        t.dequantize(n, a.data(), fg.data(), 1e-3f, 17);
        REQUIRE(fg == fw);
      }
    }
  }
}

TEST_CASE("lstm16_step: every ISA equals the reference, h_out aliasing h_prev") {
  std::mt19937 rng(9);
  for (Isa isa : isas()) {
    const std::string name = isa_name(isa);
    CAPTURE(name);
    for (int H : {1, 3, 16, 17})
      for (int F : {1, 5, 28, 64})
        for (int batch : {1, 3}) {
          CAPTURE(H);
          CAPTURE(F);
          const auto wi = weights(4 * H * F, rng, false), wh = weights(4 * H * H, rng, false);
          std::vector<std::int32_t> b(4 * H, 4000);
          std::vector<QuantizedMultiplier> mi(4 * H, quantize_multiplier(3e-5)), mh(4 * H, quantize_multiplier(2e-5));
          Gemm16Layer li{wi.data(), 4 * H, F, b.data(), 123, mi.data(), true, 0, {-32768, 32767}};
          Gemm16Layer lh{wh.data(), 4 * H, H, nullptr, -50, mh.data(), true, 0, {-32768, 32767}};
          const PackedGemm16 pi(li), ph(lh);
          Rnn16Weights w{pi.view(), ph.view(), {}, H};
          w.cell.hidden = quantize_multiplier(std::ldexp(1.0 / 3e-5, -30));
          w.cell.hidden_zero_point = -50;
          w.cell.hidden_min = -32768;
          w.cell.hidden_max = 32767;
          const auto x = codes(static_cast<std::size_t>(batch) * F, rng, false);
          auto h_ref = codes(static_cast<std::size_t>(batch) * H, rng, false);
          auto h_got = h_ref;
          std::vector<std::int16_t> c_ref(batch * H, 0), c_got;
          std::vector<std::int16_t> ws(8 * H * batch);
          for (int step = 0; step < 3; ++step) {
            R().lstm_step(w, batch, x.data(), F, h_ref.data(), H, c_ref.data(), h_ref.data(), H, ws.data(), 1);
            if (step == 0) c_got.assign(batch * H, 0);
            kernel16_table(isa).lstm_step(w, batch, x.data(), F, h_got.data(), H, c_got.data(), h_got.data(), H,
                                          ws.data(), 1);
            REQUIRE(h_got == h_ref);
            REQUIRE(c_got == c_ref);
          }
        }
  }
}

TEST_CASE("kernel16 registry: every compiled ISA has every 16-bit kernel, listed once by name") {
  for (int i = 0; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!isa_compiled(isa)) continue;
    const Kernel16Table& t = kernel16_table(isa);
    CHECK(static_cast<bool>(t.gemm_requant));
    CHECK(static_cast<bool>(t.lstm_step));
    for (int k = 0; k < kNumKernel16Kinds; ++k)
      CHECK(std::string(kernel16_name(static_cast<Kernel16Kind>(k), isa)) != "?");
  }
  if (isa_compiled(Isa::avx2))  // x86-64 builds only (an aarch64 build registers neon/neondot instead)
    CHECK(std::string(kernel16_name(Kernel16Kind::gemm_requant, Isa::avx2)) == "qs16_qc8w_gemm_4x16c2_requant__avx2");
  else
    CHECK(std::string(kernel16_name(Kernel16Kind::gemm_requant, Isa::avx2)) == "?");
}
