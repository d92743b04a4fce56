// Randomised bit-exactness checks of one kernel kind on one ISA against the scalar reference, shared by
// the registry test (which runs every registered kernel) and the per-kernel tests.
#pragma once

#include "engine/kernels/kernels.hpp"

#include <cstdint>
#include <random>
#include <vector>

namespace qforge::kernels::testing {

// A random quantized linear layer and its packed form.
struct GemmCase {
  int m = 1, n = 1, k = 1;
  ActType in = ActType::s8, out = ActType::s8;
  bool per_channel = true;
  bool strict_grid = false;      // weights in [-127,127] instead of [-128,127]
  bool saturate = false;         // extreme activations and weights (largest |acc|), large multipliers
  Rounding rounding = Rounding::single;
  int lda_extra = 0, ldc_extra = 0;
  int threads = 1;
};

struct GemmData {
  GemmCase cfg;
  std::vector<std::int8_t> w;    // [n][k]
  std::vector<std::int32_t> bias;
  std::vector<QuantizedMultiplier> mult;
  std::vector<std::uint8_t> a;   // [m][lda]
  std::int64_t lda = 0, ldc = 0;
  PackedGemm packed;
};

GemmData make_gemm(const GemmCase& c, std::mt19937& rng);

// Each returns the number of mismatching elements (0 = bit-exact); failures are also reported through
// doctest CHECKs with the case description.
int check_gemm(Isa isa, const GemmCase& c, std::mt19937& rng, bool s32);
int check_kind(KernelKind kind, Isa isa);  // a sweep of awkward cases for that kind

}  // namespace qforge::kernels::testing
