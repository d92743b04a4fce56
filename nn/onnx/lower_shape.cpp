// Op rules for shape and data-movement ops on run-time tensors: Reshape, Flatten, Transpose, Concat,
// Split, Slice, Squeeze, Unsqueeze, Pad, Cast (Note [Lowering ONNX] in lower.hpp).
#include "nn/onnx/lower.hpp"

#include <algorithm>

namespace qforge::nn::onnx_import {

namespace {

int batch_of(const Lowerer& L, const Node& n, int i = 0) { return L.value(n, i).batch_axis; }

void reshape(Lowerer& L, const Node& n) {
  const ConstTensor& t = L.const_input(n, 1, "the target shape");
  if (t.is_float()) L.fail(n, "the target shape must be integers");
  std::vector<int64_t> target = t.ints;
  const bool allowzero = L.attr_int(n, "allowzero", 0) != 0;
  if (allowzero && std::count(target.begin(), target.end(), 0))
    L.fail(n, "allowzero = 1 with a 0 in the target shape is not supported");
  const auto in = L.shape_of(n.input(0));
  const int ba = batch_of(L, n);
  // Note [Batch provenance] (fold.cpp): the batch entry becomes 0 ("copy the input's dimension").
  int out_ba = -1;
  for (size_t i = 0; i < target.size(); ++i) {
    const bool marked = i < t.batch.size() && t.batch[i];
    const bool equal_at_batch = in && int(i) == ba && i < in->size() && (*in)[i] == target[i] && target[i] > 0;
    if (int(i) == ba && (marked || equal_at_batch || target[i] == 0)) {
      // 0 copies position i of the input, which is the batch only if the dims before it are unchanged.
      bool same_prefix = true;
      for (size_t j = 0; j < i; ++j) same_prefix = same_prefix && in && j < in->size() && (target[j] == 0 || target[j] == (*in)[j]);
      if (same_prefix) target[i] = 0, out_ba = int(i);
    }
  }
  // Flatten when it keeps the batch and joins everything after it.
  if (target.size() == 2 && out_ba == 0 && in && in->size() >= 2) {
    int64_t rest = 1;
    bool known = true;
    for (size_t d = 1; d < in->size(); ++d) known = known && (*in)[d] >= 0, rest *= (*in)[d];
    if (target[1] == -1 || (known && target[1] == rest)) {
      const std::string name = L.emit(n, "Flatten", {{"start_dim", 1}, {"end_dim", -1}}, {L.ref(n, 0)});
      L.set_output(n, 0, name, 0);
      L.count(n, "Flatten");
      return;
    }
  }
  if (out_ba < 0 && ba >= 0) L.count(n, "Reshape (batch size fixed)");
  const std::string name = L.emit(n, "Reshape", {{"shape", target}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, out_ba);
  L.count(n, "Reshape");
}

void flatten(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  const int64_t axis = L.attr_int(n, "axis", 1) < 0 ? L.attr_int(n, "axis", 1) + rank : L.attr_int(n, "axis", 1);
  if (axis < 0 || axis > rank) L.fail(n, fmt::format("axis {} is out of range for rank {}", L.attr_int(n, "axis", 1), rank));
  const int ba = batch_of(L, n);
  if (axis == 1) {
    const std::string name = L.emit(n, "Flatten", {{"start_dim", 1}, {"end_dim", -1}}, {L.ref(n, 0)});
    L.set_output(n, 0, name, ba == 0 ? 0 : -1);
    L.count(n, "Flatten");
    return;
  }
  const Shape s = L.known_shape(n, n.input(0), "Flatten with axis other than 1");
  const int64_t rest = shape_numel(Shape(s.begin() + axis, s.end()));
  const std::string name = L.emit(n, "Reshape", {{"shape", std::vector<int64_t>{-1, rest}}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, -1);
  L.count(n, "Reshape");
}

void transpose(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  std::vector<int64_t> perm = L.attr_ints(n, "perm");
  if (perm.empty()) for (int64_t i = rank - 1; i >= 0; --i) perm.push_back(i);
  if (int64_t(perm.size()) != rank) L.fail(n, fmt::format("perm has {} entries for rank {}", perm.size(), rank));
  for (auto& p : perm) p = normalize_axis(L, n, p, rank);
  const int ba = batch_of(L, n);
  int out_ba = -1;
  for (size_t j = 0; j < perm.size(); ++j)
    if (perm[j] == ba) out_ba = int(j);
  const std::string name = L.emit(n, "Transpose", {{"perm", perm}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, out_ba);
  L.count(n, "Transpose");
}

void concat(Lowerer& L, const Node& n) {
  int64_t rank = -1;
  int ba = -1;
  std::vector<std::string> ins;
  for (int i = 0; i < n.input_size(); ++i) {
    if (rank < 0) rank = L.rank_of(n, i);
    if (ba < 0 && !L.value(n, i).constant) ba = batch_of(L, n, i);
    ins.push_back(L.ref(n, i));
  }
  const int64_t axis = normalize_axis(L, n, L.attr_int(n, "axis", 0), rank);
  const std::string name = L.emit(n, "Concat", {{"dim", axis}}, ins);
  L.set_output(n, 0, name, ba == axis ? -1 : ba);
  L.count(n, "Concat");
}

void split(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  const int64_t axis = normalize_axis(L, n, L.attr_int(n, "axis", 0), rank);
  std::vector<int64_t> sizes;
  if (L.opset() >= 13) {
    if (L.has_input(n, 1)) sizes = L.const_ints(n, 1, "split");
  } else {
    sizes = L.attr_ints(n, "split");
  }
  if (sizes.empty()) {
    const Shape s = L.known_shape(n, n.input(0), "an even Split needs the dimension's size");
    const int64_t k = n.output_size();
    if (s[size_t(axis)] % k != 0) L.fail(n, fmt::format("dimension {} of size {} does not split into {} equal parts", axis, s[size_t(axis)], k));
    sizes.assign(size_t(k), s[size_t(axis)] / k);
  }
  if (int(sizes.size()) != n.output_size()) L.fail(n, fmt::format("{} split sizes for {} outputs", sizes.size(), n.output_size()));
  const int ba = batch_of(L, n);
  const std::string name = L.emit(n, "Split", {{"dim", axis}, {"split_sizes", sizes}}, {L.ref(n, 0)});
  for (int i = 0; i < n.output_size(); ++i) L.set_output(n, i, i == 0 ? name : fmt::format("{}:{}", name, i), ba == axis ? -1 : ba);
  L.count(n, "Split");
}

void slice(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  const auto starts = L.const_ints(n, 1, "starts"), ends = L.const_ints(n, 2, "ends");
  std::vector<int64_t> axes, steps;
  if (L.has_input(n, 3)) axes = L.const_ints(n, 3, "axes");
  else for (size_t i = 0; i < starts.size(); ++i) axes.push_back(int64_t(i));
  for (auto& a : axes) a = normalize_axis(L, n, a, rank);
  steps = L.has_input(n, 4) ? L.const_ints(n, 4, "steps") : std::vector<int64_t>(starts.size(), 1);
  for (int64_t s : steps)
    if (s <= 0) L.fail(n, fmt::format("step {} is not supported (only positive steps)", s));
  const int ba = batch_of(L, n);
  const std::string name = L.emit(n, "Slice", {{"starts", starts}, {"ends", ends}, {"axes", axes}, {"steps", steps}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, std::count(axes.begin(), axes.end(), ba) ? -1 : ba);
  L.count(n, "Slice");
}

std::vector<int64_t> axes_of(Lowerer& L, const Node& n) {
  if (L.opset() >= 13) return L.has_input(n, 1) ? L.const_ints(n, 1, "axes") : std::vector<int64_t>{};
  return L.attr_ints(n, "axes");
}

void squeeze(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  std::vector<int64_t> axes = axes_of(L, n);
  for (auto& a : axes) a = normalize_axis(L, n, a, rank);
  if (axes.empty())
    if (const auto s = L.shape_of(n.input(0)))
      for (int64_t i = 0; i < rank; ++i)
        if ((*s)[size_t(i)] == 1) axes.push_back(i);
  int ba = batch_of(L, n);
  if (ba >= 0) ba = std::count(axes.begin(), axes.end(), ba) ? -1 : ba - int(std::count_if(axes.begin(), axes.end(), [&](int64_t a) { return a < ba; }));
  const std::string name = L.emit(n, "Squeeze", {{"dims", axes}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, ba);
  L.count(n, "Squeeze");
}

void unsqueeze(Lowerer& L, const Node& n) {
  const int64_t rank = L.rank_of(n, 0);
  std::vector<int64_t> axes = axes_of(L, n);
  if (axes.empty()) L.fail(n, "no axes");
  if (rank + int64_t(axes.size()) > kMaxTensorRank) L.fail(n, fmt::format("rank above {}", kMaxTensorRank));
  const int64_t out_rank = rank + int64_t(axes.size());
  for (auto& a : axes) a = normalize_axis(L, n, a, out_rank);
  int ba = batch_of(L, n), out_ba = -1;
  for (int64_t i = 0, k = 0; i < out_rank; ++i) {
    if (std::count(axes.begin(), axes.end(), i)) continue;
    if (k++ == ba) out_ba = int(i);
  }
  const std::string name = L.emit(n, "Unsqueeze", {{"dims", axes}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, out_ba);
  L.count(n, "Unsqueeze");
}

void pad(Lowerer& L, const Node& n) {
  const std::string mode = L.attr_string(n, "mode", "constant");
  if (mode != "constant") L.fail(n, fmt::format("mode '{}' is not supported (only constant)", mode));
  if (L.has_input(n, 3)) L.fail(n, "the axes input is not supported");
  const auto pads = L.opset() >= 11 ? L.const_ints(n, 1, "pads") : L.attr_ints(n, "pads");
  double value = 0;
  if (L.has_input(n, 2)) {
    const ConstTensor& c = L.const_input(n, 2, "constant_value");
    if (c.numel() != 1) L.fail(n, "constant_value must be a scalar");
    value = c.values()[0];
  }
  const std::string name = L.emit(n, "Pad", {{"pads", pads}, {"value", value}}, {L.ref(n, 0)});
  L.set_output(n, 0, name, batch_of(L, n));
  L.count(n, "Pad");
}

void cast(Lowerer& L, const Node& n) {
  const int64_t to = L.attr_int(n, "to", 0);
  if (to != ::onnx::TensorProto::FLOAT) L.fail(n, fmt::format("Cast of a run-time tensor to {} is not supported", type_name(int32_t(to))));
  L.alias_output(n, 0, n.input(0));
  L.count(n, "removed");
}

}  // namespace

void add_shape_rules(std::map<std::string, OpRule>& r) {
  r["Reshape"] = reshape;
  r["Flatten"] = flatten;
  r["Transpose"] = transpose;
  r["Concat"] = concat;
  r["Split"] = split;
  r["Slice"] = slice;
  r["Squeeze"] = squeeze;
  r["Unsqueeze"] = unsqueeze;
  r["Pad"] = pad;
  r["Cast"] = cast;
  // Shape folds whenever its input's shape is known (fold.cpp); reaching here means it is not.
  r["Shape"] = [](Lowerer& L, const Node& n) { L.known_shape(n, n.input(0), "Shape is folded at import"); };
}

}  // namespace qforge::nn::onnx_import
