// conv2d in f32 for stride-1 convolutions, as shifted-window GEMMs (Note [shifted-window GEMM] in
// engine/kernels/conv_f32.hpp). Per sample and group:
//  * forward: pad the sample once, run the GEMM on the padded-width grid, copy the valid columns out
//    (adding the bias);
//  * input gradient: the output gradient, zero-bordered by the dilated kernel extent minus the padding,
//    convolved with the weight flipped in space and transposed (in ↔ out channels) — again a stride-1
//    convolution, so the same kernel;
//  * weight gradient: the output gradient laid out on the forward's padded-width grid (zeros in the junk
//    columns), reduced against the padded input at the same offsets.
// Samples are spread over OpenMP threads as in conv.cpp, and the weight gradient is summed per fixed
// chunk of samples, then over chunks in order, so the bits do not depend on the thread count.
#include "engine/kernels/conv_f32.hpp"
#include "engine/ops/conv_geom.hpp"

#include <omp.h>

#include <limits>
#include <vector>

namespace qforge::ops::conv_detail {
namespace {

constexpr int64_t kWgradChunks = 16;
constexpr int64_t kGridAlign = 16;  // floats: a whole vector on every ISA

// off[(c, i, j)] = c*hp*wp + i*dh*wp + j*dw: where reduction index (c, i, j) reads the padded planes.
std::vector<int32_t> window_offsets(int64_t channels, int64_t hp, int64_t wp, const ConvGeom& g) {
  std::vector<int32_t> off(static_cast<size_t>(channels * g.kh * g.kw));
  size_t k = 0;
  for (int64_t c = 0; c < channels; ++c)
    for (int64_t i = 0; i < g.kh; ++i)
      for (int64_t j = 0; j < g.kw; ++j) off[k++] = static_cast<int32_t>(c * hp * wp + i * g.dh * wp + j * g.dw);
  return off;
}

// The input-gradient border: the dilated kernel extent minus the forward padding, per axis.
int64_t grad_border_h(const ConvGeom& g) { return g.dh * (g.kh - 1) - g.ph; }
int64_t grad_border_w(const ConvGeom& g) { return g.dw * (g.kw - 1) - g.pw; }

}  // namespace

bool shifted_applies(const ConvGeom& g) {
  if (g.sh != 1 || g.sw != 1 || g.depthwise() || g.pointwise()) return false;
  if (grad_border_h(g) < 0 || grad_border_w(g) < 0) return false;
  // Offsets and grid lengths are int32 in the kernels.
  const int64_t limit = std::numeric_limits<int32_t>::max() / 2;
  const int64_t in_planes = g.cg() * (g.h + 2 * g.ph) * (g.w + 2 * g.pw);
  const int64_t grad_planes = g.og() * (g.h + g.dh * (g.kh - 1)) * (g.w + g.dw * (g.kw - 1));
  return in_planes < limit && grad_planes < limit;
}

#define QFORGE_ROW_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))  // no memcpy per row

// One stride-1 convolution pass per (sample, group): `in_ch` planes [in_h, in_w] of the group, zero-
// bordered by (bh, bw), through the group's packed weights, into `out_ch` planes [out_h, out_w] (+ bias).
struct ShiftedPass {
  int64_t n, groups;
  int64_t in_ch, in_h, in_w, bh, bw;  // per group
  int64_t out_ch, out_h, out_w;       // per group
  std::vector<int32_t> off;           // window offsets into the bordered planes
  std::vector<float> packed;          // per group, shifted_gemm_packed_size(out_ch, off.size()) floats each
  int64_t work;                       // multiply-adds, for the thread count
};

QFORGE_ROW_LOOPS void run_pass(const ShiftedPass& p, const float* in, const float* bias, float* out) {
  const int64_t hb = p.in_h + 2 * p.bh, wb = p.in_w + 2 * p.bw, in_size = p.in_ch * hb * wb;
  const int64_t nq = (p.out_h - 1) * wb + p.out_w, k = static_cast<int64_t>(p.off.size());
  const int64_t in_plane = p.in_h * p.in_w, out_plane = p.out_h * p.out_w;
  const size_t psize = kernels::shifted_gemm_packed_size(static_cast<int>(p.out_ch), static_cast<int>(k));
  const int64_t items = p.n * p.groups;
#pragma omp parallel num_threads(threads_for(items, p.work))
  {
    Scratch<float> bordered(0, in_size), grid(1, p.out_ch * nq);
    std::fill(bordered.data(), bordered.data() + in_size, 0.0f);  // the borders stay zero
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = 0; item < items; ++item) {  // item = sample * groups + group
      const int64_t grp = item % p.groups;
      fill_padded_interior(in + item * p.in_ch * in_plane, p.in_ch, p.in_h, p.in_w, p.bh, p.bw, bordered.data());
      kernels::shifted_gemm_f32(p.packed.data() + grp * psize, static_cast<int>(p.out_ch), static_cast<int>(k),
                                p.off.data(), bordered.data(), static_cast<int>(nq), grid.data(), nq);
      for (int64_t oc = 0; oc < p.out_ch; ++oc) {
        const float b = bias ? bias[grp * p.out_ch + oc] : 0.0f;
        const float* src = grid.data() + oc * nq;
        float* dst = out + (item * p.out_ch + oc) * out_plane;
        for (int64_t y = 0; y < p.out_h; ++y)
#pragma omp simd
          for (int64_t x = 0; x < p.out_w; ++x) dst[y * p.out_w + x] = src[y * wb + x] + b;
      }
    }
  }
}

