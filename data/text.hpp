// Character-level text corpus for next-character prediction (char-rnn style).
//
// The text is read as bytes. The last 10% (by characters) is the validation split, the first 90% the
// training split; the vocabulary is the sorted set of distinct bytes of the *training* split (a
// validation byte never seen in training maps to token 0). Each split becomes a TextDataset of
// non-overlapping windows: example i has inputs tokens[i*T, i*T + T) and targets shifted by one,
// tokens[i*T + 1, i*T + T + 1).
#pragma once

#include "data/dataset.hpp"

#include <filesystem>
#include <string>

namespace qforge::data {

class Vocabulary {
public:
  Vocabulary() = default;
  explicit Vocabulary(const std::string& text);  // sorted distinct bytes
  // A stored vocabulary: `chars` must be strictly increasing bytes (InputError otherwise).
  static Vocabulary from_chars(const std::string& chars);
  bool contains(char c) const;
  int64_t size() const { return static_cast<int64_t>(chars_.size()); }
  int32_t encode(char c) const;  // 0 for bytes outside the vocabulary
  char decode(int32_t token) const;
  std::vector<int32_t> encode(const std::string& s) const;
  std::string decode(const std::vector<int32_t>& tokens) const;
  const std::string& chars() const { return chars_; }

private:
  std::string chars_;
  std::array<int32_t, 256> index_{};
};

class TextDataset : public Dataset {
public:
  // tokens: i32 [L] stream; windows of seq_len.
  TextDataset(Tensor tokens, int64_t seq_len, Vocabulary vocab, std::string name);
  int64_t size() const override { return num_windows_; }
  Batch get_batch(std::span<const int64_t> indices, Generator* gen) const override;
  TaskKind kind() const override { return TaskKind::language_model; }
  int64_t num_classes() const override { return vocab_.size(); }
  Shape example_shape() const override { return {seq_len_}; }
  std::string description() const override;
  const Vocabulary& vocab() const { return vocab_; }
  int64_t seq_len() const { return seq_len_; }
  const std::string& name() const { return name_; }
  const Tensor& tokens() const { return tokens_; }

private:
  Tensor tokens_;
  int64_t seq_len_;
  int64_t num_windows_;
  Vocabulary vocab_;
  std::string name_;
};

struct TextSplits {
  std::shared_ptr<TextDataset> train, validation;
  Vocabulary vocab;
};

// `ds` re-encoded with the vocabulary `to` (a model's stored vocabulary). A character outside `to` is an
// InputError naming it, unless `unknown_to_zero` (validation splits: token 0, as in training).
std::shared_ptr<TextDataset> reencode(const TextDataset& ds, const Vocabulary& to, bool unknown_to_zero);

// Splits `text` as described above. Throws InputError if a split is too short for one window.
TextSplits make_text_splits(const std::string& text, int64_t seq_len, const std::string& name);
TextSplits load_text_file(const std::filesystem::path& path, int64_t seq_len);

}  // namespace qforge::data
