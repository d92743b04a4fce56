// libFuzzer target: quantsim.json of a quantized model directory (the options and per-quantizer flags).
#include "engine/json_util.hpp"
#include "quant/quant_dir.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto j = qforge::parse_json(qforge::fuzz::as_text(data, size), "fuzz/quantsim.json");
    const std::filesystem::path dir = "/nonexistent-qforge-fuzz-dir";  // no config.json next to it
    qforge::quant::options_from_quantsim_json(j, dir);
    qforge::quant::quantizer_flags_from_quantsim_json(j, dir);
  });
  return 0;
}
