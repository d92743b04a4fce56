// Shared helpers of the libFuzzer targets (tests/fuzz/README.md).
//
// A target feeds its input to one reader of outside input. The only acceptable failure is
// qforge::InputError (bad input, exit 2); anything else escaping the reader — another exception type,
// a sanitizer report, a crash, a hang — is a finding.
#pragma once

#include "engine/error.hpp"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <unistd.h>

namespace qforge::fuzz {

inline std::string_view as_text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// A per-process scratch file holding `data` (for the readers that take a path); the directory is removed
// when the process exits.
inline std::filesystem::path scratch_file(const std::string& name, const std::uint8_t* data, std::size_t size) {
  struct Dir {
    std::filesystem::path path = std::filesystem::temp_directory_path() / ("qforge_fuzz_" + std::to_string(::getpid()));
    Dir() { std::filesystem::create_directories(path); }
    ~Dir() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Dir scratch;
  const auto& dir = scratch.path;
  const auto p = dir / name;
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return p;
}

// With QFORGE_FUZZ_VERBOSE set (replay only), says whether each input was accepted or why it was refused:
// how to check that the seeds reach past the first validation.
inline void report(const char* what) {
  static const bool verbose = std::getenv("QFORGE_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "  %s\n", what);
}

// Runs `f`; InputError is the expected refusal of bad input.
template <class F> void expect_ok_or_input_error(F&& f) {
  try {
    f();
    report("accepted");
  } catch (const qforge::InputError& e) {
    report(e.what());
  }
}

}  // namespace qforge::fuzz
