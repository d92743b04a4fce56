#include "data/text.hpp"

#include "data/io_util.hpp"

#include <algorithm>

namespace qforge::data {

Vocabulary::Vocabulary(const std::string& text) {
  std::array<bool, 256> seen{};
  for (char c : text) seen[static_cast<uint8_t>(c)] = true;
  for (int b = 0; b < 256; ++b)
    if (seen[b]) {
      index_[b] = static_cast<int32_t>(chars_.size());
      chars_.push_back(static_cast<char>(b));
    }
}

Vocabulary Vocabulary::from_chars(const std::string& chars) {
  for (size_t i = 1; i < chars.size(); ++i)
    if (static_cast<uint8_t>(chars[i - 1]) >= static_cast<uint8_t>(chars[i]))
      throw InputError("vocabulary: characters must be distinct and in increasing byte order");
  if (chars.empty()) throw InputError("vocabulary: empty");
  return Vocabulary(chars);
}

bool Vocabulary::contains(char c) const {
  const int32_t i = index_[static_cast<uint8_t>(c)];
  return i < size() && chars_[i] == c;
}

int32_t Vocabulary::encode(char c) const { return index_[static_cast<uint8_t>(c)]; }

char Vocabulary::decode(int32_t token) const {
  QFORGE_CHECK(token >= 0 && token < size(), "Vocabulary::decode: token {} out of range [0, {})", token, size());
  return chars_[token];
}

std::vector<int32_t> Vocabulary::encode(const std::string& s) const {
  std::vector<int32_t> out(s.size());
  for (size_t i = 0; i < s.size(); ++i) out[i] = encode(s[i]);
  return out;
}

std::string Vocabulary::decode(const std::vector<int32_t>& tokens) const {
  std::string s;
  s.reserve(tokens.size());
  for (int32_t t : tokens) s.push_back(decode(t));
  return s;
}

TextDataset::TextDataset(Tensor tokens, int64_t seq_len, Vocabulary vocab, std::string name)
    : tokens_(std::move(tokens)), seq_len_(seq_len), vocab_(std::move(vocab)), name_(std::move(name)) {
  QFORGE_CHECK(tokens_.dtype() == DType::i32 && tokens_.dim() == 1 && tokens_.is_contiguous(),
               "TextDataset {}: tokens must be a contiguous i32 [L] stream, got {} {}", name_,
               dtype_name(tokens_.dtype()), shape_str(tokens_.shape()));
  QFORGE_CHECK(seq_len_ > 0, "TextDataset {}: sequence length must be positive, got {}", name_, seq_len_);
  num_windows_ = (tokens_.size(0) - 1) / seq_len_;
  if (num_windows_ < 1)
    throw InputError(fmt::format("text data {}: {} characters are too few for one window of {} (+1)", name_,
                                 tokens_.size(0), seq_len_));
}

std::string TextDataset::description() const {
  return fmt::format("{}: {} characters, {} windows of {}, vocabulary {}", name_, tokens_.size(0), num_windows_,
                     seq_len_, vocab_.size());
}

Batch TextDataset::get_batch(std::span<const int64_t> indices, Generator*) const {
  const int64_t b = static_cast<int64_t>(indices.size()), t = seq_len_;
  Tensor x = Tensor::uninitialized({b, t}, DType::i32);  // fully written below
  Tensor y = Tensor::uninitialized({b, t}, DType::i32);
  const int32_t* s = tokens_.data<int32_t>();
  int32_t* xo = x.data<int32_t>();
  int32_t* yo = y.data<int32_t>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t k = indices[i];
    QFORGE_CHECK(0 <= k && k < num_windows_, "TextDataset {}: window {} out of range [0, {})", name_, k, num_windows_);
    std::copy(s + k * t, s + k * t + t, xo + i * t);
    std::copy(s + k * t + 1, s + k * t + t + 1, yo + i * t);
  }
  return {x, y};
}

std::shared_ptr<TextDataset> reencode(const TextDataset& ds, const Vocabulary& to, bool unknown_to_zero) {
  const Vocabulary& from = ds.vocab();
  std::array<int32_t, 256> map{};
  std::array<bool, 256> missing{};
  for (int32_t t = 0; t < from.size(); ++t) {
    const char c = from.decode(t);
    missing[t] = !to.contains(c);
    map[t] = to.encode(c);
  }
  const Tensor& src = ds.tokens();
  std::vector<int32_t> out(static_cast<size_t>(src.numel()));
  const int32_t* s = src.data<int32_t>();
  int64_t unknown = 0;
  int32_t first = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    const int32_t t = s[i];
    QFORGE_CHECK(t >= 0 && t < from.size(), "reencode: token {} out of range", t);
    if (missing[t]) {
      ++unknown;
      if (first < 0) first = t;
    }
    out[i] = map[t];
  }
  if (unknown > 0 && !unknown_to_zero) {
    const auto b = static_cast<uint8_t>(from.decode(first));
    throw InputError(fmt::format("{}: {} characters are outside the model's vocabulary of {} (the first: byte {}{})",
                                 ds.description(), unknown, to.size(), b,
                                 b >= 32 && b < 127 ? fmt::format(" '{}'", static_cast<char>(b)) : std::string()));
  }
  return std::make_shared<TextDataset>(Tensor::from_vector(out, {static_cast<int64_t>(out.size())}), ds.seq_len(), to, ds.name());
}

TextSplits make_text_splits(const std::string& text, int64_t seq_len, const std::string& name) {
  const size_t n_val = text.size() / 10;
  const std::string train_text = text.substr(0, text.size() - n_val);
  const std::string val_text = text.substr(text.size() - n_val);
  TextSplits out;
  out.vocab = Vocabulary(train_text);
  const auto to_tensor = [&](const std::string& s) {
    const std::vector<int32_t> v = out.vocab.encode(s);
    return Tensor::from_vector(v, {static_cast<int64_t>(v.size())});
  };
  out.train = std::make_shared<TextDataset>(to_tensor(train_text), seq_len, out.vocab, name + " (train)");
  out.validation = std::make_shared<TextDataset>(to_tensor(val_text), seq_len, out.vocab, name + " (validation)");
  return out;
}

TextSplits load_text_file(const std::filesystem::path& path, int64_t seq_len) {
  std::error_code ec;
  const auto st = std::filesystem::status(path, ec);
  if (std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
    throw InputError(fmt::format("text data {}: not a regular file", path.string()));
  const std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
  if (bytes.empty()) throw InputError(fmt::format("text data {} is empty", path.string()));
  return make_text_splits(std::string(bytes.begin(), bytes.end()), seq_len, path.filename().string());
}

}  // namespace qforge::data
