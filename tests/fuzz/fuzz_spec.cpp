// libFuzzer target: model spec JSON (parse_json + nn::build_model, the path of load_model_spec).
#include "engine/json_util.hpp"
#include "nn/spec.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto spec = qforge::parse_json(qforge::fuzz::as_text(data, size), "fuzz-spec.json");
    qforge::nn::BuildOptions opt;
    opt.max_parameters = std::uint64_t{1} << 20;  // keep each execution small (the limit itself is tested)
    auto model = qforge::nn::build_model(spec, opt);
    qforge::nn::write_spec(*model).dump();
  });
  return 0;
}
