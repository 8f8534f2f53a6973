#pragma once
/// \file trident/memory/reid_memory.hpp
/// The re-id memory of the paper (Section 4.2, updated "as [21]", OIM, Section 5.2):
///  - LookupTable: one L2-normalised feature per labeled identity, [num_identities, dim]. A labeled proposal
///    (x, y) updates row y <- normalize(m * row_y + (1 - m) * x), sample by sample in batch order, so an identity
///    seen twice in a batch is updated twice in sequence, as OIM's loop does. Momentum m = 0.5 by default.
///  - CircularQueue: the features of the proposals without an identity, [size, dim]. Rows are written in batch
///    order at `head`, wrapping around; head = (head + count) % size. Unlabeled AND background proposals are
///    pushed (the paper's change to OIM).
///  - ReidMemory<LutSize, QueueSize, EmbedDim>: the policy bundling both, with compile-time sizes.
/// Both start at zero, as OIM's do.
///
/// State. LookupTable and CircularQueue are torch::nn::Modules whose state is registered buffers ("features",
/// and the queue's "head", an int64 scalar kept on the CPU in every case). A model that registers the memory as
/// a submodule saves and restores it with its own checkpoint (Module::save / Module::load, torch::save /
/// torch::load), bit for bit, head included; load() checks the restored shapes. Module::to(device / dtype) moves
/// the features; the head stays an int64 CPU tensor.
///
/// Autograd. Updates run under no-grad and write into the buffers in place. A loss computed as x @ table^T
/// directly would save the table for backward, and an update before backward() would then fail autograd's
/// version check. scores() / snapshot() therefore multiply with a *copy* of the memory (the concatenation
/// [table ; queue] is a new tensor), so a training step may compute the loss, update the memory, then call
/// backward(), in any order.
///
/// Distributed training. update(lookup_table, queue, features, labels) is the one function that applies a batch
/// to the memory; a data-parallel trainer all-gathers (features, labels) over its processes and calls it with
/// the gathered batch on every process, which keeps the memories identical.

#include <trident/config.hpp>
#include <trident/core/host_copy.hpp>
#include <trident/core/identity.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <algorithm>
#include <cstdint>
#include <ostream>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace trident::memory {

namespace detail {

inline void check_features(const at::Tensor& features, int64_t dim, std::string_view caller) {
  TRIDENT_CHECK(features.defined() && features.dim() == 2 && features.size(1) == dim,
                "{}: features must be a [B, {}] tensor, got {}", caller, dim, shape_of(features));
  TRIDENT_CHECK(features.is_floating_point(), "{}: features must be floating point, got {}", caller,
                std::string(c10::toString(features.scalar_type())));
}

/// labels [rows] int64 -> a host copy, every value checked to lie in [low, high).
inline std::vector<int64_t> host_labels(const at::Tensor& labels, int64_t rows, int64_t low, int64_t high,
                                        std::string_view caller, std::string_view arg) {
  TRIDENT_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == rows,
                "{}: {} must be a [{}] tensor (one per feature row), got {}", caller, arg, rows, shape_of(labels));
  TRIDENT_CHECK(labels.scalar_type() == at::kLong, "{}: {} must be int64, got {}", caller, arg,
                std::string(c10::toString(labels.scalar_type())));
  const auto cpu = labels.cpu().contiguous();
  std::vector<int64_t> out(cpu.data_ptr<int64_t>(), cpu.data_ptr<int64_t>() + rows);
  for (size_t i = 0; i < out.size(); ++i)
    TRIDENT_CHECK(out[i] >= low && out[i] < high, "{}: {}[{}] must lie in [{}, {}), got {}", caller, arg, i, low,
                  high, out[i]);
  return out;
}

/// Host indices on `device`, without waiting for it (core/host_copy.hpp).
inline at::Tensor index_tensor(const std::vector<int64_t>& values, const at::Device& device) {
  return to_device(at::tensor(c10::ArrayRef<int64_t>(values), at::TensorOptions().dtype(at::kLong)), device);
}

}  // namespace detail

class CircularQueueImpl;

/// Runtime options of the look-up table.
struct LookupTableOptions {
  double momentum = 0.5;  ///< m of the OIM update (OIM and SeqNet use 0.5)
};

