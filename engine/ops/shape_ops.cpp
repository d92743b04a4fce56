// Shape ops: concat, stack, split, chunk, pad.
//
// concat copies each input's contiguous block per "outer" index (the product of the dims before `dim`)
// into the result; backward hands each input its slice of the gradient. stack is concat of unsqueezed
// inputs. split/chunk return narrow views (differentiable through the view ops). pad takes
// torch.nn.functional.pad's (left, right) pairs starting from the last dimension; negative pads crop.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cstring>

namespace qforge::ops {

namespace {

struct ConcatOp : OpBase {
  static constexpr const char* kName = "concat";
  int64_t dim = 0;
  std::vector<int64_t> sizes;  // each input's extent along dim
  Tensor forward(const std::vector<Tensor>& xs) {
    QFORGE_CHECK(!xs.empty(), "concat: needs at least one tensor");
    const Tensor& first = xs[0];
    QFORGE_CHECK(first.defined() && first.dim() > 0, "concat: zero-dimensional tensor cannot be concatenated");
    dim = normalize_dim(dim, first.dim(), kName);
    Shape out_shape = first.shape();
    out_shape[dim] = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const Tensor& x = xs[i];
      QFORGE_CHECK(x.defined(), "concat: tensor {} is undefined", i);
      detail::check_same_dtype(first, x, kName);
      bool ok = x.dim() == first.dim();
      for (int64_t d = 0; ok && d < x.dim(); ++d) ok = d == dim || x.shape()[d] == first.shape()[d];
      QFORGE_CHECK(ok, "concat: shapes {} and {} differ outside dimension {}", shape_str(first.shape()),
                   shape_str(x.shape()), dim);
      sizes.push_back(x.shape()[dim]);
      out_shape[dim] += x.shape()[dim];
    }
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < dim; ++d) outer *= out_shape[d];
    for (int64_t d = dim + 1; d < static_cast<int64_t>(out_shape.size()); ++d) inner *= out_shape[d];
    Tensor out = Tensor::empty(out_shape, first.dtype());
    const size_t esz = dtype_size(first.dtype());
    const size_t out_row = static_cast<size_t>(out_shape[dim] * inner) * esz;
    char* o = static_cast<char*>(out.raw_data());
    size_t col = 0;
    for (size_t i = 0; i < xs.size(); ++i) {
      const Tensor x = xs[i].contiguous();
      const size_t row = static_cast<size_t>(sizes[i] * inner) * esz;
      const char* p = static_cast<const char*>(x.raw_data());
      if (row > 0)
        for (int64_t a = 0; a < outer; ++a) std::memcpy(o + a * out_row + col, p + a * row, row);
      col += row;
    }
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor g = g_in.contiguous();
    std::vector<Tensor> grads(sizes.size());
    int64_t outer = 1, inner = 1;
    for (int64_t d = 0; d < dim; ++d) outer *= g.shape()[d];
    for (int64_t d = dim + 1; d < g.dim(); ++d) inner *= g.shape()[d];
    const size_t esz = dtype_size(g.dtype());
    const size_t g_row = static_cast<size_t>(g.shape()[dim] * inner) * esz;
    const char* gp = static_cast<const char*>(g.raw_data());
    size_t col = 0;
    for (size_t i = 0; i < sizes.size(); ++i) {
      const size_t row = static_cast<size_t>(sizes[i] * inner) * esz;
      if (needs_grad(static_cast<int>(i))) {
        Shape shape = g.shape();
        shape[dim] = sizes[i];
        grads[i] = Tensor::empty(shape, g.dtype());
        char* o = static_cast<char*>(grads[i].raw_data());
        if (row > 0)
          for (int64_t a = 0; a < outer; ++a) std::memcpy(o + a * row, gp + a * g_row + col, row);
      }
      col += row;
    }
    return grads;
  }
};

// Per dimension: the part of the input that survives the pad, and where it lands in the output.
struct PadRegion {
  int64_t src_start, dst_start, length;
};

struct PadOp : OpBase {
  static constexpr const char* kName = "pad";
  std::vector<int64_t> pads;
  double value = 0;
  Shape in_shape, out_shape;
  std::vector<PadRegion> regions;

