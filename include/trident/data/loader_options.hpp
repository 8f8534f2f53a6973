#pragma once
/// \file trident/data/loader_options.hpp
/// data::LoaderOptions, what data::Loader (data/loader.hpp, trident::vision) is told: batch size, workers,
/// prefetch, order, transforms, sharding. Apart from the loader so that a training recipe (train/recipe.hpp) holds
/// them without OpenCV.
#include <trident/data/transforms.hpp>

#include <cstdint>

namespace trident::data {

struct LoaderOptions {
  int64_t batch_size = 2;
  /// Threads that load batches ahead of the consumer; 0 loads each batch on the calling thread inside next().
  int workers = 2;
  /// Batches being loaded or waiting for the consumer, at most (>= 1). Up to min(workers, prefetch) batches are
  /// decoded at the same time.
  int64_t prefetch = 4;
  bool shuffle = true;
  /// Leave out the last batch of an epoch when it would hold fewer than batch_size images.
  bool drop_last = false;
  uint64_t seed = 0;
  TransformOptions transform;
  /// The padded batch's height and width are multiples of this (collate's size_divisible).
  int64_t size_divisible = 32;
  /// LibTorch intra-op threads of each worker (>= 1); see data/loader.hpp's file comment ("Threads").
  int worker_intra_op_threads = 1;
  /// With workers: the value given to cv::setNumThreads (process-wide); -1 leaves OpenCV's setting alone.
  int opencv_threads = 0;
  /// Data parallelism: `batch_size` is then the global batch, shared by `shard_count` processes, and this loader
  /// loads part `shard_rank` of each: of a batch of n images, images [rank * n / count, (rank + 1) * n / count)
  /// (train::Shard). Every process sees the same order and flips as one process would. A last batch with fewer
  /// images than processes is left out (by every process alike).
  int64_t shard_rank = 0;
  int64_t shard_count = 1;
};

}  // namespace trident::data
