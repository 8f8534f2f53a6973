#pragma once
/// \file trident/data/loader.hpp
/// A prefetching, deterministic, resumable loader of training batches (and of test images in order).
///
///   LoaderOptions options;
///   options.batch_size = 4;
///   options.seed = 7;
///   Loader loader(dataset, dataset.train, options);
///   loader.set_state(checkpoint.loader_state);          // optional: resume exactly where a run stopped
///   while (auto batch = loader.next()) {                 // one epoch; the next call starts the next epoch
///     model->forward(batch->collated.batch, batch->collated.targets);
///     checkpoint.loader_state = loader.state();          // {epoch, next_batch}: save it with the weights
///   }
///
/// Worker threads decode pictures (OpenCV) and run the training transforms (data/transforms.hpp) ahead of the
/// consumer into a bounded set of at most `prefetch` batches, so the model does not wait on JPEG decoding. Part
/// of trident::vision (OpenCV).
///
/// Determinism. Every batch is a function of (seed, epoch, batch index) alone — never of the worker count or of
/// timing: the order of epoch e is a Fisher–Yates shuffle of the indices driven by a std::mt19937 seeded with
/// (seed, e) through std::seed_seq (core/random.hpp: both fully specified by the standard; std::shuffle and
/// std::uniform_* distributions are not, so they are not used), and the random flip of the sample at position p of epoch e
/// draws from a std::mt19937 seeded with (seed, e, p). Batch b of an epoch holds the positions
/// [b * batch_size, (b + 1) * batch_size). The loader's state is {epoch, next_batch}; set_state(s) makes the
/// next batch returned be batch s.next_batch of epoch s.epoch, identical to that of an uninterrupted run.
///
/// Errors. A worker's failure (a missing or corrupt picture, bad boxes) is kept with the batch it was loading and
/// rethrown by next() when the consumer reaches that batch, as a trident::Error that names the loader, the epoch,
/// the batch, the image index and its path. The failing batch stays failed: the next call to next() throws again
/// (set_state skips it, if the caller wants to). Destroying a loader mid-epoch stops and joins its workers; a
/// worker finishes the picture it is decoding first.
///
/// Threads. LibTorch's intra-op thread count (trident::use_all_cores) is process-wide in effect: with Debian's
/// OpenMP build, every new thread that runs a parallel ATen kernel (the bilinear resize, the normalisation) first
/// copies the process-wide count, so W workers would each start a full OpenMP team next to the model's. The
/// workers therefore set their own count to `worker_intra_op_threads` (1 by default) on start, and the loader
/// then restores the process-wide value the calling thread had, so that the caller and threads started later are
/// unaffected. OpenCV's thread count (cv::setNumThreads) is process-wide only: with workers, the loader sets it
/// to `opencv_threads` (0 = OpenCV runs sequentially, as each worker is already one thread) unless that is -1.
/// Workers run under at::NoGradGuard; no tensor they produce requires grad.
///
/// A Loader is driven from one thread (next, state, set_state are not to be called concurrently). It copies
/// the image records it needs, so the Dataset may go away after construction.
#include <trident/config.hpp>
#include <trident/core/random.hpp>
#include <trident/core/types.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/loader_options.hpp>
#include <trident/data/pictures.hpp>

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <opencv2/core.hpp>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace trident::data {

/// Where a loader stands: the next batch next() returns is batch `next_batch` of epoch `epoch`
/// (next_batch == batches_per_epoch() means the epoch is over: next() returns nothing and moves to epoch + 1).
struct LoaderState {
  int64_t epoch = 0;
  int64_t next_batch = 0;
  friend bool operator==(const LoaderState&, const LoaderState&) = default;
};

/// One batch from a Loader: the collated images and targets and, per image (in batch order), what maps the
/// network's outputs back to the dataset.
struct LoadedBatch {
  CollatedBatch collated;                ///< images [B, 3, H, W] (normalised, zero-padded), sizes, targets
  std::vector<int64_t> images;           ///< index of each image in Dataset::images
  std::vector<double> scales;            ///< resize factor of each image (TrainingSample::scale)
  std::vector<ImageSize> original_sizes; ///< {H, W} of each picture on disk
  std::vector<bool> flipped;             ///< whether each image was mirrored (its target boxes are)
  LoaderState position;                  ///< this batch: {epoch, batch index}
  int64_t first_position = 0;            ///< its first image's place in the global batch (LoaderOptions::shard_rank)
};

/// Options for running a model over images in their given order: one image per batch, no shuffle, no flip
/// (the test split for evaluation). A Loader built with them yields each image once per epoch, in order.
inline LoaderOptions in_order_options(int workers = 2, TransformOptions transform = {}) {
  LoaderOptions options;
  options.batch_size = 1;
  options.workers = workers;
  options.shuffle = false;
  options.drop_last = false;
  options.transform = transform;
  options.transform.flip_probability = 0.0;
  return options;
}

namespace detail {

inline constexpr uint32_t epoch_order_purpose = 0x6f726465u;  // "orde"
inline constexpr uint32_t sample_flip_purpose = 0x666c6970u;  // "flip"

}  // namespace detail

class Loader {
 public:
  /// A loader over `indices` (into dataset.images; e.g. dataset.train), starting at epoch 0, batch 0.
  Loader(const Dataset& dataset, std::vector<int64_t> indices, LoaderOptions options = {})
      : options_(std::move(options)), indices_(std::move(indices)) {
    constexpr const char* fn = "trident::data::Loader";
    TRIDENT_CHECK(options_.batch_size >= 1, "{}: options.batch_size must be >= 1, got {}", fn, options_.batch_size);
    TRIDENT_CHECK(options_.workers >= 0, "{}: options.workers must be >= 0, got {}", fn, options_.workers);
    TRIDENT_CHECK(options_.prefetch >= 1, "{}: options.prefetch must be >= 1, got {}", fn, options_.prefetch);
    TRIDENT_CHECK(options_.size_divisible >= 1, "{}: options.size_divisible must be >= 1, got {}", fn,
                  options_.size_divisible);
    TRIDENT_CHECK(options_.worker_intra_op_threads >= 1, "{}: options.worker_intra_op_threads must be >= 1, got {}",
                  fn, options_.worker_intra_op_threads);
    TRIDENT_CHECK(options_.transform.flip_probability >= 0.0 && options_.transform.flip_probability <= 1.0,
                  "{}: options.transform.flip_probability must be in [0, 1], got {}", fn,
                  options_.transform.flip_probability);
    TRIDENT_CHECK(!indices_.empty(), "{}: no image to load (indices is empty)", fn);
    TRIDENT_CHECK(indices_.size() <= 0xffffffffu, "{}: at most 2^32 - 1 images, got {}", fn, indices_.size());
    const auto num = static_cast<int64_t>(indices_.size());
    TRIDENT_CHECK(!options_.drop_last || num >= options_.batch_size,
                  "{}: drop_last with {} images and batch_size {} leaves no batch", fn, num, options_.batch_size);
    records_.reserve(indices_.size());
    for (size_t i = 0; i < indices_.size(); ++i) {
      const int64_t index = indices_[i];
      TRIDENT_CHECK(index >= 0 && index < static_cast<int64_t>(dataset.images.size()),
                    "{}: indices[{}] = {} is not an image of the dataset (it has {})", fn, i, index,
                    dataset.images.size());
      records_.push_back(dataset.images[static_cast<size_t>(index)]);
    }
    TRIDENT_CHECK(options_.shard_count >= 1 && options_.shard_rank >= 0 && options_.shard_rank < options_.shard_count,
                  "{}: options.shard_rank {} must lie in [0, shard_count = {})", fn, options_.shard_rank,
                  options_.shard_count);
    TRIDENT_CHECK(options_.batch_size >= options_.shard_count,
                  "{}: a batch of {} images cannot be shared by {} processes (batch_size is the global batch)", fn,
                  options_.batch_size, options_.shard_count);
    // A short last batch is kept unless drop_last, or unless it cannot give every process an image.
    const int64_t rest = num % options_.batch_size;
    const bool keep_rest = rest > 0 && !options_.drop_last && rest >= options_.shard_count;
    batches_per_epoch_ = num / options_.batch_size + (keep_rest ? 1 : 0);
    TRIDENT_CHECK(batches_per_epoch_ > 0, "{}: {} images make no batch of {} for {} process(es)", fn, num,
                  options_.batch_size, options_.shard_count);
    start_workers();
  }

  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  ~Loader() { stop_workers(); }

  const LoaderOptions& options() const { return options_; }
  int64_t batches_per_epoch() const { return batches_per_epoch_; }
  int64_t size() const { return static_cast<int64_t>(indices_.size()); }

  /// The next batch to be returned (save it in a checkpoint; give it back to set_state to resume).
  LoaderState state() const { return state_; }

  /// Makes batch `state.next_batch` of epoch `state.epoch` the next one returned (0 <= next_batch <=
  /// batches_per_epoch()). Batches already prefetched are dropped and the workers restart from there.
  void set_state(LoaderState state) {
    TRIDENT_CHECK(state.epoch >= 0 && state.next_batch >= 0 && state.next_batch <= batches_per_epoch_,
                  "trident::data::Loader::set_state: need epoch >= 0 and 0 <= next_batch <= {}, got epoch {}, "
                  "next_batch {}", batches_per_epoch_, state.epoch, state.next_batch);
    stop_workers();
    state_ = state;
    start_workers();
  }

  /// The next batch of the current epoch, or nothing when the epoch is over (the state then moves to the next
  /// epoch's batch 0, so a `while (auto b = loader.next())` loop runs one epoch). Rethrows a worker's error.
  std::optional<LoadedBatch> next() {
    if (state_.next_batch >= batches_per_epoch_) {
      state_ = {state_.epoch + 1, 0};
      return std::nullopt;
    }
    const int64_t sequence = sequence_of(state_);
    if (options_.workers == 0) {
      LoadedBatch batch = load_batch(state_, slots_cached(*this, state_.epoch, consumer_cache_));
      ++state_.next_batch;
      return batch;
    }
    std::unique_lock lock(mutex_);
    batch_ready_.wait(lock, [&] { return ready_.count(sequence) > 0; });
    auto it = ready_.find(sequence);
    if (it->second.error) std::rethrow_exception(it->second.error);  // kept: the batch stays failed
    LoadedBatch batch = std::move(*it->second.batch);
    ready_.erase(it);
    consumed_ = sequence + 1;
    lock.unlock();
    work_allowed_.notify_all();
    ++state_.next_batch;
    return batch;
  }

  /// The dataset image indices of epoch `epoch` in loading order (shuffled by (seed, epoch) when shuffle is on).
  std::vector<int64_t> epoch_order(int64_t epoch) const {
    std::vector<int64_t> order;
    for (const int64_t slot : epoch_slots(epoch)) order.push_back(indices_[static_cast<size_t>(slot)]);
    return order;
  }

  /// LibTorch's intra-op thread count inside each worker, as the workers report it (empty without workers).
  std::vector<int> worker_threads() const {
    std::lock_guard lock(mutex_);
    return worker_threads_;
  }

 private:
  struct Slot {
    std::optional<LoadedBatch> batch;
    std::exception_ptr error;
  };

  int64_t sequence_of(LoaderState s) const { return s.epoch * batches_per_epoch_ + s.next_batch; }
  LoaderState state_of(int64_t sequence) const {
    return {sequence / batches_per_epoch_, sequence % batches_per_epoch_};
  }

  /// Positions into indices_ in the loading order of epoch `epoch`.
  std::vector<int64_t> epoch_slots(int64_t epoch) const {
    std::vector<int64_t> order(indices_.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    if (!options_.shuffle) return order;
    std::mt19937 rng = seeded_generator(options_.seed, detail::epoch_order_purpose, epoch);
    trident::shuffle(order, rng);
    return order;
  }

  /// Loads batch `at` given its epoch's slots (epoch_slots). Throws trident::Error naming the image.
  LoadedBatch load_batch(LoaderState at, const std::vector<int64_t>& slots) const {
    const auto num = static_cast<int64_t>(slots.size());
    const int64_t whole_begin = at.next_batch * options_.batch_size;
    const int64_t whole = std::min(num, whole_begin + options_.batch_size) - whole_begin;
    const int64_t begin = whole_begin + options_.shard_rank * whole / options_.shard_count;
    const int64_t end = whole_begin + (options_.shard_rank + 1) * whole / options_.shard_count;
    LoadedBatch out;
    out.position = at;
    out.first_position = begin - whole_begin;
    std::vector<at::Tensor> images;
    std::vector<Target> targets;
    for (int64_t p = begin; p < end; ++p) {
      if (stop_.load()) break;  // the loader is going away: this batch is never read
      const auto slot = static_cast<size_t>(slots[static_cast<size_t>(p)]);
      const ImageRecord& record = records_[slot];
      std::mt19937 rng = seeded_generator(options_.seed, detail::sample_flip_purpose, at.epoch, p);
      TrainingSample sample;
      try {
        sample = prepare_training_sample(record, options_.transform, rng);
      } catch (const std::exception& e) {
        trident::fail("trident::data::Loader: epoch {}, batch {}: image {} ('{}'): {}", at.epoch, at.next_batch,
                      indices_[slot], record.path, e.what());
      }
      images.push_back(std::move(sample.image));
      targets.push_back(std::move(sample.target));
      out.images.push_back(indices_[slot]);
      out.scales.push_back(sample.scale);
      out.original_sizes.push_back(sample.original_size);
      out.flipped.push_back(sample.flipped);
    }
    if (!images.empty()) out.collated = collate(images, std::move(targets), options_.size_divisible);
    return out;
  }

  /// The slots of `epoch`, computed once per epoch into `cache` (one cache per thread).
  static const std::vector<int64_t>& slots_cached(const Loader& loader, int64_t epoch,
                                                  std::pair<int64_t, std::vector<int64_t>>& cache) {
    if (cache.first != epoch) cache = {epoch, loader.epoch_slots(epoch)};
    return cache.second;
  }

  void worker_main() {
    at::get_num_threads();  // LibTorch's lazy per-thread initialisation from the process-wide count, done now
    at::set_num_threads(options_.worker_intra_op_threads);  // ... so that this sticks for this thread
    const at::NoGradGuard no_grad;
    {
      std::lock_guard lock(mutex_);
      worker_threads_.push_back(at::get_num_threads());
    }
    worker_started_.notify_all();
    std::pair<int64_t, std::vector<int64_t>> cache{-1, {}};
    for (;;) {
      int64_t sequence = 0;
      {
        std::unique_lock lock(mutex_);
        work_allowed_.wait(lock, [&] { return stop_.load() || claimed_ < consumed_ + options_.prefetch; });
        if (stop_.load()) return;
        sequence = claimed_++;
      }
      Slot slot;
      try {
        const LoaderState at = state_of(sequence);
        slot.batch = load_batch(at, slots_cached(*this, at.epoch, cache));
      } catch (...) {
        slot.error = std::current_exception();
      }
      {
        std::lock_guard lock(mutex_);
        ready_.emplace(sequence, std::move(slot));
      }
      batch_ready_.notify_all();
    }
  }

  void start_workers() {
    stop_ = false;
    ready_.clear();
    consumed_ = claimed_ = sequence_of(state_);
    if (options_.workers == 0) return;
    if (options_.opencv_threads >= 0) cv::setNumThreads(options_.opencv_threads);
    const int caller_threads = at::get_num_threads();
    worker_threads_.clear();
    for (int w = 0; w < options_.workers; ++w) workers_.emplace_back([this] { worker_main(); });
    std::unique_lock lock(mutex_);
    worker_started_.wait(lock, [&] { return worker_threads_.size() == static_cast<size_t>(options_.workers); });
    lock.unlock();
    at::set_num_threads(caller_threads);  // the process-wide count the workers overwrote, back to the caller's
  }

  void stop_workers() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    work_allowed_.notify_all();
    for (auto& worker : workers_) worker.join();
    workers_.clear();
  }

  LoaderOptions options_;
  std::vector<int64_t> indices_;
  std::vector<ImageRecord> records_;  // records_[i] is dataset.images[indices_[i]]
  int64_t batches_per_epoch_ = 0;
  LoaderState state_;
  std::pair<int64_t, std::vector<int64_t>> consumer_cache_{-1, {}};  // epoch_slots for workers == 0

  mutable std::mutex mutex_;
  std::condition_variable work_allowed_, batch_ready_, worker_started_;
  std::atomic<bool> stop_{false};
  int64_t claimed_ = 0;   // the next sequence number a worker takes
  int64_t consumed_ = 0;  // the next sequence number the consumer takes
  std::map<int64_t, Slot> ready_;
  std::vector<int> worker_threads_;
  std::vector<std::jthread> workers_;
};

}  // namespace trident::data
