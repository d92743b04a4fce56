// Tensor views (sharing storage) and copies, each differentiable.
//
// A view op returns a tensor over the same Storage with new shape/strides/offset; its backward maps the
// gradient back to the input's shape (reshape back, transpose back, scatter into zeros for slices, sum
// over expanded dimensions).
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <algorithm>
#include <numeric>

namespace qforge {

using ops::apply;
using ops::OpBase;

namespace {

// Strides for viewing `t` as `shape` without copying, or nullopt when impossible (PyTorch's rule:
// each run of merged/split dimensions must be contiguous within itself).
std::optional<Shape> view_strides(const Tensor& t, const Shape& shape) {
  if (t.is_contiguous()) return contiguous_strides(shape);
  const Shape& os = t.shape();
  const Shape& ost = t.strides();
  Shape st(shape.size());
  int64_t vi = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t ti = static_cast<int64_t>(os.size()) - 1; ti >= 0; --ti) {
    tensor_numel *= os[ti];
    if (ti == 0 || (os[ti - 1] != 1 && ost[ti - 1] != tensor_numel * chunk_base_stride)) {
      while (vi >= 0 && (view_numel < tensor_numel || shape[vi] == 1)) {
        st[vi] = view_numel * chunk_base_stride;
        view_numel *= shape[vi];
        --vi;
      }
      if (view_numel != tensor_numel) return std::nullopt;
      if (ti > 0) {
        chunk_base_stride = ost[ti - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (vi != -1) return std::nullopt;
  return st;
}

Shape infer_shape(const Shape& shape, int64_t numel, const char* op, const Shape& from) {
  Shape out = shape;
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      QFORGE_CHECK(infer < 0, "{}: more than one -1 in shape {}", op, shape_str(shape));
      infer = static_cast<int64_t>(i);
    } else {
      QFORGE_CHECK(out[i] >= 0, "{}: invalid shape {}", op, shape_str(shape));
      known *= out[i];
    }
  }
  if (infer >= 0) {
    QFORGE_CHECK(known != 0 && numel % known == 0, "{}: cannot view {} as {}", op, shape_str(from), shape_str(shape));
    out[infer] = numel / known;
  }
  QFORGE_CHECK(shape_numel(out) == numel, "{}: cannot view {} ({} elements) as {}", op, shape_str(from), numel,
               shape_str(shape));
  return out;
}

// Applies a view with explicit geometry (used by reshape/view/flatten/squeeze/unsqueeze).
struct ReshapeViewOp : OpBase {
  static constexpr const char* kName = "reshape";
  Shape in_shape, shape, strides;
  Tensor forward(const Tensor& x) {
    in_shape = x.shape();
    return Tensor::make_view(x, shape, strides, x.offset());
  }
  std::vector<Tensor> backward(const Tensor& g) { return {g.reshape(in_shape)}; }
};

struct PermuteOp : OpBase {
  static constexpr const char* kName = "permute";
  Shape dims;
  Tensor forward(const Tensor& x) {
    Shape shape(dims.size()), strides(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) {
      shape[i] = x.shape()[dims[i]];
      strides[i] = x.strides()[dims[i]];
    }
    return Tensor::make_view(x, shape, strides, x.offset());
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Shape inv(dims.size());
    for (size_t i = 0; i < dims.size(); ++i) inv[dims[i]] = static_cast<int64_t>(i);
    return {g.permute(inv)};
  }
};

// Strided slice along one dimension (narrow, slice, select share it).
struct SliceOp : OpBase {
  static constexpr const char* kName = "slice";
  Shape in_shape;
  int64_t dim = 0, start = 0, end = 0, step = 1;
  bool drop_dim = false;
  Tensor forward(const Tensor& x) {
    in_shape = x.shape();
    Shape shape = x.shape(), strides = x.strides();
    const int64_t n = std::max<int64_t>(0, (end - start + step - 1) / step);
    const int64_t offset = x.offset() + start * strides[dim];
    shape[dim] = n;
    strides[dim] *= step;
    if (drop_dim) {
      shape.erase(shape.begin() + dim);
      strides.erase(strides.begin() + dim);
    }
    return Tensor::make_view(x, shape, strides, offset);
  }
  std::vector<Tensor> backward(const Tensor& g) {
    Tensor gx = Tensor::zeros(in_shape, g.dtype());
    Tensor region = gx.slice(dim, start, end, step);
    region.copy_(drop_dim ? g.unsqueeze(dim) : g);
    return {gx};
  }
};

struct ExpandOp : OpBase {
  static constexpr const char* kName = "expand";
  Shape in_shape, shape;
  Tensor forward(const Tensor& x) {
    in_shape = x.shape();
    const int64_t lead = static_cast<int64_t>(shape.size()) - x.dim();
    QFORGE_CHECK(lead >= 0, "expand: cannot expand {} to fewer dimensions {}", shape_str(x.shape()),
                 shape_str(shape));
    Shape strides(shape.size(), 0);
    for (int64_t i = 0; i < x.dim(); ++i) {
      const int64_t want = shape[lead + i] == -1 ? x.shape()[i] : shape[lead + i];
      QFORGE_CHECK(x.shape()[i] == want || x.shape()[i] == 1, "expand: cannot expand {} to {}",
                   shape_str(x.shape()), shape_str(shape));
      shape[lead + i] = want;
      strides[lead + i] = x.shape()[i] == 1 && want != 1 ? 0 : x.strides()[i];
    }
    return Tensor::make_view(x, shape, strides, x.offset());
  }
  std::vector<Tensor> backward(const Tensor& g) { return {ops::sum_to(g, in_shape)}; }
};

struct CopyOp : OpBase {
  static constexpr const char* kName = "clone";
  DType in_dtype = DType::f32, out_dtype = DType::f32;
  Tensor forward(const Tensor& x) {
    in_dtype = x.dtype();
    Tensor out = Tensor::empty(x.shape(), out_dtype);
    out.copy_(x);
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g) { return {g.dtype() == in_dtype ? g : g.to(in_dtype)}; }
};

}  // namespace

Tensor Tensor::view(const Shape& shape_in) const {
  const Shape shape = infer_shape(shape_in, numel(), "view", this->shape());
  auto st = view_strides(*this, shape);
  QFORGE_CHECK(st.has_value(), "view: tensor of shape {} with strides {} cannot be viewed as {}; use reshape",
               shape_str(this->shape()), shape_str(strides()), shape_str(shape));
  ReshapeViewOp op;
  op.shape = shape;
  op.strides = *st;
  return apply(op, *this);
}

Tensor Tensor::reshape(const Shape& shape_in) const {
  const Shape shape = infer_shape(shape_in, numel(), "reshape", this->shape());
  if (view_strides(*this, shape)) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t a = ops::normalize_dim(d0, dim(), "transpose"), b = ops::normalize_dim(d1, dim(), "transpose");
  Shape dims(dim());
  std::iota(dims.begin(), dims.end(), 0);
  std::swap(dims[a], dims[b]);
  return permute(dims);
}

Tensor Tensor::permute(const Shape& dims_in) const {
  QFORGE_CHECK(static_cast<int64_t>(dims_in.size()) == dim(), "permute: {} dims for a tensor of shape {}",
               dims_in.size(), shape_str(shape()));
  PermuteOp op;
  std::vector<bool> seen(dim(), false);
  for (int64_t d : dims_in) {
    const int64_t n = ops::normalize_dim(d, dim(), "permute");
    QFORGE_CHECK(!seen[n], "permute: repeated dimension {} in {}", d, shape_str(dims_in));
    seen[n] = true;
    op.dims.push_back(n);
  }
  return apply(op, *this);
}

Tensor Tensor::slice(int64_t d, int64_t start, int64_t end, int64_t step) const {
  const int64_t dd = ops::normalize_dim(d, dim(), "slice");
  const int64_t n = shape()[dd];
  QFORGE_CHECK(step > 0, "slice: step must be positive, got {}", step);
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  SliceOp op;
  op.dim = dd;
  op.start = start;
  op.end = end;
  op.step = step;
  return apply(op, *this);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  const int64_t dd = ops::normalize_dim(d, dim(), "narrow");
  QFORGE_CHECK(start >= 0 && length >= 0 && start + length <= shape()[dd],
               "narrow: [{}, {}) out of range for dimension {} of shape {}", start, start + length, d,
               shape_str(shape()));
  return slice(dd, start, start + length);
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  const int64_t dd = ops::normalize_dim(d, dim(), "select");
  const int64_t n = shape()[dd];
  const int64_t i = index < 0 ? index + n : index;
  QFORGE_CHECK(i >= 0 && i < n, "select: index {} out of range for dimension {} of shape {}", index, d,
               shape_str(shape()));
  SliceOp op;
  op.dim = dd;
  op.start = i;
  op.end = i + 1;
  op.drop_dim = true;
  return apply(op, *this);
}

Tensor Tensor::expand(const Shape& shape) const {
  if (shape == this->shape()) return *this;
  ExpandOp op;
  op.shape = shape;
  return apply(op, *this);
}

Tensor Tensor::squeeze(int64_t d) const {
  const int64_t dd = ops::normalize_dim(d, dim(), "squeeze");
  if (shape()[dd] != 1) return *this;
  Shape s = shape();
  s.erase(s.begin() + dd);
  return view(s);
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t dd = ops::normalize_dim(d, dim() + 1, "unsqueeze");
  Shape s = shape(), st = strides();
  s.insert(s.begin() + dd, 1);
  st.insert(st.begin() + dd, dd < dim() ? st.empty() ? 1 : strides()[dd] * shape()[dd] : 1);
  ReshapeViewOp op;
  op.shape = s;
  op.strides = st;
  return apply(op, *this);
}

Tensor Tensor::flatten(int64_t start, int64_t end) const {
  if (dim() == 0) return reshape({1});
  const int64_t s = ops::normalize_dim(start, dim(), "flatten"), e = ops::normalize_dim(end, dim(), "flatten");
  QFORGE_CHECK(s <= e, "flatten: start {} after end {}", start, end);
  Shape out(shape().begin(), shape().begin() + s);
  int64_t n = 1;
  for (int64_t i = s; i <= e; ++i) n *= shape()[i];
  out.push_back(n);
  out.insert(out.end(), shape().begin() + e + 1, shape().end());
  return reshape(out);
}

Tensor Tensor::contiguous() const { return is_contiguous() ? *this : clone(); }

Tensor Tensor::clone() const {
  CopyOp op;
  op.out_dtype = dtype();
  return apply(op, *this);
}

Tensor Tensor::to(DType t) const {
  if (t == dtype()) return *this;
  CopyOp op;
  op.out_dtype = t;
  if (!is_floating(t) && requires_grad()) {
    // Integer results carry no gradient.
    NoGradGuard guard;
    return apply(op, *this);
  }
  return apply(op, *this);
}

namespace ops {
Tensor flatten(const Tensor& x, int64_t start, int64_t end) { return x.flatten(start, end); }
}  // namespace ops

}  // namespace qforge
