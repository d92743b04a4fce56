#include <doctest/doctest.h>

#include "engine/autograd.hpp"
#include "engine/ops/op.hpp"
#include "engine/ops/ops.hpp"
#include "nn/recurrent.hpp"
#include "tests/support/gradcheck.hpp"

#include <nlohmann/json.hpp>

#include <omp.h>

#include <cmath>

using namespace qforge;
using nn::CellType;

namespace {

const CellType kAllTypes[] = {CellType::rnn_tanh, CellType::rnn_relu, CellType::lstm, CellType::gru};

std::shared_ptr<nn::RNNBase> make_layer(CellType type, const nn::RecurrentOptions& opt, uint64_t seed) {
  Generator gen(seed);
  switch (type) {
    case CellType::lstm: return std::make_shared<nn::LSTM>(opt, gen);
    case CellType::gru: return std::make_shared<nn::GRU>(opt, gen);
    case CellType::rnn_relu: return std::make_shared<nn::RNN>(opt, "relu", gen);
    default: return std::make_shared<nn::RNN>(opt, "tanh", gen);
  }
}

// All outputs of a recurrent layer flattened into one tensor (for gradcheck / comparisons).
Tensor flat_outputs(const std::vector<Tensor>& outs) {
  std::vector<Tensor> parts;
  for (const auto& o : outs) parts.push_back(o.flatten());
  return ops::concat(parts, 0);
}

// Runs `layer` (its cell hook already set) in f64 on fixed random inputs of T steps and batch B, and
// backpropagates a fixed random projection of every output. Returns the outputs, then the gradients of
// the inputs (x, h0 and for an LSTM c0), then those of the parameters in named_parameters() order.
std::vector<Tensor> run_with_grads(nn::RNNBase& layer, CellType type, const nn::RecurrentOptions& opt, int64_t T,
                                   int64_t B) {
  const int64_t LD = opt.num_layers * (opt.bidirectional ? 2 : 1);
  std::vector<Tensor> in = {opt.batch_first ? testing::rand_input({B, T, opt.input_size}, 31, -2, 2)
                                            : testing::rand_input({T, B, opt.input_size}, 31, -2, 2),
                            testing::rand_input({LD, B, opt.hidden_size}, 32)};
  if (type == CellType::lstm) in.push_back(testing::rand_input({LD, B, opt.hidden_size}, 33));
  const auto outs = layer(in);
  Generator gw(7);
  Tensor loss;
  for (const auto& o : outs) {
    const Tensor term = ops::sum(o * Tensor::rand(o.shape(), gw, -1, 1, DType::f64));
    loss = loss.defined() ? loss + term : term;
  }
  loss.backward();
  std::vector<Tensor> res;
  for (const auto& o : outs) res.push_back(o.detach());
  for (const auto& t : in) res.push_back(t.grad());
  for (const auto& [name, p] : layer.named_parameters()) res.push_back(p.grad());
  return res;
}

}  // namespace

TEST_CASE("recurrent: parameter names, shapes and order are PyTorch's") {
  nn::RecurrentOptions opt{.input_size = 5, .hidden_size = 3, .num_layers = 2, .bidirectional = true};
  auto lstm = make_layer(CellType::lstm, opt, 1);
  const auto sd = lstm->state_dict();
  const std::vector<std::string> want = {
      "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
      "weight_ih_l0_reverse", "weight_hh_l0_reverse", "bias_ih_l0_reverse", "bias_hh_l0_reverse",
      "weight_ih_l1", "weight_hh_l1", "bias_ih_l1", "bias_hh_l1",
      "weight_ih_l1_reverse", "weight_hh_l1_reverse", "bias_ih_l1_reverse", "bias_hh_l1_reverse"};
  REQUIRE(sd.size() == want.size());
  for (size_t i = 0; i < want.size(); ++i) CHECK(sd[i].first == want[i]);
  CHECK(lstm->raw_param("weight_ih_l0").shape() == Shape{12, 5});
  CHECK(lstm->raw_param("weight_ih_l1").shape() == Shape{12, 6});  // H * 2 directions
  CHECK(lstm->raw_param("weight_hh_l1_reverse").shape() == Shape{12, 3});
  auto gru = make_layer(CellType::gru, {.input_size = 4, .hidden_size = 7, .bias = false}, 2);
  CHECK(gru->state_dict().size() == 2);
  CHECK(gru->raw_param("weight_hh_l0").shape() == Shape{21, 7});
  CHECK(lstm->to_string().find("LSTM(5, 3, num_layers=2, bidirectional=True)") != std::string::npos);
}

