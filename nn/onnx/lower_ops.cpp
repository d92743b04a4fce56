// Op rules for the compute ops: Conv, Gemm/MatMul, BatchNormalization, activations, pools, element-wise
// arithmetic, Softmax, ReduceMean, Gather (Note [Lowering ONNX] in lower.hpp).
#include "nn/onnx/lower.hpp"

#include "engine/ops/ops.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace qforge::nn::onnx_import {

namespace {

using Param = Lowerer::Param;

int batch_of(const Lowerer& L, const Node& n, int i = 0) { return L.value(n, i).batch_axis; }

// One runtime input -> one spec node of `type` with `args`; output keeps the batch axis.
std::string unary(Lowerer& L, const Node& n, const std::string& type, json args = json::object()) {
  const std::string r = L.ref(n, 0);
  const std::string name = L.emit(n, type, std::move(args), {r});
  L.set_output(n, 0, name, batch_of(L, n));
  L.count(n, type);
  return name;
}

// Weight tensor named by what its node referenced (Note [Tensor names]).
std::string stored(const Node& n, int i) { return i < n.input_size() ? n.input(i) : ""; }

// [k] or [1, k] (or a scalar broadcast to k) -> [k]; fails otherwise.
Tensor vector_of(Lowerer& L, const Node& n, int i, int64_t k, const std::string& what) {
  const ConstTensor& c = L.const_input(n, i, what);
  if (!c.is_float()) L.fail(n, fmt::format("{} must be floating point, got {}", what, type_name(c.type)));
  if (c.numel() == k) return c.f.reshape({k}).contiguous();
  if (c.numel() == 1) return Tensor::full({k}, c.f.reshape({1}).item());
  L.fail(n, fmt::format("{} has shape {}, expected {} values", what, shape_str(c.dims), k));
}

void conv(Lowerer& L, const Node& n) {
  L.only_attrs(n, {"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"});
  const ConstTensor& w = L.const_input(n, 1, "the weight");
  if (!w.is_float() || w.dims.size() != 4)
    L.fail(n, fmt::format("only 2-D convolutions with a float weight are supported (weight {} {})", type_name(w.type), shape_str(w.dims)));
  const int64_t groups = L.attr_int(n, "group", 1);
  if (groups <= 0) L.fail(n, fmt::format("group {} must be positive", groups));
  const int64_t out_c = w.dims[0], in_c = w.dims[1] * groups;
  const auto kernel = L.attr_ints(n, "kernel_shape", {w.dims[2], w.dims[3]});
  if (kernel != std::vector<int64_t>{w.dims[2], w.dims[3]}) L.fail(n, "kernel_shape does not match the weight");
  const auto strides = L.attr_ints(n, "strides", {1, 1}), dil = L.attr_ints(n, "dilations", {1, 1});
  if (strides.size() != 2 || dil.size() != 2) L.fail(n, "strides and dilations need 2 values");
  std::vector<int64_t> pads = L.attr_ints(n, "pads", {0, 0, 0, 0});
  const std::string auto_pad = L.attr_string(n, "auto_pad", "NOTSET");
  if (auto_pad == "VALID") {
    pads = {0, 0, 0, 0};
  } else if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    const Shape s = L.known_shape(n, n.input(0), "auto_pad SAME needs the input size");
    if (s.size() != 4) L.fail(n, "input must be NCHW");
    for (int d = 0; d < 2; ++d) {
      const int64_t in = s[size_t(2 + d)], out = (in + strides[size_t(d)] - 1) / strides[size_t(d)];
      const int64_t total = std::max<int64_t>(0, (out - 1) * strides[size_t(d)] + (kernel[size_t(d)] - 1) * dil[size_t(d)] + 1 - in);
      const int64_t small = total / 2, big = total - small;
      pads[size_t(d)] = auto_pad == "SAME_UPPER" ? small : big;
      pads[size_t(d + 2)] = auto_pad == "SAME_UPPER" ? big : small;
    }
  } else if (auto_pad != "NOTSET") {
    L.fail(n, fmt::format("auto_pad '{}' is not supported", auto_pad));
  }
  if (pads.size() != 4) L.fail(n, "pads need 4 values");
  for (int64_t p : pads)
    if (p < 0) L.fail(n, "negative pads are not supported");
  std::string input = L.ref(n, 0);
  int64_t ph = pads[0], pw = pads[1];
  if (pads[0] != pads[2] || pads[1] != pads[3]) {  // asymmetric: an explicit Pad node before the conv
    input = L.emit(n, "Pad", {{"pads", {0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]}}, {"value", 0.0}}, {input});
    ph = pw = 0;
  }
  const bool bias = L.has_input(n, 2);
  std::vector<Param> params = {{"weight", w.f, stored(n, 1)}};
  if (bias) params.push_back({"bias", vector_of(L, n, 2, out_c, "the bias"), stored(n, 2)});
  json args = {{"in_channels", in_c}, {"out_channels", out_c}, {"kernel_size", kernel}, {"stride", strides},
               {"padding", {ph, pw}}, {"dilation", dil}, {"groups", groups}, {"bias", bias}};
  const std::string name = L.emit(n, "Conv2d", std::move(args), {input}, std::move(params), stored(n, 1));
  L.set_output(n, 0, name, batch_of(L, n));
  L.count(n, "Conv2d");
}

