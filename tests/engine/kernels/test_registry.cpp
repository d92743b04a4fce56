// The registry test: every registered kernel of every ISA is bit-exact against its scalar reference.
#include "tests/engine/kernels/kernel_checks.hpp"

#include <doctest/doctest.h>

#include <set>
#include <string>

using namespace qforge::kernels;

TEST_CASE("kernel registry: every SIMD kernel is bit-exact against its reference") {
  int checked = 0;
  for (const KernelInfo& k : kernel_registry()) {
    if (k.isa == Isa::ref) continue;
    if (!isa_supported(k.isa)) {
      MESSAGE("skipping " << std::string(k.name) << ": this CPU lacks " << std::string(isa_name(k.isa)));
      continue;
    }
    INFO(std::string(k.name));
    CHECK(testing::check_kind(k.kind, k.isa) == 0);
    ++checked;
  }
  CHECK(checked > 0);
}

TEST_CASE("kernel registry: each kernel is listed once per ISA with an ISA-suffixed name") {
  std::set<std::string> names;
  int per_isa[kNumIsas] = {};
  for (const KernelInfo& k : kernel_registry()) {
    CHECK(names.insert(k.name).second);
    const std::string suffix = std::string("__") + isa_name(k.isa);
    const std::string name = k.name;
    CHECK(name.size() > suffix.size());
    CHECK(name.substr(name.size() - suffix.size()) == suffix);
    ++per_isa[static_cast<int>(k.isa)];
  }
  for (int i = 0; i < kNumIsas; ++i) CHECK(per_isa[i] == kNumKernelKinds);
  // Every table slot is filled.
  for (int i = 0; i < kNumIsas; ++i) {
    const KernelTable& t = kernel_table(static_cast<Isa>(i));
    CHECK(t.isa == static_cast<Isa>(i));
    CHECK(static_cast<bool>(t.gemm_requant));
    CHECK(static_cast<bool>(t.gemm_s32));
    CHECK(static_cast<bool>(t.conv2d));
    CHECK(static_cast<bool>(t.dwconv3x3));
    CHECK(static_cast<bool>(t.lstm_step));
    CHECK(static_cast<bool>(t.gru_step));
  }
}

TEST_CASE("kernel dispatch: force_isa switches the active table and refuses unsupported ISAs") {
  const Isa before = active_isa();
  CHECK(isa_supported(Isa::ref));
  CHECK(force_isa(Isa::ref));
  CHECK(active_isa() == Isa::ref);
  CHECK(&active_kernels() == &kernel_table(Isa::ref));
  for (int i = 0; i < kNumIsas; ++i) {
    const auto isa = static_cast<Isa>(i);
    CHECK(force_isa(isa) == isa_supported(isa));
  }
  CHECK(force_isa(best_isa()));
  CHECK(active_isa() == best_isa());
  Isa parsed{};
  CHECK(parse_isa("avx512vnni", &parsed));
  CHECK(parsed == Isa::avx512vnni);
  CHECK(parse_isa("avx2", &parsed));
  CHECK(parsed == Isa::avx2);
  CHECK_FALSE(parse_isa("sse9", &parsed));
  MESSAGE("best ISA on this machine: " << std::string(isa_name(best_isa())));
  force_isa(before);
}
