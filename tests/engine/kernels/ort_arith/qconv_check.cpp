#include "engine/kernels/arith_profile.hpp"
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>
using namespace qforge::kernels;
// QLinearConv (per-channel float requantization) against ORT (see run.sh).
struct Cfg { int C, O, K, H, W; float xs; int xz; std::vector<float> ws; std::vector<int> w; float ys; int yz; std::vector<int> b, x; };
int main(int argc, char** argv) {
  std::mt19937 rng(5);
  auto lu = [&](double lo, double hi) { return static_cast<float>(std::exp(std::uniform_real_distribution<double>(std::log(lo), std::log(hi))(rng))); };
  auto ri = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  std::vector<Cfg> cs;
  for (int i = 0; i < 40; ++i) {
    Cfg c;
    c.C = 1 + i % 5; c.O = 3 + i % 7; c.K = 1 + i % 3; c.H = c.K + 12 + i % 4; c.W = c.K + 14 + i % 6;
    c.xs = lu(1e-3, 0.1); c.xz = ri(0, 255); c.ys = lu(1e-3, 1.0); c.yz = ri(0, 255);
    if (i % 2) { c.xs = std::ldexp(1.0f, -ri(4, 8)); c.ys = std::ldexp(1.0f, -ri(0, 3)); }
    for (int o = 0; o < c.O; ++o) { c.ws.push_back(i % 2 ? std::ldexp(1.0f, -ri(3, 7)) : lu(1e-4, 0.05)); c.b.push_back(ri(-20000, 20000)); }
    for (int k = 0; k < c.O * c.C * c.K * c.K; ++k) c.w.push_back(ri(-64, 63));  // 7-bit: no vpmaddubsw saturation
    for (int k = 0; k < c.C * c.H * c.W; ++k) c.x.push_back(ri(0, 255));
    cs.push_back(c);
  }
  if (std::string(argv[1]) == "gen") {
    std::ofstream f("ccfg.json");
    f << "[";
    char buf[64];
    auto arr = [&](const auto& v, bool fl) { f << "["; for (size_t i = 0; i < v.size(); ++i) { if (fl) snprintf(buf, sizeof buf, "%s%.9g", i ? "," : "", (double)v[i]); else snprintf(buf, sizeof buf, "%s%d", i ? "," : "", (int)v[i]); f << buf; } f << "]"; };
    for (size_t i = 0; i < cs.size(); ++i) {
      const Cfg& c = cs[i];
      snprintf(buf, sizeof buf, "%s{\"C\":%d,\"O\":%d,\"K\":%d,\"H\":%d,\"W\":%d,", i ? "," : "", c.C, c.O, c.K, c.H, c.W); f << buf;
      snprintf(buf, sizeof buf, "\"xs\":%.9g,\"xz\":%d,\"ys\":%.9g,\"yz\":%d,\"ws\":", c.xs, c.xz, c.ys, c.yz); f << buf;
      arr(c.ws, true); f << ",\"w\":"; arr(c.w, false); f << ",\"b\":"; arr(c.b, false); f << ",\"x\":"; arr(c.x, false); f << "}";
    }
    f << "]";
    return 0;
  }
  std::ifstream fo("cres.json"); std::stringstream so; so << fo.rdbuf(); std::string o = so.str();
  for (char& ch : o) if (!(isdigit(ch) || ch == '-')) ch = ' ';
  std::istringstream io(o);
  long n = 0, d = 0, dd = 0;
  for (const Cfg& c : cs) {
    const int OH = c.H - c.K + 1, OW = c.W - c.K + 1;
    for (int oc = 0; oc < c.O; ++oc) {
      const QuantizedMultiplier m = layer_multiplier(ArithProfile::onnxruntime, c.xs, c.ws[oc], c.ys);
      const QuantizedMultiplier md = layer_multiplier(ArithProfile::dsp, c.xs, c.ws[oc], c.ys);
      for (int oy = 0; oy < OH; ++oy)
        for (int ox = 0; ox < OW; ++ox) {
          int acc = c.b[oc];
          for (int ic = 0; ic < c.C; ++ic)
            for (int ky = 0; ky < c.K; ++ky)
              for (int kx = 0; kx < c.K; ++kx)
                acc += (c.x[(ic * c.H + oy + ky) * c.W + ox + kx] - c.xz) * c.w[((oc * c.C + ic) * c.K + ky) * c.K + kx];
          int y; io >> y;
          d += requantize_output(acc, m, c.yz, 0, 255, Rounding::float_rne) != y;
          dd += requantize_output(acc, md, c.yz, 0, 255, Rounding::single) != y;
          ++n;
        }
    }
  }
  printf("QLinearConv: %ld outputs, onnxruntime profile differs in %ld (dsp profile: %ld)\n", n, d, dd);
}
