// Pooling over NCHW planes: max_pool2d, avg_pool2d, adaptive_avg_pool2d, global_avg_pool2d.
//
// All follow torch.nn.functional exactly (ceil_mode = false, no dilation):
//  * output size floor((H + 2p - k) / s) + 1; padding at most half the kernel (PyTorch's rule);
//  * max_pool2d: padded cells are -inf; within a window the first maximum in row-major order wins (a NaN
//    beats everything, as in PyTorch), and the whole gradient of that output goes there;
//  * avg_pool2d: the window is clipped to [-p, H + p) for the count_include_pad divisor, and to [0, H)
//    for the sum and for the count_include_pad = false divisor;
//  * adaptive_avg_pool2d: window [floor(o*I/O), ceil((o+1)*I/O)).
// A 3-D input [C, H, W] is treated as a batch of one. Planes are independent: OpenMP over N*C.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace qforge::ops {

using detail::check_float;
using detail::visit_float;

namespace {

// One pooling window per output cell: rows [y0, y1) x cols [x0, x1) of the unpadded plane, and the
// divisor (avg pools only).
struct Window {
  int64_t y0, y1, x0, x1;
  double divisor;
};

struct PlaneGeom {
  int64_t planes, h, w, oh, ow;
};

// Small pools stay on one thread (a parallel region costs more than the work).
int plane_threads(int64_t planes, int64_t work) {
  if (work < (1 << 16)) return 1;
  return static_cast<int>(std::clamp<int64_t>(planes, 1, omp_get_max_threads()));
}

// Windows of a regular (kernel/stride/padding) pool, in output order.
std::vector<Window> regular_windows(const PlaneGeom& g, const Pool2dParams& p) {
  std::vector<Window> win(static_cast<size_t>(g.oh * g.ow));
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      int64_t y0 = oy * p.stride[0] - p.padding[0], x0 = ox * p.stride[1] - p.padding[1];
      int64_t y1 = std::min(y0 + p.kernel[0], g.h + p.padding[0]);
      int64_t x1 = std::min(x0 + p.kernel[1], g.w + p.padding[1]);
      const int64_t padded_count = (y1 - y0) * (x1 - x0);
      y0 = std::max<int64_t>(y0, 0);
      x0 = std::max<int64_t>(x0, 0);
      y1 = std::min(y1, g.h);
      x1 = std::min(x1, g.w);
      const int64_t count = (y1 - y0) * (x1 - x0);
      win[static_cast<size_t>(oy * g.ow + ox)] = {y0, y1, x0, x1,
                                                  static_cast<double>(p.count_include_pad ? padded_count : count)};
    }
  return win;
}

std::vector<Window> adaptive_windows(const PlaneGeom& g) {
  std::vector<Window> win(static_cast<size_t>(g.oh * g.ow));
  for (int64_t oy = 0; oy < g.oh; ++oy)
    for (int64_t ox = 0; ox < g.ow; ++ox) {
      const int64_t y0 = (oy * g.h) / g.oh, y1 = ((oy + 1) * g.h + g.oh - 1) / g.oh;
      const int64_t x0 = (ox * g.w) / g.ow, x1 = ((ox + 1) * g.w + g.ow - 1) / g.ow;
      win[static_cast<size_t>(oy * g.ow + ox)] = {y0, y1, x0, x1, static_cast<double>((y1 - y0) * (x1 - x0))};
    }
  return win;
}

// Average over precomputed windows: forward and backward share the windows.
struct AvgPoolOp : OpBase {
  static constexpr const char* kName = "avg_pool2d";
  Shape in_shape, out_shape;
  PlaneGeom g{};
  std::vector<Window> win;
  Tensor forward(const Tensor& x_in) {
    const Tensor x = x_in.contiguous();
    Tensor out = Tensor::empty(out_shape, x.dtype());
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T* px = x.data<T>();
      T* po = out.data<T>();
      const int64_t HW = g.h * g.w, OP = g.oh * g.ow;
#pragma omp parallel for schedule(static) num_threads(plane_threads(g.planes, g.planes * g.h * g.w))
      for (int64_t q = 0; q < g.planes; ++q) {
        const T* plane = px + q * HW;
        for (int64_t o = 0; o < OP; ++o) {
          const Window& wd = win[static_cast<size_t>(o)];
          T acc = 0;
          for (int64_t y = wd.y0; y < wd.y1; ++y)
            for (int64_t xx = wd.x0; xx < wd.x1; ++xx) acc += plane[y * g.w + xx];
          po[q * OP + o] = acc / static_cast<T>(wd.divisor);
        }
      }
    });
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor gout = g_in.contiguous();
    Tensor gx = Tensor::empty(in_shape, gout.dtype());
    visit_float(gout.dtype(), kName, [&]<class T>() {
      const T* pg = gout.data<T>();
      T* pgx = gx.data<T>();
      const int64_t HW = g.h * g.w, OP = g.oh * g.ow;
#pragma omp parallel for schedule(static) num_threads(plane_threads(g.planes, g.planes * g.h * g.w))
      for (int64_t q = 0; q < g.planes; ++q) {
        T* plane = pgx + q * HW;
        for (int64_t o = 0; o < OP; ++o) {
          const Window& wd = win[static_cast<size_t>(o)];
          const T v = pg[q * OP + o] / static_cast<T>(wd.divisor);
          for (int64_t y = wd.y0; y < wd.y1; ++y)
            for (int64_t xx = wd.x0; xx < wd.x1; ++xx) plane[y * g.w + xx] += v;
        }
      }
    });
    return {gx};
  }
};