TEST_CASE("recurrent: initialisation is U(-1/sqrt(H), 1/sqrt(H)) and determined by the seed") {
  auto a = make_layer(CellType::lstm, {.input_size = 8, .hidden_size = 16}, 5);
  auto b = make_layer(CellType::lstm, {.input_size = 8, .hidden_size = 16}, 5);
  auto c = make_layer(CellType::lstm, {.input_size = 8, .hidden_size = 16}, 6);
  const double k = 0.25;
  for (const auto& [name, t] : a->named_parameters()) {
    const auto v = t.to_vector<float>();
    double lo = 1, hi = -1, mean = 0;
    for (float x : v) {
      lo = std::min<double>(lo, x);
      hi = std::max<double>(hi, x);
      mean += x;
    }
    mean /= double(v.size());
    CHECK(lo >= -k);
    CHECK(hi <= k);
    if (v.size() > 200) {
      CHECK(hi - lo > 1.8 * k);          // spans the range
      CHECK(std::abs(mean) < 0.1 * k);   // centred
    }
    CHECK(v == b->raw_param(name).to_vector<float>());
    CHECK(v != c->raw_param(name).to_vector<float>());
  }
}

TEST_CASE("recurrent_sequence: fused op equals the per-step composition in forward and backward") {
  const int64_t T = 5, B = 3, H = 4;
  for (CellType type : kAllTypes) {
    for (bool reverse : {false, true}) {
      for (bool bias : {true, false}) {
        CAPTURE(nn::cell_type_name(type));
        CAPTURE(reverse);
        CAPTURE(bias);
        const int64_t GH = nn::gate_count(type) * H;
        const bool lstm = type == CellType::lstm;
        auto make_inputs = [&]() {
          std::vector<Tensor> in = {testing::rand_input({T, B, GH}, 1), testing::rand_input({GH, H}, 2, -0.7, 0.7),
                                    bias ? testing::rand_input({GH}, 3) : Tensor(), testing::rand_input({B, H}, 4),
                                    lstm ? testing::rand_input({B, H}, 5) : Tensor()};
          return in;
        };
        Generator gw(9);
        const Tensor wy = Tensor::rand({T, B, H}, gw, -1, 1, DType::f64);
        const Tensor wc = Tensor::rand({B, H}, gw, -1, 1, DType::f64);
        // Fused.
        auto fin = make_inputs();
        const Tensor y = nn::recurrent_sequence(type, fin[0], fin[1], fin[2], fin[3], fin[4], reverse);
        Tensor loss_f = ops::sum(y.narrow(0, 0, T) * wy);
        if (lstm) loss_f = loss_f + ops::sum(y.select(0, T) * wc);
        loss_f.backward();
        // Composition.
        auto cin = make_inputs();
        nn::CellState st{cin[3], cin[4]};
        std::vector<Tensor> hs(T);
        for (int64_t s = 0; s < T; ++s) {
          const int64_t t = reverse ? T - 1 - s : s;
          st = nn::cell_step_projected(type, cin[0].select(0, t), st, cin[1], cin[2]);
          hs[t] = st.h;
        }
        const Tensor yc = ops::stack(hs, 0);
        Tensor loss_c = ops::sum(yc * wy);
        if (lstm) loss_c = loss_c + ops::sum(st.c * wc);
        loss_c.backward();
        CHECK(testing::max_abs_diff(y.narrow(0, 0, T), yc) < 1e-12);
        if (lstm) CHECK(testing::max_abs_diff(y.select(0, T), st.c) < 1e-12);
        for (size_t i = 0; i < fin.size(); ++i) {
          if (!fin[i].defined()) continue;
          CAPTURE(i);
          REQUIRE(fin[i].grad().defined());
          CHECK(testing::max_abs_diff(fin[i].grad(), cin[i].grad()) < 1e-12);
        }
      }
    }
  }
}

TEST_CASE("recurrent_sequence: f32 matches f64 and the op saves nothing without grad") {
  const Tensor xp = testing::rand_input({6, 2, 12}, 1, -1, 1, false);
  const Tensor w = testing::rand_input({12, 3}, 2, -1, 1, false);
  const Tensor h0 = testing::rand_input({2, 3}, 3, -1, 1, false);
  const Tensor y64 = nn::recurrent_sequence(CellType::lstm, xp, w, Tensor(), h0, h0, false);
  const Tensor y32 = nn::recurrent_sequence(CellType::lstm, xp.to(DType::f32), w.to(DType::f32), Tensor(),
                                            h0.to(DType::f32), h0.to(DType::f32), false);
  CHECK(y32.dtype() == DType::f32);
  CHECK(testing::max_abs_diff(y32.to(DType::f64), y64) < 1e-6);
  CHECK_FALSE(y64.requires_grad());
  CHECK_THROWS_AS(nn::recurrent_sequence(CellType::lstm, xp, w, Tensor(), h0, Tensor(), false), Error);
  CHECK_THROWS_AS(nn::recurrent_sequence(CellType::gru, xp, w, Tensor(), h0, Tensor(), false), Error);
}

