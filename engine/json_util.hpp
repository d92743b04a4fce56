// Checked JSON reading for every reader of outside input (model specs, AIMET configs and encodings,
// quantsim.json, checkpoints, int8 bundles).
//
//   parse_json(text, source)   nlohmann's parser with a nesting limit (kMaxJsonDepth): a hostile file of
//                              100,000 '[' is an InputError, not a stack overflow later when something
//                              recursive (dump(), a destructor, an error message) walks it.
//   JsonView(j, source)        a read-only cursor that knows its JSON pointer ("/ops/3/kernel/0"); every
//                              accessor checks the type (and range) and throws InputError
//                              "<source>: <path>: <what is wrong>", so a field of the wrong type is a bad
//                              input (exit 2) naming the file and the field, never a nlohmann type_error.
//   json_excerpt(j)            a bounded rendering of a value for error messages.
#pragma once

#include "engine/error.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace qforge {

// Deep enough for every format qforge reads (the deepest, a bundle, nests 5 levels), shallow enough that
// any recursive walk of a parsed value is safe.
inline constexpr int kMaxJsonDepth = 64;

// Nesting depth of `j`, computed without recursion (stops counting past `limit`).
inline int json_depth(const nlohmann::json& j, int limit = kMaxJsonDepth) {
  std::vector<std::pair<const nlohmann::json*, int>> stack{{&j, 0}};
  int deepest = 0;
  while (!stack.empty()) {
    const auto [v, d] = stack.back();
    stack.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, d + 1);
    if (deepest > limit) return deepest;
    for (const auto& c : *v) stack.emplace_back(&c, d + 1);
  }
  return deepest;
}

// At most `max_chars` characters of j.dump(); a value nested past the depth limit (a document that did
// not come through parse_json) is not rendered, so no recursive dump() can overflow the stack.
inline std::string json_excerpt(const nlohmann::json& j, std::size_t max_chars = 80) {
  if (json_depth(j) > kMaxJsonDepth) return fmt::format("<{} nested deeper than {} levels>", j.type_name(), kMaxJsonDepth);
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > max_chars) s = s.substr(0, max_chars) + "...";
  return s;
}

// Parses `text`; InputError "<source>: invalid JSON: ..." for syntax errors and for nesting deeper than
// `max_depth`. `extra` (optional) sees every parse event, as nlohmann's parser callback.
inline nlohmann::json parse_json(std::string_view text, const std::string& source, int max_depth = kMaxJsonDepth,
                                 const nlohmann::json::parser_callback_t& extra = nullptr) {
  using json = nlohmann::json;
  // Cheap pre-scan (strings skipped) so a hostile nesting is refused before anything is built.
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) escaped = false;
      else if (c == '\\') escaped = true;
      else if (c == '"') in_string = false;
      continue;
    }
    if (c == '"') in_string = true;
    else if (c == '[' || c == '{') {
      if (++depth > max_depth)
        throw InputError(fmt::format("{}: invalid JSON: nested deeper than {} levels", source, max_depth));
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  try {
    if (extra) return json::parse(text.begin(), text.end(), extra);
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{}: invalid JSON: {}", source, e.what()));
  }
}

// Read-only cursor over a parsed document; see the top of the file.
class JsonView {
public:
  JsonView(const nlohmann::json& j, std::string source, std::string path = "")
      : j_(&j), source_(std::move(source)), path_(std::move(path)) {}

  const nlohmann::json& raw() const { return *j_; }
  const std::string& source() const { return source_; }
  std::string path() const { return path_.empty() ? "/" : path_; }

  [[noreturn]] void fail(std::string_view msg) const {
    throw InputError(fmt::format("{}: {}: {}", source_, path(), msg));
  }

  bool is_object() const { return j_->is_object(); }
  bool is_array() const { return j_->is_array(); }
  bool is_null() const { return j_->is_null(); }
  void expect_object() const {
    if (!j_->is_object()) fail(fmt::format("expected an object, got {}", j_->type_name()));
  }
  void expect_array() const {
    if (!j_->is_array()) fail(fmt::format("expected a list, got {}", j_->type_name()));
  }

