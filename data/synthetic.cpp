#include "data/synthetic.hpp"

#include <algorithm>
#include <cmath>

namespace qforge::data {

namespace {

struct Pt {
  double x, y;
};
using Stroke = std::vector<Pt>;
using Glyph = std::vector<Stroke>;

// Points of an elliptic arc in the unit glyph box (x right, y down; angle 0 = right, 90 = bottom).
Stroke arc(double cx, double cy, double rx, double ry, double a0, double a1) {
  const int n = std::max(4, static_cast<int>(std::abs(a1 - a0) / 12.0));
  Stroke s;
  for (int i = 0; i <= n; ++i) {
    const double a = (a0 + (a1 - a0) * i / n) * M_PI / 180.0;
    s.push_back({cx + rx * std::cos(a), cy + ry * std::sin(a)});
  }
  return s;
}

Stroke line(std::initializer_list<Pt> pts) { return Stroke(pts); }

Stroke concat(Stroke a, const Stroke& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// Two styles per digit, in a unit box whose digit body spans roughly [0.15, 0.85] x [0.08, 0.92].
const std::vector<std::array<Glyph, 2>>& glyphs() {
  static const std::vector<std::array<Glyph, 2>> g = [] {
    std::vector<std::array<Glyph, 2>> v(10);
    v[0] = {Glyph{arc(0.5, 0.5, 0.28, 0.42, 0, 360)}, Glyph{arc(0.5, 0.5, 0.33, 0.40, -90, 270)}};
    v[1] = {Glyph{line({{0.32, 0.25}, {0.5, 0.08}, {0.5, 0.92}})},
            Glyph{line({{0.34, 0.22}, {0.52, 0.08}, {0.52, 0.92}}), line({{0.32, 0.92}, {0.72, 0.92}})}};
    v[2] = {Glyph{concat(arc(0.5, 0.32, 0.28, 0.24, 190, 400), line({{0.2, 0.92}, {0.82, 0.92}}))},
            Glyph{concat(arc(0.5, 0.3, 0.3, 0.22, 200, 380), line({{0.5, 0.6}, {0.18, 0.9}, {0.85, 0.88}}))}};
    v[3] = {Glyph{arc(0.48, 0.3, 0.26, 0.2, 200, 450), arc(0.48, 0.71, 0.3, 0.21, 270, 520)},
            Glyph{concat(line({{0.22, 0.1}, {0.75, 0.1}, {0.45, 0.42}}), arc(0.47, 0.68, 0.3, 0.24, 250, 515))}};
    v[4] = {Glyph{line({{0.65, 0.92}, {0.65, 0.08}, {0.18, 0.65}, {0.85, 0.65}})},
            Glyph{line({{0.3, 0.08}, {0.22, 0.58}, {0.82, 0.58}}), line({{0.65, 0.3}, {0.65, 0.92}})}};
    v[5] = {Glyph{concat(line({{0.76, 0.1}, {0.3, 0.1}, {0.27, 0.47}}), arc(0.48, 0.67, 0.28, 0.23, 225, 510))},
            Glyph{concat(line({{0.8, 0.08}, {0.35, 0.1}, {0.3, 0.42}}), arc(0.5, 0.66, 0.3, 0.26, 240, 500))}};
    v[6] = {Glyph{arc(0.7, 0.65, 0.48, 0.55, 270, 180), arc(0.48, 0.7, 0.26, 0.22, 0, 360)},
            Glyph{line({{0.68, 0.08}, {0.26, 0.6}}), arc(0.47, 0.7, 0.24, 0.21, 180, 540)}};
    v[7] = {Glyph{line({{0.18, 0.1}, {0.82, 0.1}, {0.4, 0.92}})},
            Glyph{line({{0.18, 0.12}, {0.8, 0.1}, {0.45, 0.92}}), line({{0.4, 0.5}, {0.75, 0.5}})}};
    v[8] = {Glyph{arc(0.5, 0.29, 0.21, 0.19, 0, 360), arc(0.5, 0.7, 0.26, 0.22, 0, 360)},
            Glyph{arc(0.5, 0.3, 0.25, 0.2, 90, 450), arc(0.5, 0.71, 0.22, 0.2, -90, 270)}};
    v[9] = {Glyph{arc(0.5, 0.32, 0.26, 0.22, 0, 360), line({{0.76, 0.32}, {0.66, 0.92}})},
            Glyph{arc(0.48, 0.33, 0.25, 0.21, 0, 360), arc(0.27, 0.33, 0.46, 0.58, 0, 100)}};
    return v;
  }();
  return g;
}

// Soft anti-aliased stroke: intensity peak * clamp(r + 0.5 - distance, 0, 1), max-combined.
void draw_segment(float* img, Pt a, Pt b, double r, double peak) {
  const double x0 = std::floor(std::min(a.x, b.x) - r - 1), x1 = std::ceil(std::max(a.x, b.x) + r + 1);
  const double y0 = std::floor(std::min(a.y, b.y) - r - 1), y1 = std::ceil(std::max(a.y, b.y) + r + 1);
  const double dx = b.x - a.x, dy = b.y - a.y, len2 = dx * dx + dy * dy;
  for (int y = std::max(0, static_cast<int>(y0)); y <= std::min(27, static_cast<int>(y1)); ++y) {
    for (int x = std::max(0, static_cast<int>(x0)); x <= std::min(27, static_cast<int>(x1)); ++x) {
      const double px = x + 0.5 - a.x, py = y + 0.5 - a.y;
      const double t = len2 > 0 ? std::clamp((px * dx + py * dy) / len2, 0.0, 1.0) : 0.0;
      const double ex = px - t * dx, ey = py - t * dy;
      const double d = std::sqrt(ex * ex + ey * ey);
      const double v = peak * std::clamp(r + 0.5 - d, 0.0, 1.0);
      float& p = img[y * 28 + x];
      p = std::max(p, static_cast<float>(v));
    }
  }
}

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

void render_synthetic_digit(int label, Generator& gen, uint8_t* out) {
  QFORGE_CHECK(label >= 0 && label < 10, "render_synthetic_digit: label {} out of range [0, 10)", label);
  const Glyph& glyph = glyphs()[label][gen.below(2)];
  // Random affine map from the centred unit box to pixels: rotation * shear * scale, then translation.
  const double theta = gen.uniform(-0.35, 0.35), shear = gen.uniform(-0.35, 0.35);
  const double sx = 20.0 * gen.uniform(0.7, 1.1), sy = 20.0 * gen.uniform(0.8, 1.1);
  const double tx = 14.0 + gen.uniform(-3.5, 3.5), ty = 14.0 + gen.uniform(-3.5, 3.5);
  const double c = std::cos(theta), s = std::sin(theta);
  // Low-frequency wobble so no two samples share exact stroke shapes.
  const double w1 = gen.uniform(-0.05, 0.05), w2 = gen.uniform(-0.05, 0.05);
  const double p1 = gen.uniform(0, 2 * M_PI), p2 = gen.uniform(0, 2 * M_PI);
  const double f1 = gen.uniform(2.0, 5.0), f2 = gen.uniform(2.0, 5.0);
  const auto map = [&](Pt p) {
    const double u = p.x - 0.5 + w1 * std::sin(f1 * p.y + p1);
    const double v = p.y - 0.5 + w2 * std::sin(f2 * p.x + p2);
    const double a = sx * u + shear * sy * v, b = sy * v;
    return Pt{tx + c * a - s * b, ty + s * a + c * b};
  };
  const double r = gen.uniform(0.8, 1.9), peak = gen.uniform(0.65, 1.0);
  float img[28 * 28] = {};
  for (const Stroke& st : glyph) {
    Pt prev = map(st[0]);
    for (size_t i = 1; i < st.size(); ++i) {
      const Pt cur = map(st[i]);
      draw_segment(img, prev, cur, r, peak);
      prev = cur;
    }
  }
  if (gen.uniform() < 0.4) {  // distractor stroke
    const Pt a{gen.uniform(2, 26), gen.uniform(2, 26)};
    const double ang = gen.uniform(0, 2 * M_PI), len = gen.uniform(3, 8);
    draw_segment(img, a, Pt{a.x + len * std::cos(ang), a.y + len * std::sin(ang)}, gen.uniform(0.5, 1.0),
                 gen.uniform(0.3, 0.7));
  }
  const double sigma = gen.uniform(0.02, 0.12);
  for (int i = 0; i < 28 * 28; ++i) {
    const double v = std::clamp(img[i] + sigma * gen.normal(), 0.0, 1.0);
    out[i] = static_cast<uint8_t>(std::lround(v * 255.0));
  }
}

std::shared_ptr<ImageDataset> make_synthetic_digits(int64_t n, uint64_t seed, int64_t first_index) {
  QFORGE_CHECK(n > 0, "make_synthetic_digits: size must be positive, got {}", n);
  Tensor images = Tensor::empty({n, 1, 28, 28}, DType::u8);
  Tensor labels = Tensor::empty({n}, DType::i32);
  uint8_t* ip = images.data<uint8_t>();
  int32_t* lp = labels.data<int32_t>();
  // Each sample depends only on (seed, index): parallel rendering gives the same bytes.
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    Generator g(mix(seed, static_cast<uint64_t>(first_index + i)));
    const int label = static_cast<int>(g.below(10));
    lp[i] = label;
    render_synthetic_digit(label, g, ip + i * 28 * 28);
  }
  return std::make_shared<ImageDataset>(images, labels, 10, Normalization::mnist(), "synthetic");
}

SyntheticSplits make_synthetic_splits(const SyntheticOptions& opt) {
  // Test samples come from indices far beyond any training index.
  return {make_synthetic_digits(opt.train_size, opt.seed, 0),
          make_synthetic_digits(opt.test_size, opt.seed, int64_t{1} << 40)};
}

}  // namespace qforge::data
