// Blockwise / LPBQ encoding arithmetic. See blockwise.hpp.
#include "quant/blockwise.hpp"

#include "engine/kernels/quantize.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qforge::quant {

int64_t blocks_per_channel(const Shape& w, int64_t block_size, const std::string& who) {
  if (block_size <= 0) throw InputError(fmt::format("{}: block size {} must be positive", who, block_size));
  if (w.size() < 2)
    throw InputError(fmt::format("{}: blockwise quantization needs a weight with an input-channel axis, got shape {}",
                                 who, shape_str(w)));
  if (w[1] % block_size != 0)
    throw InputError(fmt::format("{}: block size {} does not divide the {} input channels of shape {} (blocks must "
                                 "tile the input-channel axis exactly; choose a divisor of {})",
                                 who, block_size, w[1], shape_str(w), w[1]));
  return w[1] / block_size;
}

LpbqScales lpbq_compress(const std::vector<double>& s, int64_t channels, int scale_bits) {
  QFORGE_CHECK(channels > 0 && s.size() % static_cast<size_t>(channels) == 0 && !s.empty(),
               "lpbq_compress: {} block scales for {} channels", s.size(), channels);
  QFORGE_CHECK(scale_bits >= 1 && scale_bits <= 15, "lpbq_compress: scale bits {} outside 1..15", scale_bits);
  const int64_t nb = static_cast<int64_t>(s.size()) / channels;
  const double top = std::ldexp(1.0, scale_bits);
  LpbqScales out;
  out.channel_scale.resize(channels);
  out.multiplier.resize(s.size());
  for (int64_t o = 0; o < channels; ++o) {
    const double mx = *std::max_element(s.begin() + o * nb, s.begin() + (o + 1) * nb);
    const double c = mx / top;
    out.channel_scale[o] = c;
    for (int64_t b = 0; b < nb; ++b) {
      // round half to even as AIMET (torch.round); the ratio is at most 2^scale_bits, well inside
      // rint_small's exact range.
      const double r = kernels::round_tie<kernels::Tie::half_even>(s[o * nb + b] / c);
      out.multiplier[o * nb + b] = static_cast<int32_t>(std::clamp(r, 1.0, top));
    }
  }
  return out;
}

std::vector<Encoding> lpbq_block_encodings(const LpbqScales& s, int bw) {
  const int64_t channels = static_cast<int64_t>(s.channel_scale.size());
  QFORGE_CHECK(channels > 0 && s.multiplier.size() % static_cast<size_t>(channels) == 0,
               "lpbq: {} multipliers for {} channels", s.multiplier.size(), channels);
  const int64_t nb = static_cast<int64_t>(s.multiplier.size()) / channels;
  GridSpec g;
  g.bitwidth = bw;
  g.symmetric = true;
  const double offset = -std::ldexp(1.0, bw - 1);
  std::vector<Encoding> out;
  out.reserve(s.multiplier.size());
  for (int64_t o = 0; o < channels; ++o)
    for (int64_t b = 0; b < nb; ++b)
      out.push_back(encoding_from_scale_offset(s.channel_scale[o] * s.multiplier[o * nb + b], offset, g));
  return out;
}

void check_lpbq(const LpbqScales& s, int64_t channels, int64_t blocks, int bw, int dbw, const std::string& who) {
  if (bw < 2 || bw > 8) throw InputError(fmt::format("{}: LPBQ bitwidth {} outside 2..8", who, bw));
  if (dbw <= bw || dbw > 16)
    throw InputError(fmt::format("{}: LPBQ decompressed bitwidth {} must exceed the bitwidth {} and be at most 16",
                                 who, dbw, bw));
  if (static_cast<int64_t>(s.channel_scale.size()) != channels)
    throw InputError(fmt::format("{}: {} per-channel scales for {} output channels", who, s.channel_scale.size(),
                                 channels));
  if (static_cast<int64_t>(s.multiplier.size()) != channels * blocks)
    throw InputError(fmt::format("{}: {} per-block multipliers, expected {} ({} channels x {} blocks)", who,
                                 s.multiplier.size(), channels * blocks, channels, blocks));
  for (size_t i = 0; i < s.channel_scale.size(); ++i) {
    const double c = s.channel_scale[i];
    if (!(c >= static_cast<double>(std::numeric_limits<float>::min())) ||
        !(c <= static_cast<double>(std::numeric_limits<float>::max())))
      throw InputError(fmt::format("{}: per-channel scale [{}] = {} is not a positive normal float32", who, i, c));
  }
  const int64_t top = int64_t{1} << (dbw - bw);
  for (size_t i = 0; i < s.multiplier.size(); ++i)
    if (s.multiplier[i] < 1 || s.multiplier[i] > top)
      throw InputError(fmt::format("{}: per-block multiplier [{}] = {} is outside [1, {}] (2^({}-{}))", who, i,
                                   s.multiplier[i], top, dbw, bw));
}

}  // namespace qforge::quant
