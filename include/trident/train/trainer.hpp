#pragma once
/// \file trident/train/trainer.hpp
/// The trainer: SGD with the paper's schedule (Section 5.2), or AdamW, over any TridentNet<Config> (or any module
/// with `losses(batch, targets)`), fed by any batch source (data::Loader, or the in-memory source below).
///
///   for every iteration:  lr from the schedule -> losses -> every loss finite? -> backward (scaled under float16
///                         mixed precision) -> clip (option) -> optimizer step -> log row, progress bar
///                         -> checkpoint every N iterations (option)
///   at every epoch end:   checkpoint, draw_curves hook (e.g. the curves PNG), on_epoch_end hook
///
/// Everything a run writes goes into options.out_dir: checkpoint.pt (atomic, checksummed; a start removes the
/// temporary files a killed run left beside it), train_log.csv / .jsonl, and what
/// options.draw_curves writes (02_train: curves.png through viz::training_curves_png, which needs OpenCV).
/// options.resume continues from checkpoint.pt exactly: model and memory, optimizer, schedule position, data
/// position and random state are restored, so k + (n - k) iterations give the same parameters as n uninterrupted
/// ones (on the same device and thread count). A loss that becomes NaN or Inf stops the run
/// with TrainingDiverged naming the loss and the iteration; the last checkpoint is left as it was.
/// Data parallelism (options.group): every process runs fit() on its part of each batch; see
/// train/data_parallel.hpp and TrainerOptions::group. The samplers draw from one random stream per image
/// (core/data_parallel.hpp), seeded by (options.seed, iteration, the image's place in the batch), in one process too.
/// Needs only trident::trident (LibTorch, fmt): nothing here reads pictures or draws.
#include <trident/config.hpp>
#include <trident/core/autocast.hpp>
#include <trident/core/data_parallel.hpp>
#include <trident/core/files.hpp>
#include <trident/core/host_copy.hpp>
#include <trident/core/random.hpp>
#include <trident/core/types.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/data_parallel.hpp>
#include <trident/train/foreach_sgd.hpp>
#include <trident/train/grad_scaler.hpp>
#include <trident/train/log.hpp>
#include <trident/train/progress.hpp>
#include <trident/train/schedule.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/randperm.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>
#include <torch/version.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace trident::train {

/// A batch as the trainer consumes it: the padded images and one Target per image. Under data parallelism each
/// process holds a consecutive part of the global batch, starting at image `first_position` of it (the samplers'
/// random streams are numbered by position in the global batch: core/data_parallel.hpp).
struct Batch {
  ImageBatch images;
  std::vector<Target> targets;
  int64_t first_position = 0;
};

/// What the trainer needs from a data source: its length, a way to position it (epoch e, batch b: the next
/// batch returned is batch b of epoch e, always the same one for the same (e, b)) and the batches in order.
template <class S>
concept BatchSource = requires(S& s, int64_t epoch, int64_t batch) {
  { s.batches_per_epoch() } -> std::convertible_to<int64_t>;
  s.seek(epoch, batch);
  { s.next() } -> std::convertible_to<Batch>;
};

/// `images` (padded, [N, 3, H, W]) and their targets cut into consecutive batches of `batch_size` images (the last
/// one shorter when N is not a multiple), e.g. data::make_toy_scenes' scenes for an InMemorySource.
inline std::vector<Batch> split_into_batches(const ImageBatch& images, const std::vector<Target>& targets,
                                             int64_t batch_size) {
  const int64_t n = images.images.defined() ? images.images.size(0) : 0;
  TRIDENT_CHECK(batch_size > 0, "trident::train::split_into_batches: batch_size must be positive, got {}", batch_size);
  TRIDENT_CHECK(static_cast<int64_t>(images.sizes.size()) == n && static_cast<int64_t>(targets.size()) == n,
                "trident::train::split_into_batches: {} images need {} sizes and {} targets, got {} and {}", n, n, n,
                images.sizes.size(), targets.size());
  std::vector<Batch> out;
  for (int64_t first = 0; first < n; first += batch_size) {
    const int64_t count = std::min(batch_size, n - first);
    Batch b;
    b.images.images = images.images.narrow(0, first, count);
    b.images.sizes.assign(images.sizes.begin() + first, images.sizes.begin() + first + count);
    b.targets.assign(targets.begin() + first, targets.begin() + first + count);
    out.push_back(std::move(b));
  }
  return out;
}

