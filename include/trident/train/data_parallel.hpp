#pragma once
/// \file trident/train/data_parallel.hpp
/// What train::fit does when TrainerOptions::group splits every batch over several processes (the group:
/// core/data_parallel.hpp's interface, made by trident/distributed/ over c10d):
///  - GradientBuckets: the gradients are summed over the processes in buckets of about `bucket_bytes`, each
///    started (asynchronously) as soon as the backward pass has produced all of its gradients and every bucket
///    before it has started, so the communication overlaps the rest of the backward pass; the buckets start in
///    the same order on every process, as c10d requires. After the backward pass, the sums divided by the number
///    of processes become the gradients.
///  - broadcast_state: parameters and buffers (the re-id memory, batch-norm statistics) copied from rank 0.
///  - check_same_everywhere: named integers (the network's shape, the schedule, ...) compared with rank 0's, so
///    that processes started with different configurations stop at once with a message naming the difference.
/// Needs only trident::trident: nothing here knows how the processes communicate.
#include <trident/config.hpp>
#include <trident/core/data_parallel.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>

#include <fmt/format.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace trident::train {

/// Sums the gradients of `params` over a group's processes in buckets that overlap the backward pass (see the
/// file comment). Construct it before the backward passes it should reduce; arm() before each backward pass,
/// finish() after it. Hooks are removed when it is destroyed.
class GradientBuckets {
 public:
  GradientBuckets(DataParallelGroup& group, std::vector<at::Tensor> params, int64_t bucket_bytes = 25 << 20)
      : group_(group), params_(std::move(params)) {
    TRIDENT_CHECK(bucket_bytes > 0, "trident::train::GradientBuckets: bucket_bytes must be positive, got {}",
                  bucket_bytes);
    // Buckets in reverse registration order (the backward pass produces the last layers' gradients first), each
    // of one device and type.
    bucket_of_.resize(params_.size());
    std::vector<int64_t> offset(params_.size());
    for (size_t k = params_.size(); k-- > 0;) {
      const auto& p = params_[k];
      const int64_t bytes = p.numel() * static_cast<int64_t>(p.element_size());
      if (buckets_.empty() || buckets_.back().bytes + bytes > bucket_bytes ||
          buckets_.back().options.device() != p.device() || buckets_.back().options.dtype() != p.dtype()) {
        buckets_.emplace_back();
        buckets_.back().options = p.options();
      }
      auto& b = buckets_.back();
      bucket_of_[k] = buckets_.size() - 1;
      offset[k] = b.numel;
      b.members.push_back(k);
      b.numel += p.numel();
      b.bytes += bytes;
    }
    for (auto& b : buckets_) b.flat = at::zeros({b.numel}, b.options);
    // Each parameter's place in its bucket, shaped like the parameter.
    for (size_t k = 0; k < params_.size(); ++k)
      slice_.push_back(
          buckets_[bucket_of_[k]].flat.narrow(0, offset[k], params_[k].numel()).view(params_[k].sizes()));
    for (size_t k = 0; k < params_.size(); ++k)
      hooks_.push_back(params_[k].register_hook([this, k](const at::Tensor& grad) {
        on_gradient(k, grad);
        return at::Tensor();  // the gradient itself is left as it is
      }));
  }
  ~GradientBuckets() {
    for (size_t k = 0; k < params_.size(); ++k) params_[k].remove_hook(hooks_[k]);
  }
  GradientBuckets(const GradientBuckets&) = delete;
  GradientBuckets& operator=(const GradientBuckets&) = delete;

  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }
  /// The seconds spent after backward passes waiting for the gradients' sums (what the overlap did not hide).
  double exposed_seconds() const { return exposed_seconds_; }

  /// Before a backward pass: the buckets start empty.
  void arm() {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (auto& b : buckets_) {
      b.ready = 0;
      b.wait = nullptr;
    }
    seen_.assign(params_.size(), false);
    next_ = 0;
    armed_ = true;
  }

  /// After the backward pass: starts the buckets still waiting (a parameter without a gradient this time counts
  /// as zeros), waits for all, and sets every parameter's gradient to the mean over the processes.
  void finish() {
    {
      const std::lock_guard<std::mutex> lock(mutex_);
      TRIDENT_CHECK(armed_, "trident::train::GradientBuckets::finish: arm() was not called before the backward pass");
      for (size_t k = 0; k < params_.size(); ++k)
        if (!seen_[k]) slice_[k].zero_();
      for (auto& b : buckets_) b.ready = static_cast<int64_t>(b.members.size());
      start_ready_buckets();
      armed_ = false;
    }
    const double scale = 1.0 / static_cast<double>(group_.size());
    const auto start = std::chrono::steady_clock::now();
    for (auto& b : buckets_) {
      if (b.wait) b.wait();
      b.wait = nullptr;
    }
    exposed_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    for (auto& b : buckets_) {
      b.flat.mul_(scale);
      for (const size_t k : b.members) {
        auto& p = params_[k];
        if (p.grad().defined())
          p.mutable_grad().copy_(slice_[k]);
        else
          p.mutable_grad() = slice_[k].clone();
      }
    }
  }

 private:
  struct Bucket {
    at::TensorOptions options;
    std::vector<size_t> members;  ///< parameter indices
    int64_t numel = 0, bytes = 0;
    at::Tensor flat;
    int64_t ready = 0;  ///< members whose gradient arrived in this pass
    std::function<void()> wait;
  };

  void on_gradient(size_t k, const at::Tensor& grad) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!armed_) return;
    if (seen_[k]) {
      slice_[k].add_(grad);  // a second gradient for the same parameter in one pass
      return;
    }
    slice_[k].copy_(grad);
    seen_[k] = true;
    ++buckets_[bucket_of_[k]].ready;
    start_ready_buckets();
  }

  /// Starts, in order, every bucket whose gradients are all there and whose predecessors have started.
  void start_ready_buckets() {
    while (next_ < buckets_.size() && buckets_[next_].ready == static_cast<int64_t>(buckets_[next_].members.size())) {
      std::vector<at::Tensor> t{buckets_[next_].flat};
      buckets_[next_].wait = group_.all_reduce_sum_async(t);
      ++next_;
    }
  }

  DataParallelGroup& group_;
  std::vector<at::Tensor> params_;
  std::vector<size_t> bucket_of_;  ///< per parameter: its bucket
  std::vector<at::Tensor> slice_;  ///< per parameter: its view of the bucket
  std::vector<bool> seen_;         ///< per parameter: its gradient arrived in this pass
  std::vector<Bucket> buckets_;
  std::vector<unsigned> hooks_;
  std::mutex mutex_;
  size_t next_ = 0;
  bool armed_ = false;
  double exposed_seconds_ = 0;
};

