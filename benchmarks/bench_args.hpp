// Command-line parsing shared by the benchmark programs: --help, and a clear message with exit code 2 for
// an unknown option or a malformed value (never an uncaught exception).
#pragma once

#include <cxxopts.hpp>

#include <cstdio>

namespace qforge::bench {

// Adds -h/--help to `opts` and parses argv into `out`. Returns the exit code the program should end with
// (0 after printing the help, 2 after reporting bad usage on stderr), or -1 to go on.
inline int parse_bench_args(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out) {
  opts.add_options()("h,help", "show this help");
  try {
    out = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    std::fprintf(stderr, "%s: %s (see --help)\n", opts.program().c_str(), e.what());
    return 2;
  }
  if (out.count("help")) {
    std::printf("%s\n", opts.help().c_str());
    return 0;
  }
  return -1;
}

}  // namespace qforge::bench
