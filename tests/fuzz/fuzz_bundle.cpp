// libFuzzer target: int8 deployment bundles. The input is program.json, then the separator line
// "\n--program.bin--\n", then program.bin (no separator: an empty blob). A bundle that passes validation
// (Note [bundle validation]) and is small is then run on the integer runtime and the exact simulation:
// anything they read out of bounds or divide by zero is a validation gap.
#include "engine/json_util.hpp"
#include "quant/runtime/exact.hpp"
#include "quant/runtime/program.hpp"
#include "quant/runtime/runtime.hpp"
#include "tests/fuzz/fuzz_util.hpp"

#include <omp.h>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace rt = qforge::quant::runtime;
  static const bool once = [] {
    omp_set_num_threads(1);
    return true;
  }();
  (void)once;
  const std::string_view all = qforge::fuzz::as_text(data, size);
  constexpr std::string_view kSep = "\n--program.bin--\n";
  const auto cut = all.find(kSep);
  const std::string_view text = all.substr(0, cut);
  const std::string blob(cut == std::string_view::npos ? std::string_view() : all.substr(cut + kSep.size()));
  rt::Program p;
  try {
    const auto desc = qforge::parse_json(text, "fuzz/program.json");
    p = rt::program_from_bundle(desc, [&](const std::string&) { return blob; }, "fuzz/program.json");
  } catch (const qforge::InputError& e) {
    qforge::fuzz::report(e.what());
    return 0;
  }
  // Multiply-adds per sample (validation bounds every factor, so this cannot overflow).
  std::int64_t work = 0;
  for (const auto& v : p.values) work += v.numel();
  for (const auto& o : p.ops) {
    const std::int64_t out = p.values[o.output].numel();
    switch (o.kind) {
      case rt::OpKind::conv2d: work += out * (o.in_c / o.groups) * o.kh * o.kw; break;
      case rt::OpKind::linear: work += out * o.in_c; break;
      case rt::OpKind::maxpool2d:
      case rt::OpKind::avgpool2d: work += out * o.kh * o.kw; break;
      case rt::OpKind::lstm:
      case rt::OpKind::gru: work += p.values[o.output].shape[0] * o.out_c * (o.in_c + o.hidden); break;
      default: work += p.values[o.inputs[0]].numel(); break;
    }
  }
  if (work > (std::int64_t{1} << 22)) return 0;  // valid but too big to run on every execution
  qforge::Shape shape{2};
  shape.insert(shape.end(), p.input_value().shape.begin(), p.input_value().shape.end());
  qforge::Generator gen(static_cast<std::uint64_t>(size));
  const qforge::Tensor x = qforge::Tensor::rand(shape, gen, -4, 4);
  rt::Runtime r(p, {1});
  r.run_codes(x);
  rt::execute_exact_codes(p, x);
  qforge::fuzz::report("accepted and ran");
  return 0;
}
