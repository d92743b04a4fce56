// Recurrent layers (see recurrent.hpp).
#include "nn/recurrent.hpp"

#include "engine/ops/ops.hpp"
#include "nn/init.hpp"

#include <nlohmann/json.hpp>

#include <cmath>

namespace qforge::nn {

namespace {

const char* module_name(CellType t) {
  switch (t) {
    case CellType::lstm: return "LSTM";
    case CellType::gru: return "GRU";
    default: return "RNN";
  }
}

}  // namespace

std::string RNNBase::param_suffix(int64_t layer, bool reverse) {
  return fmt::format("_l{}{}", layer, reverse ? "_reverse" : "");
}

RNNBase::RNNBase(CellType type, const RecurrentOptions& opt, Generator& gen)
    : Module(module_name(type)), type_(type), opt_(opt) {
  const char* name = module_name(type);
  if (opt.input_size <= 0 || opt.hidden_size <= 0 || opt.num_layers <= 0)
    throw InputError(fmt::format("{}: input_size, hidden_size and num_layers must be positive, got {}, {}, {}", name,
                                 opt.input_size, opt.hidden_size, opt.num_layers));
  const int64_t H = opt.hidden_size, GH = gate_count(type) * H;
  const double k = 1.0 / std::sqrt(double(H));
  for (int64_t l = 0; l < opt.num_layers; ++l) {
    const int64_t in = l == 0 ? opt.input_size : H * num_directions();
    for (int64_t d = 0; d < num_directions(); ++d) {
      const std::string sfx = param_suffix(l, d == 1);
      Tensor w_ih = Tensor::empty({GH, in}), w_hh = Tensor::empty({GH, H});
      init::uniform_(w_ih, -k, k, gen);
      init::uniform_(w_hh, -k, k, gen);
      register_parameter("weight_ih" + sfx, w_ih);
      register_parameter("weight_hh" + sfx, w_hh);
      if (opt.bias) {
        Tensor b_ih = Tensor::empty({GH}), b_hh = Tensor::empty({GH});
        init::uniform_(b_ih, -k, k, gen);
        init::uniform_(b_hh, -k, k, gen);
        register_parameter("bias_ih" + sfx, b_ih);
        register_parameter("bias_hh" + sfx, b_hh);
      }
    }
  }
}

RNN::RNN(const RecurrentOptions& opt, const std::string& nonlinearity, Generator& gen)
    : RNNBase(nonlinearity == "relu" ? CellType::rnn_relu : CellType::rnn_tanh, opt, gen) {
  if (nonlinearity != "tanh" && nonlinearity != "relu")
    throw InputError(fmt::format("RNN: nonlinearity must be \"tanh\" or \"relu\", got \"{}\"", nonlinearity));
}

CellWeights RNNBase::cell_weights(int64_t layer, bool reverse) {
  const std::string sfx = param_suffix(layer, reverse);
  CellWeights w;
  w.w_ih = param("weight_ih" + sfx);
  w.w_hh = param("weight_hh" + sfx);
  w.b_ih = maybe_param("bias_ih" + sfx);
  w.b_hh = maybe_param("bias_hh" + sfx);
  return w;
}

std::vector<Tensor> RNNBase::forward(const std::vector<Tensor>& inputs) {
  const char* name = module_name(type_);
  const bool lstm = type_ == CellType::lstm;
  const int64_t L = opt_.num_layers, D = num_directions(), H = opt_.hidden_size;
  QFORGE_CHECK(!inputs.empty() && inputs.size() <= (lstm ? 3u : 2u),
               "{}: expected inputs {{x{}}}, got {} tensors", name, lstm ? ", [h0, c0]" : ", [h0]", inputs.size());
  const Tensor& x = inputs[0];
  QFORGE_CHECK(x.defined() && x.dim() == 3 && x.size(2) == opt_.input_size,
               "{}: input must be [{}, {}] x {} features, got {}", name, opt_.batch_first ? "B" : "T",
               opt_.batch_first ? "T" : "B", opt_.input_size, x.defined() ? shape_str(x.shape()) : "undefined");
  const Tensor xt = opt_.batch_first ? x.transpose(0, 1) : x;  // time-major [T, B, I]
  const int64_t T = xt.size(0), B = xt.size(1);
  QFORGE_CHECK(T >= 1, "{}: empty sequence {}", name, shape_str(x.shape()));
  const Shape state_shape{L * D, B, H};
  auto initial = [&](size_t i, const char* what) {
    if (inputs.size() > i && inputs[i].defined()) {
      QFORGE_CHECK(inputs[i].shape() == state_shape, "{}: {} must be {}, got {}", name, what, shape_str(state_shape),
                   shape_str(inputs[i].shape()));
      return inputs[i];
    }
    return Tensor::zeros(state_shape, x.dtype());
  };
  const Tensor h0 = initial(1, "h0");
  const Tensor c0 = lstm ? initial(2, "c0") : Tensor();
  const bool loop_sites = hook_.wants(CellSite::gates) || hook_.wants(CellSite::cell);

  Tensor layer_in = xt;
  std::vector<Tensor> hns, cns;
  for (int64_t l = 0; l < L; ++l) {
    std::vector<Tensor> outs;
    for (int64_t d = 0; d < D; ++d) {
      const bool rev = d == 1;
      const int64_t idx = l * D + d;
      auto site = [&, l, rev](CellSite s, const Tensor& t) { return hook_.wants(s) ? hook_.fn(l, rev, s, t) : t; };
      CellWeights w = cell_weights(l, rev);
      w.w_ih = site(CellSite::weight_ih, w.w_ih);
      w.w_hh = site(CellSite::weight_hh, w.w_hh);
      const Tensor xin = site(CellSite::input, layer_in);
      CellState state{h0.select(0, idx), lstm ? c0.select(0, idx) : Tensor()};
      HiddenFakeQuant hfq;
      bool fused_hidden = false;
      if (!loop_sites && hook_.wants(CellSite::hidden))
        fused_hidden = hook_.fused_hidden && hook_.fused_hidden(l, rev, Shape{B, H}, hfq) && hfq.valid();
      const bool step_path = loop_sites || (hook_.wants(CellSite::hidden) && !fused_hidden);
      if (!step_path) {
        const Tensor xp = ops::linear(xin, w.w_ih, w.b_ih);  // all time steps in one GEMM: [T, B, G*H]
        const Tensor y = recurrent_sequence(type_, xp.contiguous(), w.w_hh, w.b_hh, state.h, state.c, rev,
                                            fused_hidden ? &hfq : nullptr);
        outs.push_back(lstm ? y.narrow(0, 0, T) : y);
        hns.push_back(y.select(0, rev ? 0 : T - 1));
        if (lstm) cns.push_back(y.select(0, T));
      } else {
        const SiteFn fn = [&](CellSite s, const Tensor& t) { return site(s, t); };
        std::vector<Tensor> hs(static_cast<size_t>(T));
        for (int64_t s = 0; s < T; ++s) {
          const int64_t t = rev ? T - 1 - s : s;
          // Note [Per-step projection]: project x_t here rather than slicing one [T, B, G*H] projection:
          // each slice's backward materialises a gradient of the whole sliced tensor, so slicing the wide
          // projection costs O(T^2 * B * G*H) in backward, slicing the narrow input O(T^2 * B * F).
          const Tensor xp_t = ops::linear(xin.select(0, t), w.w_ih, w.b_ih);
          state = cell_step_projected(type_, xp_t, state, w.w_hh, w.b_hh, fn);
          hs[size_t(t)] = state.h;
        }
        outs.push_back(ops::stack(hs, 0));
        hns.push_back(state.h);
        if (lstm) cns.push_back(state.c);
      }
    }
    layer_in = D == 2 ? ops::concat(outs, 2) : outs[0];
  }
  std::vector<Tensor> result;
  result.push_back(opt_.batch_first ? layer_in.transpose(0, 1).contiguous() : layer_in);
  result.push_back(ops::stack(hns, 0));
  if (lstm) result.push_back(ops::stack(cns, 0));
  return result;
}

std::string RNNBase::extra_repr() const {
  std::string s = fmt::format("{}, {}", opt_.input_size, opt_.hidden_size);
  if (opt_.num_layers != 1) s += fmt::format(", num_layers={}", opt_.num_layers);
  if (type_ == CellType::rnn_relu) s += ", nonlinearity=relu";
  if (!opt_.bias) s += ", bias=False";
  if (opt_.batch_first) s += ", batch_first=True";
  if (opt_.bidirectional) s += ", bidirectional=True";
  return s;
}

nlohmann::json RNNBase::spec_args() const {
  nlohmann::json j = {{"input_size", opt_.input_size},
                      {"hidden_size", opt_.hidden_size},
                      {"num_layers", opt_.num_layers},
                      {"bias", opt_.bias},
                      {"batch_first", opt_.batch_first},
                      {"bidirectional", opt_.bidirectional}};
  if (type_ == CellType::rnn_tanh || type_ == CellType::rnn_relu)
    j["nonlinearity"] = type_ == CellType::rnn_relu ? "relu" : "tanh";
  return j;
}

bool is_recurrent_type(const std::string& type) {
  return type == "RNN" || type == "LSTM" || type == "GRU" || type == "RNNCell" || type == "LSTMCell" ||
         type == "GRUCell";
}

// ---- single-step cells ----------------------------------------------------------------------------

namespace {
std::string cell_module_name(CellType t) { return std::string(module_name(t)) + "Cell"; }
}  // namespace

RecurrentCell::RecurrentCell(CellType type, int64_t input_size, int64_t hidden_size, bool bias, Generator& gen)
    : Module(cell_module_name(type)), type_(type), in_(input_size), hidden_(hidden_size), bias_(bias) {
  if (input_size <= 0 || hidden_size <= 0)
    throw InputError(fmt::format("{}: input_size and hidden_size must be positive, got {}, {}", type_name(),
                                 input_size, hidden_size));
  const int64_t GH = gate_count(type) * hidden_size;
  const double k = 1.0 / std::sqrt(double(hidden_size));
  Tensor w_ih = Tensor::empty({GH, input_size}), w_hh = Tensor::empty({GH, hidden_size});
  init::uniform_(w_ih, -k, k, gen);
  init::uniform_(w_hh, -k, k, gen);
  register_parameter("weight_ih", w_ih);
  register_parameter("weight_hh", w_hh);
  if (bias) {
    Tensor b_ih = Tensor::empty({GH}), b_hh = Tensor::empty({GH});
    init::uniform_(b_ih, -k, k, gen);
    init::uniform_(b_hh, -k, k, gen);
    register_parameter("bias_ih", b_ih);
    register_parameter("bias_hh", b_hh);
  }
}

CellWeights RecurrentCell::cell_weights() {
  return {param("weight_ih"), param("weight_hh"), maybe_param("bias_ih"), maybe_param("bias_hh")};
}

std::vector<Tensor> RecurrentCell::forward(const std::vector<Tensor>& inputs) {
  const bool lstm = type_ == CellType::lstm;
  QFORGE_CHECK(!inputs.empty() && inputs.size() <= (lstm ? 3u : 2u), "{}: expected inputs {{x{}}}, got {} tensors",
               type_name(), lstm ? ", [h, c]" : ", [h]", inputs.size());
  const Tensor& x = inputs[0];
  QFORGE_CHECK(x.defined() && x.dim() == 2 && x.size(1) == in_, "{}: input must be [B, {}], got {}", type_name(), in_,
               x.defined() ? shape_str(x.shape()) : "undefined");
  const Shape st{x.size(0), hidden_};
  auto state = [&](size_t i, const char* what) {
    if (inputs.size() > i && inputs[i].defined()) {
      QFORGE_CHECK(inputs[i].shape() == st, "{}: {} must be {}, got {}", type_name(), what, shape_str(st),
                   shape_str(inputs[i].shape()));
      return inputs[i];
    }
    return Tensor::zeros(st, x.dtype());
  };
  const CellState prev{state(1, "h"), lstm ? state(2, "c") : Tensor()};
  SiteFn fn;
  if (hook_.fn)
    fn = [this](CellSite s, const Tensor& t) { return hook_.wants(s) ? hook_.fn(0, false, s, t) : t; };
  const CellState next = cell_step(type_, x, prev, cell_weights(), fn);
  if (lstm) return {next.h, next.c};
  return {next.h};
}

std::string RecurrentCell::extra_repr() const {
  std::string s = fmt::format("{}, {}", in_, hidden_);
  if (!bias_) s += ", bias=False";
  if (type_ == CellType::rnn_relu) s += ", nonlinearity=relu";
  return s;
}

nlohmann::json RecurrentCell::spec_args() const {
  nlohmann::json j = {{"input_size", in_}, {"hidden_size", hidden_}, {"bias", bias_}};
  if (type_ == CellType::rnn_tanh || type_ == CellType::rnn_relu)
    j["nonlinearity"] = type_ == CellType::rnn_relu ? "relu" : "tanh";
  return j;
}

std::shared_ptr<Module> make_recurrent(const std::string& type, const nlohmann::json& args, Generator& gen) {
  if (!is_recurrent_type(type)) throw InputError(fmt::format("unknown recurrent layer type \"{}\"", type));
  if (!args.is_object() && !args.is_null())
    throw InputError(fmt::format("{}: arguments must be an object, got {}", type, args.dump()));
  const nlohmann::json a = args.is_null() ? nlohmann::json::object() : args;
  const bool is_cell = type.size() > 4 && type.compare(type.size() - 4, 4, "Cell") == 0;
  for (auto it = a.begin(); it != a.end(); ++it) {
    static const char* kKnown[] = {"input_size", "hidden_size", "num_layers", "bias",
                                   "batch_first", "bidirectional", "dropout", "nonlinearity"};
    bool known = false;
    for (const char* k : kKnown) known = known || it.key() == k;
    if (is_cell && (it.key() == "num_layers" || it.key() == "batch_first" || it.key() == "bidirectional" ||
                    it.key() == "dropout"))
      known = false;
    if (!known || (it.key() == "nonlinearity" && type != "RNN" && type != "RNNCell"))
      throw InputError(fmt::format("{}: unknown argument \"{}\"", type, it.key()));
  }
  auto get_int = [&](const char* key, std::optional<int64_t> dflt) -> int64_t {
    if (!a.contains(key)) {
      if (!dflt) throw InputError(fmt::format("{}: missing argument \"{}\"", type, key));
      return *dflt;
    }
    const auto& v = a[key];
    if (!v.is_number_integer() || v.get<int64_t>() <= 0)
      throw InputError(fmt::format("{}: argument \"{}\" must be a positive integer, got {}", type, key, v.dump()));
    return v.get<int64_t>();
  };
  auto get_bool = [&](const char* key, bool dflt) {
    if (!a.contains(key)) return dflt;
    if (!a[key].is_boolean())
      throw InputError(fmt::format("{}: argument \"{}\" must be true or false, got {}", type, key, a[key].dump()));
    return a[key].get<bool>();
  };
  RecurrentOptions opt;
  opt.input_size = get_int("input_size", std::nullopt);
  opt.hidden_size = get_int("hidden_size", std::nullopt);
  opt.num_layers = get_int("num_layers", 1);
  opt.bias = get_bool("bias", true);
  opt.batch_first = get_bool("batch_first", false);
  opt.bidirectional = get_bool("bidirectional", false);
  if (a.contains("dropout") && !(a["dropout"].is_number() && a["dropout"].get<double>() == 0.0))
    throw InputError(fmt::format("{}: argument \"dropout\" other than 0 is not supported, got {}", type,
                                 a["dropout"].dump()));
  if (type == "LSTM") return std::make_shared<LSTM>(opt, gen);
  if (type == "GRU") return std::make_shared<GRU>(opt, gen);
  if (type == "LSTMCell") return std::make_shared<RecurrentCell>(CellType::lstm, opt.input_size, opt.hidden_size, opt.bias, gen);
  if (type == "GRUCell") return std::make_shared<RecurrentCell>(CellType::gru, opt.input_size, opt.hidden_size, opt.bias, gen);
  std::string nl = "tanh";
  if (a.contains("nonlinearity")) {
    if (!a["nonlinearity"].is_string() || (a["nonlinearity"] != "tanh" && a["nonlinearity"] != "relu"))
      throw InputError(fmt::format("{}: argument \"nonlinearity\" must be \"tanh\" or \"relu\", got {}", type,
                                   a["nonlinearity"].dump()));
    nl = a["nonlinearity"].get<std::string>();
  }
  if (type == "RNNCell")
    return std::make_shared<RecurrentCell>(nl == "relu" ? CellType::rnn_relu : CellType::rnn_tanh, opt.input_size,
                                           opt.hidden_size, opt.bias, gen);
  return std::make_shared<RNN>(opt, nl, gen);
}

}  // namespace qforge::nn
