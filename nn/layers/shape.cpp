// Shape and data-movement layers with ONNX semantics (Note [ONNX layers]): Concat, Split, Slice,
// Transpose, Reshape, Squeeze, Unsqueeze, Pad. All are views or copies through differentiable ops.
#include "nn/layers.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <numeric>

namespace qforge::nn {

namespace {

std::string list_str(const std::vector<int64_t>& v) { return fmt::format("[{}]", fmt::join(v, ", ")); }

// dim in [-rank, rank) -> [0, rank), or an Error naming the layer and the shape.
int64_t layer_dim(const std::string& layer, int64_t dim, const Shape& shape, const char* what = "dimension") {
  const int64_t rank = static_cast<int64_t>(shape.size());
  const int64_t d = dim < 0 ? dim + rank : dim;
  QFORGE_CHECK(d >= 0 && d < rank, "{}: {} {} out of range for an input of shape {}", layer, what, dim, shape_str(shape));
  return d;
}

// Element count of `shape`, or an Error when it overflows int64 (spec sizes are bounded by 2^31 each,
// not their products).
int64_t checked_numel(const std::string& layer, const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape)
    QFORGE_CHECK(!__builtin_mul_overflow(n, d, &n), "{}: output shape {} has too many elements", layer, shape_str(shape));
  return n;
}

}  // namespace

// ---- Concat -----------------------------------------------------------------------------------------

Concat::Concat(int64_t dim) : Module("Concat"), dim_(dim) {}

std::vector<Tensor> Concat::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(!inputs.empty(), "Concat: needs at least one input");
  const Shape& s0 = inputs[0].shape();
  const int64_t d = layer_dim(type_name(), dim_, s0);
  for (size_t i = 1; i < inputs.size(); ++i) {
    const Shape& s = inputs[i].shape();
    bool ok = s.size() == s0.size() && inputs[i].dtype() == inputs[0].dtype();
    for (size_t k = 0; ok && k < s.size(); ++k) ok = static_cast<int64_t>(k) == d || s[k] == s0[k];
    QFORGE_CHECK(ok, "Concat: input {} of shape {} ({}) does not match input 0 of shape {} ({}) outside dimension {}",
                 i, shape_str(s), dtype_name(inputs[i].dtype()), shape_str(s0), dtype_name(inputs[0].dtype()), dim_);
  }
  return {ops::concat(inputs, d)};  // a copy even for one input: a layer's output is a new value for the tracer
}

std::string Concat::extra_repr() const { return fmt::format("dim={}", dim_); }
nlohmann::json Concat::spec_args() const { return {{"dim", dim_}}; }

// ---- Split ------------------------------------------------------------------------------------------

Split::Split(int64_t dim, std::vector<int64_t> split_sizes) : Module("Split"), dim_(dim), sizes_(std::move(split_sizes)) {
  QFORGE_CHECK(!sizes_.empty(), "Split: split_sizes is empty");
  for (int64_t s : sizes_) QFORGE_CHECK(s >= 0, "Split: negative size in split_sizes {}", list_str(sizes_));
}

std::vector<Tensor> Split::forward(const std::vector<Tensor>& inputs) {
  QFORGE_CHECK(inputs.size() == 1, "Split: expects 1 input, got {}", inputs.size());
  const Tensor& x = inputs[0];
  const int64_t d = layer_dim(type_name(), dim_, x.shape());
  const int64_t total = std::accumulate(sizes_.begin(), sizes_.end(), int64_t{0});
  QFORGE_CHECK(total == x.size(d), "Split: split_sizes {} add up to {}, but dimension {} of the input {} has size {}",
               list_str(sizes_), total, dim_, shape_str(x.shape()), x.size(d));
  std::vector<Tensor> out;
  int64_t start = 0;
  for (int64_t s : sizes_) {
    out.push_back(x.narrow(d, start, s));
    start += s;
  }
  return out;
}

std::string Split::extra_repr() const { return fmt::format("dim={}, split_sizes={}", dim_, list_str(sizes_)); }
nlohmann::json Split::spec_args() const { return {{"dim", dim_}, {"split_sizes", sizes_}}; }

// ---- Slice ------------------------------------------------------------------------------------------

Slice::Slice(std::vector<int64_t> starts, std::vector<int64_t> ends, std::vector<int64_t> axes, std::vector<int64_t> steps)
    : Module("Slice"), starts_(std::move(starts)), ends_(std::move(ends)), axes_(std::move(axes)), steps_(std::move(steps)) {
  const size_t n = starts_.size();
  QFORGE_CHECK(n > 0 && ends_.size() == n, "Slice: starts {} and ends {} must be non-empty lists of one length",
               list_str(starts_), list_str(ends_));
  if (axes_.empty())
    for (size_t i = 0; i < n; ++i) axes_.push_back(static_cast<int64_t>(i));
  if (steps_.empty()) steps_.assign(n, 1);
  QFORGE_CHECK(axes_.size() == n, "Slice: {} axes for {} starts", axes_.size(), n);
  QFORGE_CHECK(steps_.size() == n, "Slice: {} steps for {} starts", steps_.size(), n);
  for (int64_t s : steps_) QFORGE_CHECK(s != 0, "Slice: a step is 0 (steps {})", list_str(steps_));
}

