// Blockwise and LPBQ weight quantization (AIMET 2.x; issue 17, reference/aimet2.md).
//
// Note [Blockwise layout] A blockwise weight quantizer splits the input-channel axis (axis 1) of a weight
// W[O, I, k...] into I/B blocks of B channels; block (o, b) covers W[o, b*B : (b+1)*B, k...] — all kernel
// positions of those B input channels, as AIMET's block_size (1, B, -1, -1) for Conv — and has its own
// encoding. In row-major memory block (o, b) is the contiguous run of B*K elements starting at
// (o*I + b*B)*K (K = prod of the kernel dims), so the quantizer treats a blockwise tensor as a
// per-channel one with O*(I/B) "channels" of B*K elements: calibration statistics, fake-quant and the
// LSQ/AIMET range gradients are the per-channel ones, unchanged. Encodings are ordered (o, b), block index
// fastest — the order AIMET flattens them in the 1.0.0 and 2.x files. Linear W[O, I] (K = 1) and the
// recurrent W_ih[G*H, I] / W_hh[G*H, H] matrices use the same layout.
//
// B must divide I: a block size that does not is refused with InputError naming the tensor (AIMET
// requires divisibility too; padding would change the per-block statistics and has no file form).
//
// Note [LPBQ] Low-power blockwise quantization: symmetric `bitwidth`-bit (4) blockwise weights whose block
// scales lie on a per-channel grid, s[o,b] = c[o]·m[o,b] with an integer multiplier
// m ∈ [1, 2^(dbw−bw)] (dbw = decompressed bitwidth, 8). From calibrated block scales s (AIMET
// grouped_dynamic_quantize): c[o] = max_b s[o,b] / 2^(dbw−bw), m[o,b] = clamp(round_half_even(s[o,b]/c[o]),
// 1, 2^(dbw−bw)). A 4-bit code q ∈ [−8, 7] of block (o, b) is then the dbw-bit code q·m[o,b] ∈ [−128, 112]
// at the per-channel scale c[o], so the int8 runtime runs LPBQ layers on its per-channel int8 kernels
// (quant/runtime/lower.cpp expands the codes) and exact mode, which evaluates the same program, equals it
// bit for bit. Range learning learns the block scales and re-snaps them to the LPBQ grid on every forward
// (the snap is passed through by the straight-through estimator).
//
// Plain blockwise weights (independent float block scales) have no per-channel integer form: the int8
// runtime and exact mode refuse them with an Error naming the layer (AIMET: "generic blockwise
// quantization is not yet supported by Qualcomm hardware"); the float simulation, QAT and the encodings
// files support them.
#pragma once

#include "engine/tensor.hpp"
#include "quant/encoding.hpp"

#include <cstdint>
#include <string>
#include <vector>

namespace qforge::quant {

struct BlockSpec {
  int64_t block_size = 0;   // input channels per block; 0 = not blockwise
  int decompressed_bw = 0;  // LPBQ: bitwidth of the per-channel grid (8); 0 = plain blockwise
  bool blockwise() const { return block_size > 0; }
  bool lpbq() const { return block_size > 0 && decompressed_bw > 0; }
  bool operator==(const BlockSpec&) const = default;
};

// The LPBQ form of one tensor's block scales (Note [LPBQ]).
struct LpbqScales {
  std::vector<double> channel_scale;  // c[o], one per output channel
  std::vector<int32_t> multiplier;    // m[o,b], O*nb, block index fastest
  bool operator==(const LpbqScales&) const = default;
};

// The block part of one tensor's entry in an encodings file (quant/encodings_io.hpp).
struct BlockEntry {
  BlockSpec spec;
  LpbqScales lpbq;  // LPBQ only
  bool operator==(const BlockEntry&) const = default;
};

// Blocks per output channel of a weight of shape `w` (Note [Blockwise layout]); InputError naming `who`
// unless w has at least 2 dims and block_size divides w[1].
int64_t blocks_per_channel(const Shape& w, int64_t block_size, const std::string& who);

// c and m from block scales (Note [LPBQ]); scale_bits = dbw − bw (1..15).
LpbqScales lpbq_compress(const std::vector<double>& block_scales, int64_t channels, int scale_bits);

// The block encodings of an LPBQ tensor: symmetric `bw`-bit, delta = c[o]·m[o,b], offset −2^(bw−1).
std::vector<Encoding> lpbq_block_encodings(const LpbqScales& s, int bw);

// InputError naming `who` unless s has `channels` positive finite scales and channels*blocks multipliers
// within [1, 2^(dbw − bw)], bw in 2..8 and bw < dbw <= 16.
void check_lpbq(const LpbqScales& s, int64_t channels, int64_t blocks, int bw, int dbw, const std::string& who);

}  // namespace qforge::quant
