#include "data/data.hpp"
#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>

using namespace qforge;
using testing::error_of;
using namespace qforge::data;
namespace fs = std::filesystem;

namespace {

using testing::temp_dir;

std::vector<uint8_t> idx_bytes(const std::vector<uint32_t>& dims, const std::vector<uint8_t>& data) {
  std::vector<uint8_t> b = {0, 0, 0x08, static_cast<uint8_t>(dims.size())};
  for (uint32_t d : dims)
    for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(d >> s));
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

void write_raw(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

void write_gz(const fs::path& p, const std::vector<uint8_t>& b) {
  gzFile f = gzopen(p.c_str(), "wb");
  gzwrite(f, b.data(), static_cast<unsigned>(b.size()));
  gzclose(f);
}

// n images 2x3 with pixel value (i * 7 + j) % 256 and label i % 10.
void write_set(const fs::path& dir, const std::string& prefix, int n, bool gz) {
  std::vector<uint8_t> img, lab;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < 6; ++j) img.push_back(static_cast<uint8_t>((i * 7 + j) % 256));
    lab.push_back(static_cast<uint8_t>(i % 10));
  }
  const std::string ext = gz ? ".gz" : "";
  auto w = gz ? write_gz : write_raw;
  w(dir / (prefix + "-images-idx3-ubyte" + ext), idx_bytes({uint32_t(n), 2, 3}, img));
  w(dir / (prefix + "-labels-idx1-ubyte" + ext), idx_bytes({uint32_t(n)}, lab));
}

}  // namespace

TEST_CASE("idx: raw and gzip files read to the same u8 tensor") {
  const fs::path d = temp_dir("idx_rw");
  std::vector<uint8_t> data(24);
  for (int i = 0; i < 24; ++i) data[i] = static_cast<uint8_t>(i * 10);
  write_raw(d / "a.idx", idx_bytes({2, 3, 4}, data));
  write_gz(d / "a.idx.gz", idx_bytes({2, 3, 4}, data));
  for (const char* f : {"a.idx", "a.idx.gz"}) {
    Tensor t = read_idx(d / f);
    CHECK(t.dtype() == DType::u8);
    CHECK(t.shape() == Shape{2, 3, 4});
    CHECK(t.to_vector<uint8_t>() == data);
  }
  fs::remove_all(d);
}

