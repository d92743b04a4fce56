// Integer Program -> QDQ ONNX for ONNX Runtime.
//
// Note [QDQ layout]
// The file is laid out the way ORT's own quantizer (quantize_static, QDQ format) writes it, because that is
// the layout ORT's graph optimizer fuses into integer operators on x86 (reference onnx-qdq-ort.md §2.3):
//   - every Program value v (int8 codes q, real = s·(q − z)) is one uint8 tensor "<v>_q" with zero point
//     z + 128: the same reals, the same rounding, codes shifted by 128. ORT fuses QLinearConv/QLinearMatMul
//     on x86 only for uint8 activations (S8S8 QDQ stays DQ → float op → Q there);
//   - a consumer reads DequantizeLinear(<v>_q); a producer ends in QuantizeLinear to its value's encoding;
//   - conv/linear weights are int8 initializers (symmetric, zero point 0) feeding DequantizeLinear with the
//     weight quantizer's float32 scales (per-channel: axis 0); biases are the Program's int32 biases feeding
//     DequantizeLinear at scale float32(s_in·s_w[c]) — ORT's fused operators take those integers as they are;
//   - a fused ReLU/ReLU6 whose clamp the output encoding already implies (post-activation encodings start at
//     zero) is dropped, as ORT's quantizer drops it; a clamp narrower than the code range stays as a
//     Relu/Clip node, which keeps the model correct but stops ORT from fusing that layer (reported in notes);
//   - Flatten/MaxPool/Transpose/Reshape/Gather between identical encodings run on the uint8 codes in ORT.
// The graph's outputs are the last value's codes ("<output>_q", uint8) and their dequantized floats.
#include "quant/export/onnx_builder.hpp"
#include "quant/export/onnx_export.hpp"

#include "engine/error.hpp"

#include <fmt/format.h>

namespace qforge::quant::exporter {

namespace {

using runtime::OpKind;
using runtime::Program;
using runtime::QParams;
using Ints = std::vector<int64_t>;

class QdqExporter {
public:
  QdqExporter(const Program& p, const QdqExportOptions& opt) : p_(p), opt_(opt), b_(p.model.empty() ? "qforge" : p.model, 13) {
    b_.reserve(opt_.input_name);
    b_.reserve(opt_.output_name);
    b_.reserve(opt_.output_name + "_q");
    for (const auto& [key, name] : opt_.tensor_names) b_.reserve(name);
  }