/// Which part of every global batch a process takes under data parallelism: of a batch of n images, process
/// `rank` of `count` takes images [rank * n / count, (rank + 1) * n / count) (rounded down), so the parts follow
/// each other in rank order and differ in size by one image at most.
struct Shard {
  int64_t rank = 0;
  int64_t count = 1;
  int64_t first(int64_t n) const { return rank * n / count; }
  int64_t size(int64_t n) const { return (rank + 1) * n / count - first(n); }
};

/// Batches held in memory (generated scenes, tests). Each epoch visits them in an order drawn from
/// (seed, epoch) when `shuffle` is set. With a `shard`, each batch is a global batch of which this process takes
/// its part (every batch must then hold at least shard.count images).
class InMemorySource {
 public:
  InMemorySource(std::vector<Batch> batches, bool shuffle = false, uint64_t seed = 0, Shard shard = {})
      : batches_(std::move(batches)), shuffle_(shuffle), seed_(seed), shard_(shard) {
    TRIDENT_CHECK(!batches_.empty(), "trident::train::InMemorySource: no batches");
    TRIDENT_CHECK(shard_.count >= 1 && shard_.rank >= 0 && shard_.rank < shard_.count,
                  "trident::train::InMemorySource: shard {} of {} does not exist", shard_.rank, shard_.count);
    for (size_t i = 0; i < batches_.size(); ++i)
      TRIDENT_CHECK(static_cast<int64_t>(batches_[i].targets.size()) >= shard_.count,
                    "trident::train::InMemorySource: batch {} has {} images, fewer than the {} processes sharing it",
                    i, batches_[i].targets.size(), shard_.count);
  }
  int64_t batches_per_epoch() const { return static_cast<int64_t>(batches_.size()); }
  void seek(int64_t epoch, int64_t batch) {
    TRIDENT_CHECK(batch >= 0 && batch < batches_per_epoch(),
                  "trident::train::InMemorySource::seek: batch {} is outside 0..{}", batch, batches_per_epoch() - 1);
    order_.resize(batches_.size());
    for (size_t i = 0; i < order_.size(); ++i) order_[i] = i;
    if (shuffle_) {
      std::mt19937 rng = seeded_generator(seed_, /*purpose "batc"*/ 0x62617463u, epoch);
      trident::shuffle(order_, rng);
    }
    next_ = static_cast<size_t>(batch);
  }
  Batch next() {
    TRIDENT_CHECK(next_ < order_.size(), "trident::train::InMemorySource::next: the epoch is over (seek first)");
    const Batch& whole = batches_[order_[next_++]];
    if (shard_.count == 1) return whole;
    const auto n = static_cast<int64_t>(whole.targets.size());
    const int64_t first = shard_.first(n), count = shard_.size(n);
    Batch part;
    part.images.images = whole.images.images.narrow(0, first, count);
    part.images.sizes.assign(whole.images.sizes.begin() + first, whole.images.sizes.begin() + first + count);
    part.targets.assign(whole.targets.begin() + first, whole.targets.begin() + first + count);
    part.first_position = whole.first_position + first;
    return part;
  }

 private:
  std::vector<Batch> batches_;
  bool shuffle_;
  uint64_t seed_;
  Shard shard_;
  std::vector<size_t> order_;
  size_t next_ = 0;
};

/// The optimizer a run steps with. The paper trains with SGD (momentum 0.9, weight decay 5e-4); AdamW suits
/// networks trained from scratch in a short budget (the small CPU configuration, see docs/training.md).
enum class OptimizerKind { sgd, adamw };

