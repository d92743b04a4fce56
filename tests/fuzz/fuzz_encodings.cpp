// libFuzzer target: AIMET encodings JSON, every schema version (0.4.0/0.5.1/0.6.1 maps, 1.0.0 lists, the
// AdaRound param-only map); what is accepted is written back in both versions.
#include "engine/json_util.hpp"
#include "quant/encodings_io.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto j = qforge::parse_json(qforge::fuzz::as_text(data, size), "fuzz-encodings.json");
    const auto f = qforge::quant::encodings_from_json(j, "fuzz-encodings.json");
    for (const char* v : {"0.6.1", "1.0.0"}) {
      const auto out = qforge::quant::encodings_to_json(f, v);
      qforge::quant::encodings_from_json(qforge::parse_json(out.dump(), "fuzz-roundtrip.json"), "fuzz-roundtrip.json");
    }
  });
  return 0;
}
