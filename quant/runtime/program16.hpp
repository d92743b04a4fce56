// 16-bit activation values in an integer Program (W8A16, issue 18 §1).
//
// Note [16-bit codes]: an activation encoding of 9..16 bits (AIMET grid q_u ∈ [0, N], N = 2^bw − 1) is held
// as int16 codes q = q_u − 32768, zero_point = −32768 − offset, code range [−32768, −32768 + N] — the
// 16-bit analogue of program.hpp Note [codes]. Which values are 16-bit is read off the code range (an
// 8-bit value's range lies inside [−128, 127], a 16-bit one's never does). A program is either all 8-bit
// or all 16-bit (lower() refuses a mix), and 16-bit programs use the dsp profile; the runtime executes
// them on the kernels16.hpp kernels (runtime16.hpp), the exact simulation with int64 accumulators
// (requant.hpp Note [16-bit activations]). Bundles (save_bundle/load_bundle) hold 8-bit programs only.
#pragma once

#include "quant/runtime/program.hpp"

namespace qforge::quant::runtime {

inline bool is_16bit(const QParams& q) { return q.qmin < -128 || q.qmax > 127; }

inline bool is_16bit_program(const Program& p) {
  for (const auto& v : p.values)
    if (is_16bit(v.q)) return true;
  return false;
}

}  // namespace qforge::quant::runtime
