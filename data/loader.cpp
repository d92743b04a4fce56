#include "data/loader.hpp"

#include <numeric>

namespace qforge::data {

namespace {

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0xD1B54A32D192ED03ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

DataLoader::DataLoader(std::shared_ptr<const Dataset> dataset, LoaderOptions options)
    : dataset_(std::move(dataset)), opt_(options) {
  QFORGE_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
  if (opt_.batch_size <= 0)
    throw InputError(fmt::format("DataLoader: batch size must be positive, got {}", opt_.batch_size));
  QFORGE_CHECK(opt_.prefetch_depth >= 1, "DataLoader: prefetch depth must be >= 1, got {}", opt_.prefetch_depth);
  if (opt_.as_sequence) {
    const Shape s = dataset_->example_shape();
    QFORGE_CHECK(s.size() == 3 && s[0] == 1, "DataLoader: the sequence view needs 1-channel images, got examples {}",
                 shape_str(s));
  }
  if (num_batches() == 0)
    throw InputError(fmt::format("DataLoader: {} has {} examples, fewer than one batch of {} (drop_last)",
                                 dataset_->description(), dataset_->size(), opt_.batch_size));
}

DataLoader::~DataLoader() { stop_worker(); }

int64_t DataLoader::num_batches() const {
  const int64_t n = dataset_->size(), b = opt_.batch_size;
  return opt_.drop_last ? n / b : (n + b - 1) / b;
}

std::vector<int64_t> DataLoader::permutation(int64_t epoch) const {
  std::vector<int64_t> p(static_cast<size_t>(dataset_->size()));
  std::iota(p.begin(), p.end(), int64_t{0});
  if (opt_.shuffle) {  // Fisher-Yates
    Generator g(mix(opt_.seed, static_cast<uint64_t>(epoch)));
    for (int64_t i = static_cast<int64_t>(p.size()) - 1; i > 0; --i)
      std::swap(p[i], p[g.below(static_cast<uint64_t>(i + 1))]);
  }
  return p;
}

Batch DataLoader::build(const std::vector<int64_t>& perm, int64_t epoch, int64_t index) const {
  const int64_t n = dataset_->size(), b = opt_.batch_size;
  const int64_t begin = index * b, end = std::min(n, begin + b);
  Generator g(mix(mix(opt_.seed, static_cast<uint64_t>(epoch)), static_cast<uint64_t>(index) + 0x5eed));
  Batch out = dataset_->get_batch(std::span<const int64_t>(perm.data() + begin, static_cast<size_t>(end - begin)),
                                  opt_.augment ? &g : nullptr);
  if (opt_.as_sequence) {
    const Shape& s = out.inputs.shape();
    out.inputs = out.inputs.reshape({s[0], s[2], s[3]});
  }
  return out;
}

Batch DataLoader::batch(int64_t epoch, int64_t index) const {
  QFORGE_CHECK(0 <= index && index < num_batches(), "DataLoader::batch: index {} out of range [0, {})", index,
               num_batches());
  return build(permutation(epoch), epoch, index);
}

void DataLoader::stop_worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lock(mu_);
  queue_.clear();
  error_ = nullptr;
  stop_ = false;
  worker_done_ = true;
}

void DataLoader::start_epoch(int64_t epoch, int64_t start_batch) {
  QFORGE_CHECK(0 <= start_batch && start_batch <= num_batches(), "DataLoader: start batch {} out of range [0, {}]",
               start_batch, num_batches());
  stop_worker();
  epoch_ = epoch;
  next_index_ = start_batch;
  perm_ = permutation(epoch);
  if (!opt_.prefetch || start_batch == num_batches()) return;
  worker_done_ = false;
  worker_ = std::thread([this, epoch, start_batch] {
    const int64_t nb = num_batches();
    for (int64_t i = start_batch; i < nb; ++i) {
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(queue_.size()) < opt_.prefetch_depth; });
        if (stop_) break;
      }
      Batch b;
      try {
        b = build(perm_, epoch, i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mu_);
        error_ = std::current_exception();
        break;
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu_);
    worker_done_ = true;
    cv_.notify_all();
  });
}

std::optional<Batch> DataLoader::next() {
  QFORGE_CHECK(epoch_ >= 0, "DataLoader::next: call start_epoch first");
  if (next_index_ >= num_batches()) return std::nullopt;
  if (!opt_.prefetch) return build(perm_, epoch_, next_index_++);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || error_ != nullptr || worker_done_; });
  if (!queue_.empty()) {
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    ++next_index_;
    lock.unlock();
    cv_.notify_all();
    return b;
  }
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
  QFORGE_ASSERT(false);  // worker finished without producing the batch
  return std::nullopt;
}

}  // namespace qforge::data