  OnnxExportResult run(const std::filesystem::path& out) {
    codes_.assign(p_.values.size(), "");
    floats_.assign(p_.values.size(), "");
    // The model input: float in, quantized to the input value's encoding.
    const auto& in = p_.input_value();
    Ints in_dims = {-1};
    in_dims.insert(in_dims.end(), in.shape.begin(), in.shape.end());
    b_.claim(opt_.input_name);
    b_.input(opt_.input_name, onnx::TensorProto_DataType_FLOAT, in_dims);
    codes_[p_.input] = quantize(opt_.input_name, p_.input, "input");
    for (const auto& op : p_.ops) emit(op);
    // Outputs: the codes and their dequantized values.
    const auto& outv = p_.output_value();
    Ints out_dims = {-1};
    out_dims.insert(out_dims.end(), outv.shape.begin(), outv.shape.end());
    const std::string oq = b_.claim(opt_.output_name + "_q");
    count("Identity");
    b_.node("Identity", {codes_[p_.output]}, {oq});
    const std::string of = b_.claim(opt_.output_name);
    count("DequantizeLinear");
    b_.node("DequantizeLinear", {oq, scale_of(p_.output), zero_of(p_.output)}, {of});
    b_.output(of, onnx::TensorProto_DataType_FLOAT, out_dims);
    b_.output(oq, onnx::TensorProto_DataType_UINT8, out_dims);
    res_.input_names = {opt_.input_name};
    res_.output_names = {of, oq};
    b_.metadata("qforge.codes", "uint8 codes = qforge int8 codes + 128 (Note [QDQ layout])");
    b_.save(out);
    res_.nodes = b_.num_nodes();
    return res_;
  }

private:
  static uint8_t u8_zero(const QParams& q) { return static_cast<uint8_t>(q.zero_point + 128); }
  std::string scale_of(int v) {
    if (scale_init_.count(v) == 0) scale_init_[v] = b_.scalar_float(p_.values[v].name + "_scale", p_.values[v].q.scale);
    return scale_init_[v];
  }
  std::string zero_of(int v) {
    if (zero_init_.count(v) == 0) zero_init_[v] = b_.scalar_uint8(p_.values[v].name + "_zero_point", u8_zero(p_.values[v].q));
    return zero_init_[v];
  }
  void count(const std::string& op) { ++res_.op_census[op]; }
  std::string node(const std::string& type, const std::vector<std::string>& in, const std::string& base,
                   const std::vector<OnnxAttr>& attrs = {}) {
    count(type);
    return b_.op(type, in, base, attrs);
  }
  // QuantizeLinear of a float tensor to value v's encoding. ORT saturates to [0, 255]; an encoding with a
  // narrower code range (fewer bits, strict symmetric) cannot be expressed by QuantizeLinear alone.
  std::string quantize(const std::string& x, int v, const std::string& who) {
    const QParams& q = p_.values[v].q;
    if (q.qmin != -128 || q.qmax != 127)
      res_.notes.push_back(fmt::format("{}: codes [{}, {}] are narrower than int8; QuantizeLinear saturates to the "
                                       "full uint8 range",
                                       who, q.qmin, q.qmax));
    const std::string y = node("QuantizeLinear", {x, scale_of(v), zero_of(v)}, p_.values[v].name + "_q");
    res_.encodings_200.push_back(
        {{"name", y}, {"output_dtype", "uint8"}, {"y_scale", q.scale}, {"y_zero_point", u8_zero(q)}});
    return y;
  }
  // Encodings 2.0.0 entry of a per-channel (or per-tensor) initializer.
  void param_encoding(const std::string& name, const char* dtype, const std::vector<float>& scales, bool per_channel) {
    nlohmann::json e = {{"name", name}, {"output_dtype", dtype}};
    if (per_channel) {
      e["y_scale"] = scales;
      e["axis"] = 0;
    } else {
      e["y_scale"] = scales.at(0);
    }
    res_.encodings_200.push_back(std::move(e));
  }
  // Q then DQ of a float tensor to value v's encoding (the value's codes stay where they are): a tensor a
  // shape op made from v's dequantized codes, handed on as a DequantizeLinear output again.
  std::string requantized(const std::string& x, int v, const std::string& base) {
    const std::string q = node("QuantizeLinear", {x, scale_of(v), zero_of(v)}, base + "_q");
    return node("DequantizeLinear", {q, scale_of(v), zero_of(v)}, base + "_dq");
  }
  std::string dequantized(int v) {
    if (floats_[v].empty())
      floats_[v] = node("DequantizeLinear", {codes_[v], scale_of(v), zero_of(v)}, p_.values[v].name + "_dq");
    return floats_[v];
  }
  std::string weight_name(const std::string& layer, const char* param) const {
    const std::string key = fmt::format("{}.{}", layer, param);
    auto it = opt_.tensor_names.find(key);
    return it == opt_.tensor_names.end() ? key : it->second;
  }
  // A fused activation the output encoding does not already imply stays as a float node before Q.
  std::string activation(const runtime::Op& op, const std::string& y, int out) {
    const QParams& q = p_.values[out].q;
    if (op.range.min <= q.qmin && op.range.max >= q.qmax) return y;
    res_.notes.push_back(fmt::format("{}: the fused clamp [{}, {}] is narrower than the output codes [{}, {}]; kept as a "
                                     "float node, so ORT does not fuse this layer",
                                     op.name, op.range.min, op.range.max, q.qmin, q.qmax));
    const float lo = q.scale * static_cast<float>(op.range.min - q.zero_point);
    const float hi = q.scale * static_cast<float>(op.range.max - q.zero_point);
    return node("Clip", {y, b_.scalar_float(op.name + "_min", lo), b_.scalar_float(op.name + "_max", hi)}, op.name + "_clip");
  }

