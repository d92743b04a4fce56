// Golden fixtures generated from PyTorch by tools/gen_fixtures*.py (committed under tests/fixtures/).
// Tensors are stored in JSON as {"shape": [...], "dtype": "f32"|"f64"|"i64", "data": [...]}.
#pragma once

#include "engine/error.hpp"
#include "engine/tensor.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <string>

namespace qforge::testing {

std::filesystem::path source_root();                   // from QFORGE_SOURCE_ROOT or the build's cwd
std::filesystem::path fixture_path(const std::string& name);  // tests/fixtures/<name>
nlohmann::json load_fixture(const std::string& name);
Tensor tensor_from_json(const nlohmann::json& j, DType as = DType::f64);
// The shared data folder (QFORGE_DATA or ../shared/data next to the checkout); empty if absent.
std::filesystem::path data_dir();
// An empty directory <system temp>/qforge-test-<name>-<pid>, removed first if it exists (one per test).
std::filesystem::path temp_dir(const std::string& name);

// The message of the InputError f() throws, or "" when it throws none (other errors propagate): for tests
// that check what a reader says about a bad file.
template <class F> std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace qforge::testing
