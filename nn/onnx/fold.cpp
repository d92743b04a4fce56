// Constant folding at import (Note [Lowering ONNX] in lower.hpp): nodes whose inputs are all known, and
// Shape of a value whose shape shape inference resolved, are evaluated here; torch.onnx's flatten pattern
// Shape -> Gather -> Unsqueeze -> Concat -> Reshape becomes a Reshape with a constant target.
//
// Note [Batch provenance]
// Shape(x)[k] where k is x's batch dimension is marked as "the batch size"; the marks follow the element
// through Gather, Slice, Concat, (Un)squeeze, Reshape, Cast and Identity. A Reshape target entry that
// carries the mark (or equals the batch size at the input's batch position) becomes 0 ("copy"), so the
// imported model runs at any batch size although it was folded for one.
#include "nn/onnx/lower.hpp"

#include "engine/json_util.hpp"

#include <algorithm>
#include <cmath>

namespace qforge::nn::onnx_import {

namespace {

using TP = ::onnx::TensorProto;
constexpr int64_t kMaxFoldedElements = int64_t{1} << 26;

ConstTensor make_ints(Shape dims, std::vector<int64_t> v, std::vector<uint8_t> batch = {}) {
  ConstTensor c;
  c.type = TP::INT64;
  c.dims = std::move(dims);
  c.ints = std::move(v);
  c.batch = batch.empty() ? std::vector<uint8_t>(c.ints.size(), 0) : std::move(batch);
  return c;
}

ConstTensor make_floats(Shape dims, const std::vector<float>& v) {
  ConstTensor c;
  c.type = TP::FLOAT;
  c.dims = std::move(dims);
  c.f = Tensor::from_vector(v, c.dims);
  return c;
}

std::vector<uint8_t> flags(const ConstTensor& c) {
  return c.batch.size() == c.ints.size() ? c.batch : std::vector<uint8_t>(c.ints.size(), 0);
}

// Output element i reads input element src[i]: applied to either representation.
ConstTensor gather_elements(const ConstTensor& in, Shape dims, const std::vector<int64_t>& src) {
  if (in.is_float()) {
    const std::vector<float> v = in.f.to_vector<float>();
    std::vector<float> out(src.size());
    for (size_t i = 0; i < src.size(); ++i) out[i] = v[size_t(src[i])];
    ConstTensor c = make_floats(std::move(dims), out);
    c.type = in.type;
    return c;
  }
  std::vector<int64_t> out(src.size());
  std::vector<uint8_t> b(src.size());
  const auto fl = flags(in);
  for (size_t i = 0; i < src.size(); ++i) out[i] = in.ints[size_t(src[i])], b[i] = fl[size_t(src[i])];
  ConstTensor c = make_ints(std::move(dims), std::move(out), std::move(b));
  c.type = in.type;
  return c;
}

ConstTensor reshaped(ConstTensor c, Shape dims) {
  c.dims = std::move(dims);
  if (c.is_float()) c.f = c.f.reshape(c.dims).contiguous();
  return c;
}

Shape strides_of(const Shape& s) { return contiguous_strides(s); }

// Multi-index iteration helper: flat index -> coordinates.
std::vector<int64_t> coords(int64_t flat, const Shape& dims) {
  std::vector<int64_t> c(dims.size());
  for (int64_t d = int64_t(dims.size()) - 1; d >= 0; --d) {
    c[size_t(d)] = dims[size_t(d)] ? flat % dims[size_t(d)] : 0;
    flat = dims[size_t(d)] ? flat / dims[size_t(d)] : 0;
  }
  return c;
}

std::optional<Shape> broadcast(const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()));
  for (size_t i = 0; i < out.size(); ++i) {
    const int64_t da = i < out.size() - a.size() ? 1 : a[i - (out.size() - a.size())];
    const int64_t db = i < out.size() - b.size() ? 1 : b[i - (out.size() - b.size())];
    if (da != db && da != 1 && db != 1) return std::nullopt;
    out[i] = std::max(da, db);
  }
  return out;
}

