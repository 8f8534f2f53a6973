#pragma once
/// \file trident/core/data_parallel.hpp
/// One optimisation batch split over several processes (data parallelism), seen from the layers that compute
/// losses and update the re-id memory. Nothing here knows how the processes talk: a `DataParallelGroup` is the
/// interface, `trident/distributed/` implements it over LibTorch's c10d (Gloo on the CPU, NCCL on CUDA), and the
/// trainer installs it for the duration of a training step (`DataParallelScope`). Without a scope (one process)
/// every function below is what the single-process code always did.
///
/// What makes P processes with b images each train exactly as one process with P * b images:
///  - batch_mean(local_sum, local_count): a loss that is a mean over rows of the batch (sampled anchors, RoIs,
///    labeled proposals) is formed as local_sum * P / (count summed over the processes). Averaged over the
///    processes (the gradient all-reduce divides by P), its gradient is that of the mean over every row of the
///    whole batch, whatever the number of rows each process holds.
///  - batch_sum(t): a statistic of the whole batch (S-bar of Eq. 10, detached) summed over the processes.
///  - gather_rows(t): the rows of every process in rank order (the re-id memory's update), so every process
///    applies the same batch to its memory, in the order one process would.
///  - image_generator(i): the random stream of image i of the global batch (the samplers' draws), a function of
///    (seed, iteration, position in the global batch) alone, not of how the batch is split.
/// Each collective is called by every process in the same order (the losses call them unconditionally), as c10d
/// requires.
#include <trident/config.hpp>

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/clamp_min.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace trident {

/// The processes that share one optimisation batch. Every call is a collective: each process makes the same
/// calls in the same order, with tensors of the same shapes and types (except where said).
class DataParallelGroup {
 public:
  virtual ~DataParallelGroup() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// Sums `tensors` over the processes, in place, and waits for the result.
  virtual void all_reduce_sum(std::vector<at::Tensor>& tensors) = 0;
  /// Starts the in-place sum of `tensors` and returns a function that waits for it (the tensors must live and
  /// stay untouched until then).
  virtual std::function<void()> all_reduce_sum_async(std::vector<at::Tensor>& tensors) = 0;
  /// Every process's `tensor` (the same shape everywhere), in rank order.
  virtual std::vector<at::Tensor> all_gather(const at::Tensor& tensor) = 0;
  /// Copies the root's tensors into every process's, in place.
  virtual void broadcast(std::vector<at::Tensor>& tensors, int root) = 0;
  /// What the group is, for messages ("rank 1 of 2 (c10d gloo)").
  virtual std::string describe() const = 0;
  /// This process stops on its own error `why` (not a collective's): the group may tell the others, whose
  /// next collective then fails with that reason rather than a timeout. Not a collective.
  virtual void abandon(const std::string& why) { (void)why; }
  /// What the collectives cost so far, if the group keeps count: per kind, the number of calls and the seconds
  /// this process waited for them (benchmarks/bench_data_parallel.cpp prints them).
  struct Timing {
    std::string kind;
    int64_t calls = 0;
    double seconds = 0;
  };
  virtual std::vector<Timing> timings() const { return {}; }
};

namespace detail {

struct DataParallelState {
  DataParallelGroup* group = nullptr;
  uint64_t seed = 0;
  int64_t iteration = 0;
  int64_t first_position = 0;  ///< this process's first image in the global batch
  bool streams = false;        ///< image_generator() draws per-image streams
};

inline DataParallelState& data_parallel_state() {
  thread_local DataParallelState state;
  return state;
}

/// The purpose word of the samplers' per-image streams (core/random.hpp's convention: "samp").
inline constexpr uint64_t image_stream_purpose = 0x73616d70u;

}  // namespace detail

/// For its lifetime, on this thread: the group a training step's batch is split over (nullptr: one process), and
/// the per-image random streams of iteration `iteration`, whose images start at `first_position` of the global
/// batch. Scopes nest; the previous state comes back at the end.
class DataParallelScope {
 public:
  DataParallelScope(DataParallelGroup* group, uint64_t seed, int64_t iteration, int64_t first_position)
      : previous_(detail::data_parallel_state()) {
    detail::data_parallel_state() = {group, seed, iteration, first_position, true};
  }
  ~DataParallelScope() { detail::data_parallel_state() = previous_; }
  DataParallelScope(const DataParallelScope&) = delete;
  DataParallelScope& operator=(const DataParallelScope&) = delete;

 private:
  detail::DataParallelState previous_;
};

/// The group of the current scope, or nullptr.
inline DataParallelGroup* current_data_parallel_group() { return detail::data_parallel_state().group; }

/// The number of processes sharing the batch (1 without a group).
inline int64_t data_parallel_size() {
  const auto* g = current_data_parallel_group();
  return g ? g->size() : 1;
}

/// Which of an image's random streams a sampler draws from.
enum class ImageStream : uint64_t { rpn_sample = 1, roi_sample = 2 };

/// The random generator of stream `stream` of image `image` of this process's part of the batch: under a scope,
/// a CPU generator seeded from (seed, iteration, position in the global batch, stream) through a 64-bit mix, so
/// the draws do not depend on how the batch is split; without one, LibTorch's default CPU generator
/// (at::manual_seed).
inline at::Generator image_generator(int64_t image, ImageStream stream) {
  const auto& s = detail::data_parallel_state();
  if (!s.streams) return at::detail::getDefaultCPUGenerator();
  // splitmix64 over the four words: consecutive positions and iterations get unrelated seeds.
  uint64_t x = s.seed;
  const auto mix = [&x](uint64_t v) {
    x += 0x9e3779b97f4a7c15ull + v;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    x = z ^ (z >> 31);
  };
  mix(detail::image_stream_purpose);
  mix(static_cast<uint64_t>(s.iteration));
  mix(static_cast<uint64_t>(s.first_position + image));
  mix(static_cast<uint64_t>(stream));
  return at::make_generator<at::CPUGeneratorImpl>(x);
}

/// `t` summed over the processes (a copy; `t` itself when alone). Not differentiable: for statistics and counts.
inline at::Tensor batch_sum(const at::Tensor& t) {
  auto* g = current_data_parallel_group();
  if (g == nullptr || g->size() == 1) return t;
  std::vector<at::Tensor> v{t.detach().clone()};
  g->all_reduce_sum(v);
  return v[0];
}

/// batch_mean with the whole batch's count already summed (`total`, 0-d, from batch_sum): local_sum * P /
/// max(total, 1).
inline at::Tensor batch_mean_of_total(const at::Tensor& local_sum, const at::Tensor& total) {
  const auto scale = static_cast<double>(data_parallel_size());
  return local_sum * (scale / total.to(at::kDouble).clamp_min(1)).to(local_sum.scalar_type());
}

/// The mean over the rows of the whole batch whose local sum is `local_sum` (0-d, in the graph) and local number
/// `count` (0-d, any type): local_sum / max(count, 1) in one process; across P processes local_sum * P /
/// max(total count, 1), whose gradient averaged over the processes is the whole batch's mean's.
inline at::Tensor batch_mean(const at::Tensor& local_sum, const at::Tensor& count) {
  return batch_mean_of_total(local_sum, batch_sum(count.to(at::kDouble)));
}

/// The rows of each of `tensors` ([n, ...], the same n for all of them; n may differ between processes) of every
/// process, concatenated in rank order; the tensors themselves when alone. Detached. The row counts are
/// gathered once for all of them.
inline std::vector<at::Tensor> gather_rows(const std::vector<at::Tensor>& tensors) {
  auto* g = current_data_parallel_group();
  if (g == nullptr || g->size() == 1 || tensors.empty()) return tensors;
  const int64_t own = tensors[0].dim() >= 1 ? tensors[0].size(0) : -1;
  for (const auto& t : tensors)
    TRIDENT_CHECK(t.dim() >= 1 && t.size(0) == own, "trident::gather_rows: every tensor needs the same {} rows, got {}",
                  own, shape_of(t));
  // The row counts first (one host read for all processes), then each tensor's rows padded to the longest.
  const auto counts = at::cat(g->all_gather(at::tensor({own}, at::TensorOptions().dtype(at::kLong)))).cpu();
  const std::vector<int64_t> n(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  const int64_t most = *std::max_element(n.begin(), n.end());
  std::vector<at::Tensor> out;
  for (const auto& t : tensors) {
    auto sizes = t.sizes().vec();
    sizes[0] = most;
    auto padded = at::zeros(sizes, t.options());
    padded.narrow(0, 0, own).copy_(t.detach());
    const auto parts = g->all_gather(padded);
    std::vector<at::Tensor> rows;
    for (size_t r = 0; r < parts.size(); ++r) rows.push_back(parts[r].narrow(0, 0, n[r]));
    out.push_back(at::cat(rows));
  }
  return out;
}

/// gather_rows of one tensor.
inline at::Tensor gather_rows(const at::Tensor& t) { return gather_rows(std::vector<at::Tensor>{t})[0]; }

}  // namespace trident
