// One recurrent step as a composition of differentiable ops (see recurrent_cells.hpp).
#include "nn/recurrent_cells.hpp"

#include "engine/ops/ops.hpp"

namespace qforge::nn {

int64_t gate_count(CellType t) {
  switch (t) {
    case CellType::lstm: return 4;
    case CellType::gru: return 3;
    default: return 1;
  }
}

const char* cell_type_name(CellType t) {
  switch (t) {
    case CellType::rnn_tanh: return "RNN_TANH";
    case CellType::rnn_relu: return "RNN_RELU";
    case CellType::lstm: return "LSTM";
    case CellType::gru: return "GRU";
  }
  return "?";
}

const char* cell_site_name(CellSite s) {
  switch (s) {
    case CellSite::input: return "input";
    case CellSite::weight_ih: return "weight_ih";
    case CellSite::weight_hh: return "weight_hh";
    case CellSite::gates: return "gates";
    case CellSite::hidden: return "hidden";
    case CellSite::cell: return "cell";
  }
  return "?";
}

namespace {

Tensor at_site(const SiteFn& site, CellSite s, const Tensor& t) { return site ? site(s, t) : t; }

void check_step_shapes(CellType type, const Tensor& x_proj, const CellState& prev, const Tensor& w_hh) {
  const int64_t g = gate_count(type);
  QFORGE_CHECK(w_hh.dim() == 2 && w_hh.size(0) == g * w_hh.size(1),
               "{} cell: weight_hh must be [{}*H, H], got {}", cell_type_name(type), g, shape_str(w_hh.shape()));
  const int64_t h = w_hh.size(1);
  QFORGE_CHECK(prev.h.defined() && prev.h.dim() == 2 && prev.h.size(1) == h,
               "{} cell: hidden state must be [B, {}], got {}", cell_type_name(type), h,
               prev.h.defined() ? shape_str(prev.h.shape()) : std::string("undefined"));
  QFORGE_CHECK(x_proj.dim() == 2 && x_proj.size(0) == prev.h.size(0) && x_proj.size(1) == g * h,
               "{} cell: input projection must be [{}, {}], got {}", cell_type_name(type), prev.h.size(0), g * h,
               shape_str(x_proj.shape()));
  if (type == CellType::lstm)
    QFORGE_CHECK(prev.c.defined() && prev.c.shape() == prev.h.shape(), "LSTM cell: cell state must be {}, got {}",
                 shape_str(prev.h.shape()), prev.c.defined() ? shape_str(prev.c.shape()) : std::string("undefined"));
}

}  // namespace

CellState cell_step_projected(CellType type, const Tensor& x_proj, const CellState& prev, const Tensor& w_hh,
                              const Tensor& b_hh, const SiteFn& site) {
  check_step_shapes(type, x_proj, prev, w_hh);
  const Tensor gh = ops::linear(prev.h, w_hh, b_hh);
  CellState next;
  switch (type) {
    case CellType::rnn_tanh:
    case CellType::rnn_relu: {
      const Tensor pre = at_site(site, CellSite::gates, x_proj + gh);
      next.h = type == CellType::rnn_tanh ? ops::tanh(pre) : ops::relu(pre);
      break;
    }
    case CellType::lstm: {
      const Tensor gates = at_site(site, CellSite::gates, x_proj + gh);
      const auto q = ops::chunk(gates, 4, 1);  // i, f, g, o
      const Tensor i = ops::sigmoid(q[0]), f = ops::sigmoid(q[1]), g = ops::tanh(q[2]), o = ops::sigmoid(q[3]);
      next.c = at_site(site, CellSite::cell, f * prev.c + i * g);
      next.h = o * ops::tanh(next.c);
      break;
    }
    case CellType::gru: {
      const auto x = ops::chunk(at_site(site, CellSite::gates, x_proj), 3, 1);  // r, z, n
      const auto h = ops::chunk(at_site(site, CellSite::gates, gh), 3, 1);
      const Tensor r = ops::sigmoid(x[0] + h[0]);
      const Tensor z = ops::sigmoid(x[1] + h[1]);
      const Tensor n = ops::tanh(x[2] + r * h[2]);
      next.h = n + z * (prev.h - n);  // (1 - z) * n + z * h
      break;
    }
  }
  next.h = at_site(site, CellSite::hidden, next.h);
  return next;
}

CellState cell_step(CellType type, const Tensor& x, const CellState& prev, const CellWeights& w, const SiteFn& site) {
  QFORGE_CHECK(w.w_ih.defined() && w.w_ih.dim() == 2 && x.dim() == 2 && x.size(1) == w.w_ih.size(1),
               "{} cell: input must be [B, {}], got {}", cell_type_name(type),
               w.w_ih.defined() && w.w_ih.dim() == 2 ? w.w_ih.size(1) : -1, shape_str(x.shape()));
  const Tensor xs = at_site(site, CellSite::input, x);
  const Tensor w_ih = at_site(site, CellSite::weight_ih, w.w_ih);
  const Tensor w_hh = at_site(site, CellSite::weight_hh, w.w_hh);
  return cell_step_projected(type, ops::linear(xs, w_ih, w.b_ih), prev, w_hh, w.b_hh, site);
}

}  // namespace qforge::nn
