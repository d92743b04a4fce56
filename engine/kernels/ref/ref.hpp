// Scalar reference kernels: the textbook formulas of requant.hpp, one loop nest per kernel, no packing
// tricks (they read packed weights through packed_weight()). Every SIMD kernel must equal these bit for bit.
#pragma once

#include "engine/kernels/isa_kernels.hpp"

namespace qforge::kernels::ref {

// Reads byte i of an 8-bit activation buffer as its integer value.
inline std::int32_t load_act(const void* p, std::int64_t i, ActType t) noexcept {
  return t == ActType::s8 ? static_cast<const std::int8_t*>(p)[i] : static_cast<const std::uint8_t*>(p)[i];
}
inline void store_act(void* p, std::int64_t i, std::int32_t v) noexcept {
  static_cast<std::uint8_t*>(p)[i] = static_cast<std::uint8_t>(v);  // v already clamped to the type's range
}

}  // namespace qforge::kernels::ref
