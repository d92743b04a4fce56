#include "engine/kernels/arith_profile.hpp"
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>
using namespace qforge::kernels;
// QLinearAdd: qforge's add_params_onnxruntime/add_value against ORT (see run.sh).
int main(int argc, char** argv) {
  std::mt19937 rng(7);
  std::vector<std::vector<double>> cfgs;
  if (std::string(argv[1]) == "gen") {
    std::ofstream f("cfgs.json");
    f << "[";
    for (int i = 0; i < 40; ++i) {
      auto sc = [&] { return static_cast<float>(std::exp(std::uniform_real_distribution<double>(std::log(1e-3), std::log(1.0))(rng))); };
      std::uniform_int_distribution<int> z(0, 255);
      char buf[256];
      snprintf(buf, sizeof buf, "%s[%.9g,%d,%.9g,%d,%.9g,%d]", i ? "," : "", sc(), z(rng), sc(), z(rng), sc(), z(rng));
      f << buf;
    }
    f << "]";
    return 0;
  }
  // compare: read cfgs.json and ort_out.json (simple parsing)
  std::ifstream fc("cfgs.json"), fo("ort_out.json");
  std::stringstream sc, so; sc << fc.rdbuf(); so << fo.rdbuf();
  std::string c = sc.str(), o = so.str();
  for (char& ch : c) if (ch == '[' || ch == ']' || ch == ',') ch = ' ';
  for (char& ch : o) if (ch == '[' || ch == ']' || ch == ',') ch = ' ';
  std::istringstream ic(c), io(o);
  long total_unfused = 0, total_fused = 0, total_sep = 0, total_lib = 0, n = 0;
  for (int k = 0; k < 40; ++k) {
    float sa, sb, scc; int za, zb, zc;
    ic >> sa >> za >> sb >> zb >> scc >> zc;
    const AddParams lib = add_params_onnxruntime(sa, za, sb, zb, scc, zc, {0, 255}, ActType::u8);
    AddParams p = lib;
    p.fixed = static_cast<float>(zc) - (p.a_ratio * static_cast<float>(za) + p.b_ratio * static_cast<float>(zb));
    AddParams q = p;  // the fused form of the constant: fma(r_a, z_a, r_b*z_b)
    q.fixed = static_cast<float>(zc) - std::fma(p.a_ratio, static_cast<float>(za), p.b_ratio * static_cast<float>(zb));
    AddParams r = p;  // fma(r_b, z_b, r_a*z_a)
    r.fixed = static_cast<float>(zc) - std::fma(p.b_ratio, static_cast<float>(zb), p.a_ratio * static_cast<float>(za));
    for (int i = 0; i < 65536; ++i) {
      int y; io >> y;
      const int a = i & 255, b = i >> 8;
      total_lib += add_value(a, b, lib) != y;
      total_unfused += add_value(a, b, p) != y;
      total_fused += add_value(a, b, q) != y;
      total_sep += add_value(a, b, r) != y;
      ++n;
    }
  }
  printf("QLinearAdd: %ld pairs, onnxruntime profile differs in %ld (constant unfused: %ld, fma(ra,za,rb*zb): %ld, "
         "fma(rb,zb,ra*za): %ld)\n", n, total_lib, total_unfused, total_fused, total_sep);
}
