// Built-in synthetic digits: the default dataset when no data is given.
//
// 28x28 greyscale images of the digits 0-9, drawn procedurally: each digit is a few strokes (polylines
// and arcs) from a small built-in glyph set (two styles per digit), perturbed per sample by a random
// affine map (rotation, anisotropic scale, shear, translation), per-vertex wobble, a random stroke
// thickness and intensity, an optional distractor stroke, and Gaussian pixel noise. Every sample is a pure
// function of (seed, index), so a dataset is deterministic from its seed and independent of thread count.
// The jitter is strong enough that a linear classifier does clearly worse than a small CNN.
#pragma once

#include "data/dataset.hpp"

namespace qforge::data {

struct SyntheticOptions {
  int64_t train_size = 8000;
  int64_t test_size = 2000;
  uint64_t seed = 0;
};

// Renders digit `label` (0..9) into `out` (28*28 u8) with all randomness from `gen`.
void render_synthetic_digit(int label, Generator& gen, uint8_t* out);

// n samples; sample i draws its label (uniform 0..9) and pixels from Generator(mix(seed, first_index + i)).
std::shared_ptr<ImageDataset> make_synthetic_digits(int64_t n, uint64_t seed, int64_t first_index = 0);

struct SyntheticSplits {
  std::shared_ptr<ImageDataset> train, test;
};
// Train and test use disjoint sample indices of the same seeded stream. Normalisation: MNIST mean/std.
SyntheticSplits make_synthetic_splits(const SyntheticOptions& opt);

}  // namespace qforge::data
