// Tensor: the engine's value type.
//
// A Tensor is a cheap handle (one shared_ptr) to a TensorImpl: refcounted 64-byte-aligned Storage, shape,
// strides (in elements), offset, dtype and a nullable autograd part. Copying a Tensor shares the impl,
// exactly like PyTorch's `b = a`; views (reshape, transpose, narrow, expand, ...) make a new impl over the
// same Storage. Row-major; images NCHW; conv weights OIHW; linear weights [out, in].
//
// The version counter lives in the Storage, so an in-place write through any view is seen by every
// tensor saved for backward over that storage (Note [Saved tensor versions] in autograd.hpp).
#pragma once

#include "engine/dtype.hpp"
#include "engine/error.hpp"

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace qforge {

using Shape = std::vector<int64_t>;

std::string shape_str(const Shape& s);           // "[2, 3, 4]"
int64_t shape_numel(const Shape& s);
Shape contiguous_strides(const Shape& s);

// 64-byte-aligned, zero-initialised buffer with the version counter shared by all its views.
struct Storage {
  explicit Storage(size_t nbytes, bool zero = true);  // 64-byte aligned; zero-filled unless told not to
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t nbytes = 0;
  uint64_t version = 0;
};

namespace autograd {
struct Node;
}
class Tensor;

struct AutogradMeta;

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Shape strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::unique_ptr<AutogradMeta> autograd;  // null for plain tensors
  ~TensorImpl();
};

class Generator;

class Tensor {
public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- creation -------------------------------------------------------------------------------
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);  // zero-filled
  // Contents undefined: for op outputs that are fully overwritten (saves a memset pass).
  static Tensor uninitialized(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32) { return empty(shape, dtype); }
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32) { return full({}, value, dtype); }
  static Tensor arange(double start, double end, double step = 1, DType dtype = DType::f32);
  template <class T> static Tensor from_vector(const std::vector<T>& v, const Shape& shape);
  static Tensor from_buffer(const void* data, const Shape& shape, DType dtype);  // copies
  static Tensor randn(const Shape& shape, Generator& gen, DType dtype = DType::f32);
  static Tensor rand(const Shape& shape, Generator& gen, double low = 0, double high = 1,
                     DType dtype = DType::f32);
  // A view over existing storage (no autograd); used by view ops and kernels adapters.
  static Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

  // ---- metadata -------------------------------------------------------------------------------
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t offset() const { return impl().offset; }
  DType dtype() const { return impl().dtype; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  TensorImpl* impl_ptr() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_shared() const { return impl_; }
  bool same(const Tensor& o) const { return impl_ == o.impl_; }

  // ---- raw data (pointer to element 0 of this view) -------------------------------------------
  template <class T> T* data() {
    check_dtype(dtype_of_v<T>);
    return static_cast<T*>(impl().storage->data) + impl().offset;
  }
  template <class T> const T* data() const {
    check_dtype(dtype_of_v<T>);
    return static_cast<const T*>(impl().storage->data) + impl().offset;
  }
  void* raw_data() const {
    return static_cast<char*>(impl().storage->data) + impl().offset * dtype_size(dtype());
  }
  template <class T> std::vector<T> to_vector() const;  // contiguous copy, converting dtype

  // ---- element access for tests and small code (any dtype, as double) ---------------------------
  double item() const;
  double at(std::initializer_list<int64_t> index) const;
  void set(std::initializer_list<int64_t> index, double value);  // in place: bumps the version

  // ---- views and copies (differentiable; defined in ops/view.cpp) -----------------------------
  Tensor reshape(const Shape& shape) const;  // view when possible, else copy
  Tensor view(const Shape& shape) const;     // must be viewable
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const Shape& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end, int64_t step = 1) const;
  Tensor select(int64_t dim, int64_t index) const;  // removes dim
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor contiguous() const;  // self if already contiguous
  Tensor clone() const;       // always a fresh contiguous copy (differentiable)
  Tensor to(DType dtype) const;  // differentiable between floating types

  // ---- in-place (not recorded; refused on tensors that need grad while grad mode is on) -------
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);  // broadcasts src, converts dtype
  Tensor& zero_() { return fill_(0); }
  void bump_version() { ++impl().storage->version; }
  uint64_t version() const { return impl().storage->version; }

  // ---- autograd -------------------------------------------------------------------------------
  bool requires_grad() const;
  Tensor& set_requires_grad(bool on = true);  // leaves only
  bool is_leaf() const;
  Tensor grad() const;       // undefined until a backward reached it
  void set_grad(const Tensor& g);
  void zero_grad();          // drops the gradient
  const std::shared_ptr<autograd::Node>& grad_fn() const;
  void set_grad_fn(std::shared_ptr<autograd::Node> fn);
  void backward(const Tensor& grad = Tensor(), bool retain_graph = false) const;
  Tensor detach() const;     // shares storage, no autograd

  std::string to_string(int64_t max_per_dim = 6) const;

private:
  TensorImpl& impl() const {
    QFORGE_CHECK(impl_ != nullptr, "use of an undefined Tensor");
    return *impl_;
  }
  void check_dtype(DType want) const;
  std::shared_ptr<TensorImpl> impl_;
};

std::ostream& operator<<(std::ostream& os, const Tensor& t);

// Strided element offsets of a tensor in row-major logical order: calls f(storage_offset) for each
// element. Used by generic (slow-path) code; hot paths require contiguous inputs.
template <class F> void for_each_offset(const Shape& shape, const Shape& strides, int64_t base, F&& f) {
  const int64_t nd = static_cast<int64_t>(shape.size());
  const int64_t n = shape_numel(shape);
  if (n == 0) return;
  if (nd == 0) {
    f(base);
    return;
  }
  std::vector<int64_t> idx(nd, 0);
  int64_t off = base;
  const int64_t inner = shape[nd - 1], inner_stride = strides[nd - 1];
  for (int64_t done = 0; done < n; done += inner) {
    for (int64_t i = 0; i < inner; ++i) f(off + i * inner_stride);
    for (int64_t d = nd - 2; d >= 0; --d) {
      if (++idx[d] < shape[d]) {
        off += strides[d];
        break;
      }
      off -= strides[d] * (shape[d] - 1);
      idx[d] = 0;
    }
  }
}

template <class T> Tensor Tensor::from_vector(const std::vector<T>& v, const Shape& shape) {
  QFORGE_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape),
               "Tensor::from_vector: {} values do not fill shape {}", v.size(), shape_str(shape));
  return from_buffer(v.data(), shape, dtype_of_v<T>);
}

template <class T> std::vector<T> Tensor::to_vector() const {
  Tensor c = (dtype() == dtype_of_v<T> ? *this : to(dtype_of_v<T>)).detach().contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

}  // namespace qforge
