#include "apps/cli.hpp"

#include "quant/quant_dir.hpp"
#include "train/communicator.hpp"

#include <cstdio>
#include <iostream>

namespace qforge::apps {

bool parse_or_help(cxxopts::Options& opts, int argc, char** argv, cxxopts::ParseResult& out) {
  opts.add_options("help")("h,help", "show this help");
  try {
    out = opts.parse(argc, argv);
  } catch (const cxxopts::exceptions::exception& e) {
    throw UsageError(fmt::format("{} (see --help)", e.what()));  // main() prefixes "qforge CMD: error:"
  }
  if (out.count("help")) {
    std::cout << opts.help() << std::endl;
    return true;
  }
  if (!out.unmatched().empty())
    throw UsageError(fmt::format("{}: unexpected argument '{}' (see --help)", opts.program(), out.unmatched()[0]));
  return false;
}

std::string required(const cxxopts::ParseResult& r, const std::string& name) {
  if (!r.count(name)) throw UsageError(fmt::format("--{} is required (see --help)", name));
  return r[name].as<std::string>();
}

void emit_json(const Json& j) {
  std::cout << j.dump() << std::endl;
}

void print_result(const cxxopts::ParseResult& r, const Json& summary) {
  if (r.count("json")) {
    emit_json(summary);
  } else {
    std::cout << summary.dump(2) << std::endl;
  }
}

void require_quantized_dir(const std::string& option, const std::filesystem::path& dir) {
  if (!quant::is_quantized_dir(dir))
    throw UsageError(fmt::format("--{} {}: not a quantized model directory (run qforge quantize first)", option,
                                 dir.string()));
}

void say(const std::string& s) {
  if (train::world_communicator()->rank() != 0) return;  // Note [Ranks in the CLI]: rank 0 speaks
  std::cerr << s << std::endl;
}

}  // namespace qforge::apps