/// Everything a run is told; the paper's values by default (CUHK-SYSU: 14 epochs; PRW: 10).
struct TrainerOptions {
  LrSchedule schedule{};
  int64_t epochs = 14;
  OptimizerKind optimizer = OptimizerKind::sgd;
  double momentum = 0.9;               ///< SGD's momentum; AdamW: beta1 (beta2 is 0.999)
  double weight_decay = 5e-4;          ///< SGD: L2 added to the gradient; AdamW: decoupled decay (times lr)
  /// Whether weight_decay applies to biases (parameters named `bias` or `....bias`) too: true (the default)
  /// decays every trainable parameter, as SeqNet; false gives biases none, as NAE (docs/paper-mapping.md,
  /// "weight decay on biases"). The optimizer then has two parameter groups (other parameters, biases), and a
  /// checkpoint written with the other setting is refused when resumed (its optimizer state has another shape).
  bool decay_biases = true;
  double clip_grad_norm = 0.0;         ///< clip the gradients' global L2 norm to this; 0: no clipping
  std::string out_dir = "out/train";
  int64_t checkpoint_every = 0;        ///< also checkpoint every N iterations; 0: only at epoch ends and at the stop
  bool resume = false;                 ///< continue from out_dir/checkpoint.pt (an error when it is missing)
  /// The configuration's name (e.g. "small", "paper-cuhk-sysu"), recorded in every checkpoint: a resume from a
  /// checkpoint of another named configuration is refused by name (empty: not recorded, not checked).
  std::string configuration;
  /// What else a program needs to rebuild the network from a checkpoint alone, recorded in every checkpoint as
  /// entry 'metadata' (train::checkpoint_metadata reads it back): `name = value` lines, e.g. the picture sizes
  /// and the network options' text (model/options_text.hpp). A resume keeps this run's value.
  std::string metadata;
  int64_t seed = 0;                    ///< seeds LibTorch's generator at a fresh start (sampling, initialisation)
  c10::Device device = c10::kCPU;
  bool mixed_precision = false;        ///< CUDA autocast to amp_dtype (+ loss scaling for float16); CUDA only
  /// The autocast dtype under mixed_precision: at::kHalf (float16, with dynamic loss scaling: its range is
  /// small) or at::kBFloat16 (no loss scaling: bfloat16 has float32's range). Any other type is refused;
  /// without mixed_precision the choice changes nothing.
  at::ScalarType amp_dtype = at::kHalf;
  int64_t max_iterations = -1;         ///< stop after this many iterations in total (a checkpoint is written); -1: all
  int64_t print_every = 20;            ///< progress lines when the output is not a terminal (0: none)
  /// Called with the log at every epoch end and where the run stops, e.g. viz::training_curves_png(path) (the
  /// trainer itself draws nothing, so it needs no OpenCV); empty: nothing is drawn.
  std::function<void(const TrainingLog&)> draw_curves;
  /// After the epoch's checkpoint (e.g. an evaluation). It may switch the network to eval(): fit() switches it
  /// back to train() before the next epoch. Under data parallelism it runs on every process (a hook that
  /// evaluates on rank 0 only keeps the others waiting in the next step's first collective, within the group's
  /// timeout).
  std::function<void(int64_t epoch)> on_epoch_end;
  /// Data parallelism: the processes that share every batch (trident/distributed/ makes one over c10d; see
  /// train/data_parallel.hpp and docs/design.md). Each process runs fit() with its part of every batch (a
  /// sharded source); parameters start as rank 0's, gradients are averaged, every loss is a mean over the whole
  /// batch, the re-id memory is updated with every process's rows in rank order, and rank 0 alone writes the
  /// checkpoint, the log and the curves. nullptr: one process.
  std::shared_ptr<DataParallelGroup> group;
  int64_t bucket_bytes = 25 << 20;     ///< data parallelism: the size of a gradient bucket (train/data_parallel.hpp)
};

/// Tells trident's caches of weights derived from `params` that the values changed. LibTorch's optimizers
/// (torch::optim::SGD, AdamW, ...) write through Tensor::data(), which leaves a parameter's version counter as it
/// was; the folded batch-norm weights of eval() forwards (backbone::detail::FoldedWeights) and TridentNet's CUDA
/// graphs watch those counters, so after such a step an inference forward would use the weights it last folded.
/// fit() calls this after every optimizer step; call it after your own steps before an inference forward (loading
/// a checkpoint, copy_() and other in-place writes already advance the counters).
inline void mark_parameters_updated(const std::vector<at::Tensor>& params) {
  for (const auto& p : params)
    if (p.defined()) p.unsafeGetTensorImpl()->bump_version();
}

