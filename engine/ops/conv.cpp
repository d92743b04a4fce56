// conv2d: NCHW input, OIHW weight, stride/padding/dilation/groups, optional bias (torch conv2d semantics).
//
// Three kernels, chosen per call in ConvOp (forward and backward of each live side by side):
//  * shifted-window GEMM (f32, stride 1, neither depthwise nor 1x1; conv_shifted.cpp): the SIMD kernels
//    of engine/kernels/conv_f32.hpp read the receptive fields straight from a zero-bordered copy of the
//    sample at fixed offsets, so nothing is unrolled (Note [shifted-window GEMM] there). The input
//    gradient is the same kernel on the bordered output gradient with the flipped, transposed weight.
//  * im2col + GEMM (everything else except depthwise, and f64). Per sample and group, the receptive
//    fields are unrolled into a [cg*kh*kw, oh*ow] column matrix and multiplied by the group's weight
//    block [og, cg*kh*kw] (with vertical stride 1, only the kw horizontal shifts are unrolled and the kh
//    kernel rows become kh accumulating GEMMs at row offsets: Note [row-shift im2col]). Backward
//    recomputes the columns (cheaper than keeping N column matrices alive): grad_w^T += col · g^T, and
//    grad_col = W^T · g is scattered back with col2im. A 1x1/stride-1/unpadded conv uses the input as the
//    column matrix directly.
//  * direct (depthwise: one input channel per group; conv_depthwise.cpp). A GEMM with K = kh*kw is all
//    overhead: each plane is accumulated tap by tap over its polyphase planes, one long vectorisable
//    loop per tap (Note [polyphase depthwise]).
//
// Parallelism: OpenMP over the batch, one column buffer per thread, each worker calling a single-threaded
// GEMM (Note [BLAS threads inside OpenMP] in blas.hpp); with a batch of one, gemm() splits each GEMM.
// Samples are scheduled dynamically (a worker preempted on a busy machine stalls only its own piece),
// and the weight gradient is summed over fixed sample chunks in a fixed order, so results are
// bit-identical whatever the schedule or thread count.
#include "engine/ops/blas.hpp"
#include "engine/ops/conv_geom.hpp"
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <memory>
#include <type_traits>
#include <vector>

namespace qforge::ops {

using detail::check_float;
using detail::check_same_dtype;
using detail::gemm;
using detail::visit_float;

namespace {

using conv_detail::ConvGeom;
using conv_detail::fill_padded_interior;
using conv_detail::Scratch;
using conv_detail::threads_for;

// ---- im2col over a zero-bordered copy of the sample (Note [padded im2col]) -------------------------
//
// Note [padded im2col]
// With the sample copied into a zero-bordered buffer ([cg, h+2ph, w+2pw], a few KB; the borders zeroed
// once per thread, the interior refilled per sample), every column row is a plain strided copy: no bounds, no zero segments. Cutting the boundary cases per output row away
// removes ~3 tiny memset/memcpy calls per row (the dominant im2col cost at 28x28). The row loops are
// kept as loops (not turned into memcpy/memset calls) because rows are only a few dozen elements long.
// col2im accumulates into a zeroed padded gradient sample in the same (c, i, j, oy, ox) order as a
// direct scatter would, then copies its interior out.

#define QFORGE_CONV_INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))

// Padded sample xp [cg, h+2ph, w+2pw] -> col [cg*kh*kw, oh*ow].
template <class T>
QFORGE_CONV_INLINE_LOOPS void im2col_padded(const T* __restrict xp, const ConvGeom& g, T* __restrict col) noexcept {
  const int64_t wp = g.w + 2 * g.pw, hp = g.h + 2 * g.ph, cg = g.cg(), P = g.plane(), ow = g.ow, sw = g.sw;
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        const T* base = xp + c * hp * wp + i * g.dh * wp + j * g.dw;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          T* dst = row + oy * ow;
          const T* src = base + oy * g.sh * wp;
          if (sw == 1) {
#pragma omp simd
            for (int64_t ox = 0; ox < ow; ++ox) dst[ox] = src[ox];
          } else {
#pragma omp simd
            for (int64_t ox = 0; ox < ow; ++ox) dst[ox] = src[ox * sw];
          }
        }
      }
}

