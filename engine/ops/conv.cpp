// conv2d: NCHW input, OIHW weight, stride/padding/dilation/groups, optional bias (torch conv2d semantics).
//
// Two kernels, both with forward and backward in ConvOp:
//  * im2col + GEMM (general case). Per sample and group, the receptive fields are unrolled into a
//    [cg*kh*kw, oh*ow] column matrix and multiplied by the group's weight block [og, cg*kh*kw]. Backward
//    recomputes the columns (cheaper than keeping N column matrices alive): grad_w^T += col · g^T, and
//    grad_col = W^T · g is scattered back with col2im. A 1x1/stride-1/unpadded conv uses the input as the
//    column matrix directly.
//  * direct (depthwise: one input channel per group). A GEMM with K = kh*kw is all overhead, so each
//    plane is copied into a zero-bordered scratch plane and accumulated tap by tap with branch-free,
//    vectorisable row loops.
//
// Parallelism: OpenMP over the batch, one column buffer per thread, each worker calling a single-threaded
// GEMM (Note [BLAS threads inside OpenMP] in blas.hpp); with a batch of one OpenBLAS threads the GEMMs.
// Samples are scheduled dynamically (a worker preempted on a busy machine stalls only its own piece),
// and the weight gradient is summed over fixed sample chunks in a fixed order, so results are
// bit-identical whatever the schedule or thread count.
#include "engine/ops/blas.hpp"
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <vector>

namespace qforge::ops {

using detail::BlasSingleThread;
using detail::check_float;
using detail::check_same_dtype;
using detail::gemm;
using detail::visit_float;

namespace {

struct ConvGeom {
  int64_t n, c, h, w;  // input
  int64_t o, kh, kw;   // weight
  int64_t sh, sw, ph, pw, dh, dw, groups;
  int64_t oh, ow;
  int64_t cg() const { return c / groups; }
  int64_t og() const { return o / groups; }
  int64_t kdim() const { return cg() * kh * kw; }
  int64_t plane() const { return oh * ow; }
  bool pointwise() const { return kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0; }
  bool depthwise() const { return groups > 1 && cg() == 1; }
};

// Per-thread scratch, left uninitialised (every element is written before it is read). The block is
// kept per thread (slot 0: columns or a padded input plane, slot 1: column gradients or a padded
// gradient plane) and reused by the next call, so the hot loop neither allocates nor page-faults;
// blocks above kKeepScratchBytes are released after use.
constexpr size_t kKeepScratchBytes = size_t(64) << 20;
template <class T> class Scratch {
public:
  Scratch(int slot, int64_t n) : bytes_(static_cast<size_t>(n) * sizeof(T)), block_(cache()[slot]) {
    if (block_.size < bytes_) {
      block_.mem.reset(new std::byte[bytes_]);
      block_.size = bytes_;
    }
  }
  ~Scratch() {
    if (block_.size > kKeepScratchBytes) block_ = Block{};
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  T* data() { return reinterpret_cast<T*>(block_.mem.get()); }

private:
  struct Block {
    std::unique_ptr<std::byte[]> mem;
    size_t size = 0;
  };
  static std::array<Block, 2>& cache() {
    thread_local std::array<Block, 2> blocks;
    return blocks;
  }
  size_t bytes_;
  Block& block_;
};

// Output columns ox in [lo, hi) read input column ox*stride + x0 inside [0, size).
inline void valid_range(int64_t x0, int64_t stride, int64_t size, int64_t out, int64_t& lo, int64_t& hi) {
  lo = x0 >= 0 ? 0 : (-x0 + stride - 1) / stride;
  hi = (size - 1 - x0) < 0 ? 0 : (size - 1 - x0) / stride + 1;
  lo = std::min(lo, out);
  hi = std::clamp(hi, lo, out);
}

// x: one group of one sample [cg, h, w] -> col [cg*kh*kw, oh*ow].
template <class T> void im2col(const T* __restrict x, const ConvGeom& g, T* __restrict col) noexcept {
  const int64_t sw = g.sw;
  const int64_t cg = g.cg(), P = g.plane();
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        const int64_t x0 = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(x0, g.sw, g.w, g.ow, lo, hi);
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          T* dst = row + oy * g.ow;
          const int64_t iy = oy * g.sh - g.ph + i * g.dh;
          if (iy < 0 || iy >= g.h) {
            std::fill(dst, dst + g.ow, T(0));
            continue;
          }
          const T* src = x + (c * g.h + iy) * g.w + x0;
          std::fill(dst, dst + lo, T(0));
          if (sw == 1) {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox];
          } else {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * sw];
          }
          std::fill(dst + hi, dst + g.ow, T(0));
        }
      }
}

