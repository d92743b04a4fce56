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
  // Every ISA compiled for this architecture lists every kind; the others list none.
  for (int i = 0; i < kNumIsas; ++i) {
    CAPTURE(std::string(isa_name(static_cast<Isa>(i))));
    CHECK(per_isa[i] == (isa_compiled(static_cast<Isa>(i)) ? kNumKernelKinds : 0));
  }
  // Every table slot of a compiled ISA is filled.
  for (int i = 0; i < kNumIsas; ++i) {
    if (!isa_compiled(static_cast<Isa>(i))) continue;
    const KernelTable& t = kernel_table(static_cast<Isa>(i));
    CHECK(t.isa == static_cast<Isa>(i));
    CHECK(static_cast<bool>(t.gemm_requant));
    CHECK(static_cast<bool>(t.gemm_s32));
    CHECK(static_cast<bool>(t.conv2d));
    CHECK(static_cast<bool>(t.dwconv3x3));
    CHECK(static_cast<bool>(t.lstm_step));
    CHECK(static_cast<bool>(t.gru_step));
    CHECK(static_cast<bool>(t.requant));
    CHECK(static_cast<bool>(t.global_avgpool));
    CHECK(static_cast<bool>(t.quantize_linear));
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
  CHECK(parse_isa("neon", &parsed));
  CHECK(parsed == Isa::neon);
  CHECK(parse_isa("neondot", &parsed));
  CHECK(parsed == Isa::neondot);
  CHECK_FALSE(parse_isa("sse9", &parsed));
  MESSAGE("best ISA on this machine: " << std::string(isa_name(best_isa())));
  force_isa(before);
}

TEST_CASE("kernel registry: only the host architecture's ISAs are compiled, and only compiled ISAs are supported") {
  CHECK(isa_compiled(Isa::ref));
#if defined(__x86_64__)
  const Isa native[] = {Isa::baseline, Isa::avx2, Isa::avx512vnni};
  const Isa foreign[] = {Isa::neon, Isa::neondot};
#elif defined(__aarch64__)
  const Isa native[] = {Isa::neon, Isa::neondot};
  const Isa foreign[] = {Isa::baseline, Isa::avx2, Isa::avx512vnni};
  CHECK(isa_supported(Isa::neon));  // Advanced SIMD is mandatory on AArch64
#endif
  for (Isa isa : native) CHECK(isa_compiled(isa));
  for (Isa isa : foreign) {
    CAPTURE(std::string(isa_name(isa)));
    CHECK_FALSE(isa_compiled(isa));
    CHECK_FALSE(isa_supported(isa));
    CHECK_FALSE(force_isa(isa));
  }
  for (int i = 0; i < kNumIsas; ++i)
    if (isa_supported(static_cast<Isa>(i))) CHECK(isa_compiled(static_cast<Isa>(i)));
  CHECK(isa_compiled(best_isa()));
  CHECK(isa_supported(best_isa()));
}