TEST_CASE("recurrent layers: backward matches finite differences (f64), incl. bidirectional 2-layer") {
  struct Config {
    CellType type;
    nn::RecurrentOptions opt;
    bool initial_states;
  };
  const std::vector<Config> configs = {
      {CellType::rnn_tanh, {.input_size = 3, .hidden_size = 4}, false},
      {CellType::rnn_relu, {.input_size = 3, .hidden_size = 4, .batch_first = true}, true},
      {CellType::lstm, {.input_size = 3, .hidden_size = 4}, true},
      {CellType::gru, {.input_size = 3, .hidden_size = 4, .batch_first = true}, false},
      {CellType::lstm, {.input_size = 3, .hidden_size = 2, .num_layers = 2, .batch_first = true, .bidirectional = true}, true},
      {CellType::gru, {.input_size = 3, .hidden_size = 2, .num_layers = 2, .bidirectional = true}, true},
      {CellType::rnn_tanh, {.input_size = 2, .hidden_size = 3, .num_layers = 2, .bias = false, .bidirectional = true}, true},
  };
  for (const auto& cfg : configs) {
    CAPTURE(nn::cell_type_name(cfg.type));
    CAPTURE(cfg.opt.num_layers);
    CAPTURE(cfg.opt.bidirectional);
    auto layer = make_layer(cfg.type, cfg.opt, 11);
    layer->to(DType::f64);
    const int64_t T = 4, B = 2, D = cfg.opt.bidirectional ? 2 : 1;
    const bool lstm = cfg.type == CellType::lstm;
    std::vector<Tensor> inputs = {cfg.opt.batch_first ? testing::rand_input({B, T, cfg.opt.input_size}, 21)
                                                      : testing::rand_input({T, B, cfg.opt.input_size}, 21)};
    const int64_t n_state = cfg.initial_states ? (lstm ? 2 : 1) : 0;
    for (int64_t i = 0; i < n_state; ++i)
      inputs.push_back(testing::rand_input({cfg.opt.num_layers * D, B, cfg.opt.hidden_size}, 22 + uint64_t(i)));
    std::vector<std::string> names;
    for (const auto& [name, p] : layer->named_parameters()) {
      names.push_back(name);
      inputs.push_back(p);
    }
    const size_t n_data = size_t(1 + n_state);
    auto f = [&](const std::vector<Tensor>& in) {
      for (size_t i = 0; i < names.size(); ++i) layer->set_param(names[i], in[n_data + i]);
      return flat_outputs((*layer)(std::vector<Tensor>(in.begin(), in.begin() + long(n_data))));
    };
    CHECK_GRADCHECK(f, inputs);
  }
}

TEST_CASE("recurrent layers: outputs, final states and initial states are wired like PyTorch") {
  // Bidirectional: output[t] = [forward h_t | reverse h_t]; h_n = [fwd last (t=T-1), rev last (t=0)].
  auto lstm = make_layer(CellType::lstm, {.input_size = 3, .hidden_size = 2, .num_layers = 2, .batch_first = true,
                                          .bidirectional = true}, 3);
  const Tensor x = testing::rand_input({2, 5, 3}, 1, -1, 1, false).to(DType::f32);
  const auto out = (*lstm)(std::vector<Tensor>{x});
  REQUIRE(out.size() == 3);
  CHECK(out[0].shape() == Shape{2, 5, 4});
  CHECK(out[1].shape() == Shape{4, 2, 2});
  CHECK(out[2].shape() == Shape{4, 2, 2});
  // Top layer (index 2: forward, 3: reverse) final hidden states appear in the output sequence.
  CHECK(testing::max_abs_diff(out[1].select(0, 2), out[0].select(1, 4).narrow(1, 0, 2)) == 0);
  CHECK(testing::max_abs_diff(out[1].select(0, 3), out[0].select(1, 0).narrow(1, 2, 2)) == 0);
  // Explicit zero initial states equal the default.
  const Tensor z = Tensor::zeros({4, 2, 2});
  const auto out2 = (*lstm)(std::vector<Tensor>{x, z, z});
  CHECK(testing::max_abs_diff(out2[0], out[0]) == 0);
  // Non-zero initial states change the result, and wrong shapes are rejected naming the layer.
  const auto out3 = (*lstm)(std::vector<Tensor>{x, Tensor::ones({4, 2, 2}), z});
  CHECK(testing::max_abs_diff(out3[0], out[0]) > 1e-3);
  try {
    (*lstm)(std::vector<Tensor>{x, Tensor::ones({2, 2, 2})});
    FAIL("no throw");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("LSTM") != std::string::npos);
    CHECK(std::string(e.what()).find("h0") != std::string::npos);
  }
  CHECK_THROWS_AS((*lstm)(Tensor::ones({2, 5, 4})), Error);  // wrong feature count
}