// The adjoint of im2col: gx [cg, h, w] += scatter(col).
template <class T> void col2im(const T* __restrict col, const ConvGeom& g, T* __restrict gx) noexcept {
  const int64_t sw = g.sw;
  const int64_t cg = g.cg(), P = g.plane();
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        const int64_t x0 = j * g.dw - g.pw;
        int64_t lo, hi;
        valid_range(x0, g.sw, g.w, g.ow, lo, hi);
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const int64_t iy = oy * g.sh - g.ph + i * g.dh;
          if (iy < 0 || iy >= g.h) continue;
          const T* src = row + oy * g.ow;
          T* dst = gx + (c * g.h + iy) * g.w + x0;
          if (sw == 1) {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox] += src[ox];
          } else {
#pragma omp simd
            for (int64_t ox = lo; ox < hi; ++ox) dst[ox * sw] += src[ox];
          }
        }
      }
}

// ---- direct depthwise kernels (cg == 1: output channel oc reads input channel oc / og) --------------
//
// Each input plane is first copied into a zero-bordered [h + 2ph, w + 2pw] scratch plane, so every tap
// of every output is in bounds: the inner loops are branch-free and vectorise over output columns.

template <class T> void pad_plane(const T* __restrict x, const ConvGeom& g, T* __restrict xp) noexcept {
  const int64_t wp = g.w + 2 * g.pw, hp = g.h + 2 * g.ph;
  std::fill(xp, xp + g.ph * wp, T(0));
  std::fill(xp + (g.ph + g.h) * wp, xp + hp * wp, T(0));
  for (int64_t y = 0; y < g.h; ++y) {
    T* row = xp + (y + g.ph) * wp;
    std::fill(row, row + g.pw, T(0));
    std::copy(x + y * g.w, x + (y + 1) * g.w, row + g.pw);
    std::fill(row + g.pw + g.w, row + wp, T(0));
  }
}

// out plane [oh, ow] = bias + taps over the padded input plane xp.
template <class T> void dw_forward_plane(const T* __restrict xp, const T* __restrict w, T bias, const ConvGeom& g,
                                         T* __restrict out) noexcept {
  const int64_t wp = g.w + 2 * g.pw, sw = g.sw, dw = g.dw, kw = g.kw, ow = g.ow;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    T* o = out + oy * ow;
    std::fill(o, o + ow, bias);
    for (int64_t i = 0; i < g.kh; ++i) {
      const T* r = xp + (oy * g.sh + i * g.dh) * wp;
      for (int64_t j = 0; j < kw; ++j) {
        const T wv = w[i * kw + j];
        const T* rj = r + j * dw;
        if (sw == 1) {
#pragma omp simd
          for (int64_t ox = 0; ox < ow; ++ox) o[ox] += wv * rj[ox];
        } else {
#pragma omp simd
          for (int64_t ox = 0; ox < ow; ++ox) o[ox] += wv * rj[ox * sw];
        }
      }
    }
  }
}

// Padded input-gradient plane gxp += the transpose of dw_forward_plane applied to gout.
template <class T> void dw_grad_input_plane(const T* __restrict gout, const T* __restrict w, const ConvGeom& g,
                                            T* __restrict gxp) noexcept {
  const int64_t wp = g.w + 2 * g.pw, sw = g.sw, dw = g.dw, ow = g.ow;
  for (int64_t oy = 0; oy < g.oh; ++oy) {
    const T* gr = gout + oy * ow;
    for (int64_t i = 0; i < g.kh; ++i) {
      T* r = gxp + (oy * g.sh + i * g.dh) * wp;
      for (int64_t j = 0; j < g.kw; ++j) {
        const T wv = w[i * g.kw + j];
        T* rj = r + j * dw;
        if (sw == 1) {
#pragma omp simd
          for (int64_t ox = 0; ox < ow; ++ox) rj[ox] += wv * gr[ox];
        } else {
#pragma omp simd
          for (int64_t ox = 0; ox < ow; ++ox) rj[ox * sw] += wv * gr[ox];
        }
      }
    }
  }
}

