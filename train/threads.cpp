#include "train/threads.hpp"

#include <omp.h>

namespace qforge::train {

void set_num_threads(int n) {
  if (n <= 0) return;
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

}  // namespace qforge::train