TEST_CASE("recurrent layers: the cell hook sees every in-loop site and can change the recurrence") {
  for (CellType type : kAllTypes) {
    CAPTURE(nn::cell_type_name(type));
    auto layer = make_layer(type, {.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}, 4);
    const Tensor x = testing::rand_input({5, 2, 3}, 1, -1, 1, false).to(DType::f32);
    const auto base = (*layer)(std::vector<Tensor>{x});
    int counts[6] = {};
    nn::CellHook hook;
    hook.sites = ~0u;
    hook.fn = [&](int64_t, bool, nn::CellSite s, const Tensor& t) {
      ++counts[int(s)];
      return t;
    };
    layer->set_cell_hook(hook);
    const auto same = (*layer)(std::vector<Tensor>{x});
    CHECK(testing::max_abs_diff(same[0], base[0]) < 1e-6);  // step path == fused path
    const int LD = 4, T = 5;
    CHECK(counts[int(nn::CellSite::input)] == LD);
    CHECK(counts[int(nn::CellSite::weight_ih)] == LD);
    CHECK(counts[int(nn::CellSite::weight_hh)] == LD);
    CHECK(counts[int(nn::CellSite::hidden)] == LD * T);
    CHECK(counts[int(nn::CellSite::gates)] == LD * T * (type == CellType::gru ? 2 : 1));
    CHECK(counts[int(nn::CellSite::cell)] == (type == CellType::lstm ? LD * T : 0));
    // A transform of the hidden state (here: rounding to a grid, like a quantizer) changes the result.
    hook.sites = nn::CellHook::bit(nn::CellSite::hidden);
    hook.fn = [](int64_t, bool, nn::CellSite, const Tensor& t) { return t * 0.5; };
    layer->set_cell_hook(hook);
    const auto changed = (*layer)(std::vector<Tensor>{x});
    CHECK(testing::max_abs_diff(changed[0], base[0]) > 1e-3);
    layer->clear_cell_hook();
    CHECK(testing::max_abs_diff((*layer)(std::vector<Tensor>{x})[0], base[0]) == 0);
  }
}

TEST_CASE("recurrent cells: a single step can be used on its own (cell_step)") {
  Generator gen(3);
  nn::LSTM lstm({.input_size = 3, .hidden_size = 2}, gen);
  const Tensor x = testing::rand_input({1, 4, 3}, 1, -1, 1, false).to(DType::f32);  // T=1
  const auto out = lstm(std::vector<Tensor>{x});
  const nn::CellState st = nn::cell_step(CellType::lstm, x.select(0, 0), {Tensor::zeros({4, 2}), Tensor::zeros({4, 2})},
                                         lstm.cell_weights(0, false));
  CHECK(testing::max_abs_diff(st.h, out[1].select(0, 0)) < 1e-6);
  CHECK(testing::max_abs_diff(st.c, out[2].select(0, 0)) < 1e-6);
  CHECK_THROWS_AS(nn::cell_step(CellType::lstm, x.select(0, 0), {Tensor::zeros({4, 2}), Tensor()},
                                lstm.cell_weights(0, false)),
                  Error);
}

TEST_CASE("make_recurrent: builds from spec arguments and rejects bad ones naming them") {
  Generator gen(1);
  auto m = nn::make_recurrent("LSTM", {{"input_size", 28}, {"hidden_size", 8}, {"batch_first", true}}, gen);
  CHECK(m->type_name() == "LSTM");
  CHECK(m->spec_args()["batch_first"] == true);
  CHECK(m->spec_args()["hidden_size"] == 8);
  auto r = nn::make_recurrent("RNN", {{"input_size", 2}, {"hidden_size", 3}, {"nonlinearity", "relu"}}, gen);
  CHECK(std::dynamic_pointer_cast<nn::RNNBase>(r)->cell_type() == CellType::rnn_relu);
  auto again = nn::make_recurrent("RNN", r->spec_args(), gen);  // spec_args round-trip
  CHECK(again->spec_args() == r->spec_args());
  auto msg = [&](const std::string& type, const nlohmann::json& args) -> std::string {
    try {
      nn::make_recurrent(type, args, gen);
    } catch (const InputError& e) {
      return e.what();
    }
    return "";
  };
  CHECK(msg("LSTM", {{"hidden_size", 3}}).find("input_size") != std::string::npos);
  CHECK(msg("GRU", {{"input_size", 2}, {"hidden_size", -3}}).find("hidden_size") != std::string::npos);
  CHECK(msg("GRU", {{"input_size", 2}, {"hidden_size", 3}, {"nonlinearity", "relu"}}).find("nonlinearity") !=
        std::string::npos);
  CHECK(msg("RNN", {{"input_size", 2}, {"hidden_size", 3}, {"nonlinearity", "gelu"}}).find("gelu") !=
        std::string::npos);
  CHECK(msg("LSTM", {{"input_size", 2}, {"hidden_size", 3}, {"bidirectional", 1}}).find("bidirectional") !=
        std::string::npos);
  CHECK(msg("LSTM", {{"input_size", 2}, {"hidden_size", 3}, {"proj_size", 1}}).find("proj_size") !=
        std::string::npos);
  CHECK(msg("LSTM", {{"input_size", 2}, {"hidden_size", 3}, {"dropout", 0.5}}).find("dropout") != std::string::npos);
  CHECK(!msg("Conv", nlohmann::json::object()).empty());
}

