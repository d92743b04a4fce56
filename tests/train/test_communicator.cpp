// The single-process communicator, batch sharding, the calibration-statistics merge and the trainer's
// one-rank path (the MPI communicator is exercised by tests/scripts/test_mpi.sh under mpirun).
#include "data/data.hpp"
#include "nn/zoo.hpp"
#include "quant/analyzer.hpp"
#include "train/calibration.hpp"
#include "train/communicator.hpp"
#include "train/data_parallel.hpp"
#include "train/trainer.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <random>

using namespace qforge;
using namespace qforge::train;

TEST_CASE("communicator: the local communicator is rank 0 of 1 and its collectives are the identity") {
  CommunicatorPtr c = local_communicator();
  CHECK(c->rank() == 0);
  CHECK(c->size() == 1);
  CHECK(std::string(c->backend()) == "local");
  std::vector<float> f = {1.5f, -2.0f, 3.25f};
  c->allreduce_sum(f.data(), f.size());
  CHECK(f == std::vector<float>{1.5f, -2.0f, 3.25f});
  std::vector<double> d = {0.1, 0.2};
  c->allreduce_sum(d.data(), d.size());
  CHECK(d == std::vector<double>{0.1, 0.2});
  int x = 7;
  c->broadcast(&x, sizeof x, 0);
  CHECK(x == 7);
  CHECK_THROWS_AS(c->broadcast(&x, sizeof x, 1), Error);
  c->barrier();
  std::string s = "abc";
  broadcast_string(*c, s);
  CHECK(s == "abc");
  CHECK(allgather_strings(*c, "mine") == std::vector<std::string>{"mine"});
}

TEST_CASE("communicator: without a launcher the world is local, whatever the build") {
  // The test runner is not started by mpirun (no OMPI_COMM_WORLD_SIZE / PMI_SIZE).
  if (launcher_world_size() == 1 && std::getenv("OMPI_COMM_WORLD_SIZE") == nullptr) {
    CHECK(world_communicator()->size() == 1);
    CHECK(std::string(world_communicator()->backend()) == "local");
  }
}

TEST_CASE("data parallel: shards of a global batch are contiguous, cover it once and differ by at most one row") {
  for (int64_t rows : {1, 2, 7, 64, 65}) {
    for (int size : {1, 2, 3, 8}) {
      int64_t next = 0, lo = rows, hi = 0;
      for (int r = 0; r < size; ++r) {
        const auto [first, count] = shard_rows(rows, r, size);
        CHECK(first == next);
        next = first + count;
        lo = std::min(lo, count);
        hi = std::max(hi, count);
      }
      CHECK(next == rows);
      CHECK(hi - lo <= 1);
    }
  }
  data::Batch b{Tensor::arange(0, 10).reshape({5, 2}), Tensor::arange(0, 5, 1, DType::i32)};
  const data::Batch s1 = shard_batch(b, 1, 2);  // rows [2, 5)
  CHECK(s1.size() == 3);
  CHECK(s1.targets.to_vector<int32_t>() == std::vector<int32_t>{2, 3, 4});
  CHECK(s1.inputs.to_vector<float>() == std::vector<float>{4, 5, 6, 7, 8, 9});
}

TEST_CASE("calibration merge: min/max of merged statistics equal one pass over all batches; histograms keep their mass") {
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.5f, 2.0f);
  std::vector<std::vector<float>> batches(6, std::vector<float>(500));
  for (auto& b : batches)
    for (float& v : b) v = nd(rng);
  quant::TensorStats one(true), a(true), b(true);
  for (size_t i = 0; i < batches.size(); ++i) {
    one.update(batches[i].data(), 500);
    (i % 2 == 0 ? a : b).update(batches[i].data(), 500);
  }
  quant::TensorStats merged(true);
  merged.merge_flat(a.to_flat());
  merged.merge_flat(b.to_flat());
  CHECK(merged.min() == one.min());
  CHECK(merged.max() == one.max());
  CHECK(merged.hist_batches() == one.hist_batches());
  double mass = 0;
  for (double p : merged.pdf()) mass += p;
  CHECK(mass == doctest::Approx(1.0).epsilon(1e-9));
  // tf encodings (from min/max) are therefore identical
  const quant::GridSpec grid{};
  CHECK(quant::analyze(merged, quant::QuantScheme::tf, grid).delta == quant::analyze(one, quant::QuantScheme::tf, grid).delta);
  // A merge into an empty TensorStats is a copy; a malformed buffer is an Error.
  quant::TensorStats copy(true);
  copy.merge_flat(one.to_flat());
  CHECK(copy.to_flat() == one.to_flat());
  CHECK_THROWS_AS(copy.merge_flat({1.0, 2.0}), Error);
}

TEST_CASE("calibration merge: a recorder lists each updated statistics once, in first-update order") {
  quant::TensorStats s1, s2;
  const float x[3] = {1, 2, 3};
  quant::StatsRecorder rec;
  s2.update(x, 3);
  s1.update(x, 3);
  s2.update(x, 3);
  REQUIRE(rec.stats().size() == 2);
  CHECK(rec.stats()[0] == &s2);
  CHECK(rec.stats()[1] == &s1);
  CHECK_THROWS_AS(quant::StatsRecorder(), Error);  // one at a time
  CommunicatorPtr c = local_communicator();
  merge_calibration_stats(*c, rec);  // one rank: nothing changes
  CHECK(s2.max() == 3);
  CHECK(calibration_shard(3, *c) == std::vector<int64_t>{0, 1, 2});
}

TEST_CASE("trainer: an explicit one-rank communicator gives the bytes of the plain trainer") {
  auto data = data::load_data("synthetic:256", {.seed = 2});
  auto run = [&](bool with_comm) {
    auto model = nn::build_zoo_model("mlp", {}, {.seed = 4});
    TrainConfig c;
    c.epochs = 1;
    c.batch_size = 24;  // 256*0.8 is not a multiple: a remainder batch
    c.optimizer = {.type = "sgd", .lr = 0.05, .momentum = 0.9};
    c.progress = ProgressMode::none;
    if (with_comm) c.comm = local_communicator();
    Trainer t(model, data.train, data.test, c);
    t.fit();
    std::vector<float> w;
    for (auto& [n, p] : model->state_dict()) {
      auto v = p.to_vector<float>();
      w.insert(w.end(), v.begin(), v.end());
    }
    return w;
  };
  CHECK(run(true) == run(false));
}
