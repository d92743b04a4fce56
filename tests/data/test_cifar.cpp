#include "data/data.hpp"

#include "tests/support/fixtures.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <unistd.h>

using namespace qforge;
using namespace qforge::data;
namespace fs = std::filesystem;

namespace {

using testing::temp_dir;

// Record r of a file: label (base + r) % 10, pixel (ch, y, x) = (base + r + ch * 50 + y * 3 + x) % 256.
std::vector<uint8_t> cifar_bytes(int records, int base) {
  std::vector<uint8_t> b;
  for (int r = 0; r < records; ++r) {
    b.push_back(static_cast<uint8_t>((base + r) % 10));
    for (int ch = 0; ch < 3; ++ch)
      for (int y = 0; y < 32; ++y)
        for (int x = 0; x < 32; ++x) b.push_back(static_cast<uint8_t>((base + r + ch * 50 + y * 3 + x) % 256));
  }
  return b;
}

void write(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

}  // namespace

TEST_CASE("cifar10: binary batches are read as CHW u8 images with labels, files concatenated in order") {
  const fs::path d = temp_dir("read");
  write(d / "data_batch_1.bin", cifar_bytes(3, 0));
  write(d / "data_batch_2.bin", cifar_bytes(2, 100));
  write(d / "test_batch.bin", cifar_bytes(4, 7));
  SplitPair s = load_cifar10_dir(d);
  REQUIRE(s.train->size() == 5);
  REQUIRE(s.test->size() == 4);
  CHECK(s.train->images().shape() == Shape{5, 3, 32, 32});
  CHECK(s.train->labels().at({3}) == 0);  // (100 + 0) % 10
  CHECK(s.train->labels().at({4}) == 1);
  CHECK(s.train->images().at({4, 2, 5, 6}) == (100 + 1 + 100 + 15 + 6) % 256);
  CHECK(s.test->images().at({1, 1, 0, 31}) == (7 + 1 + 50 + 31) % 256);
  CHECK(s.train->augment().pad == 4);
  CHECK(s.train->augment().hflip);
  CHECK_FALSE(s.test->augment().enabled());
  // normalised with the CIFAR-10 statistics, per channel
  const int64_t idx[] = {0};
  Batch b = s.test->get_batch(idx, nullptr);
  CHECK(b.inputs.at({0, 2, 0, 0}) == doctest::Approx(((7 + 100) / 255.0 - 0.4465) / 0.2616).epsilon(1e-5));
  fs::remove_all(d);
}

TEST_CASE("cifar10: truncated files and bad labels throw InputError naming the file") {
  const fs::path d = temp_dir("bad");
  auto b = cifar_bytes(2, 0);
  b.pop_back();
  write(d / "data_batch_1.bin", b);
  write(d / "test_batch.bin", cifar_bytes(1, 0));
  try {
    load_cifar10_dir(d);
    FAIL("expected InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("data_batch_1.bin") != std::string::npos);
  }
  auto c = cifar_bytes(2, 0);
  c[kCifarRecordBytes] = 12;  // label of record 1
  write(d / "data_batch_1.bin", c);
  try {
    load_cifar10_dir(d);
    FAIL("expected InputError");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("record 1") != std::string::npos);
  }
  fs::remove(d / "test_batch.bin");
  write(d / "data_batch_1.bin", cifar_bytes(2, 0));
  CHECK_THROWS_AS(load_cifar10_dir(d), InputError);
  fs::remove_all(d);
}

TEST_CASE("cifar10: crop-with-padding shifts the image and fills zeros; flip mirrors rows") {
  // 1 channel 4x4 image with pixels 1..16.
  std::vector<uint8_t> src(16), dst(16);
  for (int i = 0; i < 16; ++i) src[i] = static_cast<uint8_t>(i + 1);
  // Over many draws with pad 1: every output is a shifted (and maybe mirrored) copy with zero borders.
  Generator g(5);
  int flips = 0, shifted = 0;
  for (int t = 0; t < 200; ++t) {
    augment_image(src.data(), dst.data(), 1, 4, 4, {1, true}, g);
    // Find the shift: locate where pixel value 6 (source (1,1)) landed.
    int at = -1;
    for (int i = 0; i < 16; ++i)
      if (dst[i] == 6) at = i;
    REQUIRE(at >= 0);
    const int y = at / 4, x = at % 4;
    const bool flipped = (x + 1 < 4 && dst[y * 4 + x + 1] == 5) || (x - 1 >= 0 && dst[y * 4 + x - 1] == 7 && false);
    // verify every pixel against the candidate transform
    bool ok_any = false;
    for (int fl = 0; fl < 2 && !ok_any; ++fl)
      for (int oy = -1; oy <= 1 && !ok_any; ++oy)
        for (int ox = -1; ox <= 1 && !ok_any; ++ox) {
          bool ok = true;
          for (int yy = 0; yy < 4; ++yy)
            for (int xx = 0; xx < 4; ++xx) {
              const int sy = yy + oy, sx = xx + ox;
              const uint8_t want = (sy >= 0 && sy < 4 && sx >= 0 && sx < 4) ? src[sy * 4 + sx] : 0;
              const int ox_pos = fl ? 3 - xx : xx;
              if (dst[yy * 4 + ox_pos] != want) ok = false;
            }
          if (ok) {
            ok_any = true;
            flips += fl;
            shifted += (oy != 0 || ox != 0);
          }
        }
    CHECK(ok_any);
    (void)flipped;
  }
  CHECK(flips > 60);
  CHECK(flips < 140);
  CHECK(shifted > 100);
}
