// Float model -> plain ONNX (opset 13). Each spec layer becomes the operators torch.onnx writes for the
// PyTorch layer of the same name, so the file runs in any ONNX runtime and imports back into qforge as the
// same layers (nn/onnx). Shapes come from one traced forward of the sample inputs; the batch dimension is
// symbolic and every Reshape keeps it with a 0.
#include "quant/export/onnx_builder.hpp"
#include "quant/export/onnx_export.hpp"

#include "engine/error.hpp"
#include "nn/trace.hpp"

#include <fmt/format.h>

#include <array>

namespace qforge::quant::exporter {

namespace {

using json = nlohmann::json;
using Ints = std::vector<int64_t>;

std::array<int64_t, 2> pair_arg(const json& args, const char* key, int64_t fallback) {
  if (!args.contains(key) || args[key].is_null()) return {fallback, fallback};
  const json& v = args[key];
  if (v.is_array()) return {v.at(0).get<int64_t>(), v.at(1).get<int64_t>()};
  return {v.get<int64_t>(), v.get<int64_t>()};
}

Ints ints_arg(const json& args, const char* key) {
  Ints out;
  if (!args.contains(key) || args[key].is_null()) return out;
  if (args[key].is_array()) {
    for (const auto& v : args[key]) out.push_back(v.get<int64_t>());
  } else {
    out.push_back(args[key].get<int64_t>());
  }
  return out;
}

class Fp32Exporter {
public:
  Fp32Exporter(nn::Graph& g, const std::vector<Tensor>& samples)
      : g_(g), b_(g.type_name(), 13), traced_(nn::trace(g, samples)) {
    // Exact names first: graph inputs, every node output, every state_dict entry.
    for (const auto& n : g_.input_names()) b_.reserve(n);
    for (size_t i = 0; i < g_.nodes().size(); ++i) b_.reserve(g_.nodes()[i].name);
    for (const auto& [key, t] : g_.state_dict()) b_.reserve(stored_name(key));
    for (size_t i = 0; i < samples.size(); ++i) {
      Ints dims(samples[i].shape().begin(), samples[i].shape().end());
      if (!dims.empty()) dims[0] = -1;
      const bool ints = samples[i].dtype() != DType::f32 && samples[i].dtype() != DType::f64;
      b_.claim(g_.input_names().at(i));
      b_.input(g_.input_names()[i], ints ? onnx::TensorProto_DataType_INT64 : onnx::TensorProto_DataType_FLOAT, dims);
      res_.input_names.push_back(g_.input_names()[i]);
    }
  }

  OnnxExportResult run(const std::filesystem::path& out) {
    for (size_t i = 0; i < g_.nodes().size(); ++i) emit(static_cast<int>(i));
    std::vector<nn::ValueRef> outs = g_.outputs();
    if (outs.empty()) {
      const int last = static_cast<int>(g_.nodes().size()) - 1;
      const auto& t = traced_.node(traced_.find_one(g_.nodes().at(last).name));
      for (size_t k = 0; k < t.output_shapes.size(); ++k) outs.push_back({last, static_cast<int>(k)});
    }
    for (const auto& r : outs) {
      const std::string name = value(r);
      const Shape& s = shape_of(r);
      Ints dims(s.begin(), s.end());
      if (!dims.empty()) dims[0] = -1;
      b_.output(name, onnx::TensorProto_DataType_FLOAT, dims);
      res_.output_names.push_back(name);
    }
    b_.save(out);
    res_.nodes = b_.num_nodes();
    return res_;
  }

private:
  std::string stored_name(const std::string& key) const {
    auto it = g_.tensor_names().find(key);
    return it == g_.tensor_names().end() ? key : it->second;
  }

  // The initializer of a node's parameter or buffer, written once under its stored name.
  std::string param(const nn::GraphNode& n, const std::string& p) {
    const std::string key = n.name + "." + p;
    auto it = written_.find(key);
    if (it != written_.end()) return it->second;
    Tensor t = n.module->has_param(p) ? n.module->raw_param(p) : n.module->buffer(p);
    const std::vector<float> v = t.to_vector<float>();
    const Ints dims(t.shape().begin(), t.shape().end());
    return written_[key] = b_.add_float(stored_name(key), dims, v.data());
  }
  // A float initializer made up by the exporter (reordered recurrent weights, BN defaults).
  std::string made(const std::string& base, const Ints& dims, const std::vector<float>& v) {
    return b_.add_float(base, dims, v.data(), false);
  }