// One candidate of a max window: PyTorch's test, so a NaN wins (the last one). Selects rather than a
// branch, since which element wins is data-dependent.
template <class T> inline void consider(T v, int64_t i, T& best, int64_t& best_i) {
  const bool take = (v > best) | (v != v);
  best = take ? v : best;
  best_i = take ? i : best_i;
}

struct MaxPoolOp : OpBase {
  static constexpr const char* kName = "max_pool2d";
  Shape in_shape, out_shape;
  PlaneGeom g{};
  std::vector<Window> win;
  std::vector<int32_t> argmax;  // per output: index of the winner inside its plane (recorded only)
  bool tiles_2x2 = false;       // kernel 2x2, stride 2, no padding: the fixed-window fast path
  Tensor forward(const Tensor& x_in) {
    const Tensor x = x_in.contiguous();
    Tensor out = Tensor::uninitialized(out_shape, x.dtype());  // every output is written
    const int64_t HW = g.h * g.w, OP = g.oh * g.ow;
    if (recording) argmax.assign(static_cast<size_t>(g.planes * OP), 0);
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T* px = x.data<T>();
      T* po = out.data<T>();
      int32_t* pa = recording ? argmax.data() : nullptr;
#pragma omp parallel for schedule(static) num_threads(plane_threads(g.planes, g.planes * g.h * g.w))
      for (int64_t q = 0; q < g.planes; ++q) {
        const T* plane = px + q * HW;
        if (tiles_2x2) {  // the four cells in row-major order
          for (int64_t oy = 0; oy < g.oh; ++oy)
            for (int64_t ox = 0; ox < g.ow; ++ox) {
              const int64_t i0 = 2 * oy * g.w + 2 * ox, cells[4] = {i0, i0 + 1, i0 + g.w, i0 + g.w + 1};
              T best = plane[i0];
              int64_t best_i = i0;
              for (int c = 1; c < 4; ++c) consider(plane[cells[c]], cells[c], best, best_i);
              po[q * OP + oy * g.ow + ox] = best;
              if (pa) pa[q * OP + oy * g.ow + ox] = static_cast<int32_t>(best_i);
            }
          continue;
        }
        for (int64_t o = 0; o < OP; ++o) {
          const Window& wd = win[static_cast<size_t>(o)];
          T best = -std::numeric_limits<T>::infinity();
          int64_t best_i = wd.y0 * g.w + wd.x0;
          for (int64_t y = wd.y0; y < wd.y1; ++y)
            for (int64_t xx = wd.x0; xx < wd.x1; ++xx) consider(plane[y * g.w + xx], y * g.w + xx, best, best_i);
          po[q * OP + o] = best;
          if (pa) pa[q * OP + o] = static_cast<int32_t>(best_i);
        }
      }
    });
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor gout = g_in.contiguous();
    // 2x2 tiles do not overlap: every input cell is written exactly once (its tile's gradient or 0,
    // the cells no tile covers 0), so no zero-filled buffer is needed.
    Tensor gx = tiles_2x2 ? Tensor::uninitialized(in_shape, gout.dtype()) : Tensor::empty(in_shape, gout.dtype());
    visit_float(gout.dtype(), kName, [&]<class T>() {
      const T* pg = gout.data<T>();
      T* pgx = gx.data<T>();
      const int64_t HW = g.h * g.w, OP = g.oh * g.ow;
#pragma omp parallel for schedule(static) num_threads(plane_threads(g.planes, g.planes * g.h * g.w))
      for (int64_t q = 0; q < g.planes; ++q) {
        const int32_t* arg = argmax.data() + q * OP;
        const T* gq = pg + q * OP;
        T* gxq = pgx + q * HW;
        if (!tiles_2x2) {
          for (int64_t o = 0; o < OP; ++o) gxq[arg[o]] += gq[o];
          continue;
        }
        for (int64_t y = 2 * g.oh; y < g.h; ++y) std::fill(gxq + y * g.w, gxq + (y + 1) * g.w, T(0));
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          for (int64_t r = 2 * oy; r < 2 * oy + 2; ++r)
            for (int64_t x = 2 * g.ow; x < g.w; ++x) gxq[r * g.w + x] = T(0);
          for (int64_t ox = 0; ox < g.ow; ++ox) {
            const int64_t o = oy * g.ow + ox, i0 = 2 * oy * g.w + 2 * ox;
            const T gv = gq[o];
            const int64_t a = arg[o];
            gxq[i0] = a == i0 ? gv : T(0);
            gxq[i0 + 1] = a == i0 + 1 ? gv : T(0);
            gxq[i0 + g.w] = a == i0 + g.w ? gv : T(0);
            gxq[i0 + g.w + 1] = a == i0 + g.w + 1 ? gv : T(0);
          }
        }
      }
    });
    return {gx};
  }
};