// A bias Add right after a MatMul/Gemm without bias: Add(y, c) or Add(c, y) with c of `k` values.
const Node* bias_add(Lowerer& L, const Node& n, int64_t k) {
  const Node* add = L.sole_consumer(n.output(0));
  if (!add || add->op_type() != "Add" || add->input_size() != 2) return nullptr;
  const int ci = add->input(0) == n.output(0) ? 1 : 0;
  if (add->input(1 - ci) != n.output(0) || !L.is_const(*add, ci)) return nullptr;
  const ConstTensor& c = L.const_input(*add, ci, "bias");
  if (!c.is_float() || c.numel() != k || c.dims.empty() || c.dims.back() != k) return nullptr;
  return add;
}

void linear(Lowerer& L, const Node& n, Tensor weight /* [out, in] */, int64_t in, int64_t out, Tensor bias,
            const std::string& w_name, const std::string& b_name) {
  const Node* add = bias.defined() ? nullptr : bias_add(L, n, out);
  std::string bias_name = b_name;
  if (add) {
    const int ci = add->input(0) == n.output(0) ? 1 : 0;
    bias = vector_of(L, *add, ci, out, "the bias");
    bias_name = add->input(ci);
  }
  std::vector<Param> params = {{"weight", weight, w_name}};
  if (bias.defined()) params.push_back({"bias", bias, bias_name});
  std::string hint = w_name;
  if (hint.find("::") != std::string::npos && bias_name.size() > 5 && bias_name.rfind(".bias") == bias_name.size() - 5)
    hint = bias_name.substr(0, bias_name.size() - 5) + ".weight";
  const std::string name = L.emit(n, "Linear", {{"in_features", in}, {"out_features", out}, {"bias", bias.defined()}},
                                  {L.ref(n, 0)}, std::move(params), hint);
  L.set_output(n, 0, name, batch_of(L, n));
  L.count(n, "Linear");
  if (add) {
    L.set_output(*add, 0, name, batch_of(L, n));
    L.count(*add, "fused into Linear");
    L.skip(*add);
  }
}

void gemm(Lowerer& L, const Node& n) {
  L.only_attrs(n, {"alpha", "beta", "transA", "transB"});
  if (L.attr_int(n, "transA", 0)) L.fail(n, "transA = 1 is not supported");
  const ConstTensor& b = L.const_input(n, 1, "B (the weight)");
  if (!b.is_float() || b.dims.size() != 2) L.fail(n, "B must be a 2-D float initializer");
  if (L.rank_of(n, 0) != 2) L.fail(n, "A must be 2-D");
  const float alpha = L.attr_float(n, "alpha", 1.f), beta = L.attr_float(n, "beta", 1.f);
  Tensor w = L.attr_int(n, "transB", 0) ? b.f : b.f.transpose(0, 1).contiguous();
  if (alpha != 1.f) w = ops::mul(w, double(alpha)).contiguous();
  const int64_t out = w.size(0), in = w.size(1);
  Tensor bias;
  if (L.has_input(n, 2)) {
    bias = vector_of(L, n, 2, out, "C (the bias)");
    if (beta != 1.f) bias = ops::mul(bias, double(beta)).contiguous();
  }
  linear(L, n, w, in, out, bias, n.input(1), L.has_input(n, 2) ? n.input(2) : "");
}

