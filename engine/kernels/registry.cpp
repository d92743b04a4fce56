// Kernel registry and dispatch (DESIGN.md §3). One KernelTable per ISA namespace compiled for this
// architecture; the active one is chosen once at start-up from cpuid + xgetbv (x86-64) or AT_HWCAP
// (aarch64), or from QFORGE_ISA, and can be forced (force_isa). Compiled for the architecture's baseline
// only (no -m/-march flags): it must run on any CPU of the architecture.
#include "engine/kernels/isa_kernels.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>

#if defined(__x86_64__)
#include <cpuid.h>
#define QFORGE_ARCH_X86_64 1
#elif defined(__aarch64__)
#include <sys/auxv.h>
#define QFORGE_ARCH_AARCH64 1
#else
#error "qforge kernels: unsupported architecture (x86-64 and aarch64 only)"
#endif

namespace qforge::kernels {
namespace {

#define QFORGE_TABLE(ns)                                                                                        \
  KernelTable {                                                                                                 \
    Isa::ns, ns::gemm_requant, ns::gemm_s32, ns::conv2d, ns::dwconv3x3, ns::maxpool2d, ns::avgpool2d, ns::add, \
        ns::quantize, ns::dequantize, ns::lstm_step, ns::gru_step, ns::requant, ns::global_avgpool, ns::quantize_linear \
  }

// A foreign architecture's ISA keeps its slot (indexed by Isa) with null functions.
#define QFORGE_ABSENT(ns) \
  KernelTable {                                                                                                  \
    Isa::ns, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, \
        nullptr, nullptr, nullptr                                                                               \
  }

#if QFORGE_ARCH_X86_64
const KernelTable kTables[kNumIsas] = {QFORGE_TABLE(ref),        QFORGE_TABLE(baseline), QFORGE_TABLE(avx2),
                                       QFORGE_TABLE(avx512vnni), QFORGE_ABSENT(neon),    QFORGE_ABSENT(neondot)};
#else
const KernelTable kTables[kNumIsas] = {QFORGE_TABLE(ref),          QFORGE_ABSENT(baseline), QFORGE_ABSENT(avx2),
                                       QFORGE_ABSENT(avx512vnni), QFORGE_TABLE(neon),      QFORGE_TABLE(neondot)};
#endif

// Kernel names: <types>_<op>[_<tile>]_<epilogue>__<isa>.
#define QFORGE_NAMES(isa, gemm_tile)                                                                  \
  {"qs8_qc8w_gemm" gemm_tile "_requant__" #isa, KernelKind::gemm_requant, Isa::isa},                  \
      {"qs8_qc8w_gemm" gemm_tile "_s32__" #isa, KernelKind::gemm_s32, Isa::isa},                       \
      {"qs8_qc8w_conv2d_im2col_requant__" #isa, KernelKind::conv2d, Isa::isa},                         \
      {"qs8_qc8w_dwconv3x3_requant__" #isa, KernelKind::dwconv3x3, Isa::isa},                          \
      {"q8_maxpool2d__" #isa, KernelKind::maxpool2d, Isa::isa},                                        \
      {"q8_avgpool2d__" #isa, KernelKind::avgpool2d, Isa::isa},                                        \
      {"q8_vadd_requant__" #isa, KernelKind::add, Isa::isa},                                           \
      {"f32_q8_quantize__" #isa, KernelKind::quantize, Isa::isa},                                      \
      {"q8_f32_dequantize__" #isa, KernelKind::dequantize, Isa::isa},                                  \
      {"qs8_qc8w_lstm_step_8x8_16__" #isa, KernelKind::lstm_step, Isa::isa},                           \
      {"qs8_qc8w_gru_step_8x8_16__" #isa, KernelKind::gru_step, Isa::isa},                           \
      {"q8_requant__" #isa, KernelKind::requant, Isa::isa},                                            \
      {"q8_global_avgpool_requant__" #isa, KernelKind::global_avgpool, Isa::isa},                      \
      {"f32_q8_quantize_linear_rne__" #isa, KernelKind::quantize_linear, Isa::isa}

const KernelInfo kRegistry[] = {
    QFORGE_NAMES(ref, ""),
#if QFORGE_ARCH_X86_64
    QFORGE_NAMES(baseline, "_4x4c4"),
    QFORGE_NAMES(avx2, "_6x16c2"),
    QFORGE_NAMES(avx512vnni, "_6x64c4"),
#else
    QFORGE_NAMES(neon, "_4x8c4"),
    QFORGE_NAMES(neondot, "_4x16c4"),
#endif
};

#if QFORGE_ARCH_X86_64
std::uint64_t xgetbv0() noexcept {
  std::uint32_t eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}

struct CpuFeatures {
  bool sse42 = false, avx2 = false, avx512vnni = false;
  bool neon = false, neondot = false;
};

CpuFeatures detect() noexcept {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool sse41 = c & (1u << 19), sse42 = c & (1u << 20), popcnt = c & (1u << 23);
  const bool osxsave = c & (1u << 27), avx = c & (1u << 28), fma = c & (1u << 12);
  f.sse42 = sse41 && sse42 && popcnt;
  if (!osxsave || !avx) return f;
  const std::uint64_t xcr0 = xgetbv0();
  const bool os_avx = (xcr0 & 0x6) == 0x6, os_avx512 = (xcr0 & 0xE6) == 0xE6;
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  if (!__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7)) return f;
  f.avx2 = f.sse42 && os_avx && fma && (b7 & (1u << 5));
  const bool avx512 = (b7 & (1u << 16)) && (b7 & (1u << 17)) && (b7 & (1u << 30)) && (b7 & (1u << 31));
  f.avx512vnni = f.avx2 && os_avx512 && avx512 && (c7 & (1u << 11));
  return f;
}

#else
struct CpuFeatures {
  bool sse42 = false, avx2 = false, avx512vnni = false;
  bool neon = false, neondot = false;
};

CpuFeatures detect() noexcept {
  // Advanced SIMD is mandatory in AArch64 (HWCAP_ASIMD is always set on Linux); dotprod is optional
  // (armv8.2-a, HWCAP_ASIMDDP = bit 20 of AT_HWCAP).
  constexpr unsigned long kHwcapAsimd = 1ul << 1, kHwcapAsimdDp = 1ul << 20;
  CpuFeatures f;
  const unsigned long hw = getauxval(AT_HWCAP);
  f.neon = (hw & kHwcapAsimd) != 0;
  f.neondot = f.neon && (hw & kHwcapAsimdDp) != 0;
  return f;
}
#endif

const CpuFeatures& features() noexcept {
  static const CpuFeatures f = detect();
  return f;
}

#if QFORGE_ARCH_X86_64
constexpr const char* kIsaChoices = "avx512vnni|avx2|baseline|ref";
#else
constexpr const char* kIsaChoices = "neondot|neon|ref";
#endif

std::atomic<const KernelTable*>& active_slot() noexcept {
  static std::atomic<const KernelTable*> slot{[] {
    Isa isa = best_isa();
    if (const char* env = std::getenv("QFORGE_ISA"); env != nullptr && *env != '\0') {
      Isa want{};
      if (!parse_isa(env, &want))
        std::fprintf(stderr, "qforge: QFORGE_ISA=%s is not one of %s; using %s\n", env, kIsaChoices,
                     isa_name(isa));
      else if (!isa_supported(want))
        std::fprintf(stderr, "qforge: QFORGE_ISA=%s is not supported by this CPU; using %s\n", env, isa_name(isa));
      else
        isa = want;
    }
    return &kTables[static_cast<int>(isa)];
  }()};
  return slot;
}

// Fill the dispatch table at start-up (not lazily in the middle of a timed region).
[[maybe_unused]] const bool kInitialised = (active_slot(), true);

}  // namespace

const char* isa_name(Isa isa) noexcept {
  switch (isa) {
    case Isa::ref: return "ref";
    case Isa::baseline: return "baseline";
    case Isa::avx2: return "avx2";
    case Isa::avx512vnni: return "avx512vnni";
    case Isa::neon: return "neon";
    case Isa::neondot: return "neondot";
  }
  return "?";
}

bool parse_isa(std::string_view name, Isa* out) noexcept {
  for (int i = 0; i < kNumIsas; ++i)
    if (name == isa_name(static_cast<Isa>(i))) {
      *out = static_cast<Isa>(i);
      return true;
    }
  return false;
}

bool isa_compiled(Isa isa) noexcept {
  const int i = static_cast<int>(isa);
  return i >= 0 && i < kNumIsas && kTables[i].gemm_requant != nullptr;
}

bool isa_supported(Isa isa) noexcept {
  if (!isa_compiled(isa)) return false;
  switch (isa) {
    case Isa::ref: return true;
    case Isa::baseline: return features().sse42;
    case Isa::avx2: return features().avx2;
    case Isa::avx512vnni: return features().avx512vnni;
    case Isa::neon: return features().neon;
    case Isa::neondot: return features().neondot;
  }
  return false;
}

Isa best_isa() noexcept {
  for (int i = kNumIsas - 1; i > 0; --i)
    if (isa_supported(static_cast<Isa>(i))) return static_cast<Isa>(i);
  return Isa::ref;
}

Isa active_isa() noexcept { return active_slot().load(std::memory_order_acquire)->isa; }

bool force_isa(Isa isa) noexcept {
  if (!isa_supported(isa)) return false;
  active_slot().store(&kTables[static_cast<int>(isa)], std::memory_order_release);
  return true;
}

const KernelTable& kernel_table(Isa isa) noexcept { return kTables[static_cast<int>(isa)]; }

const KernelTable& active_kernels() noexcept { return *active_slot().load(std::memory_order_acquire); }

std::span<const KernelInfo> kernel_registry() noexcept { return kRegistry; }

const char* kernel_kind_name(KernelKind kind) noexcept {
  static const char* const kNames[kNumKernelKinds] = {"gemm_requant", "gemm_s32", "conv2d",   "dwconv3x3",
                                                      "maxpool2d",    "avgpool2d", "add",      "quantize",
                                                      "dequantize",   "lstm_step", "gru_step", "requant",
                                                      "global_avgpool", "quantize_linear"};
  return kNames[static_cast<int>(kind)];
}

}  // namespace qforge::kernels
