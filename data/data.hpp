// data/: datasets and the batching loader (depends on engine only).
//
//   dataset.hpp    Dataset interface, ImageDataset (u8 pixels -> normalised f32 batches, augmentation)
//   idx.hpp        IDX reader (MNIST / Fashion-MNIST / KMNIST), the t10k-only split convention
//   cifar.hpp      CIFAR-10 binary reader
//   text.hpp       character corpus: vocabulary, train/validation split, next-char windows
//   synthetic.hpp  built-in procedural digits (the default dataset)
//   npy.hpp        numpy .npy / .npz readers
//   tensors.hpp    the user's own arrays (.safetensors / .npz) as a dataset
//   loader.hpp     DataLoader: batching, seeded shuffling, drop-last, sequence view, prefetch
//
// This header adds the factory the CLI uses: a data spec string names a dataset and where it lives.
//   "synthetic" | "synthetic:N"   built-in digits (N training samples, N/4 test), seeded
//   "mnist:DIR"                   IDX files in DIR ("mnist" alone: <data dir>/mnist)
//   "cifar10:DIR"                 CIFAR-10 binary batches in DIR
//   "text:FILE"                   character corpus ("text" alone: <data dir>/tinyshakespeare/input.txt)
//   "tensors:FILE"                your own arrays: .safetensors or .npz with input [N, ...] and optional
//                                 label [N], test_input, test_label (tensors.hpp)
// <data dir> is $QFORGE_DATA, else ../shared/data relative to the working directory or its parent.
#pragma once

#include "data/cifar.hpp"
#include "data/dataset.hpp"
#include "data/idx.hpp"
#include "data/loader.hpp"
#include "data/synthetic.hpp"
#include "data/tensors.hpp"
#include "data/text.hpp"

#include <filesystem>
#include <optional>
#include <string>

namespace qforge::data {

struct DataOptions {
  uint64_t seed = 0;          // synthetic data
  int64_t seq_len = 100;      // text windows
  int64_t synthetic_train = 8000;
  int64_t synthetic_test = 2000;
};

struct DataSplits {
  std::string kind;  // "synthetic", "mnist", "cifar10", "text", "tensors"
  std::string spec;  // the spec string it came from
  std::shared_ptr<Dataset> train, test;  // test = validation split for text
  std::optional<Vocabulary> vocab;       // text only
};

// Parses a data spec (above) and loads both splits. Bad specs and missing/corrupt files throw InputError.
DataSplits load_data(const std::string& spec, const DataOptions& options = {});

// $QFORGE_DATA or the first existing ../shared/data, ../../shared/data; empty if none.
std::filesystem::path default_data_dir();

}  // namespace qforge::data
