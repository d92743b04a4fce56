// libFuzzer target: text corpora (data::load_text_file; the first byte picks the window length) and stored
// vocabularies (Vocabulary::from_chars, reencode).
#include "data/text.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::int64_t seq_len = 1 + data[0] % 16;
  const auto path = qforge::fuzz::scratch_file("corpus.txt", data + 1, size - 1);
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto splits = qforge::data::load_text_file(path, seq_len);
    const auto vocab = qforge::data::Vocabulary::from_chars(splits.vocab.chars());
    qforge::data::reencode(*splits.validation, vocab, true);
  });
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto v = qforge::data::Vocabulary::from_chars(std::string(qforge::fuzz::as_text(data + 1, size - 1)));
    for (std::int64_t t = 0; t < v.size(); ++t) v.decode(static_cast<std::int32_t>(t));
  });
  return 0;
}