  bool has(std::string_view key) const { return j_->is_object() && j_->contains(key); }
  // A required member of an object.
  JsonView operator[](std::string_view key) const {
    expect_object();
    const auto it = j_->find(key);
    if (it == j_->end()) fail(fmt::format("missing required field '{}'", key));
    return {*it, source_, path_ + "/" + std::string(key)};
  }
  std::optional<JsonView> find(std::string_view key) const {
    expect_object();
    const auto it = j_->find(key);
    if (it == j_->end()) return std::nullopt;
    return JsonView(*it, source_, path_ + "/" + std::string(key));
  }
  // Element i of a list (the list must have it).
  JsonView operator[](std::size_t i) const {
    expect_array();
    if (i >= j_->size()) fail(fmt::format("expected at least {} elements, got {}", i + 1, j_->size()));
    return {(*j_)[i], source_, fmt::format("{}/{}", path_, i)};
  }
  std::size_t size() const {
    expect_array();
    return j_->size();
  }
  // A list of exactly n elements.
  JsonView list(std::size_t n) const {
    if (size() != n) fail(fmt::format("expected a list of {} elements, got {}", n, j_->size()));
    return *this;
  }

  std::string str() const {
    if (!j_->is_string()) fail(fmt::format("expected a string, got {} {}", j_->type_name(), json_excerpt(*j_)));
    return j_->get<std::string>();
  }
  bool boolean() const {
    if (!j_->is_boolean()) fail(fmt::format("expected true or false, got {} {}", j_->type_name(), json_excerpt(*j_)));
    return j_->get<bool>();
  }
  // An integer in [lo, hi] (a float with an integral value is not accepted).
  std::int64_t integer(std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                       std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    if (j_->is_number_unsigned()) {
      const auto u = j_->get<std::uint64_t>();
      if (hi < 0 || u > static_cast<std::uint64_t>(hi) || static_cast<std::int64_t>(u) < lo)
        fail(fmt::format("{} is out of range [{}, {}]", u, lo, hi));
      return static_cast<std::int64_t>(u);
    }
    if (!j_->is_number_integer()) fail(fmt::format("expected an integer, got {} {}", j_->type_name(), json_excerpt(*j_)));
    const auto v = j_->get<std::int64_t>();
    if (v < lo || v > hi) fail(fmt::format("{} is out of range [{}, {}]", v, lo, hi));
    return v;
  }
  std::int32_t int32(std::int32_t lo = std::numeric_limits<std::int32_t>::min(),
                     std::int32_t hi = std::numeric_limits<std::int32_t>::max()) const {
    return static_cast<std::int32_t>(integer(lo, hi));
  }
  std::uint64_t uinteger(std::uint64_t hi = std::numeric_limits<std::uint64_t>::max()) const {
    if (j_->is_number_unsigned()) {
      const auto u = j_->get<std::uint64_t>();
      if (u > hi) fail(fmt::format("{} is out of range [0, {}]", u, hi));
      return u;
    }
    if (j_->is_number_integer() && j_->get<std::int64_t>() < 0)
      fail(fmt::format("expected a non-negative integer, got {}", j_->get<std::int64_t>()));
    fail(fmt::format("expected a non-negative integer, got {} {}", j_->type_name(), json_excerpt(*j_)));
  }
  // A finite number.
  double number() const {
    if (!j_->is_number()) fail(fmt::format("expected a number, got {} {}", j_->type_name(), json_excerpt(*j_)));
    const double v = j_->get<double>();
    if (!std::isfinite(v)) fail("expected a finite number");
    return v;
  }
  // A finite number that is also finite as a float32.
  float f32() const {
    const double v = number();
    if (std::fabs(v) > static_cast<double>(std::numeric_limits<float>::max()))
      fail(fmt::format("{} does not fit a float32", v));
    return static_cast<float>(v);
  }

  // Optional members with defaults (still type-checked when present).
  std::string str_or(std::string_view key, std::string dflt) const {
    const auto v = find(key);
    return v ? v->str() : std::move(dflt);
  }
  bool bool_or(std::string_view key, bool dflt) const {
    const auto v = find(key);
    return v ? v->boolean() : dflt;
  }
  std::int64_t int_or(std::string_view key, std::int64_t dflt, std::int64_t lo = std::numeric_limits<std::int64_t>::min(),
                      std::int64_t hi = std::numeric_limits<std::int64_t>::max()) const {
    const auto v = find(key);
    return v ? v->integer(lo, hi) : dflt;
  }

private:
  const nlohmann::json* j_;
  std::string source_;
  std::string path_;
};

// Overflow-checked size arithmetic for readers: a * b, or nullopt when it exceeds `limit`.
inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b,
                                                std::uint64_t limit = std::numeric_limits<std::uint64_t>::max()) {
  if (a != 0 && b > limit / a) return std::nullopt;
  return a * b;
}

}  // namespace qforge
