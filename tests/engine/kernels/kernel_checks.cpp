#include "tests/engine/kernels/kernel_checks.hpp"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <string>

namespace qforge::kernels::testing {
namespace {

constexpr int kSizes[] = {1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 65};

int rand_int(std::mt19937& rng, int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); }

float rand_log_uniform(std::mt19937& rng, double lo, double hi) {
  return static_cast<float>(std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(rng)));
}

std::int32_t rand_zero_point(std::mt19937& rng, ActType t) {
  return t == ActType::s8 ? rand_int(rng, -128, 127) : rand_int(rng, 0, 255);
}

// Random activation bytes; saturate → only the extremes of the type.
void fill_acts(std::vector<std::uint8_t>& v, std::mt19937& rng, bool saturate) {
  for (auto& x : v) {
    if (!saturate) {
      x = static_cast<std::uint8_t>(rand_int(rng, 0, 255));
    } else {
      const int r = rand_int(rng, 0, 3);
      x = r == 0 ? 0x00 : r == 1 ? 0xFF : r == 2 ? 0x80 : 0x7F;  // u8 0/255, s8 -128/127
    }
  }
}

ActivationRange random_range(std::mt19937& rng, ActType t, std::int32_t zp) {
  ActivationRange r = type_range(t);
  switch (rand_int(rng, 0, 3)) {
    case 1: r.min = zp > r.min ? zp : r.min; break;  // ReLU
    case 2:
      r.min = zp > r.min ? zp : r.min;
      r.max = r.min + rand_int(rng, 0, r.max - r.min);  // ReLU6-like upper clamp
      break;
    default: break;
  }
  return r;
}

std::string describe(const GemmCase& c, Isa isa) {
  return std::string(isa_name(isa)) + " m=" + std::to_string(c.m) + " n=" + std::to_string(c.n) +
         " k=" + std::to_string(c.k) + " in=" + (c.in == ActType::s8 ? "s8" : "u8") +
         " out=" + (c.out == ActType::s8 ? "s8" : "u8") + (c.per_channel ? " per-channel" : " per-tensor") +
         (c.strict_grid ? " grid127" : " grid128") + (c.saturate ? " saturating" : "") +
         (c.rounding == Rounding::single ? "" : c.rounding == Rounding::float_rne ? " float-rne" : " double-rounding") + " threads=" + std::to_string(c.threads) +
         " lda+" + std::to_string(c.lda_extra) + " ldc+" + std::to_string(c.ldc_extra);
}

template <typename T>
int count_diff(const std::vector<T>& a, const std::vector<T>& b) {
  int d = 0;
  for (std::size_t i = 0; i < a.size(); ++i) d += a[i] != b[i];
  return d;
}

}  // namespace

GemmData make_gemm(const GemmCase& c, std::mt19937& rng) {
  GemmData d;
  d.cfg = c;
  const int wmin = c.strict_grid ? -127 : -128;
  d.w.resize(static_cast<std::size_t>(c.n) * c.k);
  for (auto& x : d.w) x = static_cast<std::int8_t>(c.saturate ? (rand_int(rng, 0, 1) ? 127 : wmin) : rand_int(rng, wmin, 127));
  d.bias.resize(c.n);
  for (auto& b : d.bias) b = rand_int(rng, -(1 << 20), 1 << 20);
  d.mult.resize(c.per_channel ? c.n : 1);
  for (auto& m : d.mult) {
    const double v = c.saturate ? rand_log_uniform(rng, 1e-3, 8.0) : rand_log_uniform(rng, 1.0 / 16384, 0.6);
    m = c.rounding == Rounding::float_rne ? float_multiplier(static_cast<float>(v)) : quantize_multiplier(v);
  }
  d.lda = c.k + c.lda_extra;
  d.ldc = c.n + c.ldc_extra;
  d.a.resize(static_cast<std::size_t>(c.m) * d.lda);
  fill_acts(d.a, rng, c.saturate);
  GemmLayer l;
  l.weights = d.w.data();
  l.n = c.n;
  l.k = c.k;
  l.bias = d.bias.data();
  l.in_type = c.in;
  l.in_zero_point = rand_zero_point(rng, c.in);
  l.multipliers = d.mult.data();
  l.per_channel = c.per_channel;
  l.out_type = c.out;
  l.out_zero_point = rand_zero_point(rng, c.out);
  l.range = random_range(rng, c.out, l.out_zero_point);
  l.rounding = c.rounding;
  d.packed = PackedGemm(l);
  return d;
}

