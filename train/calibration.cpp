// Data-parallel calibration (calibration.hpp).
#include "train/calibration.hpp"

#include "engine/error.hpp"

#include <cstring>

namespace qforge::train {

std::vector<int64_t> calibration_shard(int64_t batches, const Communicator& comm) {
  if (comm.size() > 1 && batches < comm.size())
    throw InputError(fmt::format("{} calibration batches cannot be shared by {} ranks: give at least one per rank",
                                 batches, comm.size()));
  std::vector<int64_t> mine;
  for (int64_t i = comm.rank(); i < batches; i += comm.size()) mine.push_back(i);
  return mine;
}

bool calibration_needs_replay(const quant::StatsRecorder& recorder) {
  for (const quant::TensorStats* s : recorder.stats())
    if (s->has_histogram() || s->torch_minmax() || s->torch_moving_average() || s->torch_histogram()) return true;
  return false;
}

void merge_calibration_stats(Communicator& comm, const quant::StatsRecorder& recorder) {
  if (comm.size() == 1) return;
  // One flat buffer per rank: [count, (length, values...) per recorded TensorStats].
  const auto& stats = recorder.stats();
  std::vector<double> mine = {static_cast<double>(stats.size())};
  for (const quant::TensorStats* s : stats) {
    const std::vector<double> f = s->to_flat();
    mine.push_back(static_cast<double>(f.size()));
    mine.insert(mine.end(), f.begin(), f.end());
  }
  std::string bytes(mine.size() * sizeof(double), '\0');
  std::memcpy(bytes.data(), mine.data(), bytes.size());
  const std::vector<std::string> all = allgather_strings(comm, bytes);
  // Start from empty statistics and merge rank 0, 1, ... in order: the same result on every rank.
  std::vector<std::vector<std::vector<double>>> per_rank(all.size());
  for (size_t r = 0; r < all.size(); ++r) {
    std::vector<double> v(all[r].size() / sizeof(double));
    std::memcpy(v.data(), all[r].data(), v.size() * sizeof(double));
    QFORGE_CHECK(!v.empty() && static_cast<size_t>(v[0]) == stats.size(),
                 "calibration: rank {} observed {} statistics, rank {} observed {} (same model and data on every rank?)",
                 r, v.empty() ? 0 : static_cast<size_t>(v[0]), comm.rank(), stats.size());
    size_t off = 1;
    for (size_t k = 0; k < stats.size(); ++k) {
      const size_t n = static_cast<size_t>(v.at(off));
      per_rank[r].emplace_back(v.begin() + static_cast<std::ptrdiff_t>(off + 1),
                               v.begin() + static_cast<std::ptrdiff_t>(off + 1 + n));
      off += 1 + n;
    }
  }
  for (size_t k = 0; k < stats.size(); ++k) {
    quant::TensorStats* s = stats[k];
    s->reset();
    for (size_t r = 0; r < all.size(); ++r) s->merge_flat(per_rank[r][k]);
  }
}

}  // namespace qforge::train
