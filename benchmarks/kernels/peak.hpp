// Register-only instruction loops that measure this machine's peak throughput (ops per call). Each lives
// in a translation unit compiled for its ISA (peak__<isa>.cpp); call only when kernels::isa_supported().
#pragma once

#include <cstdint>

namespace qforge::bench::peak {

// 16 independent accumulator chains, `iters` iterations; return the number of arithmetic ops executed
// (one multiply-add = 2 ops).
namespace avx512vnni {
double fma_f32(std::int64_t iters) noexcept;        // vfmadd231ps zmm
double dot_u8s8(std::int64_t iters) noexcept;       // vpdpbusd zmm
}  // namespace avx512vnni
namespace avx2 {
double fma_f32(std::int64_t iters) noexcept;        // vfmadd231ps ymm
double dot_u8s8(std::int64_t iters) noexcept;       // vpmaddwd ymm + vpaddd on int16-widened operands (exact path)
// vpmaddubsw ymm (u8·s8 pairs → saturating int16) + vpmaddwd by ones + vpaddd: 32 multiply-adds per group,
// the ceiling of a maddubs kernel (exact only when no pair can saturate, Note [vpmaddubsw trap]).
double dot_u8s8_maddubs(std::int64_t iters) noexcept;
}  // namespace avx2

}  // namespace qforge::bench::peak