int check_gemm(Isa isa, const GemmCase& c, std::mt19937& rng, bool s32) {
  GemmData d = make_gemm(c, rng);
  const GemmWeights& w = d.packed.view();
  const KernelTable& ref = kernel_table(Isa::ref);
  const KernelTable& sut = kernel_table(isa);
  int diff = 0;
  if (s32) {
    std::vector<std::int32_t> y_ref(static_cast<std::size_t>(c.m) * d.ldc, 0x5A5A5A5A), y(y_ref);
    ref.gemm_s32(c.m, d.a.data(), d.lda, w, y_ref.data(), d.ldc, 1);
    sut.gemm_s32(c.m, d.a.data(), d.lda, w, y.data(), d.ldc, c.threads);
    diff = count_diff(y_ref, y);
  } else {
    std::vector<std::uint8_t> y_ref(static_cast<std::size_t>(c.m) * d.ldc, 0xA5), y(y_ref);
    ref.gemm_requant(c.m, d.a.data(), d.lda, w, y_ref.data(), d.ldc, 1);
    sut.gemm_requant(c.m, d.a.data(), d.lda, w, y.data(), d.ldc, c.threads);
    diff = count_diff(y_ref, y);
  }
  INFO(describe(c, isa), (s32 ? " s32" : " requant"));
  CHECK(diff == 0);
  return diff;
}

