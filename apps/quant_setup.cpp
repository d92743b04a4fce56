#include "apps/quant_setup.hpp"

#include "data/loader.hpp"
#include "train/calibration.hpp"

namespace qforge::apps {

std::vector<Tensor> sample_batch(const std::shared_ptr<const data::Dataset>& ds, int64_t batch) {
  std::vector<int64_t> idx;
  for (int64_t i = 0; i < std::min<int64_t>(batch, ds->size()); ++i) idx.push_back(i);
  QFORGE_CHECK(!idx.empty(), "dataset {} is empty", ds->description());
  return {ds->get_batch(idx, nullptr).inputs};
}

std::vector<Tensor> calibration_batches(const std::shared_ptr<const data::Dataset>& ds, int64_t batches,
                                        int64_t batch_size, uint64_t seed) {
  data::LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.shuffle = true;
  lo.augment = false;
  lo.prefetch = false;
  lo.seed = seed ^ 0xCA11B;
  data::DataLoader loader(ds, lo);
  loader.start_epoch(0);
  std::vector<Tensor> out;
  for (int64_t i = 0; i < batches; ++i) {
    auto b = loader.next();
    if (!b) break;
    out.push_back(b->inputs);
  }
  return out;
}

std::function<void(nn::Module&)> calibration_pass(const std::shared_ptr<const data::Dataset>& ds, int64_t batches,
                                                  int64_t batch_size, uint64_t seed) {
  return [ds, batches, batch_size, seed](nn::Module& m) {
    const std::vector<Tensor> all = calibration_batches(ds, batches, batch_size, seed);
    const train::CommunicatorPtr comm = train::world_communicator();
    if (comm->size() == 1) {
      for (const Tensor& x : all) m(std::vector<Tensor>{x});
      return;
    }
    // Under mpirun: this rank's shard of the batches, then every rank's statistics merged in rank order
    // (train/calibration.hpp), so every rank computes the encodings of one pass over all the batches.
    // Histogram statistics (every scheme but tf) depend on the order of the batches (first-batch range,
    // growth, moving averages): a merge cannot reproduce them, so those are recomputed over every batch in
    // order on every rank instead -- the same encodings as one process, without the calibration speed-up.
    quant::StatsRecorder recorder;
    for (int64_t i : train::calibration_shard(static_cast<int64_t>(all.size()), *comm)) m(std::vector<Tensor>{all[i]});
    if (!train::calibration_needs_replay(recorder)) {
      train::merge_calibration_stats(*comm, recorder);
      return;
    }
    recorder.restore_initial();
    for (const Tensor& x : all) m(std::vector<Tensor>{x});
  };
}

train::EvalResult evaluate_on(nn::Module& model, const std::shared_ptr<const data::Dataset>& ds, int64_t batch_size) {
  train::EvalOptions eo;
  eo.batch_size = batch_size;
  return train::evaluate(model, ds, eo);
}

}  // namespace qforge::apps
