// Blockwise / LPBQ weights in a QuantSim (issue 17): AIMET's set_blockwise_quantization_for_weights and
// set_grouped_blockwise_quantization_for_weights, and the block-scale statistics the analyzer reports.
// The block model is in quant/blockwise.hpp (Notes [Blockwise layout], [LPBQ]).
#pragma once

#include "quant/quantsim.hpp"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace qforge::quant {

struct BlockwiseOptions {
  int64_t block_size = 0;   // input channels per block (> 0)
  bool lpbq = false;        // LPBQ: block scales on a per-channel grid of decompressed_bw bits
  int decompressed_bw = 8;
  bool recurrent = true;    // also the LSTM/GRU/RNN weight matrices (W_l{k}, R_l{k})
};

struct BlockwiseResult {
  std::vector<std::string> converted;  // quantizer names now blockwise
  std::vector<std::string> skipped;    // "name: reason" (fewer input channels than one block)
};

// Makes the weight quantizers of every Conv2d and Linear (and recurrent layer) blockwise and recomputes
// their encodings from the weights (a weight quantizer's calibration needs only the weight; activation
// encodings do not depend on the weights' grid: calibration observes float activations). Layers with
// fewer input channels than one block keep their per-channel grid (the whole input axis is narrower than
// a block: per-channel is already the finest blockwise grid there); a block size that does not divide a
// layer's input channels is an InputError naming the tensor. LPBQ needs symmetric weights (InputError).
// Disabled weight quantizers are converted but not calibrated.
BlockwiseResult apply_blockwise(QuantSim& sim, const BlockwiseOptions& opt);

// Recomputes the encodings of the sim's blockwise weight quantizers from their weights (after something
// changed the weights, e.g. CLE). Returns how many.
int recalibrate_blockwise(QuantSim& sim);

// InputError naming `key` unless a blockwise/LPBQ file entry of `count` block encodings fits a weight of
// shape `shape`: the block size divides its input channels and count = out channels × blocks (for LPBQ
// also the per-channel scales = out channels).
void check_block_entry(const std::string& key, const Shape& shape, size_t count, const BlockEntry& b);

// Per blockwise weight quantizer: {name, block_size, blocks, channels, lpbq, scale_min/median/max, the
// mean over channels of max/min block scale within the channel, and for LPBQ the multiplier histogram
// (counts of 1..2^(dbw-bw))}. Empty array when nothing is blockwise.
nlohmann::json block_scale_stats(const QuantSim& sim);

}  // namespace qforge::quant
