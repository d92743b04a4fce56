// AIMET v1 encoding arithmetic (aimet-compat.md §4.1). See encoding.hpp.
#include "quant/encoding.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qforge::quant {

void check_bitwidth(int bw, bool allow_32, bool is_float, const char* who) {
  if (is_float) {
    QFORGE_CHECK(bw == 16 || bw == 32, "{}: float quantizers support bitwidth 16 or 32, got {}", who, bw);
    return;
  }
  QFORGE_CHECK((bw >= 2 && bw <= 16) || (allow_32 && bw == 32),
               "{}: unsupported bitwidth {} (supported: 2..16{})", who, bw, allow_32 ? ", 32 for biases" : "");
}

int64_t num_steps(int bw, bool strict) {
  const int64_t n = (int64_t(1) << bw) - 1;
  return strict ? n - 1 : n;
}

int64_t Encoding::steps() const { return num_steps(bitwidth, symmetric && strict); }

std::string Encoding::to_string() const {
  if (is_float) return fmt::format("float{}", bitwidth);
  return fmt::format("bw={} {} min={:.6g} max={:.6g} scale={:.6g} offset={}", bitwidth,
                     symmetric ? (strict ? "strict-sym" : "sym") : "asym", min, max, delta,
                     static_cast<int64_t>(offset));
}

namespace {

Encoding base(const GridSpec& g) {
  Encoding e;
  e.bitwidth = g.bitwidth;
  e.symmetric = g.symmetric;
  e.strict = g.symmetric && g.strict_symmetric;
  e.is_float = g.is_float;
  return e;
}

double clamp_finite(double v) {
  constexpr double big = std::numeric_limits<float>::max();
  if (std::isnan(v)) return 0;
  return std::clamp(v, -big, big);
}

}  // namespace

Encoding compute_encoding(double mn, double mx, const GridSpec& g) {
  Encoding e = base(g);
  if (g.is_float) return e;
  mn = clamp_finite(mn);
  mx = clamp_finite(mx);
  if (mn > mx) std::swap(mn, mx);
  // 1. gating: 0 inside the range, minimum width kMinRange.
  mn = std::min(mn, 0.0);
  mx = std::max(mx, 0.0);
  mx = std::max(mx, mn + kMinRange);
  const int64_t n = e.steps();
  const double nd = static_cast<double>(n);
  if (g.symmetric && (mn < 0 || !g.unsigned_symmetric)) {
    // 2. signed symmetric
    const double m = std::max(std::abs(mn), std::abs(mx));
    const double half_floor = std::floor(nd / 2), half_ceil = std::ceil(nd / 2);
    e.delta = m / half_floor;
    e.offset = -half_ceil;
    e.min = e.offset * e.delta;
    e.max = half_floor * e.delta;
    return e;
  }
  // 3. asymmetric, or unsigned symmetric with min >= 0
  e.delta = (mx - mn) / nd;
  if (mn < 0 && mx > 0) {
    e.offset = -std::clamp(std::round(-mn / e.delta), 0.0, nd);
    const double new_min = e.delta * e.offset;
    e.max = mx - mn + new_min;
    e.min = new_min;
  } else {
    e.offset = std::round(mn / e.delta);
    e.min = mn;
    e.max = mx;
  }
  return e;
}

Encoding encoding_from_scale_offset(double delta, double offset, const GridSpec& g) {
  Encoding e = base(g);
  if (g.is_float) return e;
  QFORGE_CHECK(delta > 0 && std::isfinite(delta), "encoding: scale must be positive and finite, got {}", delta);
  QFORGE_CHECK(offset == std::round(offset), "encoding: offset must be an integer, got {}", offset);
  e.delta = delta;
  e.offset = offset;
  e.min = delta * offset;
  e.max = delta * (static_cast<double>(e.steps()) + offset);
  return e;
}

Encoding encoding_from_min_max_exact(double mn, double mx, const GridSpec& g) {
  Encoding e = base(g);
  if (g.is_float) return e;
  mn = std::min(clamp_finite(mn), 0.0);
  mx = std::max(clamp_finite(mx), 0.0);
  mx = std::max(mx, mn + kRangeLearningGate);
  e.delta = (mx - mn) / static_cast<double>(e.steps());
  e.offset = std::round(mn / e.delta);
  e.min = mn;
  e.max = mx;
  return e;
}

AffineParams affine_params(const Encoding& e) {
  AffineParams p;
  p.scale = static_cast<float>(e.delta);
  p.inv_scale = 1.0f / p.scale;
  p.lo = static_cast<float>(e.offset);
  p.hi = static_cast<float>(static_cast<double>(e.steps()) + e.offset);
  return p;
}

}  // namespace qforge::quant
