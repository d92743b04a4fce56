// The ring allreduce alone (train/communicator.hpp Note [Ring order]): milliseconds per call for
// gradient buffers of the zoo models' sizes and a few powers of two, under mpirun (rank 0 prints).
// Separates the transfer cost from the waiting for a slower rank that benchmarks/mpi_epoch.sh's
// per-step communication time includes.
//
//   mpirun -np 2 build/benchmarks/qforge_bench_allreduce [REPEATS]
#include "nn/zoo.hpp"
#include "train/communicator.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace qforge;

int run(int argc, char** argv) {
  train::CommunicatorPtr comm = train::start_world(&argc, &argv);
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 50;
  std::vector<std::pair<std::string, size_t>> rows;
  for (const std::string& m : nn::zoo_names())
    // char-lstm with a 65-character vocabulary (the size of a small English text's character set)
    rows.push_back({m, static_cast<size_t>(nn::build_zoo_model(m, {.vocab = 65}, {.seed = 0})->num_parameters())});
  for (size_t n : {size_t{1} << 10, size_t{1} << 16, size_t{1} << 20, size_t{1} << 22}) rows.push_back({"floats", n});
  if (comm->rank() == 0) std::printf("%-14s %10s %10s %12s %10s\n", "buffer", "floats", "MB", "ms/allreduce", "GB/s(bus)");
  for (const auto& [name, n] : rows) {
    std::vector<float> buf(n, 1.0f);
    comm->barrier();
    comm->allreduce_sum(buf.data(), n);  // warm-up
    comm->barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < repeats; ++i) comm->allreduce_sum(buf.data(), n);
    comm->barrier();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
    const double p = comm->size();
    // bus bandwidth: the bytes each rank sends, 2 (N-1)/N * 4n, per second
    if (comm->rank() == 0)
      std::printf("%-14s %10zu %10.3f %12.3f %10.2f\n", name.c_str(), n, 4.0 * n / 1e6, 1e3 * s,
                  p > 1 ? 2 * (p - 1) / p * 4.0 * n / s / 1e9 : 0.0);
  }
  train::stop_world();
  return 0;
}

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "qforge_bench_allreduce: %s\n", e.what());
    train::world_communicator()->abort("qforge_bench_allreduce failed", 1);
  }
}
