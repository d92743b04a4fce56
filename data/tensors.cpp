#include "data/tensors.hpp"

#include "data/io_util.hpp"
#include "engine/error.hpp"
#include "engine/safetensors.hpp"

#include <algorithm>
#include <cstring>

namespace qforge::data {

namespace fs = std::filesystem;

NamedArrays read_named_arrays(const fs::path& path) {
  const std::string ext = path.extension().string();
  NamedArrays out;
  if (ext == ".npz") {
    for (auto& [name, a] : read_npz(path)) out[name] = {std::move(a.tensor), a.descr};
  } else if (ext == ".npy") {
    NpyArray a = read_npy(path);
    out[path.stem().string()] = {std::move(a.tensor), a.descr};
  } else if (ext == ".safetensors") {
    // The safetensors reader takes a path; refuse what is not a regular file first (a FIFO would block).
    std::vector<uint8_t> bytes = read_regular_file(path, kMaxDataFileBytes);
    SafetensorsContents c = parse_safetensors(bytes.data(), bytes.size(), path.string());
    for (auto& [name, t] : c.tensors) out[name] = {std::move(t), c.file_dtypes[name]};
  } else {
    throw InputError(fmt::format("{}: unknown tensor file type '{}' (expected .safetensors, .npz or .npy)",
                                 path.string(), ext));
  }
  return out;
}

TensorDataset::TensorDataset(Tensor inputs, Tensor labels, int64_t num_classes, std::string name)
    : inputs_(inputs.contiguous()), labels_(labels.defined() ? labels.contiguous() : labels),
      num_classes_(num_classes), name_(std::move(name)) {
  QFORGE_CHECK(inputs_.dim() >= 1 && (inputs_.dtype() == DType::f32 || inputs_.dtype() == DType::u8),
               "TensorDataset: inputs must be f32 or u8 [N, ...], got {} {}", dtype_name(inputs_.dtype()),
               shape_str(inputs_.shape()));
  QFORGE_CHECK(!labels_.defined() || (labels_.dtype() == DType::i32 && labels_.dim() == 1 &&
                                      labels_.size(0) == inputs_.size(0)),
               "TensorDataset: labels must be i32 [{}]", inputs_.size(0));
}

Shape TensorDataset::example_shape() const {
  return Shape(inputs_.shape().begin() + 1, inputs_.shape().end());
}

std::string TensorDataset::description() const {
  return fmt::format("{} ({} examples of shape {}{})", name_, size(), shape_str(example_shape()),
                     labelled() ? fmt::format(", {} classes", num_classes_) : ", unlabelled");
}

Batch TensorDataset::get_batch(std::span<const int64_t> indices, Generator*) const {
  const int64_t b = static_cast<int64_t>(indices.size());
  const int64_t per = shape_numel(example_shape());
  Shape shape = inputs_.shape();
  shape[0] = b;
  Batch batch;
  batch.inputs = Tensor::uninitialized(shape, DType::f32);
  batch.targets = Tensor::uninitialized({b}, DType::i32);
  float* dst = batch.inputs.data<float>();
  int32_t* tgt = batch.targets.data<int32_t>();
  for (int64_t k = 0; k < b; ++k) {
    const int64_t i = indices[static_cast<size_t>(k)];
    QFORGE_CHECK(i >= 0 && i < size(), "{}: example index {} out of range [0, {})", name_, i, size());
    if (inputs_.dtype() == DType::f32) {
      std::memcpy(dst + k * per, inputs_.data<float>() + i * per, static_cast<size_t>(per) * sizeof(float));
    } else {
      const uint8_t* src = inputs_.data<uint8_t>() + i * per;
      for (int64_t j = 0; j < per; ++j) dst[k * per + j] = static_cast<float>(src[j]);
    }
    tgt[k] = labelled() ? labels_.data<int32_t>()[i] : kNoLabel;
  }
  return batch;
}

namespace {

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw InputError(fmt::format("{}: {}", source, what));
}

Tensor checked_inputs(const NamedArray& a, const std::string& name, const std::string& source) {
  const Tensor& t = a.tensor;
  if (t.dim() < 1) fail(source, fmt::format("array '{}' is 0-d; expected [N, ...] (N examples)", name));
  if (t.size(0) == 0) fail(source, fmt::format("array '{}' has no examples (shape {})", name, shape_str(t.shape())));
  if (t.dtype() == DType::f64) return t.to(DType::f32);
  if (t.dtype() != DType::f32 && t.dtype() != DType::u8)
    fail(source, fmt::format("array '{}' has dtype '{}'; expected float32, float64 or uint8", name, a.stored_dtype));
  return t;
}

Tensor checked_labels(const NamedArray& a, const std::string& name, int64_t n, const std::string& source,
                      int64_t& max_label) {
  const Tensor& t = a.tensor;
  if (t.dtype() != DType::i32 && t.dtype() != DType::i16 && t.dtype() != DType::i8 && t.dtype() != DType::u8)
    fail(source, fmt::format("array '{}' has dtype '{}'; labels must be integers (int64, int32, uint8, ...)", name,
                             a.stored_dtype));
  if (t.dim() != 1 || t.size(0) != n)
    fail(source, fmt::format("array '{}' has shape {}; expected [{}] (one label per example of its input)", name,
                             shape_str(t.shape()), n));
  Tensor l = t.to(DType::i32).contiguous();
  const int32_t* p = l.data<int32_t>();
  for (int64_t i = 0; i < n; ++i) {
    if (p[i] < 0) fail(source, fmt::format("array '{}': label {} of example {} is negative", name, p[i], i));
    max_label = std::max<int64_t>(max_label, p[i]);
  }
  return l;
}

}  // namespace

