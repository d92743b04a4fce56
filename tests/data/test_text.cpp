#include "data/data.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <filesystem>

using namespace qforge;
using namespace qforge::data;

TEST_CASE("text: vocabulary is the sorted distinct characters of the training split") {
  // 40 chars: the last 4 ("zzzz") are validation, so 'z' is not in the vocabulary.
  const std::string text = "hello world, hello cabbage! abcdefghzzzz";
  REQUIRE(text.size() == 40);
  TextSplits s = make_text_splits(text, 3, "t");
  CHECK(s.vocab.chars() == std::string(" !,abcdefghlorw"));
  CHECK(s.vocab.encode(' ') == 0);
  CHECK(s.vocab.encode('w') == 14);
  CHECK(s.vocab.encode('z') == 0);
  CHECK(s.vocab.decode(s.vocab.encode("hello")) == "hello");
  CHECK(s.train->tokens().size(0) == 36);
  CHECK(s.validation->tokens().size(0) == 4);
  CHECK(s.train->num_classes() == 15);
}

TEST_CASE("text: windows are non-overlapping and targets are the inputs shifted by one") {
  std::string text;
  for (int i = 0; i < 100; ++i) text.push_back(static_cast<char>('a' + i % 26));
  TextSplits s = make_text_splits(text, 8, "t");
  // 90 training chars -> (90 - 1) / 8 = 11 windows
  REQUIRE(s.train->size() == 11);
  const int64_t idx[] = {2, 0};
  Batch b = s.train->get_batch(idx, nullptr);
  CHECK(b.inputs.shape() == Shape{2, 8});
  CHECK(b.targets.shape() == Shape{2, 8});
  CHECK(s.vocab.decode(b.inputs.select(0, 0).to_vector<int32_t>()) == text.substr(16, 8));
  CHECK(s.vocab.decode(b.targets.select(0, 0).to_vector<int32_t>()) == text.substr(17, 8));
  CHECK(s.vocab.decode(b.inputs.select(0, 1).to_vector<int32_t>()) == text.substr(0, 8));
  // A validation split shorter than one window is bad input.
  CHECK_THROWS_AS(make_text_splits(text, 20, "t"), InputError);
}

TEST_CASE("text: Tiny Shakespeare loads with a 65-character vocabulary") {
  const auto dir = testing::data_dir();
  const auto file = dir / "tinyshakespeare" / "input.txt";
  if (dir.empty() || !std::filesystem::exists(file)) {
    MESSAGE("skipped: Tiny Shakespeare not found (set QFORGE_DATA)");
    return;
  }
  TextSplits s = load_text_file(file, 100);
  CHECK(s.vocab.size() == 65);
  CHECK(s.train->tokens().size(0) + s.validation->tokens().size(0) == 1115394);
  CHECK(s.validation->tokens().size(0) == 111539);
}