// gx [cg, h, w] = the adjoint of im2col applied to col, via the padded scratch gxp (overwritten).
template <class T>
QFORGE_CONV_INLINE_LOOPS void col2im_padded(const T* __restrict col, const ConvGeom& g, T* __restrict gxp,
                                            T* __restrict gx) noexcept {
  const int64_t wp = g.w + 2 * g.pw, hp = g.h + 2 * g.ph, cg = g.cg(), P = g.plane(), ow = g.ow, sw = g.sw;
  for (int64_t k = 0; k < cg * hp * wp; ++k) gxp[k] = T(0);
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) {
        const T* row = col + ((c * g.kh + i) * g.kw + j) * P;
        T* base = gxp + c * hp * wp + i * g.dh * wp + j * g.dw;
        for (int64_t oy = 0; oy < g.oh; ++oy) {
          const T* src = row + oy * ow;
          T* dst = base + oy * g.sh * wp;
          if (sw == 1) {
#pragma omp simd
            for (int64_t ox = 0; ox < ow; ++ox) dst[ox] += src[ox];
          } else {
            for (int64_t ox = 0; ox < ow; ++ox) dst[ox * sw] += src[ox];
          }
        }
      }
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t y = 0; y < g.h; ++y) {
      const T* src = gxp + (c * hp + y + g.ph) * wp + g.pw;
      T* dst = gx + (c * g.h + y) * g.w;
#pragma omp simd
      for (int64_t k = 0; k < g.w; ++k) dst[k] = src[k];
    }
}

// ---- row-shift im2col for vertical stride 1 (Note [row-shift im2col]) -----------------------------
//
// Note [row-shift im2col]
// With stride 1 along H, the column rows of kernel row i are those of kernel row 0 moved down by
// i*dh input rows. So only the cg*kw horizontally shifted copies of the padded sample are unrolled, over
// the full padded height: colw [cg*kw, hp*ow]. Kernel row i then reads colw from column i*dh*ow on
// (leading dimension hp*ow), and the conv is kh accumulating GEMMs with K = cg*kw against the weight
// reordered per kernel row, wr [kh][og][cg*kw]. im2col writes kh times less; the GEMMs cost about the
// same. Backward: grad_colw += wr_i^T · g at the same offsets (the overlaps add up, which is exactly
// the adjoint), then one scatter of colw back to the padded sample. grad_w keeps the full im2col and
// one GEMM: kh thin GEMMs (M = cg*kw, reduction over oh*ow) measured ~20% slower in OpenBLAS, more than
// the unrolling they save.

// Row-shift columns colw [cg*kw, hp*ow] of the sample x [cg, h, w]: colw[(c, j), y*ow + ox] is padded
// input (c, y, ox*sw + j*dw), the zero border written in place.
template <class T>
QFORGE_CONV_INLINE_LOOPS void rowshift_cols_direct(const T* __restrict x, const ConvGeom& g, T* __restrict colw) noexcept {
  const int64_t hp = g.h + 2 * g.ph, cg = g.cg(), ow = g.ow, sw = g.sw, L = hp * ow;
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t j = 0; j < g.kw; ++j) {
      T* row = colw + (c * g.kw + j) * L;
      const int64_t x0 = j * g.dw - g.pw;  // input column read by output column 0
      // output columns [lo, hi) read inside [0, w)
      int64_t lo = x0 >= 0 ? 0 : (-x0 + sw - 1) / sw;
      int64_t hi = (g.w - 1 - x0) < 0 ? 0 : (g.w - 1 - x0) / sw + 1;
      lo = std::min(lo, ow);
      hi = std::clamp(hi, lo, ow);
      for (int64_t y = 0; y < hp; ++y) {
        T* dst = row + y * ow;
        const int64_t iy = y - g.ph;
        if (iy < 0 || iy >= g.h) {
          for (int64_t ox = 0; ox < ow; ++ox) dst[ox] = T(0);
          continue;
        }
        const T* src = x + (c * g.h + iy) * g.w;
        for (int64_t ox = 0; ox < lo; ++ox) dst[ox] = T(0);
        if (sw == 1) {
#pragma omp simd
          for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox + x0];
        } else {
#pragma omp simd
          for (int64_t ox = lo; ox < hi; ++ox) dst[ox] = src[ox * sw + x0];
        }
        for (int64_t ox = hi; ox < ow; ++ox) dst[ox] = T(0);
      }
    }
}

