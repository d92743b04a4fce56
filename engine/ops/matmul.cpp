// matmul (torch.matmul semantics) and linear (x · W^T + b), both on OpenBLAS GEMM.
//
// The primitive MatmulOp multiplies [..., n, k] x [..., k, m] with broadcast batch dimensions. Operands
// whose last two dimensions are row-major or transposed (any leading dimension) go to BLAS as they are,
// with the transpose flag, so `a.transpose(0, 1)` costs no copy. Gradients of broadcast operands are
// accumulated per batch with beta = 1 straight into a buffer of the operand's own shape, which sums over
// the broadcast dimensions without a separate reduction.
//
// matmul() handles the 1-D promotions of torch.matmul (prepend/append a dimension, removed afterwards)
// and folds [..., n, k] x [k, m] into one [(...n), k] x [k, m] GEMM. linear() is one fused op; a test
// proves it matches matmul(x, W^T) + b in forward and backward (DESIGN.md §2).
#include "engine/ops/blas.hpp"
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <omp.h>

#include <algorithm>

namespace qforge::ops {

using detail::check_float;
using detail::check_same_dtype;
using detail::gemm;
using detail::visit_float;

namespace {

// How a tensor's last two dims (rows x cols) are laid out for BLAS.
struct MatLayout {
  bool ok = false;     // false: needs a contiguous copy
  bool trans = false;  // stored column-major: pass with the transpose flag
  int64_t ld = 1;
};

MatLayout mat_layout(const Tensor& t) {
  const int64_t nd = t.dim();
  const int64_t rows = t.shape()[nd - 2], cols = t.shape()[nd - 1];
  const int64_t rs = t.strides()[nd - 2], cs = t.strides()[nd - 1];
  if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= std::max<int64_t>(cols, 1)))
    return {true, false, std::max<int64_t>({rs, cols, 1})};
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= std::max<int64_t>(rows, 1)))
    return {true, true, std::max<int64_t>({cs, rows, 1})};
  return {};
}

// Batch geometry of one operand inside the broadcast batch shape: element offset of each batch.
std::vector<int64_t> batch_offsets(const Shape& batch, const Shape& op_shape, const Shape& op_strides) {
  const int64_t nb = shape_numel(batch);
  const size_t nd = batch.size();
  const size_t od = op_shape.size() - 2;  // operand batch dims
  Shape st(nd, 0);
  for (size_t i = 0; i < od; ++i)
    if (op_shape[i] != 1) st[nd - od + i] = op_strides[i];
  std::vector<int64_t> off(static_cast<size_t>(nb), 0);
  std::vector<int64_t> idx(nd, 0);
  int64_t cur = 0;
  for (int64_t b = 0; b < nb; ++b) {
    off[static_cast<size_t>(b)] = cur;
    for (int64_t d = static_cast<int64_t>(nd) - 1; d >= 0; --d) {
      if (++idx[d] < batch[d]) {
        cur += st[d];
        break;
      }
      cur -= st[d] * (batch[d] - 1);
      idx[d] = 0;
    }
  }
  return off;
}

Shape batch_of(const Shape& s) { return Shape(s.begin(), s.end() - 2); }

bool batch_broadcastable(const Shape& a, const Shape& b) {
  const size_t n = std::min(a.size(), b.size());
  for (size_t i = 1; i <= n; ++i) {
    const int64_t x = a[a.size() - i], y = b[b.size() - i];
    if (x != y && x != 1 && y != 1) return false;
  }
  return true;
}

// Threads for a loop over nb independent GEMMs of `each` multiply-adds: big GEMMs are split by gemm()
// itself, many small ones are spread over the batch instead (Note [BLAS threads inside OpenMP]).
int batch_threads(int64_t nb, int64_t each) {
  if (nb < 2 || static_cast<double>(each) >= detail::kSmallGemmWork ||
      static_cast<double>(each) * static_cast<double>(nb) < detail::kSmallGemmWork / 4)
    return 1;
  return static_cast<int>(std::min<int64_t>(nb, omp_get_max_threads()));
}

Tensor blas_ready(const Tensor& t) { return mat_layout(t).ok ? t : t.contiguous(); }

