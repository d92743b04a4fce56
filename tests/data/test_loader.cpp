#include "data/data.hpp"

#include <doctest/doctest.h>

#include <set>

using namespace qforge;
using namespace qforge::data;

namespace {

std::shared_ptr<ImageDataset> numbered(int64_t n) {
  // image i: all pixels i; label i % 10
  Tensor img = Tensor::empty({n, 1, 2, 2}, DType::u8);
  Tensor lab = Tensor::empty({n}, DType::i32);
  for (int64_t i = 0; i < n; ++i) {
    for (int j = 0; j < 4; ++j) img.data<uint8_t>()[i * 4 + j] = static_cast<uint8_t>(i);
    lab.data<int32_t>()[i] = static_cast<int32_t>(i % 10);
  }
  return std::make_shared<ImageDataset>(img, lab, 10, Normalization::none(), "numbered");
}

std::vector<int> ids(const Batch& b) {
  std::vector<int> out;
  for (int64_t i = 0; i < b.size(); ++i) out.push_back(static_cast<int>(std::lround(b.inputs.at({i, 0, 0, 0}) * 255)));
  return out;
}

std::vector<std::vector<int>> epoch_ids(DataLoader& l, int64_t epoch, int64_t start = 0) {
  std::vector<std::vector<int>> out;
  l.start_epoch(epoch, start);
  while (auto b = l.next()) out.push_back(ids(*b));
  return out;
}

}  // namespace

TEST_CASE("loader: batches cover every example once per epoch; the last batch is partial unless drop_last") {
  auto ds = numbered(23);
  DataLoader l(ds, {.batch_size = 5, .seed = 1});
  CHECK(l.num_batches() == 5);
  auto e = epoch_ids(l, 0);
  REQUIRE(e.size() == 5);
  CHECK(e.back().size() == 3);
  std::multiset<int> all;
  for (auto& b : e) all.insert(b.begin(), b.end());
  CHECK(all.size() == 23);
  CHECK(std::set<int>(all.begin(), all.end()).size() == 23);
  DataLoader ld(ds, {.batch_size = 5, .drop_last = true, .seed = 1});
  CHECK(ld.num_batches() == 4);
  CHECK(epoch_ids(ld, 0).size() == 4);
}

TEST_CASE("loader: shuffling is seeded per epoch; no shuffle keeps the order") {
  auto ds = numbered(40);
  DataLoader a(ds, {.batch_size = 8, .seed = 1}), b(ds, {.batch_size = 8, .seed = 1}), c(ds, {.batch_size = 8, .seed = 2});
  CHECK(epoch_ids(a, 0) == epoch_ids(b, 0));
  CHECK(epoch_ids(a, 0) != epoch_ids(a, 1));
  CHECK(epoch_ids(a, 0) != epoch_ids(c, 0));
  DataLoader s(ds, {.batch_size = 8, .shuffle = false});
  auto e = epoch_ids(s, 3);
  CHECK(e[1] == std::vector<int>{8, 9, 10, 11, 12, 13, 14, 15});
}

TEST_CASE("loader: prefetching yields the same batches as synchronous loading, also with augmentation") {
  auto base = make_synthetic_digits(100, 4);
  base->set_augment({2, true});
  for (int rep = 0; rep < 3; ++rep) {
    DataLoader p(base, {.batch_size = 16, .prefetch = true, .prefetch_depth = 1 + rep, .seed = 9});
    DataLoader q(base, {.batch_size = 16, .prefetch = false, .seed = 9});
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      p.start_epoch(epoch);
      q.start_epoch(epoch);
      int n = 0;
      while (auto bp = p.next()) {
        auto bq = q.next();
        REQUIRE(bq.has_value());
        CHECK(bp->inputs.to_vector<float>() == bq->inputs.to_vector<float>());
        CHECK(bp->targets.to_vector<int32_t>() == bq->targets.to_vector<int32_t>());
        CHECK(bp->inputs.to_vector<float>() == p.batch(epoch, n).inputs.to_vector<float>());
        ++n;
      }
      CHECK_FALSE(q.next().has_value());
      CHECK(n == 7);
    }
  }
}

TEST_CASE("loader: augmentation changes the pixels only when enabled, deterministically") {
  auto base = make_synthetic_digits(32, 4);
  const auto plain = DataLoader(base, {.batch_size = 32, .shuffle = false}).batch(0, 0).inputs.to_vector<float>();
  base->set_augment({2, true});
  DataLoader aug(base, {.batch_size = 32, .shuffle = false, .seed = 1});
  DataLoader off(base, {.batch_size = 32, .shuffle = false, .augment = false});
  CHECK(plain == off.batch(0, 0).inputs.to_vector<float>());
  CHECK(plain != aug.batch(0, 0).inputs.to_vector<float>());
  CHECK(aug.batch(0, 0).inputs.to_vector<float>() == aug.batch(0, 0).inputs.to_vector<float>());
  CHECK(aug.batch(0, 0).inputs.to_vector<float>() != aug.batch(1, 0).inputs.to_vector<float>());
}

TEST_CASE("loader: resuming at a batch continues the epoch exactly") {
  auto ds = numbered(50);
  DataLoader l(ds, {.batch_size = 7, .seed = 5});
  auto full = epoch_ids(l, 2);
  auto tail = epoch_ids(l, 2, 3);
  REQUIRE(tail.size() == full.size() - 3);
  for (size_t i = 0; i < tail.size(); ++i) CHECK(tail[i] == full[i + 3]);
  // abandoning an epoch midway and starting another is fine
  l.start_epoch(0);
  l.next();
  CHECK(epoch_ids(l, 2) == full);
}

TEST_CASE("loader: the sequence view turns [B, 1, H, W] into [B, H, W]; bad options are refused") {
  auto ds = make_synthetic_digits(10, 1);
  DataLoader l(ds, {.batch_size = 4, .as_sequence = true});
  CHECK(l.batch(0, 0).inputs.shape() == Shape{4, 28, 28});
  CHECK_THROWS_AS(DataLoader(ds, {.batch_size = 0}), InputError);
  CHECK_THROWS_AS(DataLoader(ds, {.batch_size = 20, .drop_last = true}), InputError);
}