/// The autocast dtype a command line names (TrainerOptions::amp_dtype): "float16" or "fp16" -> at::kHalf,
/// "bfloat16" or "bf16" -> at::kBFloat16; anything else is an error naming the value.
inline at::ScalarType amp_dtype_named(std::string_view name) {
  if (name == "float16" || name == "fp16") return at::kHalf;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  fail("trident::train::amp_dtype_named: the mixed-precision type must be float16 (fp16) or bfloat16 (bf16), got "
       "'{}'", name);
}

/// Thrown when a loss or the gradient norm stops being finite.
struct TrainingDiverged : Error {
  using Error::Error;
};

struct TrainSummary {
  int64_t iterations = 0;           ///< completed iterations in total (including those before a resume)
  int64_t iterations_this_run = 0;
  int64_t resumed_from = -1;        ///< the iteration the run resumed from; -1 for a fresh start
  double seconds = 0;               ///< wall time of this run
  double images_per_second = 0;
  std::vector<std::pair<std::string, double>> last_losses;
  std::string checkpoint;           ///< the last checkpoint written
  /// Data parallelism: the seconds this run waited after backward passes for the gradients' sums (the part of
  /// the all-reduce the backward pass did not hide); 0 in one process.
  double gradient_wait_seconds = 0;
};