TEST_CASE("recurrent_sequence: the batch-split threaded path equals the composition (large batch)") {
  // Large enough that the op splits the batch over threads (Note [Recurrent batch split]).
  const int prev_threads = omp_get_max_threads();
  omp_set_num_threads(2);
  const int64_t T = 8, B = 32, H = 96;  // work T*B*G*H*H well above the threading threshold
  for (CellType type : {CellType::lstm, CellType::gru}) {
    for (bool reverse : {false, true}) {
      CAPTURE(nn::cell_type_name(type));
      CAPTURE(reverse);
      const int64_t GH = nn::gate_count(type) * H;
      const bool lstm = type == CellType::lstm;
      auto make_inputs = [&]() {
        return std::vector<Tensor>{testing::rand_input({T, B, GH}, 1), testing::rand_input({GH, H}, 2, -0.2, 0.2),
                                   testing::rand_input({GH}, 3), testing::rand_input({B, H}, 4),
                                   lstm ? testing::rand_input({B, H}, 5) : Tensor()};
      };
      Generator gw(9);
      const Tensor wy = Tensor::rand({T, B, H}, gw, -1, 1, DType::f64);
      auto fin = make_inputs();
      const Tensor y = nn::recurrent_sequence(type, fin[0], fin[1], fin[2], fin[3], fin[4], reverse);
      ops::sum(y.narrow(0, 0, T) * wy).backward();
      auto cin = make_inputs();
      nn::CellState st{cin[3], cin[4]};
      std::vector<Tensor> hs(T);
      for (int64_t s = 0; s < T; ++s) {
        const int64_t t = reverse ? T - 1 - s : s;
        st = nn::cell_step_projected(type, cin[0].select(0, t), st, cin[1], cin[2]);
        hs[t] = st.h;
      }
      ops::sum(ops::stack(hs, 0) * wy).backward();
      CHECK(testing::max_abs_diff(y.narrow(0, 0, T), ops::stack(hs, 0).detach()) < 1e-12);
      if (lstm) CHECK(testing::max_abs_diff(y.select(0, T), st.c) < 1e-12);
      for (size_t i = 0; i < fin.size(); ++i)
        if (fin[i].defined()) CHECK(testing::max_abs_diff(fin[i].grad(), cin[i].grad()) < 1e-10);
    }
  }
  omp_set_num_threads(prev_threads);
}

TEST_CASE("recurrent cells: RNNCell/LSTMCell/GRUCell modules pass gradcheck and equal one layer step") {
  for (const char* type : {"RNNCell", "LSTMCell", "GRUCell"}) {
    CAPTURE(type);
    Generator gen(2);
    auto cell = std::dynamic_pointer_cast<nn::RecurrentCell>(
        nn::make_recurrent(type, {{"input_size", 3}, {"hidden_size", 4}}, gen));
    REQUIRE(cell);
    CHECK(cell->type_name() == type);
    CHECK(cell->state_dict()[0].first == "weight_ih");
    cell->to(DType::f64);
    const bool lstm = cell->cell_type() == CellType::lstm;
    std::vector<Tensor> inputs = {testing::rand_input({2, 3}, 1), testing::rand_input({2, 4}, 2)};
    if (lstm) inputs.push_back(testing::rand_input({2, 4}, 3));
    std::vector<std::string> names;
    for (const auto& [name, p] : cell->named_parameters()) {
      names.push_back(name);
      inputs.push_back(p);
    }
    const size_t n_data = lstm ? 3 : 2;
    auto f = [&](const std::vector<Tensor>& in) {
      for (size_t i = 0; i < names.size(); ++i) cell->set_param(names[i], in[n_data + i]);
      return flat_outputs((*cell)(std::vector<Tensor>(in.begin(), in.begin() + long(n_data))));
    };
    CHECK_GRADCHECK(f, inputs);
    // The cell hook sees the in-loop sites.
    int hidden_calls = 0;
    cell->set_cell_hook({[&](int64_t, bool, nn::CellSite, const Tensor& t) {
                           ++hidden_calls;
                           return t;
                         },
                         nn::CellHook::bit(nn::CellSite::hidden), {}});
    (*cell)(std::vector<Tensor>{inputs[0]});
    CHECK(hidden_calls == 1);
  }
}

