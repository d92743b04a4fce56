// Datasets: in-memory collections of examples that build whole batches at once.
//
// qforge's datasets are small enough to live in memory (MNIST, CIFAR-10, Tiny Shakespeare, the built-in
// synthetic digits), so a Dataset is a table of examples plus a `get_batch` that gathers a list of
// example indices into one batch tensor. Image datasets keep their pixels as u8 [N, C, H, W] and convert
// on the fly: optional augmentation (random crop with padding, horizontal flip) on the u8 pixels, then
// normalisation ((x/255 - mean) / std per channel) into f32. Text datasets keep one token stream (i32)
// and cut fixed-length windows from it for next-character prediction.
//
// Randomness (augmentation) comes only from the Generator passed to get_batch, so a batch is a pure
// function of (dataset, indices, generator state): the loader derives that generator from (seed, epoch,
// batch index), which keeps prefetching and resuming deterministic (Note [Loader determinism]).
#pragma once

#include "engine/random.hpp"
#include "engine/tensor.hpp"

#include <array>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qforge::data {

struct Batch {
  Tensor inputs;   // f32 [B, C, H, W] images, or i32 [B, T] token windows
  Tensor targets;  // i32 [B] labels, or i32 [B, T] next tokens
  int64_t size() const { return inputs.defined() ? inputs.size(0) : 0; }
};

enum class TaskKind { classification, language_model };

class Dataset {
public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Gathers the examples `indices` into one batch. `gen` drives augmentation (may be null: none).
  virtual Batch get_batch(std::span<const int64_t> indices, Generator* gen) const = 0;
  virtual TaskKind kind() const = 0;
  virtual int64_t num_classes() const = 0;  // classes, or vocabulary size for language models
  virtual Shape example_shape() const = 0;  // shape of one input example (no batch dim)
  virtual std::string description() const = 0;
};

// Per-channel normalisation: f32 = (u8 / 255 - mean[c]) / std[c].
struct Normalization {
  std::vector<float> mean;  // empty: no normalisation, just /255
  std::vector<float> std;
  static Normalization none() { return {}; }
  static Normalization mnist() { return {{0.1307f}, {0.3081f}}; }
  static Normalization cifar10() { return {{0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}}; }
};

// Training-time augmentation on u8 pixels (torchvision's RandomCrop(size, padding) + RandomHorizontalFlip):
// zero-pad by `pad` on every side, crop a random H x W window, then mirror with probability 1/2.
struct ImageAugment {
  int64_t pad = 0;
  bool hflip = false;
  bool enabled() const { return pad > 0 || hflip; }
};

class ImageDataset : public Dataset {
public:
  // images: u8 [N, C, H, W]; labels: i32 [N] in [0, num_classes).
  ImageDataset(Tensor images, Tensor labels, int64_t num_classes, Normalization norm, std::string name);

  int64_t size() const override { return images_.size(0); }
  Batch get_batch(std::span<const int64_t> indices, Generator* gen) const override;
  TaskKind kind() const override { return TaskKind::classification; }
  int64_t num_classes() const override { return num_classes_; }
  Shape example_shape() const override;
  std::string description() const override;

  // Examples [begin, end) sharing the pixels (a view); keeps normalisation, drops augmentation.
  std::shared_ptr<ImageDataset> subset(int64_t begin, int64_t end) const;
  void set_augment(ImageAugment a) { augment_ = a; }
  const ImageAugment& augment() const { return augment_; }
  const Normalization& normalization() const { return norm_; }
  const Tensor& images() const { return images_; }
  const Tensor& labels() const { return labels_; }
  const std::string& name() const { return name_; }

private:
  Tensor images_, labels_;
  int64_t num_classes_;
  Normalization norm_;
  ImageAugment augment_;
  std::string name_;
};

// Copies one u8 image [C, H, W] into `dst` with a random crop (zero padding) and flip; exposed for tests.
void augment_image(const uint8_t* src, uint8_t* dst, int64_t c, int64_t h, int64_t w, const ImageAugment& a,
                   Generator& gen);

}  // namespace qforge::data
