#include "engine/tensor.hpp"

#include "engine/autograd.hpp"
#include "engine/random.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <malloc.h>
#include <cstring>
#include <ostream>
#include <sstream>

namespace qforge {

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Shape contiguous_strides(const Shape& s) {
  Shape st(s.size());
  int64_t acc = 1;
  for (int64_t i = static_cast<int64_t>(s.size()) - 1; i >= 0; --i) {
    st[i] = acc;
    acc *= std::max<int64_t>(s[i], 1);
  }
  return st;
}

// Plain malloc plus manual 64-byte alignment (the raw pointer is kept just below `data`): glibc's
// aligned_alloc leaves the freed block unusable for the next request of the same size, so every large
// tensor landed on fresh pages and paid ~1.5 ms of page faults per 6 MB; malloc reuses the block.
// Note [Allocator]
// Training allocates and frees the same large activation buffers every step. glibc serves blocks above
// its mmap threshold with fresh mmaps, so every step would page-fault its activations in again (the
// dominant cost of batch_norm/conv backward at batch 64). Raising the mmap and trim thresholds once keeps
// freed blocks in the heap for reuse: a simple, process-wide caching allocator.
static void tune_allocator_once() {
  static const bool done = [] {
    mallopt(M_MMAP_THRESHOLD, 512 << 20);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    return true;
  }();
  (void)done;
}

Storage::Storage(size_t n, bool zero) : nbytes(n) {
  tune_allocator_once();
  const size_t rounded = ((n + 63) / 64) * 64;
  const size_t bytes = rounded == 0 ? 64 : rounded;
  void* raw = std::malloc(bytes + 128);
  if (raw == nullptr) throw Error(fmt::format("out of memory allocating {} bytes", n));
  const auto addr = (reinterpret_cast<uintptr_t>(raw) + sizeof(void*) + 63) & ~uintptr_t(63);
  data = reinterpret_cast<void*>(addr);
  reinterpret_cast<void**>(data)[-1] = raw;
  if (zero) std::memset(data, 0, bytes);
}

Storage::~Storage() {
  if (data != nullptr) std::free(reinterpret_cast<void**>(data)[-1]);
}

TensorImpl::~TensorImpl() = default;

// ---- creation ---------------------------------------------------------------------------------

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    QFORGE_CHECK(d >= 0, "Tensor: negative dimension in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::uninitialized(const Shape& shape, DType dtype) {
  for (int64_t d : shape)
    QFORGE_CHECK(d >= 0, "Tensor: negative dimension in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), false);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (value != 0) t.fill_(value);
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::arange(double start, double end, double step, DType dtype) {
  QFORGE_CHECK(step != 0, "arange: step must be non-zero");
  const int64_t n = std::max<int64_t>(0, static_cast<int64_t>(std::ceil((end - start) / step)));
  Tensor t = empty({n}, dtype);
  visit_dtype(dtype, [&]<class T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + step * static_cast<double>(i));
  });
  return t;
}

Tensor Tensor::from_buffer(const void* data, const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  if (t.numel() > 0) std::memcpy(t.raw_data(), data, t.numel() * dtype_size(dtype));
  return t;
}

Tensor Tensor::randn(const Shape& shape, Generator& gen, DType dtype) {
  QFORGE_CHECK(is_floating(dtype), "randn: dtype {} is not floating", dtype_name(dtype));
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&]<class T>() {
    if constexpr (std::is_floating_point_v<T>) {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(gen.normal());
    }
  });
  return t;
}

Tensor Tensor::rand(const Shape& shape, Generator& gen, double low, double high, DType dtype) {
  QFORGE_CHECK(is_floating(dtype), "rand: dtype {} is not floating", dtype_name(dtype));
  Tensor t = empty(shape, dtype);
  visit_dtype(dtype, [&]<class T>() {
    if constexpr (std::is_floating_point_v<T>) {
      T* p = t.data<T>();
      for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(gen.uniform(low, high));
    }
  });
  return t;
}

Tensor Tensor::make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  QFORGE_ASSERT(shape.size() == strides.size());
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

// ---- metadata ---------------------------------------------------------------------------------

int64_t Tensor::size(int64_t d) const {
  const int64_t nd = dim();
  const int64_t dd = d < 0 ? d + nd : d;
  QFORGE_CHECK(dd >= 0 && dd < nd, "size: dimension {} out of range for shape {}", d, shape_str(shape()));
  return shape()[dd];
}

bool Tensor::is_contiguous() const {
  const auto& s = shape();
  const auto& st = strides();
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (s[i] != 1 && st[i] != expect) return false;
    expect *= s[i];
  }
  return true;
}

void Tensor::check_dtype(DType want) const {
  QFORGE_CHECK(dtype() == want, "tensor of dtype {} accessed as {}", dtype_name(dtype()), dtype_name(want));
}

// ---- element access ---------------------------------------------------------------------------

static int64_t element_offset(const Tensor& t, std::initializer_list<int64_t> index) {
  QFORGE_CHECK(static_cast<int64_t>(index.size()) == t.dim(), "at: {} indices for a tensor of shape {}",
               index.size(), shape_str(t.shape()));
  int64_t off = t.offset();
  int64_t d = 0;
  for (int64_t i : index) {
    const int64_t n = t.shape()[d];
    const int64_t ii = i < 0 ? i + n : i;
    QFORGE_CHECK(ii >= 0 && ii < n, "at: index {} out of range for dimension {} of shape {}", i, d,
                 shape_str(t.shape()));
    off += ii * t.strides()[d];
    ++d;
  }
  return off;
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  const int64_t off = element_offset(*this, index);
  return visit_dtype(dtype(), [&]<class T>() -> double {
    return static_cast<double>(static_cast<const T*>(storage()->data)[off]);
  });
}

