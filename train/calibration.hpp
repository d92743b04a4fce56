// Data-parallel calibration: observer statistics merged across ranks (quant/ is below train/, so the
// exchange lives here; quant/analyzer.hpp only exports and merges flat buffers).
//
//   quant::StatsRecorder rec;                 // alive during the calibration pass
//   sim.compute_encodings([&](nn::Module& m) {
//     for (batch b of this rank's shard) m(b);
//     merge_calibration_stats(comm, rec);     // before compute_encodings turns stats into encodings
//   });
//
// Each rank calibrates on its shard of the calibration batches (batch i goes to rank i mod N), then every
// rank receives every rank's statistics and merges them in rank order: every rank holds the same merged
// statistics and computes the same encodings. min/max merge exactly, so the tf scheme gives the
// encodings of one process over all the batches; histogram schemes would merge only approximately
// (re-binning, quant/analyzer.cpp Note [Merging stats]: measured up to 6% in scale on mnist-cnn), so the
// CLI recomputes those over all batches on every rank (calibration_needs_replay). Every rank must observe the same quantizers in the same order (same model, and at
// least one calibration batch per rank: InputError otherwise, checked by calibration_shard).
#pragma once

#include "quant/analyzer.hpp"
#include "train/communicator.hpp"

#include <cstdint>
#include <vector>

namespace qforge::train {

// The indices of the calibration batches in [0, batches) this rank observes (i mod size == rank).
std::vector<int64_t> calibration_shard(int64_t batches, const Communicator& comm);

void merge_calibration_stats(Communicator& comm, const quant::StatsRecorder& recorder);
// True when the recorded statistics keep histograms or feed a torch observer (every scheme but tf: state
// that depends on the order of the batches, e.g. moving averages): their merge is not exact
// (quant/analyzer.cpp Note [Merging stats]), so callers that need one process's encodings replay every
// batch in order on every rank instead (apps/quant_setup.cpp). The same answer on every rank.
bool calibration_needs_replay(const quant::StatsRecorder& recorder);

}  // namespace qforge::train
