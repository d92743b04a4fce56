// libFuzzer target: a checkpoint's state.json (train::parse_checkpoint_state, pure: touches no file).
#include "tests/fuzz/fuzz_util.hpp"
#include "train/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto st = qforge::train::parse_checkpoint_state(std::string(qforge::fuzz::as_text(data, size)),
                                                          "/nonexistent-qforge-fuzz-checkpoint");
    (void)st.trainer.dump();
  });
  return 0;
}