void matmul(Lowerer& L, const Node& n) {
  if (!L.is_const(n, 1) || L.is_const(n, 0))
    L.fail(n, "only MatMul of a run-time tensor by a constant 2-D weight is supported");
  const ConstTensor& b = L.const_input(n, 1, "the weight");
  if (!b.is_float() || b.dims.size() != 2) L.fail(n, fmt::format("the weight must be a 2-D float tensor, got {}", shape_str(b.dims)));
  if (L.rank_of(n, 0) < 2) L.fail(n, "the input must have rank 2 or more");
  linear(L, n, b.f.transpose(0, 1).contiguous(), b.dims[0], b.dims[1], Tensor(), n.input(1), "");
}

void batchnorm(Lowerer& L, const Node& n) {
  L.only_attrs(n, {"epsilon", "momentum", "training_mode", "spatial"});
  if (L.attr_int(n, "training_mode", 0)) L.fail(n, "training_mode = 1 is not supported (export the model in eval mode)");
  for (int i = 1; i < n.output_size(); ++i)
    if (!n.output(i).empty()) L.fail(n, "the running-statistics outputs are not supported");
  const int64_t rank = L.rank_of(n, 0);
  if (rank < 2 || rank > 4) L.fail(n, fmt::format("input rank {} is not supported (2, 3 or 4)", rank));
  const ConstTensor& scale = L.const_input(n, 1, "scale");
  const int64_t c = scale.numel();
  std::vector<Param> params = {{"weight", vector_of(L, n, 1, c, "scale"), stored(n, 1)},
                               {"bias", vector_of(L, n, 2, c, "B"), stored(n, 2)},
                               {"running_mean", vector_of(L, n, 3, c, "mean"), stored(n, 3)},
                               {"running_var", vector_of(L, n, 4, c, "var"), stored(n, 4)},
                               {"num_batches_tracked", Tensor::zeros({}, DType::i32), ""}};
  const double momentum = 1.0 - L.attr_float(n, "momentum", 0.9f);  // ONNX weighs the old statistics
  const std::string type = rank == 4 ? "BatchNorm2d" : "BatchNorm1d";
  const std::string name = L.emit(n, type, {{"num_features", c}, {"eps", L.attr_float(n, "epsilon", 1e-5f)}, {"momentum", momentum}},
                                  {L.ref(n, 0)}, std::move(params), stored(n, 1));
  L.set_output(n, 0, name, batch_of(L, n));
  L.count(n, type);
}

std::optional<double> optional_scalar(Lowerer& L, const Node& n, int i, const char* what) {
  if (!L.has_input(n, i)) return std::nullopt;
  const ConstTensor& c = L.const_input(n, i, what);
  if (c.numel() != 1) L.fail(n, fmt::format("{} must be a scalar", what));
  return c.values()[0];
}

void clip(Lowerer& L, const Node& n) {
  std::optional<double> lo, hi;
  if (L.opset() < 11) {
    lo = L.attr_float(n, "min", -std::numeric_limits<float>::max());
    hi = L.attr_float(n, "max", std::numeric_limits<float>::max());
  } else {
    lo = optional_scalar(L, n, 1, "min"), hi = optional_scalar(L, n, 2, "max");
  }
  const bool no_hi = !hi || !std::isfinite(*hi) || *hi >= std::numeric_limits<float>::max();
  if (lo && *lo == 0 && hi && *hi == 6) return (void)unary(L, n, "ReLU6");
  if (lo && *lo == 0 && no_hi) return (void)unary(L, n, "ReLU");
  const double flt = std::numeric_limits<float>::max();
  unary(L, n, "Hardtanh", {{"min_val", lo && std::isfinite(*lo) ? std::max(*lo, -flt) : -flt}, {"max_val", no_hi ? flt : *hi}});
}

