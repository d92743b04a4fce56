// doctest entry point shared by every test executable.
//
// `--list-isas` prints the kernel ISAs this CPU supports, best first, one per line, and exits: the test
// script runs the ISA-dependent executables once per listed ISA (QFORGE_ISA=<name>).
// When QFORGE_ISA is set, the run fails unless that ISA is the one actually dispatched: the registry falls
// back to the best ISA (with a warning) for an unknown or unsupported name, and a per-ISA run that silently
// tested another ISA would claim coverage it does not have.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include "engine/kernels/kernels.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>

int main(int argc, char** argv) {
  using namespace qforge::kernels;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--list-isas") == 0) {
      for (int k = kNumIsas - 1; k >= 0; --k)
        if (isa_supported(static_cast<Isa>(k))) std::printf("%s\n", isa_name(static_cast<Isa>(k)));
      return 0;
    }
  if (const char* want = std::getenv("QFORGE_ISA"); want != nullptr && *want != '\0') {
    if (std::strcmp(want, isa_name(active_isa())) != 0) {
      std::fprintf(stderr, "QFORGE_ISA=%s requested but the kernels dispatch to %s\n", want, isa_name(active_isa()));
      return 2;
    }
    std::printf("[qforge] kernels dispatched to %s (QFORGE_ISA)\n", isa_name(active_isa()));
  }
  doctest::Context context(argc, argv);
  return context.run();
}
