#include "data/data.hpp"

#include <doctest/doctest.h>

using namespace qforge;
using namespace qforge::data;

TEST_CASE("synthetic: the same seed gives the same bytes, another seed different ones") {
  auto a = make_synthetic_digits(64, 7);
  auto b = make_synthetic_digits(64, 7);
  auto c = make_synthetic_digits(64, 8);
  CHECK(a->images().to_vector<uint8_t>() == b->images().to_vector<uint8_t>());
  CHECK(a->labels().to_vector<int32_t>() == b->labels().to_vector<int32_t>());
  CHECK(a->images().to_vector<uint8_t>() != c->images().to_vector<uint8_t>());
  // sample i depends only on (seed, index): a later slice equals a dataset started there
  auto d = make_synthetic_digits(10, 7, 20);
  CHECK(d->images().to_vector<uint8_t>() == a->subset(20, 30)->images().to_vector<uint8_t>());
}

TEST_CASE("synthetic: images are 28x28 digits with ink, balanced labels and distinct train/test samples") {
  SyntheticSplits s = make_synthetic_splits({1000, 200, 1});
  CHECK(s.train->images().shape() == Shape{1000, 1, 28, 28});
  CHECK(s.test->size() == 200);
  std::vector<int> count(10, 0);
  for (int32_t l : s.train->labels().to_vector<int32_t>()) count.at(l)++;
  for (int k = 0; k < 10; ++k) CHECK(count[k] > 60);
  const auto px = s.train->images().to_vector<uint8_t>();
  for (int i = 0; i < 1000; i += 97) {
    int ink = 0, border = 0;
    for (int j = 0; j < 784; ++j) ink += px[i * 784 + j] > 128;
    for (int j = 0; j < 28; ++j) border += px[i * 784 + j] > 200;  // top row mostly empty
    CHECK(ink > 20);
    CHECK(ink < 400);
    CHECK(border < 14);
  }
  CHECK(s.test->images().to_vector<uint8_t>() !=
        make_synthetic_digits(200, 1, 0)->images().to_vector<uint8_t>());
}

TEST_CASE("synthetic: mean images of different digits differ (the glyphs are distinct)") {
  auto ds = make_synthetic_digits(2000, 3);
  const auto px = ds->images().to_vector<uint8_t>();
  const auto lab = ds->labels().to_vector<int32_t>();
  std::vector<std::vector<double>> mean(10, std::vector<double>(784, 0));
  std::vector<int> n(10, 0);
  for (int i = 0; i < 2000; ++i) {
    n[lab[i]]++;
    for (int j = 0; j < 784; ++j) mean[lab[i]][j] += px[i * 784 + j];
  }
  for (int a = 0; a < 10; ++a)
    for (int b = a + 1; b < 10; ++b) {
      double d = 0;
      for (int j = 0; j < 784; ++j) d += std::abs(mean[a][j] / n[a] - mean[b][j] / n[b]);
      INFO(a, " vs ", b);
      CHECK(d / 784 > 3.0);  // mean absolute difference in grey levels
    }
}
