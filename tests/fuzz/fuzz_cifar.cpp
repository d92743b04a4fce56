// libFuzzer target: CIFAR-10 binary batches (raw or gzip) read by data::read_cifar10.
#include "data/cifar.hpp"
#include "tests/fuzz/fuzz_util.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto path = qforge::fuzz::scratch_file("data_batch_1.bin", data, size);
  qforge::fuzz::expect_ok_or_input_error([&] {
    auto ds = qforge::data::read_cifar10({path}, "fuzz");
    (void)ds->size();
  });
  return 0;
}