// Flat source index in `in` (broadcast against `out`) for each output element.
std::vector<int64_t> broadcast_src(const Shape& in, const Shape& out) {
  const int64_t n = shape_numel(out);
  const Shape st = strides_of(in);
  std::vector<int64_t> src(static_cast<size_t>(n));
  const size_t off = out.size() - in.size();
  for (int64_t i = 0; i < n; ++i) {
    const auto c = coords(i, out);
    int64_t s = 0;
    for (size_t d = 0; d < in.size(); ++d) s += (in[d] == 1 ? 0 : c[d + off]) * st[d];
    src[size_t(i)] = s;
  }
  return src;
}

void check_size(Lowerer& L, const Node& n, const Shape& dims) {
  if (dims.size() > size_t(kMaxTensorRank)) L.fail(n, fmt::format("folded result of rank {} (at most {})", dims.size(), kMaxTensorRank));
  std::optional<uint64_t> total = 1;
  for (int64_t d : dims) {
    if (d < 0) L.fail(n, fmt::format("folded shape {} has a negative dimension", shape_str(dims)));
    total = total ? checked_mul(*total, uint64_t(d), uint64_t(kMaxFoldedElements)) : total;
  }
  if (!total) L.fail(n, fmt::format("folded result {} would have more than {} elements", shape_str(dims), kMaxFoldedElements));
}

std::vector<int64_t> axes_input(Lowerer& L, const Node& n, int input, const char* attr_name) {
  if (L.opset() >= 13) return L.has_input(n, input) ? L.const_ints(n, input, "axes") : std::vector<int64_t>{};
  return L.attr_ints(n, attr_name);
}

bool fold_binary(Lowerer& L, const Node& n, const ConstTensor& a, const ConstTensor& b) {
  const auto out = broadcast(a.dims, b.dims);
  if (!out) L.fail(n, fmt::format("shapes {} and {} do not broadcast", shape_str(a.dims), shape_str(b.dims)));
  check_size(L, n, *out);
  const auto sa = broadcast_src(a.dims, *out), sb = broadcast_src(b.dims, *out);
  const std::string& op = n.op_type();
  if (a.is_float() || b.is_float()) {
    const auto va = a.values(), vb = b.values();
    std::vector<float> r(sa.size());
    for (size_t i = 0; i < r.size(); ++i) {
      const double x = va[size_t(sa[i])], y = vb[size_t(sb[i])];
      r[i] = float(op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y);
    }
    L.set_output_const(n, 0, make_floats(*out, r));
    return true;
  }
  std::vector<int64_t> r(sa.size());
  for (size_t i = 0; i < r.size(); ++i) {
    const int64_t x = a.ints[size_t(sa[i])], y = b.ints[size_t(sb[i])];
    if (op == "Div" && y == 0) L.fail(n, "integer division by zero in a constant expression");
    r[i] = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y;
  }
  ConstTensor c = make_ints(*out, std::move(r));
  c.type = a.type;
  L.set_output_const(n, 0, std::move(c));
  return true;
}

}  // namespace

