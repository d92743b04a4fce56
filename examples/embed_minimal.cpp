// The smallest program embedding qforge: fit y = 2x + 1 with autograd and plain gradient descent.
// Built against the installed library by tests/scripts/test_install.sh:
//   g++ embed_minimal.cpp $(pkg-config --cflags --libs qforge)
#include <qforge/engine/ops/ops.hpp>

#include <cmath>
#include <cstdio>

using namespace qforge;

int main() {
  Generator gen(42);
  Tensor x = Tensor::rand({64, 1}, gen, -1, 1);
  Tensor y = ops::add(ops::mul(x, 2.0), 1.0);
  Tensor w = Tensor::zeros({1, 1}).set_requires_grad();
  Tensor b = Tensor::zeros({1}).set_requires_grad();
  double loss_value = 0;
  for (int step = 0; step < 300; ++step) {
    Tensor pred = ops::add(ops::matmul(x, w), b);
    Tensor diff = ops::sub(pred, y);
    Tensor loss = ops::mean(ops::mul(diff, diff));
    loss_value = loss.item();
    w.zero_grad();
    b.zero_grad();
    loss.backward();
    NoGradGuard no_grad;
    w.copy_(ops::sub(w, ops::mul(w.grad(), 0.5)));
    b.copy_(ops::sub(b, ops::mul(b.grad(), 0.5)));
  }
  std::printf("w=%.4f b=%.4f loss=%.2e\n", w.item(), b.item(), loss_value);
  const bool ok = std::abs(w.item() - 2) < 1e-3 && std::abs(b.item() - 1) < 1e-3;
  std::printf("embed_minimal: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
