#pragma once
/// \file trident/train/schedule.hpp
/// The learning-rate schedule of the paper (Section 5.2): the rate rises linearly from 0 to base_lr over the
/// first epoch, then stays, and is multiplied by gamma at each milestone epoch (x0.1 after epoch 8). A pure
/// function of the iteration, so a resumed run continues on exactly the same curve.
#include <trident/config.hpp>

#include <cstdint>
#include <vector>

namespace trident::train {

struct LrSchedule {
  double base_lr = 3e-3;                ///< the rate after warm-up (paper: 0.003)
  int64_t warmup_iterations = -1;       ///< linear warm-up length; -1: one epoch (the paper), 0: none
  double warmup_start_factor = 0.0;     ///< the warm-up starts at base_lr * this (the paper: from 0)
  std::vector<int64_t> milestones{8};   ///< epochs after which the rate is multiplied by gamma (0-based epoch >= m)
  double gamma = 0.1;
};

/// The learning rate of (0-based) `iteration` in a run of `iterations_per_epoch` iterations per epoch.
/// Warm-up: base_lr * (f + (1 - f) * (iteration + 1) / warmup), so the first step already moves.
inline double learning_rate(const LrSchedule& s, int64_t iteration, int64_t iterations_per_epoch) {
  TRIDENT_CHECK(iterations_per_epoch > 0, "trident::train::learning_rate: iterations_per_epoch must be positive, got {}",
                iterations_per_epoch);
  TRIDENT_CHECK(iteration >= 0, "trident::train::learning_rate: iteration must be >= 0, got {}", iteration);
  TRIDENT_CHECK(s.base_lr > 0, "trident::train::learning_rate: base_lr must be positive, got {}", s.base_lr);
  TRIDENT_CHECK(s.warmup_start_factor >= 0 && s.warmup_start_factor <= 1,
                "trident::train::learning_rate: warmup_start_factor must be in [0, 1], got {}", s.warmup_start_factor);
  const int64_t epoch = iteration / iterations_per_epoch;
  double lr = s.base_lr;
  for (const int64_t m : s.milestones)
    if (epoch >= m) lr *= s.gamma;
  const int64_t warmup = s.warmup_iterations < 0 ? iterations_per_epoch : s.warmup_iterations;
  if (iteration < warmup) {
    const double progress = static_cast<double>(iteration + 1) / static_cast<double>(warmup);
    lr *= s.warmup_start_factor + (1.0 - s.warmup_start_factor) * progress;
  }
  return lr;
}

}  // namespace trident::train