// Common validation; returns the geometry with oh/ow left for the caller.
PlaneGeom plane_geom(const Tensor& x, const char* op) {
  QFORGE_CHECK(x.dim() == 4 || x.dim() == 3, "{}: input must be [N, C, H, W] or [C, H, W], got {}", op,
               shape_str(x.shape()));
  check_float(x, op);
  const int64_t planes = x.dim() == 4 ? x.size(0) * x.size(1) : x.size(0);
  return {planes, x.size(-2), x.size(-1), 0, 0};
}

Shape with_hw(const Shape& s, int64_t oh, int64_t ow) {
  Shape r = s;
  r[r.size() - 2] = oh;
  r[r.size() - 1] = ow;
  return r;
}

PlaneGeom regular_geom(const Tensor& x, const Pool2dParams& p, const char* op) {
  PlaneGeom g = plane_geom(x, op);
  for (int d = 0; d < 2; ++d) {
    QFORGE_CHECK(p.kernel[d] >= 1 && p.stride[d] >= 1 && p.padding[d] >= 0,
                 "{}: invalid kernel {} stride {} padding {} for input {}", op, p.kernel, p.stride, p.padding,
                 shape_str(x.shape()));
    QFORGE_CHECK(p.padding[d] <= p.kernel[d] / 2,
                 "{}: padding {} must be at most half the kernel {} (input {})", op, p.padding, p.kernel,
                 shape_str(x.shape()));
  }
  g.oh = (g.h + 2 * p.padding[0] - p.kernel[0]) / p.stride[0] + 1;
  g.ow = (g.w + 2 * p.padding[1] - p.kernel[1]) / p.stride[1] + 1;
  QFORGE_CHECK(g.h + 2 * p.padding[0] >= p.kernel[0] && g.w + 2 * p.padding[1] >= p.kernel[1],
               "{}: kernel {} is larger than the padded input {} (padding {})", op, p.kernel, shape_str(x.shape()),
               p.padding);
  return g;
}

}  // namespace

Tensor max_pool2d(const Tensor& x, const Pool2dParams& p) {
  MaxPoolOp op;
  op.g = regular_geom(x, p, "max_pool2d");
  op.in_shape = x.shape();
  op.out_shape = with_hw(x.shape(), op.g.oh, op.g.ow);
  Pool2dParams q = p;
  q.count_include_pad = true;  // windows clipped to the padded extent are irrelevant for max
  op.tiles_2x2 = p.kernel == std::array<int64_t, 2>{2, 2} && p.stride == std::array<int64_t, 2>{2, 2} &&
                 p.padding == std::array<int64_t, 2>{0, 0};
  if (!op.tiles_2x2) op.win = regular_windows(op.g, q);
  return apply(std::move(op), x);
}

Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p) {
  AvgPoolOp op;
  op.g = regular_geom(x, p, "avg_pool2d");
  op.in_shape = x.shape();
  op.out_shape = with_hw(x.shape(), op.g.oh, op.g.ow);
  op.win = regular_windows(op.g, p);
  return apply(std::move(op), x);
}

Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size) {
  AvgPoolOp op;
  op.g = plane_geom(x, "adaptive_avg_pool2d");
  QFORGE_CHECK(output_size[0] >= 1 && output_size[1] >= 1 && op.g.h >= 1 && op.g.w >= 1,
               "adaptive_avg_pool2d: invalid output size {} for input {}", output_size, shape_str(x.shape()));
  op.g.oh = output_size[0];
  op.g.ow = output_size[1];
  op.in_shape = x.shape();
  op.out_shape = with_hw(x.shape(), op.g.oh, op.g.ow);
  op.win = adaptive_windows(op.g);
  return apply(std::move(op), x);
}

Tensor global_avg_pool2d(const Tensor& x) {
  QFORGE_CHECK(x.dim() == 4, "global_avg_pool2d: input must be [N, C, H, W], got {}", shape_str(x.shape()));
  return adaptive_avg_pool2d(x, {1, 1});
}

}  // namespace qforge::ops
