// The single-process communicator, the process-wide world communicator and the helpers on top of the
// interface (communicator.hpp). No MPI here: communicator_mpi.cpp is the only file that includes mpi.h.
#include "train/communicator.hpp"

#include "engine/error.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace qforge::train {

#ifdef QFORGE_HAVE_MPI
CommunicatorPtr make_mpi_communicator(int* argc, char*** argv);  // communicator_mpi.cpp
void finalize_mpi();
#endif

namespace {

class LocalCommunicator final : public Communicator {
public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  const char* backend() const override { return "local"; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int root) override {
    QFORGE_CHECK(root == 0, "broadcast: root {} does not exist in a one-process run", root);
  }
  void barrier() override {}
  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s\n", message.c_str());
    std::fflush(stderr);
    std::_Exit(code);
  }
};

std::mutex g_mu;
CommunicatorPtr g_world;
bool g_mpi_started = false;

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  return std::atoi(v);
}

}  // namespace

CommunicatorPtr local_communicator() { return std::make_shared<LocalCommunicator>(); }

CommunicatorPtr world_communicator() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_world) g_world = local_communicator();
  return g_world;
}

bool built_with_mpi() {
#ifdef QFORGE_HAVE_MPI
  return true;
#else
  return false;
#endif
}

int launcher_world_size() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"})
    if (const int n = env_int(name); n > 0) return n;
  return 1;
}

CommunicatorPtr start_world(int* argc, char*** argv) {
  const bool launched = launcher_world_size() > 1 || std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr ||
                        std::getenv("PMI_RANK") != nullptr || std::getenv("PMIX_RANK") != nullptr;
#ifdef QFORGE_HAVE_MPI
  if (launched) {
    CommunicatorPtr c = make_mpi_communicator(argc, argv);
    std::lock_guard<std::mutex> lock(g_mu);
    g_world = c;
    g_mpi_started = true;
    return c;
  }
#else
  (void)argc;
  (void)argv;
  if (launched && launcher_world_size() > 1)
    throw Error(fmt::format("qforge was built without MPI: it cannot run as one of {} processes under mpirun "
                            "(install libopenmpi-dev and rebuild, or start one process)",
                            launcher_world_size()));
#endif
  return world_communicator();
}

void stop_world() {
#ifdef QFORGE_HAVE_MPI
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_mpi_started) {
    finalize_mpi();
    g_mpi_started = false;
    g_world = local_communicator();
  }
#endif
}

void broadcast_string(Communicator& c, std::string& s, int root) {
  if (c.size() == 1) return;
  uint64_t n = s.size();
  c.broadcast(&n, sizeof n, root);
  s.resize(n);
  if (n > 0) c.broadcast(s.data(), n, root);
}

std::vector<std::string> allgather_strings(Communicator& c, const std::string& mine) {
  std::vector<std::string> all(static_cast<size_t>(c.size()));
  for (int r = 0; r < c.size(); ++r) {
    if (r == c.rank()) all[r] = mine;
    broadcast_string(c, all[r], r);
  }
  return all;
}

}  // namespace qforge::train
