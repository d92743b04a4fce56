#include "benchmarks/kernels/kernel_bench.hpp"

#include "benchmarks/kernels/peak.hpp"
#include "engine/kernels/kernels.hpp"

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <ctime>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

extern "C" {
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
}

namespace qforge::bench {
namespace {

namespace k = qforge::kernels;

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Note [timing on a shared machine]: other processes share the 2 cores, so wall time includes time the
// threads spent descheduled. Rows and peaks are therefore timed with thread CPU clocks
// (CLOCK_THREAD_CPUTIME_ID: time actually spent executing), which measures the machine rather than the
// load. For T > 1 threads, each OpenMP worker's CPU clock is read in a T-thread parallel region before and
// after a sample (GOMP reuses the same pool threads for the kernel's own parallel regions) and the busiest
// thread's time counts, so load imbalance and serial parts still cost. Barrier spinning counts as busy
// time, which only understates multi-thread speed. Rows also report the median wall time per call, and
// the report prints the load average.
struct Timing {
  double wall_median_ms = 0, best_ms = 0;
  bool cpu_clock = false;
};

// CPU time of each of `threads` OpenMP pool threads (ms), indexed by omp_get_thread_num().
std::vector<double> team_cpu_ms(int threads) {
  std::vector<double> v(threads, 0.0);
#pragma omp parallel num_threads(threads)
  v[omp_get_thread_num()] = thread_cpu_ms();
  return v;
}

Timing time_call(const std::function<void()>& fn, const KernelBenchOptions& o, int threads) {
  fn();
  const double t0 = now_ms();
  fn();
  const double one = std::max(now_ms() - t0, 1e-4);
  const int reps = std::max(1, static_cast<int>(o.min_sample_ms / one));
  std::vector<double> wall, cpu;
  for (int s = 0; s < std::max(1, o.samples); ++s) {
    const std::vector<double> c0 = threads > 1 ? team_cpu_ms(threads) : std::vector<double>{thread_cpu_ms()};
    const double a = now_ms();
    for (int r = 0; r < reps; ++r) fn();
    wall.push_back((now_ms() - a) / reps);
    const std::vector<double> c1 = threads > 1 ? team_cpu_ms(threads) : std::vector<double>{thread_cpu_ms()};
    double busiest = 0;
    for (std::size_t i = 0; i < c0.size(); ++i) busiest = std::max(busiest, c1[i] - c0[i]);
    cpu.push_back(busiest / reps);
  }
  std::sort(wall.begin(), wall.end());
  std::sort(cpu.begin(), cpu.end());
  Timing t;
  t.wall_median_ms = wall[wall.size() / 2];
  t.cpu_clock = true;
  t.best_ms = std::max(cpu[cpu.size() / 2], 1e-6);
  return t;
}

// Runs a peak loop on `threads` threads, each timing itself with its CPU clock; returns the summed
// GOP/s (median of 5 samples of ~25-50 ms per thread).
double measure_peak(double (*loop)(std::int64_t), int threads) {
  std::int64_t iters = 1 << 16;
  for (;;) {  // calibrate to ≥ 25 ms of CPU time
    const double c = thread_cpu_ms();
    loop(iters);
    if (thread_cpu_ms() - c > 25) break;
    iters *= 2;
  }
  std::vector<double> v;
  for (int s = 0; s < 5; ++s) {
    double rate = 0;
#pragma omp parallel num_threads(threads) reduction(+ : rate)
    {
      const double c = thread_cpu_ms();
      const double ops = loop(iters);
      rate += ops / ((thread_cpu_ms() - c) * 1e6);
    }
    v.push_back(rate);
  }
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double load_average() {
  std::ifstream f("/proc/loadavg");
  double l = 0;
  f >> l;
  return l;
}

std::string cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

const char* registry_name(k::KernelKind kind, k::Isa isa) {
  for (const k::KernelInfo& info : k::kernel_registry())
    if (info.kind == kind && info.isa == isa) return info.name;
  return "?";
}

void pause_between() { std::this_thread::sleep_for(std::chrono::milliseconds(20)); }  // let spinning workers sleep

std::vector<std::int8_t> random_i8(std::size_t n, std::mt19937& rng) {
  std::vector<std::int8_t> v(n);
  std::uniform_int_distribution<int> d(-128, 127);
  for (auto& x : v) x = static_cast<std::int8_t>(d(rng));
  return v;
}

struct Peaks {
  double f32 = 0, vnni = 0, avx2_madd = 0, avx2_maddubs = 0;
};

}  // namespace

KernelBenchReport run_kernel_bench(const KernelBenchOptions& o) {
  KernelBenchReport rep;
  rep.cpu = cpu_name();
  rep.best_isa = k::isa_name(k::best_isa());
  rep.load_average = load_average();
  std::vector<k::Isa> isas;
  if (o.isas.empty()) {
    for (int i = k::kNumIsas - 1; i > 0; --i)
      if (k::isa_supported(static_cast<k::Isa>(i))) isas.push_back(static_cast<k::Isa>(i));
  } else {
    for (const auto& s : o.isas) {
      k::Isa isa{};
      if (k::parse_isa(s, &isa) && k::isa_supported(isa)) isas.push_back(isa);
    }
  }

  // 1. Peaks per thread count. Each ISA's GEMM rows are compared with the peak of the instruction path
  // they use: vpdpbusd zmm (avx512vnni) and the exact int16 vpmaddwd path (avx2, also measured on
  // AVX-512 machines); the vpmaddubsw path's peak is reported for reference (a maddubs GEMM is exact only
  // for weights that provably cannot saturate a pair). Baseline (SSE) rows get no %peak.
  std::vector<Peaks> peaks(o.threads.size());
#if defined(__x86_64__)  // peak loops exist for x86 only (benchmarks/kernels/meson.build); elsewhere no %peak
  const bool vnni = k::isa_supported(k::Isa::avx512vnni), avx2 = k::isa_supported(k::Isa::avx2);
  for (std::size_t t = 0; t < o.threads.size(); ++t) {
    const int th = o.threads[t];
    if (vnni) {
      peaks[t].f32 = measure_peak(peak::avx512vnni::fma_f32, th);
      peaks[t].vnni = measure_peak(peak::avx512vnni::dot_u8s8, th);
      rep.peaks.push_back({"f32_fma", "vfmadd231ps zmm", th, peaks[t].f32});
      rep.peaks.push_back({"int8_dot", "vpdpbusd zmm", th, peaks[t].vnni});
    }
    if (avx2) {
      const double f = measure_peak(peak::avx2::fma_f32, th);
      if (!vnni) peaks[t].f32 = f;
      peaks[t].avx2_madd = measure_peak(peak::avx2::dot_u8s8, th);
      peaks[t].avx2_maddubs = measure_peak(peak::avx2::dot_u8s8_maddubs, th);
      rep.peaks.push_back({"f32_fma", "vfmadd231ps ymm", th, f});
      rep.peaks.push_back({"int8_dot", "vpmaddwd+vpaddd ymm (int16-widened, exact)", th, peaks[t].avx2_madd});
      rep.peaks.push_back({"int8_dot", "vpmaddubsw+vpmaddwd+vpaddd ymm (saturating)", th, peaks[t].avx2_maddubs});
    }
  }
#endif
  auto pct = [&](double gops, std::size_t t, bool f32, k::Isa isa = k::Isa::ref) {
    const double p = f32 ? peaks[t].f32
                         : (isa == k::Isa::avx512vnni ? peaks[t].vnni : (isa == k::Isa::avx2 ? peaks[t].avx2_madd : 0.0));
    return p > 0 ? 100.0 * gops / p : 0.0;
  };

  std::mt19937 rng(42);
  const int saved_blas_threads = openblas_get_num_threads();

  // 2. GEMM rows.
  if (o.gemm) {
    for (const GemmShape& s : o.shapes) {
      const std::string shape = fmt::format("{}x{}x{}", s.m, s.n, s.k);
      const double ops = 2.0 * s.m * s.n * s.k;
      // Operands: activations s8, per-channel weights, requantized s8 output.
      std::vector<std::int8_t> a = random_i8(static_cast<std::size_t>(s.m) * s.k, rng);
      std::vector<std::int8_t> w = random_i8(static_cast<std::size_t>(s.n) * s.k, rng);
      std::vector<std::int32_t> bias(s.n, 1000);
      std::vector<k::QuantizedMultiplier> mult(s.n);
      for (int j = 0; j < s.n; ++j) mult[j] = k::quantize_multiplier(1.0 / (4000.0 + j));
      k::GemmLayer l;
      l.weights = w.data();
      l.n = s.n;
      l.k = s.k;
      l.bias = bias.data();
      l.in_zero_point = 3;
      l.multipliers = mult.data();
      l.per_channel = true;
      l.out_zero_point = -5;
      const k::PackedGemm packed(l);
      std::vector<std::int8_t> c(static_cast<std::size_t>(s.m) * s.n);
      std::vector<std::int32_t> c32(static_cast<std::size_t>(s.m) * s.n);
      std::vector<float> af(a.begin(), a.end()), wf(w.begin(), w.end()), cf(c.size());

      for (std::size_t t = 0; t < o.threads.size(); ++t) {
        const int th = o.threads[t];
        double sgemm_gops = 0;
        if (o.sgemm) {
          // OpenBLAS single-threaded per call; T threads split N in an OpenMP region, exactly like the int8
          // driver, so both are timed by the same team CPU clocks (OpenBLAS's own pthreads would not be).
          openblas_set_num_threads(1);
          pause_between();
          const Timing tm = time_call(
              [&] {
                auto part = [&](int i, int parts) {
                  const int n0 = s.n * i / parts, n1 = s.n * (i + 1) / parts;
                  if (n1 > n0)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.m, n1 - n0, s.k, 1.0f, af.data(), s.k,
                                wf.data() + static_cast<std::size_t>(n0) * s.k, s.k, 0.0f, cf.data() + n0, s.n);
                };
                if (th > 1) {
#pragma omp parallel for num_threads(th) schedule(static)
                  for (int i = 0; i < th; ++i) part(i, th);
                } else {
                  part(0, 1);
                }
              },
              o, th);
          sgemm_gops = ops / (tm.best_ms * 1e6);
          rep.rows.push_back({"openblas_sgemm", "openblas", shape, th, tm.wall_median_ms, sgemm_gops,
                              pct(sgemm_gops, t, true), 1.0, 0, tm.cpu_clock});
          openblas_set_num_threads(saved_blas_threads);
        }
        for (k::Isa isa : isas) {
          const k::KernelTable& kt = k::kernel_table(isa);
          pause_between();
          Timing tm = time_call([&] { kt.gemm_requant(s.m, a.data(), s.k, packed.view(), c.data(), s.n, th); }, o, th);
          double g = ops / (tm.best_ms * 1e6);
          rep.rows.push_back({registry_name(k::KernelKind::gemm_requant, isa), k::isa_name(isa), shape, th,
                              tm.wall_median_ms, g, pct(g, t, false, isa), sgemm_gops > 0 ? g / sgemm_gops : 0, 0,
                              tm.cpu_clock});
          if (o.s32) {
            pause_between();
            tm = time_call([&] { kt.gemm_s32(s.m, a.data(), s.k, packed.view(), c32.data(), s.n, th); }, o, th);
            g = ops / (tm.best_ms * 1e6);
            rep.rows.push_back({registry_name(k::KernelKind::gemm_s32, isa), k::isa_name(isa), shape, th,
                                tm.wall_median_ms, g, pct(g, t, false, isa), sgemm_gops > 0 ? g / sgemm_gops : 0, 0,
                                tm.cpu_clock});
          }
        }
      }
    }
  }