void Tensor::set(std::initializer_list<int64_t> index, double value) {
  const int64_t off = element_offset(*this, index);
  visit_dtype(dtype(), [&]<class T>() { static_cast<T*>(storage()->data)[off] = static_cast<T>(value); });
  bump_version();
}

double Tensor::item() const {
  QFORGE_CHECK(numel() == 1, "item: tensor of shape {} has {} elements, not 1", shape_str(shape()), numel());
  return visit_dtype(dtype(), [&]<class T>() -> double {
    return static_cast<double>(static_cast<const T*>(storage()->data)[offset()]);
  });
}

// ---- in place ---------------------------------------------------------------------------------

static void check_inplace(const Tensor& t, const char* op) {
  QFORGE_CHECK(!(autograd::grad_mode_enabled() && t.requires_grad()),
               "{}: in-place write to a tensor that requires grad (use NoGradGuard for updates)", op);
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  visit_dtype(dtype(), [&]<class T>() {
    T* base = static_cast<T*>(storage()->data);
    const T v = static_cast<T>(value);
    if (is_contiguous()) {
      std::fill(base + offset(), base + offset() + numel(), v);
    } else {
      for_each_offset(shape(), strides(), offset(), [&](int64_t o) { base[o] = v; });
    }
  });
  bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src_in) {
  check_inplace(*this, "copy_");
  Tensor src = src_in.detach();
  if (src.shape() != shape()) src = src.expand(shape());
  visit_dtype(dtype(), [&]<class D>() {
    visit_dtype(src.dtype(), [&]<class S>() {
      D* dst = static_cast<D*>(storage()->data);
      const S* sp = static_cast<const S*>(src.storage()->data);
      if (is_contiguous() && src.is_contiguous()) {
        D* d = dst + offset();
        const S* s = sp + src.offset();
        for (int64_t i = 0, n = numel(); i < n; ++i) d[i] = static_cast<D>(s[i]);
      } else {
        std::vector<int64_t> so;
        so.reserve(numel());
        for_each_offset(src.shape(), src.strides(), src.offset(), [&](int64_t o) { so.push_back(o); });
        size_t k = 0;
        for_each_offset(shape(), strides(), offset(), [&](int64_t o) { dst[o] = static_cast<D>(sp[so[k++]]); });
      }
    });
  });
  bump_version();
  return *this;
}

// ---- autograd accessors -----------------------------------------------------------------------

bool Tensor::requires_grad() const {
  const auto& a = impl().autograd;
  return a && (a->requires_grad || a->grad_fn);
}

Tensor& Tensor::set_requires_grad(bool on) {
  QFORGE_CHECK(!grad_fn(), "set_requires_grad: only leaf tensors can change requires_grad");
  QFORGE_CHECK(!on || is_floating(dtype()), "set_requires_grad: dtype {} cannot require grad",
               dtype_name(dtype()));
  if (!impl().autograd) impl().autograd = std::make_unique<AutogradMeta>();
  impl().autograd->requires_grad = on;
  return *this;
}

bool Tensor::is_leaf() const { return !grad_fn(); }

Tensor Tensor::grad() const {
  const auto& a = impl().autograd;
  return a ? a->grad : Tensor();
}

void Tensor::set_grad(const Tensor& g) {
  if (!impl().autograd) impl().autograd = std::make_unique<AutogradMeta>();
  impl().autograd->grad = g;
}

void Tensor::zero_grad() {
  if (impl().autograd) impl().autograd->grad = Tensor();
}

const std::shared_ptr<autograd::Node>& Tensor::grad_fn() const {
  static const std::shared_ptr<autograd::Node> kNone;
  const auto& a = impl().autograd;
  return a ? a->grad_fn : kNone;
}

void Tensor::set_grad_fn(std::shared_ptr<autograd::Node> fn) {
  if (!impl().autograd) impl().autograd = std::make_unique<AutogradMeta>();
  impl().autograd->grad_fn = std::move(fn);
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  autograd::run_backward(*this, grad, retain_graph);
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), offset());
}

// ---- printing ---------------------------------------------------------------------------------

std::string Tensor::to_string(int64_t max_per_dim) const {
  if (!defined()) return "Tensor(undefined)";
  std::ostringstream os;
  os << "Tensor(shape=" << shape_str(shape()) << ", dtype=" << dtype_name(dtype());
  if (requires_grad()) os << ", requires_grad";
  os << ")\n";
  const int64_t nd = dim();
  std::vector<int64_t> idx(nd, 0);
  // Recursive pretty printer with elision of long dimensions.
  std::function<void(int64_t, int64_t)> rec = [&](int64_t d, int64_t off) {
    if (d == nd) {
      const double v = visit_dtype(dtype(), [&]<class T>() -> double {
        return static_cast<double>(static_cast<const T*>(storage()->data)[off]);
      });
      os << fmt::format("{:.6g}", v);
      return;
    }
    os << "[";
    const int64_t n = shape()[d];
    for (int64_t i = 0; i < n; ++i) {
      if (n > max_per_dim && i == max_per_dim / 2) {
        os << "..., ";
        i = n - max_per_dim / 2;
      }
      rec(d + 1, off + i * strides()[d]);
      if (i + 1 < n) os << (d + 1 == nd ? ", " : ",\n ");
    }
    os << "]";
  };
  rec(0, offset());
  return os.str();
}

std::ostream& operator<<(std::ostream& os, const Tensor& t) { return os << t.to_string(); }

}  // namespace qforge