  std::string value(const nn::ValueRef& r) const {
    if (r.node == nn::ValueRef::kModelInput) return g_.input_names().at(r.index);
    const std::string& name = g_.nodes().at(r.node).name;
    return r.index == 0 ? name : fmt::format("{}:{}", name, r.index);
  }
  const Shape& shape_of(const nn::ValueRef& r) const {
    return traced_.node(traced_.find_one(g_.nodes().at(r.node).name)).output_shapes.at(r.index);
  }

  void count(const std::string& op) { ++res_.op_census[op]; }
  std::string op(const std::string& type, const std::vector<std::string>& in, const std::string& base,
                 const std::vector<OnnxAttr>& attrs = {}) {
    count(type);
    return b_.op(type, in, base, attrs);
  }
  // The node's final operator writes the node's exact output name(s).
  void last(const std::string& type, const std::vector<std::string>& in, const std::vector<std::string>& outs,
            const nn::GraphNode& n, const std::vector<OnnxAttr>& attrs = {}) {
    count(type);
    for (const auto& o : outs) b_.claim(o);
    b_.node(type, in, outs, attrs, n.name);
  }

  void emit(int index);
  void emit_recurrent(const nn::GraphNode& n, const std::vector<std::string>& in, const json& args,
                      const std::vector<std::string>& outs);

