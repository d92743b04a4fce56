// Communicator: the collective operations data-parallel training needs (DESIGN.md §7 "Distribution").
//
//   auto comm = world_communicator();           // MPI under mpirun (built with MPI), else one process
//   comm->allreduce_sum(grads.data(), grads.size());   // deterministic, fixed order (Note [Ring order])
//   comm->broadcast(bytes, n, /*root=*/0);
//
// Two implementations: a single-process one (communicator_local.cpp: every collective is the identity)
// and an MPI one (communicator_mpi.cpp, the only file in the tree that includes mpi.h, compiled only when
// meson finds MPI). start_world() picks one at program start: MPI only when the process was started by a
// launcher (OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK in the environment), so a plain `qforge train`
// never initialises MPI and stays byte-for-byte the program it was.
//
// Note [Ring order]
// MPI_Allreduce does not promise the same summation order from run to run (MPI-2.2 §5.9.1 only
// recommends it; tree, Rabenseifner and arrival-order reductions differ). qforge therefore reduces with
// its own ring built from MPI point-to-point messages: the buffer is cut into N chunks (chunk c =
// [c*n/N, (c+1)*n/N)); reduce-scatter for N-1 steps (rank r sends chunk (r-s) mod N to r+1 and adds the
// chunk it receives from r-1), then allgather for N-1 steps. Chunk c is therefore always summed as
// ((x[c+1] + x[c+2]) + ...) + x[c] (ranks mod N): a fixed association for a given N, so the same N and
// the same inputs give the same bytes on every run and on every rank. Cost: 2(N-1)/N * bytes sent and
// received per rank, 2(N-1) latencies (docs/distributed.md uses this model).
//
// Note [Failure on one rank]
// A collective that one rank never reaches would hang the others. Errors every rank sees together (the
// trainer shares each step's status: a non-finite loss on any rank ends every rank at the same step) are
// thrown normally on each rank, and only rank 0 prints them. Any other failure on a rank (bad input it
// alone read, an internal error) calls abort(): the message is printed by that rank and MPI_Abort ends
// every rank of the job. A rank killed from outside is noticed by mpirun, which ends the others. Rank 0
// writes checkpoints atomically (train/checkpoint.hpp), so the last good checkpoint survives all three.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace qforge::train {

class Communicator {
public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual const char* backend() const = 0;  // "local" or "mpi"

  // In place: every rank ends with the element-wise sum over ranks, the same bytes on every rank and on
  // every run (Note [Ring order]).
  virtual void allreduce_sum(float* data, size_t n) = 0;
  virtual void allreduce_sum(double* data, size_t n) = 0;
  // Rank `root`'s bytes are copied to every other rank (all ranks pass the same `bytes`).
  virtual void broadcast(void* data, size_t bytes, int root = 0) = 0;
  virtual void barrier() = 0;
  // Prints `message` (prefixed with the rank when size() > 1) to stderr and ends every rank with `code`.
  [[noreturn]] virtual void abort(const std::string& message, int code) = 0;

  // Seconds spent inside collectives so far (communication + waiting for the slowest rank).
  double comm_seconds() const { return comm_seconds_; }

protected:
  double comm_seconds_ = 0;
};

using CommunicatorPtr = std::shared_ptr<Communicator>;

// A one-process communicator: rank 0 of 1, collectives are the identity.
CommunicatorPtr local_communicator();

// The process's communicator; local until start_world() installed another.
CommunicatorPtr world_communicator();
// Called once by main(): MPI when built with it and started by a launcher, else local. Throws Error when
// started as one of N > 1 processes by a launcher but built without MPI.
CommunicatorPtr start_world(int* argc, char*** argv);
// Ends MPI (when started); called by main() before returning.
void stop_world();
bool built_with_mpi();
// The world size a launcher announced in the environment (OMPI_COMM_WORLD_SIZE, PMI_SIZE), 1 if none.
int launcher_world_size();

// ---- helpers on top of the interface ----
void broadcast_string(Communicator& c, std::string& s, int root = 0);
// Every rank's bytes, in rank order, on every rank (one broadcast per rank: for small payloads).
std::vector<std::string> allgather_strings(Communicator& c, const std::string& mine);

}  // namespace qforge::train
