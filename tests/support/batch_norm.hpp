// Non-trivial BatchNorm statistics for tests, so that folding a BN visibly changes its layer.
#pragma once

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "engine/random.hpp"
#include "nn/layers.hpp"

#include <cstdint>

namespace qforge::testing {

// Per BN, drawn in this order from one generator: running mean ~ N(0, mean_sd²), running var ~ U(0.5, 2),
// gamma ~ U(0.5, 1.5), beta ~ N(0, beta_sd²) or, with big_beta, U(4, 6) (so that beta > 3|gamma|).
struct BnStats {
  double mean_sd = 1.0, beta_sd = 1.0;
  bool big_beta = false;
};

inline void perturb_bn(nn::Module& m, std::uint64_t seed, const BnStats& s = {}) {
  Generator g(seed);
  NoGradGuard ng;
  for (auto& [name, mod] : m.named_modules()) {
    auto* bn = dynamic_cast<nn::BatchNorm*>(mod.get());
    if (!bn) continue;
    const int64_t c = bn->num_features();
    bn->buffer("running_mean").copy_(ops::mul(Tensor::randn({c}, g), s.mean_sd));
    bn->buffer("running_var").copy_(Tensor::rand({c}, g, 0.5, 2.0));
    bn->raw_param("weight").copy_(Tensor::rand({c}, g, 0.5, 1.5));
    bn->raw_param("bias").copy_(s.big_beta ? Tensor::rand({c}, g, 4.0, 6.0) : ops::mul(Tensor::randn({c}, g), s.beta_sd));
  }
}

}  // namespace qforge::testing
