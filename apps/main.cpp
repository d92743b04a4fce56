// qforge: train, quantize, fine-tune, evaluate, export and benchmark from the command line.
#include "apps/cli.hpp"
#include "train/communicator.hpp"
#include "train/threads.hpp"
#include "train/trainer.hpp"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <thread>
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

// Commands that run data-parallel under mpirun (docs/distributed.md); the others refuse N > 1.
bool distributed_command(const std::string& name) { return name == "train" || name == "finetune" || name == "quantize"; }

int run(int argc, char** argv);

}  // namespace

// Note [Ranks in the CLI]
// Under mpirun every rank runs the same command line. main() starts the world communicator (MPI only when
// built with it and started by a launcher: a plain run never initialises MPI), silences stdout on ranks
// other than 0 (progress, --json, summaries come from rank 0 only), and ends with one message per failure:
// an error every rank raises together at the same step (DivergedError, from the shared step status) is
// printed by rank 0 and every rank exits with its code; any other error on a rank ends the whole job
// through Communicator::abort (MPI_Abort) with that rank's message (Note [Failure on one rank]). A rank
// other than 0 waits a moment before aborting, so that an error every rank hits (a bad option) is
// reported once, by rank 0, whose abort ends the others first.
int main(int argc, char** argv) {
  qforge::train::CommunicatorPtr comm;
  try {
    comm = qforge::train::start_world(&argc, &argv);
  } catch (const std::exception& e) {  // "built without MPI": every rank says it, the first one prints
    const char* r = std::getenv("OMPI_COMM_WORLD_RANK");
    if (r == nullptr) r = std::getenv("PMI_RANK");
    if (r == nullptr || std::atoi(r) == 0) std::fprintf(stderr, "qforge: error: %s\n", e.what());
    return 2;
  }
  if (comm->size() > 1 && (argc < 2 || !distributed_command(argv[1]))) {
    if (comm->rank() == 0)
      std::fprintf(stderr, "qforge %s: error: only train, finetune and quantize run as several processes (started as %d)\n",
                   argc < 2 ? "" : argv[1], comm->size());
    qforge::train::stop_world();
    return 2;
  }
  if (comm->rank() != 0 && std::freopen("/dev/null", "w", stdout) == nullptr) std::fclose(stdout);
  // Ranks on one machine share its cores: unless OMP_NUM_THREADS or --threads says otherwise, each rank
  // starts with cores / (ranks on this node) OpenMP threads instead of all of them.
  if (comm->size() > 1 && std::getenv("OMP_NUM_THREADS") == nullptr) {
    const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    const int per_node = local != nullptr && std::atoi(local) > 0 ? std::atoi(local) : comm->size();
    const int cores = static_cast<int>(std::thread::hardware_concurrency());
    qforge::train::set_num_threads(std::max(1, cores / per_node));
  }
  int code = 0;
  std::string message;
  bool collective = false;
  try {
    code = run(argc, argv);
  } catch (const qforge::train::DivergedError& e) {
    code = 1;
    message = e.what();
    collective = true;  // every rank stops at the same step with the same message
  } catch (const qforge::InputError& e) {
    code = 2;
    message = e.what();
  } catch (const cxxopts::exceptions::exception& e) {  // a value of the wrong type (read lazily)
    code = 2;
    message = std::string(e.what()) + " (see --help)";
  } catch (const nlohmann::json::exception& e) {  // a JSON input file with unexpected content
    code = 2;
    message = std::string("malformed input: ") + e.what();
  } catch (const std::filesystem::filesystem_error& e) {  // a path that cannot be read or created
    code = 2;
    message = e.what();
  } catch (const std::exception& e) {
    code = 1;
    message = e.what();
  }
  if (!message.empty()) {
    const std::string line = fmt::format("qforge {}: error: {}", argc < 2 ? "" : argv[1], message);
    if (comm->size() == 1 || collective) {
      if (comm->rank() == 0) std::fprintf(stderr, "%s\n", line.c_str());
    } else {
      if (comm->rank() != 0) std::this_thread::sleep_for(std::chrono::milliseconds(500));
      comm->abort(line, code);
    }
  }
  std::fflush(stdout);
  qforge::train::stop_world();
  return code;
}

namespace {

int run(int argc, char** argv) {
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
  return it->second.run(static_cast<int>(args.size()), args.data());  // errors: main()
}

}  // namespace