// x * HardSigmoid(x) with PyTorch's hardsigmoid constants: torch.onnx's hardswish before opset 14.
bool is_hardswish_gate(Lowerer& L, const Node& hs) {
  return std::abs(L.attr_float(hs, "alpha", 0.2f) - 1.f / 6) < 1e-6 && std::abs(L.attr_float(hs, "beta", 0.5f) - 0.5f) < 1e-6;
}

void hard_sigmoid(Lowerer& L, const Node& n) {
  if (const Node* mul = L.sole_consumer(n.output(0)); mul && mul->op_type() == "Mul" && mul->input_size() == 2 &&
                                                      is_hardswish_gate(L, n)) {
    const int other = mul->input(0) == n.output(0) ? 1 : 0;
    if (mul->input(other) == n.input(0) && mul->input(1 - other) == n.output(0)) {
      const std::string name = L.emit(*mul, "Hardswish", json::object(), {L.ref(n, 0)});
      L.set_output(*mul, 0, name, batch_of(L, n));
      L.count(n, "fused into Hardswish");
      L.count(*mul, "Hardswish");
      L.skip(*mul);
      return;
    }
  }
  unary(L, n, "HardSigmoid", {{"alpha", L.attr_float(n, "alpha", 0.2f)}, {"beta", L.attr_float(n, "beta", 0.5f)}});
}

