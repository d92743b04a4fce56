// The MPI communicator: the only file in the tree that includes mpi.h (DESIGN.md §7), compiled only when
// meson finds MPI. allreduce_sum is qforge's own ring over point-to-point messages, so the summation
// order is fixed (Note [Ring order] in communicator.hpp); broadcast and barrier are MPI's (they move
// bytes, they do not add).
#include "train/communicator.hpp"

#include "engine/error.hpp"

#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <limits>
#include <vector>

namespace qforge::train {

namespace {

using Clock = std::chrono::steady_clock;

template <class T> MPI_Datatype mpi_type();
template <> MPI_Datatype mpi_type<float>() { return MPI_FLOAT; }
template <> MPI_Datatype mpi_type<double>() { return MPI_DOUBLE; }

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(fmt::format("MPI {} failed: {}", what, std::string(msg, static_cast<size_t>(len))));
}

class MpiCommunicator final : public Communicator {
public:
  MpiCommunicator() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // Errors come back as return codes (turned into qforge::Error) instead of ending the job silently.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const char* backend() const override { return "mpi"; }
  void allreduce_sum(float* data, size_t n) override { ring(data, n); }
  void allreduce_sum(double* data, size_t n) override { ring(data, n); }

  void broadcast(void* data, size_t bytes, int root) override {
    const auto t0 = Clock::now();
    auto* p = static_cast<char*>(data);
    constexpr size_t kMax = static_cast<size_t>(std::numeric_limits<int>::max());
    for (size_t off = 0; off < bytes; off += kMax) {
      const int count = static_cast<int>(std::min(kMax, bytes - off));
      check(MPI_Bcast(p + off, count, MPI_BYTE, root, MPI_COMM_WORLD), "broadcast");
    }
    comm_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  void barrier() override {
    const auto t0 = Clock::now();
    check(MPI_Barrier(MPI_COMM_WORLD), "barrier");
    comm_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  [[noreturn]] void abort(const std::string& message, int code) override {
    std::fprintf(stderr, "%s (rank %d of %d; ending every rank)\n", message.c_str(), rank_, size_);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, code);
    std::_Exit(code);
  }

private:
  // Note [Ring order]: reduce-scatter then allgather over N chunks, N-1 steps each.
  template <class T> void ring(T* data, size_t n) {
    if (size_ == 1 || n == 0) return;
    const auto t0 = Clock::now();
    const size_t N = static_cast<size_t>(size_);
    auto begin = [&](size_t c) { return c * n / N; };
    auto len = [&](size_t c) { return begin(c + 1) - begin(c); };
    const size_t right = (static_cast<size_t>(rank_) + 1) % N, left = (static_cast<size_t>(rank_) + N - 1) % N;
    auto* buf = reinterpret_cast<T*>(recv_bytes(sizeof(T) * (n / N + 2)));
    const size_t r = static_cast<size_t>(rank_);
    for (size_t s = 0; s + 1 < N; ++s) {  // reduce-scatter
      const size_t send_c = (r + N - s) % N, recv_c = (r + 2 * N - s - 1) % N;
      exchange(data + begin(send_c), len(send_c), right, buf, len(recv_c), left);
      T* dst = data + begin(recv_c);
      for (size_t i = 0, m = len(recv_c); i < m; ++i) dst[i] = buf[i] + dst[i];
    }
    for (size_t s = 0; s + 1 < N; ++s) {  // allgather: rank r owns the finished chunk (r+1) mod N
      const size_t send_c = (r + 1 + N - s) % N, recv_c = (r + N - s) % N;
      exchange(data + begin(send_c), len(send_c), right, data + begin(recv_c), len(recv_c), left);
    }
    comm_seconds_ += std::chrono::duration<double>(Clock::now() - t0).count();
  }

  template <class T> void exchange(const T* send, size_t ns, size_t to, T* recv, size_t nr, size_t from) {
    check(MPI_Sendrecv(send, static_cast<int>(ns), mpi_type<T>(), static_cast<int>(to), 7, recv, static_cast<int>(nr),
                       mpi_type<T>(), static_cast<int>(from), 7, MPI_COMM_WORLD, MPI_STATUS_IGNORE),
          "ring allreduce");
  }

  void* recv_bytes(size_t bytes) {
    if (scratch_.size() < bytes) scratch_.resize(bytes);
    return scratch_.data();
  }

  int rank_ = 0, size_ = 1;
  std::vector<char> scratch_;
};

}  // namespace

CommunicatorPtr make_mpi_communicator(int* argc, char*** argv) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    // The data loader's worker thread never calls MPI: only the main thread does.
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      throw Error("MPI_Init_thread failed");
  }
  return std::make_shared<MpiCommunicator>();
}

void finalize_mpi() {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (inited && !finalized) MPI_Finalize();
}

}  // namespace qforge::train