// [..., n, k] x [..., k, m] -> [..., n, m]; inputs have dim >= 2 and were checked by matmul().
struct MatmulOp : OpBase {
  static constexpr const char* kName = "matmul";
  SavedTensor sa, sb;
  Tensor forward(const Tensor& a_in, const Tensor& b_in) {
    const Tensor a = blas_ready(a_in), b = blas_ready(b_in);
    a_shape = a.shape();
    b_shape = b.shape();
    if (recording) {
      if (needs_grad(1)) sa = a;
      if (needs_grad(0)) sb = b;
    }
    const Shape batch = broadcast_shapes(batch_of(a.shape()), batch_of(b.shape()), kName);
    const int64_t n = a.size(-2), k = a.size(-1), m = b.size(-1);
    Shape out_shape = batch;
    out_shape.push_back(n);
    out_shape.push_back(m);
    Tensor out = Tensor::empty(out_shape, a.dtype());
    const auto oa = batch_offsets(batch, a.shape(), a.strides());
    const auto ob = batch_offsets(batch, b.shape(), b.strides());
    const MatLayout la = mat_layout(a), lb = mat_layout(b);
    visit_float(a.dtype(), kName, [&]<class T>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* po = out.data<T>();
      const int64_t nb = static_cast<int64_t>(oa.size());
      const int nt = batch_threads(nb, n * m * k);
      detail::for_each_gemm(nb, nt, [&](int64_t i) {
        gemm(la.trans, lb.trans, n, m, k, T(1), pa + oa[i], la.ld, pb + ob[i], lb.ld, T(0), po + i * n * m, m);
      });
    });
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    const Shape batch = batch_of(g.shape());
    const int64_t n = g.size(-2), m = g.size(-1);
    const int64_t nb = shape_numel(batch);
    Tensor ga, gb;
    visit_float(g.dtype(), kName, [&]<class T>() {
      const T* pg = g.data<T>();
      if (needs_grad(0)) {
        const Tensor& b = sb.get(kName);
        const MatLayout lb = mat_layout(b);
        const int64_t k = b.size(-2);
        Shape ashape = batch_of(a_shape);
        ashape.push_back(n);
        ashape.push_back(k);
        ga = Tensor::empty(ashape, g.dtype());
        const auto og = batch_offsets(batch, ashape, ga.strides());
        const auto ob = batch_offsets(batch, b.shape(), b.strides());
        const T beta = shape_numel(batch_of(ashape)) == nb ? T(0) : T(1);
        T* pga = ga.data<T>();
        // Batches write disjoint blocks unless `a` was broadcast (then they accumulate: stay serial).
        const int nt = beta == T(0) ? batch_threads(nb, n * m * k) : 1;
        detail::for_each_gemm(nb, nt, [&](int64_t i) {  // ga = g · op(b)^T
          gemm(false, !lb.trans, n, k, m, T(1), pg + i * n * m, m, b.data<T>() + ob[i], lb.ld, beta, pga + og[i], k);
        });
      }
      if (needs_grad(1)) {
        const Tensor& a = sa.get(kName);
        const MatLayout la = mat_layout(a);
        const int64_t k = a.size(-1);
        Shape bshape = batch_of(b_shape);
        bshape.push_back(k);
        bshape.push_back(m);
        gb = Tensor::empty(bshape, g.dtype());
        const auto og = batch_offsets(batch, bshape, gb.strides());
        const auto oa = batch_offsets(batch, a.shape(), a.strides());
        const T beta = shape_numel(batch_of(bshape)) == nb ? T(0) : T(1);
        T* pgb = gb.data<T>();
        const int nt = beta == T(0) ? batch_threads(nb, n * m * k) : 1;
        detail::for_each_gemm(nb, nt, [&](int64_t i) {  // gb = op(a)^T · g
          gemm(!la.trans, false, k, m, n, T(1), a.data<T>() + oa[i], la.ld, pg + i * n * m, m, beta, pgb + og[i], m);
        });
      }
    });
    return {ga, gb};
  }
  Shape a_shape, b_shape;  // operand shapes (the gradient of one is computed without the other saved)
};

