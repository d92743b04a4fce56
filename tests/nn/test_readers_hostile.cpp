// Hostile model specs and safetensors files (issue 12): sizes are checked with overflow-safe arithmetic
// before anything is allocated, JSON nesting is limited, and every bad input is an InputError naming the
// file/node and the field. Fuzzing regressions live in tests/fuzz/regressions/{spec,safetensors}/.
#include <doctest/doctest.h>

#include "engine/json_util.hpp"
#include "nn/safetensors.hpp"
#include "nn/spec.hpp"

#include <filesystem>
#include <fstream>

using namespace qforge;
using namespace qforge::nn;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string build_error(const std::string& text) {
  try {
    build_model(parse_json(text, "spec.json"));
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

std::string layer(const std::string& type, const std::string& args) {
  return R"({"nodes": [{"name": "l", "type": ")" + type + R"(", "args": )" + args + "}]}";
}

std::vector<char> raw_safetensors(const std::string& header, std::size_t data_bytes) {
  std::vector<char> out(8 + header.size() + data_bytes, 0);
  const uint64_t n = header.size();
  std::memcpy(out.data(), &n, 8);
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

std::string parse_error(const std::vector<char>& bytes) {
  try {
    parse_safetensors(bytes.data(), bytes.size(), "w.safetensors");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("spec: layer sizes whose element counts overflow are refused before allocation") {
  CHECK(build_error(layer("Linear", R"({"in_features": 4, "out_features": 4611686018427387904})")).find("out of range") !=
        std::string::npos);
  CHECK(build_error(layer("Linear", R"({"in_features": 2147483647, "out_features": 2147483647})")).find("more than") !=
        std::string::npos);
  CHECK(build_error(layer("Conv2d", R"({"in_channels": 65536, "out_channels": 65536, "kernel_size": 65536})"))
            .find("node 'l'") != std::string::npos);
  CHECK(build_error(layer("Embedding", R"({"num_embeddings": 1000000000, "embedding_dim": 1000000000})"))
            .find("more than") != std::string::npos);
  CHECK(build_error(layer("LSTM", R"({"input_size": 1000000000, "hidden_size": 1000000000})")).find("more than") !=
        std::string::npos);
  CHECK(build_error(layer("GRU", R"({"input_size": 18446744073709551615, "hidden_size": 4})")).find("out of range") !=
        std::string::npos);
  CHECK(build_error(layer("MaxPool2d", R"({"kernel_size": -9223372036854775807})")).find("out of range") !=
        std::string::npos);
  // Many layers that are each allowed but together too large.
  BuildOptions small;
  small.max_parameters = 1000;
  CHECK_THROWS_WITH_AS(build_model(json::parse(layer("Linear", R"({"in_features": 100, "out_features": 100})")), small),
                       doctest::Contains("more than 1000"), InputError);
}

TEST_CASE("spec: wrong types, huge output indices and non-finite numbers are InputErrors naming the node") {
  CHECK(build_error(layer("Linear", R"({"in_features": "4", "out_features": 4})")).find("in_features") !=
        std::string::npos);
  CHECK(build_error(layer("Dropout", R"({"p": [0.5]})")).find("'p'") != std::string::npos);
  CHECK(build_error(R"({"nodes": [{"name": "a", "type": "ReLU"}], "outputs": ["a:99999999999999"]})").find("out of range") !=
        std::string::npos);
  CHECK(build_error(R"({"nodes": [{"name": "a", "type": "ReLU", "inputs": [["input"]]}]})").find("must be a string") !=
        std::string::npos);
  CHECK(build_error(layer("LSTM", R"({"input_size": 4, "hidden_size": 4, "bias": "yes"})")).find("bias") !=
        std::string::npos);
}

TEST_CASE("spec: deeply nested JSON is refused by the parser, and error messages never recurse into it") {
  const fs::path p = fs::temp_directory_path() / "qforge_hostile_spec.json";
  {
    std::ofstream f(p);
    f << R"({"nodes": [{"name": "a", "type": "ReLU", "args": )" << std::string(100000, '[') << std::string(100000, ']')
      << "}]}";
  }
  CHECK_THROWS_WITH_AS(load_model_spec(p.string()), doctest::Contains("nested deeper"), InputError);
  fs::remove(p);
  // A document built in memory (not through parse_json) that is nested deeply: the message does not dump it.
  json deep = json::array();
  for (int i = 0; i < 2000; ++i) deep = json::array({std::move(deep)});
  json spec = {{"nodes", {{{"name", "a"}, {"type", "ReLU"}, {"args", deep}}}}};
  CHECK_THROWS_WITH_AS(build_model(spec), doctest::Contains("nested deeper"), InputError);
}

TEST_CASE("json_util: JsonView names the path, checks ranges; parse_json limits depth outside strings") {
  const json j = parse_json(R"({"a": [1, "x", -3, 18446744073709551615], "s": "[[[[[[[[["})", "f.json", 3);
  const JsonView v(j, "f.json");
  CHECK(v["a"][0].integer(0, 5) == 1);
  CHECK_THROWS_WITH_AS(v["a"][1].integer(), doctest::Contains("f.json: /a/1: expected an integer"), InputError);
  CHECK_THROWS_WITH_AS(v["a"][2].integer(0, 5), doctest::Contains("/a/2: -3 is out of range"), InputError);
  CHECK_THROWS_WITH_AS(v["a"][3].integer(), doctest::Contains("/a/3"), InputError);
  CHECK_THROWS_WITH_AS(v["a"][4], doctest::Contains("/a: expected at least 5"), InputError);
  CHECK_THROWS_WITH_AS(v["b"], doctest::Contains("/: missing required field 'b'"), InputError);
  CHECK_THROWS_WITH_AS(v["s"].boolean(), doctest::Contains("/s: expected true or false"), InputError);
  CHECK_THROWS_WITH_AS(parse_json("[[[[1]]]]", "g.json", 3), doctest::Contains("g.json: invalid JSON: nested"), InputError);
  CHECK_THROWS_WITH_AS(parse_json("{", "g.json"), doctest::Contains("g.json: invalid JSON"), InputError);
  CHECK(checked_mul(uint64_t{1} << 32, uint64_t{1} << 32) == std::nullopt);
  CHECK(checked_mul(0, ~uint64_t{0}) == uint64_t{0});
}

TEST_CASE("safetensors: shapes that overflow, deep headers and wrong-typed fields are InputErrors") {
  // [0, 2^40, 2^40]: no data, but strides would overflow.
  CHECK(parse_error(raw_safetensors(R"({"t": {"dtype": "F32", "shape": [0, 1099511627776, 1099511627776], "data_offsets": [0, 0]}})", 0))
            .find("too many elements") != std::string::npos);
  // Element count × size wraps past 2^64 to a small number.
  CHECK(parse_error(raw_safetensors(R"({"t": {"dtype": "F32", "shape": [4611686018427387904, 4], "data_offsets": [0, 0]}})", 0))
            .find("w.safetensors") != std::string::npos);
  const std::string deep = R"({"t": {"dtype": "F32", "shape": )" + std::string(50000, '[') + std::string(50000, ']') +
                           R"(, "data_offsets": [0, 0]}})";
  CHECK(parse_error(raw_safetensors(deep, 0)).find("nested deeper") != std::string::npos);
  CHECK(parse_error(raw_safetensors(R"({"t": {"dtype": 7, "shape": [], "data_offsets": [0, 4]}})", 4)).find("dtype") !=
        std::string::npos);
  CHECK(parse_error(raw_safetensors(R"({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4))
            .find("non-negative") != std::string::npos);
  CHECK(parse_error(raw_safetensors(R"({"__metadata__": {"a": 1}})", 0)).find("__metadata__") != std::string::npos);
}
