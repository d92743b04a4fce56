// The user's own tensors: named arrays read from a file, and a dataset made of them (`--data tensors:FILE`).
//
// read_named_arrays reads `.safetensors` (engine/safetensors.hpp), `.npz` and `.npy` (npy.hpp) by extension;
// a .npy file is one array named after the file's stem. Integers arrive as i32 (int64 range-checked),
// floats as f32/f64, uint8 as u8, bool as bool; the stored dtype ("<f4", "I64", ...) is kept.
//
// A tensors file used as data holds these arrays (any other name is refused, so a typo is not ignored):
//   input        float32, float64 or uint8 [N, ...]  the model's inputs, any shape per example
//   label        integer [N], values >= 0             optional: classes for accuracy and loss
//   test_input   like input, same per-example shape    optional: a separate test split
//   test_label   like label                            required with test_input when label is given
// Without test_input both splits are the same arrays. Inputs are used as they are: float64 becomes
// float32 and uint8 becomes float32 with its values 0..255 unchanged (no /255, no normalisation — store
// float32 inputs prepared exactly as the model expects them). num_classes is the largest label + 1.
// Without labels (calibration-only data) every target is -100, PyTorch's ignore_index: quantization
// calibrates as usual, and the loss and accuracy it reports count 0 labelled examples.
#pragma once

#include "data/dataset.hpp"
#include "data/npy.hpp"

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace qforge::data {

struct NamedArray {
  Tensor tensor;
  std::string stored_dtype;  // as the file names it ("<f4", "F32", "I64", ...)
};
using NamedArrays = std::map<std::string, NamedArray>;

// Reads a .safetensors, .npz or .npy file; InputError naming the file for any other extension, a file
// that is not a regular file, or anything malformed.
NamedArrays read_named_arrays(const std::filesystem::path& path);

// Target value of examples without a label (PyTorch's ignore_index).
inline constexpr int32_t kNoLabel = -100;

class TensorDataset : public Dataset {
public:
  // inputs: f32 or u8 [N, ...]; labels: i32 [N] (values in [0, num_classes)) or undefined.
  TensorDataset(Tensor inputs, Tensor labels, int64_t num_classes, std::string name);

  int64_t size() const override { return inputs_.size(0); }
  Batch get_batch(std::span<const int64_t> indices, Generator* gen) const override;
  TaskKind kind() const override { return TaskKind::classification; }
  int64_t num_classes() const override { return num_classes_; }
  Shape example_shape() const override;
  std::string description() const override;
  bool labelled() const { return labels_.defined(); }

private:
  Tensor inputs_, labels_;
  int64_t num_classes_;
  std::string name_;
};

struct TensorSplits {
  std::shared_ptr<TensorDataset> train, test;
};

// The splits of a tensors file (see top of file). InputError naming the file and the array for a missing
// 'input', an unknown array, a wrong dtype or rank, mismatched lengths or example shapes, negative labels.
TensorSplits load_tensor_splits(const std::filesystem::path& path);
// The same from arrays already read; `source` names them in errors.
TensorSplits make_tensor_splits(NamedArrays arrays, const std::string& source);

}  // namespace qforge::data