// gw [kh*kw] += correlation of gout with the padded input plane xp.
template <class T> void dw_grad_weight_plane(const T* __restrict gout, const T* __restrict xp, const ConvGeom& g,
                                             T* __restrict gw) noexcept {
  const int64_t wp = g.w + 2 * g.pw, sw = g.sw, dw = g.dw, ow = g.ow;
  for (int64_t i = 0; i < g.kh; ++i)
    for (int64_t j = 0; j < g.kw; ++j) {
      T acc = 0;
      for (int64_t oy = 0; oy < g.oh; ++oy) {
        const T* gr = gout + oy * ow;
        const T* r = xp + (oy * g.sh + i * g.dh) * wp + j * dw;
        if (sw == 1) {
#pragma omp simd reduction(+ : acc)
          for (int64_t ox = 0; ox < ow; ++ox) acc += gr[ox] * r[ox];
        } else {
#pragma omp simd reduction(+ : acc)
          for (int64_t ox = 0; ox < ow; ++ox) acc += gr[ox] * r[ox * sw];
        }
      }
      gw[i * g.kw + j] += acc;
    }
}

// Threads for a loop over `items` independent pieces of `work` multiply-adds in total. Small ops stay on
// one thread: a parallel region costs microseconds, and far more when the cores are oversubscribed.
constexpr int64_t kMinParallelWork = 1 << 19;
constexpr int64_t kChunks = 16;  // weight-gradient partial sums per backward (see ConvOp::backward)
int threads_for(int64_t items, int64_t work) {
  if (work < kMinParallelWork) return 1;
  return static_cast<int>(std::clamp<int64_t>(items, 1, omp_get_max_threads()));
}

struct ConvOp : OpBase {
  static constexpr const char* kName = "conv2d";
  ConvGeom g{};
  SavedTensor sx, sw;
  bool has_bias = false;

