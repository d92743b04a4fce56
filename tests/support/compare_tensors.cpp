// compare_tensors: compares named arrays of two tensor files (.npz, .npy or .safetensors), for the CLI
// script tests (tests/scripts/test_onnx_import.sh compares `qforge run` outputs with PyTorch's).
//
//   compare_tensors EXPECTED ACTUAL [--tol T] [--exact] [NAME | NAME=ACTUAL_NAME ...]
//   compare_tensors --list FILE        one line per array: name, dtype, shape (tab-separated)
//   compare_tensors --spec-outputs DIR the model directory's outputs (model.json "outputs"), one a line,
//                                      in order: the names `qforge run` gives them (an imported model's
//                                      k-th ONNX graph output is the spec's k-th output)
//
// Without names every array of EXPECTED is compared with the array of the same name in ACTUAL (a .npy
// file holds one array, named after the file without its extension). Shapes must be equal.
//   default / --tol T   max |actual - expected| / max |expected| <= T (default 1e-4); a NaN or inf in
//                       ACTUAL fails; when EXPECTED is all zeros the absolute difference is used.
//   --exact             every element equal (integers: the count of differing elements is printed).
// One line per array on stdout. Exit 0: all within tolerance; 1: a difference; 2: a file or array is
// missing or unreadable, or bad usage.
#include "data/npy.hpp"
#include "engine/error.hpp"
#include "nn/model_dir.hpp"
#include "nn/safetensors.hpp"

#include <cmath>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

using namespace qforge;
namespace fs = std::filesystem;

namespace {

std::map<std::string, Tensor> read_tensors(const fs::path& path) {
  std::map<std::string, Tensor> out;
  const auto ext = path.extension().string();
  if (ext == ".npz") {
    for (auto& [name, arr] : data::read_npz(path)) out[name] = arr.tensor;
  } else if (ext == ".npy") {
    out[path.stem().string()] = data::read_npy(path).tensor;
  } else if (ext == ".safetensors") {
    out = nn::load_safetensors(path);
  } else {
    throw InputError(path.string() + ": not a .npz, .npy or .safetensors file");
  }
  return out;
}

struct Result {
  bool ok = true;
  std::string line;
};

Result compare(const std::string& name, const Tensor& e, const Tensor& a, double tol, bool exact) {
  char buf[512];
  if (e.shape() != a.shape()) {
    std::snprintf(buf, sizeof buf, "FAIL %s: shape %s, expected %s", name.c_str(), shape_str(a.shape()).c_str(),
                  shape_str(e.shape()).c_str());
    return {false, buf};
  }
  const auto ev = e.to_vector<double>();
  const auto av = a.to_vector<double>();
  double max_e = 0, max_diff = 0;
  size_t differing = 0;
  bool finite = true;
  for (size_t i = 0; i < ev.size(); ++i) {
    max_e = std::max(max_e, std::abs(ev[i]));
    if (!std::isfinite(av[i])) finite = false;
    const double d = std::abs(av[i] - ev[i]);
    if (!(d == 0)) ++differing;
    if (d > max_diff || std::isnan(d)) max_diff = std::isnan(d) ? INFINITY : d;
  }
  const double rel = max_e > 0 ? max_diff / max_e : max_diff;
  const bool ok = exact ? differing == 0 : (finite && rel <= tol);
  std::snprintf(buf, sizeof buf, "%s %s %s: max|diff| %.3g, relative %.3g (%s %.3g), %zu of %zu differ",
                ok ? "ok  " : "FAIL", name.c_str(), shape_str(e.shape()).c_str(), max_diff, rel,
                exact ? "exact," : "tolerance", exact ? 0.0 : tol, differing, ev.size());
  return {ok, buf};
}

int run(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--list") {
    for (const auto& [name, t] : read_tensors(argv[2]))
      std::printf("%s\t%s\t%s\n", name.c_str(), std::string(dtype_name(t.dtype())).c_str(), shape_str(t.shape()).c_str());
    return 0;
  }
  if (argc == 3 && std::string(argv[1]) == "--spec-outputs") {
    const auto spec = nn::read_json_file(fs::path(argv[2]) / "model.json");
    if (!spec.contains("outputs") || !spec["outputs"].is_array())
      throw InputError(std::string(argv[2]) + "/model.json: no \"outputs\" list");
    for (const auto& o : spec["outputs"]) std::printf("%s\n", o.get<std::string>().c_str());
    return 0;
  }
  std::vector<std::string> positional, names;
  double tol = 1e-4;
  bool exact = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--tol" && i + 1 < argc) {
      tol = std::stod(argv[++i]);
    } else if (arg == "--exact") {
      exact = true;
    } else if (arg.rfind("--", 0) == 0) {
      throw InputError("unknown option " + arg);
    } else {
      (positional.size() < 2 ? positional : names).push_back(arg);
    }
  }
  if (positional.size() != 2)
    throw InputError("usage: compare_tensors EXPECTED ACTUAL [--tol T] [--exact] [NAME[=ACTUAL_NAME] ...] | --list FILE | "
                     "--spec-outputs DIR");
  const auto expected = read_tensors(positional[0]);
  const auto actual = read_tensors(positional[1]);
  if (names.empty())
    for (const auto& [n, t] : expected) names.push_back(n);
  bool ok = true;
  for (const auto& spec : names) {
    const auto eq = spec.find('=');
    const std::string en = spec.substr(0, eq), an = eq == std::string::npos ? en : spec.substr(eq + 1);
    const auto e = expected.find(en);
    if (e == expected.end()) throw InputError(positional[0] + ": no array '" + en + "'");
    const auto a = actual.find(an);
    if (a == actual.end()) throw InputError(positional[1] + ": no array '" + an + "'");
    const auto r = compare(en == an ? en : en + "=" + an, e->second, a->second, tol, exact);
    std::printf("%s\n", r.line.c_str());
    ok = ok && r.ok;
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "compare_tensors: %s\n", e.what());
    return 2;
  }
}
