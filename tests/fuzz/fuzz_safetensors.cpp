// libFuzzer target: safetensors files (nn::parse_safetensors, a whole file image).
#include "nn/safetensors.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto c = qforge::nn::parse_safetensors(data, size, "fuzz.safetensors");
    // Whatever was accepted must serialize and read back.
    const auto bytes = qforge::nn::serialize_safetensors(c.tensors, c.metadata);
    qforge::nn::parse_safetensors(bytes.data(), bytes.size(), "fuzz-roundtrip.safetensors");
  });
  return 0;
}
