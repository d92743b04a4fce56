#include "engine/kernels/arith_profile.hpp"
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>
using namespace qforge::kernels;
// QuantizeLinear and QLinearGlobalAveragePool against ORT (see run.sh).
int main(int argc, char** argv) {
  std::mt19937 rng(11);
  auto lu = [&](double lo, double hi) { return static_cast<float>(std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(rng))); };
  std::vector<float> xs;
  std::vector<std::pair<float, int>> qc;
  for (int i = 0; i < 20; ++i) qc.push_back({lu(1e-3, 1.0), static_cast<int>(rng() % 256)});
  for (int i = 0; i < 4000; ++i) {
    const auto& c = qc[i % 20];
    const int r = rng() % 4;
    float x = r == 0 ? (static_cast<int>(rng() % 300) - 150 + 0.5f) * c.first
                     : std::uniform_real_distribution<float>(-200, 200)(rng) * c.first;
    xs.push_back(x);
  }
  struct G { int N, C, H, W; float xs; int xz; float ys; int yz; };
  std::vector<G> gc;
  for (int i = 0; i < 12; ++i) gc.push_back({1 + i % 2, 3 + i * 5, 1 + i % 7, 2 + i % 5, lu(1e-3, 1.0), static_cast<int>(rng() % 256), lu(1e-3, 1.0), static_cast<int>(rng() % 256)});
  if (std::string(argv[1]) == "gen") {
    std::ofstream f("qcfg.json");
    char b[200];
    f << "{\"quant\":[";
    for (size_t i = 0; i < qc.size(); ++i) { snprintf(b, sizeof b, "%s[%.9g,%d]", i ? "," : "", qc[i].first, qc[i].second); f << b; }
    f << "],\"x\":[";
    for (size_t i = 0; i < xs.size(); ++i) { snprintf(b, sizeof b, "%s%.9g", i ? "," : "", xs[i]); f << b; }
    f << "],\"gap\":[";
    for (size_t i = 0; i < gc.size(); ++i) { const G& g = gc[i]; snprintf(b, sizeof b, "%s[%d,%d,%d,%d,%.9g,%d,%.9g,%d]", i ? "," : "", g.N, g.C, g.H, g.W, g.xs, g.xz, g.ys, g.yz); f << b; }
    f << "]}";
    return 0;
  }
  std::ifstream fo("qres.json");
  std::stringstream so; so << fo.rdbuf();
  std::string o = so.str();
  const auto gp = o.find("\"gap\"");
  std::string q = o.substr(0, gp), g = o.substr(gp);
  for (std::string* s : {&q, &g}) for (char& ch : *s) if (!(isdigit(ch) || ch == '-')) ch = ' ';
  std::istringstream iq(q), ig(g);
  long dq = 0, nq = 0, dd = 0;
  for (const auto& c : qc)
    for (float x : xs) {
      int y; iq >> y;
      dq += quantize_linear_value(x, c.first, c.second, 0, 255) != y;
      dd += quantize_value(x, 1.0f / c.first, c.second, 0, 255) != y;
      ++nq;
    }
  long dg = 0, ng = 0;
  for (const auto& c : gc) {
    const int HW = c.H * c.W;
    const QuantizedMultiplier m = global_average_multiplier(ArithProfile::onnxruntime, c.xs, c.ys, HW);
    for (int b = 0; b < c.N; ++b)
      for (int ch = 0; ch < c.C; ++ch) {
        int acc = 0;
        for (int s = 0; s < HW; ++s) { const long i = (static_cast<long>(b) * c.C + ch) * HW + s; acc += static_cast<int>((static_cast<unsigned>(i) * 2654435761u >> 13) & 255) - c.xz; }
        int y; ig >> y;
        dg += requantize_output(acc, m, c.yz, 0, 255, Rounding::float_rne) != y;
        ++ng;
      }
  }
  printf("QuantizeLinear: %ld values, %ld differ (dsp rule would differ in %ld); QLinearGlobalAveragePool: %ld outputs, %ld differ\n", nq, dq, dd, ng, dg);
}
