// libFuzzer target: numpy files (data::parse_npy for inputs starting with the .npy magic, data::parse_npz
// otherwise); whatever an .npz yields is also offered to make_tensor_splits (--data tensors:FILE) and,
// when accepted, its first example is gathered.
#include "data/tensors.hpp"
#include "tests/fuzz/fuzz_util.hpp"

#include <cstring>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    if (size >= 6 && std::memcmp(data, "\x93NUMPY", 6) == 0) {
      const auto a = qforge::data::parse_npy(data, size, "fuzz.npy");
      (void)a.tensor.numel();
      return;
    }
    qforge::data::NamedArrays arrays;
    for (auto& [name, a] : qforge::data::parse_npz(data, size, "fuzz.npz")) arrays[name] = {a.tensor, a.descr};
    const auto splits = qforge::data::make_tensor_splits(std::move(arrays), "fuzz.npz");
    const std::int64_t first = 0;
    (void)splits.test->get_batch(std::span<const std::int64_t>(&first, 1), nullptr);
  });
  return 0;
}