namespace {

// The quantizer op's arithmetic (quant/qdq_kernels.hpp qdq_forward / qdq_backward_ste, Tie::half_up)
// written out as an independent reference op for the step path (tests/nn cannot link quant;
// tests/quant/test_quantsim.cpp compares against the real quantizer).
double ref_round(double x, const nn::HiddenFakeQuant& q) {
  double v = x * double(q.inv_scale);
  v = std::min(std::max(v, double(q.lo) - 1), double(q.hi) + 1);
  const double r = std::nearbyint(v);
  return r + double(v - r == 0.5);
}
struct RefHiddenQdq : ops::OpBase {
  static constexpr const char* kName = "ref_hidden_qdq";
  nn::HiddenFakeQuant q;
  ops::SavedTensor x_saved;
  Tensor forward(const Tensor& xin) {
    const Tensor x = xin.contiguous();
    if (recording) x_saved = x;
    std::vector<double> v = x.to_vector<double>();
    for (double& e : v) e = std::min(std::max(ref_round(e, q), double(q.lo)), double(q.hi)) * double(q.scale);
    return Tensor::from_vector(v, x.shape());
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& x = x_saved.get(kName);
    std::vector<double> m = x.to_vector<double>();
    for (double& e : m) {
      const double r = ref_round(e, q);
      e = double(r >= double(q.lo) && r <= double(q.hi));
    }
    return {Tensor::from_vector(m, x.shape()) * g};
  }
};

}  // namespace

// Note [Projection rounding]: the fused op and the step path run the same recurrent arithmetic, but the input
// projection x·W_ih^T + b_ih is one [T·B, F] GEMM in the fused path and T [B, F] GEMMs in the step path.
// BLAS does not promise the same per-element summation order for different M: OpenBLAS's Haswell/Zen dgemm
// kernels give these shapes 1-ulp differences (5.6e-17 on values below 1) where the kernel chosen on the
// AVX-512 development machine happened to agree (OPENBLAS_CORETYPE=Zen reproduces). The outputs (|h| < 1) are
// therefore compared to 64 ulps at 1.0; a flipped rounding of the hidden quantizer would differ by a whole
// grid step (>= 1.5e-3) and still fail.
constexpr double kProjectionTolerance = 64 * 2.220446049250313e-16;

TEST_CASE("recurrent layers: hidden fake-quant inside the fused op equals the step path (f64, all cells)") {
  struct Config {
    CellType type;
    nn::RecurrentOptions opt;
    int64_t batch = 3;  // 32 with H = 96: the op splits the batch over threads (Note [Recurrent batch split])
  };
  const std::vector<Config> configs = {
      {CellType::rnn_tanh, {.input_size = 3, .hidden_size = 5}},
      {CellType::rnn_relu, {.input_size = 3, .hidden_size = 5, .batch_first = true, .bidirectional = true}},
      {CellType::lstm, {.input_size = 3, .hidden_size = 5}},
      {CellType::lstm, {.input_size = 3, .hidden_size = 4, .num_layers = 2, .batch_first = true, .bidirectional = true}},
      {CellType::gru, {.input_size = 3, .hidden_size = 5, .batch_first = true}},
      {CellType::gru, {.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}},
      {CellType::rnn_tanh, {.input_size = 2, .hidden_size = 3, .num_layers = 2, .bias = false, .bidirectional = true}},
      {CellType::lstm, {.input_size = 3, .hidden_size = 96, .bidirectional = true}, 32},
      {CellType::gru, {.input_size = 3, .hidden_size = 96}, 32},
  };
  const int prev_threads = omp_get_max_threads();
  omp_set_num_threads(2);
  // Layer 0: asymmetric 8-bit grid clipping at about [-0.19, 0.21] (so the STE mask matters); layer 1:
  // a 3-bit symmetric grid.
  auto grid = [](int64_t layer, bool) {
    nn::HiddenFakeQuant q;
    q.scale = layer == 0 ? 0.00157f : 0.03125f;
    q.inv_scale = 1.0f / q.scale;
    q.lo = layer == 0 ? -120.0f : -4.0f;
    q.hi = layer == 0 ? 135.0f : 3.0f;
    return q;
  };
  for (const auto& cfg : configs) {
    const std::string type_name = nn::cell_type_name(cfg.type);
    CAPTURE(type_name);
    CAPTURE(cfg.opt.num_layers);
    CAPTURE(cfg.opt.bidirectional);
    const int64_t T = 6, B = cfg.batch, D = cfg.opt.bidirectional ? 2 : 1;
    const bool lstm = cfg.type == CellType::lstm;
    auto run = [&](bool fused, int& hidden_calls, double& clipped) {
      auto layer = make_layer(cfg.type, cfg.opt, 13);
      layer->to(DType::f64);
      nn::CellHook hook;
      hook.sites = nn::CellHook::bit(nn::CellSite::hidden);
      hook.fn = [&](int64_t l, bool r, nn::CellSite, const Tensor& t) {
        ++hidden_calls;
        RefHiddenQdq op;
        op.q = grid(l, r);
        return ops::apply(std::move(op), t);
      };
      if (fused)
        hook.fused_hidden = [&](int64_t l, bool r, const Shape&, nn::HiddenFakeQuant& out) {
          out = grid(l, r);
          return true;
        };
      layer->set_cell_hook(hook);
      const auto res = run_with_grads(*layer, cfg.type, cfg.opt, T, B);
      // fraction of output values at a clipping bound of layer L-1's grid (the STE mask is exercised)
      const auto q = grid(cfg.opt.num_layers - 1, false);
      const auto v = res[0].to_vector<double>();
      clipped = 0;
      for (double e : v)
        clipped += double(std::abs(e - double(q.lo) * double(q.scale)) < 1e-12 ||
                          std::abs(e - double(q.hi) * double(q.scale)) < 1e-12);
      clipped /= double(v.size());
      return res;
    };
    int fused_calls = 0, step_calls = 0;
    double clip_f = 0, clip_s = 0;
    const auto a = run(true, fused_calls, clip_f);
    const auto b = run(false, step_calls, clip_s);
    CHECK(fused_calls == 0);
    CHECK(step_calls == T * D * cfg.opt.num_layers);
    CHECK(clip_f > 0.0);
    CHECK(clip_f == clip_s);
    REQUIRE(a.size() == b.size());
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(i);
      REQUIRE(a[i].defined());
      REQUIRE(b[i].defined());
      // outputs: equal up to the projection's rounding (Note [Projection rounding]); gradients: summation order
      if (i < (lstm ? 3u : 2u)) CHECK(testing::max_abs_diff(a[i], b[i]) <= kProjectionTolerance);
      else CHECK(testing::max_abs_diff(a[i], b[i]) < 1e-12);
    }
  }
  omp_set_num_threads(prev_threads);
}