  nn::Graph& g_;
  OnnxBuilder b_;
  nn::TracedGraph traced_;
  OnnxExportResult res_;
  std::map<std::string, std::string> written_;
};

void Fp32Exporter::emit(int index) {
  const nn::GraphNode& n = g_.nodes()[index];
  const auto& t = traced_.node(traced_.find_one(n.name));
  const std::string& type = n.module->type_name();
  const json args = n.module->spec_args();
  std::vector<std::string> in;
  for (const auto& r : n.inputs) in.push_back(value(r));
  if (in.empty() && index == 0 && type != "Constant") in.push_back(g_.input_names().at(0));
  std::vector<std::string> outs;
  for (size_t k = 0; k < t.output_shapes.size(); ++k) outs.push_back(value({index, static_cast<int>(k)}));
  const std::string& y = outs.at(0);
  const std::string base = n.name;
  auto rank_in = [&] { return static_cast<int64_t>(t.inputs.at(0).shape.size()); };

  if (type == "Conv2d") {
    const auto k = pair_arg(args, "kernel_size", 1), s = pair_arg(args, "stride", 1),
               p = pair_arg(args, "padding", 0), d = pair_arg(args, "dilation", 1);
    std::vector<std::string> ins = {in[0], param(n, "weight")};
    if (n.module->has_param("bias")) ins.push_back(param(n, "bias"));
    last("Conv", ins, {y}, n,
         {OnnxAttr::list("kernel_shape", {k[0], k[1]}), OnnxAttr::list("strides", {s[0], s[1]}),
          OnnxAttr::list("pads", {p[0], p[1], p[0], p[1]}), OnnxAttr::list("dilations", {d[0], d[1]}),
          OnnxAttr::integer("group", args.value("groups", int64_t{1}))});
  } else if (type == "Linear") {
    const bool bias = n.module->has_param("bias");
    if (rank_in() == 2) {
      std::vector<std::string> ins = {in[0], param(n, "weight")};
      if (bias) ins.push_back(param(n, "bias"));
      last("Gemm", ins, {y}, n, {OnnxAttr::integer("transB", 1)});
    } else {  // linear over the last dim of a sequence: MatMul with the transposed weight (+ Add)
      const std::string wt = op("Transpose", {param(n, "weight")}, base + "_weight_t", {OnnxAttr::list("perm", {1, 0})});
      if (bias) last("Add", {op("MatMul", {in[0], wt}, base + "_matmul"), param(n, "bias")}, {y}, n);
      else last("MatMul", {in[0], wt}, {y}, n);
    }
  } else if (type == "BatchNorm1d" || type == "BatchNorm2d") {
    const int64_t c = args.at("num_features").get<int64_t>();
    const bool affine = n.module->has_param("weight");
    const std::string scale = affine ? param(n, "weight") : made(base + ".weight", {c}, std::vector<float>(c, 1.0f));
    const std::string shift = affine ? param(n, "bias") : made(base + ".bias", {c}, std::vector<float>(c, 0.0f));
    last("BatchNormalization", {in[0], scale, shift, param(n, "running_mean"), param(n, "running_var")}, {y}, n,
         {OnnxAttr::real("epsilon", args.value("eps", 1e-5f))});
  } else if (type == "ReLU") {
    last("Relu", in, {y}, n);
  } else if (type == "ReLU6" || type == "Hardtanh") {
    const float lo = type == "ReLU6" ? 0.0f : args.value("min_val", -1.0f);
    const float hi = type == "ReLU6" ? 6.0f : args.value("max_val", 1.0f);
    last("Clip", {in[0], b_.scalar_float(base + "_min", lo), b_.scalar_float(base + "_max", hi)}, {y}, n);
  } else if (type == "LeakyReLU") {
    last("LeakyRelu", in, {y}, n, {OnnxAttr::real("alpha", args.value("negative_slope", 0.01f))});
  } else if (type == "Sigmoid" || type == "Tanh") {
    last(type, in, {y}, n);
  } else if (type == "HardSigmoid") {
    last("HardSigmoid", in, {y}, n,
         {OnnxAttr::real("alpha", args.value("alpha", 0.2f)), OnnxAttr::real("beta", args.value("beta", 0.5f))});
  } else if (type == "Hardswish") {  // HardSwish is opset 14: x * HardSigmoid(x; 1/6, 1/2), as torch writes it for 13
    const std::string hs = op("HardSigmoid", {in[0]}, base + "_hardsigmoid",
                              {OnnxAttr::real("alpha", 1.0f / 6.0f), OnnxAttr::real("beta", 0.5f)});
    last("Mul", {in[0], hs}, {y}, n);
  } else if (type == "Identity" || type == "Dropout") {
    last("Identity", in, {y}, n);
  } else if (type == "MaxPool2d" || type == "AvgPool2d") {
    const auto k = pair_arg(args, "kernel_size", 1), p = pair_arg(args, "padding", 0);
    const auto s = args.contains("stride") && !args["stride"].is_null() ? pair_arg(args, "stride", 1) : k;
    std::vector<OnnxAttr> attrs = {OnnxAttr::list("kernel_shape", {k[0], k[1]}), OnnxAttr::list("strides", {s[0], s[1]}),
                                   OnnxAttr::list("pads", {p[0], p[1], p[0], p[1]})};
    if (type == "AvgPool2d") attrs.push_back(OnnxAttr::integer("count_include_pad", args.value("count_include_pad", true)));
    last(type == "MaxPool2d" ? "MaxPool" : "AveragePool", in, {y}, n, attrs);
  } else if (type == "AdaptiveAvgPool2d") {
    const auto o = pair_arg(args, "output_size", 1);
    if (o[0] != 1 || o[1] != 1)
      throw InputError(fmt::format("ONNX export: node '{}': AdaptiveAvgPool2d with output size {}x{} has no ONNX "
                                   "operator (only 1x1, GlobalAveragePool)", n.name, o[0], o[1]));
    last("GlobalAveragePool", in, {y}, n);
  } else if (type == "Flatten") {
    const int64_t r = rank_in();
    int64_t start = args.value("start_dim", int64_t{1}), end = args.value("end_dim", int64_t{-1});
    if (start < 0) start += r;
    if (end < 0) end += r;
    if (start == 1 && end == r - 1) {
      last("Flatten", in, {y}, n, {OnnxAttr::integer("axis", 1)});
    } else {
      const Shape& s = t.output_shapes.at(0);
      Ints shape(s.begin(), s.end());
      shape[0] = 0;
      last("Reshape", {in[0], b_.ints(base + "_shape", shape)}, {y}, n);
    }
  } else if (type == "Add" || type == "Mul" || type == "Sub" || type == "Div") {
    last(type, in, {y}, n);
  } else if (type == "Embedding") {
    last("Gather", {param(n, "weight"), in[0]}, {y}, n);
  } else if (type == "ImageAsSequence") {  // [N,C,H,W] -> [N,H,C*W]: rows are time steps
    const std::string tr = op("Transpose", {in[0]}, base + "_nhcw", {OnnxAttr::list("perm", {0, 2, 1, 3})});
    last("Reshape", {tr, b_.ints(base + "_shape", {0, 0, -1})}, {y}, n);
  } else if (type == "LastTimeStep") {
    const bool batch_first = args.value("batch_first", true);
    const int64_t minus_one = -1;
    const std::string idx = b_.add_int64(base + "_last", {}, &minus_one, false);
    last("Gather", {in[0], idx}, {y}, n, {OnnxAttr::integer("axis", batch_first ? 1 : 0)});
  } else if (type == "LSTM" || type == "GRU" || type == "RNN") {
    emit_recurrent(n, in, args, outs);
  } else if (type == "Concat") {
    last("Concat", in, {y}, n, {OnnxAttr::integer("axis", args.value("dim", int64_t{1}))});
  } else if (type == "Transpose") {
    last("Transpose", in, {y}, n, {OnnxAttr::list("perm", ints_arg(args, "perm"))});
  } else if (type == "Reshape") {
    last("Reshape", {in[0], b_.ints(base + "_shape", ints_arg(args, "shape"))}, {y}, n);
  } else if (type == "Softmax" || type == "LogSoftmax") {
    last(type, in, {y}, n, {OnnxAttr::integer("axis", args.value("dim", int64_t{-1}))});
  } else if (type == "ReduceMean") {
    last("ReduceMean", in, {y}, n,
         {OnnxAttr::list("axes", ints_arg(args, "dims")), OnnxAttr::integer("keepdims", args.value("keepdim", true))});
  } else if (type == "Squeeze" || type == "Unsqueeze") {
    last(type, {in[0], b_.ints(base + "_axes", ints_arg(args, "dims"))}, {y}, n);
  } else if (type == "Constant") {
    last("Identity", {param(n, "value")}, {y}, n);
  } else {
    throw InputError(fmt::format("ONNX export: node '{}': layer type {} has no ONNX export yet", n.name, type));
  }
  // Where QuantSim's quantizers of this node sit in the exported graph (quantizer names as in quantsim.hpp).
  for (size_t k = 0; k < outs.size(); ++k)
    res_.tensor_of[k == 0 ? n.name + ".output" : fmt::format("{}.output{}", n.name, k)] = outs[k];
  for (size_t k = 0; k < in.size(); ++k)
    res_.tensor_of[k == 0 ? n.name + ".input" : fmt::format("{}.input{}", n.name, k)] = in[k];
  for (const auto& [p, t] : n.module->own_parameters()) res_.tensor_of[n.name + "." + p] = stored_name(n.name + "." + p);
}

// PyTorch's recurrent layers -> one ONNX LSTM/GRU/RNN per layer (ONNX stacks no layers), in sequence-first
// layout. Gate blocks are reordered (PyTorch LSTM i,f,g,o -> ONNX i,o,f,c; GRU r,z,n -> ONNX z,r,h with
// linear_before_reset=1, which is PyTorch's GRU); Y [T,D,B,H] is turned into [T,B,D·H] for the next layer,
// and h_n/c_n are the layers' Y_h/Y_c concatenated as PyTorch's [L·D,B,H].
void Fp32Exporter::emit_recurrent(const nn::GraphNode& n, const std::vector<std::string>& in, const json& args,
                                  const std::vector<std::string>& outs) {
  const std::string& type = n.module->type_name();
  const int64_t H = args.at("hidden_size").get<int64_t>(), L = args.value("num_layers", int64_t{1});
  const bool bidir = args.value("bidirectional", false), batch_first = args.value("batch_first", false);
  const bool bias = args.value("bias", true);
  const int64_t D = bidir ? 2 : 1;
  const std::vector<int> order = type == "LSTM" ? std::vector<int>{0, 3, 1, 2}
                               : type == "GRU"  ? std::vector<int>{1, 0, 2}
                                                : std::vector<int>{0};
  const int64_t G = static_cast<int64_t>(order.size());
  const std::string base = n.name;
  std::string x = in.at(0);
  if (batch_first) x = op("Transpose", {x}, base + "_seq_first", {OnnxAttr::list("perm", {1, 0, 2})});
  std::vector<std::string> hs, cs;
  for (int64_t l = 0; l < L; ++l) {
    std::vector<float> W, R, B;
    int64_t I = 0;
    for (int64_t d = 0; d < D; ++d) {
      const std::string sfx = fmt::format("_l{}{}", l, d == 1 ? "_reverse" : "");
      const Tensor wih = n.module->raw_param("weight_ih" + sfx), whh = n.module->raw_param("weight_hh" + sfx);
      I = wih.shape()[1];
      const std::vector<float> wi = wih.to_vector<float>(), wh = whh.to_vector<float>();
      for (int g : order) {
        W.insert(W.end(), wi.begin() + g * H * I, wi.begin() + (g + 1) * H * I);
        R.insert(R.end(), wh.begin() + g * H * H, wh.begin() + (g + 1) * H * H);
      }
      std::vector<float> bi(G * H, 0.0f), bh(G * H, 0.0f);
      if (bias) {
        bi = n.module->raw_param("bias_ih" + sfx).to_vector<float>();
        bh = n.module->raw_param("bias_hh" + sfx).to_vector<float>();
      }
      for (const auto* src : {&bi, &bh})
        for (int g : order) B.insert(B.end(), src->begin() + g * H, src->begin() + (g + 1) * H);
    }
    const std::string lb = fmt::format("{}_l{}", base, l);
    std::vector<std::string> ins = {x, made(lb + "_W", {D, G * H, I}, W), made(lb + "_R", {D, G * H, H}, R),
                                    made(lb + "_B", {D, 2 * G * H}, B)};
    std::vector<std::string> lo = {b_.fresh(lb + "_Y"), b_.fresh(lb + "_Y_h")};
    if (type == "LSTM") lo.push_back(b_.fresh(lb + "_Y_c"));
    std::vector<OnnxAttr> attrs = {OnnxAttr::integer("hidden_size", H),
                                   OnnxAttr::text("direction", bidir ? "bidirectional" : "forward")};
    if (type == "GRU") attrs.push_back(OnnxAttr::integer("linear_before_reset", 1));
    if (type == "RNN") {
      const std::string act = args.value("nonlinearity", std::string("tanh")) == "relu" ? "Relu" : "Tanh";
      attrs.push_back(OnnxAttr::text("activations", act));
    }
    count(type);
    b_.node(type, ins, lo, attrs, lb);
    hs.push_back(lo[1]);
    if (type == "LSTM") cs.push_back(lo[2]);
    const std::string tb = op("Transpose", {lo[0]}, lb + "_tbdh", {OnnxAttr::list("perm", {0, 2, 1, 3})});
    x = op("Reshape", {tb, b_.ints(lb + "_shape", {0, 0, -1})}, lb + "_out");
  }
  if (batch_first) last("Transpose", {x}, {outs.at(0)}, n, {OnnxAttr::list("perm", {1, 0, 2})});
  else last("Identity", {x}, {outs.at(0)}, n);
  auto states = [&](const std::vector<std::string>& parts, const std::string& out) {
    if (parts.size() == 1) last("Identity", parts, {out}, n);
    else last("Concat", parts, {out}, n, {OnnxAttr::integer("axis", 0)});
  };
  if (outs.size() > 1) states(hs, outs[1]);
  if (outs.size() > 2) states(cs, outs[2]);
}

}  // namespace

nlohmann::json OnnxExportResult::to_json() const {
  return {{"nodes", nodes}, {"op_census", op_census}, {"inputs", input_names}, {"outputs", output_names},
          {"notes", notes}, {"vpmaddubsw_risk_layers", vpmaddubsw_risk}};
}

bool onnx_export_available() { return true; }

OnnxExportResult export_onnx_fp32(nn::Graph& model, const std::vector<Tensor>& sample_inputs,
                                  const std::filesystem::path& out) {
  Fp32Exporter e(model, sample_inputs);
  return e.run(out);
}

}  // namespace qforge::quant::exporter