namespace detail {

/// CUDA autocast to `dtype` for a scope when `on` (core/autocast.hpp; this spelling keeps the trainer's order of
/// arguments).
class AutocastScope : public trident::Autocast {
 public:
  explicit AutocastScope(bool on, at::ScalarType dtype = at::kHalf) : trident::Autocast(dtype, on) {}
};

inline Batch to_device(Batch b, c10::Device device) {
  if (b.images.images.device() == device) return b;
  b.images.images = b.images.images.to(device, /*non_blocking=*/true);
  for (auto& t : b.targets) {
    t.boxes = trident::to_device(t.boxes, device);  // without waiting for the device (core/host_copy.hpp)
    t.pids = trident::to_device(t.pids, device);
  }
  return b;
}

inline bool is_bias(const std::string& name) {
  return name == "bias" || (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

/// The optimizer `o` names over `net`'s trainable parameters `params` (in net.parameters()' order), at the
/// schedule's base learning rate (fit() sets it every iteration): one parameter group, or with
/// `decay_biases = false` two, the biases' without weight decay.
inline std::unique_ptr<torch::optim::Optimizer> make_optimizer(torch::nn::Module& net,
                                                               const std::vector<at::Tensor>& params,
                                                               const TrainerOptions& o) {
  const auto adamw = [&](double decay) {
    return torch::optim::AdamWOptions(o.schedule.base_lr).betas({o.momentum, 0.999}).weight_decay(decay);
  };
  const auto sgd = [&](double decay) {
    return torch::optim::SGDOptions(o.schedule.base_lr).momentum(o.momentum).weight_decay(decay);
  };
  std::vector<at::Tensor> decayed, biases;
  if (o.decay_biases) {
    decayed = params;
  } else {
    for (const auto& item : net.named_parameters())
      if (item.value().requires_grad()) (is_bias(item.key()) ? biases : decayed).push_back(item.value());
  }
  std::vector<torch::optim::OptimizerParamGroup> groups;
  const auto add = [&](std::vector<at::Tensor>& group, double decay) {
    if (group.empty()) return;
    if (o.optimizer == OptimizerKind::adamw)
      groups.emplace_back(group, std::make_unique<torch::optim::AdamWOptions>(adamw(decay)));
    else
      groups.emplace_back(group, std::make_unique<torch::optim::SGDOptions>(sgd(decay)));
  };
  add(decayed, o.weight_decay);
  add(biases, 0.0);
  if (o.optimizer == OptimizerKind::adamw)
    return std::make_unique<torch::optim::AdamW>(std::move(groups), adamw(o.weight_decay));
  // SGD's arithmetic and state, multi-tensor updates (foreach_sgd.hpp).
  return std::make_unique<ForeachSgd>(std::move(groups), sgd(o.weight_decay));
}

inline std::vector<at::Tensor> trainable(torch::nn::Module& net) {
  std::vector<at::Tensor> out;
  for (auto& p : net.parameters())
    if (p.requires_grad()) out.push_back(p);
  return out;
}

}  // namespace detail

/// Trains `net` on `source` (see the file comment). Returns what the run did.
template <class Net, BatchSource Source>
TrainSummary fit(Net& net, Source& source, const TrainerOptions& o) {
  static constexpr const char* caller = "trident::train::fit";
  namespace fs = std::filesystem;
  using clock = std::chrono::steady_clock;
  TRIDENT_CHECK(o.epochs > 0, "{}: epochs must be positive, got {}", caller, o.epochs);
  TRIDENT_CHECK(o.momentum >= 0 && o.weight_decay >= 0 && o.clip_grad_norm >= 0,
                "{}: momentum, weight_decay and clip_grad_norm must be >= 0, got {}, {}, {}", caller, o.momentum,
                o.weight_decay, o.clip_grad_norm);
  TRIDENT_CHECK(o.amp_dtype == at::kHalf || o.amp_dtype == at::kBFloat16,
                "{}: amp_dtype must be at::kHalf (float16, with loss scaling) or at::kBFloat16 (bfloat16), got {}",
                caller, std::string(c10::toString(o.amp_dtype)));
  const char* amp_name = o.amp_dtype == at::kHalf ? "float16" : "bfloat16";
  TRIDENT_CHECK(!o.mixed_precision || o.device.is_cuda(),
                "{}: mixed_precision needs a CUDA device (autocast to {}), the device is {}", caller, amp_name,
                o.device.str());
  const int64_t per_epoch = source.batches_per_epoch();
  TRIDENT_CHECK(per_epoch > 0, "{}: the data source has no batches", caller);
  const int64_t total = o.epochs * per_epoch;
  const int64_t stop = o.max_iterations < 0 ? total : std::min(total, o.max_iterations);
  DataParallelGroup* const group = o.group.get();
  const bool leader = group == nullptr || group->rank() == 0;  // writes the checkpoint, the log, the curves
  const int64_t processes = group ? group->size() : 1;

  net.to(o.device);
  net.train();
  const auto params = detail::trainable(net);
  TRIDENT_CHECK(!params.empty(), "{}: the network has no trainable parameters", caller);
  TRIDENT_CHECK(o.optimizer != OptimizerKind::adamw || o.momentum < 1,
                "{}: AdamW's beta1 (options.momentum) must be below 1, got {}", caller, o.momentum);
  const auto optimizer = detail::make_optimizer(net, params, o);
  GradScaler scaler({}, o.mixed_precision && o.amp_dtype == at::kHalf);  // bfloat16 needs no loss scaling

  const std::string checkpoint = (fs::path(o.out_dir) / "checkpoint.pt").string();
  TrainState state;
  state.iterations_per_epoch = per_epoch;
  state.seed = o.seed;
  state.configuration = o.configuration;
  state.metadata = o.metadata;
  TrainSummary summary;
  // Temporary files of checkpoints whose writer was killed (only this run's rank 0 writes this checkpoint).
  if (leader) remove_stale_partials(checkpoint);
  std::unique_ptr<GradientBuckets> buckets;
  if (group != nullptr) {
    check_same_everywhere(*group,
                          {{"the network's parameter and buffer shapes (fingerprint)", shape_fingerprint(net)},
                           {"iterations per epoch", per_epoch},
                           {"epochs", o.epochs},
                           {"max_iterations", o.max_iterations},
                           {"seed", o.seed},
                           {"resume", o.resume ? 1 : 0},
                           {"optimizer", static_cast<int64_t>(o.optimizer)},
                           {"mixed_precision", o.mixed_precision ? 1 + static_cast<int64_t>(o.amp_dtype) : 0}},
                          caller);
    buckets = std::make_unique<GradientBuckets>(*group, params, o.bucket_bytes);
  }
  if (o.resume) {
    // Under data parallelism rank 0 reads the file and sends its bytes: the other processes need no access to it.
    if (leader)
      TRIDENT_CHECK(fs::exists(checkpoint), "{}: resume asked for, but '{}' does not exist", caller, checkpoint);
    std::optional<std::string> bytes;
    if (group != nullptr)
      bytes = detail::broadcast_bytes(*group, leader ? read_whole_file(checkpoint, caller) : std::string());
    state = load_checkpoint(checkpoint, net, *optimizer,
                            bytes ? std::optional<std::string_view>(*bytes) : std::nullopt, o.configuration);
    if (state.configuration.empty()) state.configuration = o.configuration;  // named from now on
    state.metadata = o.metadata;
    TRIDENT_CHECK(state.iterations_per_epoch == per_epoch,
                  "{}: '{}' was written with {} iterations per epoch, the data source now gives {} (another dataset "
                  "or batch size?)",
                  caller, checkpoint, state.iterations_per_epoch, per_epoch);
    scaler.set_state(state.loss_scale, state.good_steps);
    summary.resumed_from = state.iteration;
    summary.checkpoint = checkpoint;
  } else {
    at::manual_seed(static_cast<uint64_t>(o.seed));
    if (group != nullptr) {
      // Initialised from the same seed already; rank 0's values make it certain (and cover a user's own init).
      broadcast_state(*group, net);
    }
  }
  TrainingLog log = leader ? TrainingLog(o.out_dir, o.resume ? state.iteration : -1) : TrainingLog();
  ProgressBar bar(stop, o.print_every, leader ? stderr : nullptr);

  auto write_checkpoint = [&] {
    if (!leader) return;
    state.loss_scale = scaler.scale();
    state.good_steps = scaler.good_steps();
    save_checkpoint(checkpoint, net, *optimizer, state);
    summary.checkpoint = checkpoint;
  };
  auto draw_curves = [&] {
    if (leader && o.draw_curves) o.draw_curves(log);
  };
  auto diverged = [&](int64_t epoch, const std::string& what) {
    bar.newline();
    throw TrainingDiverged(fmt::format(
        "{}: training diverged at iteration {} (epoch {}): {}; {}", caller, state.iteration, epoch + 1, what,
        !leader                      ? std::string("rank 0 keeps the last good checkpoint")
        : summary.checkpoint.empty() ? std::string("no checkpoint was written yet")
                                     : fmt::format("the last good checkpoint '{}' is intact", summary.checkpoint)));
  };

  const auto start = clock::now();
  int64_t images_seen = 0;
  const int64_t first = state.iteration;
  try {
    while (state.iteration < stop) {
      const int64_t epoch = state.iteration / per_epoch;
      source.seek(epoch, state.iteration - epoch * per_epoch);
      state.epoch = epoch;
      for (int64_t b = state.iteration - epoch * per_epoch; b < per_epoch && state.iteration < stop; ++b) {
        const double lr = learning_rate(o.schedule, state.iteration, per_epoch);
        for (auto& group_options : optimizer->param_groups()) group_options.options().set_lr(lr);
        Batch batch = detail::to_device(source.next(), o.device);

        LossMap losses;
        {
          // The samplers' random streams are those of this iteration's images (core/data_parallel.hpp), and the
          // losses' means and the memory's update span the whole batch of every process.
          const DataParallelScope scope(group, static_cast<uint64_t>(o.seed), state.iteration, batch.first_position);
          detail::AutocastScope autocast(o.mixed_precision, o.amp_dtype);
          losses = net.losses(batch.images, batch.targets);
        }
        // The losses' values reach the host through one copy started now (HostCopy; with several processes, one
        // all-gather after the backward pass); the backward pass is queued before they are read, so on a GPU the
        // host waits for the end of the forward pass only while the device has the backward pass to run. A
        // non-finite loss still stops training before the optimizer step.
        std::vector<std::string> names;
        std::vector<at::Tensor> parts;
        for (const auto& [name, value] : losses) {
          names.push_back(name);
          parts.push_back(value.detach().to(at::kDouble).reshape({1}));
        }
        const auto loss_vector = parts.empty() ? at::empty({0}, at::kDouble) : at::cat(parts);
        std::optional<HostCopy> own_values;
        if (group == nullptr) own_values.emplace(loss_vector);
        optimizer->zero_grad();
        if (buckets) buckets->arm();
        scaler.scale_loss(losses.total()).backward();
        if (buckets) buckets->finish();  // every gradient is now the mean over the processes
        // Every process's losses: each is its share of the whole batch's mean (core/data_parallel.hpp), so their
        // mean over the processes is the batch's loss. A non-finite loss anywhere stops every process.
        const auto per_process =
            group ? group->all_gather(loss_vector) : std::vector<at::Tensor>{own_values->get()};
        std::vector<double> values(names.size(), 0.0);
        std::string bad;  // the first non-finite loss of each process
        for (size_t r = 0; r < per_process.size(); ++r) {
          const auto v = per_process[r].cpu().contiguous();
          bool reported = false;
          for (size_t i = 0; i < names.size(); ++i) {
            const double x = v.data_ptr<double>()[i];
            if (!std::isfinite(x) && !reported) {
              bad += fmt::format("{}loss '{}' is {}{}", bad.empty() ? "" : ", ", names[i], x,
                                 group ? fmt::format(" on rank {}", r) : std::string());
              reported = true;
            }
            values[i] += x / static_cast<double>(processes);
          }
        }
        if (!bad.empty()) diverged(epoch, bad);
        const bool finite = scaler.unscale(params);
        if (finite && o.clip_grad_norm > 0) {
          const double norm = torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
          if (!std::isfinite(norm)) diverged(epoch, fmt::format("the gradient norm is {}", norm));
        }
        if (finite) {
          optimizer->step();
          mark_parameters_updated(params);
        }
        scaler.update(finite);
        ++state.iteration;
        images_seen += static_cast<int64_t>(batch.targets.size()) * processes;

        const double seconds = std::chrono::duration<double>(clock::now() - start).count();
        const double ips = seconds > 0 ? static_cast<double>(images_seen) / seconds : 0.0;
        double total_loss = 0;
        for (double v : values) total_loss += v;
        if (leader) log.add(names, {state.iteration - 1, epoch, lr, values, total_loss, ips, seconds});
        std::string text = fmt::format("loss {:.3f}", total_loss);
        for (size_t i = 0; i < names.size(); ++i) text += fmt::format(" {} {:.3f}", names[i], values[i]);
        text += fmt::format(" | lr {:.2e}", lr);
        const double per_iteration = seconds / static_cast<double>(state.iteration - first);
        const double left = per_iteration * static_cast<double>(stop - state.iteration);
        bar.update(state.iteration, epoch, o.epochs, ips, left, text);
        summary.last_losses.clear();
        for (size_t i = 0; i < names.size(); ++i) summary.last_losses.emplace_back(names[i], values[i]);

        // Not at an epoch's last iteration: the epoch-end checkpoint follows at once, and a checkpoint of the full
        // epoch still naming it "in progress" would, after a kill in between, resume past the epoch end's work.
        if (o.checkpoint_every > 0 && state.iteration % o.checkpoint_every == 0 && state.iteration % per_epoch != 0 &&
            state.iteration < stop)
          write_checkpoint();
      }
      state.epoch = state.iteration / per_epoch;
      const bool epoch_done = state.iteration % per_epoch == 0;
      write_checkpoint();  // at the epoch end, or where the run stops
      if (epoch_done) {
        draw_curves();
        if (o.on_epoch_end) {
          o.on_epoch_end(state.epoch - 1);
          net.train();
        }
      }
    }
  } catch (const TrainingDiverged& e) {
    if (group != nullptr) group->abandon(fmt::format("iteration {}: {}", state.iteration, e.what()));
    throw;
  } catch (const std::exception& e) {
    if (group == nullptr) throw;
    // The others learn why this process stops (a picture that cannot be read, ...); the message says where, and
    // for a failed collective which processes stopped answering (trident/distributed/).
    group->abandon(fmt::format("iteration {}: {}", state.iteration, e.what()));
    bar.newline();
    fail("{}: training stopped at iteration {}: {}", caller, state.iteration, e.what());
  }
  if (state.iteration % per_epoch != 0) draw_curves();
  summary.iterations = state.iteration;
  summary.iterations_this_run = state.iteration - first;
  summary.seconds = std::chrono::duration<double>(clock::now() - start).count();
  if (buckets) summary.gradient_wait_seconds = buckets->exposed_seconds();
  summary.images_per_second = summary.seconds > 0 ? static_cast<double>(images_seen) / summary.seconds : 0.0;
  return summary;
}

}  // namespace trident::train