namespace {

// The step path's reference for a learnable hidden quantizer (nn/recurrent_cells.hpp Note [Fused range
// learning]): RefHiddenQdq's forward and STE mask, plus range-parameter gradients from the two sums
// S = sum g (in ? r - x*inv : clamp(r)), O = sum g (1 - in) through the linear map in q.range, per step.
struct RefLearnHiddenQdq : ops::OpBase {
  static constexpr const char* kName = "ref_learn_hidden_qdq";
  nn::HiddenFakeQuant q;
  Shape p0_shape, p1_shape;
  ops::SavedTensor x_saved;
  Tensor forward(const Tensor& xin, const Tensor& p0, const Tensor& p1) {
    p0_shape = p0.shape();
    p1_shape = p1.shape();
    RefHiddenQdq ref;
    ref.q = q;
    if (recording) x_saved = xin.contiguous();
    return ref.forward(xin);
  }
  std::vector<Tensor> backward(const Tensor& g) {
    const Tensor& x = x_saved.get(kName);
    std::vector<double> xv = x.to_vector<double>(), gv = g.contiguous().to_vector<double>(), dx(xv.size());
    double S = 0, O = 0;
    for (size_t i = 0; i < xv.size(); ++i) {
      const double xs = xv[i] * double(q.inv_scale), r = ref_round(xv[i], q);
      const bool in = r >= double(q.lo) && r <= double(q.hi);
      dx[i] = in ? gv[i] : 0.0;
      S += gv[i] * (in ? r - xs : std::min(std::max(r, double(q.lo)), double(q.hi)));
      O += in ? 0.0 : gv[i];
    }
    const auto& m = q.range;
    return {Tensor::from_vector(dx, x.shape()),
            needs_grad(1) ? Tensor::from_vector(std::vector<double>{m.s0 * S + m.o0 * O}, p0_shape) : Tensor(),
            needs_grad(2) ? Tensor::from_vector(std::vector<double>{m.s1 * S + m.o1 * O}, p1_shape) : Tensor()};
  }
};

}  // namespace

