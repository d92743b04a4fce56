// The shifted-window GEMM kernels (engine/kernels/conv_f32.hpp): every ISA variant against the scalar
// reference on awkward sizes (row counts that are not a multiple of the tile, grid lengths with vector
// and scalar tails, arbitrary window offsets). Float sums differ in order between variants, so the
// comparison is relative to the sum of absolute products.
#include "engine/kernels/conv_f32.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

using namespace qforge::kernels;

namespace {

std::vector<float> uniform(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

std::vector<std::int32_t> offsets(int k, int span, std::mt19937& rng) {
  std::uniform_int_distribution<int> d(0, span);
  std::vector<std::int32_t> off(static_cast<size_t>(k));
  for (auto& o : off) o = d(rng);
  return off;
}

}  // namespace

TEST_CASE("shifted-window GEMM: every ISA variant matches the scalar reference") {
  std::mt19937 rng(11);
  int checked = 0;
  for (int i = 1; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!isa_supported(isa)) {
      MESSAGE("skipping the shifted-window GEMM for " << std::string(isa_name(isa)) << ": this CPU lacks it");
      continue;
    }
    CAPTURE(std::string(isa_name(isa)));
    for (int m : {1, 3, 8, 13, 32})
      for (int k : {1, 7, 144})
        for (int n : {1, 15, 47, 49, 130, 840}) {
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(n);
          const std::vector<float> w = uniform(static_cast<size_t>(m * k), rng);
          const std::vector<std::int32_t> off = offsets(k, 300, rng);
          const std::vector<float> src = uniform(static_cast<size_t>(300 + n), rng);
          std::vector<float> packed(shifted_gemm_packed_size(m, k));
          pack_shifted_gemm_f32(w.data(), k, m, k, packed.data());
          const std::int64_t ldy = n + 3;
          std::vector<float> want(static_cast<size_t>(m * ldy), -7.0f), got = want;
          shifted_gemm_kernels(Isa::ref).gemm(packed.data(), m, k, off.data(), src.data(), n, want.data(), ldy);
          shifted_gemm_kernels(isa).gemm(packed.data(), m, k, off.data(), src.data(), n, got.data(), ldy);
          double worst = 0;
          for (int o = 0; o < m; ++o)
            for (int q = 0; q < ldy; ++q) {
              const size_t at = static_cast<size_t>(o * ldy + q);
              if (q >= n) {
                CHECK(got[at] == -7.0f);  // nothing written past n
                continue;
              }
              double mag = 0;
              for (int kk = 0; kk < k; ++kk) mag += std::fabs(w[o * k + kk] * src[off[kk] + q]);
              worst = std::max(worst, std::fabs(double(got[at]) - want[at]) / (mag + 1e-30));
            }
          CHECK(worst < 1e-5);
          ++checked;
        }
  }
  CHECK(checked > 0);
}

TEST_CASE("shifted-window weight gradient: every ISA variant matches the scalar reference") {
  std::mt19937 rng(12);
  int checked = 0;
  for (int i = 1; i < kNumIsas; ++i) {
    const Isa isa = static_cast<Isa>(i);
    if (!isa_supported(isa)) continue;
    CAPTURE(std::string(isa_name(isa)));
    for (int samples : {1, 3})
      for (int m : {1, 5, 32})
        for (int k : {1, 7, 144})
          for (int n : {1, 17, 130}) {
            CAPTURE(samples);
            CAPTURE(m);
            CAPTURE(k);
            CAPTURE(n);
            const std::int64_t ldg = n + 2, gss = m * ldg + 5, sss = 300 + n + 9;
            const std::vector<float> g = uniform(static_cast<size_t>(samples * gss), rng);
            const std::vector<float> src = uniform(static_cast<size_t>(samples * sss), rng);
            const std::vector<std::int32_t> off = offsets(k, 300, rng);
            const std::int64_t ldgw = k + 1;
            const std::vector<float> init = uniform(static_cast<size_t>(m * ldgw), rng);
            std::vector<float> want = init, got = init;
            shifted_gemm_kernels(Isa::ref).wgrad(samples, g.data(), ldg, gss, m, n, off.data(), k, src.data(), sss,
                                                 want.data(), ldgw);
            shifted_gemm_kernels(isa).wgrad(samples, g.data(), ldg, gss, m, n, off.data(), k, src.data(), sss,
                                            got.data(), ldgw);
            double worst = 0;
            for (int o = 0; o < m; ++o)
              for (int kk = 0; kk < ldgw; ++kk) {
                const size_t at = static_cast<size_t>(o * ldgw + kk);
                if (kk >= k) {
                  CHECK(got[at] == init[at]);  // the padding column is left alone
                  continue;
                }
                double mag = std::fabs(init[at]);
                for (int s = 0; s < samples; ++s)
                  for (int q = 0; q < n; ++q) mag += std::fabs(g[s * gss + o * ldg + q] * src[s * sss + off[kk] + q]);
                worst = std::max(worst, std::fabs(double(got[at]) - want[at]) / (mag + 1e-30));
              }
            CHECK(worst < 1e-5);
            ++checked;
          }
  }
  CHECK(checked > 0);
}
