// Hostile AIMET configs, encodings files (0.6.1 and 1.0.0) and quantsim.json (issue 12): wrong types,
// out-of-range numbers and deep nesting are InputErrors naming the file and the JSON path, never a library
// type error (exit 1) or a stack overflow. Fuzzing regressions: tests/fuzz/regressions/{aimet_config,
// encodings,quantsim_json}/.
#include <doctest/doctest.h>

#include "engine/json_util.hpp"
#include "quant/config.hpp"
#include "quant/encodings_io.hpp"
#include "quant/quant_dir.hpp"
#include "tests/support/fixtures.hpp"

#include <filesystem>

using namespace qforge;
using testing::error_of;
using namespace qforge::quant;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

std::string enc_error(const std::string& text) {
  return error_of([&] { encodings_from_json(parse_json(text, "enc.json"), "enc.json"); });
}

std::string qs_error(const std::string& text) {
  return error_of([&] {
    const json j = parse_json(text, "quantsim.json");
    options_from_quantsim_json(j, "/nonexistent-qforge-dir");
    quantizer_flags_from_quantsim_json(j, "/nonexistent-qforge-dir");
  });
}

const char* kMinimal = R"({"defaults": {"ops": {}, "params": {}}, "params": {}, "op_type": {}, "supergroups": [],
  "model_input": {}, "model_output": {}})";

}  // namespace

TEST_CASE("config: deep nesting and huge bitwidths are InputErrors with the path") {
  const std::string deep = R"({"defaults": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  CHECK(error_of([&] { parse_config(deep, "c.json"); }).find("nested deeper") != std::string::npos);
  json j = json::parse(kMinimal);
  j["defaults"]["supported_kernels"] = {{{"activation", {{"bitwidth", 4294967304LL}, {"dtype", "int"}}},
                                         {"param", {{"bitwidth", 8}, {"dtype", "int"}}}}};
  const std::string m = error_of([&] { parse_config(j.dump(), "c.json"); });
  CHECK(m.find("/defaults/supported_kernels/0/activation/bitwidth") != std::string::npos);
  CHECK(m.find("4294967304") != std::string::npos);
}

TEST_CASE("encodings: wrong types, huge offsets and scales outside float32 are refused naming the path") {
  CHECK(enc_error(R"({"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}, "quantizer_args": {"activation_bitwidth": "8"}})")
            .find("/quantizer_args/activation_bitwidth: expected an integer") != std::string::npos);
  CHECK(enc_error(R"({"version": "0.6.1", "activation_encodings": {}, "param_encodings": {}, "quantizer_args": {"is_symmetric": 1}})")
            .find("/quantizer_args/is_symmetric") != std::string::npos);
  CHECK(enc_error(R"({"version": "0.6.1", "param_encodings": {"w": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "True",
      "min": -1, "max": 1, "offset": -1e300, "scale": 0.01}]}})")
            .find("/param_encodings/w/0: offset") != std::string::npos);
  CHECK(enc_error(R"({"version": "0.6.1", "param_encodings": {"w": [{"bitwidth": 8, "dtype": "int", "is_symmetric": "True",
      "min": -1, "max": 1, "offset": -128, "scale": 1e300}]}})")
            .find("float32") != std::string::npos);
  CHECK(enc_error(R"({"version": "0.6.1", "param_encodings": {"w": [{"bitwidth": 4294967304, "dtype": "int", "is_symmetric": "True",
      "min": -1, "max": 1, "offset": -128, "scale": 0.1}]}})")
            .find("/param_encodings/w/0/bitwidth") != std::string::npos);
  CHECK(enc_error(R"({"version": "1.0.0", "param_encodings": [{"name": "w", "dtype": "INT", "enc_type": "PER_CHANNEL",
      "bw": 8, "is_sym": true, "scale": [0.1, 1e-300], "offset": [-128, -128]}]})")
            .find("/param_encodings/0/1") != std::string::npos);
  CHECK(enc_error("[" + std::string(1000, '[')).find("nested deeper") != std::string::npos);
  // A valid file still reads.
  CHECK(enc_error(R"({"version": "1.0.0", "param_encodings": [{"name": "w", "dtype": "INT", "enc_type": "PER_TENSOR",
      "bw": 8, "is_sym": true, "scale": [0.1], "offset": [-128]}], "activation_encodings": []})")
            .empty());
}

TEST_CASE("quantsim.json: fields of the wrong type or range name the file and path") {
  CHECK(qs_error(R"({"format": "qforge-quantsim", "act_bw": "8"})").find("quantsim.json: /act_bw: expected an integer") !=
        std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "param_bw": 1000})").find("/param_bw") != std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "fold_bn": "yes"})").find("/fold_bn") != std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "scheme": 5})").find("/scheme") != std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "scheme": "nope"})").find("quantsim.json") != std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "quantizers": {"a": 1}})").find("/quantizers: expected a list") !=
        std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "quantizers": [5]})").find("/quantizers/0: expected an object") !=
        std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "quantizers": [{"name": 5}]})").find("/quantizers/0/name") !=
        std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "quantizers": [{"name": "a", "enabled": 0}]})").find("/quantizers/0/enabled") !=
        std::string::npos);
  CHECK(qs_error(R"([1])").find("not a qforge quantsim.json") != std::string::npos);
  CHECK(qs_error(R"({"format": "qforge-quantsim", "quantizers": [{"name": "a"}]})").empty());
}
