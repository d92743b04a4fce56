// conv2d for depthwise convolutions (one input channel per group; output channel oc reads input channel
// oc / og), forward and backward, any stride, padding and dilation, f32 and f64.
//
// Note [polyphase depthwise]
// Output rows of a few dozen elements make per-row loops all overhead, so each plane is computed on a
// grid, as in Note [shifted-window GEMM] (engine/kernels/conv_f32.hpp): the zero-bordered input plane is
// split into sh*sw polyphase planes, phase (a, b)[r][c] = bordered[r*sh + a][c*sw + b], each [hq, wq].
// Tap (i, j) then reads phase ((i*dh) % sh, (j*dw) % sw) at (oy + (i*dh)/sh, ox + (j*dw)/sw): on the
// output grid q = oy*wq + ox that is one fixed offset per tap, so a stride-s convolution becomes kh*kw
// long contiguous multiply-adds over q (columns ox >= ow of the grid are junk and dropped). For stride 1
// the single phase is the bordered plane. The input gradient scatters the same way (each tap adds
// w * g_grid into the phase-gradient planes at its offset), and the weight gradient is one dot product
// per tap between the gradient grid (zeros in the junk columns) and the phase planes.
#include "engine/ops/conv_geom.hpp"

#include <omp.h>

#include <algorithm>
#include <vector>

namespace qforge::ops::conv_detail {
namespace {

struct PhaseGeom {
  int64_t sh, sw, hq, wq, plane, size;  // plane = hq*wq; size = sh*sw*plane
  int64_t nq;                           // grid length (oh - 1)*wq + ow
  std::vector<int64_t> off;             // per tap (i, j): where it reads in the phase planes
};

PhaseGeom phase_geom(const ConvGeom& g) {
  PhaseGeom p;
  p.sh = g.sh;
  p.sw = g.sw;
  p.hq = (g.h + 2 * g.ph + g.sh - 1) / g.sh;
  p.wq = (g.w + 2 * g.pw + g.sw - 1) / g.sw;
  p.plane = p.hq * p.wq;
  p.size = g.sh * g.sw * p.plane;
  p.nq = (g.oh - 1) * p.wq + g.ow;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      const int64_t a = (i * g.dh) % g.sh, b = (j * g.dw) % g.sw;
      p.off.push_back((a * g.sw + b) * p.plane + (i * g.dh) / g.sh * p.wq + (j * g.dw) / g.sw);
    }
  return p;
}

// The polyphase planes of one zero-bordered input plane x [h, w] (every element written).
template <class T> void to_phases(const T* __restrict x, const ConvGeom& g, const PhaseGeom& p, T* __restrict out) {
  // Columns c of phase b read input column c*sw + b - pw: inside [0, w) for c in [lo[b], hi[b]).
  int64_t lo[2] = {0, 0}, hi[2] = {0, 0};
  if (p.sw <= 2)
    for (int64_t b = 0; b < p.sw; ++b) {
      lo[b] = std::min(p.wq, std::max<int64_t>(0, (g.pw - b + p.sw - 1) / p.sw));
      hi[b] = std::max(lo[b], std::min(p.wq, (g.w - 1 + g.pw - b) / p.sw + 1));
    }
  for (int64_t a = 0; a < p.sh; ++a)
    for (int64_t r = 0; r < p.hq; ++r) {
      const int64_t y = r * p.sh + a - g.ph;
      T* rows = out + a * p.sw * p.plane + r * p.wq;  // phase (a, b) row r is rows + b*plane
      if (y < 0 || y >= g.h) {
        for (int64_t b = 0; b < p.sw; ++b) std::fill(rows + b * p.plane, rows + b * p.plane + p.wq, T(0));
        continue;
      }
      const T* src = x + y * g.w;  // input column X is bordered column X + pw
      const int64_t pw = g.pw;
      if (p.sw == 1) {
        std::fill(rows, rows + lo[0], T(0));
        std::copy(src + lo[0] - pw, src + hi[0] - pw, rows + lo[0]);
        std::fill(rows + hi[0], rows + p.wq, T(0));
      } else if (p.sw == 2) {  // both column phases in one pass over the row
        T* e = rows;
        T* o = rows + p.plane;
        const int64_t c0 = std::max(lo[0], lo[1]), c1 = std::max(c0, std::min(hi[0], hi[1]));
        for (int64_t c = 0; c < c0; ++c) {
          e[c] = c >= lo[0] && c < hi[0] ? src[2 * c - pw] : T(0);
          o[c] = c >= lo[1] && c < hi[1] ? src[2 * c + 1 - pw] : T(0);
        }
#pragma omp simd
        for (int64_t c = c0; c < c1; ++c) {
          e[c] = src[2 * c - pw];
          o[c] = src[2 * c + 1 - pw];
        }
        for (int64_t c = c1; c < p.wq; ++c) {
          e[c] = c >= lo[0] && c < hi[0] ? src[2 * c - pw] : T(0);
          o[c] = c >= lo[1] && c < hi[1] ? src[2 * c + 1 - pw] : T(0);
        }
      } else {
        for (int64_t b = 0; b < p.sw; ++b)
          for (int64_t c = 0; c < p.wq; ++c) {
            const int64_t X = c * p.sw + b - pw;
            rows[b * p.plane + c] = X >= 0 && X < g.w ? src[X] : T(0);
          }
      }
    }
}

// gx [h, w] = the interior of the bordered plane whose polyphase planes are `phases`.
template <class T> void from_phases(const T* __restrict phases, const ConvGeom& g, const PhaseGeom& p, T* __restrict gx) {
  for (int64_t y = 0; y < g.h; ++y) {
    const int64_t Y = y + g.ph;
    const T* rows = phases + (Y % p.sh) * p.sw * p.plane + (Y / p.sh) * p.wq;
    if (p.sw == 1) {
      std::copy(rows + g.pw, rows + g.pw + g.w, gx + y * g.w);
      continue;
    }
    int64_t b = g.pw % p.sw, c = g.pw / p.sw;  // column X = x + pw is (phase b, position c)
    for (int64_t x = 0; x < g.w; ++x) {
      gx[y * g.w + x] = rows[b * p.plane + c];
      if (++b == p.sw) {
        b = 0;
        ++c;
      }
    }
  }
}

}  // namespace

