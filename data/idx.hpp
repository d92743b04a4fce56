// IDX files (MNIST, Fashion-MNIST, KMNIST): a big-endian header (two zero bytes, a type code, the number
// of dimensions, one u32 per dimension) followed by the raw data. qforge reads the u8 type (0x08), gzip
// or raw (zlib reads both). Every malformed input — bad magic, wrong rank, truncated data, trailing bytes,
// image/label counts that disagree — throws InputError naming the file.
//
// Split convention (../shared/data/README.md): a directory with `train-*` and `t10k-*` trains on train-*
// and tests on t10k-*; a directory with only `t10k-*` uses its first 80% (8,000 of MNIST's 10,000) for
// training and the last 20% (2,000) for testing.
#pragma once

#include "data/dataset.hpp"

#include <filesystem>

namespace qforge::data {

// Reads a u8 IDX file (gzip or raw) into a u8 tensor of its dimensions.
Tensor read_idx(const std::filesystem::path& path);

// Reads an image file ([N, H, W]) and its label file ([N]) into an ImageDataset [N, 1, H, W].
std::shared_ptr<ImageDataset> read_idx_pair(const std::filesystem::path& images,
                                            const std::filesystem::path& labels, Normalization norm,
                                            const std::string& name);

struct SplitPair {
  std::shared_ptr<ImageDataset> train, test;
};

// Finds `<prefix>-images-idx3-ubyte[.gz]` and labels for the train/t10k prefixes in `dir` and applies the
// split convention above. Normalisation: MNIST mean/std.
SplitPair load_mnist_dir(const std::filesystem::path& dir);

}  // namespace qforge::data
