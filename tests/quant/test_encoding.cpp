// Encoding arithmetic against AIMET's worked examples (aimet-compat.md §4.3).
#include <doctest/doctest.h>

#include "quant/encoding.hpp"

#include <cmath>

using namespace qforge;
using namespace qforge::quant;

namespace {
GridSpec grid(int bw, bool sym, bool strict = false, bool uns = false) {
  GridSpec g;
  g.bitwidth = bw;
  g.symmetric = sym;
  g.strict_symmetric = strict;
  g.unsigned_symmetric = uns;
  return g;
}
}  // namespace

TEST_CASE("encoding: asymmetric [-1, 3] 8-bit matches AIMET (delta 4/255, offset -64)") {
  Encoding e = compute_encoding(-1, 3, grid(8, false));
  CHECK(e.delta == doctest::Approx(4.0 / 255).epsilon(1e-12));
  CHECK(e.offset == -64);
  CHECK(e.min == doctest::Approx(-1.0039216).epsilon(1e-7));
  CHECK(e.max == doctest::Approx(2.9960784).epsilon(1e-7));
  // the range is shifted, its width kept
  CHECK(e.max - e.min == doctest::Approx(4.0).epsilon(1e-12));
}

TEST_CASE("encoding: symmetric, strict and unsigned symmetric match AIMET") {
  Encoding s = compute_encoding(-1, 3, grid(8, true));
  CHECK(s.delta == doctest::Approx(3.0 / 127).epsilon(1e-12));
  CHECK(s.offset == -128);
  CHECK(s.min == doctest::Approx(-3.0236220).epsilon(1e-7));
  CHECK(s.max == doctest::Approx(3.0).epsilon(1e-12));

  Encoding st = compute_encoding(-1, 3, grid(8, true, true));
  CHECK(st.delta == doctest::Approx(3.0 / 127).epsilon(1e-12));
  CHECK(st.offset == -127);
  CHECK(st.min == doctest::Approx(-3.0).epsilon(1e-12));
  CHECK(st.steps() == 254);

  Encoding u = compute_encoding(0, 3, grid(8, true, false, true));
  CHECK(u.delta == doctest::Approx(3.0 / 255).epsilon(1e-12));
  CHECK(u.offset == 0);
  CHECK(u.min == 0);
  CHECK(u.max == doctest::Approx(3.0).epsilon(1e-12));

  // unsigned symmetric is ignored when min < 0
  Encoding u2 = compute_encoding(-0.5, 3, grid(8, true, false, true));
  CHECK(u2.offset == -128);

  // |min| > max: v1 divides by 127
  Encoding n = compute_encoding(-3, 1, grid(8, true));
  CHECK(n.delta == doctest::Approx(3.0 / 127).epsilon(1e-12));
  CHECK(n.offset == -128);
}

TEST_CASE("encoding: gating keeps 0 representable and enforces the minimum range") {
  Encoding a = compute_encoding(0.2, 3, grid(8, false));
  CHECK(a.min == 0);
  CHECK(a.offset == 0);
  CHECK(a.delta == doctest::Approx(3.0 / 255).epsilon(1e-12));
  Encoding z = compute_encoding(0, 0, grid(8, false));
  CHECK(z.max - z.min == doctest::Approx(kMinRange).epsilon(1e-12));
  Encoding neg = compute_encoding(-2, -1, grid(8, false));
  CHECK(neg.max == 0);
  CHECK(neg.offset == -255);
  Encoding inf = compute_encoding(-INFINITY, INFINITY, grid(8, false));
  CHECK(std::isfinite(inf.delta));
  // zero lands exactly on the grid
  for (double lo : {-0.37, -1.0, -5.3}) {
    Encoding e = compute_encoding(lo, 2.1, grid(4, false));
    const double q0 = -e.offset;
    CHECK(q0 == std::round(q0));
    CHECK(e.delta * (q0 + e.offset) == 0.0);
  }
}

TEST_CASE("encoding: bitwidths 2..16 and 32 for biases; others rejected") {
  for (int bw = 2; bw <= 16; ++bw) {
    Encoding e = compute_encoding(-1, 1, grid(bw, true));
    CHECK(e.offset == -std::ceil(((1 << bw) - 1) / 2.0));
    CHECK(e.steps() == (int64_t(1) << bw) - 1);
  }
  CHECK_NOTHROW(check_bitwidth(32, true));
  CHECK_THROWS_AS(check_bitwidth(32, false), Error);
  CHECK_THROWS_AS(check_bitwidth(1, true), Error);
  CHECK_THROWS_AS(check_bitwidth(17, true), Error);
  CHECK_THROWS_AS(check_bitwidth(8, false, true), Error);
  CHECK_NOTHROW(check_bitwidth(16, false, true));
  Encoding e32 = compute_encoding(-1, 1, grid(32, true));
  CHECK(e32.offset == -2147483648.0);
}

TEST_CASE("encoding: scale/offset -> min/max is AIMET's compute_min_max_given_delta_offset") {
  Encoding e = encoding_from_scale_offset(0.25, -128, grid(8, true));
  CHECK(e.min == -32);
  CHECK(e.max == 31.75);
  CHECK_THROWS_AS(encoding_from_scale_offset(-1, 0, grid(8, false)), Error);
  CHECK_THROWS_AS(encoding_from_scale_offset(0.1, 0.5, grid(8, false)), Error);
  // round trip: compute_encoding -> (delta, offset) -> same min/max
  Encoding a = compute_encoding(-1, 3, grid(8, false));
  Encoding b = encoding_from_scale_offset(a.delta, a.offset, grid(8, false));
  CHECK(b.min == doctest::Approx(a.min).epsilon(1e-12));
  CHECK(b.max == doctest::Approx(a.max).epsilon(1e-12));
}

TEST_CASE("encoding: affine params put the grid on the r = rint(x/scale) axis") {
  Encoding a = compute_encoding(-1, 3, grid(8, false));
  AffineParams p = affine_params(a);
  CHECK(p.lo == -64);
  CHECK(p.hi == 191);
  CHECK(p.inv_scale == 1.0f / p.scale);
  Encoding st = compute_encoding(-1, 3, grid(8, true, true));
  AffineParams ps = affine_params(st);
  CHECK(ps.lo == -127);
  CHECK(ps.hi == 127);
}
