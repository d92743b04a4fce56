// Blockwise / LPBQ weight quantizers in a QuantSim. See blockwise_sim.hpp.
#include "quant/blockwise_sim.hpp"

#include "engine/autograd.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

namespace qforge::quant {

namespace {

std::vector<std::string> split_keys(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string k;
  while (std::getline(ss, k, ','))
    if (!k.empty()) out.push_back(k);
  return out;
}

// The weight quantizers a blockwise conversion concerns, with the weight tensors each one quantizes.
struct WeightQ {
  const QuantizerInfo* info;
  std::vector<Tensor> weights;
};

std::vector<WeightQ> weight_quantizers(QuantSim& sim, bool recurrent) {
  std::map<std::string, std::string> type_of;  // module prefix -> module type
  for (const auto& n : sim.graph().nodes()) type_of.emplace(n.name.empty() ? n.type : n.name, n.type);
  std::map<std::string, Tensor> params;
  for (auto& [k, t] : sim.model().named_parameters()) params[k] = t;
  std::vector<WeightQ> out;
  for (const auto& i : sim.quantizers()) {
    if (i.kind != "param") continue;
    const auto t = type_of.find(i.module);
    if (t == type_of.end()) continue;
    const bool dense = (t->second == "Conv2d" || t->second == "Linear") && i.name == i.module + ".weight";
    const std::string tail = i.name.substr(std::min(i.name.size(), i.module.size() + 1));
    const bool rnn = recurrent && (t->second == "LSTM" || t->second == "GRU" || t->second == "RNN") &&
                     (tail.rfind("W_l", 0) == 0 || tail.rfind("R_l", 0) == 0);
    if (!dense && !rnn) continue;
    WeightQ w{&i, {}};
    for (const auto& k : split_keys(i.export_key)) {
      auto it = params.find(k);
      QFORGE_CHECK(it != params.end(), "blockwise: quantizer {} names parameter {}, which the model does not have", i.name, k);
      w.weights.push_back(it->second);
    }
    out.push_back(std::move(w));
  }
  return out;
}

bool calibrate(Quantizer& q, const std::vector<Tensor>& weights) {
  if (!q.enabled()) return false;
  NoGradGuard ng;
  const bool was_frozen = q.frozen();
  q.unfreeze();
  q.start_calibration();
  for (const Tensor& w : weights) q.forward(w.detach());
  const bool ok = q.compute_encoding();
  if (was_frozen) q.freeze();
  return ok;
}

}  // namespace

BlockwiseResult apply_blockwise(QuantSim& sim, const BlockwiseOptions& o) {
  if (o.block_size <= 0) throw InputError(fmt::format("blockwise: block size {} must be positive", o.block_size));
  if (o.lpbq && (o.decompressed_bw < 2 || o.decompressed_bw > 16))
    throw InputError(fmt::format("LPBQ: decompressed bitwidth {} outside 2..16", o.decompressed_bw));
  BlockwiseResult r;
  const auto ws = weight_quantizers(sim, o.recurrent);
  // Check every layer first: nothing changes when one of them refuses.
  std::vector<const WeightQ*> todo;
  for (const auto& w : ws) {
    const Shape& shape = w.weights.front().shape();
    const std::string who = w.weights.size() == 1 ? w.info->export_key : w.info->name;
    if (shape.size() >= 2 && shape[1] < o.block_size) {
      r.skipped.push_back(fmt::format("{}: {} input channels, fewer than one block of {} (kept per-channel)", who,
                                      shape[1], o.block_size));
      continue;
    }
    blocks_per_channel(shape, o.block_size, who);  // InputError unless the block size divides
    const QuantizerSettings& s = w.info->quantizer->settings();
    if (o.lpbq && (!s.grid.symmetric || s.grid.is_float))
      throw InputError(fmt::format("LPBQ: {} has an asymmetric or float grid; LPBQ weights are symmetric integers "
                                   "(use a config with symmetric parameters)",
                                   who));
    if (o.lpbq && s.grid.bitwidth >= o.decompressed_bw)
      throw InputError(fmt::format("LPBQ: {} has {}-bit weights, not fewer than the {}-bit decompressed grid", who,
                                   s.grid.bitwidth, o.decompressed_bw));
    todo.push_back(&w);
  }
  for (const WeightQ* w : todo) {
    Quantizer& q = *w->info->quantizer;
    QuantizerSettings s = q.settings();
    s.block.block_size = o.block_size;
    s.block.decompressed_bw = o.lpbq ? o.decompressed_bw : 0;
    q.set_settings(s);
    calibrate(q, w->weights);
    r.converted.push_back(w->info->name);
  }
  return r;
}

int recalibrate_blockwise(QuantSim& sim) {
  int n = 0;
  for (const auto& w : weight_quantizers(sim, true))
    if (w.info->quantizer->settings().block.blockwise()) n += calibrate(*w.info->quantizer, w.weights) ? 1 : 0;
  return n;
}

void check_block_entry(const std::string& key, const Shape& shape, size_t count, const BlockEntry& b) {
  if (shape.empty()) throw InputError(fmt::format("load_encodings: {}: a blockwise entry for a tensor without shape", key));
  const int64_t nb = blocks_per_channel(shape, b.spec.block_size, "load_encodings: " + key);
  const int64_t expect = shape[0] * nb;
  if (static_cast<int64_t>(count) != expect)
    throw InputError(fmt::format("load_encodings: {}: mismatched block counts: {} block encodings, but shape {} with "
                                 "block size {} has {} ({} channels x {} blocks)",
                                 key, count, shape_str(shape), b.spec.block_size, expect, shape[0], nb));
  if (b.spec.lpbq() && static_cast<int64_t>(b.lpbq.channel_scale.size()) != shape[0])
    throw InputError(fmt::format("load_encodings: {}: {} LPBQ per-channel scales for {} output channels", key,
                                 b.lpbq.channel_scale.size(), shape[0]));
}

nlohmann::json block_scale_stats(const QuantSim& sim) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& i : sim.quantizers()) {
    const Quantizer& q = *i.quantizer;
    const BlockSpec& b = q.settings().block;
    if (!b.blockwise() || !q.has_encoding()) continue;
    const auto& enc = q.encodings();
    std::vector<double> s;
    for (const auto& e : enc) s.push_back(e.delta);
    nlohmann::json j = {{"name", i.name}, {"params", i.export_key}, {"block_size", b.block_size},
                        {"blocks", s.size()}, {"lpbq", b.lpbq()}};
    int64_t channels = 0;
    if (b.lpbq()) {
      const LpbqScales& l = q.lpbq();
      channels = static_cast<int64_t>(l.channel_scale.size());
      std::vector<int64_t> hist(static_cast<size_t>(1) << (b.decompressed_bw - q.settings().grid.bitwidth), 0);
      for (int32_t m : l.multiplier)
        if (m >= 1 && static_cast<size_t>(m) <= hist.size()) ++hist[m - 1];
      j["decompressed_bw"] = b.decompressed_bw;
      j["multiplier_histogram"] = hist;
    } else if (q.blocks_per_row() > 0) {
      channels = static_cast<int64_t>(s.size()) / q.blocks_per_row();
    }
    std::vector<double> sorted = s;
    std::sort(sorted.begin(), sorted.end());
    j["scale_min"] = sorted.front();
    j["scale_median"] = sorted[sorted.size() / 2];
    j["scale_max"] = sorted.back();
    if (channels > 0 && s.size() % static_cast<size_t>(channels) == 0) {
      const size_t nb = s.size() / static_cast<size_t>(channels);
      double spread = 0;
      for (int64_t c = 0; c < channels; ++c) {
        const auto first = s.begin() + static_cast<std::ptrdiff_t>(c * nb);
        const auto [mn, mx] = std::minmax_element(first, first + static_cast<std::ptrdiff_t>(nb));
        spread += *mx / *mn;
      }
      j["channels"] = channels;
      j["mean_channel_spread"] = spread / static_cast<double>(channels);  // mean of max/min block scale
    }
    out.push_back(j);
  }
  return out;
}

}  // namespace qforge::quant
