// libFuzzer target: a checkpoint's state.json (train::parse_checkpoint_state, pure: touches no file),
// plus the generator states the trainer keeps in it.
#include "tests/fuzz/fuzz_util.hpp"
#include "train/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  qforge::fuzz::expect_ok_or_input_error([&] {
    const auto st = qforge::train::parse_checkpoint_state(std::string(qforge::fuzz::as_text(data, size)),
                                                          "/nonexistent-qforge-fuzz-checkpoint");
    for (const auto& [key, value] : st.trainer.items()) {
      if (!value.is_object() || !value.contains("s")) continue;
      qforge::Generator g(0);
      qforge::train::generator_from_json(g, value);
    }
  });
  return 0;
}
