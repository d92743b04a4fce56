// The differentiable op library: qforge's functional API (like torch.nn.functional).
//
// Every function here is recorded on the autograd tape when grad mode is on and an input requires grad.
// Floating ops accept f32 and f64 (f64 is what gradcheck uses); mixing dtypes is an error. Binary
// element-wise ops broadcast like NumPy/PyTorch. Shape or dtype mismatches throw qforge::Error naming
// the op and both shapes.
//
// Files: elementwise.cpp (arith, unary, activations), reduce.cpp, softmax.cpp, matmul.cpp, conv.cpp,
// pool.cpp, norm.cpp, loss.cpp, shape_ops.cpp (concat/stack/split/pad), view.cpp (Tensor views),
// embedding.cpp, dropout.cpp.
#pragma once

#include "engine/autograd.hpp"
#include "engine/random.hpp"
#include "engine/tensor.hpp"

#include <array>
#include <optional>
#include <vector>

namespace qforge::ops {

// ---- helpers (not recorded) ------------------------------------------------------------------
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// Sums `g` down to `shape` (the inverse of broadcasting); returns g itself when shapes match.
Tensor sum_to(const Tensor& g, const Shape& shape);
int64_t normalize_dim(int64_t dim, int64_t ndim, const char* op);

// ---- element-wise binary (broadcasting) ---------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);  // gradient to a where a >= b (ties: half each)
Tensor minimum(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);  // cond: bool, broadcast all
// scalar forms
Tensor add(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);

// ---- element-wise unary -----------------------------------------------------------------------
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor clamp(const Tensor& x, std::optional<double> lo, std::optional<double> hi);
Tensor relu(const Tensor& x);
Tensor relu6(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor hardswish(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor tanh(const Tensor& x);

// comparisons (not differentiable, return bool)
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);

// ---- reductions (dims empty = all) -------------------------------------------------------------
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);  // values; grad to the first argmax
Tensor min(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor max(const Tensor& x);  // over all elements
Tensor min(const Tensor& x);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i32, first maximum
Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

// ---- linear algebra (OpenBLAS) -----------------------------------------------------------------
// matmul: 1-D/2-D/batched (..., n, k) x (..., k, m) with broadcast batch dims, like torch.matmul.
Tensor matmul(const Tensor& a, const Tensor& b);
// linear: x [..., in] · W[out, in]^T + bias[out]
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor());

// ---- convolution and pooling (NCHW, weights OIHW) -------------------------------------------------
struct Conv2dParams {
  std::array<int64_t, 2> stride{1, 1};
  std::array<int64_t, 2> padding{0, 0};
  std::array<int64_t, 2> dilation{1, 1};
  int64_t groups = 1;
};
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = Tensor(),
              const Conv2dParams& p = {});

struct Pool2dParams {
  std::array<int64_t, 2> kernel{2, 2};
  std::array<int64_t, 2> stride{2, 2};  // PyTorch's default: stride = kernel
  std::array<int64_t, 2> padding{0, 0};
  bool count_include_pad = true;        // avg_pool2d only
};
Tensor max_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor avg_pool2d(const Tensor& x, const Pool2dParams& p);
Tensor adaptive_avg_pool2d(const Tensor& x, std::array<int64_t, 2> output_size);
Tensor global_avg_pool2d(const Tensor& x);  // [N,C,H,W] -> [N,C,1,1]

// ---- normalisation, regularisation, lookup ------------------------------------------------------
// batch_norm over dim 1 of [N,C] or [N,C,H,W]. training: normalise with batch statistics and update
// running_mean/var in place (unbiased var, momentum as PyTorch); eval: use the running statistics.
Tensor batch_norm(const Tensor& x, Tensor running_mean, Tensor running_var, const Tensor& weight,
                  const Tensor& bias, bool training, double momentum = 0.1, double eps = 1e-5);
Tensor dropout(const Tensor& x, double p, bool training, Generator& gen);
Tensor embedding(const Tensor& weight, const Tensor& indices);  // indices i32 any shape

// ---- shape ---------------------------------------------------------------------------------------
Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);
// pad: (left, right) pairs starting from the last dimension, as torch.nn.functional.pad; constant value
Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value = 0);
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);

// ---- losses (reduction mean over non-ignored targets) --------------------------------------------
// logits [N, C] (or [N, C, d...]), target i32 [N] (or [N, d...]).
Tensor cross_entropy(const Tensor& logits, const Tensor& target, int64_t ignore_index = -100,
                     double label_smoothing = 0.0);
Tensor nll_loss(const Tensor& log_probs, const Tensor& target, int64_t ignore_index = -100);
Tensor mse_loss(const Tensor& a, const Tensor& b);

}  // namespace qforge::ops

namespace qforge {
// Operator sugar for tests and model code.
inline Tensor operator+(const Tensor& a, const Tensor& b) { return ops::add(a, b); }
inline Tensor operator-(const Tensor& a, const Tensor& b) { return ops::sub(a, b); }
inline Tensor operator*(const Tensor& a, const Tensor& b) { return ops::mul(a, b); }
inline Tensor operator/(const Tensor& a, const Tensor& b) { return ops::div(a, b); }
inline Tensor operator-(const Tensor& a) { return ops::neg(a); }
inline Tensor operator+(const Tensor& a, double b) { return ops::add(a, b); }
inline Tensor operator*(const Tensor& a, double b) { return ops::mul(a, b); }
}  // namespace qforge
