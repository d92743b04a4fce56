// Op rules for LSTM, GRU and RNN: ONNX's recurrent nodes become qforge's LSTM/GRU/RNN layers
// (nn/recurrent.hpp) with the weights converted to PyTorch's layout.
//
// Note [ONNX recurrent layout]
// ONNX: W [D, G·H, I], R [D, G·H, H], B [D, 2·G·H] (Wb then Rb), gates LSTM i,o,f,c and GRU z,r,h; outputs
// Y [T, D, B, H], Y_h and Y_c [D, B, H] (layout 0). PyTorch/qforge: per direction weight_ih [G·H, I],
// weight_hh [G·H, H], bias_ih, bias_hh, gates LSTM i,f,g,o and GRU r,z,n; output [T, B, D·H] (forward|
// reverse on the feature dim), h_n/c_n [D, B, H]. So LSTM gate blocks are taken in ONNX order 0,2,3,1
// and GRU's in order 1,0,2; PyTorch's GRU is ONNX's linear_before_reset = 1 (other values are refused).
// torch.onnx follows Y with Squeeze(axis 1) (one direction) or Transpose(0,2,1,3) + Reshape(0,0,-1): both
// are exactly qforge's output and are fused; any other use of Y gets an explicit Reshape + Transpose.
#include "nn/onnx/lower.hpp"

#include <algorithm>

