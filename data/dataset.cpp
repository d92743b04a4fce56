#include "data/dataset.hpp"

#include <algorithm>
#include <cstring>

namespace qforge::data {

ImageDataset::ImageDataset(Tensor images, Tensor labels, int64_t num_classes, Normalization norm,
                           std::string name)
    : images_(std::move(images)), labels_(std::move(labels)), num_classes_(num_classes), norm_(std::move(norm)),
      name_(std::move(name)) {
  QFORGE_CHECK(images_.dtype() == DType::u8 && images_.dim() == 4,
               "ImageDataset {}: images must be u8 [N, C, H, W], got {} {}", name_, dtype_name(images_.dtype()),
               shape_str(images_.shape()));
  QFORGE_CHECK(labels_.dtype() == DType::i32 && labels_.dim() == 1 && labels_.size(0) == images_.size(0),
               "ImageDataset {}: labels must be i32 [{}], got {} {}", name_, images_.size(0),
               dtype_name(labels_.dtype()), shape_str(labels_.shape()));
  QFORGE_CHECK(images_.is_contiguous() && labels_.is_contiguous(), "ImageDataset {}: tensors must be contiguous",
               name_);
  const int64_t c = images_.size(1);
  QFORGE_CHECK(norm_.mean.size() == norm_.std.size() && (norm_.mean.empty() || norm_.mean.size() == size_t(c)),
               "ImageDataset {}: normalisation has {} means / {} stds for {} channels", name_, norm_.mean.size(),
               norm_.std.size(), c);
}

Shape ImageDataset::example_shape() const { return {images_.size(1), images_.size(2), images_.size(3)}; }

std::string ImageDataset::description() const {
  return fmt::format("{}: {} images {}x{}x{}, {} classes", name_, size(), images_.size(1), images_.size(2),
                     images_.size(3), num_classes_);
}

std::shared_ptr<ImageDataset> ImageDataset::subset(int64_t begin, int64_t end) const {
  QFORGE_CHECK(0 <= begin && begin <= end && end <= size(), "ImageDataset {}: subset [{}, {}) out of range [0, {})",
               name_, begin, end, size());
  auto d = std::make_shared<ImageDataset>(images_.narrow(0, begin, end - begin).contiguous(),
                                          labels_.narrow(0, begin, end - begin).contiguous(), num_classes_, norm_,
                                          name_);
  return d;
}

void augment_image(const uint8_t* src, uint8_t* dst, int64_t c, int64_t h, int64_t w, const ImageAugment& a,
                   Generator& gen) {
  // Offsets of the crop window in padded coordinates: [0, 2 * pad]; the source pixel of output (y, x)
  // is (y + oy - pad, x + ox - pad), zero outside the image.
  const int64_t oy = a.pad > 0 ? static_cast<int64_t>(gen.below(2 * a.pad + 1)) : a.pad;
  const int64_t ox = a.pad > 0 ? static_cast<int64_t>(gen.below(2 * a.pad + 1)) : a.pad;
  const bool flip = a.hflip && (gen.next_u64() >> 63) != 0;
  for (int64_t ch = 0; ch < c; ++ch) {
    const uint8_t* s = src + ch * h * w;
    uint8_t* d = dst + ch * h * w;
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y + oy - a.pad;
      uint8_t* row = d + y * w;
      if (sy < 0 || sy >= h) {
        std::memset(row, 0, static_cast<size_t>(w));
        continue;
      }
      for (int64_t x = 0; x < w; ++x) {
        const int64_t sx = x + ox - a.pad;
        const uint8_t v = (sx >= 0 && sx < w) ? s[sy * w + sx] : uint8_t{0};
        row[flip ? w - 1 - x : x] = v;
      }
    }
  }
}

Batch ImageDataset::get_batch(std::span<const int64_t> indices, Generator* gen) const {
  const int64_t b = static_cast<int64_t>(indices.size());
  const int64_t c = images_.size(1), h = images_.size(2), w = images_.size(3), per = c * h * w;
  Tensor x = Tensor::uninitialized({b, c, h, w}, DType::f32);  // fully written below
  Tensor y = Tensor::uninitialized({b}, DType::i32);
  const uint8_t* src = images_.data<uint8_t>();
  const int32_t* lab = labels_.data<int32_t>();
  float* xo = x.data<float>();
  int32_t* yo = y.data<int32_t>();
  // u8 -> f32 as x * scale[c] + shift[c]
  std::vector<float> scale(c, 1.0f / 255.0f), shift(c, 0.0f);
  for (int64_t ch = 0; ch < c && !norm_.mean.empty(); ++ch) {
    scale[ch] = 1.0f / (255.0f * norm_.std[ch]);
    shift[ch] = -norm_.mean[ch] / norm_.std[ch];
  }
  const bool aug = gen != nullptr && augment_.enabled();
  std::vector<uint8_t> tmp(aug ? per : 0);
  for (int64_t i = 0; i < b; ++i) {
    const int64_t k = indices[i];
    QFORGE_CHECK(0 <= k && k < size(), "ImageDataset {}: example index {} out of range [0, {})", name_, k, size());
    const uint8_t* img = src + k * per;
    if (aug) {
      augment_image(img, tmp.data(), c, h, w, augment_, *gen);
      img = tmp.data();
    }
    float* o = xo + i * per;
    for (int64_t ch = 0; ch < c; ++ch) {
      const float sc = scale[ch], sh = shift[ch];
      const uint8_t* p = img + ch * h * w;
      float* q = o + ch * h * w;
      for (int64_t j = 0; j < h * w; ++j) q[j] = static_cast<float>(p[j]) * sc + sh;
    }
    yo[i] = lab[k];
  }
  return {x, y};
}

}  // namespace qforge::data
