// Element-wise unary ops and activations. Each op is one struct: forward computes y = f(x) and saves
// x (or y, when the derivative is cheaper from the output); backward multiplies by f'.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cmath>
#include <limits>

namespace qforge::ops {

using detail::unary_map;
using detail::visit_float;

namespace {

// Computes g * f'(saved) element-wise, where saved is the op's input or output per the op.

#define QFORGE_UNARY_OP(Struct, NAME, FWD, DERIV, FROM_OUTPUT)                                        \
  struct Struct : OpBase {                                                                          \
    static constexpr const char* kName = NAME;                                                      \
    SavedTensor saved;                                                                              \
    Tensor forward(const Tensor& x) {                                                               \
      Tensor y = visit_float(x.dtype(), kName, [&]<class T>() { return unary_map<T>(x, FWD); });     \
      if (recording) saved = (FROM_OUTPUT) ? y : x;                                                 \
      return y;                                                                                     \
    }                                                                                               \
    std::vector<Tensor> backward(const Tensor& g) {                                                 \
      return {visit_float(g.dtype(), kName, [&]<class T>() {                                        \
        return detail::binary_map<T>(g, saved.get(kName), kName, [](T gv, T s) { return gv * (DERIV); }); \
      })};                                                                                          \
    }                                                                                               \
  };

// The lambdas take x (input) and the derivative expressions use s (saved input or output).
QFORGE_UNARY_OP(NegOp, "neg", [](T v) { return -v; }, T(-1), false)
QFORGE_UNARY_OP(ExpOp, "exp", [](T v) { return std::exp(v); }, s, true)
QFORGE_UNARY_OP(LogOp, "log", [](T v) { return std::log(v); }, T(1) / s, false)
QFORGE_UNARY_OP(SqrtOp, "sqrt", [](T v) { return std::sqrt(v); }, T(0.5) / s, true)
QFORGE_UNARY_OP(AbsOp, "abs", [](T v) { return std::abs(v); }, (s > 0 ? T(1) : s < 0 ? T(-1) : T(0)), false)
QFORGE_UNARY_OP(ReluOp, "relu", [](T v) { return v > 0 ? v : T(0); }, (s > 0 ? T(1) : T(0)), true)
QFORGE_UNARY_OP(Relu6Op, "relu6", [](T v) { return v <= 0 ? T(0) : v >= 6 ? T(6) : v; },
                (s > 0 && s < 6 ? T(1) : T(0)), false)
QFORGE_UNARY_OP(SigmoidOp, "sigmoid", [](T v) { return T(1) / (T(1) + std::exp(-v)); }, s * (T(1) - s), true)
QFORGE_UNARY_OP(TanhOp, "tanh", [](T v) { return std::tanh(v); }, T(1) - s * s, true)
// hardswish(x) = x * relu6(x + 3) / 6; derivative (x/3 + 0.5) on (-3, 3), 0 below, 1 above (PyTorch).
QFORGE_UNARY_OP(HardswishOp, "hardswish",
                [](T v) { return v <= T(-3) ? T(0) : v >= T(3) ? v : v * (v + T(3)) / T(6); },
                (s < T(-3) ? T(0) : s <= T(3) ? s / T(3) + T(0.5) : T(1)), false)

#undef QFORGE_UNARY_OP

struct LeakyReluOp : OpBase {
  static constexpr const char* kName = "leaky_relu";
  double slope = 0.01;
  SavedTensor saved;
  Tensor forward(const Tensor& x) {
    if (recording) saved = x;
    return visit_float(x.dtype(), kName, [&]<class T>() {
      const T a = static_cast<T>(slope);
      return unary_map<T>(x, [a](T v) { return v > 0 ? v : v * a; });
    });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    return {visit_float(g.dtype(), kName, [&]<class T>() {
      const T a = static_cast<T>(slope);
      return detail::binary_map<T>(g, saved.get(kName), kName, [a](T gv, T s) { return s > 0 ? gv : gv * a; });
    })};
  }
};

// clamp: gradient passes where lo <= x <= hi (PyTorch's convention: inclusive bounds).
struct ClampOp : OpBase {
  static constexpr const char* kName = "clamp";
  std::optional<double> lo, hi;
  SavedTensor saved;
  Tensor forward(const Tensor& x) {
    if (recording) saved = x;
    return visit_float(x.dtype(), kName, [&]<class T>() {
      const T l = lo ? static_cast<T>(*lo) : -std::numeric_limits<T>::infinity();
      const T h = hi ? static_cast<T>(*hi) : std::numeric_limits<T>::infinity();
      return unary_map<T>(x, [l, h](T v) { return v < l ? l : v > h ? h : v; });
    });
  }
  std::vector<Tensor> backward(const Tensor& g) {
    return {visit_float(g.dtype(), kName, [&]<class T>() {
      const T l = lo ? static_cast<T>(*lo) : -std::numeric_limits<T>::infinity();
      const T h = hi ? static_cast<T>(*hi) : std::numeric_limits<T>::infinity();
      return detail::binary_map<T>(g, saved.get(kName), kName,
                                   [l, h](T gv, T s) { return s >= l && s <= h ? gv : T(0); });
    })};
  }
};

}  // namespace

Tensor neg(const Tensor& x) { return apply(NegOp{}, x); }
Tensor exp(const Tensor& x) { return apply(ExpOp{}, x); }
Tensor log(const Tensor& x) { return apply(LogOp{}, x); }
Tensor sqrt(const Tensor& x) { return apply(SqrtOp{}, x); }
Tensor abs(const Tensor& x) { return apply(AbsOp{}, x); }
Tensor relu(const Tensor& x) { return apply(ReluOp{}, x); }
Tensor relu6(const Tensor& x) { return apply(Relu6Op{}, x); }
Tensor sigmoid(const Tensor& x) { return apply(SigmoidOp{}, x); }
Tensor tanh(const Tensor& x) { return apply(TanhOp{}, x); }
Tensor hardswish(const Tensor& x) { return apply(HardswishOp{}, x); }
Tensor leaky_relu(const Tensor& x, double slope) {
  LeakyReluOp op;
  op.slope = slope;
  return apply(op, x);
}
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi) {
  ClampOp op;
  op.lo = lo;
  op.hi = hi;
  return apply(op, x);
}

}  // namespace qforge::ops