template <class T> void depthwise_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y) {
  const PhaseGeom p = phase_geom(g);
  const int64_t planes = g.n * g.o, og = g.og(), taps = g.kh * g.kw, P = g.plane();
#pragma omp parallel num_threads(threads_for(planes, planes * P * taps))
  {
    Scratch<T> phases(0, p.size), grid(1, p.nq);
#pragma omp for schedule(static)
    for (int64_t q = 0; q < planes; ++q) {
      const int64_t n = q / g.o, oc = q % g.o;
      to_phases(x + (n * g.c + oc / og) * g.h * g.w, g, p, phases.data());
      T* __restrict acc = grid.data();
      std::fill(acc, acc + p.nq, bias ? bias[oc] : T(0));
      for (int64_t t = 0; t < taps; ++t) {
        const T wv = w[oc * taps + t];
        const T* __restrict src = phases.data() + p.off[static_cast<size_t>(t)];
#pragma omp simd
        for (int64_t k = 0; k < p.nq; ++k) acc[k] += wv * src[k];
      }
      T* out = y + q * P;
      for (int64_t oy = 0; oy < g.oh; ++oy) std::copy(acc + oy * p.wq, acc + oy * p.wq + g.ow, out + oy * g.ow);
    }
  }
}

template <class T>
void depthwise_backward(const ConvGeom& g, const T* gout, const T* x, const T* w, T* gx, T* gw) {
  const PhaseGeom p = phase_geom(g);
  const int64_t og = g.og(), taps = g.kh * g.kw, P = g.plane(), HW = g.h * g.w;
  // The output gradient of plane `src` on the grid; the junk columns were zeroed once and stay zero.
  auto to_grid = [&](const T* src, T* ggrid) {
    for (int64_t oy = 0; oy < g.oh; ++oy) std::copy(src + oy * g.ow, src + (oy + 1) * g.ow, ggrid + oy * p.wq);
  };
  if (gx) {
    const int64_t planes = g.n * g.c;
#pragma omp parallel num_threads(threads_for(planes, g.n * g.o * P * taps))
    {
      Scratch<T> gphases(0, p.size), ggrid(1, p.nq);
      std::fill(ggrid.data(), ggrid.data() + p.nq, T(0));
#pragma omp for schedule(static)
      for (int64_t q = 0; q < planes; ++q) {
        const int64_t n = q / g.c, ic = q % g.c;
        std::fill(gphases.data(), gphases.data() + p.size, T(0));
        for (int64_t m = 0; m < og; ++m) {
          const int64_t oc = ic * og + m;
          to_grid(gout + (n * g.o + oc) * P, ggrid.data());
          const T* __restrict gq = ggrid.data();
          for (int64_t t = 0; t < taps; ++t) {
            const T wv = w[oc * taps + t];
            T* __restrict dst = gphases.data() + p.off[static_cast<size_t>(t)];
#pragma omp simd
            for (int64_t k = 0; k < p.nq; ++k) dst[k] += wv * gq[k];
          }
        }
        from_phases(gphases.data(), g, p, gx + q * HW);
      }
    }
  }
  if (gw) {  // each thread owns whole output channels: no shared sums, the same bits for any thread count
#pragma omp parallel num_threads(threads_for(g.o, g.n * g.o * P * taps))
    {
      Scratch<T> phases(0, p.size), ggrid(1, p.nq);
      std::fill(ggrid.data(), ggrid.data() + p.nq, T(0));
#pragma omp for schedule(static)
      for (int64_t oc = 0; oc < g.o; ++oc)
        for (int64_t n = 0; n < g.n; ++n) {
          to_phases(x + (n * g.c + oc / og) * HW, g, p, phases.data());
          to_grid(gout + (n * g.o + oc) * P, ggrid.data());
          const T* __restrict gq = ggrid.data();
          for (int64_t t = 0; t < taps; ++t) {
            const T* __restrict src = phases.data() + p.off[static_cast<size_t>(t)];
            T acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t k = 0; k < p.nq; ++k) acc += gq[k] * src[k];
            gw[oc * taps + t] += acc;
          }
        }
    }
  }
}

template void depthwise_forward<float>(const ConvGeom&, const float*, const float*, const float*, float*);
template void depthwise_forward<double>(const ConvGeom&, const double*, const double*, const double*, double*);
template void depthwise_backward<float>(const ConvGeom&, const float*, const float*, const float*, float*, float*);
template void depthwise_backward<double>(const ConvGeom&, const double*, const double*, const double*, double*,
                                         double*);

}  // namespace qforge::ops::conv_detail
