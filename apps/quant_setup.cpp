#include "apps/quant_setup.hpp"

#include "data/loader.hpp"

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
    for (const Tensor& x : calibration_batches(ds, batches, batch_size, seed)) m(std::vector<Tensor>{x});
  };
}

train::EvalResult evaluate_on(nn::Module& model, const std::shared_ptr<const data::Dataset>& ds, int64_t batch_size) {
  train::EvalOptions eo;
  eo.batch_size = batch_size;
  return train::evaluate(model, ds, eo);
}

}  // namespace qforge::apps