TEST_CASE("recurrent layers: learnable-range hidden fake-quant inside the fused op equals the step path, range "
          "gradients included (f64)") {
  struct Config {
    CellType type;
    nn::RecurrentOptions opt;
    int64_t batch = 3;
  };
  const std::vector<Config> configs = {
      {CellType::lstm, {.input_size = 3, .hidden_size = 5}},
      {CellType::lstm, {.input_size = 3, .hidden_size = 4, .num_layers = 2, .batch_first = true, .bidirectional = true}},
      {CellType::gru, {.input_size = 3, .hidden_size = 5, .batch_first = true}},
      {CellType::gru, {.input_size = 3, .hidden_size = 4, .num_layers = 2, .bidirectional = true}},
      {CellType::rnn_tanh, {.input_size = 2, .hidden_size = 3, .num_layers = 2, .bidirectional = true}},
      {CellType::lstm, {.input_size = 3, .hidden_size = 96, .bidirectional = true}, 32},  // batch split
      {CellType::gru, {.input_size = 3, .hidden_size = 96}, 32},
  };
  const int prev_threads = omp_get_max_threads();
  omp_set_num_threads(2);
  // Two rule shapes: LSQ's (dscale = S*g, dzp = -scale*O*g) and AIMET's (both sums in both parameters).
  for (const bool aimet_like : {false, true}) {
    CAPTURE(aimet_like);
    auto grid = [&](int64_t layer) {
      nn::HiddenFakeQuant q;
      q.scale = layer == 0 ? 0.00157f : 0.03125f;
      q.inv_scale = 1.0f / q.scale;
      q.lo = layer == 0 ? -120.0f : -4.0f;
      q.hi = layer == 0 ? 135.0f : 3.0f;
      if (aimet_like) q.range = {Tensor(), Tensor(), -1.0 / 255, 0.37 + 0.1 * double(layer), 1.0 / 255, -0.21};
      else q.range = {Tensor(), Tensor(), 0.05 + 0.01 * double(layer), 0.0, 0.0, -0.05 * double(q.scale)};
      return q;
    };
    for (const auto& cfg : configs) {
      const std::string type_name = nn::cell_type_name(cfg.type);
      CAPTURE(type_name);
      CAPTURE(cfg.opt.num_layers);
      CAPTURE(cfg.opt.bidirectional);
      const int64_t T = 6, B = cfg.batch, D = cfg.opt.bidirectional ? 2 : 1, L = cfg.opt.num_layers;
      const bool lstm = cfg.type == CellType::lstm;
      auto run = [&](bool fused, int& hidden_calls) {
        auto layer = make_layer(cfg.type, cfg.opt, 13);
        layer->to(DType::f64);
        // one (p0, p1) pair per layer, shared by both directions (as QuantSim's hidden_l{k})
        std::vector<Tensor> p0s, p1s;
        for (int64_t l = 0; l < L; ++l) {
          p0s.push_back(Tensor::from_vector(std::vector<double>{0.5}, {1}).set_requires_grad(true));
          p1s.push_back(Tensor::from_vector(std::vector<double>{0.25}, {1}).set_requires_grad(true));
        }
        nn::CellHook hook;
        hook.sites = nn::CellHook::bit(nn::CellSite::hidden);
        hook.fn = [&](int64_t l, bool, nn::CellSite, const Tensor& t) {
          ++hidden_calls;
          RefLearnHiddenQdq op;
          op.q = grid(l);
          return ops::apply(std::move(op), t, p0s[size_t(l)], p1s[size_t(l)]);
        };
        if (fused)
          hook.fused_hidden = [&](int64_t l, bool, const Shape& step_shape, nn::HiddenFakeQuant& out) {
            CHECK(step_shape == Shape{B, cfg.opt.hidden_size});
            out = grid(l);
            out.range.p0 = p0s[size_t(l)];
            out.range.p1 = p1s[size_t(l)];
            return true;
          };
        layer->set_cell_hook(hook);
        auto res = run_with_grads(*layer, cfg.type, cfg.opt, T, B);
        for (int64_t l = 0; l < L; ++l) {
          res.push_back(p0s[size_t(l)].grad());
          res.push_back(p1s[size_t(l)].grad());
        }
        return res;
      };
      int fused_calls = 0, step_calls = 0;
      const auto a = run(true, fused_calls);
      const auto b = run(false, step_calls);
      CHECK(fused_calls == 0);
      CHECK(step_calls == T * D * L);
      REQUIRE(a.size() == b.size());
      const size_t n_out = lstm ? 3u : 2u, n_range = size_t(2 * L);
      for (size_t i = 0; i < a.size(); ++i) {
        CAPTURE(i);
        REQUIRE(a[i].defined());
        REQUIRE(b[i].defined());
        if (i < n_out) {
          CHECK(testing::max_abs_diff(a[i], b[i]) <= kProjectionTolerance);  // Note [Projection rounding]
        } else if (i + n_range < a.size()) {
          CHECK(testing::max_abs_diff(a[i], b[i]) < 1e-12);  // input and weight gradients
        } else {  // range-parameter gradients: non-zero, equal up to the summation order
          const double va = a[i].item(), vb = b[i].item();
          CHECK(std::abs(vb) > 1e-6);
          CHECK(std::abs(va - vb) <= 1e-12 * (1.0 + std::abs(vb)));
        }
      }
    }
  }
  omp_set_num_threads(prev_threads);
}

TEST_CASE("recurrent_sequence: a learnable hidden range parameter must have one element; its gradient keeps its shape") {
  Generator gen(3);
  const Tensor xp = Tensor::randn({2, 1, 4}, gen), w = Tensor::randn({4, 4}, gen), h0 = Tensor::zeros({1, 4});
  nn::HiddenFakeQuant q;
  q.scale = 0.1f;
  q.inv_scale = 1.0f / q.scale;
  q.lo = -128;
  q.hi = 127;
  q.range.p0 = Tensor::from_vector(std::vector<float>{0.1f, 0.2f}, {2}).set_requires_grad(true);  // not one element
  CHECK_THROWS_AS(nn::recurrent_sequence(CellType::rnn_tanh, xp, w, Tensor(), h0, Tensor(), false, &q), Error);
  q.range.p0 = Tensor::from_vector(std::vector<float>{0.1f}, {1}).set_requires_grad(true);
  const Tensor y = nn::recurrent_sequence(CellType::rnn_tanh, xp, w, Tensor(), h0, Tensor(), false, &q);
  ops::sum(y).backward();
  CHECK(q.range.p0.grad().defined());
  CHECK(q.range.p0.grad().shape() == Shape{1});
}