/// The look-up table of identity features, [num_identities, dim]; see the header's comment.
class LookupTableImpl : public torch::nn::Module {
 public:
  LookupTableImpl(int64_t num_identities, int64_t dim, LookupTableOptions options = {}) : options_(options) {
    constexpr std::string_view caller = "trident::memory::LookupTable";
    TRIDENT_CHECK(num_identities >= 1, "{}: num_identities must be >= 1, got {}", caller, num_identities);
    TRIDENT_CHECK(dim >= 1, "{}: dim must be >= 1, got {}", caller, dim);
    TRIDENT_CHECK(options.momentum >= 0 && options.momentum <= 1, "{}: options.momentum must lie in [0, 1], got {}",
                  caller, options.momentum);
    features_ = register_buffer("features", at::zeros({num_identities, dim}));
  }

  /// OIM update, in batch order: row y <- normalize(m * row_y + (1 - m) * x) for each (x, y).
  /// features [B, dim], identities [B] int64 in [0, num_identities). Runs under no-grad; features are detached.
  void update(const at::Tensor& features, const at::Tensor& identities) {
    constexpr std::string_view caller = "trident::memory::LookupTable::update";
    detail::check_features(features, dim(), caller);
    const auto ids = detail::host_labels(identities, features.size(0), 0, num_identities(), caller, "identities");
    apply(features, ids);
  }

  const at::Tensor& features() const { return features_; }
  int64_t num_identities() const { return features_.size(0); }
  int64_t dim() const { return features_.size(1); }
  const LookupTableOptions& options() const { return options_; }

  void load(torch::serialize::InputArchive& archive) override {
    const auto before = features_.sizes().vec();
    torch::nn::Module::load(archive);
    TRIDENT_CHECK(features_.sizes().vec() == before, "trident::memory::LookupTable::load: the checkpoint's features "
                  "are {}, this table is [{}, {}]", shape_of(features_), before[0], before[1]);
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "trident::memory::LookupTable(num_identities=" << num_identities() << ", dim=" << dim()
           << ", momentum=" << options_.momentum << ")";
  }

 private:
  friend void update(LookupTableImpl&, CircularQueueImpl&, const at::Tensor&, const at::Tensor&, bool);

  /// The update for checked host identities. Occurrences of an identity are applied in rounds: round r updates
  /// the r-th occurrence of every identity at once, which equals the sequential loop (distinct rows per round).
  void apply(const at::Tensor& features, const std::vector<int64_t>& ids) {
    if (ids.empty()) return;
    at::NoGradGuard no_grad;
    const auto x = features.detach().to(features_.device(), features_.scalar_type());
    std::unordered_map<int64_t, size_t> seen;
    std::vector<std::vector<int64_t>> positions, rows;
    for (size_t i = 0; i < ids.size(); ++i) {
      const size_t round = seen[ids[i]]++;
      if (round == positions.size()) positions.emplace_back(), rows.emplace_back();
      positions[round].push_back(static_cast<int64_t>(i));
      rows[round].push_back(ids[i]);
    }
    const double m = options_.momentum;
    for (size_t r = 0; r < positions.size(); ++r) {
      const auto row_index = detail::index_tensor(rows[r], features_.device());
      const auto blended = features_.index_select(0, row_index) * m +
                           x.index_select(0, detail::index_tensor(positions[r], features_.device())) * (1.0 - m);
      features_.index_copy_(0, row_index, blended / blended.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12));
    }
  }

  LookupTableOptions options_;
  at::Tensor features_;
};
TORCH_MODULE(LookupTable);

/// The circular queue of unlabeled and background proposal features, [size, dim]; see the header's comment.
class CircularQueueImpl : public torch::nn::Module {
 public:
  CircularQueueImpl(int64_t size, int64_t dim) {
    constexpr std::string_view caller = "trident::memory::CircularQueue";
    TRIDENT_CHECK(size >= 1, "{}: size must be >= 1, got {}", caller, size);
    TRIDENT_CHECK(dim >= 1, "{}: dim must be >= 1, got {}", caller, dim);
    features_ = register_buffer("features", at::zeros({size, dim}));
    head_ = register_buffer("head", at::scalar_tensor(0, at::kLong));
  }