namespace {
// A negative-step slice of dimension d: gathers the rows start, start + step, ... (> end) with the
// differentiable embedding lookup over x viewed as [size(d), rest].
Tensor reversed_slice(const Tensor& x, int64_t d, int64_t start, int64_t end, int64_t step) {
  const int64_t n = x.size(d);
  start = std::clamp<int64_t>(start < 0 ? start + n : start, 0, n - 1);
  end = std::clamp<int64_t>(end < 0 ? end + n : end, -1, n - 1);
  std::vector<int32_t> idx;
  for (int64_t i = start; i > end; i += step) idx.push_back(static_cast<int32_t>(i));
  Shape perm(x.dim());
  std::iota(perm.begin(), perm.end(), 0);
  std::rotate(perm.begin(), perm.begin() + d, perm.begin() + d + 1);  // d first, others in order
  const Tensor front = x.permute(perm);
  Shape rest(front.shape().begin() + 1, front.shape().end());
  const int64_t inner = shape_numel(rest);
  Shape out_shape = front.shape();
  out_shape[0] = static_cast<int64_t>(idx.size());
  Tensor rows = ops::embedding(front.reshape({n, inner}),
                               Tensor::from_vector(idx, {static_cast<int64_t>(idx.size())}))
                    .reshape(out_shape);
  Shape back(x.dim());  // inverse permutation
  for (size_t i = 0; i < perm.size(); ++i) back[perm[i]] = static_cast<int64_t>(i);
  return rows.permute(back);
}
}  // namespace

Tensor Slice::forward_tensor(const Tensor& x) {
  Tensor y = x;
  std::vector<bool> seen(x.dim(), false);
  for (size_t i = 0; i < starts_.size(); ++i) {
    const int64_t d = layer_dim(type_name(), axes_[i], x.shape(), "axis");
    QFORGE_CHECK(!seen[d], "Slice: axis {} repeated in axes {}", axes_[i], list_str(axes_));
    seen[d] = true;
    if (steps_[i] > 0) {
      y = y.slice(d, starts_[i], ends_[i], steps_[i]);
    } else {
      QFORGE_CHECK(x.size(d) > 0, "Slice: negative step along empty dimension {} of {}", axes_[i], shape_str(x.shape()));
      y = reversed_slice(y, d, starts_[i], ends_[i], steps_[i]);
    }
  }
  return y;
}

std::string Slice::extra_repr() const {
  return fmt::format("starts={}, ends={}, axes={}, steps={}", list_str(starts_), list_str(ends_), list_str(axes_),
                     list_str(steps_));
}
nlohmann::json Slice::spec_args() const {
  return {{"starts", starts_}, {"ends", ends_}, {"axes", axes_}, {"steps", steps_}};
}

// ---- Transpose --------------------------------------------------------------------------------------

Transpose::Transpose(std::vector<int64_t> perm) : Module("Transpose"), perm_(std::move(perm)) {
  std::vector<int64_t> sorted = perm_;
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 0; i < sorted.size(); ++i)
    QFORGE_CHECK(sorted[i] == static_cast<int64_t>(i), "Transpose: perm {} is not a permutation of 0..{}",
                 list_str(perm_), static_cast<int64_t>(perm_.size()) - 1);
}

Tensor Transpose::forward_tensor(const Tensor& x) {
  Shape p(perm_.begin(), perm_.end());
  if (p.empty())
    for (int64_t i = x.dim() - 1; i >= 0; --i) p.push_back(i);
  QFORGE_CHECK(static_cast<int64_t>(p.size()) == x.dim(), "Transpose: perm {} for an input of shape {}",
               list_str(perm_), shape_str(x.shape()));
  return x.permute(p);
}

std::string Transpose::extra_repr() const { return "perm=" + list_str(perm_); }
nlohmann::json Transpose::spec_args() const { return {{"perm", perm_}}; }

// ---- Reshape ----------------------------------------------------------------------------------------

Reshape::Reshape(std::vector<int64_t> shape) : Module("Reshape"), shape_(std::move(shape)) {
  int inferred = 0;
  for (int64_t s : shape_) {
    QFORGE_CHECK(s >= -1, "Reshape: bad size {} in shape {} (sizes are >= 0, or -1 once)", s, list_str(shape_));
    inferred += s == -1;
  }
  QFORGE_CHECK(inferred <= 1, "Reshape: more than one -1 in shape {}", list_str(shape_));
}

