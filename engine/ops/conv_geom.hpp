// Internal to engine/ops/conv*.cpp: the geometry of a conv2d call, per-thread scratch blocks, and the
// zero-bordered plane copies the conv kernels read from.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <omp.h>

namespace qforge::ops::conv_detail {

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
  bool rowshift() const { return sh == 1 && kh > 1 && !pointwise(); }  // Note [row-shift im2col]
};

// Per-thread scratch, left uninitialised (every element is written before it is read). The block is
// kept per thread (slot 0: columns, a padded input plane or padded samples, slot 1: column gradients, a
// padded gradient plane or an output grid, slots 2/3: a padded input / input-gradient sample for the
// im2col kernels, slot 4: row-shift columns feeding a full im2col) and reused by the next call, so the hot loop neither allocates nor page-faults;
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
  static std::array<Block, 5>& cache() {
    thread_local std::array<Block, 5> blocks;
    return blocks;
  }
  size_t bytes_;
  Block& block_;
};

// Threads for a loop over `items` independent pieces of `work` multiply-adds in total. Small ops stay on
// one thread: a parallel region costs microseconds, and far more when the cores are oversubscribed.
constexpr int64_t kMinParallelWork = 1 << 19;
inline int threads_for(int64_t items, int64_t work) {
  if (work < kMinParallelWork) return 1;
  return static_cast<int>(std::clamp<int64_t>(items, 1, omp_get_max_threads()));
}

// Copies only the interiors of planes [n, h, w] into zero-bordered [n, h + 2ph, w + 2pw] planes whose
// borders are already zero (a scratch buffer zeroed once and refilled sample after sample).
template <class T>
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void fill_padded_interior(
    const T* __restrict x, int64_t planes, int64_t h, int64_t w, int64_t ph, int64_t pw, T* __restrict xp) noexcept {
  const int64_t wp = w + 2 * pw, hp = h + 2 * ph;
  for (int64_t c = 0; c < planes; ++c)
    for (int64_t y = 0; y < h; ++y) {
      const T* src = x + (c * h + y) * w;
      T* row = xp + (c * hp + y + ph) * wp + pw;
#pragma omp simd
      for (int64_t k = 0; k < w; ++k) row[k] = src[k];
    }
}

// The f32 path for stride-1 convolutions (conv_shifted.cpp): forward and input gradient as shifted-
// window GEMMs over zero-bordered samples (Note [shifted-window GEMM] in engine/kernels/conv_f32.hpp),
// weight gradient as the same product reduced over output positions. Each parallelises over samples.
bool shifted_applies(const ConvGeom& g);  // stride 1, neither depthwise nor 1x1, padding <= dilated kernel - 1
void shifted_forward(const ConvGeom& g, const float* x, const float* w, const float* bias, float* y);
void shifted_grad_input(const ConvGeom& g, const float* gout, const float* w, float* gx);
void shifted_grad_weight(const ConvGeom& g, const float* gout, const float* x, float* gw);  // gw overwritten

// Depthwise convolutions (conv_depthwise.cpp, Note [polyphase depthwise]); T = float or double. The
// backward computes gx and/or gw (either may be null; gw is accumulated into, x and w as needed).
template <class T> void depthwise_forward(const ConvGeom& g, const T* x, const T* w, const T* bias, T* y);
template <class T> void depthwise_backward(const ConvGeom& g, const T* gout, const T* x, const T* w, T* gx, T* gw);

}  // namespace qforge::ops::conv_detail
