// Inverted dropout: in training each element is zeroed with probability p and the survivors are scaled
// by 1/(1-p), so eval needs no rescaling. Randomness comes only from the explicit Generator (one
// uniform draw per element, in row-major order), so the same seed gives the same mask. The mask (0 or
// 1/(1-p) per element) is what backward multiplies the gradient by.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

namespace qforge::ops {

using detail::visit_float;

namespace {

struct DropoutOp : OpBase {
  static constexpr const char* kName = "dropout";
  double p = 0.5;
  Generator* gen = nullptr;
  Tensor mask;  // op-owned, same dtype and shape as the input
  Tensor forward(const Tensor& x_in) {
    Tensor x = x_in.contiguous();
    mask = Tensor::empty(x.shape(), x.dtype());
    Tensor y = Tensor::empty(x.shape(), x.dtype());
    visit_float(x.dtype(), kName, [&]<class T>() {
      const T keep = p >= 1 ? T(0) : static_cast<T>(1.0 / (1.0 - p));
      const T* xp = x.data<T>();
      T* mp = mask.data<T>();
      T* yp = y.data<T>();
      for (int64_t i = 0, e = x.numel(); i < e; ++i) {
        mp[i] = gen->uniform() < p ? T(0) : keep;
        yp[i] = xp[i] * mp[i];
      }
    });
    if (!recording) mask = Tensor();
    return y;
  }
  std::vector<Tensor> backward(const Tensor& g) {
    return {visit_float(g.dtype(), kName, [&]<class T>() {
      return detail::binary_map<T>(g, mask, kName, [](T a, T b) { return a * b; });
    })};
  }
};

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator& gen) {
  detail::check_float(x, "dropout");
  QFORGE_CHECK(p >= 0 && p <= 1, "dropout: probability must be in [0, 1], got {}", p);
  if (!training || p == 0) return x;
  DropoutOp op;
  op.p = p;
  op.gen = &gen;
  return apply(op, x);
}

}  // namespace qforge::ops
