// qforge: train, quantize, fine-tune, evaluate, export and benchmark from the command line.
#include "apps/cli.hpp"

#include <cstdio>
#include <cstring>
#include <iostream>
#include <map>

using namespace qforge::apps;

namespace {

struct Command {
  int (*run)(int, char**);
  const char* summary;
};

const std::map<std::string, Command>& commands() {
  static const std::map<std::string, Command> kCommands = {
      {"train", {cmd_train, "train a zoo model or spec on a dataset"}},
      {"import", {cmd_import, "import an ONNX model as a qforge model directory"}},
      {"eval", {cmd_eval, "evaluate a model directory (fp32, sim, exact, int8)"}},
      {"run", {cmd_run, "run a model directory on your own tensors (.npz/.npy/.safetensors), save its outputs"}},
      {"quantize", {cmd_quantize, "post-training quantization: calibrate, evaluate, write a quantized model"}},
      {"finetune", {cmd_finetune, "quantization-aware training of a quantized model"}},
      {"export", {cmd_export, "write a self-contained int8 deployment bundle"}},
      {"compare", {cmd_compare, "per-layer FP32 vs simulation vs int8 comparison"}},
      {"analyze", {cmd_analyze, "quantization analyzer: sweeps, per-layer SQNR, HTML report"}},
      {"bench", {cmd_bench, "benchmarks: kernels | infer"}},
      {"models", {cmd_models, "list the built-in model zoo"}},
      {"demo", {cmd_demo, "train -> quantize -> fine-tune -> int8 evaluation"}},
  };
  return kCommands;
}

void usage(std::FILE* f) {
  std::fprintf(f, "usage: qforge <command> [options]   (qforge <command> --help)\n\ncommands:\n");
  for (const auto& [name, c] : commands()) std::fprintf(f, "  %-10s %s\n", name.c_str(), c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "-h" || name == "--help" || name == "help") {
    usage(stdout);
    return 0;
  }
  auto it = commands().find(name);
  if (it == commands().end()) {
    std::fprintf(stderr, "qforge: unknown command '%s'\n", name.c_str());
    usage(stderr);
    return 2;
  }
  // Subcommand parsers see "qforge NAME" as their program name.
  std::string prog = "qforge " + name;
  std::vector<char*> args(argv + 1, argv + argc);
  args[0] = prog.data();
  try {
    return it->second.run(static_cast<int>(args.size()), args.data());
  } catch (const qforge::InputError& e) {
    std::fprintf(stderr, "qforge %s: error: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const cxxopts::exceptions::exception& e) {  // a value of the wrong type (read lazily)
    std::fprintf(stderr, "qforge %s: error: %s (see --help)\n", name.c_str(), e.what());
    return 2;
  } catch (const nlohmann::json::exception& e) {  // a JSON input file with unexpected content
    std::fprintf(stderr, "qforge %s: error: malformed input: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {  // a path that cannot be read or created
    std::fprintf(stderr, "qforge %s: error: %s\n", name.c_str(), e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qforge %s: error: %s\n", name.c_str(), e.what());
    return 1;
  }
}
