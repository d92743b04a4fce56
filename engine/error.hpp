// qforge::Error and the always-on checks used everywhere above the kernels.
//
// API misuse and bad input throw qforge::Error (or a subclass) whose message names the op or file and
// the offending shapes/values. Internal invariants use QFORGE_ASSERT, which also throws: qforge never
// aborts on behalf of its caller.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <stdexcept>
#include <string>

namespace qforge {

class Error : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

// Bad user input (files, options, specs). The CLI maps it to exit code 2.
class InputError : public Error {
public:
  using Error::Error;
};

}  // namespace qforge

// QFORGE_CHECK(cond, "fmt {}", args...) throws qforge::Error with the formatted message.
#define QFORGE_CHECK(cond, ...)                                   \
  do {                                                            \
    if (!(cond)) throw ::qforge::Error(::fmt::format(__VA_ARGS__)); \
  } while (0)

// Internal invariant: a failure is a qforge bug, reported with the source location.
#define QFORGE_ASSERT(cond)                                                                     \
  do {                                                                                          \
    if (!(cond))                                                                                \
      throw ::qforge::Error(::fmt::format("internal error: {} ({}:{})", #cond, __FILE__, __LINE__)); \
  } while (0)