  /// Writes the rows of features [B, dim] in order at head, wrapping around, and advances head by B (mod size).
  /// When B > size only the last `size` rows remain, each where the sequential loop would have left it.
  void push(const at::Tensor& features) {
    constexpr std::string_view caller = "trident::memory::CircularQueue::push";
    detail::check_features(features, dim(), caller);
    const auto count = features.size(0);
    if (count == 0) return;
    at::NoGradGuard no_grad;
    const auto kept = std::min(count, size());
    const auto x = features.detach().narrow(0, count - kept, kept).to(features_.device(), features_.scalar_type());
    const auto start = (head() + count - kept) % size();
    const auto slots = (at::arange(kept, features_.options().dtype(at::kLong)) + start).remainder(size());
    features_.index_copy_(0, slots, x);
    head_.fill_((head() + count) % size());
  }

  const at::Tensor& features() const { return features_; }
  /// The next slot to be written.
  int64_t head() const {
    const trident::detail::HostPath host_path;  // the head lives on the host: reading it waits for nothing
    return head_.item<int64_t>();
  }
  int64_t size() const { return features_.size(0); }
  int64_t dim() const { return features_.size(1); }

  // Module::to moves every buffer; the head stays an int64 CPU scalar.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override {
    features_.set_data(features_.to(device, dtype, non_blocking));
  }
  void to(torch::Dtype dtype, bool non_blocking = false) override {
    features_.set_data(features_.to(dtype, non_blocking));
  }
  void to(torch::Device device, bool non_blocking = false) override {
    features_.set_data(features_.to(device, non_blocking));
  }

  void load(torch::serialize::InputArchive& archive) override {
    const auto before = features_.sizes().vec();
    torch::nn::Module::load(archive);
    TRIDENT_CHECK(features_.sizes().vec() == before, "trident::memory::CircularQueue::load: the checkpoint's "
                  "features are {}, this queue is [{}, {}]", shape_of(features_), before[0], before[1]);
    TRIDENT_CHECK(head_.numel() == 1, "trident::memory::CircularQueue::load: the checkpoint's head must be a "
                  "scalar, got {}", shape_of(head_));
    head_.set_data(head_.to(at::kCPU, at::kLong).reshape({}));
    TRIDENT_CHECK(head() >= 0 && head() < size(), "trident::memory::CircularQueue::load: the checkpoint's head "
                  "must lie in [0, {}), got {}", size(), head());
  }

  void pretty_print(std::ostream& stream) const override {
    stream << "trident::memory::CircularQueue(size=" << size() << ", dim=" << dim() << ")";
  }

 private:
  at::Tensor features_;
  at::Tensor head_;
};
TORCH_MODULE(CircularQueue);

/// Applies one batch to the memory: rows labeled with an identity (>= 0) update the look-up table (in batch
/// order), unlabeled (-1) and background (-2) rows are pushed into the queue (in batch order). features [B, dim],
/// labels [B] int64 in {-2, -1} U [0, num_identities), on the host or on the features' device (read on the host:
/// pass a host copy, such as SampledProposals::pids_on_host, where waiting for the device matters). This is the
/// hook a distributed trainer calls with the all-gathered batch.
/// With `queue_background` false, background rows are left out of the queue (OIM's and SeqNet's choice).
inline void update(LookupTableImpl& lookup_table, CircularQueueImpl& queue, const at::Tensor& features,
                   const at::Tensor& labels, bool queue_background = true) {
  constexpr std::string_view caller = "trident::memory::update";
  TRIDENT_CHECK(lookup_table.dim() == queue.dim(), "{}: the look-up table has dim {}, the queue {}", caller,
                lookup_table.dim(), queue.dim());
  detail::check_features(features, lookup_table.dim(), caller);
  const auto ids = detail::host_labels(labels, features.size(0), background_identity, lookup_table.num_identities(),
                                       caller, "labels");
  std::vector<int64_t> labeled_rows, labeled_ids, queued_rows;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= 0) {
      labeled_rows.push_back(static_cast<int64_t>(i));
      labeled_ids.push_back(ids[i]);
    } else if (queue_background || ids[i] != background_identity) {
      queued_rows.push_back(static_cast<int64_t>(i));
    }
  }
  at::NoGradGuard no_grad;
  const auto x = features.detach();
  if (!labeled_rows.empty())
    lookup_table.apply(x.index_select(0, detail::index_tensor(labeled_rows, x.device())), labeled_ids);
  if (!queued_rows.empty()) queue.push(x.index_select(0, detail::index_tensor(queued_rows, x.device())));
}

