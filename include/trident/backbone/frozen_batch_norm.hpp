#pragma once
/// \file trident/backbone/frozen_batch_norm.hpp
/// FrozenBatchNorm2d: batch normalisation with fixed statistics and a fixed affine transform, as
/// torchvision.ops.FrozenBatchNorm2d. Detection backbones use it because a detector's batches (one or two
/// images) are far too small to estimate batch statistics; the ImageNet statistics are kept instead.
///
/// weight, bias, running_mean and running_var are buffers, not parameters: they load from a state dict and move
/// with the module (to(), state dicts), but no optimiser sees them. The module behaves the same in train() and
/// eval() mode:
///   y = x * scale + shift,  scale = weight / sqrt(running_var + eps),  shift = bias - running_mean * scale
///
/// BatchNormMode::trainable turns it into an ordinary BatchNorm2d (weight and bias are parameters, batch
/// statistics in train() mode update the running ones with momentum 0.1, eval() uses the running ones), with the
/// same tensor names. It is meant for backbones trained from scratch (backbone::ResNetSmall on a CPU): a deep
/// network without any normalisation does not train from random weights. Pretrained backbones keep `frozen`.

#include <trident/config.hpp>

#include <ATen/ops/batch_norm.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/zeros.h>
#include <torch/nn/module.h>
#include <torch/nn/pimpl.h>

#include <cstdint>
#include <utility>
#include <ostream>

namespace trident::backbone {

/// Whether the backbone's batch norms are frozen (trident's default with ImageNet weights; SeqNet and NAE train
/// them) or trained (e.g. from scratch).
enum class BatchNormMode { frozen, trainable };

class FrozenBatchNorm2dImpl : public torch::nn::Module {
 public:
  /// num_features: the channel count C of the [N, C, H, W] input. eps = 1e-5 as torchvision.
  explicit FrozenBatchNorm2dImpl(int64_t num_features, double eps = 1e-5, BatchNormMode mode = BatchNormMode::frozen)
      : num_features_(num_features), eps_(eps), mode_(mode) {
    TRIDENT_CHECK(num_features > 0, "trident::backbone::FrozenBatchNorm2d: num_features must be positive, got {}",
                  num_features);
    TRIDENT_CHECK(eps >= 0, "trident::backbone::FrozenBatchNorm2d: eps must be non-negative, got {}", eps);
    if (mode == BatchNormMode::trainable) {
      weight = register_parameter("weight", at::ones({num_features}));
      bias = register_parameter("bias", at::zeros({num_features}));
    } else {
      weight = register_buffer("weight", at::ones({num_features}));
      bias = register_buffer("bias", at::zeros({num_features}));
    }
    running_mean = register_buffer("running_mean", at::zeros({num_features}));
    running_var = register_buffer("running_var", at::ones({num_features}));
  }

  /// x [N, C, H, W] -> [N, C, H, W].
  at::Tensor forward(const at::Tensor& x) {
    TRIDENT_CHECK(x.dim() == 4 && x.size(1) == num_features_,
                  "trident::backbone::FrozenBatchNorm2d::forward: x must be [N, {}, H, W], got {}", num_features_,
                  shape_of(x));
    if (mode_ == BatchNormMode::trainable)
      return at::batch_norm(x, weight, bias, running_mean, running_var, is_training(), 0.1, eps_, true);
    const auto [scale, shift] = affine();
    return x * scale.reshape({1, -1, 1, 1}) + shift.reshape({1, -1, 1, 1});
  }

  /// The fixed affine map this layer applies with its running statistics (frozen, or trainable in eval()):
  /// y = x * scale + shift, both [C]. A convolution followed by this layer equals one convolution with weights
  /// scaled per output channel and `shift` as its bias (see backbone::detail::conv_bn).
  std::pair<at::Tensor, at::Tensor> affine() const {
    auto scale = weight * (running_var + eps_).rsqrt();
    auto shift = bias - running_mean * scale;
    return {std::move(scale), std::move(shift)};
  }

  /// Whether the layer's map is the fixed affine() one right now (frozen, or eval() mode).
  bool is_affine() const { return mode_ == BatchNormMode::frozen || !is_training(); }

  int64_t num_features() const { return num_features_; }
  double eps() const { return eps_; }
  BatchNormMode mode() const { return mode_; }

  void pretty_print(std::ostream& stream) const override {
    stream << "trident::backbone::FrozenBatchNorm2d(" << num_features_ << ", eps=" << eps_ << ")";
  }

  at::Tensor weight, bias, running_mean, running_var;

 private:
  int64_t num_features_;
  double eps_;
  BatchNormMode mode_;
};

/// The module holder (a shared pointer to FrozenBatchNorm2dImpl), as LibTorch's own modules.
TORCH_MODULE(FrozenBatchNorm2d);

}  // namespace trident::backbone
