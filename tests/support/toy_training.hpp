#pragma once
// The small training run that the trainer's tests (test_train.cpp) and the fault tests (test_faults.cpp) share:
// the small configuration with fewer proposals and RoIs, on two batches of two generated scenes.
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/train/trainer.hpp>

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

}  // namespace trident::test
