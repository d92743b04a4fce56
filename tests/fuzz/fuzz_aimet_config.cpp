// libFuzzer target: AIMET quantsim config JSON (quant::parse_config, then resolution and explain).
#include "quant/config.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto cfg = qforge::quant::parse_config(std::string(qforge::fuzz::as_text(data, size)), "fuzz-config.json");
    for (const char* type : {"Conv", "Gemm", "Relu", "Add", "LSTM"}) qforge::quant::resolve_op(cfg, type, {"weight", "bias"});
    qforge::quant::explain(cfg);
  });
  return 0;
}
