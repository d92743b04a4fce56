// Shared helpers of the runtime tests: small calibrated QuantSims of the zoo models on random data.
#pragma once

#include "engine/autograd.hpp"
#include "engine/ops/ops.hpp"
#include "nn/layers.hpp"
#include "nn/zoo.hpp"
#include "quant/config.hpp"
#include "quant/quantsim.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/runtime.hpp"
#include "tests/support/batch_norm.hpp"

#include <doctest/doctest.h>

#include <memory>

namespace qforge::testing {

// MNIST-like inputs in [0, 1) (or normalised like data/'s MNIST when `normalised`).
inline Tensor images(std::int64_t n, std::uint64_t seed) {
  Generator g(seed);
  return Tensor::rand({n, 1, 28, 28}, g);
}


struct SimFixture {
  std::shared_ptr<nn::Module> model;
  std::unique_ptr<quant::QuantSim> sim;
};

// A zoo model wrapped in a W8A8 QuantSim and calibrated on `calib` random images.
inline SimFixture make_sim(const std::string& name, quant::QuantSimOptions opt = {}, std::int64_t calib = 16,
                           std::uint64_t seed = 1) {
  SimFixture f;
  nn::BuildOptions bo;
  bo.seed = seed;
  f.model = nn::build_zoo_model(name, {}, bo);
  perturb_bn(*f.model, seed + 7, {.mean_sd = 0.1, .beta_sd = 0.1});
  const Tensor x = images(calib, seed + 11);
  f.sim = std::make_unique<quant::QuantSim>(f.model, std::vector<Tensor>{x}, opt);
  f.sim->compute_encodings([&](nn::Module& m) { m({x}); });
  return f;
}

// Number of differing codes over every value of the program (runtime vs exact simulation).
inline std::int64_t count_differences(const quant::runtime::Program& p, const Tensor& x, int threads = 1) {
  quant::runtime::Runtime rt(p, {threads});
  const auto a = rt.run_all(x);
  const auto b = quant::runtime::execute_exact_all(p, x);
  REQUIRE(a.size() == b.size());
  std::int64_t diff = 0;
  for (std::size_t v = 0; v < a.size(); ++v) {
    REQUIRE(a[v].shape() == b[v].shape());
    const auto va = a[v].to_vector<std::int32_t>(), vb = b[v].to_vector<std::int32_t>();
    for (std::size_t k = 0; k < va.size(); ++k) {
      if (va[k] != vb[k] && diff < 5)
        MESSAGE("value " << p.values[v].name << " element " << k << ": runtime " << va[k] << " exact " << vb[k]);
      diff += va[k] != vb[k];
    }
  }
  return diff;
}

}  // namespace qforge::testing