Tensor Reshape::forward_tensor(const Tensor& x) {
  Shape out(shape_.begin(), shape_.end());
  int64_t known = 1, infer = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == 0) {
      QFORGE_CHECK(static_cast<int64_t>(i) < x.dim(), "Reshape: shape {} copies dimension {} (a 0) of the input {}, "
                   "which has only {} dimensions", list_str(shape_), i, shape_str(x.shape()), x.dim());
      out[i] = x.size(static_cast<int64_t>(i));
    }
    if (out[i] == -1) infer = static_cast<int64_t>(i);
    else QFORGE_CHECK(!__builtin_mul_overflow(known, out[i], &known), "Reshape: cannot reshape {} ({} elements) to {}",
                      shape_str(x.shape()), x.numel(), list_str(shape_));
  }
  if (infer >= 0) {
    QFORGE_CHECK(known != 0 && x.numel() % known == 0, "Reshape: cannot reshape {} ({} elements) to {}",
                 shape_str(x.shape()), x.numel(), list_str(shape_));
    out[infer] = x.numel() / known;
  }
  QFORGE_CHECK(known == x.numel() || infer >= 0, "Reshape: cannot reshape {} ({} elements) to {} ({} elements)",
               shape_str(x.shape()), x.numel(), list_str(shape_), known);
  return x.reshape(out);
}

std::string Reshape::extra_repr() const { return "shape=" + list_str(shape_); }
nlohmann::json Reshape::spec_args() const { return {{"shape", shape_}}; }

// ---- Squeeze / Unsqueeze ------------------------------------------------------------------------------

Squeeze::Squeeze(std::vector<int64_t> dims) : Module("Squeeze"), dims_(std::move(dims)) {}

Tensor Squeeze::forward_tensor(const Tensor& x) {
  std::vector<bool> drop(x.dim(), false);
  for (int64_t dim : dims_) {
    const int64_t d = layer_dim(type_name(), dim, x.shape());
    QFORGE_CHECK(x.size(d) == 1, "Squeeze: dimension {} of the input {} has size {}, not 1", dim, shape_str(x.shape()),
                 x.size(d));
    drop[d] = true;
  }
  Shape out;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (!(dims_.empty() ? x.size(d) == 1 : drop[d])) out.push_back(x.size(d));
  return x.reshape(out);
}

std::string Squeeze::extra_repr() const { return "dims=" + list_str(dims_); }
nlohmann::json Squeeze::spec_args() const { return {{"dims", dims_}}; }

Unsqueeze::Unsqueeze(std::vector<int64_t> dims) : Module("Unsqueeze"), dims_(std::move(dims)) {
  QFORGE_CHECK(!dims_.empty(), "Unsqueeze: dims is empty");
}

Tensor Unsqueeze::forward_tensor(const Tensor& x) {
  const int64_t rank = x.dim() + static_cast<int64_t>(dims_.size());
  std::vector<bool> inserted(rank, false);
  for (int64_t dim : dims_) {
    const int64_t d = dim < 0 ? dim + rank : dim;
    QFORGE_CHECK(d >= 0 && d < rank, "Unsqueeze: dimension {} out of range for an output of {} dimensions (input {})",
                 dim, rank, shape_str(x.shape()));
    QFORGE_CHECK(!inserted[d], "Unsqueeze: dimension {} repeated in dims {}", dim, list_str(dims_));
    inserted[d] = true;
  }
  Shape out;
  int64_t k = 0;
  for (int64_t d = 0; d < rank; ++d) out.push_back(inserted[d] ? 1 : x.size(k++));
  return x.reshape(out);
}

std::string Unsqueeze::extra_repr() const { return "dims=" + list_str(dims_); }
nlohmann::json Unsqueeze::spec_args() const { return {{"dims", dims_}}; }

// ---- Pad --------------------------------------------------------------------------------------------

Pad::Pad(std::vector<int64_t> pads, double value) : Module("Pad"), pads_(std::move(pads)), value_(value) {
  QFORGE_CHECK(!pads_.empty() && pads_.size() % 2 == 0,
               "Pad: pads {} must list a begin and an end per dimension (an even count)", list_str(pads_));
}

Tensor Pad::forward_tensor(const Tensor& x) {
  const int64_t rank = static_cast<int64_t>(pads_.size() / 2);
  QFORGE_CHECK(rank == x.dim(), "Pad: pads {} are for {} dimensions, the input {} has {}", list_str(pads_), rank,
               shape_str(x.shape()), x.dim());
  // ONNX [b0, b1, ..., e0, e1, ...] -> torch's (begin, end) pairs from the last dimension.
  std::vector<int64_t> torch_pads;
  for (int64_t d = rank - 1; d >= 0; --d) {
    const int64_t b = pads_[d], e = pads_[rank + d];
    QFORGE_CHECK(x.size(d) + b + e >= 0, "Pad: pads {} crop dimension {} of the input {} below size 0",
                 list_str(pads_), d, shape_str(x.shape()));
    torch_pads.push_back(b);
    torch_pads.push_back(e);
  }
  Shape out = x.shape();
  for (int64_t d = 0; d < rank; ++d) out[d] += pads_[d] + pads_[rank + d];
  checked_numel(type_name(), out);
  return ops::pad(x, torch_pads, value_);
}

std::string Pad::extra_repr() const { return fmt::format("pads={}, value={}", list_str(pads_), value_); }
nlohmann::json Pad::spec_args() const { return {{"pads", pads_}, {"value", value_}}; }

}  // namespace qforge::nn