  // 3. Other kernels on the active/best ISAs at representative shapes.
  if (o.others) {
    // conv2d: 56x56x64 → 64, 3x3 pad 1 (the (64, 3136, 576) GEMM shape, through im2col).
    k::Conv2dShape cs;
    cs.in_h = cs.in_w = 56;
    cs.in_c = cs.out_c = 64;
    cs.kernel_h = cs.kernel_w = 3;
    cs.pad_top = cs.pad_left = cs.pad_bottom = cs.pad_right = 1;
    const std::vector<std::int8_t> cw = random_i8(64 * 64 * 9, rng), cx = random_i8(56 * 56 * 64, rng);
    const std::vector<std::int32_t> cb(64, 0);
    const k::QuantizedMultiplier cm = k::quantize_multiplier(1.0 / 3000);
    const k::PackedConv2d pc(cs, cw.data(), cb.data(), k::ActType::s8, 0, &cm, false, k::ActType::s8, 0, {-128, 127});
    std::vector<std::uint8_t> cws(pc.workspace_bytes()), cy(56 * 56 * 64);
    // depthwise 3x3 on 56x56x64 and 112x112x32.
    std::vector<std::int8_t> dw9(9 * 64);
    const std::vector<std::int8_t> dwraw = random_i8(9 * 64, rng);
    k::pack_dwconv3x3_weights(dwraw.data(), 64, dw9.data());
    std::vector<std::int32_t> dmul(64, cm.multiplier), dsh(64, cm.shift);
    k::DwConv3x3Params dp;
    dp.in_h = dp.in_w = 56;
    dp.channels = 64;
    dp.weights = dw9.data();
    dp.bias = cb.data();
    dp.multiplier = dmul.data();
    dp.shift = dsh.data();
    // pooling 2x2/2 on 56x56x64; add and quantize on 1M elements.
    k::Pool2dParams pp;
    pp.in_h = pp.in_w = 56;
    pp.channels = 64;
    const std::int64_t ne = 1 << 20;
    const std::vector<std::int8_t> ea = random_i8(ne, rng), eb = random_i8(ne, rng);
    std::vector<std::int8_t> ey(ne);
    std::vector<float> ef(ne);
    for (std::int64_t i = 0; i < ne; ++i) ef[i] = static_cast<float>(ea[i]) * 0.37f;
    const k::AddParams ap = k::make_add_params(0.02f, 1, 0.03f, -2, 0.04f, 0, {-128, 127});
    // LSTM step, batch 1, input 256, hidden 512 (GEMV-bound).
    const int I = 256, H = 512;
    const std::vector<std::int8_t> lwx = random_i8(4 * H * I, rng), lwh = random_i8(4 * H * H, rng);
    std::vector<k::QuantizedMultiplier> lm(4 * H, k::quantize_multiplier(0.002));
    k::GemmLayer lx;
    lx.weights = lwx.data();
    lx.n = 4 * H;
    lx.k = I;
    lx.multipliers = lm.data();
    lx.per_channel = true;
    k::GemmLayer lh = lx;
    lh.weights = lwh.data();
    lh.k = H;
    const k::PackedGemm plx(lx), plh(lh);
    k::RnnWeights rw;
    rw.input = plx.view();
    rw.recurrent = plh.view();
    rw.hidden = H;
    rw.cell.hidden = k::quantize_multiplier(std::ldexp(1.0, -30) * 100);
    const std::vector<std::int8_t> lxv = random_i8(I, rng), lhv = random_i8(H, rng);
    std::vector<std::int16_t> lc(H, 100);
    std::vector<std::int8_t> lho(H);
    std::vector<std::int32_t> lws(8 * H);

    for (k::Isa isa : isas) {
      const k::KernelTable& kt = k::kernel_table(isa);
      for (std::size_t t = 0; t < o.threads.size(); ++t) {
        const int th = o.threads[t];
        auto add_row = [&](k::KernelKind kind, const std::string& shape, const Timing& tm, double ops, double bytes) {
          const double g = ops / (tm.best_ms * 1e6);
          rep.rows.push_back({registry_name(kind, isa), k::isa_name(isa), shape, th, tm.wall_median_ms, g,
                              ops > 0 ? pct(g, t, false, isa) : 0, 0, bytes / (tm.best_ms * 1e6), tm.cpu_clock});
        };
        pause_between();
        Timing ms = time_call([&] { kt.conv2d(pc.view(), cx.data(), cy.data(), cws.data(), th); }, o, th);
        add_row(k::KernelKind::conv2d, "56x56x64->64 3x3 p1", ms, 2.0 * 56 * 56 * 64 * 576, 0);
        pause_between();
        ms = time_call([&] { kt.dwconv3x3(dp, cx.data(), cy.data(), th); }, o, th);
        add_row(k::KernelKind::dwconv3x3, "56x56x64 3x3 p1", ms, 2.0 * 56 * 56 * 64 * 9, 2.0 * 56 * 56 * 64);
        pause_between();
        ms = time_call([&] { kt.maxpool2d(pp, cx.data(), cy.data(), th); }, o, th);
        add_row(k::KernelKind::maxpool2d, "56x56x64 2x2/2", ms, 0, 56 * 56 * 64 * 1.25);
        pause_between();
        ms = time_call([&] { kt.avgpool2d(pp, cx.data(), cy.data(), th); }, o, th);
        add_row(k::KernelKind::avgpool2d, "56x56x64 2x2/2", ms, 0, 56 * 56 * 64 * 1.25);
        if (th == 1) {  // element-wise kernels are single-threaded
          pause_between();
          ms = time_call([&] { kt.add(ne, ea.data(), eb.data(), ey.data(), ap, k::ActType::s8); }, o, th);
          add_row(k::KernelKind::add, "1M", ms, 0, 3.0 * ne);
          pause_between();
          ms = time_call([&] { kt.quantize(ne, ef.data(), ey.data(), 1.0f / 0.37f, 0, k::ActType::s8); }, o, th);
          add_row(k::KernelKind::quantize, "1M", ms, 0, 5.0 * ne);
          pause_between();
          ms = time_call([&] { kt.dequantize(ne, ea.data(), ef.data(), 0.37f, 0, k::ActType::s8); }, o, th);
          add_row(k::KernelKind::dequantize, "1M", ms, 0, 5.0 * ne);
        }
        pause_between();
        ms = time_call(
            [&] { kt.lstm_step(rw, 1, lxv.data(), I, lhv.data(), H, lc.data(), lho.data(), H, lws.data(), th); }, o, th);
        add_row(k::KernelKind::lstm_step, "batch 1, in 256, hidden 512", ms, 2.0 * 4 * H * (I + H), 4.0 * H * (I + H));
      }
    }
  }
  return rep;
}

std::string format_report(const KernelBenchReport& r) {
  std::string s = fmt::format(
      "CPU: {}   best ISA: {}   load average at start: {:.2f}\n"
      "GOP/s from thread CPU clocks (busiest thread; Note [timing on a shared machine]); ms = median wall time\n"
      "per call.\n\nMeasured peaks (register-only loops):\n",
      r.cpu, r.best_isa, r.load_average);
  for (const PeakRow& p : r.peaks)
    s += fmt::format("  {:<9} {:<46} threads={}  {:8.1f} GOP/s\n", p.what, p.instruction, p.threads, p.gops);
  s += fmt::format("\n{:<46} {:<10} {:<28} {:>3} {:>10} {:>9} {:>7} {:>8} {:>8}\n", "kernel", "isa", "shape", "thr",
                   "ms", "GOP/s", "%peak", "x sgemm", "GB/s");
  for (const KernelBenchRow& w : r.rows)
    s += fmt::format("{:<46} {:<10} {:<28} {:>3} {:>10.4f} {:>9.1f} {:>7} {:>8} {:>8}\n", w.kernel, w.isa, w.shape,
                     w.threads, w.ms, w.gops, w.pct_peak > 0 ? fmt::format("{:.1f}", w.pct_peak) : "-",
                     w.vs_sgemm > 0 ? fmt::format("{:.2f}", w.vs_sgemm) : "-",
                     w.gbytes > 0 ? fmt::format("{:.1f}", w.gbytes) : "-");
  return s;
}

nlohmann::json report_to_json(const KernelBenchReport& r) {
  nlohmann::json j;
  j["cpu"] = r.cpu;
  j["best_isa"] = r.best_isa;
  j["load_average"] = r.load_average;
  j["peaks"] = nlohmann::json::array();
  for (const PeakRow& p : r.peaks)
    j["peaks"].push_back({{"what", p.what}, {"instruction", p.instruction}, {"threads", p.threads}, {"gops", p.gops}});
  j["rows"] = nlohmann::json::array();
  for (const KernelBenchRow& w : r.rows)
    j["rows"].push_back({{"kernel", w.kernel},
                         {"isa", w.isa},
                         {"shape", w.shape},
                         {"threads", w.threads},
                         {"ms", w.ms},
                         {"gops", w.gops},
                         {"pct_peak", w.pct_peak},
                         {"vs_sgemm", w.vs_sgemm},
                         {"gbytes_per_s", w.gbytes},
                         {"clock", w.cpu_clock ? "busiest_thread_cpu" : "wall"}});
  return j;
}

}  // namespace qforge::bench