void shifted_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y) {
  const int64_t cg = g.cg(), og = g.og(), K = g.kdim();
  ShiftedPass p{g.n, g.groups, cg, g.h, g.w, g.ph, g.pw, og, g.oh, g.ow, {}, {}, g.n * g.o * g.plane() * K};
  p.off = window_offsets(cg, g.h + 2 * g.ph, g.w + 2 * g.pw, g);
  const size_t psize = kernels::shifted_gemm_packed_size(static_cast<int>(og), static_cast<int>(K));
  p.packed.resize(psize * static_cast<size_t>(g.groups));
  for (int64_t grp = 0; grp < g.groups; ++grp)
    kernels::pack_shifted_gemm_f32(w + grp * og * K, K, static_cast<int>(og), static_cast<int>(K),
                                   p.packed.data() + grp * psize);
  run_pass(p, x, bias, y);
}

void shifted_grad_input(const ConvGeom& g, const float* gout, const float* w, float* gx) {
  const int64_t cg = g.cg(), og = g.og(), KK = g.kh * g.kw, Kt = og * KK;
  const int64_t bh = grad_border_h(g), bw = grad_border_w(g);
  ShiftedPass p{g.n, g.groups, og, g.oh, g.ow, bh, bw, cg, g.h, g.w, {}, {}, g.n * g.o * g.plane() * g.kdim()};
  p.off = window_offsets(og, g.oh + 2 * bh, g.ow + 2 * bw, g);
  // wt[c][(o, i, j)] = w[o][c][kh-1-i][kw-1-j] per group, packed.
  const size_t psize = kernels::shifted_gemm_packed_size(static_cast<int>(cg), static_cast<int>(Kt));
  p.packed.resize(psize * static_cast<size_t>(g.groups));
  std::vector<float> wt(static_cast<size_t>(cg * Kt));
  for (int64_t grp = 0; grp < g.groups; ++grp) {
    for (int64_t c = 0; c < cg; ++c)
      for (int64_t o = 0; o < og; ++o)
        for (int64_t t = 0; t < KK; ++t) wt[c * Kt + o * KK + t] = w[((grp * og + o) * cg + c) * KK + (KK - 1 - t)];
    kernels::pack_shifted_gemm_f32(wt.data(), Kt, static_cast<int>(cg), static_cast<int>(Kt),
                                   p.packed.data() + grp * psize);
  }
  run_pass(p, gout, nullptr, gx);
}

QFORGE_ROW_LOOPS void shifted_grad_weight(const ConvGeom& g, const float* gout, const float* x, float* gw) {
  const int64_t cg = g.cg(), og = g.og(), K = g.kdim(), P = g.plane(), HW = g.h * g.w;
  const int64_t hp = g.h + 2 * g.ph, wp = g.w + 2 * g.pw, nq = (g.oh - 1) * wp + g.ow;
  // The grid is padded to whole vectors (zeros in the gradient) so the kernel has no scalar tail; the
  // padded input gets as many zeros of slack after each sample for the reads past its end.
  const int64_t nq_pad = (nq + kGridAlign - 1) / kGridAlign * kGridAlign;
  const int64_t in_size = cg * hp * wp, in_stride = in_size + kGridAlign;
  const std::vector<int32_t> off = window_offsets(cg, hp, wp, g);
  const int64_t chunks = std::min(g.n, kWgradChunks), per_chunk = (g.n + chunks - 1) / chunks;
  std::vector<float> parts(static_cast<size_t>(chunks * g.o * K), 0.0f);
#pragma omp parallel num_threads(threads_for(chunks, g.n * g.o * P * K))
  {
    Scratch<float> xpad(0, per_chunk * in_stride), ggrid(1, per_chunk * og * nq_pad);
    // Borders, slack, junk columns and grid padding are written once here and stay zero.
    std::fill(xpad.data(), xpad.data() + per_chunk * in_stride, 0.0f);
    std::fill(ggrid.data(), ggrid.data() + per_chunk * og * nq_pad, 0.0f);
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < chunks; ++ch) {
      const int64_t n0 = ch * per_chunk, samples = std::min(g.n, n0 + per_chunk) - n0;
      for (int64_t grp = 0; grp < g.groups; ++grp) {
        for (int64_t s = 0; s < samples; ++s) {
          fill_padded_interior(x + ((n0 + s) * g.c + grp * cg) * HW, cg, g.h, g.w, g.ph, g.pw,
                               xpad.data() + s * in_stride);
          // The output gradient on the forward's padded-width grid (one row of nq_pad per channel).
          for (int64_t oc = 0; oc < og; ++oc) {
            const float* src = gout + ((n0 + s) * g.o + grp * og + oc) * P;
            float* dst = ggrid.data() + (s * og + oc) * nq_pad;
            for (int64_t oy = 0; oy < g.oh; ++oy)
#pragma omp simd
              for (int64_t ox = 0; ox < g.ow; ++ox) dst[oy * wp + ox] = src[oy * g.ow + ox];
          }
        }
        kernels::shifted_gemm_wgrad_f32(static_cast<int>(samples), ggrid.data(), nq_pad, og * nq_pad,
                                        static_cast<int>(og), static_cast<int>(nq_pad), off.data(),
                                        static_cast<int>(K), xpad.data(), in_stride,
                                        parts.data() + (ch * g.o + grp * og) * K, K);
      }
    }
  }
  std::fill(gw, gw + g.o * K, 0.0f);
  for (int64_t ch = 0; ch < chunks; ++ch) {
    const float* src = parts.data() + ch * g.o * K;
#pragma omp simd
    for (int64_t i = 0; i < g.o * K; ++i) gw[i] += src[i];
  }
}

#undef QFORGE_ROW_LOOPS

}  // namespace qforge::ops::conv_detail