// gx [cg, h, w] = the adjoint of rowshift_cols_direct applied to gcolw, via the padded scratch gxp (overwritten).
template <class T>
QFORGE_CONV_INLINE_LOOPS void rowshift_col2im(const T* __restrict gcolw, const ConvGeom& g, T* __restrict gxp,
                                              T* __restrict gx) noexcept {
  const int64_t wp = g.w + 2 * g.pw, hp = g.h + 2 * g.ph, cg = g.cg(), ow = g.ow, sw = g.sw, L = hp * ow;
  for (int64_t k = 0; k < cg * hp * wp; ++k) gxp[k] = T(0);
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t j = 0; j < g.kw; ++j) {
      const T* row = gcolw + (c * g.kw + j) * L;
      T* base = gxp + c * hp * wp + j * g.dw;
      for (int64_t y = 0; y < hp; ++y) {
        const T* src = row + y * ow;
        T* dst = base + y * wp;
        if (sw == 1) {
#pragma omp simd
          for (int64_t ox = 0; ox < ow; ++ox) dst[ox] += src[ox];
        } else {
          for (int64_t ox = 0; ox < ow; ++ox) dst[ox * sw] += src[ox];
        }
      }
    }
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t y = 0; y < g.h; ++y) {
      const T* src = gxp + (c * hp + y + g.ph) * wp + g.pw;
      T* dst = gx + (c * g.h + y) * g.w;
#pragma omp simd
      for (int64_t k = 0; k < g.w; ++k) dst[k] = src[k];
    }
}

// Full columns [cg*kh*kw, oh*ow] from row-shift columns: every row is one contiguous slice of colw.
template <class T> void im2col_from_rowshift(const T* __restrict colw, const ConvGeom& g, T* __restrict col) noexcept {
  const int64_t cg = g.cg(), P = g.plane(), L = (g.h + 2 * g.ph) * g.ow;
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j)
        std::copy(colw + (c * g.kw + j) * L + i * g.dh * g.ow, colw + (c * g.kw + j) * L + i * g.dh * g.ow + P,
                  col + ((c * g.kh + i) * g.kw + j) * P);
}

// Weight [O, cg, kh, kw] -> wr [groups][kh][og][cg*kw].
template <class T> std::vector<T> rowshift_weight(const T* w, const ConvGeom& g) {
  const int64_t cg = g.cg(), og = g.og(), kw = g.kw, Kw = cg * kw;
  std::vector<T> wr(static_cast<size_t>(g.o * g.kdim()));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t oc = 0; oc < og; ++oc)
        for (int64_t c = 0; c < cg; ++c)
          for (int64_t j = 0; j < kw; ++j)
            wr[((grp * g.kh + i) * og + oc) * Kw + c * kw + j] = w[(((grp * og + oc) * cg + c) * g.kh + i) * kw + j];
  return wr;
}

#undef QFORGE_CONV_INLINE_LOOPS