namespace {

int sweep_gemm(Isa isa, bool s32) {
  std::mt19937 rng(1234 + static_cast<int>(isa) + (s32 ? 100 : 0));
  int diff = 0, i = 0;
  for (int m : kSizes)
    for (int n : {1, 2, 3, 5, 7, 8, 9, 16, 17, 63, 64, 65, 129}) {
      // A few K per (m, n), cycling through awkward values (and one K beyond the 2^24 float-exact limit).
      static constexpr int kKs[] = {1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 63, 64, 65, 300, 1100};
      for (int rep = 0; rep < 2; ++rep, ++i) {
        GemmCase c;
        c.m = m;
        c.n = n;
        c.k = kKs[(i * 7 + rep) % 15];
        if (m * n * c.k > 2'000'000) c.k = 65;
        c.in = (i % 3 == 1) ? ActType::u8 : ActType::s8;
        c.out = (i % 4 == 2) ? ActType::u8 : ActType::s8;
        c.per_channel = i % 2 == 0;
        c.strict_grid = i % 5 == 3;
        c.saturate = i % 6 == 4;
        c.rounding = i % 7 == 5 ? Rounding::double_gemmlowp : (i % 7 == 2 ? Rounding::float_rne : Rounding::single);
        c.lda_extra = i % 3 == 0 ? 0 : rand_int(rng, 1, 13);
        c.ldc_extra = i % 4 == 0 ? 0 : rand_int(rng, 1, 9);
        c.threads = i % 5 == 0 ? 2 : 1;
        diff += check_gemm(isa, c, rng, s32);
      }
    }
  return diff;
}

int sweep_conv(Isa isa) {
  std::mt19937 rng(77 + static_cast<int>(isa));
  int diff = 0;
  struct C { int b, h, w, cin, cout, kh, kw, sh, sw, pad, dil, groups; int xs_extra, ys_extra; };
  const C cases[] = {
      {1, 5, 5, 3, 4, 3, 3, 1, 1, 1, 1, 1, 0, 0},   {2, 7, 9, 5, 17, 3, 3, 2, 2, 1, 1, 1, 3, 2},
      {1, 8, 8, 16, 65, 1, 1, 1, 1, 0, 1, 1, 0, 0},  {1, 9, 7, 8, 8, 3, 3, 1, 2, 0, 1, 2, 1, 5},
      {1, 6, 6, 6, 9, 5, 5, 1, 1, 2, 1, 3, 0, 0},    {3, 4, 5, 1, 7, 2, 3, 1, 1, 1, 2, 1, 0, 1},
      {1, 16, 16, 17, 64, 3, 3, 1, 1, 1, 1, 1, 0, 0}, {1, 3, 3, 4, 4, 1, 1, 2, 2, 0, 1, 4, 2, 2},
      {1, 28, 28, 1, 8, 5, 5, 1, 1, 2, 1, 1, 0, 0},  {2, 11, 13, 32, 32, 1, 1, 1, 1, 0, 1, 1, 5, 3},
  };
  int idx = 0;
  for (const C& cc : cases) {
    ++idx;
    Conv2dShape s;
    s.batch = cc.b;
    s.in_h = cc.h;
    s.in_w = cc.w;
    s.in_c = cc.cin;
    s.out_c = cc.cout;
    s.kernel_h = cc.kh;
    s.kernel_w = cc.kw;
    s.stride_h = cc.sh;
    s.stride_w = cc.sw;
    s.pad_top = s.pad_left = s.pad_bottom = s.pad_right = cc.pad;
    s.dilation_h = s.dilation_w = cc.dil;
    s.groups = cc.groups;
    s.x_pixel_stride = cc.xs_extra ? cc.cin + cc.xs_extra : 0;
    s.y_pixel_stride = cc.ys_extra ? cc.cout + cc.ys_extra : 0;
    const ActType in = idx % 3 == 2 ? ActType::u8 : ActType::s8, out = idx % 4 == 1 ? ActType::u8 : ActType::s8;
    const bool sat = idx % 4 == 3, per_channel = idx % 2 == 0;
    std::vector<std::int8_t> w(static_cast<std::size_t>(cc.cout) * (cc.cin / cc.groups) * cc.kh * cc.kw);
    for (auto& x : w) x = static_cast<std::int8_t>(sat ? (rand_int(rng, 0, 1) ? 127 : -128) : rand_int(rng, -128, 127));
    std::vector<std::int32_t> bias(cc.cout);
    for (auto& b : bias) b = rand_int(rng, -50000, 50000);
    std::vector<QuantizedMultiplier> mult(per_channel ? cc.cout : 1);
    const Rounding rounding = idx == 5 ? Rounding::double_gemmlowp : (idx % 4 == 2 ? Rounding::float_rne : Rounding::single);
    for (auto& m : mult) {
      const double v = rand_log_uniform(rng, 1e-4, sat ? 2.0 : 0.1);
      m = rounding == Rounding::float_rne ? float_multiplier(static_cast<float>(v)) : quantize_multiplier(v);
    }
    const std::int32_t zin = rand_zero_point(rng, in), zout = rand_zero_point(rng, out);
    PackedConv2d pc(s, w.data(), bias.data(), in, zin, mult.data(), per_channel, out, zout,
                    random_range(rng, out, zout), rounding);
    std::vector<std::uint8_t> x(static_cast<std::size_t>(cc.b) * cc.h * cc.w * s.xs());
    fill_acts(x, rng, sat);
    const std::size_t ny = static_cast<std::size_t>(cc.b) * s.out_h() * s.out_w() * s.ys();
    std::vector<std::uint8_t> y_ref(ny, 0xA5), y(ny, 0xA5), ws(pc.workspace_bytes() + 1);
    kernel_table(Isa::ref).conv2d(pc.view(), x.data(), y_ref.data(), ws.data(), 1);
    kernel_table(isa).conv2d(pc.view(), x.data(), y.data(), ws.data(), idx % 2 ? 2 : 1);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), " conv case ", idx);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_dwconv(Isa isa) {
  std::mt19937 rng(91 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 14; ++idx) {
    DwConv3x3Params p;
    p.batch = 1 + idx % 2;
    p.in_h = kSizes[(idx * 5) % 12] % 19 + 1;
    p.in_w = kSizes[(idx * 7 + 3) % 12] % 23 + 1;
    p.channels = kSizes[idx % 12] + (idx == 13 ? 64 : 0);
    p.stride_h = 1 + idx % 2;
    p.stride_w = 1 + (idx / 2) % 2;
    p.pad_top = p.pad_left = idx % 3 == 0 ? 0 : 1;
    p.pad_bottom = p.pad_right = idx % 4 == 0 ? 0 : 1;
    if (p.in_h + p.pad_top + p.pad_bottom < 3) p.in_h = 3;
    if (p.in_w + p.pad_left + p.pad_right < 3) p.in_w = 3;
    p.x_pixel_stride = idx % 3 == 1 ? p.channels + 5 : 0;
    p.y_pixel_stride = idx % 5 == 2 ? p.channels + 3 : 0;
    p.type = idx % 3 == 2 ? ActType::u8 : ActType::s8;
    const bool sat = idx % 4 == 1;
    const int C = p.channels;
    std::vector<std::int8_t> w(9 * C);
    for (auto& x : w) x = static_cast<std::int8_t>(sat ? (rand_int(rng, 0, 1) ? 127 : -128) : rand_int(rng, -128, 127));
    std::vector<std::int32_t> bias(C), mult(C), shift(C);
    for (int c = 0; c < C; ++c) {
      bias[c] = rand_int(rng, -30000, 30000);
      const double v = rand_log_uniform(rng, 1e-4, sat ? 2.0 : 0.05);
      const auto qm = idx % 5 == 4 ? float_multiplier(static_cast<float>(v)) : quantize_multiplier(v);
      mult[c] = qm.multiplier;
      shift[c] = qm.shift;
    }
    p.weights = w.data();
    p.bias = bias.data();
    p.multiplier = mult.data();
    p.shift = shift.data();
    p.in_zero_point = rand_zero_point(rng, p.type);
    p.out_zero_point = rand_zero_point(rng, p.type);
    const ActivationRange r = random_range(rng, p.type, p.out_zero_point);
    p.act_min = r.min;
    p.act_max = r.max;
    p.rounding = idx == 6 ? Rounding::double_gemmlowp : (idx % 5 == 4 ? Rounding::float_rne : Rounding::single);
    const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : C, ys = p.y_pixel_stride ? p.y_pixel_stride : C;
    std::vector<std::uint8_t> x(static_cast<std::size_t>(p.batch) * p.in_h * p.in_w * xs);
    fill_acts(x, rng, sat);
    const std::size_t ny = static_cast<std::size_t>(p.batch) * p.out_h() * p.out_w() * ys;
    std::vector<std::uint8_t> y_ref(ny, 0xA5), y(ny, 0xA5);
    kernel_table(Isa::ref).dwconv3x3(p, x.data(), y_ref.data(), 1);
    kernel_table(isa).dwconv3x3(p, x.data(), y.data(), idx % 2 ? 2 : 1);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), " dwconv case ", idx, " C=", C, " ", p.in_h, "x", p.in_w);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_pool(Isa isa, bool is_max) {
  std::mt19937 rng(55 + static_cast<int>(isa) + is_max);
  int diff = 0;
  for (int idx = 0; idx < 18; ++idx) {
    Pool2dParams p;
    p.batch = 1 + idx % 2;
    p.channels = kSizes[(idx * 5) % 12] + (idx == 11 ? 128 : 0);
    p.kernel_h = 1 + idx % 3;
    p.kernel_w = 1 + (idx + 1) % 3;
    p.stride_h = 1 + idx % 2;
    p.stride_w = 1 + (idx / 3) % 2;
    p.pad_top = p.pad_bottom = p.kernel_h > 1 && idx % 2 ? 1 : 0;
    p.pad_left = p.pad_right = p.kernel_w > 1 && idx % 3 ? 1 : 0;
    p.in_h = 3 + idx;
    p.in_w = 4 + (idx * 3) % 7;
    p.type = idx % 2 ? ActType::u8 : ActType::s8;
    p.zero_point = rand_zero_point(rng, p.type);
    p.count_include_pad = idx % 3 != 2;
    if (!is_max && idx % 4 == 3) {  // onnxruntime's QLinearAveragePool, to another encoding
      p.float_average = true;
      const ActivationRange tr = type_range(p.type);
      p.average = {rand_log_uniform(rng, 1e-3, 1.0), rand_log_uniform(rng, 1e-3, 1.0), rand_zero_point(rng, p.type),
                   rand_zero_point(rng, p.type), tr.min, tr.max};
    }
    if (idx >= 12) {  // unpadded windows (the maxpool fast path): non-overlapping, overlapping, ragged edges
      p.kernel_h = p.stride_h = 2 + idx % 2;
      p.kernel_w = 2 + (idx / 2) % 2;
      p.stride_w = idx % 3 == 0 ? 1 : p.kernel_w;
      p.pad_top = p.pad_bottom = p.pad_left = p.pad_right = 0;
      p.channels = idx == 12 ? 16 : kSizes[idx % 12];
      p.in_h = 5 + idx % 4;
      p.in_w = 6 + idx % 5;
    }
    // Pixel strides after the channel count is final: a stride below it would make the kernels read past the
    // buffer (AddressSanitizer found this when the unpadded cases changed the channels afterwards).
    p.x_pixel_stride = idx % 4 == 1 ? p.channels + 2 : 0;
    p.y_pixel_stride = idx % 5 == 3 ? p.channels + 7 : 0;
    const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : p.channels;
    const std::int64_t ys = p.y_pixel_stride ? p.y_pixel_stride : p.channels;
    std::vector<std::uint8_t> x(static_cast<std::size_t>(p.batch) * p.in_h * p.in_w * xs);
    fill_acts(x, rng, idx % 4 == 0);
    const std::size_t ny = static_cast<std::size_t>(p.batch) * p.out_h() * p.out_w() * ys;
    std::vector<std::uint8_t> y_ref(ny, 0xA5), y(ny, 0xA5);
    const KernelTable &ref = kernel_table(Isa::ref), &sut = kernel_table(isa);
    (is_max ? ref.maxpool2d : ref.avgpool2d)(p, x.data(), y_ref.data(), 1);
    (is_max ? sut.maxpool2d : sut.avgpool2d)(p, x.data(), y.data(), idx % 2 ? 2 : 1);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), is_max ? " maxpool" : " avgpool", " case ", idx);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_add(Isa isa) {
  std::mt19937 rng(31 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 16; ++idx) {
    const std::int64_t n = kSizes[idx % 12] + (idx >= 12 ? 1000 * idx : 0);
    const ActType t = idx % 2 ? ActType::u8 : ActType::s8;
    const std::int32_t zo = rand_zero_point(rng, t);
    const ArithProfile prof = idx % 3 == 1 ? ArithProfile::onnxruntime : ArithProfile::dsp;
    const AddParams p = profile_add_params(prof, rand_log_uniform(rng, 1e-3, 1.0), rand_zero_point(rng, t),
                                           rand_log_uniform(rng, 1e-3, 1.0), rand_zero_point(rng, t),
                                           rand_log_uniform(rng, 1e-3, 1.0), zo, random_range(rng, t, zo), t);
    std::vector<std::uint8_t> a(n), b(n), y_ref(n + 3, 0xA5), y(n + 3, 0xA5);
    fill_acts(a, rng, idx % 3 == 0);
    fill_acts(b, rng, idx % 3 == 0);
    kernel_table(Isa::ref).add(n, a.data(), b.data(), y_ref.data(), p, t);
    kernel_table(isa).add(n, a.data(), b.data(), y.data(), p, t);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), " add n=", n);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_requant(Isa isa) {
  std::mt19937 rng(43 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 18; ++idx) {
    const std::int64_t n = kSizes[idx % 12] + (idx >= 12 ? 777 * idx : 0);
    RequantParams p;
    p.type = idx % 2 ? ActType::u8 : ActType::s8;
    p.in_zero_point = rand_zero_point(rng, p.type);
    p.out_zero_point = rand_zero_point(rng, p.type);
    const ActivationRange r = random_range(rng, p.type, p.out_zero_point);
    p.act_min = r.min;
    p.act_max = r.max;
    const double mv = rand_log_uniform(rng, 1e-3, idx % 4 == 1 ? 300.0 : 4.0);
    p.rounding = idx % 5 == 3 ? Rounding::double_gemmlowp : (idx % 5 == 4 ? Rounding::float_rne : Rounding::single);
    p.multiplier = p.rounding == Rounding::float_rne ? float_multiplier(static_cast<float>(mv)) : quantize_multiplier(mv);
    p.identity = idx % 6 == 5;
    p.dequantize_quantize = idx % 7 == 2 || idx % 7 == 5;  // onnxruntime: DequantizeLinear → QuantizeLinear
    p.in_scale = rand_log_uniform(rng, 1e-3, 1.0);
    p.out_scale = static_cast<float>(p.in_scale / mv);
    std::vector<std::uint8_t> x(n), y_ref(n + 3, 0xA5), y(n + 3, 0xA5);
    fill_acts(x, rng, idx % 3 == 0);
    kernel_table(Isa::ref).requant(n, x.data(), y_ref.data(), p);
    kernel_table(isa).requant(n, x.data(), y.data(), p);
    int d = count_diff(y_ref, y);
    if (idx % 4 == 2) {  // in place
      std::vector<std::uint8_t> z = x;
      z.resize(n + 3, 0xA5);
      kernel_table(isa).requant(n, z.data(), z.data(), p);
      d += count_diff(y_ref, z);
    }
    INFO(isa_name(isa), " requant case ", idx, " n=", n);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_global_avgpool(Isa isa) {
  std::mt19937 rng(47 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 16; ++idx) {
    GlobalAvgPoolParams p;
    p.batch = 1 + idx % 3;
    p.pixels = kSizes[(idx * 5) % 12] + (idx == 15 ? 4000 : 0);
    p.channels = kSizes[idx % 12] + (idx >= 12 ? 64 * idx : 0);
    p.x_pixel_stride = idx % 3 == 1 ? p.channels + 5 : 0;
    p.type = idx % 2 ? ActType::u8 : ActType::s8;
    p.in_zero_point = rand_zero_point(rng, p.type);
    p.out_zero_point = rand_zero_point(rng, p.type);
    const ActivationRange r = random_range(rng, p.type, p.out_zero_point);
    p.act_min = r.min;
    p.act_max = r.max;
    const double mv = rand_log_uniform(rng, 0.1, 4.0) / p.pixels;
    p.rounding = idx % 5 == 3 ? Rounding::double_gemmlowp : (idx % 5 == 1 ? Rounding::float_rne : Rounding::single);
    p.multiplier = p.rounding == Rounding::float_rne ? float_multiplier(static_cast<float>(mv)) : quantize_multiplier(mv);
    const std::int64_t xs = p.x_pixel_stride ? p.x_pixel_stride : p.channels;
    std::vector<std::uint8_t> x(static_cast<std::size_t>(p.batch) * p.pixels * xs);
    fill_acts(x, rng, idx % 4 == 0);
    const std::size_t ny = static_cast<std::size_t>(p.batch) * p.channels;
    std::vector<std::uint8_t> y_ref(ny + 3, 0xA5), y(ny + 3, 0xA5);
    kernel_table(Isa::ref).global_avgpool(p, x.data(), y_ref.data(), 1);
    kernel_table(isa).global_avgpool(p, x.data(), y.data(), idx % 2 ? 2 : 1);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), " global_avgpool case ", idx, " pixels=", p.pixels, " C=", p.channels);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_quantize(Isa isa, bool quant) {
  std::mt19937 rng(17 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 14; ++idx) {
    const std::int64_t n = kSizes[idx % 12] + (idx >= 12 ? 4097 : 0);
    const ActType t = idx % 2 ? ActType::u8 : ActType::s8;
    const float scale = rand_log_uniform(rng, 1e-3, 1.0);
    const std::int32_t zp = rand_zero_point(rng, t);
    if (quant) {
      std::vector<float> x(n);
      for (std::int64_t i = 0; i < n; ++i) {
        const int r = rand_int(rng, 0, 9);
        // Exact ties (k + 0.5)·scale where representable, huge values, NaN/inf, ordinary values.
        x[i] = r == 0 ? (rand_int(rng, -200, 200) + 0.5f) * scale
               : r == 1 ? (rand_int(rng, 0, 1) ? 1e30f : -1e30f)
               : r == 2 ? (rand_int(rng, 0, 1) ? NAN : INFINITY)
                        : std::uniform_real_distribution<float>(-300, 300)(rng) * scale;
      }
      std::vector<std::uint8_t> y_ref(n + 3, 0xA5), y(n + 3, 0xA5);
      kernel_table(Isa::ref).quantize(n, x.data(), y_ref.data(), 1.0f / scale, zp, t);
      kernel_table(isa).quantize(n, x.data(), y.data(), 1.0f / scale, zp, t);
      const int d = count_diff(y_ref, y);
      INFO(isa_name(isa), " quantize n=", n);
      CHECK(d == 0);
      diff += d;
    } else {
      std::vector<std::uint8_t> x(n);
      fill_acts(x, rng, false);
      std::vector<float> y_ref(n + 3, -7.f), y(n + 3, -7.f);
      kernel_table(Isa::ref).dequantize(n, x.data(), y_ref.data(), scale, zp, t);
      kernel_table(isa).dequantize(n, x.data(), y.data(), scale, zp, t);
      int d = 0;
      for (std::int64_t i = 0; i < n + 3; ++i) d += std::memcmp(&y_ref[i], &y[i], 4) != 0;
      INFO(isa_name(isa), " dequantize n=", n);
      CHECK(d == 0);
      diff += d;
    }
  }
  return diff;
}

int sweep_quantize_linear(Isa isa) {
  std::mt19937 rng(19 + static_cast<int>(isa));
  int diff = 0;
  for (int idx = 0; idx < 14; ++idx) {
    const std::int64_t n = kSizes[idx % 12] + (idx >= 12 ? 4097 : 0);
    const ActType t = idx % 2 ? ActType::u8 : ActType::s8;
    const float scale = rand_log_uniform(rng, 1e-3, 1.0);
    const std::int32_t zp = rand_zero_point(rng, t);
    std::vector<float> x(n);
    for (std::int64_t i = 0; i < n; ++i) {
      const int r = rand_int(rng, 0, 9);
      x[i] = r == 0 ? (rand_int(rng, -200, 200) + 0.5f) * scale
             : r == 1 ? (rand_int(rng, 0, 1) ? 1e30f : -1e30f)
             : r == 2 ? (rand_int(rng, 0, 1) ? NAN : INFINITY)
                      : std::uniform_real_distribution<float>(-300, 300)(rng) * scale;
    }
    std::vector<std::uint8_t> y_ref(n + 3, 0xA5), y(n + 3, 0xA5);
    kernel_table(Isa::ref).quantize_linear(n, x.data(), y_ref.data(), scale, zp, t);
    kernel_table(isa).quantize_linear(n, x.data(), y.data(), scale, zp, t);
    const int d = count_diff(y_ref, y);
    INFO(isa_name(isa), " quantize_linear n=", n);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

int sweep_rnn(Isa isa, bool lstm) {
  std::mt19937 rng(200 + static_cast<int>(isa) + lstm);
  int diff = 0;
  const int G = lstm ? 4 : 3;
  for (int idx = 0; idx < 8; ++idx) {
    const int batch = 1 + idx % 3 + (idx == 7 ? 6 : 0), in = kSizes[(idx * 5 + 2) % 12], H = kSizes[(idx * 7 + 1) % 12];
    const std::int32_t zx = rand_int(rng, -128, 127), zh = rand_int(rng, -20, 20);
    auto make = [&](int k, std::int32_t zin, std::vector<std::int8_t>& w, std::vector<std::int32_t>& b,
                    std::vector<QuantizedMultiplier>& m) {
      w.resize(static_cast<std::size_t>(G) * H * k);
      for (auto& x : w) x = static_cast<std::int8_t>(rand_int(rng, -127, 127));
      b.resize(G * H);
      for (auto& x : b) x = rand_int(rng, -100000, 100000);
      m.resize(G * H);
      for (auto& x : m) x = quantize_multiplier(rand_log_uniform(rng, 1e-3, idx == 3 ? 4.0 : 0.3));
      GemmLayer l;
      l.weights = w.data();
      l.n = G * H;
      l.k = k;
      l.bias = b.data();
      l.in_type = ActType::s8;
      l.in_zero_point = zin;
      l.multipliers = m.data();
      l.per_channel = true;
      return PackedGemm(l);
    };
    std::vector<std::int8_t> wx, wh;
    std::vector<std::int32_t> bx, bh;
    std::vector<QuantizedMultiplier> mx, mh;
    const PackedGemm px = make(in, zx, wx, bx, mx), ph = make(H, zh, wh, bh, mh);
    RnnWeights rw;
    rw.input = px.view();
    rw.recurrent = ph.view();
    rw.hidden = H;
    rw.cell.cell_exp = -11 + idx % 3;
    rw.cell.cell_clip = idx % 2 ? 20000 : 0;
    rw.cell.hidden = quantize_multiplier(std::ldexp(1.0, -30) / rand_log_uniform(rng, 0.004, 0.02));
    rw.cell.hidden_zero_point = zh;
    const std::int64_t ldx = in + idx % 3, ldh = H + idx % 2, ldo = H + (idx + 1) % 2;
    std::vector<std::uint8_t> x(static_cast<std::size_t>(batch) * ldx), h(static_cast<std::size_t>(batch) * ldh);
    fill_acts(x, rng, idx == 5);
    fill_acts(h, rng, idx == 5);
    std::vector<std::int16_t> c_ref(static_cast<std::size_t>(batch) * H);
    for (auto& v : c_ref) v = static_cast<std::int16_t>(rand_int(rng, -32768, 32767));
    std::vector<std::int16_t> c(c_ref);
    std::vector<std::uint8_t> y_ref(static_cast<std::size_t>(batch) * ldo, 0xA5), y(y_ref);
    std::vector<std::int32_t> ws(static_cast<std::size_t>(2 * G) * H * batch);
    const KernelTable &ref = kernel_table(Isa::ref), &sut = kernel_table(isa);
    // Two steps, the second fed with the first's hidden state.
    for (int step = 0; step < 2; ++step) {
      if (lstm) {
        ref.lstm_step(rw, batch, x.data(), ldx, h.data(), ldh, c_ref.data(), y_ref.data(), ldo, ws.data(), 1);
        sut.lstm_step(rw, batch, x.data(), ldx, h.data(), ldh, c.data(), y.data(), ldo, ws.data(), 1 + idx % 2);
      } else {
        ref.gru_step(rw, batch, x.data(), ldx, h.data(), ldh, y_ref.data(), ldo, ws.data(), 1);
        sut.gru_step(rw, batch, x.data(), ldx, h.data(), ldh, y.data(), ldo, ws.data(), 1 + idx % 2);
      }
      for (int b = 0; b < batch; ++b)
        for (int j = 0; j < H; ++j) h[b * ldh + j] = y_ref[b * ldo + j];
    }
    const int d = count_diff(y_ref, y) + count_diff(c_ref, c);
    INFO(isa_name(isa), lstm ? " lstm" : " gru", " batch=", batch, " in=", in, " H=", H);
    CHECK(d == 0);
    diff += d;
  }
  return diff;
}

}  // namespace

int check_kind(KernelKind kind, Isa isa) {
  switch (kind) {
    case KernelKind::gemm_requant: return sweep_gemm(isa, false);
    case KernelKind::gemm_s32: return sweep_gemm(isa, true);
    case KernelKind::conv2d: return sweep_conv(isa);
    case KernelKind::dwconv3x3: return sweep_dwconv(isa);
    case KernelKind::maxpool2d: return sweep_pool(isa, true);
    case KernelKind::avgpool2d: return sweep_pool(isa, false);
    case KernelKind::add: return sweep_add(isa);
    case KernelKind::quantize: return sweep_quantize(isa, true);
    case KernelKind::dequantize: return sweep_quantize(isa, false);
    case KernelKind::lstm_step: return sweep_rnn(isa, true);
    case KernelKind::gru_step: return sweep_rnn(isa, false);
    case KernelKind::requant: return sweep_requant(isa);
    case KernelKind::global_avgpool: return sweep_global_avgpool(isa);
    case KernelKind::quantize_linear: return sweep_quantize_linear(isa);
  }
  return 0;
}

}  // namespace qforge::kernels::testing
