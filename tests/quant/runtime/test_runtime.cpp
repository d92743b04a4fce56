// Integer runtime vs exact simulation: bit-exactness on every program value for each zoo model (after
// calibration and after a few QAT steps), on every ISA; bundle round trip; output close to the float sim.
#include <doctest/doctest.h>

#include "engine/kernels/kernels.hpp"
#include "quant/runtime/compare.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/runtime.hpp"
#include "tests/quant/runtime/helpers.hpp"

#include <filesystem>

using namespace qforge;
using namespace qforge::quant;
using namespace qforge::quant::runtime;
using qforge::testing::images;
using qforge::testing::count_differences;
using qforge::testing::make_sim;

namespace {

bool codes_vary(const Tensor& codes) {
  const auto v = codes.to_vector<std::int32_t>();
  return std::any_of(v.begin(), v.end(), [&](std::int32_t c) { return c != v[0]; });
}

}  // namespace

TEST_CASE("runtime: int8 runtime equals the exact simulation on every value of every zoo model") {
  for (const std::string name : {"mlp", "mnist-cnn", "dw-cnn", "resnet-tiny", "lstm", "gru"}) {
    CAPTURE(name);
    auto f = make_sim(name);
    const Program p = lower(*f.sim);
    const Tensor x = images(5, 99);
    CHECK(count_differences(p, x) == 0);
    CHECK(codes_vary(Runtime(p, {1}).run_codes(x)));  // not a degenerate all-equal output
  }
}

TEST_CASE("runtime: per-channel weights and batch/thread count do not change the integers") {
  QuantSimOptions opt;
  opt.config = "per_channel";
  for (const std::string name : {"mnist-cnn", "dw-cnn", "resnet-tiny"}) {
    CAPTURE(name);
    auto f = make_sim(name, opt);
    const Program p = lower(*f.sim);
    bool any_pc = false;
    for (const auto& op : p.ops) any_pc = any_pc || op.per_channel;
    CHECK(any_pc);
    const Tensor x = images(7, 5);
    CHECK(count_differences(p, x, 2) == 0);
    // One sample at a time gives the same codes as the batch.
    Runtime rt(p, {1});
    const Tensor all = rt.run_codes(x);
    const Tensor one = rt.run_codes(x.narrow(0, 3, 1));
    CHECK(one.to_vector<int>() == all.narrow(0, 3, 1).contiguous().to_vector<int>());
  }
}

TEST_CASE("runtime: every ISA computes the same codes as the exact simulation") {
  auto f = make_sim("resnet-tiny");
  auto g = make_sim("lstm");
  const Tensor x = images(3, 4);
  const kernels::Isa was = kernels::active_isa();
  for (int i = 0; i < kernels::kNumIsas; ++i) {  // every ISA of the registry, x86-64 and ARM alike
    const auto isa = static_cast<kernels::Isa>(i);
    if (!kernels::isa_compiled(isa)) continue;  // the other architecture's ISAs
    if (!kernels::isa_supported(isa)) {
      MESSAGE("skipping ISA " << kernels::isa_name(isa) << ": not supported by this machine");
      continue;
    }
    const std::string isa_str = kernels::isa_name(isa);
    CAPTURE(isa_str);
    REQUIRE(kernels::force_isa(isa));
    CHECK(count_differences(lower(*f.sim), x) == 0);
    CHECK(count_differences(lower(*g.sim), x) == 0);
  }
  kernels::force_isa(was);
}

TEST_CASE("runtime: still bit-exact after QAT steps with learned ranges") {
  for (const std::string name : {"mnist-cnn", "lstm"}) {
    CAPTURE(name);
    QuantSimOptions opt;
    opt.range_learning = RangeLearning::lsq;
    auto f = make_sim(name, opt);
    std::vector<std::pair<Tensor, double>> params;  // (tensor, learning rate)
    for (auto& [n, t] : f.sim->model().named_parameters()) params.emplace_back(t, 0.02);
    for (auto& t : f.sim->range_parameters()) params.emplace_back(t, 1e-4);
    f.sim->model().train();
    const Tensor x = images(8, 21);
    const Tensor y = Tensor::from_vector(std::vector<int32_t>{0, 1, 2, 3, 4, 5, 6, 7}, {8});
    for (int step = 0; step < 3; ++step) {
      for (auto& [t, lr] : params) t.zero_grad();
      Tensor loss = ops::cross_entropy(f.sim->forward({x})[0], y);
      loss.backward();
      NoGradGuard ng;
      for (auto& [t, lr] : params)
        if (t.grad().defined()) t.copy_(ops::sub(t, ops::mul(t.grad(), lr)));
    }
    f.sim->model().eval();
    const Program p = lower(*f.sim);
    CHECK(count_differences(p, images(4, 3)) == 0);
  }
}

