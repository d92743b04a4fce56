// libFuzzer target: IDX files (raw or gzip) read by data::read_idx.
#include "data/idx.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qforge::fuzz::scratch_file("input.idx", data, size);
  qforge::fuzz::expect_ok_or_input_error([&] {
    const qforge::Tensor t = qforge::data::read_idx(path);
    (void)t.numel();
  });
  return 0;
}