// y = x · W^T + b over the last dimension of x.
struct LinearOp : OpBase {
  static constexpr const char* kName = "linear";
  SavedTensor sx, sw;
  Shape x_shape;
  Tensor forward(const Tensor& x_in, const Tensor& w_in, const Tensor& bias) {
    const Tensor x = x_in.contiguous(), w = blas_ready(w_in);
    x_shape = x.shape();
    if (recording) {
      if (needs_grad(1)) sx = x;
      if (needs_grad(0)) sw = w;
    }
    const int64_t in = w.size(1), out_f = w.size(0), rows = in == 0 ? 0 : x.numel() / in;
    Shape out_shape(x.shape().begin(), x.shape().end() - 1);
    out_shape.push_back(out_f);
    Tensor out = Tensor::empty(out_shape, x.dtype());
    const MatLayout lw = mat_layout(w);
    visit_float(x.dtype(), kName, [&]<class T>() {
      T* po = out.data<T>();
      T beta = T(0);
      if (bias.defined()) {
        const Tensor bc = bias.contiguous();
        const T* pb = bc.data<T>();
        for (int64_t r = 0; r < rows; ++r) std::copy(pb, pb + out_f, po + r * out_f);
        beta = T(1);
      }
      if (in == 0) return;
      gemm(false, !lw.trans, rows, out_f, in, T(1), x.data<T>(), in, w.data<T>(), lw.ld, beta, po, out_f);
    });
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    const int64_t out_f = g.size(-1), rows = out_f == 0 ? 0 : g.numel() / out_f;
    const int64_t in = x_shape.back();
    Tensor gx, gw, gbias;
    visit_float(g.dtype(), kName, [&]<class T>() {
      const T* pg = g.data<T>();
      if (needs_grad(0)) {
        const Tensor& w = sw.get(kName);
        const MatLayout lw = mat_layout(w);
        gx = Tensor::empty(x_shape, g.dtype());
        gemm(false, lw.trans, rows, in, out_f, T(1), pg, out_f, w.data<T>(), lw.ld, T(0), gx.data<T>(), in);
      }
      if (needs_grad(1)) {
        const Tensor& x = sx.get(kName);
        gw = Tensor::empty({out_f, in}, g.dtype());
        gemm(true, false, out_f, in, rows, T(1), pg, out_f, x.data<T>(), in, T(0), gw.data<T>(), in);
      }
      if (needs_grad(2)) {
        gbias = Tensor::empty({out_f}, g.dtype());
        T* pb = gbias.data<T>();
        for (int64_t r = 0; r < rows; ++r) {
          const T* row = pg + r * out_f;
          for (int64_t j = 0; j < out_f; ++j) pb[j] += row[j];
        }
      }
    });
    return {gx, gw, gbias};
  }
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  QFORGE_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both arguments need at least 1 dimension, got {} and {}",
               shape_str(a.shape()), shape_str(b.shape()));
  check_float(a, "matmul");
  check_same_dtype(a, b, "matmul");
  const bool a1 = a.dim() == 1, b1 = b.dim() == 1;
  Tensor A = a1 ? a.unsqueeze(0) : a;
  Tensor B = b1 ? b.unsqueeze(1) : b;
  QFORGE_CHECK(A.size(-1) == B.size(-2) && batch_broadcastable(batch_of(A.shape()), batch_of(B.shape())),
               "matmul: shapes {} and {} cannot be multiplied", shape_str(a.shape()), shape_str(b.shape()));
  Tensor out;
  if (B.dim() == 2 && A.dim() > 2) {
    // Fold the batch into the rows: one GEMM instead of one per batch.
    Shape out_shape(A.shape().begin(), A.shape().end() - 1);
    out_shape.push_back(B.size(1));
    const int64_t rows = shape_numel(batch_of(A.shape())) * A.size(-2);
    out = apply(MatmulOp{}, A.reshape({rows, A.size(-1)}), B).reshape(out_shape);
  } else {
    out = apply(MatmulOp{}, A, B);
  }
  if (b1) out = out.squeeze(-1);
  if (a1) out = out.squeeze(b1 ? -1 : -2);
  return out;
}

Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias) {
  QFORGE_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out, in], got {}", shape_str(weight.shape()));
  QFORGE_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1),
               "linear: input {} does not match weight {} (last input dim must equal weight dim 1)",
               shape_str(x.shape()), shape_str(weight.shape()));
  check_float(x, "linear");
  check_same_dtype(x, weight, "linear");
  if (bias.defined()) {
    check_same_dtype(x, bias, "linear");
    QFORGE_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias {} does not match weight {}",
                 shape_str(bias.shape()), shape_str(weight.shape()));
  }
  return apply(LinearOp{}, x, weight, bias);
}

}  // namespace qforge::ops
