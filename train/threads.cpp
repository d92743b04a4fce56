#include "train/threads.hpp"

#include "engine/error.hpp"

#include <omp.h>

namespace qforge::train {

void set_num_threads(int n) {
  if (n <= 0) return;
  if (n > kMaxThreads) throw InputError(fmt::format("thread count {} is too large (at most {})", n, kMaxThreads));
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace qforge::train
