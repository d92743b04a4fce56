#include "data/idx.hpp"

#include "data/io_util.hpp"

#include <algorithm>
#include <cstring>

namespace qforge::data {

namespace fs = std::filesystem;

namespace {
constexpr uint64_t kMaxIdxElements = uint64_t{1} << 34;
}  // namespace

Tensor read_idx(const fs::path& path) {
  const std::vector<uint8_t> bytes = read_file_maybe_gzip(path);
  const auto fail = [&](const std::string& why) {
    return InputError(fmt::format("IDX file {}: {}", path.string(), why));
  };
  if (bytes.size() < 4) throw fail(fmt::format("too short for an IDX header ({} bytes)", bytes.size()));
  if (bytes[0] != 0 || bytes[1] != 0)
    throw fail(fmt::format("bad magic {:02x} {:02x} {:02x} {:02x} (not an IDX file)", bytes[0], bytes[1], bytes[2],
                           bytes[3]));
  if (bytes[2] != 0x08) throw fail(fmt::format("element type 0x{:02x} is not supported (only u8, 0x08)", bytes[2]));
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > 4) throw fail(fmt::format("{} dimensions (expected 1 to 4)", ndim));
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() < header) throw fail("truncated header");
  Shape shape;
  // Overflow-checked: dimensions are u32, so an unchecked product of four wraps past 2^64. The product of
  // the non-zero dimensions is bounded too (a zero dimension does not make [0, 2^32, 2^32, 2^32] safe to
  // describe as a tensor: its strides would overflow).
  uint64_t count = 1, nonzero = 1;
  for (int d = 0; d < ndim; ++d) {
    const uint8_t* p = bytes.data() + 4 + 4 * d;
    const uint32_t v = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    shape.push_back(static_cast<int64_t>(v));
    count = uint64_t{v} * std::min(count, kMaxIdxElements + 1);  // ≤ 2^32 · (2^34 + 1): no overflow
    if (v != 0) nonzero = uint64_t{v} * std::min(nonzero, kMaxIdxElements + 1);
    if (count > kMaxIdxElements || nonzero > kMaxIdxElements)
      throw fail(fmt::format("implausible dimensions {}{} (more than {} elements)", shape_str(shape),
                             d + 1 < ndim ? ", ..." : "", kMaxIdxElements));
  }
  if (bytes.size() - header != count)
    throw fail(fmt::format("dimensions {} need {} data bytes but the file has {}{}", shape_str(shape), count,
                           bytes.size() - header, bytes.size() - header < count ? " (truncated)" : ""));
  return Tensor::from_buffer(bytes.data() + header, shape, DType::u8);
}

std::shared_ptr<ImageDataset> read_idx_pair(const fs::path& images, const fs::path& labels, Normalization norm,
                                            const std::string& name) {
  Tensor img = read_idx(images);
  Tensor lab = read_idx(labels);
  if (img.dim() != 3)
    throw InputError(fmt::format("IDX image file {}: expected 3 dimensions [N, H, W], got {}", images.string(),
                                 shape_str(img.shape())));
  if (lab.dim() != 1)
    throw InputError(fmt::format("IDX label file {}: expected 1 dimension [N], got {}", labels.string(),
                                 shape_str(lab.shape())));
  if (img.size(0) != lab.size(0))
    throw InputError(fmt::format("IDX files disagree: {} holds {} images but {} holds {} labels", images.string(),
                                 img.size(0), labels.string(), lab.size(0)));
  const uint8_t* lp = lab.data<uint8_t>();
  int64_t classes = 0;
  for (int64_t i = 0; i < lab.size(0); ++i) classes = std::max<int64_t>(classes, lp[i] + 1);
  if (classes > 10)
    throw InputError(fmt::format("IDX label file {}: label {} out of range [0, 10)", labels.string(), classes - 1));
  Tensor lab32 = lab.to(DType::i32);
  img = img.reshape({img.size(0), 1, img.size(1), img.size(2)}).contiguous();
  return std::make_shared<ImageDataset>(img, lab32, 10, std::move(norm), name);
}

namespace {

fs::path find_idx(const fs::path& dir, const std::string& prefix, const std::string& kind) {
  // kind: "images-idx3" or "labels-idx1"
  for (const char* ext : {".gz", ""}) {
    for (const char* sep : {"-", "."}) {
      const fs::path p = dir / (prefix + "-" + kind + sep + "ubyte" + ext);
      if (fs::exists(p)) return p;
    }
  }
  return {};
}

}  // namespace

SplitPair load_mnist_dir(const fs::path& dir) {
  if (!fs::is_directory(dir)) throw InputError(fmt::format("MNIST data: {} is not a directory", dir.string()));
  const std::string name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
  const fs::path tr_i = find_idx(dir, "train", "images-idx3"), tr_l = find_idx(dir, "train", "labels-idx1");
  const fs::path te_i = find_idx(dir, "t10k", "images-idx3"), te_l = find_idx(dir, "t10k", "labels-idx1");
  if (te_i.empty() || te_l.empty())
    throw InputError(fmt::format("MNIST data: {} holds no t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz]",
                                 dir.string()));
  SplitPair out;
  auto test = read_idx_pair(te_i, te_l, Normalization::mnist(), name);
  if (!tr_i.empty() && !tr_l.empty()) {
    out.train = read_idx_pair(tr_i, tr_l, Normalization::mnist(), name);
    out.test = test;
  } else {
    // Note: only the test set is present; split it 80/20 (8,000 / 2,000 for MNIST's 10,000 images).
    const int64_t n = test->size();
    if (n < 2) throw InputError(fmt::format("MNIST data: {} holds only {} images, too few to split", te_i.string(), n));
    const int64_t n_train = n * 4 / 5;
    out.train = test->subset(0, n_train);
    out.test = test->subset(n_train, n);
  }
  return out;
}

}  // namespace qforge::data