void pool(Lowerer& L, const Node& n, bool max) {
  if (max) L.only_attrs(n, {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"});
  else L.only_attrs(n, {"auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides"});
  const bool ceil_mode = L.attr_int(n, "ceil_mode", 0) != 0;
  if (ceil_mode && !max) L.fail(n, "ceil_mode = 1 is not supported for AveragePool (only floor)");
  if (L.attr_string(n, "auto_pad", "NOTSET") != "NOTSET" && L.attr_string(n, "auto_pad", "NOTSET") != "VALID")
    L.fail(n, fmt::format("auto_pad '{}' is not supported", L.attr_string(n, "auto_pad", "")));
  if (n.output_size() > 1 && !n.output(1).empty()) L.fail(n, "the Indices output is not supported");
  const auto k = L.attr_ints(n, "kernel_shape");
  if (k.size() != 2) L.fail(n, "only 2-D pooling is supported");
  const auto s = L.attr_ints(n, "strides", {1, 1});
  auto p = L.attr_ints(n, "pads", {0, 0, 0, 0});
  if (L.attr_string(n, "auto_pad", "NOTSET") == "VALID") p = {0, 0, 0, 0};
  if (s.size() != 2 || p.size() != 4) L.fail(n, "strides need 2 values and pads 4");
  if (max && L.attr_ints(n, "dilations", {1, 1}) != std::vector<int64_t>{1, 1}) L.fail(n, "dilations other than 1 are not supported");
  if (p[0] != p[2] || p[1] != p[3]) L.fail(n, fmt::format("asymmetric pads [{}] are not supported", fmt::join(p, ", ")));
  for (int d = 0; d < 2; ++d)
    if (p[size_t(d)] < 0 || 2 * p[size_t(d)] > k[size_t(d)])
      L.fail(n, fmt::format("pad {} must be at most half the kernel size {}", p[size_t(d)], k[size_t(d)]));
  std::string input = L.ref(n, 0);
  if (ceil_mode) {
    // Note [MaxPool ceil_mode]: ceil mode adds windows that run past the end of the input (each still
    // starts inside it, so it holds the last row/column). Appending copies of the last row/column
    // (Slice + Concat) until floor mode yields the ceil-mode size leaves every maximum unchanged, and
    // keeps activation ranges intact (a -inf pad would not).
    const Shape in = L.known_shape(n, n.input(0), "ceil_mode needs the input size");
    if (in.size() != 4) L.fail(n, "input must be NCHW");
    for (int d = 0; d < 2; ++d) {
      const int64_t size = in[size_t(2 + d)] + 2 * p[size_t(d)];
      int64_t out = (size - k[size_t(d)] + s[size_t(d)] - 1) / s[size_t(d)] + 1;
      if ((out - 1) * s[size_t(d)] >= in[size_t(2 + d)] + p[size_t(d)]) --out;  // the last window starts inside
      const int64_t extra = std::max<int64_t>(0, (out - 1) * s[size_t(d)] + k[size_t(d)] - size);
      if (extra == 0) continue;
      Node part = n;
      part.set_name(n.name() + (d ? "_ceil_w" : "_ceil_h"));
      const std::string last = L.emit(part, "Slice", {{"starts", {-1}}, {"ends", {std::numeric_limits<int32_t>::max()}},
                                                      {"axes", {2 + d}}, {"steps", {1}}}, {input});
      std::vector<std::string> parts = {input};
      parts.insert(parts.end(), size_t(extra), last);
      input = L.emit(part, "Concat", {{"dim", 2 + d}}, parts);
    }
  }
  json args = {{"kernel_size", k}, {"stride", s}, {"padding", {p[0], p[1]}}};
  if (ceil_mode) {
    const std::string name = L.emit(n, "MaxPool2d", std::move(args), {input});
    L.set_output(n, 0, name, batch_of(L, n));
    L.count(n, "MaxPool2d (ceil_mode: last row/column repeated)");
    return;
  }
  if (!max) args["count_include_pad"] = L.attr_int(n, "count_include_pad", 0) != 0;
  unary(L, n, max ? "MaxPool2d" : "AvgPool2d", std::move(args));
}

void binary(Lowerer& L, const Node& n) {
  if (!L.has_input(n, 1)) L.fail(n, "needs two inputs");
  const std::string a = L.ref(n, 0), b = L.ref(n, 1);
  const std::string name = L.emit(n, n.op_type(), json::object(), {a, b});
  const int ba = L.value(n, 0).constant ? batch_of(L, n, 1) : batch_of(L, n, 0);
  L.set_output(n, 0, name, ba);
  L.count(n, n.op_type());
}

void softmax(Lowerer& L, const Node& n, const std::string& type) {
  const int64_t rank = L.rank_of(n, 0);
  const int64_t axis = normalize_axis(L, n, L.attr_int(n, "axis", L.opset() >= 13 ? -1 : 1), rank);
  if (L.opset() < 13 && axis != rank - 1) {
    // Before opset 13 Softmax flattens the dimensions from `axis` on: the same as one dim only if the
    // rest are 1.
    const Shape s = L.known_shape(n, n.input(0), "opset < 13 Softmax over several dimensions");
    for (int64_t d = axis + 1; d < rank; ++d)
      if (s[size_t(d)] != 1) L.fail(n, fmt::format("softmax over dimensions {}.. (opset < 13 semantics) is not supported", axis));
  }
  unary(L, n, type, {{"dim", axis}});
}

void reduce_mean(Lowerer& L, const Node& n) {
  L.only_attrs(n, {"axes", "keepdims"});
  const int64_t rank = L.rank_of(n, 0);
  std::vector<int64_t> axes = L.attr_ints(n, "axes");
  for (auto& a : axes) a = normalize_axis(L, n, a, rank);
  if (axes.empty()) for (int64_t i = 0; i < rank; ++i) axes.push_back(i);
  const bool keep = L.attr_int(n, "keepdims", 1) != 0;
  int ba = batch_of(L, n);
  const std::string name = unary(L, n, "ReduceMean", {{"dims", axes}, {"keepdim", keep}});
  if (!keep && ba >= 0) {  // the batch axis moves down by the reduced dims before it (or is gone)
    const int64_t before = std::count_if(axes.begin(), axes.end(), [&](int64_t a) { return a < ba; });
    ba = std::count(axes.begin(), axes.end(), ba) ? -1 : ba - int(before);
    L.set_output(n, 0, name, ba);
  }
}

void gather(Lowerer& L, const Node& n) {
  const int64_t axis = L.attr_int(n, "axis", 0);
  if (L.is_const(n, 0) && !L.is_const(n, 1)) {
    const ConstTensor& w = L.const_input(n, 0, "the table");
    if (axis != 0 || !w.is_float() || w.dims.size() != 2)
      L.fail(n, "only Gather from a 2-D float table along axis 0 (an embedding) is supported");
    const std::string name = L.emit(n, "Embedding", {{"num_embeddings", w.dims[0]}, {"embedding_dim", w.dims[1]}},
                                    {L.ref(n, 1)}, {{"weight", w.f, n.input(0)}}, n.input(0));
    L.set_output(n, 0, name, batch_of(L, n, 1));
    L.count(n, "Embedding");
    return;
  }
  // A run-time tensor indexed by a constant single index: a Slice (+ Squeeze for a scalar index).
  const ConstTensor& idx = L.const_input(n, 1, "the indices");
  if (idx.is_float() || idx.numel() != 1)
    L.fail(n, "only Gather of a run-time tensor at one constant index is supported");
  const int64_t rank = L.rank_of(n, 0);
  const int64_t a = normalize_axis(L, n, axis, rank), k = idx.ints[0];
  const int64_t end = k == -1 ? std::numeric_limits<int32_t>::max() : k + 1;
  std::string r = L.emit(n, "Slice", {{"starts", {k}}, {"ends", {end}}, {"axes", {a}}, {"steps", {1}}}, {L.ref(n, 0)});
  int ba = batch_of(L, n);
  if (idx.dims.empty()) {
    Node sq = n;
    sq.set_name(n.name().empty() ? "" : n.name() + "_squeeze");
    r = L.emit(sq, "Squeeze", {{"dims", {a}}}, {r});
    if (ba == a) ba = -1;
    else if (ba > a) --ba;
  }
  L.set_output(n, 0, r, ba);
  L.count(n, idx.dims.empty() ? "Slice+Squeeze" : "Slice");
}

void pass_through(Lowerer& L, const Node& n) {
  for (int i = 1; i < n.output_size(); ++i)
    if (!n.output(i).empty()) L.fail(n, "the mask output is not supported");
  L.alias_output(n, 0, n.input(0));
  L.count(n, "removed");
}

}  // namespace

const std::map<std::string, OpRule>& op_rules() {
  static const std::map<std::string, OpRule> kRules = [] {
    std::map<std::string, OpRule> r = {
        {"Conv", conv},
        {"Gemm", gemm},
        {"MatMul", matmul},
        {"BatchNormalization", batchnorm},
        {"Relu", [](Lowerer& L, const Node& n) { unary(L, n, "ReLU"); }},
        {"Sigmoid", [](Lowerer& L, const Node& n) { unary(L, n, "Sigmoid"); }},
        {"Tanh", [](Lowerer& L, const Node& n) { unary(L, n, "Tanh"); }},
        {"HardSwish", [](Lowerer& L, const Node& n) { unary(L, n, "Hardswish"); }},
        {"HardSigmoid", hard_sigmoid},
        {"LeakyRelu", [](Lowerer& L, const Node& n) { unary(L, n, "LeakyReLU", {{"negative_slope", L.attr_float(n, "alpha", 0.01f)}}); }},
        {"Clip", clip},
        {"MaxPool", [](Lowerer& L, const Node& n) { pool(L, n, true); }},
        {"AveragePool", [](Lowerer& L, const Node& n) { pool(L, n, false); }},
        {"GlobalAveragePool",
         [](Lowerer& L, const Node& n) {
           if (L.rank_of(n, 0) != 4) L.fail(n, "only NCHW inputs are supported");
           unary(L, n, "AdaptiveAvgPool2d", {{"output_size", {1, 1}}});
         }},
        {"Add", binary},
        {"Sub", binary},
        {"Mul", binary},
        {"Div", binary},
        {"Softmax", [](Lowerer& L, const Node& n) { softmax(L, n, "Softmax"); }},
        {"LogSoftmax", [](Lowerer& L, const Node& n) { softmax(L, n, "LogSoftmax"); }},
        {"ReduceMean", reduce_mean},
        {"Gather", gather},
        {"Identity", pass_through},
        {"Dropout", pass_through},
    };
    add_shape_rules(r);
    add_recurrent_rules(r);
    return r;
  }();
  return kRules;
}

}  // namespace qforge::nn::onnx_import
