// Data parallelism helpers for the Trainer (data_parallel.hpp, Notes [Data-parallel step],
// [Data-parallel BatchNorm], [Data-parallel resume]).
#include "train/data_parallel.hpp"

#include "engine/autograd.hpp"
#include "engine/error.hpp"

#include <algorithm>
#include <cstring>

namespace qforge::train {

std::pair<int64_t, int64_t> shard_rows(int64_t rows, int rank, int size) {
  const int64_t first = rows * rank / size, end = rows * (rank + 1) / size;
  return {first, end - first};
}

data::Batch shard_batch(const data::Batch& global, int rank, int size) {
  if (size == 1) return global;
  const int64_t rows = global.inputs.size(0);
  const auto [first, count] = shard_rows(rows, rank, size);
  data::Batch b = global;
  b.inputs = global.inputs.narrow(0, first, count).contiguous();
  b.targets = global.targets.narrow(0, first, count).contiguous();
  return b;
}

namespace {

// Visits each tensor's contiguous float data (f32 or f64 as float through a copy).
template <class F> void for_each_float(const Tensor& t, F&& f) {
  QFORGE_CHECK(t.dtype() == DType::f32, "data parallel: tensor of dtype {} (only f32 gradients are reduced)",
               dtype_name(t.dtype()));
  QFORGE_CHECK(t.is_contiguous(), "data parallel: gradients must be contiguous");
  f(t.data<float>(), static_cast<size_t>(t.numel()));
}

void reduce_buckets(Communicator& comm, std::vector<float>& buf) {
  for (size_t off = 0; off < buf.size(); off += kBucketFloats)
    comm.allreduce_sum(buf.data() + off, std::min(kBucketFloats, buf.size() - off));
}

}  // namespace

void allreduce_gradients(Communicator& comm, const std::vector<Tensor>& params, double weight,
                         std::vector<float>& buf) {
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  size_t total = params.size();  // one "defined" flag per tensor, first
  for (const Tensor& p : params) total += static_cast<size_t>(p.numel());
  buf.assign(total, 0.0f);
  size_t off = params.size();
  const float w = static_cast<float>(weight);
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor g = params[i].grad();
    if (g.defined()) {
      buf[i] = 1.0f;
      for_each_float(g, [&](const float* d, size_t n) {
        for (size_t k = 0; k < n; ++k) buf[off + k] = d[k] * w;
      });
    }
    off += static_cast<size_t>(params[i].numel());
  }
  reduce_buckets(comm, buf);
  off = params.size();
  for (size_t i = 0; i < params.size(); ++i) {
    const Tensor& p = params[i];
    const size_t n = static_cast<size_t>(p.numel());
    if (buf[i] > 0) {
      Tensor g = p.grad();
      if (!g.defined() || !g.is_contiguous() || g.dtype() != DType::f32) {
        g = Tensor::zeros(p.shape(), DType::f32);
        const_cast<Tensor&>(p).set_grad(g);
      }
      std::memcpy(g.data<float>(), buf.data() + off, n * sizeof(float));
    }
    off += n;
  }
}

void broadcast_tensors(Communicator& comm, const std::vector<Tensor>& tensors, int root) {
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  for (const Tensor& t0 : tensors) {
    Tensor t = t0;
    if (t.is_contiguous()) {
      comm.broadcast(t.raw_data(), static_cast<size_t>(t.numel()) * dtype_size(t.dtype()), root);
    } else {
      Tensor c = t.contiguous();
      comm.broadcast(c.raw_data(), static_cast<size_t>(c.numel()) * dtype_size(c.dtype()), root);
      t.copy_(c);
    }
  }
}

void broadcast_model_and_optimizer(Communicator& comm, nn::Module& model, Optimizer& optimizer) {
  if (comm.size() == 1) return;
  std::vector<Tensor> ts;
  for (const auto& [n, t] : model.named_parameters()) ts.push_back(t);
  for (const auto& [n, t] : model.named_buffers()) ts.push_back(t);
  broadcast_tensors(comm, ts);
  // The optimizer: its JSON part (steps, lrs) and its lazily created buffers, described by rank 0.
  const NamedTensors state = comm.rank() == 0 ? optimizer.state_tensors() : NamedTensors{};
  nlohmann::json desc = nlohmann::json::array();
  for (const auto& [n, t] : state) desc.push_back({n, t.shape(), std::string(dtype_name(t.dtype()))});
  std::string text = comm.rank() == 0 ? nlohmann::json{{"state", optimizer.state_json()}, {"tensors", desc}}.dump() : "";
  broadcast_string(comm, text);
  const nlohmann::json j = nlohmann::json::parse(text);
  std::map<std::string, Tensor> tensors;
  std::vector<Tensor> order;
  for (size_t i = 0; i < j["tensors"].size(); ++i) {
    const auto& d = j["tensors"][i];
    Tensor t = comm.rank() == 0 ? state[i].second : Tensor::zeros(d[1].get<Shape>(), DType::f32);
    QFORGE_CHECK(t.dtype() == DType::f32, "data parallel: optimizer buffer '{}' is not f32", d[0].get<std::string>());
    tensors[d[0].get<std::string>()] = t;
    order.push_back(t);
  }
  broadcast_tensors(comm, order);
  if (comm.rank() != 0) optimizer.load_state(j["state"], tensors);
}

void average_buffers(Communicator& comm, nn::Module& model) {
  if (comm.size() == 1) return;
  NoGradGuard no_grad;
  const double inv = 1.0 / comm.size();
  for (const auto& [n, t0] : model.named_buffers()) {
    Tensor t = t0;
    if (t.dtype() != DType::f32 || !t.is_contiguous()) continue;
    std::vector<double> v(static_cast<size_t>(t.numel()));
    const float* d = t.data<float>();
    for (size_t i = 0; i < v.size(); ++i) v[i] = d[i];
    comm.allreduce_sum(v.data(), v.size());
    float* o = t.data<float>();
    for (size_t i = 0; i < v.size(); ++i) o[i] = static_cast<float>(v[i] * inv);
  }
}

}  // namespace qforge::train