  Tensor forward(const Tensor& x) {
    QFORGE_CHECK(pads.size() % 2 == 0 && static_cast<int64_t>(pads.size()) <= 2 * x.dim(),
                 "pad: {} pad values for a tensor of shape {} (need pairs, at most 2 per dimension)", pads.size(),
                 shape_str(x.shape()));
    in_shape = x.shape();
    out_shape = x.shape();
    const int64_t nd = x.dim();
    regions.clear();
    for (int64_t d = 0; d < nd; ++d) {
      const int64_t from_last = nd - 1 - d;
      int64_t l = 0, r = 0;
      if (2 * from_last + 1 < static_cast<int64_t>(pads.size())) {
        l = pads[2 * from_last];
        r = pads[2 * from_last + 1];
      }
      const int64_t n = in_shape[d];
      out_shape[d] = n + l + r;
      QFORGE_CHECK(out_shape[d] >= 0, "pad: pads ({}, {}) leave dimension {} of shape {} with negative size {}", l, r,
                   d, shape_str(in_shape), out_shape[d]);
      const int64_t src_start = std::max<int64_t>(0, -l);
      const int64_t src_end = n - std::max<int64_t>(0, -r);
      regions.push_back({src_start, std::max<int64_t>(0, l), std::max<int64_t>(0, src_end - src_start)});
    }
    Tensor out = Tensor::full(out_shape, value, x.dtype());
    copy_region(out, x.contiguous(), false);
    return out;
  }
  // Copies the surviving region between contiguous tensors: input -> output (forward) or
  // output-shaped gradient -> input-shaped gradient (backward). The last dim is one memcpy per row.
  void copy_region(const Tensor& out_like, const Tensor& in_like, bool to_input) const {
    const int64_t nd = static_cast<int64_t>(regions.size());
    for (const PadRegion& r : regions)
      if (r.length == 0) return;
    const size_t esz = dtype_size(in_like.dtype());
    if (nd == 0) {
      std::memcpy(to_input ? in_like.raw_data() : out_like.raw_data(),
                  to_input ? out_like.raw_data() : in_like.raw_data(), esz);
      return;
    }
    const Shape in_st = contiguous_strides(in_shape), out_st = contiguous_strides(out_shape);
    char* ip = static_cast<char*>(in_like.raw_data());
    char* op = static_cast<char*>(out_like.raw_data());
    int64_t in_off = 0, out_off = 0;
    for (int64_t d = 0; d < nd; ++d) {
      in_off += regions[d].src_start * in_st[d];
      out_off += regions[d].dst_start * out_st[d];
    }
    const size_t run = static_cast<size_t>(regions[nd - 1].length) * esz;
    std::vector<int64_t> idx(nd, 0);
    while (true) {
      if (to_input) std::memcpy(ip + in_off * esz, op + out_off * esz, run);
      else std::memcpy(op + out_off * esz, ip + in_off * esz, run);
      int64_t d = nd - 2;
      for (; d >= 0; --d) {
        if (++idx[d] < regions[d].length) {
          in_off += in_st[d];
          out_off += out_st[d];
          break;
        }
        in_off -= in_st[d] * (regions[d].length - 1);
        out_off -= out_st[d] * (regions[d].length - 1);
        idx[d] = 0;
      }
      if (d < 0) return;
    }
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    copy_region(g.contiguous(), gx, true);
    return {gx};
  }
};

}  // namespace

Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  ConcatOp op;
  op.dim = dim;
  return apply_list(op, xs);
}

Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  QFORGE_CHECK(!xs.empty(), "stack: needs at least one tensor");
  const int64_t d = normalize_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> u;
  u.reserve(xs.size());
  for (size_t i = 0; i < xs.size(); ++i) {
    QFORGE_CHECK(xs[i].shape() == xs[0].shape(), "stack: shapes {} and {} differ", shape_str(xs[0].shape()),
                 shape_str(xs[i].shape()));
    u.push_back(xs[i].unsqueeze(d));
  }
  return concat(u, d);
}

std::vector<Tensor> split(const Tensor& x, int64_t split_size, int64_t dim) {
  QFORGE_CHECK(x.dim() > 0, "split: cannot split a zero-dimensional tensor");
  const int64_t d = normalize_dim(dim, x.dim(), "split");
  const int64_t n = x.shape()[d];
  QFORGE_CHECK(split_size > 0 || (split_size == 0 && n == 0), "split: split_size must be positive, got {}",
               split_size);
  std::vector<Tensor> out;
  if (n == 0) return {x};
  for (int64_t start = 0; start < n; start += split_size) out.push_back(x.narrow(d, start, std::min(split_size, n - start)));
  return out;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim) {
  QFORGE_CHECK(chunks > 0, "chunk: number of chunks must be positive, got {}", chunks);
  QFORGE_CHECK(x.dim() > 0, "chunk: cannot chunk a zero-dimensional tensor");
  const int64_t d = normalize_dim(dim, x.dim(), "chunk");
  const int64_t n = x.shape()[d];
  return split(x, std::max<int64_t>(1, (n + chunks - 1) / chunks), d);
}

Tensor pad(const Tensor& x, const std::vector<int64_t>& pads, double value) {
  PadOp op;
  op.pads = pads;
  op.value = value;
  return apply(op, x);
}

}  // namespace qforge::ops