/// Scores of embeddings [N, dim] against a copy of [lookup table ; queue]: [N, num_identities + queue size], the
/// look-up table in the first columns. Safe to update the memory before backward() (see the header's comment).
inline at::Tensor scores(const LookupTableImpl& lookup_table, const CircularQueueImpl& queue,
                         const at::Tensor& embeddings) {
  constexpr std::string_view caller = "trident::memory::scores";
  TRIDENT_CHECK(embeddings.defined() && embeddings.dim() == 2 && embeddings.size(1) == lookup_table.dim(),
                "{}: embeddings must be a [N, {}] tensor, got {}", caller, lookup_table.dim(), shape_of(embeddings));
  TRIDENT_CHECK(embeddings.device() == lookup_table.features().device(), "{}: embeddings are on {}, the memory on {}",
                caller, embeddings.device().str(), lookup_table.features().device().str());
  // at::cat allocates: the product saves this copy for backward, never the buffers that update() writes.
  const auto snapshot = at::cat({lookup_table.features(), queue.features()}, 0).to(embeddings.scalar_type());
  return at::matmul(embeddings, snapshot.t());
}

/// Runtime options of the re-id memory.
struct ReidMemoryOptions {
  double momentum = 0.5;  ///< the look-up table's OIM momentum
  /// Whether background proposals enter the circular queue beside the unlabeled ones. The paper: yes ("the
  /// circular queue temporally contains the background proposals as well"); OIM and SeqNet queue unlabeled
  /// people only.
  bool queue_background = true;
};

/// The re-id memory policy: a look-up table of LutSize identities and a circular queue of QueueSize entries,
/// both of EmbedDim features. The sizes shape the score matrix, hence compile-time. A torch::nn::Module: register
/// it in the model (register_module("memory", std::make_shared<ReidMemory<...>>())) to checkpoint it.
template <int64_t LutSize, int64_t QueueSize, int64_t EmbedDim>
class ReidMemory : public torch::nn::Module {
  static_assert(LutSize > 0, "ReidMemory<LutSize, QueueSize, EmbedDim>: the look-up table needs at least one "
                             "identity (LutSize > 0)");
  static_assert(QueueSize > 0, "ReidMemory<LutSize, QueueSize, EmbedDim>: the circular queue needs at least one "
                               "entry (QueueSize > 0)");
  static_assert(EmbedDim > 0, "ReidMemory<LutSize, QueueSize, EmbedDim>: the embedding width must be positive "
                              "(EmbedDim > 0)");

 public:
  static constexpr int64_t lut_size = LutSize;
  static constexpr int64_t queue_size = QueueSize;
  static constexpr int64_t embedding_dim = EmbedDim;
  /// Columns of the score matrix: look-up table first, then the queue.
  static constexpr int64_t num_columns = LutSize + QueueSize;

  explicit ReidMemory(ReidMemoryOptions options = {})
      : lookup_table(register_module("lookup_table", LookupTable(LutSize, EmbedDim,
                                                                 LookupTableOptions{options.momentum}))),
        queue(register_module("queue", CircularQueue(QueueSize, EmbedDim))),
        queue_background_(options.queue_background) {}

  /// embeddings [N, EmbedDim] -> scores [N, num_columns] against a copy of the memory.
  at::Tensor scores(const at::Tensor& embeddings) const { return memory::scores(*lookup_table, *queue, embeddings); }

  /// Applies a batch of (features [B, EmbedDim], labels [B]) to the memory; see memory::update.
  void update(const at::Tensor& features, const at::Tensor& labels) {
    memory::update(*lookup_table, *queue, features, labels, queue_background_);
  }

  LookupTable lookup_table;
  CircularQueue queue;

 private:
  bool queue_background_;
};

}  // namespace trident::memory
