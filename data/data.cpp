#include "data/data.hpp"

#include <cstdlib>

namespace qforge::data {

namespace fs = std::filesystem;

fs::path default_data_dir() {
  if (const char* d = std::getenv("QFORGE_DATA"); d != nullptr && *d != 0) return d;
  for (const fs::path& p : {fs::path("..") / "shared" / "data", fs::path("..") / ".." / "shared" / "data"}) {
    std::error_code ec;
    if (fs::is_directory(p, ec)) return fs::canonical(p, ec);
  }
  return {};
}

namespace {

fs::path resolve(const std::string& arg, const char* kind, const fs::path& default_rel) {
  if (!arg.empty()) return arg;
  const fs::path base = default_data_dir();
  if (base.empty())
    throw InputError(fmt::format("data '{}' needs a path ('{}:PATH'): no data directory found (set QFORGE_DATA)",
                                 kind, kind));
  return base / default_rel;
}

}  // namespace

DataSplits load_data(const std::string& spec, const DataOptions& opt) {
  const size_t colon = spec.find(':');
  const std::string kind = spec.substr(0, colon);
  const std::string arg = colon == std::string::npos ? "" : spec.substr(colon + 1);
  DataSplits out;
  out.kind = kind;
  out.spec = spec;
  if (kind == "synthetic") {
    SyntheticOptions so{opt.synthetic_train, opt.synthetic_test, opt.seed};
    if (!arg.empty()) {
      char* end = nullptr;
      const long long n = std::strtoll(arg.c_str(), &end, 10);
      if (end == arg.c_str() || *end != 0 || n < 10)
        throw InputError(fmt::format("data spec '{}': 'synthetic:N' needs an integer N >= 10", spec));
      so.train_size = n;
      so.test_size = std::max<int64_t>(10, n / 4);
    }
    auto s = make_synthetic_splits(so);
    out.train = s.train;
    out.test = s.test;
  } else if (kind == "mnist" || kind == "fashion-mnist" || kind == "kmnist" || kind == "idx") {
    auto s = load_mnist_dir(resolve(arg, kind.c_str(), "mnist"));
    out.train = s.train;
    out.test = s.test;
  } else if (kind == "cifar10") {
    auto s = load_cifar10_dir(resolve(arg, "cifar10", "cifar10"));
    out.train = s.train;
    out.test = s.test;
  } else if (kind == "text") {
    if (opt.seq_len <= 0) throw InputError(fmt::format("text data: sequence length must be positive, got {}", opt.seq_len));
    auto s = load_text_file(resolve(arg, "text", fs::path("tinyshakespeare") / "input.txt"), opt.seq_len);
    out.train = s.train;
    out.test = s.validation;
    out.vocab = s.vocab;
  } else if (kind == "tensors") {
    if (arg.empty()) throw InputError(fmt::format("data spec '{}': 'tensors:FILE' needs a .safetensors or .npz file", spec));
    const fs::path file = arg;
    if (file.extension() != ".safetensors" && file.extension() != ".npz")
      throw InputError(fmt::format("data spec '{}': expected a .safetensors or .npz file", spec));
    auto s = load_tensor_splits(file);
    out.train = s.train;
    out.test = s.test;
  } else {
    throw InputError(fmt::format(
        "unknown data spec '{}' (expected synthetic, synthetic:N, mnist:DIR, cifar10:DIR, text:FILE or tensors:FILE)",
        spec));
  }
  return out;
}

}  // namespace qforge::data
