// CIFAR-10 binary version: each record is 1 label byte (0..9) followed by 3072 pixel bytes (the red, green
// and blue 32x32 planes, row-major), i.e. already CHW. Training files data_batch_1..5.bin, test file
// test_batch.bin. A file whose size is not a multiple of 3073 bytes, or a label >= 10, throws InputError
// naming the file and the offending record.
#pragma once

#include "data/dataset.hpp"
#include "data/idx.hpp"

#include <filesystem>
#include <vector>

namespace qforge::data {

inline constexpr int64_t kCifarRecordBytes = 1 + 3 * 32 * 32;

// Reads and concatenates the given binary batch files; normalisation: CIFAR-10 mean/std.
std::shared_ptr<ImageDataset> read_cifar10(const std::vector<std::filesystem::path>& files, const std::string& name);

// Train (data_batch_*.bin, sorted, with crop-4 + flip augmentation) and test (test_batch.bin) from `dir`
// (or from its `cifar-10-batches-bin/` subfolder).
SplitPair load_cifar10_dir(const std::filesystem::path& dir);

}  // namespace qforge::data