bool try_fold(Lowerer& L, const Node& n) {
  const std::string& op = n.op_type();
  if (op == "Constant") {
    const auto* a = L.attr(n, "value");
    if (!a || a->type() != ::onnx::AttributeProto::TENSOR)
      L.fail(n, "only Constant nodes with a tensor 'value' attribute are supported");
    L.set_output_const(n, 0, decode_tensor(a->t(), {}, node_label(n)));
    return true;
  }
  if (op == "Shape") {
    const auto s = L.shape_of(n.input(0));
    if (!s) return false;
    for (int64_t d : *s)
      if (d < 0) return false;  // lowering reports the unresolved shape
    const Value& v = L.value(n, 0);
    const int64_t rank = int64_t(s->size());
    int64_t start = L.attr_int(n, "start", 0), end = L.attr_int(n, "end", rank);
    start = std::clamp<int64_t>(start < 0 ? start + rank : start, 0, rank);
    end = std::clamp<int64_t>(end < 0 ? end + rank : end, 0, rank);
    std::vector<int64_t> dims;
    std::vector<uint8_t> b;
    for (int64_t i = start; i < end; ++i) dims.push_back((*s)[size_t(i)]), b.push_back(!v.constant && v.batch_axis == i);
    L.set_output_const(n, 0, make_ints({int64_t(dims.size())}, dims, b));
    return true;
  }
  // Everything else folds only when all its (present) inputs are constants.
  bool any = false;
  for (int i = 0; i < n.input_size(); ++i) {
    if (n.input(i).empty()) continue;
    if (!L.is_const(n, i)) return false;
    any = true;
  }
  if (!any && op != "ConstantOfShape") return false;
  auto in = [&](int i) -> const ConstTensor& { return L.const_input(n, i, "input"); };

  if (op == "Identity" || op == "Dropout") {
    if (n.output_size() > 1 && !n.output(1).empty()) return false;
    L.set_output_const(n, 0, in(0));
    return true;
  }
  if (op == "Cast") {
    const int64_t to = L.attr_int(n, "to", 0);
    const ConstTensor& x = in(0);
    if (is_float_type(int32_t(to))) {
      const auto v = x.values();
      ConstTensor c = make_floats(x.dims, std::vector<float>(v.begin(), v.end()));
      c.type = int32_t(to);
      L.set_output_const(n, 0, std::move(c));
    } else if (is_int_type(int32_t(to))) {
      std::vector<int64_t> r;
      for (double d : x.values()) r.push_back(std::isfinite(d) ? int64_t(std::trunc(d)) : 0);
      ConstTensor c = make_ints(x.dims, std::move(r), x.is_float() ? std::vector<uint8_t>{} : flags(x));
      c.type = int32_t(to);
      L.set_output_const(n, 0, std::move(c));
    } else {
      L.fail(n, fmt::format("Cast to {} is not supported", type_name(int32_t(to))));
    }
    return true;
  }
  if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div") return fold_binary(L, n, in(0), in(1));
  if (op == "Unsqueeze" || op == "Squeeze") {
    const ConstTensor& x = in(0);
    std::vector<int64_t> axes = axes_input(L, n, 1, "axes");
    if (x.dims.size() + axes.size() > size_t(kMaxTensorRank)) L.fail(n, fmt::format("rank above {}", kMaxTensorRank));
    Shape dims;
    if (op == "Unsqueeze") {
      const int64_t out_rank = int64_t(x.dims.size() + axes.size());
      for (auto& a : axes) a = normalize_axis(L, n, a, out_rank);
      size_t k = 0;
      for (int64_t i = 0; i < out_rank; ++i)
        dims.push_back(std::count(axes.begin(), axes.end(), i) ? 1 : (k < x.dims.size() ? x.dims[k++] : 1));
    } else {
      const int64_t rank = int64_t(x.dims.size());
      for (auto& a : axes) a = normalize_axis(L, n, a, rank);
      for (int64_t i = 0; i < rank; ++i) {
        const bool drop = axes.empty() ? x.dims[size_t(i)] == 1 : std::count(axes.begin(), axes.end(), i) > 0;
        if (drop && x.dims[size_t(i)] != 1) L.fail(n, fmt::format("cannot squeeze dimension {} of size {}", i, x.dims[size_t(i)]));
        if (!drop) dims.push_back(x.dims[size_t(i)]);
      }
    }
    L.set_output_const(n, 0, reshaped(x, dims));
    return true;
  }
  if (op == "Reshape") {
    const ConstTensor& x = in(0);
    std::vector<int64_t> target = L.const_ints(n, 1, "shape");
    int64_t known = 1, infer = -1;
    for (size_t i = 0; i < target.size(); ++i) {
      if (target[i] == 0 && !L.attr_int(n, "allowzero", 0)) {
        if (i >= x.dims.size()) L.fail(n, "shape entry 0 past the input's rank");
        target[i] = x.dims[i];
      }
      if (target[i] == -1) {
        if (infer >= 0) L.fail(n, "more than one -1 in the target shape");
        infer = int64_t(i);
      } else if (target[i] < 0) {
        L.fail(n, fmt::format("bad target size {}", target[i]));
      } else {
        known *= target[i];
      }
    }
    if (infer >= 0) target[size_t(infer)] = known ? x.numel() / known : 0;
    check_size(L, n, target);
    if (shape_numel(target) != x.numel()) L.fail(n, fmt::format("cannot reshape {} to {}", shape_str(x.dims), shape_str(target)));
    L.set_output_const(n, 0, reshaped(x, target));
    return true;
  }
  if (op == "Concat") {
    const ConstTensor& first = in(0);
    const int64_t rank = int64_t(first.dims.size());
    const int64_t axis = normalize_axis(L, n, L.attr_int(n, "axis", 0), rank);
    // Concatenate via flat source indices over a virtual stacked buffer.
    Shape out = first.dims;
    out[size_t(axis)] = 0;
    bool fl = false;
    for (int i = 0; i < n.input_size(); ++i) {
      const ConstTensor& c = in(i);
      if (int64_t(c.dims.size()) != rank) L.fail(n, "inputs of different ranks");
      for (int64_t d = 0; d < rank; ++d)
        if (d != axis && c.dims[size_t(d)] != first.dims[size_t(d)]) L.fail(n, "input shapes differ off the axis");
      out[size_t(axis)] += c.dims[size_t(axis)];
      fl = fl || c.is_float();
    }
    check_size(L, n, out);
    const int64_t outer = shape_numel(Shape(out.begin(), out.begin() + axis));
    const int64_t inner = shape_numel(Shape(out.begin() + axis + 1, out.end()));
    std::vector<double> r;
    std::vector<uint8_t> b;
    for (int64_t o = 0; o < outer; ++o)
      for (int i = 0; i < n.input_size(); ++i) {
        const ConstTensor& c = in(i);
        const auto v = c.values();
        const auto f = flags(c);
        const int64_t chunk = c.dims[size_t(axis)] * inner;
        for (int64_t k = 0; k < chunk; ++k) r.push_back(v[size_t(o * chunk + k)]), b.push_back(c.is_float() ? 0 : f[size_t(o * chunk + k)]);
      }
    if (fl) L.set_output_const(n, 0, make_floats(out, std::vector<float>(r.begin(), r.end())));
    else L.set_output_const(n, 0, make_ints(out, std::vector<int64_t>(r.begin(), r.end()), b));
    return true;
  }
  if (op == "Gather") {
    const ConstTensor& data = in(0);
    const ConstTensor& idx = in(1);
    if (idx.is_float()) L.fail(n, "indices must be integers");
    const int64_t rank = int64_t(data.dims.size());
    const int64_t axis = normalize_axis(L, n, L.attr_int(n, "axis", 0), rank);
    Shape out(data.dims.begin(), data.dims.begin() + axis);
    out.insert(out.end(), idx.dims.begin(), idx.dims.end());
    out.insert(out.end(), data.dims.begin() + axis + 1, data.dims.end());
    check_size(L, n, out);
    const int64_t outer = shape_numel(Shape(data.dims.begin(), data.dims.begin() + axis));
    const int64_t inner = shape_numel(Shape(data.dims.begin() + axis + 1, data.dims.end()));
    const int64_t size = data.dims[size_t(axis)];
    std::vector<int64_t> src;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t k : idx.ints) {
        if (k < -size || k >= size) L.fail(n, fmt::format("index {} out of range for size {}", k, size));
        const int64_t kk = k < 0 ? k + size : k;
        for (int64_t j = 0; j < inner; ++j) src.push_back((o * size + kk) * inner + j);
      }
    L.set_output_const(n, 0, gather_elements(data, out, src));
    return true;
  }
  if (op == "Slice") {
    const ConstTensor& x = in(0);
    const auto starts = L.const_ints(n, 1, "starts"), ends = L.const_ints(n, 2, "ends");
    const int64_t rank = int64_t(x.dims.size());
    std::vector<int64_t> axes, steps;
    if (L.has_input(n, 3)) axes = L.const_ints(n, 3, "axes");
    else for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
    steps = L.has_input(n, 4) ? L.const_ints(n, 4, "steps") : std::vector<int64_t>(starts.size(), 1);
    if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
      L.fail(n, "starts, ends, axes and steps differ in length");
    Shape lo(size_t(rank), 0), step(size_t(rank), 1), out = x.dims;
    for (size_t i = 0; i < starts.size(); ++i) {
      const int64_t a = normalize_axis(L, n, axes[i], rank), dim = x.dims[size_t(a)], st = steps[i];
      if (st == 0) L.fail(n, "a step is 0");
      int64_t s = starts[i] < 0 ? starts[i] + dim : starts[i], e = ends[i] < 0 ? ends[i] + dim : ends[i];
      if (st > 0) {
        s = std::clamp<int64_t>(s, 0, dim), e = std::clamp<int64_t>(e, 0, dim);
        out[size_t(a)] = e > s ? (e - s + st - 1) / st : 0;
      } else {
        s = std::clamp<int64_t>(s, 0, dim - 1), e = std::clamp<int64_t>(e, -1, dim - 1);
        out[size_t(a)] = s > e ? (s - e - st - 1) / -st : 0;
      }
      lo[size_t(a)] = s, step[size_t(a)] = st;
    }
    const Shape st = strides_of(x.dims);
    std::vector<int64_t> src(size_t(shape_numel(out)));
    for (int64_t i = 0; i < int64_t(src.size()); ++i) {
      const auto c = coords(i, out);
      int64_t s = 0;
      for (int64_t d = 0; d < rank; ++d) s += (lo[size_t(d)] + c[size_t(d)] * step[size_t(d)]) * st[size_t(d)];
      src[size_t(i)] = s;
    }
    L.set_output_const(n, 0, gather_elements(x, out, src));
    return true;
  }
  if (op == "Transpose") {
    const ConstTensor& x = in(0);
    const int64_t rank = int64_t(x.dims.size());
    std::vector<int64_t> perm = L.attr_ints(n, "perm");
    if (perm.empty()) for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
    if (int64_t(perm.size()) != rank) L.fail(n, "perm does not match the rank");
    Shape out;
    for (int64_t p : perm) out.push_back(x.dims[size_t(normalize_axis(L, n, p, rank))]);
    const Shape st = strides_of(x.dims);
    std::vector<int64_t> src(size_t(shape_numel(out)));
    for (int64_t i = 0; i < int64_t(src.size()); ++i) {
      const auto c = coords(i, out);
      int64_t s = 0;
      for (int64_t d = 0; d < rank; ++d) s += c[size_t(d)] * st[size_t(perm[size_t(d)])];
      src[size_t(i)] = s;
    }
    L.set_output_const(n, 0, gather_elements(x, out, src));
    return true;
  }
  if (op == "Expand") {
    const ConstTensor& x = in(0);
    const auto shape = L.const_ints(n, 1, "shape");
    const auto out = broadcast(x.dims, Shape(shape.begin(), shape.end()));
    if (!out) L.fail(n, fmt::format("cannot expand {} to {}", shape_str(x.dims), shape_str(Shape(shape.begin(), shape.end()))));
    check_size(L, n, *out);
    L.set_output_const(n, 0, gather_elements(x, *out, broadcast_src(x.dims, *out)));
    return true;
  }
  if (op == "ConstantOfShape") {
    const auto shape = L.has_input(n, 0) ? L.const_ints(n, 0, "shape") : std::vector<int64_t>{};
    const Shape dims(shape.begin(), shape.end());
    check_size(L, n, dims);
    ConstTensor fill = make_floats({1}, {0.f});
    if (const auto* a = L.attr(n, "value")) fill = decode_tensor(a->t(), {}, node_label(n));
    if (fill.numel() != 1) L.fail(n, "'value' must hold one element");
    L.set_output_const(n, 0, gather_elements(fill, dims, std::vector<int64_t>(size_t(shape_numel(dims)), 0)));
    return true;
  }
  return false;
}

}  // namespace qforge::nn::onnx_import