constexpr int64_t kChunks = 16;  // weight-gradient partial sums per backward (see ConvOp::backward)

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
    Tensor out = Tensor::uninitialized({g.n, g.o, g.oh, g.ow}, x.dtype());  // every element is written
    visit_float(x.dtype(), kName, [&]<class T>() {
      const Tensor bc = has_bias ? bias.contiguous() : Tensor();
      const T* px = x.data<T>();
      const T* pw = w.data<T>();
      const T* pb = has_bias ? bc.data<T>() : nullptr;
      T* po = out.data<T>();
      const int64_t P = g.plane(), K = g.kdim(), cg = g.cg(), og = g.og();
      if (g.depthwise()) {
        conv_detail::depthwise_forward<T>(g, px, pw, pb, po);
        return;
      }
      if constexpr (std::is_same_v<T, float>)
        if (conv_detail::shifted_applies(g)) {
          conv_detail::shifted_forward(g, px, pw, pb, po);
          return;
        }
      const int nt = threads_for(g.n, g.n * g.o * P * K);
      const int64_t padded_plane = (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
      if (g.rowshift()) {
        const std::vector<T> wr = rowshift_weight(pw, g);
        const int64_t Kw = cg * g.kw, L = (g.h + 2 * g.ph) * g.ow;
#pragma omp parallel num_threads(nt)
        {
          Scratch<T> colw(0, Kw * L);
#pragma omp for schedule(dynamic, 1)
          for (int64_t n = 0; n < g.n; ++n)
            for (int64_t grp = 0; grp < g.groups; ++grp) {
              rowshift_cols_direct(px + (n * g.c + grp * cg) * g.h * g.w, g, colw.data());
              T* outg = po + (n * g.o + grp * og) * P;
              // The bias initialises the output rows (in place of OpenBLAS zeroing them for beta = 0).
              if (pb)
                for (int64_t oc = 0; oc < og; ++oc) std::fill(outg + oc * P, outg + (oc + 1) * P, pb[grp * og + oc]);
              for (int64_t i = 0; i < g.kh; ++i)
                gemm(false, false, og, P, Kw, T(1), wr.data() + (grp * g.kh + i) * og * Kw, Kw,
                     colw.data() + i * g.dh * g.ow, L, T(i == 0 && !pb ? 0 : 1), outg, P);
            }
        }
        return;
      }
#pragma omp parallel num_threads(nt)
      {
        Scratch<T> col(0, g.pointwise() ? 0 : K * P);
        const int64_t xpad_size = g.pointwise() ? 0 : cg * padded_plane;
        Scratch<T> xpad(2, xpad_size);
        std::fill(xpad.data(), xpad.data() + xpad_size, T(0));  // the borders stay zero
#pragma omp for schedule(dynamic, 1)
        for (int64_t n = 0; n < g.n; ++n)
          for (int64_t grp = 0; grp < g.groups; ++grp) {
            const T* xg = px + (n * g.c + grp * cg) * g.h * g.w;
            const T* B = xg;
            if (!g.pointwise()) {
              fill_padded_interior(xg, cg, g.h, g.w, g.ph, g.pw, xpad.data());
              im2col_padded(xpad.data(), g, col.data());
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
        gb = Tensor::uninitialized({g.o}, gout.dtype());
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
      // grad_x is fully written: copied from padded planes (depthwise and im2col) or by a beta=0 GEMM.
      if (want_x) gx = Tensor::uninitialized({g.n, g.c, g.h, g.w}, gout.dtype());
      if (want_w) gw = Tensor::empty({g.o, cg, g.kh, g.kw}, gout.dtype());
      T* pgx = want_x ? gx.data<T>() : nullptr;
      T* pgw = want_w ? gw.data<T>() : nullptr;
      const int64_t HW = g.h * g.w;
      if (g.depthwise()) {
        conv_detail::depthwise_backward<T>(g, pg, px, pw, pgx, pgw);
        return;
      }
      if constexpr (std::is_same_v<T, float>)
        if (conv_detail::shifted_applies(g)) {
          if (want_x) conv_detail::shifted_grad_input(g, pg, pw, pgx);
          if (want_w) conv_detail::shifted_grad_weight(g, pg, px, pgw);
          return;
        }
      // Samples are processed in kChunks fixed, contiguous chunks handed out dynamically (a worker that
      // loses its core holds up one chunk, not half the batch); each chunk accumulates its own grad_w,
      // summed in chunk order afterwards, so the bits do not depend on scheduling or thread count.
      const int nt = threads_for(g.n, g.n * g.o * P * K);
      const int64_t chunks = std::min<int64_t>(g.n, kChunks), per_chunk = (g.n + chunks - 1) / std::max<int64_t>(chunks, 1);
      std::vector<T> gw_parts(want_w ? static_cast<size_t>(chunks * g.o * K) : 0, T(0));
      if (g.rowshift()) {  // Note [row-shift im2col], used for grad_x only (see there)
        const std::vector<T> wr = want_x ? rowshift_weight(pw, g) : std::vector<T>();
        const int64_t Kw = cg * g.kw, L = (g.h + 2 * g.ph) * g.ow, padded_sample = cg * (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
#pragma omp parallel num_threads(nt)
        {
          Scratch<T> col(0, want_w ? K * P : 0);
          Scratch<T> colw(4, want_w ? Kw * L : 0);
          Scratch<T> gcolw(1, want_x ? Kw * L : 0);
          Scratch<T> gxpad(3, want_x ? padded_sample : 0);
#pragma omp for schedule(dynamic, 1)
          for (int64_t ch = 0; ch < chunks; ++ch) {
            T* gw_acc = want_w ? gw_parts.data() + ch * g.o * K : nullptr;
            for (int64_t n = ch * per_chunk; n < std::min(g.n, (ch + 1) * per_chunk); ++n)
              for (int64_t grp = 0; grp < g.groups; ++grp) {
                const T* gg = pg + (n * g.o + grp * og) * P;
                if (want_w) {
                  rowshift_cols_direct(px + (n * g.c + grp * cg) * HW, g, colw.data());
                  im2col_from_rowshift(colw.data(), g, col.data());
                  gemm(false, true, K, og, P, T(1), col.data(), P, gg, P, T(1), gw_acc + grp * K * og, og);
                }
                if (want_x) {
                  // kernel row 0 writes columns [0, P) of every row (beta = 0); only the rest needs zeroing
                  for (int64_t r = 0; r < Kw; ++r) std::fill(gcolw.data() + r * L + P, gcolw.data() + (r + 1) * L, T(0));
                  for (int64_t i = 0; i < g.kh; ++i)
                    gemm(true, false, Kw, P, og, T(1), wr.data() + (grp * g.kh + i) * og * Kw, Kw, gg, P,
                         T(i == 0 ? 0 : 1), gcolw.data() + i * g.dh * g.ow, L);
                  rowshift_col2im(gcolw.data(), g, gxpad.data(), pgx + (n * g.c + grp * cg) * HW);
                }
              }
          }
        }
      } else {
#pragma omp parallel num_threads(nt)
        {
          const bool direct = g.pointwise();
          Scratch<T> col(0, direct || !want_w ? 0 : K * P);
          Scratch<T> gcol(1, direct || !want_x ? 0 : K * P);
          const int64_t padded_sample = cg * (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
          const int64_t xpad_size = direct || !want_w ? 0 : padded_sample;
          Scratch<T> xpad(2, xpad_size);
          std::fill(xpad.data(), xpad.data() + xpad_size, T(0));  // the borders stay zero
          Scratch<T> gxpad(3, direct || !want_x ? 0 : padded_sample);
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
                    fill_padded_interior(xg, cg, g.h, g.w, g.ph, g.pw, xpad.data());
                    im2col_padded(xpad.data(), g, col.data());
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
                    col2im_padded(gcol.data(), g, gxpad.data(), gxg);
                  }
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