  Tensor forward(const Tensor& x_in, const Tensor& w_in, const Tensor& bias) {
    const Tensor x = x_in.contiguous(), w = w_in.contiguous();
    has_bias = bias.defined();
    if (recording) {
      if (needs_grad(1)) sx = x;
      if (needs_grad(0)) sw = w;
    }
    Tensor out = Tensor::empty({g.n, g.o, g.oh, g.ow}, x.dtype());
    visit_float(x.dtype(), kName, [&]<class T>() {
      const Tensor bc = has_bias ? bias.contiguous() : Tensor();
      const T* px = x.data<T>();
      const T* pw = w.data<T>();
      const T* pb = has_bias ? bc.data<T>() : nullptr;
      T* po = out.data<T>();
      const int64_t P = g.plane(), K = g.kdim(), cg = g.cg(), og = g.og();
      if (g.depthwise()) {
        const int64_t planes = g.n * g.o, padded = (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
#pragma omp parallel num_threads(threads_for(planes, planes * P * g.kh * g.kw))
        {
          Scratch<T> xp(0, padded);
#pragma omp for schedule(static)
          for (int64_t q = 0; q < planes; ++q) {
            const int64_t n = q / g.o, oc = q % g.o, ic = oc / og;
            pad_plane(px + (n * g.c + ic) * g.h * g.w, g, xp.data());
            dw_forward_plane(xp.data(), pw + oc * g.kh * g.kw, pb ? pb[oc] : T(0), g, po + q * P);
          }
        }
        return;
      }
      const int nt = threads_for(g.n, g.n * g.o * P * K);
      BlasSingleThread blas_guard(nt > 1);
#pragma omp parallel num_threads(nt)
      {
        Scratch<T> col(0, g.pointwise() ? 0 : K * P);
#pragma omp for schedule(dynamic, 1)
        for (int64_t n = 0; n < g.n; ++n)
          for (int64_t grp = 0; grp < g.groups; ++grp) {
            const T* xg = px + (n * g.c + grp * cg) * g.h * g.w;
            const T* B = xg;
            if (!g.pointwise()) {
              im2col(xg, g, col.data());
              B = col.data();
            }
            T* outg = po + (n * g.o + grp * og) * P;
            gemm(false, false, og, P, K, T(1), pw + grp * og * K, K, B, P, T(0), outg, P);
            if (pb)
              for (int64_t oc = 0; oc < og; ++oc) {
                const T b = pb[grp * og + oc];
                T* row = outg + oc * P;
                for (int64_t p = 0; p < P; ++p) row[p] += b;
              }
          }
      }
    });
    return out;
  }

  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor gout = g_in.contiguous();
    Tensor gx, gw, gb;
    visit_float(gout.dtype(), kName, [&]<class T>() {
      const T* pg = gout.data<T>();
      const int64_t P = g.plane(), K = g.kdim(), cg = g.cg(), og = g.og();
      if (needs_grad(2)) {
        gb = Tensor::empty({g.o}, gout.dtype());
        T* pgb = gb.data<T>();
#pragma omp parallel for schedule(static) num_threads(threads_for(g.o, g.n * g.o * P))
        for (int64_t oc = 0; oc < g.o; ++oc) {
          T acc = 0;
          for (int64_t n = 0; n < g.n; ++n) {
            const T* row = pg + (n * g.o + oc) * P;
#pragma omp simd reduction(+ : acc)
            for (int64_t p = 0; p < P; ++p) acc += row[p];
          }
          pgb[oc] = acc;
        }
      }
      const bool want_x = needs_grad(0), want_w = needs_grad(1);
      if (!want_x && !want_w) return;
      const T* px = want_w ? sx.get(kName).template data<T>() : nullptr;
      const T* pw = want_x ? sw.get(kName).template data<T>() : nullptr;
      if (want_x) gx = Tensor::empty({g.n, g.c, g.h, g.w}, gout.dtype());
      if (want_w) gw = Tensor::empty({g.o, cg, g.kh, g.kw}, gout.dtype());
      T* pgx = want_x ? gx.data<T>() : nullptr;
      T* pgw = want_w ? gw.data<T>() : nullptr;
      const int64_t HW = g.h * g.w, KK = g.kh * g.kw;
      if (g.depthwise()) {
        const int64_t wp = g.w + 2 * g.pw, padded = (g.h + 2 * g.ph) * wp;
        if (want_x) {
          const int64_t planes = g.n * g.c;
#pragma omp parallel num_threads(threads_for(planes, g.n * g.o * P * KK))
          {
            Scratch<T> gxp(1, padded);
#pragma omp for schedule(static)
            for (int64_t q = 0; q < planes; ++q) {
              const int64_t n = q / g.c, ic = q % g.c;
              std::fill(gxp.data(), gxp.data() + padded, T(0));
              for (int64_t m = 0; m < og; ++m) {
                const int64_t oc = ic * og + m;
                dw_grad_input_plane(pg + (n * g.o + oc) * P, pw + oc * KK, g, gxp.data());
              }
              for (int64_t y = 0; y < g.h; ++y) {
                const T* src = gxp.data() + (y + g.ph) * wp + g.pw;
                std::copy(src, src + g.w, pgx + q * HW + y * g.w);
              }
            }
          }
        }
        if (want_w) {
#pragma omp parallel num_threads(threads_for(g.o, g.n * g.o * P * KK))
          {
            Scratch<T> xp(0, padded);
#pragma omp for schedule(static)
            for (int64_t oc = 0; oc < g.o; ++oc)
              for (int64_t n = 0; n < g.n; ++n) {
                pad_plane(px + (n * g.c + oc / og) * HW, g, xp.data());
                dw_grad_weight_plane(pg + (n * g.o + oc) * P, xp.data(), g, pgw + oc * KK);
              }
          }
        }
        return;
      }
      // Samples are processed in kChunks fixed, contiguous chunks handed out dynamically (a worker that
      // loses its core holds up one chunk, not half the batch); each chunk accumulates its own grad_w,
      // summed in chunk order afterwards, so the bits do not depend on scheduling or thread count.
      const int nt = threads_for(g.n, g.n * g.o * P * K);
      const int64_t chunks = std::min<int64_t>(g.n, kChunks), per_chunk = (g.n + chunks - 1) / std::max<int64_t>(chunks, 1);
      std::vector<T> gw_parts(want_w ? static_cast<size_t>(chunks * g.o * K) : 0, T(0));
      BlasSingleThread blas_guard(nt > 1);
#pragma omp parallel num_threads(nt)
      {
        const bool direct = g.pointwise();
        Scratch<T> col(0, direct || !want_w ? 0 : K * P);
        Scratch<T> gcol(1, direct || !want_x ? 0 : K * P);
#pragma omp for schedule(dynamic, 1)
        for (int64_t ch = 0; ch < chunks; ++ch) {
          T* gw_acc = want_w ? gw_parts.data() + ch * g.o * K : nullptr;
          for (int64_t n = ch * per_chunk; n < std::min(g.n, (ch + 1) * per_chunk); ++n)
            for (int64_t grp = 0; grp < g.groups; ++grp) {
              const T* gg = pg + (n * g.o + grp * og) * P;
              if (want_w) {
                const T* xg = px + (n * g.c + grp * cg) * HW;
                const T* B = xg;
                if (!direct) {
                  im2col(xg, g, col.data());
                  B = col.data();
                }
                // grad_w^T [K, og] += col · g^T: measurably faster in OpenBLAS than g · col^T.
                gemm(false, true, K, og, P, T(1), B, P, gg, P, T(1), gw_acc + grp * K * og, og);
              }
              if (want_x) {
                T* gxg = pgx + (n * g.c + grp * cg) * HW;
                const T* wg = pw + grp * og * K;
                if (direct) {
                  gemm(true, false, K, P, og, T(1), wg, K, gg, P, T(0), gxg, P);
                } else {
                  gemm(true, false, K, P, og, T(1), wg, K, gg, P, T(0), gcol.data(), P);
                  col2im(gcol.data(), g, gxg);
                }
              }
            }
        }
      }
      if (want_w) {  // sum the per-chunk [groups][K][og] parts into grad_w [O][K], in chunk order
        for (int64_t grp = 0; grp < g.groups; ++grp)
          for (int64_t oc = 0; oc < og; ++oc) {
            T* dst = pgw + (grp * og + oc) * K;
            for (int64_t ch = 0; ch < chunks; ++ch) {
              const T* src = gw_parts.data() + ch * g.o * K + grp * K * og + oc;
              for (int64_t k = 0; k < K; ++k) dst[k] += src[k * og];
            }
          }
      }
    });
    return {gx, gw, gb};
  }
};

}  // namespace

Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias, const Conv2dParams& p) {
  if (x.dim() == 3) return conv2d(x.unsqueeze(0), weight, bias, p).squeeze(0);  // unbatched [C, H, W]
  QFORGE_CHECK(x.dim() == 4, "conv2d: input must be [N, C, H, W] (or [C, H, W]), got {} (weight {})",
               shape_str(x.shape()), shape_str(weight.shape()));
  QFORGE_CHECK(weight.dim() == 4, "conv2d: weight must be [O, I/groups, kH, kW], got {} (input {})",
               shape_str(weight.shape()), shape_str(x.shape()));
  check_float(x, "conv2d");
  check_same_dtype(x, weight, "conv2d");
  QFORGE_CHECK(p.groups >= 1 && p.stride[0] >= 1 && p.stride[1] >= 1 && p.dilation[0] >= 1 && p.dilation[1] >= 1 &&
                   p.padding[0] >= 0 && p.padding[1] >= 0,
               "conv2d: invalid parameters stride {} padding {} dilation {} groups {} (input {}, weight {})",
               p.stride, p.padding, p.dilation, p.groups, shape_str(x.shape()), shape_str(weight.shape()));
  ConvGeom g{};
  g.n = x.size(0);
  g.c = x.size(1);
  g.h = x.size(2);
  g.w = x.size(3);
  g.o = weight.size(0);
  g.kh = weight.size(2);
  g.kw = weight.size(3);
  g.sh = p.stride[0];
  g.sw = p.stride[1];
  g.ph = p.padding[0];
  g.pw = p.padding[1];
  g.dh = p.dilation[0];
  g.dw = p.dilation[1];
  g.groups = p.groups;
  QFORGE_CHECK(g.c == weight.size(1) * g.groups && g.o % g.groups == 0 && g.o > 0,
               "conv2d: input {} and weight {} do not match for groups={} (need C = I*groups and O divisible "
               "by groups)",
               shape_str(x.shape()), shape_str(weight.shape()), g.groups);
  g.oh = (g.h + 2 * g.ph - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.ow = (g.w + 2 * g.pw - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  QFORGE_CHECK(g.h + 2 * g.ph >= g.dh * (g.kh - 1) + 1 && g.w + 2 * g.pw >= g.dw * (g.kw - 1) + 1,
               "conv2d: kernel {} (dilation {}) is larger than the padded input {} (padding {})",
               shape_str(weight.shape()), p.dilation, shape_str(x.shape()), p.padding);
  if (bias.defined()) {
    check_same_dtype(x, bias, "conv2d");
    QFORGE_CHECK(bias.dim() == 1 && bias.size(0) == g.o, "conv2d: bias {} does not match weight {}",
                 shape_str(bias.shape()), shape_str(weight.shape()));
  }
  ConvOp op;
  op.g = g;
  return apply(std::move(op), x, weight, bias);
}

}  // namespace qforge::ops