namespace qforge::nn::onnx_import {

namespace {

// Rows of one direction of a [D, G·H, K] tensor, gate blocks reordered by `order`.
Tensor gate_rows(const Tensor& t, int64_t dir, int64_t hidden, const std::vector<int>& order) {
  const int64_t k = t.size(2), g = int64_t(order.size());
  const std::vector<float> v = t.to_vector<float>();
  std::vector<float> out(size_t(g * hidden * k));
  const float* base = v.data() + dir * g * hidden * k;
  for (int64_t gi = 0; gi < g; ++gi)
    std::copy(base + order[size_t(gi)] * hidden * k, base + (order[size_t(gi)] + 1) * hidden * k, out.begin() + gi * hidden * k);
  return Tensor::from_vector(out, {g * hidden, k});
}

// The input-side (part 0) or hidden-side (part 1) bias of one direction, reordered.
Tensor gate_bias(const Tensor& b, int64_t dir, int64_t hidden, int part, const std::vector<int>& order) {
  const int64_t g = int64_t(order.size());
  const std::vector<float> v = b.to_vector<float>();
  std::vector<float> out(size_t(g * hidden));
  const float* base = v.data() + dir * 2 * g * hidden + part * g * hidden;
  for (int64_t gi = 0; gi < g; ++gi)
    std::copy(base + order[size_t(gi)] * hidden, base + (order[size_t(gi)] + 1) * hidden, out.begin() + gi * hidden);
  return Tensor::from_vector(out, {g * hidden});
}

bool all_zero(const ConstTensor& c) {
  for (double v : c.values())
    if (v != 0) return false;
  return true;
}

void recurrent(Lowerer& L, const Node& n) {
  const std::string& op = n.op_type();
  const bool lstm = op == "LSTM", gru = op == "GRU";
  L.only_attrs(n, {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
                   "input_forget", "layout", "linear_before_reset"});
  if (L.attr(n, "clip")) L.fail(n, "attribute 'clip' is not supported");
  if (L.attr_int(n, "input_forget", 0)) L.fail(n, "input_forget = 1 is not supported");
  if (L.attr_int(n, "layout", 0)) L.fail(n, "layout = 1 is not supported (only [T, B, I] sequences)");
  if (gru && L.attr_int(n, "linear_before_reset", 0) != 1)
    L.fail(n, "linear_before_reset = 0 is not supported (PyTorch's GRU is linear_before_reset = 1)");
  if (L.attr(n, "activation_alpha") || L.attr(n, "activation_beta")) L.fail(n, "activation_alpha/beta are not supported");
  std::string nonlinearity = "tanh";
  if (const auto* a = L.attr(n, "activations")) {
    std::vector<std::string> acts(a->strings().begin(), a->strings().end());
    const std::vector<std::string> lstm_default = {"Sigmoid", "Tanh", "Tanh"}, gru_default = {"Sigmoid", "Tanh"};
    bool ok = false;
    for (size_t d = 0; d < 2 && !ok; ++d) {  // given once per direction
      const auto& def = lstm ? lstm_default : gru_default;
      if (lstm || gru) ok = acts.size() == def.size() * (d + 1) && std::equal(def.begin(), def.end(), acts.begin()) &&
                              (d == 0 || std::equal(def.begin(), def.end(), acts.begin() + long(def.size())));
    }
    if (!lstm && !gru) {
      const bool all_relu = !acts.empty() && std::all_of(acts.begin(), acts.end(), [](auto& s) { return s == "Relu"; });
      const bool all_tanh = !acts.empty() && std::all_of(acts.begin(), acts.end(), [](auto& s) { return s == "Tanh"; });
      ok = all_relu || all_tanh;
      if (all_relu) nonlinearity = "relu";
    }
    if (!ok) L.fail(n, fmt::format("activations [{}] are not supported (only PyTorch's)", fmt::join(acts, ", ")));
  }
  const std::string direction = L.attr_string(n, "direction", "forward");
  if (direction != "forward" && direction != "bidirectional")
    L.fail(n, fmt::format("direction '{}' is not supported (forward or bidirectional)", direction));
  const int64_t dirs = direction == "bidirectional" ? 2 : 1;
  const ConstTensor& w = L.const_input(n, 1, "W");
  const ConstTensor& r = L.const_input(n, 2, "R");
  const int64_t gates = lstm ? 4 : gru ? 3 : 1;
  const int64_t hidden = L.attr_int(n, "hidden_size", w.dims.size() == 3 ? w.dims[1] / gates : 0);
  if (!w.is_float() || !r.is_float() || w.dims.size() != 3 || r.dims.size() != 3 || w.dims[0] != dirs ||
      w.dims[1] != gates * hidden || r.dims != Shape{dirs, gates * hidden, hidden} || hidden <= 0)
    L.fail(n, fmt::format("W {} / R {} do not match {} directions of hidden size {}", shape_str(w.dims), shape_str(r.dims), dirs, hidden));
  const int64_t input_size = w.dims[2];
  if (L.has_input(n, 4)) {
    const auto lens = L.const_ints(n, 4, "sequence_lens");
    const auto xs = L.shape_of(n.input(0));
    if (!xs || xs->empty() || (*xs)[0] < 0 || std::any_of(lens.begin(), lens.end(), [&](int64_t l) { return l != (*xs)[0]; }))
      L.fail(n, "sequence_lens other than the full length are not supported");
  }
  if (L.has_input(n, 7)) L.fail(n, "peepholes (input P) are not supported");
  const ConstTensor* b = L.has_input(n, 3) ? &L.const_input(n, 3, "B") : nullptr;
  if (b && (!b->is_float() || b->dims != Shape{dirs, 2 * gates * hidden}))
    L.fail(n, fmt::format("B {} does not match [{}, {}]", shape_str(b->dims), dirs, 2 * gates * hidden));

  // Initial states: absent or zero constants are the layer's default; run-time states are inputs.
  std::vector<std::string> inputs = {L.ref(n, 0)};
  const int state_inputs = lstm ? 2 : 1;
  std::vector<bool> given;
  for (int s = 0; s < state_inputs; ++s) {
    const int i = 5 + s;
    given.push_back(L.has_input(n, i) && !(L.is_const(n, i) && all_zero(L.const_input(n, i, "initial state"))));
  }
  if (std::count(given.begin(), given.end(), true) == state_inputs) {
    for (int s = 0; s < state_inputs; ++s) inputs.push_back(L.ref(n, 5 + s));
  } else if (std::count(given.begin(), given.end(), true) > 0) {
    L.fail(n, "initial_h and initial_c must both be given or both be zero/absent");
  }

  const std::vector<int> order = lstm ? std::vector<int>{0, 2, 3, 1} : gru ? std::vector<int>{1, 0, 2} : std::vector<int>{0};
  std::vector<Lowerer::Param> params;
  for (int64_t d = 0; d < dirs; ++d) {
    const std::string sfx = d ? "_l0_reverse" : "_l0";
    params.push_back({"weight_ih" + sfx, gate_rows(w.f, d, hidden, order), ""});
    params.push_back({"weight_hh" + sfx, gate_rows(r.f, d, hidden, order), ""});
    if (b) {
      params.push_back({"bias_ih" + sfx, gate_bias(b->f, d, hidden, 0, order), ""});
      params.push_back({"bias_hh" + sfx, gate_bias(b->f, d, hidden, 1, order), ""});
    }
  }
  json args = {{"input_size", input_size}, {"hidden_size", hidden}, {"num_layers", 1}, {"bias", b != nullptr},
               {"batch_first", false}, {"bidirectional", dirs == 2}};
  if (!lstm && !gru) args["nonlinearity"] = nonlinearity;
  const std::string name = L.emit(n, op, std::move(args), inputs, std::move(params));
  const int ba = L.value(n, 0).batch_axis;
  L.count(n, op);

  // Y (Note [ONNX recurrent layout]).
  if (n.output_size() > 0 && !n.output(0).empty()) {
    const Node* c = L.sole_consumer(n.output(0));
    bool fused = false;
    if (c && c->op_type() == "Squeeze" && dirs == 1) {
      const auto axes = L.opset() >= 13 ? (L.has_input(*c, 1) ? L.const_ints(*c, 1, "axes") : std::vector<int64_t>{})
                                        : L.attr_ints(*c, "axes");
      if (axes == std::vector<int64_t>{1} || axes == std::vector<int64_t>{-3}) {
        L.set_output(*c, 0, name, ba);
        L.count(*c, fmt::format("fused into {}", op));
        L.skip(*c);
        fused = true;
      }
    }
    if (c && c->op_type() == "Transpose" && L.attr_ints(*c, "perm") == std::vector<int64_t>{0, 2, 1, 3}) {
      const Node* rs = L.sole_consumer(c->output(0));
      if (rs && rs->op_type() == "Reshape" && L.is_const(*rs, 1)) {
        const auto t = L.const_ints(*rs, 1, "shape");
        const auto xs = L.shape_of(n.input(0));
        const bool ok = t.size() == 3 && (t[2] == -1 || t[2] == dirs * hidden) &&
                        (t[0] == 0 || (xs && t[0] == (*xs)[0])) && (t[1] == 0 || (xs && t[1] == (*xs)[1]));
        if (ok) {
          L.set_output(*rs, 0, name, ba);
          L.count(*c, fmt::format("fused into {}", op));
          L.count(*rs, fmt::format("fused into {}", op));
          L.skip(*c);
          L.skip(*rs);
          fused = true;
        }
      }
    }
    if (!fused) {
      Node tmp = n;
      tmp.set_name(n.name() + "_Y");
      const std::string rs = L.emit(tmp, "Reshape", {{"shape", {0, 0, dirs, hidden}}}, {name});
      const std::string tr = L.emit(tmp, "Transpose", {{"perm", {0, 2, 1, 3}}}, {rs});
      L.set_output(n, 0, tr, ba >= 0 ? 2 : -1);
    }
  }
  L.set_output(n, 1, name + ":1", ba >= 0 ? 1 : -1);
  if (lstm) L.set_output(n, 2, name + ":2", ba >= 0 ? 1 : -1);
}

}  // namespace

void add_recurrent_rules(std::map<std::string, OpRule>& r) {
  r["LSTM"] = recurrent;
  r["GRU"] = recurrent;
  r["RNN"] = recurrent;
}

}  // namespace qforge::nn::onnx_import