TEST_CASE("runtime: exact mode stays close to the float simulation") {
  for (const std::string name : {"mnist-cnn", "resnet-tiny", "lstm"}) {
    CAPTURE(name);
    auto f = make_sim(name);
    const Tensor x = images(8, 17);
    const Tensor exact = ExactSim(*f.sim).forward(x);
    Tensor sim_out;
    {
      NoGradGuard ng;
      f.sim->model().eval();
      sim_out = f.sim->forward({x})[0];
    }
    // Both lie on the same output grid; allow a few LSBs of drift through the layers.
    const float lsb = lower(*f.sim).output_value().q.scale;
    const auto a = exact.to_vector<double>(), b = sim_out.to_vector<double>();
    double max_diff = 0;
    for (std::size_t k = 0; k < a.size(); ++k) max_diff = std::max(max_diff, std::abs(a[k] - b[k]));
    CHECK(max_diff <= 12 * lsb);
    CHECK(sqnr_db(sim_out, exact) > 20.0);
  }
}

TEST_CASE("runtime: a bundle loads without the model and runs identically") {
  for (const std::string name : {"dw-cnn", "resnet-tiny", "lstm"}) {
    CAPTURE(name);
    auto f = make_sim(name);
    const Program p = lower(*f.sim);
    const auto dir = std::filesystem::temp_directory_path() / ("qforge_bundle_test_" + name);
    std::filesystem::remove_all(dir);
    save_bundle(p, dir);
    const Program q = load_bundle(dir);
    CHECK(same_program(p, q));
    const Tensor x = images(4, 8);
    Runtime a(p, {1}), b(q, {1});
    CHECK(a.run_codes(x).to_vector<int>() == b.run_codes(x).to_vector<int>());
    CHECK(a.run(x).to_vector<float>() == b.run(x).to_vector<float>());
    std::filesystem::remove_all(dir);
  }
}

TEST_CASE("runtime: a corrupt bundle is refused with the file named") {
  auto f = make_sim("mlp");
  const auto dir = std::filesystem::temp_directory_path() / "qforge_bundle_corrupt";
  std::filesystem::remove_all(dir);
  save_bundle(lower(*f.sim), dir);
  std::filesystem::resize_file(dir / "program.bin", 100);
  CHECK_THROWS_WITH_AS(load_bundle(dir), doctest::Contains("program.bin"), InputError);
  std::filesystem::remove_all(dir);
  CHECK_THROWS_AS(load_bundle(dir), InputError);
}

TEST_CASE("runtime: compare reports per-layer SQNR and zero exact-vs-int8 differences") {
  auto f = make_sim("resnet-tiny");
  const auto j = compare_layers(*f.sim, images(4, 2));
  REQUIRE(j["layers"].size() >= 8);
  bool saw_add = false;
  for (const auto& l : j["layers"]) {
    CHECK(l["exact_vs_int8_differing"] == 0);
    CHECK(l["max_diff_lsb"].get<int>() >= 0);
    if (!l["sqnr_sim_db"].is_null()) CHECK(l["sqnr_sim_db"].get<double>() > 10.0);
    saw_add = saw_add || l["layer"] == "block1.relu2";
  }
  CHECK(saw_add);
  CHECK(j["output"]["exact_vs_int8_differing"] == 0);
}

TEST_CASE("runtime: convolutions run on the registered conv2d kernel, bit-exact across im2col blocks and threads") {
  auto f = make_sim("mnist-cnn");
  const Program p = lower(*f.sim);
  Runtime rt(p, {2});
  const auto names = rt.op_kernels(64);
  REQUIRE(names.size() == p.ops.size());
  std::string conv2d_name;
  for (const auto& info : kernels::kernel_registry())
    if (info.kind == kernels::KernelKind::conv2d && info.isa == kernels::active_isa()) conv2d_name = info.name;
  int convs = 0;
  for (std::size_t i = 0; i < p.ops.size(); ++i) {
    if (p.ops[i].kind != OpKind::conv2d) continue;
    ++convs;
    CHECK(names[i].rfind(conv2d_name + " > qs8_qc8w_gemm_", 0) == 0);
  }
  CHECK(convs == 2);
  // 40 samples: the first conv has 31,360 GEMM rows, many im2col blocks per thread.
  CHECK(count_differences(p, images(40, 8), 2) == 0);
}