TensorSplits make_tensor_splits(NamedArrays arrays, const std::string& source) {
  static const char* kNames[] = {"input", "label", "test_input", "test_label"};
  for (const auto& entry : arrays) {
    const std::string& name = entry.first;
    if (std::find_if(std::begin(kNames), std::end(kNames), [&](const char* k) { return name == k; }) == std::end(kNames))
      fail(source, fmt::format("unexpected array '{}' (a tensors data file holds input, label, test_input, test_label)",
                               name));
  }
  if (!arrays.count("input")) fail(source, "no array 'input' (a tensors data file holds input [N, ...] and optional label [N])");
  const bool has_test = arrays.count("test_input") > 0;
  if (!has_test && arrays.count("test_label")) fail(source, "array 'test_label' without 'test_input'");
  if (has_test && arrays.count("label") != arrays.count("test_label"))
    fail(source, arrays.count("label") ? "array 'label' is given but 'test_label' is missing"
                                       : "array 'test_label' is given but 'label' is missing");

  Tensor input = checked_inputs(arrays.at("input"), "input", source);
  int64_t max_label = -1;
  Tensor label;
  if (arrays.count("label")) label = checked_labels(arrays.at("label"), "label", input.size(0), source, max_label);
  Tensor test_input = input, test_label = label;
  if (has_test) {
    test_input = checked_inputs(arrays.at("test_input"), "test_input", source);
    const Shape ex(input.shape().begin() + 1, input.shape().end()), tex(test_input.shape().begin() + 1, test_input.shape().end());
    if (ex != tex)
      fail(source, fmt::format("array 'test_input' has examples of shape {}, 'input' of shape {}", shape_str(tex),
                               shape_str(ex)));
    if (test_input.dtype() != input.dtype())
      fail(source, fmt::format("array 'test_input' has dtype '{}', 'input' '{}'", arrays.at("test_input").stored_dtype,
                               arrays.at("input").stored_dtype));
    if (arrays.count("test_label"))
      test_label = checked_labels(arrays.at("test_label"), "test_label", test_input.size(0), source, max_label);
  }
  const int64_t classes = max_label + 1;
  const std::string name = fs::path(source).filename().string();
  TensorSplits s;
  s.train = std::make_shared<TensorDataset>(input, label, classes, name);
  s.test = has_test ? std::make_shared<TensorDataset>(test_input, test_label, classes, name + " (test)") : s.train;
  return s;
}

TensorSplits load_tensor_splits(const fs::path& path) {
  return make_tensor_splits(read_named_arrays(path), path.string());
}

}  // namespace qforge::data
