#pragma once
/// \file trident/train/grad_scaler.hpp
/// Dynamic loss scaling for mixed-precision training: the loss is multiplied by `scale` before backward so small
/// float16 gradients do not underflow; before the optimizer step the gradients are divided by it and checked.
/// A step whose gradients hold an Inf or NaN is skipped and the scale halved; after `growth_interval` good
/// steps in a row it doubles. The same rule as torch.cuda.amp.GradScaler, written on plain tensor ops so it runs
/// (and is tested) on any device.
#include <trident/config.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/_amp_foreach_non_finite_check_and_unscale.h>
#include <ATen/ops/full.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/logical_and.h>
#include <ATen/ops/zeros.h>

#include <cstdint>
#include <vector>

namespace trident::train {

struct GradScalerOptions {
  double initial_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions options = {}, bool enabled = true)
      : options_(options), enabled_(enabled), scale_(enabled ? options.initial_scale : 1.0) {
    TRIDENT_CHECK(options.initial_scale > 0 && options.growth_factor > 1 && options.backoff_factor > 0 &&
                      options.backoff_factor < 1 && options.growth_interval > 0,
                  "trident::train::GradScaler: need initial_scale > 0, growth_factor > 1, 0 < backoff_factor < 1 "
                  "and growth_interval > 0, got {}, {}, {}, {}",
                  options.initial_scale, options.growth_factor, options.backoff_factor, options.growth_interval);
  }

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  int64_t good_steps() const { return good_steps_; }
  /// Restores the state of a checkpoint.
  void set_state(double scale, int64_t good_steps) {
    scale_ = enabled_ ? scale : 1.0;
    good_steps_ = good_steps;
  }

  /// The loss to call backward() on.
  at::Tensor scale_loss(const at::Tensor& loss) const { return enabled_ ? loss * scale_ : loss; }

  /// Divides every gradient by the scale; true when all of them are finite (the step may be taken). Reading the
  /// verdict is the step's one wait for the device: on CUDA every gradient is unscaled and checked by LibTorch's
  /// fused kernel (at::_amp_foreach_non_finite_check_and_unscale_, what torch.amp.GradScaler calls), elsewhere by
  /// tensor operations that gather the verdict on the device first.
  bool unscale(const std::vector<at::Tensor>& parameters) const {
    if (!enabled_) return true;
    std::vector<at::Tensor> grads;
    for (const auto& p : parameters)
      if (p.grad().defined()) grads.push_back(p.grad());
    if (grads.empty()) return true;
    const auto device = grads.front().device();
    bool fused = device.is_cuda();
    for (const auto& g : grads) fused = fused && g.device() == device && g.is_floating_point();
    if (fused) {
      auto found_inf = at::zeros({1}, grads.front().options().dtype(at::kFloat));
      const auto inv_scale = at::full({1}, 1.0 / scale_, found_inf.options());
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf, inv_scale);
      return found_inf.item<float>() == 0.0f;
    }
    at::Tensor all_finite;
    for (auto& g : grads) {
      g.mul_(1.0 / scale_);
      const auto finite = at::isfinite(g).all();
      all_finite = all_finite.defined() ? all_finite.logical_and(finite.to(all_finite.device())) : finite;
    }
    return all_finite.item<bool>();
  }

  /// After a step (taken or skipped): back off on overflow, grow after growth_interval good steps.
  void update(bool finite) {
    if (!enabled_) return;
    if (!finite) {
      scale_ *= options_.backoff_factor;
      good_steps_ = 0;
    } else if (++good_steps_ >= options_.growth_interval) {
      scale_ *= options_.growth_factor;
      good_steps_ = 0;
    }
  }

 private:
  GradScalerOptions options_;
  bool enabled_;
  double scale_;
  int64_t good_steps_ = 0;
};

}  // namespace trident::train