/// Copies rank 0's parameters and buffers into every process's `module` (in place).
inline void broadcast_state(DataParallelGroup& group, torch::nn::Module& module) {
  std::vector<at::Tensor> tensors;
  for (const auto& p : module.parameters()) tensors.push_back(p.detach());
  for (const auto& b : module.buffers()) tensors.push_back(b);
  if (tensors.empty()) return;
  at::NoGradGuard no_grad;
  group.broadcast(tensors, 0);
  // The collective wrote into the tensors' memory: advance their version counters, which the caches of derived
  // weights (folded batch norms, CUDA graphs) watch (train::mark_parameters_updated does the same after a step).
  for (auto& t : tensors) t.unsafeGetTensorImpl()->bump_version();
}

namespace detail {

/// Rank 0's `bytes` on every process (the others' argument is ignored): the length first, then the bytes.
inline std::string broadcast_bytes(DataParallelGroup& group, std::string bytes) {
  const auto count = static_cast<int64_t>(bytes.size());
  std::vector<at::Tensor> length{at::tensor({count}, at::TensorOptions().dtype(at::kLong))};
  group.broadcast(length, 0);
  const int64_t n = length[0].item<int64_t>();
  std::vector<at::Tensor> data{at::empty({n}, at::TensorOptions().dtype(at::kByte))};
  if (group.rank() == 0 && n > 0) std::memcpy(data[0].data_ptr(), bytes.data(), static_cast<size_t>(n));
  group.broadcast(data, 0);
  const auto host = data[0].cpu().contiguous();
  bytes.resize(static_cast<size_t>(n));
  if (n > 0) std::memcpy(bytes.data(), host.data_ptr(), static_cast<size_t>(n));
  return bytes;
}

}  // namespace detail

/// A named integer every process must agree on.
struct AgreedValue {
  std::string name;
  int64_t value = 0;
};

/// Compares `values` with rank 0's on every process; a difference stops every process with a message naming the
/// rank, the value and both numbers.
inline void check_same_everywhere(DataParallelGroup& group, const std::vector<AgreedValue>& values,
                                  std::string_view caller) {
  std::vector<int64_t> v;
  for (const auto& a : values) v.push_back(a.value);
  v.push_back(static_cast<int64_t>(values.size()));
  const auto all = group.all_gather(at::tensor(v, at::TensorOptions().dtype(at::kLong)));
  std::vector<std::string> problems;
  const auto root = all[0].cpu().contiguous();
  for (size_t r = 1; r < all.size(); ++r) {
    const auto other = all[r].cpu().contiguous();
    for (size_t i = 0; i < values.size(); ++i) {
      const auto a = root.data_ptr<int64_t>()[i], b = other.data_ptr<int64_t>()[i];
      if (a != b) problems.push_back(fmt::format("rank {} has {} = {}, rank 0 has {}", r, values[i].name, b, a));
    }
  }
  if (!problems.empty()) {
    std::string text;
    for (const auto& p : problems) text += "\n  " + p;
    fail("{}: the processes of {} were started with different configurations:{}", caller, group.describe(), text);
  }
}

/// A 64-bit fingerprint of a module's parameter and buffer names and shapes (FNV-1a): processes that build
/// different networks disagree on it.
inline int64_t shape_fingerprint(const torch::nn::Module& module) {
  uint64_t h = 1469598103934665603ull;
  const auto add = [&h](std::string_view s) {
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  };
  for (const auto& item : module.named_parameters()) add(item.key() + shape_of(item.value()));
  for (const auto& item : module.named_buffers()) add(item.key() + shape_of(item.value()));
  return static_cast<int64_t>(h >> 1);
}

}  // namespace trident::train
