#pragma once
// What the trainer's tests (test_train.cpp), the fault tests (test_faults.cpp) and the CUDA tests share: the small
// configuration with fewer proposals and RoIs on two batches of two generated scenes, and a one-parameter
// "network" with the trainer's interface on batches of blank pictures.
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/zeros.h>

#include <cstdint>
#include <limits>
#include <vector>

namespace trident::test {

/// small_net_options() with fewer proposals and RoIs: a fast run.
inline NetOptions toy_training_options() {
  NetOptions o = small_net_options();
  o.rpn.pre_nms_top_n_train = 300;
  o.rpn.post_nms_top_n_train = 64;
  o.sampler.batch_size_per_image = 32;
  return o;
}

/// Two batches of two generated scenes each, visited in an order drawn from (seed 3, epoch). The scenes' noise
/// comes from LibTorch's generator, seeded here.
inline train::InMemorySource toy_training_source() {
  at::manual_seed(99);
  auto scenes = data::make_toy_scenes(4, 2, 4, 128, 192, 11);
  return train::InMemorySource(train::split_into_batches(scenes.batch, scenes.targets, 2), /*shuffle=*/true,
                               /*seed=*/3);
}

/// A one-parameter "network" whose loss is (w - 1)^2, or NaN from its call number `nan_at` on (never by default).
struct Quadratic : torch::nn::Module {
  explicit Quadratic(int64_t nan_at = std::numeric_limits<int64_t>::max()) : nan_at(nan_at) {
    w = register_parameter("w", at::zeros({1}));
  }
  LossMap losses(const ImageBatch&, const std::vector<Target>&) {
    LossMap out;
    out.add("square", ((w - 1) * (w - 1)).sum() * (calls++ >= nan_at ? std::numeric_limits<double>::quiet_NaN() : 1.0));
    return out;
  }
  at::Tensor w;
  int64_t nan_at;
  int64_t calls = 0;
};

/// `batches` batches of one blank 32 x 32 picture without people: Quadratic's data.
inline train::InMemorySource dummy_source(int batches = 1) {
  std::vector<train::Batch> v(static_cast<size_t>(batches));
  for (auto& b : v) {
    b.images.images = at::zeros({1, 3, 32, 32});
    b.images.sizes = {{32, 32}};
    b.targets = {Target{at::zeros({0, 4}), at::zeros({0}, at::kLong)}};
  }
  return train::InMemorySource(v);
}

}  // namespace trident::test