  std::string layer_of(const runtime::Op& op) const { return op.name.substr(0, op.name.find('+')); }
  void emit_dense(const runtime::Op& op);
  void emit_recurrent(const runtime::Op& op);
  void emit(const runtime::Op& op);

  const Program& p_;
  QdqExportOptions opt_;
  OnnxBuilder b_;
  OnnxExportResult res_;
  std::vector<std::string> codes_, floats_;
  std::map<int, std::string> scale_init_, zero_init_;
};

// Note [vpmaddubsw risk]
// On x86 without VNNI, ORT's u8s8 GEMM multiplies uint8 activations by int8 weights with vpmaddubsw, which adds
// the products of adjacent pairs along the reduction and saturates the pair sum to int16. With activations up
// to 255, a pair of weights w1, w2 of one sign overflows when 255·(w1 + w2) > 32767 or < −32768, i.e. when
// w1 + w2 ≥ 129 or ≤ −129. Which k are adjacent depends on ORT's packing, so any two weights of one output
// channel count (an upper bound). Weights of 7 bits or fewer (|w| ≤ 64) can never reach it.
bool may_saturate_vpmaddubsw(const std::vector<int8_t>& w, int64_t out_c) {
  const int64_t per = static_cast<int64_t>(w.size()) / out_c;
  for (int64_t c = 0; c < out_c; ++c) {
    int p1 = 0, p2 = 0, n1 = 0, n2 = 0;  // two largest positive, two most negative
    for (int64_t k = 0; k < per; ++k) {
      const int v = w[c * per + k];
      if (v > p1) { p2 = p1; p1 = v; } else if (v > p2) { p2 = v; }
      if (v < n1) { n2 = n1; n1 = v; } else if (v < n2) { n2 = v; }
    }
    if (p1 + p2 >= 129 || n1 + n2 <= -129) return true;
  }
  return false;
}

void QdqExporter::emit_dense(const runtime::Op& op) {
  if (may_saturate_vpmaddubsw(op.weights, op.out_c)) res_.vpmaddubsw_risk.push_back(op.name);
  const std::string layer = layer_of(op);
  const int in = op.inputs.at(0);
  const bool conv = op.kind == OpKind::conv2d;
  const Ints wdims = conv ? Ints{op.out_c, op.in_c / op.groups, op.kh, op.kw} : Ints{op.out_c, op.in_c};
  if (op.w_scale.size() != static_cast<size_t>(op.out_c))
    throw Error(fmt::format("ONNX export: layer {}: the program carries no weight scales", op.name));
  const bool per_channel = op.per_channel;
  const Ints sdims = per_channel ? Ints{op.out_c} : Ints{};
  const std::string w = b_.add_int8(weight_name(layer, "weight"), wdims, op.weights.data());
  const std::string ws = b_.add_float(layer + ".weight_scale", sdims, op.w_scale.data(), false);
  const std::vector<int8_t> wz(per_channel ? op.out_c : 1, 0);
  const std::string wzp = b_.add_int8(layer + ".weight_zero_point", sdims, wz.data(), false);
  std::vector<OnnxAttr> axis;
  if (per_channel) axis.push_back(OnnxAttr::integer("axis", 0));
  const std::string wf = node("DequantizeLinear", {w, ws, wzp}, layer + ".weight_dq", axis);
  // Bias: the Program's int32 values at scale s_in·s_w[c] (float32 product, as ORT's quantizer writes it).
  std::vector<float> bscale(op.out_c);
  for (int64_t c = 0; c < op.out_c; ++c)
    bscale[c] = p_.values[in].q.scale * op.w_scale[c];
  const std::string bq = b_.add_int32(weight_name(layer, "bias"), {op.out_c}, op.bias.data());
  const std::string bs = b_.add_float(layer + ".bias_scale", {op.out_c}, bscale.data(), false);
  const std::string bf = node("DequantizeLinear", {bq, bs}, layer + ".bias_dq", {OnnxAttr::integer("axis", 0)});
  param_encoding(w, "int8", op.w_scale, per_channel);
  param_encoding(bq, "int32", bscale, true);
  std::string y;
  if (conv) {
    y = node("Conv", {dequantized(in), wf, bf}, layer,
             {OnnxAttr::list("kernel_shape", {op.kh, op.kw}), OnnxAttr::list("strides", {op.stride_h, op.stride_w}),
              OnnxAttr::list("pads", {op.pad_h, op.pad_w, op.pad_h, op.pad_w}),
              OnnxAttr::list("dilations", {op.dilation_h, op.dilation_w}), OnnxAttr::integer("group", op.groups)});
  } else if (p_.values[in].shape.size() == 1) {
    y = node("Gemm", {dequantized(in), wf, bf}, layer, {OnnxAttr::integer("transB", 1)});
  } else {
    // Note [sequence linear]: a linear layer over [T, F] per sample is a Gemm over N·T rows, so that ORT
    // fuses it into QGemm like any other: [N, T, F] codes -> Reshape [N·T, F] -> Gemm -> Q -> Reshape back
    // [N, T, out]. Each Reshape sits between a DQ and a Q of one encoding, so ORT runs it on the uint8 codes.
    const int64_t T = p_.values[in].shape.at(0);
    const std::string rows = node("Reshape", {dequantized(in), b_.ints(layer + "_rows_shape", {-1, op.in_c})}, layer + "_rows");
    const std::string rq = requantized(rows, in, layer + "_rows");
    const std::string yr = node("Gemm", {rq, wf, bf}, layer + "_gemm", {OnnxAttr::integer("transB", 1)});
    const std::string yq = quantize(activation(op, yr, op.output), op.output, op.name);
    const std::string ys = node("Reshape", {node("DequantizeLinear", {yq, scale_of(op.output), zero_of(op.output)}, layer + "_gemm_dq"),
                                            b_.ints(layer + "_seq_shape", {-1, T, op.out_c})},
                                layer);
    codes_[op.output] = node("QuantizeLinear", {ys, scale_of(op.output), zero_of(op.output)}, p_.values[op.output].name + "_q");
    return;
  }
  codes_[op.output] = quantize(activation(op, y, op.output), op.output, op.name);
}

// Note [recurrent QDQ]
// An LSTM/GRU op becomes one ONNX LSTM/GRU node (sequence-first, so a Transpose on each side) whose X, W, R and
// B are DequantizeLinear outputs: X the input value's codes, W/R the program's int8 weights (per-row float32
// scales, axis 1), B the program's int32 biases at scale s_x·s_w[r] (input side, Wb) and s_h·s_r[r]
// (recurrent side, Rb). Gate blocks are reordered from PyTorch's to ONNX's: LSTM i,f,g,o -> i,o,f,c; GRU
// r,z,n -> z,r,h with linear_before_reset=1 (PyTorch's GRU applies r to W_hn·h + b_hn). qforge's LSTM bias is
// b_ih + b_hh folded into one int32 vector at the input scale, so its Rb is zero. Y is quantized to the
// hidden encoding after the node.
// ORT has no QDQ fusion for LSTM/GRU: it dequantizes and runs the cell in float32, with a float hidden and
// cell state across time steps. qforge's integer cell (requant.hpp, 8x8_16) requantizes the hidden state to
// int8 at every step, carries gate pre-activations in Q3.12, the cell in int16 and sigmoid/tanh as tables,
// so the two agree to within rounding, not bit for bit; tests/scripts/test_ort_parity.sh measures by how much.
void QdqExporter::emit_recurrent(const runtime::Op& op) {
  const bool lstm = op.kind == OpKind::lstm;
  const std::string& name = op.name;
  const int in = op.inputs.at(0);
  const int64_t H = op.hidden, GH = op.out_c, G = GH / H, I = op.in_c;
  if (op.w_scale.size() != static_cast<size_t>(GH) || op.w_scale_hh.size() != static_cast<size_t>(GH))
    throw Error(fmt::format("ONNX export: layer {}: the program carries no recurrent weight scales", name));
  const std::vector<int64_t> order = lstm ? std::vector<int64_t>{0, 3, 1, 2} : std::vector<int64_t>{1, 0, 2};
  // Rows in ONNX order: row r of gate block order[g] goes to block g.
  std::vector<int64_t> rows;
  for (int64_t g : order)
    for (int64_t j = 0; j < H; ++j) rows.push_back(g * H + j);
  std::vector<int8_t> W(GH * I), R(GH * H);
  std::vector<float> ws(GH), rs(GH), bs(2 * GH);
  std::vector<int32_t> B(2 * GH, 0);
  const float sx = p_.values[in].q.scale, sh = p_.values[op.output].q.scale;
  for (int64_t k = 0; k < GH; ++k) {
    const int64_t r = rows[k];
    std::copy_n(op.weights.begin() + r * I, I, W.begin() + k * I);
    std::copy_n(op.weights_hh.begin() + r * H, H, R.begin() + k * H);
    ws[k] = op.w_scale[r];
    rs[k] = op.w_scale_hh[r];
    B[k] = op.bias.at(r);
    bs[k] = sx * op.w_scale[r];
    if (!lstm) B[GH + k] = op.bias_hh.at(r);
    bs[GH + k] = sh * op.w_scale_hh[r];
  }
  // Initializers are named like the float export's (ONNX's W/R/B layout is not a state_dict tensor).
  auto weight = [&](const char* param, const std::vector<int8_t>& v, const std::vector<float>& s, int64_t cols) {
    const std::string base = name + "_l0_" + param;
    const std::string q = b_.add_int8(base, {1, GH, cols}, v.data(), false);
    const std::string sc = b_.add_float(base + "_scale", {GH}, s.data(), false);
    const std::vector<int8_t> z(GH, 0);
    const std::string zp = b_.add_int8(base + "_zero_point", {GH}, z.data(), false);
    param_encoding(q, "int8", s, true);
    res_.encodings_200.back()["axis"] = 1;
    return node("DequantizeLinear", {q, sc, zp}, base + "_dq", {OnnxAttr::integer("axis", 1)});
  };
  const std::string wf = weight("W", W, ws, I), rf = weight("R", R, rs, H);
  const std::string bq = b_.add_int32(name + "_l0_B", {1, 2 * GH}, B.data(), false);
  const std::string bsc = b_.add_float(name + "_l0_B_scale", {2 * GH}, bs.data(), false);
  param_encoding(bq, "int32", bs, true);
  res_.encodings_200.back()["axis"] = 1;
  const std::string bf = node("DequantizeLinear", {bq, bsc}, name + "_l0_B_dq", {OnnxAttr::integer("axis", 1)});
  const std::string xs = node("Transpose", {dequantized(in)}, name + "_seq_first", {OnnxAttr::list("perm", {1, 0, 2})});
  std::vector<OnnxAttr> attrs = {OnnxAttr::integer("hidden_size", H), OnnxAttr::text("direction", "forward")};
  if (!lstm) attrs.push_back(OnnxAttr::integer("linear_before_reset", 1));
  count(lstm ? "LSTM" : "GRU");
  const std::string y = b_.node(lstm ? "LSTM" : "GRU", {xs, wf, rf, bf}, {b_.fresh(name + "_Y")}, attrs, name);
  // Y [T, 1, N, H] -> [N, T, H]
  const std::string yt = node("Transpose", {y}, name + "_ntdh", {OnnxAttr::list("perm", {2, 0, 1, 3})});
  const std::string yr = node("Reshape", {yt, b_.ints(name + "_shape", {0, 0, -1})}, name + "_out");
  if (G != (lstm ? 4 : 3)) throw Error(fmt::format("ONNX export: layer {}: {} gate rows for hidden size {}", name, GH, H));
  res_.notes.push_back(fmt::format("{}: ONNX Runtime runs {} in float32 between DequantizeLinear and QuantizeLinear "
                                   "(no integer recurrent kernel); qforge's integer cell agrees to within rounding "
                                   "(Note [recurrent QDQ])",
                                   name, lstm ? "LSTM" : "GRU"));
  codes_[op.output] = quantize(yr, op.output, name);
}

void QdqExporter::emit(const runtime::Op& op) {
  const int in = op.inputs.at(0);
  const std::string& name = op.name;
  switch (op.kind) {
    case OpKind::conv2d:
    case OpKind::linear:
      emit_dense(op);
      return;
    case OpKind::maxpool2d:
    case OpKind::avgpool2d: {
      std::vector<OnnxAttr> attrs = {OnnxAttr::list("kernel_shape", {op.kh, op.kw}),
                                     OnnxAttr::list("strides", {op.stride_h, op.stride_w}),
                                     OnnxAttr::list("pads", {op.pad_h, op.pad_w, op.pad_h, op.pad_w})};
      if (op.kind == OpKind::avgpool2d) attrs.push_back(OnnxAttr::integer("count_include_pad", op.count_include_pad));
      const std::string y = node(op.kind == OpKind::maxpool2d ? "MaxPool" : "AveragePool", {dequantized(in)}, name, attrs);
      codes_[op.output] = quantize(y, op.output, name);
      return;
    }
    case OpKind::global_avgpool:
      codes_[op.output] = quantize(node("GlobalAveragePool", {dequantized(in)}, name), op.output, name);
      return;
    case OpKind::add: {
      const std::string y = node("Add", {dequantized(op.inputs.at(0)), dequantized(op.inputs.at(1))}, name);
      codes_[op.output] = quantize(activation(op, y, op.output), op.output, name);
      return;
    }
    case OpKind::requant:
      codes_[op.output] = quantize(activation(op, dequantized(in), op.output), op.output, name);
      return;
    case OpKind::flatten:
      codes_[op.output] = quantize(node("Flatten", {dequantized(in)}, name, {OnnxAttr::integer("axis", 1)}), op.output, name);
      return;
    case OpKind::image_as_sequence: {
      const std::string t = node("Transpose", {dequantized(in)}, name + "_nhcw", {OnnxAttr::list("perm", {0, 2, 1, 3})});
      const std::string y = node("Reshape", {t, b_.ints(name + "_shape", {0, 0, -1})}, name);
      codes_[op.output] = quantize(y, op.output, name);
      return;
    }
    case OpKind::last_step: {
      const int64_t minus_one = -1;
      const std::string idx = b_.add_int64(name + "_last", {}, &minus_one, false);
      const std::string y = node("Gather", {dequantized(in), idx}, name, {OnnxAttr::integer("axis", 1)});
      codes_[op.output] = quantize(y, op.output, name);
      return;
    }
    case OpKind::lstm:
    case OpKind::gru:
      emit_recurrent(op);
      return;
  }
  throw Error(fmt::format("ONNX export: op {} of kind {} has no QDQ export", name, runtime::op_kind_name(op.kind)));
}

}  // namespace

OnnxExportResult export_onnx_qdq(const Program& program, const std::filesystem::path& out, const QdqExportOptions& opt) {
  QdqExporter e(program, opt);
  return e.run(out);
}

}  // namespace qforge::quant::exporter