TEST_CASE("idx: bad magic, truncation, trailing bytes and missing files throw InputError naming the file") {
  const fs::path d = temp_dir("idx_bad");
  std::vector<uint8_t> good = idx_bytes({2, 3}, std::vector<uint8_t>(6, 1));
  auto bad_magic = good;
  bad_magic[0] = 0x12;
  write_raw(d / "magic.idx", bad_magic);
  auto bad_type = good;
  bad_type[2] = 0x0D;
  write_raw(d / "type.idx", bad_type);
  write_raw(d / "short.idx", std::vector<uint8_t>(good.begin(), good.end() - 2));
  auto longer = good;
  longer.push_back(9);
  write_raw(d / "long.idx", longer);
  write_raw(d / "tiny.idx", {0, 0});
  // A gzip stream cut in half.
  write_gz(d / "cut.gz", idx_bytes({100, 100}, std::vector<uint8_t>(10000, 3)));
  {
    std::ifstream in(d / "cut.gz", std::ios::binary);
    std::vector<char> all((std::istreambuf_iterator<char>(in)), {});
    std::ofstream out(d / "cut.gz", std::ios::binary | std::ios::trunc);
    out.write(all.data(), static_cast<std::streamsize>(all.size() / 2));
  }
  for (const char* f : {"magic.idx", "type.idx", "short.idx", "long.idx", "tiny.idx", "cut.gz", "missing.idx"}) {
    const std::string msg = error_of([&] { read_idx(d / f); });
    INFO(f, ": ", msg);
    CHECK(msg.find(f) != std::string::npos);
  }
  CHECK(error_of([&] { read_idx(d / "magic.idx"); }).find("magic") != std::string::npos);
  CHECK(error_of([&] { read_idx(d / "short.idx"); }).find("truncated") != std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("idx: image and label counts must agree") {
  const fs::path d = temp_dir("idx_count");
  write_raw(d / "img", idx_bytes({3, 2, 2}, std::vector<uint8_t>(12, 0)));
  write_raw(d / "lab", idx_bytes({4}, {0, 1, 2, 3}));
  const std::string msg = error_of([&] { read_idx_pair(d / "img", d / "lab", Normalization::mnist(), "x"); });
  CHECK(msg.find("3 images") != std::string::npos);
  CHECK(msg.find("4 labels") != std::string::npos);
  write_raw(d / "lab2", idx_bytes({3}, {0, 1, 12}));
  CHECK(error_of([&] { read_idx_pair(d / "img", d / "lab2", Normalization::mnist(), "x"); }).find("label") !=
        std::string::npos);
  fs::remove_all(d);
}

TEST_CASE("idx: a t10k-only directory splits first 80% train, last 20% test") {
  const fs::path d = temp_dir("idx_split");
  write_set(d, "t10k", 50, true);
  SplitPair s = load_mnist_dir(d);
  REQUIRE(s.train->size() == 40);
  REQUIRE(s.test->size() == 10);
  CHECK(s.train->images().shape() == Shape{40, 1, 2, 3});
  // test example 0 is file example 40
  CHECK(s.test->labels().at({0}) == 0);
  CHECK(s.test->images().at({0, 0, 0, 0}) == (40 * 7) % 256);
  CHECK(s.train->images().at({39, 0, 1, 2}) == (39 * 7 + 5) % 256);
  // with train-* present the split is by file
  write_set(d, "train", 30, false);
  SplitPair s2 = load_mnist_dir(d);
  CHECK(s2.train->size() == 30);
  CHECK(s2.test->size() == 50);
  fs::remove_all(d);
}

TEST_CASE("idx: a batch is normalised with the MNIST mean and std") {
  const fs::path d = temp_dir("idx_norm");
  write_set(d, "t10k", 10, false);
  auto ds = load_mnist_dir(d).train;
  const int64_t idx[] = {3};
  Batch b = ds->get_batch(idx, nullptr);
  CHECK(b.inputs.shape() == Shape{1, 1, 2, 3});
  CHECK(b.targets.dtype() == DType::i32);
  CHECK(b.targets.at({0}) == 3);
  const double raw = (3 * 7 + 4) % 256;
  CHECK(b.inputs.at({0, 0, 1, 1}) == doctest::Approx((raw / 255.0 - 0.1307) / 0.3081).epsilon(1e-5));
  fs::remove_all(d);
}

TEST_CASE("idx: the shared MNIST test set gives 8000 train and 2000 test images") {
  const fs::path dir = testing::data_dir();
  if (dir.empty() || !fs::exists(dir / "mnist")) {
    MESSAGE("skipped: shared MNIST data not found (set QFORGE_DATA)");
    return;
  }
  SplitPair s = load_mnist_dir(dir / "mnist");
  CHECK(s.train->size() == 8000);
  CHECK(s.test->size() == 2000);
  CHECK(s.train->example_shape() == Shape{1, 28, 28});
  // The first MNIST test label is 7, the last is 6.
  CHECK(s.train->labels().at({0}) == 7);
  CHECK(s.test->labels().at({1999}) == 6);
}

TEST_CASE("data: load_data parses specs and rejects unknown ones") {
  CHECK_THROWS_AS(load_data("imagenet:/x"), InputError);
  CHECK_THROWS_AS(load_data("mnist:/nonexistent/dir"), InputError);
  CHECK_THROWS_AS(load_data("text:/nonexistent/file.txt"), InputError);
  CHECK_THROWS_AS(load_data("synthetic:abc"), InputError);
  DataSplits s = load_data("synthetic:40", {.seed = 3});
  CHECK(s.kind == "synthetic");
  CHECK(s.train->size() == 40);
  CHECK(s.test->size() == 10);
  CHECK(s.train->kind() == TaskKind::classification);
}

TEST_CASE("idx: dimensions whose product overflows 64 bits are refused before anything is allocated") {
  const fs::path d = temp_dir("idx_overflow");
  // 0xffffffff^4 wraps past 2^64; an unchecked product could come out small and match the data size.
  write_raw(d / "wrap.idx", idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {}));
  CHECK_THROWS_WITH_AS(read_idx(d / "wrap.idx"), doctest::Contains("implausible dimensions"), InputError);
  // 2^32 · 2^32 = 2^64 wraps to exactly 0: with no data bytes an unchecked reader would accept it.
  write_raw(d / "zero_wrap.idx", idx_bytes({0x10000u, 0x10000u, 0x10000u, 0x10000u}, {}));
  CHECK_THROWS_WITH_AS(read_idx(d / "zero_wrap.idx"), doctest::Contains("wrap.idx"), InputError);
  // A zero dimension holds no data but the other dimensions are still bounded.
  write_raw(d / "zero_dim.idx", idx_bytes({0, 0xffffffffu, 0xffffffffu, 0xffffffffu}, {}));
  CHECK_THROWS_WITH_AS(read_idx(d / "zero_dim.idx"), doctest::Contains("implausible dimensions"), InputError);
  write_raw(d / "empty_ok.idx", idx_bytes({0, 28, 28}, {}));
  CHECK(read_idx(d / "empty_ok.idx").numel() == 0);
  fs::remove_all(d);
}
