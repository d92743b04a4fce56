// 16-bit activations (W8A16, issue 18 §1): the integer runtime on the kernels16 kernels equals the exact
// simulation on every value of every supported zoo model, on every ISA; values really are 16-bit codes.
#include <doctest/doctest.h>

#include "engine/kernels/kernels.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/program16.hpp"
#include "quant/runtime/runtime.hpp"
#include "tests/quant/runtime/helpers.hpp"

using namespace qforge;
using namespace qforge::quant;
using namespace qforge::quant::runtime;
using qforge::testing::count_differences;
using qforge::testing::images;
using qforge::testing::make_sim;

namespace {
QuantSimOptions a16() {
  QuantSimOptions o;
  o.act_bw = 16;
  return o;
}
}  // namespace

TEST_CASE("runtime16: W8A16 programs hold 16-bit codes, and the runtime equals exact mode on every ISA") {
  const kernels::Isa was = kernels::active_isa();
  for (const std::string name : {"mlp", "mnist-cnn", "dw-cnn", "resnet-tiny", "lstm"}) {
    CAPTURE(name);
    auto f = make_sim(name, a16());
    const Program p = lower(*f.sim);
    REQUIRE(is_16bit_program(p));
    for (const auto& v : p.values) CHECK(v.q.qmin == -32768);
    const Tensor x = images(4, 21);
    for (int i = 0; i < kernels::kNumIsas; ++i) {
      const auto isa = static_cast<kernels::Isa>(i);
      if (!kernels::isa_supported(isa)) continue;
      const std::string isa_str = kernels::isa_name(isa);
      CAPTURE(isa_str);
      REQUIRE(kernels::force_isa(isa));
      CHECK(count_differences(p, x, 1 + i % 2) == 0);
    }
    kernels::force_isa(was);
    // The codes use the 16-bit range (not an 8-bit grid in disguise) and track the float simulation.
    Runtime rt(p, {1});
    const Tensor codes = rt.run_codes(x);
    CHECK(codes.dtype() == DType::i16);
    const auto cv = codes.to_vector<std::int32_t>();
    CHECK(std::any_of(cv.begin(), cv.end(), [](std::int32_t c) { return c < -128 || c > 127; }));
    NoGradGuard ng;
    f.sim->model().eval();
    const Tensor sim_out = f.sim->forward({x})[0].contiguous();
    const Tensor rt_out = rt.run(x).contiguous();
    const auto a = sim_out.to_vector<float>(), b = rt_out.to_vector<float>();
    double max_abs = 0, max_diff = 0;
    for (std::size_t k = 0; k < a.size(); ++k) {
      max_abs = std::max(max_abs, std::fabs(static_cast<double>(a[k])));
      max_diff = std::max(max_diff, std::fabs(static_cast<double>(a[k]) - b[k]));
    }
    CHECK(max_diff <= 0.02 * max_abs + 1e-3);
  }
}

TEST_CASE("runtime16: a GRU at W8A16 is refused by the runtime with the op's name (no 16-bit GRU kernel)") {
  auto f = make_sim("gru", a16());
  const Program p = lower(*f.sim);
  CHECK_THROWS_WITH_AS(Runtime(p, {1}), doctest::Contains("gru"), Error);
}
