#include "data/cifar.hpp"

#include "data/io_util.hpp"

#include <algorithm>
#include <cstring>

namespace qforge::data {

namespace fs = std::filesystem;

std::shared_ptr<ImageDataset> read_cifar10(const std::vector<fs::path>& files, const std::string& name) {
  QFORGE_CHECK(!files.empty(), "read_cifar10: no files given");
  std::vector<std::vector<uint8_t>> contents;
  int64_t n = 0;
  for (const auto& f : files) {
    contents.push_back(read_file_maybe_gzip(f));
    const auto& b = contents.back();
    if (b.empty() || b.size() % kCifarRecordBytes != 0)
      throw InputError(fmt::format("CIFAR-10 file {}: {} bytes is not a whole number of {}-byte records{}", f.string(),
                                   b.size(), kCifarRecordBytes, b.empty() ? "" : " (truncated or not CIFAR-10 binary)"));
    n += static_cast<int64_t>(b.size() / kCifarRecordBytes);
  }
  Tensor images = Tensor::empty({n, 3, 32, 32}, DType::u8);
  Tensor labels = Tensor::empty({n}, DType::i32);
  uint8_t* ip = images.data<uint8_t>();
  int32_t* lp = labels.data<int32_t>();
  int64_t k = 0;
  for (size_t fi = 0; fi < files.size(); ++fi) {
    const auto& b = contents[fi];
    const int64_t records = static_cast<int64_t>(b.size() / kCifarRecordBytes);
    for (int64_t r = 0; r < records; ++r, ++k) {
      const uint8_t* rec = b.data() + r * kCifarRecordBytes;
      if (rec[0] >= 10)
        throw InputError(fmt::format("CIFAR-10 file {}: record {} has label {} (expected 0..9)", files[fi].string(),
                                     r, int{rec[0]}));
      lp[k] = rec[0];
      std::memcpy(ip + k * (kCifarRecordBytes - 1), rec + 1, kCifarRecordBytes - 1);
    }
  }
  return std::make_shared<ImageDataset>(images, labels, 10, Normalization::cifar10(), name);
}

SplitPair load_cifar10_dir(const fs::path& dir_in) {
  fs::path dir = dir_in;
  if (!fs::is_directory(dir)) throw InputError(fmt::format("CIFAR-10 data: {} is not a directory", dir.string()));
  if (!fs::exists(dir / "test_batch.bin") && fs::is_directory(dir / "cifar-10-batches-bin"))
    dir = dir / "cifar-10-batches-bin";
  std::vector<fs::path> train;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string f = e.path().filename().string();
    if (f.rfind("data_batch_", 0) == 0 && f.size() > 4 && f.substr(f.size() - 4) == ".bin") train.push_back(e.path());
  }
  std::sort(train.begin(), train.end());
  if (train.empty())
    throw InputError(fmt::format("CIFAR-10 data: {} holds no data_batch_*.bin files", dir.string()));
  if (!fs::exists(dir / "test_batch.bin"))
    throw InputError(fmt::format("CIFAR-10 data: {} holds no test_batch.bin", dir.string()));
  SplitPair out;
  out.train = read_cifar10(train, "cifar10");
  out.train->set_augment({4, true});
  out.test = read_cifar10({dir / "test_batch.bin"}, "cifar10");
  return out;
}

}  // namespace qforge::data
