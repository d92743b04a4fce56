// Embedding lookup: out[..., :] = weight[indices[...], :] for i32 indices of any shape.
// Backward scatter-adds the gradient rows into a zero [num_embeddings, dim] gradient (repeated indices
// accumulate). An index outside [0, num_embeddings) throws, naming the index and the table size.
#include "engine/ops/loops.hpp"
#include "engine/ops/op.hpp"

#include <cstring>

namespace qforge::ops {

using detail::visit_float;

namespace {

struct EmbeddingOp : OpBase {
  static constexpr const char* kName = "embedding";
  Shape weight_shape;
  SavedTensor saved_idx;
  Tensor forward(const Tensor& weight_in, const Tensor& idx_in) {
    detail::check_float(weight_in, kName);
    QFORGE_CHECK(weight_in.dim() == 2, "embedding: weight must be [num_embeddings, dim], got {}",
                 shape_str(weight_in.shape()));
    QFORGE_CHECK(idx_in.dtype() == DType::i32, "embedding: indices must be i32, got {} of shape {}",
                 dtype_name(idx_in.dtype()), shape_str(idx_in.shape()));
    weight_shape = weight_in.shape();
    const int64_t rows = weight_shape[0], d = weight_shape[1];
    Tensor weight = weight_in.contiguous();
    Tensor idx = idx_in.contiguous();
    const int32_t* ip = idx.data<int32_t>();
    const int64_t m = idx.numel();
    for (int64_t k = 0; k < m; ++k)
      QFORGE_CHECK(ip[k] >= 0 && ip[k] < rows, "embedding: index {} out of range for a table of size {} (at position {})",
                   ip[k], rows, k);
    Shape out_shape = idx.shape();
    out_shape.push_back(d);
    Tensor out = Tensor::empty(out_shape, weight.dtype());
    const size_t row_bytes = static_cast<size_t>(d) * dtype_size(weight.dtype());
    const char* wp = static_cast<const char*>(weight.raw_data());
    char* o = static_cast<char*>(out.raw_data());
    for (int64_t k = 0; k < m; ++k) std::memcpy(o + k * row_bytes, wp + ip[k] * row_bytes, row_bytes);
    if (recording) saved_idx = idx;
    return out;
  }
  std::vector<Tensor> backward(const Tensor& g_in) {
    const Tensor& idx = saved_idx.get(kName);
    const Tensor g = g_in.contiguous();
    Tensor gw = Tensor::zeros(weight_shape, g.dtype());
    const int64_t d = weight_shape[1];
    visit_float(g.dtype(), kName, [&]<class T>() {
      const int32_t* ip = idx.data<int32_t>();
      const T* gp = g.data<T>();
      T* o = gw.data<T>();
      for (int64_t k = 0, m = idx.numel(); k < m; ++k) {
        T* row = o + static_cast<int64_t>(ip[k]) * d;
        const T* src = gp + k * d;
        for (int64_t j = 0; j < d; ++j) row[j] += src[j];
      }
    });
    return {gw, Tensor()};
  }
};

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& indices) { return apply(EmbeddingOp{}, weight, indices); }

}  // namespace qforge::ops
