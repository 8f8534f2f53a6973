#pragma once
/// \file trident/backbone/resnet.hpp
/// The backbone policy: torchvision-compatible ResNets split, as in the paper (section 5.2), into
///   - the stem, conv1 .. conv4 (torchvision: conv1, bn1, relu, maxpool, layer1, layer2, layer3), which maps an
///     image [N, 3, H, W] to features [N, stem_channels, ceil(H/16), ceil(W/16)], and
///   - the head, conv5 (torchvision: layer4), applied to each pooled proposal: [K, stem_channels, 24, 8] ->
///     [K, head_channels, 12, 4]. It returns the feature map; pooling happens in the branches.
///
/// The blocks are torchvision's (ResNet v1.5: a Bottleneck strides on its 3x3 convolution) with
/// FrozenBatchNorm2d everywhere, and every module carries torchvision's name (conv1, bn1, layer1.0.conv1,
/// layer1.0.downsample.0, layer1.0.downsample.1, ..., layer4.2.bn3), so a torchvision state dict maps 1:1 onto
/// stem + head (see trident/backbone/weights.hpp).
///
/// The policy ResNet<Block, L1, L2, L3, L4, BaseWidth> fixes what shapes the program: the block type, the blocks
/// per stage and the width of the first stage (64 in torchvision; stage i has BaseWidth * 2^(i-1) planes and
/// outputs planes * Block::Impl::expansion channels). Which stages are frozen is a runtime option (StemOptions).
///
///   using Backbone = trident::backbone::ResNet50;
///   auto stem = Backbone::make_stem();    // conv1 + layer1 frozen, batch norms frozen (trident's default)
///   auto head = Backbone::make_head();
///   at::Tensor features = stem(images);   // [N, 1024, H/16, W/16]
///   at::Tensor per_roi = head(pooled);    // [K, 1024, 24, 8] -> [K, 2048, 12, 4]

#include <trident/backbone/frozen_batch_norm.hpp>
#include <trident/config.hpp>
#include <trident/core/autocast.hpp>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/conv2d.h>
#include <ATen/ops/cudnn_convolution_add_relu.h>
#include <ATen/ops/cudnn_convolution_relu.h>
#include <ATen/ops/max_pool2d.h>
#include <torch/enum.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <array>
#include <atomic>
#include <concepts>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <tuple>
#include <utility>

namespace trident::backbone {

namespace detail {

/// A bias-free k x k convolution with "same" padding, as torchvision's conv1x1 / conv3x3 / the 7x7 conv1.
inline torch::nn::Conv2d conv(int64_t in_channels, int64_t out_channels, int64_t kernel, int64_t stride) {
  return torch::nn::Conv2d(
      torch::nn::Conv2dOptions(in_channels, out_channels, kernel).stride(stride).padding(kernel / 2).bias(false));
}

/// The projection shortcut (torchvision's `downsample`): conv1x1 with the block's stride, then batch norm.
/// Empty (a null holder) when the block keeps both the channel count and the resolution.
inline torch::nn::Sequential shortcut(int64_t in_channels, int64_t out_channels, int64_t stride, BatchNormMode norm) {
  if (stride == 1 && in_channels == out_channels) return torch::nn::Sequential(nullptr);
  return torch::nn::Sequential(conv(in_channels, out_channels, 1, stride), FrozenBatchNorm2d(out_channels, 1e-5, norm));
}

/// The weights of one convolution with the batch norm after it folded in, kept between forwards without autograd
/// for as long as nothing they derive from changes: each source tensor's storage and version counter are
/// compared on every use, so a loaded checkpoint, an in-place write (both bump the counter) or a move to another
/// device (new storage) recomputes them. LibTorch's optimizers write through .data(), which does not bump it:
/// train::fit marks the parameters after each step (train::mark_parameters_updated). With autograd on, they are
/// recomputed every time, in the graph (training with frozen batch norms differentiates through the scaling).
/// Safe for concurrent forwards.
class FoldedWeights {
 public:
  /// {weight * scale in `layout`, shift}: conv2d with these equals bn(conv(x)). `dtype`: both cast to it (the
  /// parameters' dtype when unset).
  std::pair<at::Tensor, at::Tensor> get(const torch::nn::Conv2dImpl& conv, const FrozenBatchNorm2dImpl& bn,
                                        at::MemoryFormat layout,
                                        std::optional<at::ScalarType> dtype = std::nullopt) const {
    if (at::GradMode::is_enabled()) return compute(conv, bn, layout, dtype);
    const std::array<const at::Tensor*, 5> sources{&conv.weight, &bn.weight, &bn.bias, &bn.running_mean,
                                                   &bn.running_var};
    std::array<int64_t, 5> versions{};
    std::array<const void*, 5> storage{};
    for (size_t i = 0; i < sources.size(); ++i) {
      if (sources[i]->is_inference()) return compute(conv, bn, layout, dtype);  // no version counter to watch
      versions[i] = sources[i]->_version();
      storage[i] = sources[i]->data_ptr();
    }
    const std::lock_guard<std::mutex> lock(*mutex_);
    if (!weight_.defined() || layout != layout_ || dtype != dtype_ || versions != versions_ || storage != storage_) {
      std::tie(weight_, shift_) = compute(conv, bn, layout, dtype);
      layout_ = layout;
      dtype_ = dtype;
      versions_ = versions;
      storage_ = storage;
    }
    return {weight_, shift_};
  }

 private:
  static std::pair<at::Tensor, at::Tensor> compute(const torch::nn::Conv2dImpl& conv, const FrozenBatchNorm2dImpl& bn,
                                                   at::MemoryFormat layout, std::optional<at::ScalarType> dtype) {
    auto [scale, shift] = bn.affine();
    auto weight = conv.weight * scale.reshape({-1, 1, 1, 1});
    if (dtype) {
      weight = weight.to(*dtype);
      shift = shift.to(*dtype);
    }
    return {weight.contiguous(layout), std::move(shift)};
  }

  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
  mutable at::Tensor weight_, shift_;
  mutable at::MemoryFormat layout_ = at::MemoryFormat::Contiguous;
  mutable std::optional<at::ScalarType> dtype_;
  mutable std::array<int64_t, 5> versions_{};
  mutable std::array<const void*, 5> storage_{};
};

/// `conv` followed by `bn` as one convolution: conv2d(x, weight * scale, shift) with bn's fixed affine map
/// folded in (exact up to float rounding), weights and output channels-last (NHWC), the layout oneDNN's CPU
/// convolutions compute in, so that no layer reorders its input or output. Only valid while bn->is_affine().
/// `folded` keeps the scaled weights between inference forwards.
inline at::Tensor conv_bn(const at::Tensor& x, const torch::nn::Conv2dImpl& conv, const FrozenBatchNorm2dImpl& bn,
                          const FoldedWeights& folded) {
  // An empty batch (no RoIs) stays NCHW: LibTorch 1.13's strided 3x3 convolution fails on an empty channels-last
  // input.
  const auto layout = x.size(0) == 0 ? at::MemoryFormat::Contiguous : at::MemoryFormat::ChannelsLast;
  const auto [weight, shift] = folded.get(conv, bn, layout);
  const int64_t pad = conv.weight.size(-1) / 2;  // detail::conv's "same" padding
  return at::conv2d(x.contiguous(layout), weight, shift, *conv.options.stride(), {pad, pad});
}

/// The process-wide switch of cuDNN's fused epilogues (set_cudnn_epilogue_fusion).
inline std::atomic<bool>& cudnn_epilogue_fusion_setting() {
  static std::atomic<bool> on = [] {
    const char* text = std::getenv("TRIDENT_CUDNN_FUSION");
    return text != nullptr && std::string_view(text) == "1";
  }();
  return on;
}

/// Whether conv_bn_relu hands `x`'s convolution, bias, residual and ReLU to cuDNN as one call.
inline bool fuses_epilogue(const at::Tensor& x) {
  return cudnn_epilogue_fusion_setting().load() && x.is_cuda() && !at::GradMode::is_enabled() && x.dim() == 4 &&
         x.size(0) > 0;
}

/// relu(conv_bn(x) + residual) (residual optional). With cuDNN epilogue fusion on (set_cudnn_epilogue_fusion),
/// on CUDA and without autograd, one call: cuDNN adds the folded batch norm's shift, the residual and the ReLU
/// in the convolution's epilogue (`at::cudnn_convolution_relu`, `at::cudnn_convolution_add_relu`) instead of
/// three more passes over the output. These operators are outside autocast's lists, so under autocast the input,
/// the residual and the cached folded weights are cast to autocast's dtype here, as at::conv2d would be.
/// Elsewhere: conv_bn, then the in-place add and ReLU.
inline at::Tensor conv_bn_relu(const at::Tensor& x, const torch::nn::Conv2dImpl& conv, const FrozenBatchNorm2dImpl& bn,
                               const FoldedWeights& folded, const at::Tensor& residual = {}) {
  if (fuses_epilogue(x)) {
    constexpr auto layout = at::MemoryFormat::ChannelsLast;
    const auto dtype = Autocast::enabled() ? Autocast::dtype() : x.scalar_type();
    const auto [weight, shift] = folded.get(conv, bn, layout, dtype);
    const int64_t pad = conv.weight.size(-1) / 2;
    const auto in = x.to(dtype).contiguous(layout);
    const auto stride = *conv.options.stride();
    if (residual.defined())
      return at::cudnn_convolution_add_relu(in, weight, residual.to(dtype).contiguous(layout), 1.0, shift, stride,
                                            {pad, pad}, {1, 1}, 1);
    return at::cudnn_convolution_relu(in, weight, shift, stride, {pad, pad}, {1, 1}, 1);
  }
  auto out = conv_bn(x, conv, bn, folded);
  if (residual.defined()) out += residual;
  return out.relu_();
}

}  // namespace detail

/// cuDNN's fused epilogues for the folded convolutions of inference on CUDA (detail::conv_bn_relu): the bias,
/// the residual and the ReLU computed by the convolution itself. Off by default until a device check has
/// measured it (docs/performance.md); the environment variable TRIDENT_CUDNN_FUSION=1 turns it on at start-up.
/// Training (autograd on) and the CPU never use it.
inline void set_cudnn_epilogue_fusion(bool on) { detail::cudnn_epilogue_fusion_setting().store(on); }
inline bool cudnn_epilogue_fusion() { return detail::cudnn_epilogue_fusion_setting().load(); }

/// When a ResNet folds each batch norm into the convolution before it (detail::conv_bn), see
/// set_batch_norm_folding. Folding needs the batch norm to be a fixed affine map: frozen, or in eval() mode.
enum class Folding {
  off,        ///< every layer on its own, NCHW, as torchvision runs it
  inference,  ///< in eval() mode only
  always,     ///< (the default) wherever the map is fixed: eval(), and train() with frozen batch norms (the paper's
              ///< ImageNet-initialised backbone). Same outputs and gradients up to float rounding, faster
              ///< (docs/performance.md).
};

namespace detail {

/// Whether a module in train() mode (`training`) with these batch norms runs its folded form.
template <class... Norms>
bool can_fold(Folding folding, bool training, const Norms&... norms) {
  if (folding == Folding::off || (training && folding != Folding::always)) return false;
  return (norms->is_affine() && ...);
}

/// The block's shortcut of x, folded: the projection (`downsample` = conv + bn) or x itself.
inline at::Tensor folded_shortcut(const at::Tensor& x, const torch::nn::Sequential& downsample,
                                  const FoldedWeights& folded) {
  if (!downsample) return x;
  return conv_bn(x, *downsample->ptr(0)->as<torch::nn::Conv2dImpl>(), *downsample->ptr(1)->as<FrozenBatchNorm2dImpl>(),
                 folded);
}

inline void check_block_arguments(const char* block, int64_t in_channels, int64_t planes, int64_t stride) {
  TRIDENT_CHECK(in_channels > 0, "trident::backbone::{}: in_channels must be positive, got {}", block, in_channels);
  TRIDENT_CHECK(planes > 0, "trident::backbone::{}: planes must be positive, got {}", block, planes);
  TRIDENT_CHECK(stride == 1 || stride == 2, "trident::backbone::{}: stride must be 1 or 2, got {}", block, stride);
}

}  // namespace detail

/// The ResNet-50/101/152 block (v1.5): 1x1 reduce -> 3x3 (strided) -> 1x1 expand to planes * 4, plus the shortcut.
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t expansion = 4;

  BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride = 1, BatchNormMode norm = BatchNormMode::frozen) {
    detail::check_block_arguments("Bottleneck", in_channels, planes, stride);
    conv1 = register_module("conv1", detail::conv(in_channels, planes, 1, 1));
    bn1 = register_module("bn1", FrozenBatchNorm2d(planes, 1e-5, norm));
    conv2 = register_module("conv2", detail::conv(planes, planes, 3, stride));
    bn2 = register_module("bn2", FrozenBatchNorm2d(planes, 1e-5, norm));
    conv3 = register_module("conv3", detail::conv(planes, planes * expansion, 1, 1));
    bn3 = register_module("bn3", FrozenBatchNorm2d(planes * expansion, 1e-5, norm));
    downsample = detail::shortcut(in_channels, planes * expansion, stride, norm);
    if (downsample) register_module("downsample", downsample);
  }

  at::Tensor forward(const at::Tensor& x) {
    if (detail::can_fold(folding, is_training(), bn1, bn2, bn3)) return forward_folded(x);
    auto out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out)).relu_();
    out = bn3(conv3(out));
    out += downsample ? downsample->forward(x) : x;
    return out.relu_();
  }

  /// The same function with each batch norm folded into its convolution, channels-last (detail::conv_bn).
  at::Tensor forward_folded(const at::Tensor& x) {
    auto out = detail::conv_bn_relu(x, *conv1, *bn1, folded_[0]);
    out = detail::conv_bn_relu(out, *conv2, *bn2, folded_[1]);
    return detail::conv_bn_relu(out, *conv3, *bn3, folded_[2], detail::folded_shortcut(x, downsample, folded_[3]));
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  FrozenBatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};  ///< null when the shortcut is the identity
  /// When forward() runs forward_folded() (see backbone::set_batch_norm_folding).
  Folding folding = Folding::always;

 private:
  std::array<detail::FoldedWeights, 4> folded_;  // conv1, conv2, conv3, downsample
};
TORCH_MODULE(Bottleneck);

/// The ResNet-18/34 block: two 3x3 convolutions (the first strided), plus the shortcut.
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t expansion = 1;

  BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride = 1, BatchNormMode norm = BatchNormMode::frozen) {
    detail::check_block_arguments("BasicBlock", in_channels, planes, stride);
    conv1 = register_module("conv1", detail::conv(in_channels, planes, 3, stride));
    bn1 = register_module("bn1", FrozenBatchNorm2d(planes, 1e-5, norm));
    conv2 = register_module("conv2", detail::conv(planes, planes, 3, 1));
    bn2 = register_module("bn2", FrozenBatchNorm2d(planes, 1e-5, norm));
    downsample = detail::shortcut(in_channels, planes * expansion, stride, norm);
    if (downsample) register_module("downsample", downsample);
  }

  at::Tensor forward(const at::Tensor& x) {
    if (detail::can_fold(folding, is_training(), bn1, bn2)) return forward_folded(x);
    auto out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out));
    out += downsample ? downsample->forward(x) : x;
    return out.relu_();
  }

  /// The same function with each batch norm folded into its convolution, channels-last (detail::conv_bn).
  at::Tensor forward_folded(const at::Tensor& x) {
    const auto out = detail::conv_bn_relu(x, *conv1, *bn1, folded_[0]);
    return detail::conv_bn_relu(out, *conv2, *bn2, folded_[1], detail::folded_shortcut(x, downsample, folded_[2]));
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  FrozenBatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};  ///< null when the shortcut is the identity
  /// When forward() runs forward_folded() (see backbone::set_batch_norm_folding).
  Folding folding = Folding::always;

 private:
  std::array<detail::FoldedWeights, 3> folded_;  // conv1, conv2, downsample
};
TORCH_MODULE(BasicBlock);

/// A residual block usable in ResNet<Block, ...>: a module holder (TORCH_MODULE) whose Impl declares
/// `static constexpr int64_t expansion` and is constructible from (in_channels, planes, stride, BatchNormMode).
template <class B>
concept ResidualBlock = requires {
  typename B::Impl;
  { B::Impl::expansion } -> std::convertible_to<int64_t>;
}
&&std::derived_from<typename B::Impl, torch::nn::Module>&&
    std::constructible_from<typename B::Impl, int64_t, int64_t, int64_t, BatchNormMode>;

/// What ResNetStemImpl / ResNetHeadImpl read from a policy (ResNet<...> satisfies it).
template <class P>
concept ResNetPolicy = requires {
  typename P::block_type;
  { P::blocks_per_stage[0] } -> std::convertible_to<int64_t>;
  { P::base_width } -> std::convertible_to<int64_t>;
  { P::stem_channels } -> std::convertible_to<int64_t>;
  { P::head_channels } -> std::convertible_to<int64_t>;
}
&&ResidualBlock<typename P::block_type>;

namespace detail {

/// torchvision's ResNet._make_layer: `blocks` blocks of `planes`, the first one strided (and projecting the
/// shortcut when needed). `channels` enters as the stage's input width and leaves as its output width.
template <ResidualBlock Block>
torch::nn::Sequential make_stage(int64_t& channels, int64_t planes, int64_t blocks, int64_t stride,
                                 BatchNormMode norm) {
  torch::nn::Sequential stage;
  stage->push_back(Block(channels, planes, stride, norm));
  channels = planes * Block::Impl::expansion;
  for (int64_t i = 1; i < blocks; ++i) stage->push_back(Block(channels, planes, 1, norm));
  return stage;
}

/// torchvision's initialisation of a ResNet's convolutions (kaiming normal, fan_out, ReLU gain); the batch norms
/// start as the identity (weight 1, bias 0, mean 0, var 1). Pretrained weights overwrite all of it.
inline void init_convolutions(torch::nn::Module& module) {
  at::NoGradGuard no_grad;
  for (auto& p : module.parameters()) {
    if (p.dim() == 4) torch::nn::init::kaiming_normal_(p, 0.0, torch::kFanOut, torch::kReLU);
  }
}

inline void set_requires_grad(torch::nn::Module& module, bool requires_grad) {
  for (auto& p : module.parameters()) p.requires_grad_(requires_grad);
}

}  // namespace detail

/// How much of the stem is frozen (requires_grad = false), counted from the input: each value freezes its stage
/// and all earlier ones. The batch norms are always frozen (they hold buffers, not parameters).
enum class FrozenUpTo : int {
  none = 0,    ///< everything trains (e.g. a small network trained from scratch)
  conv1 = 1,   ///< conv1 and bn1's scale and shift; with BatchNormMode::trainable bn1 still normalises with the
               ///< batch's statistics in train(): SeqNet's and NAE's choice (docs/paper-mapping.md, "Choices")
  layer1 = 2,  ///< conv1 and layer1: the default (torchvision's detection default; SeqNet and NAE freeze only
               ///< conv1 and bn1 and train the other batch norms: docs/paper-mapping.md, "Choices")
  layer2 = 3,
  layer3 = 4,  ///< the whole stem
};

struct StemOptions {
  FrozenUpTo frozen_up_to = FrozenUpTo::layer1;
  BatchNormMode norm = BatchNormMode::frozen;  ///< trainable: for a backbone trained from scratch
};

/// conv1 .. conv4: image [N, 3, H, W] -> features [N, out_channels(), ceil(H/16), ceil(W/16)].
/// Built from a policy: ResNetStem(ResNet50{}, options), or ResNet50::make_stem(options).
class ResNetStemImpl : public torch::nn::Module {
 public:
  static constexpr int64_t stride = 16;

  template <ResNetPolicy Policy>
  explicit ResNetStemImpl(Policy /*policy*/, StemOptions options = {}) : out_channels_(Policy::stem_channels) {
    using Block = typename Policy::block_type;
    constexpr int64_t width = Policy::base_width;
    int64_t channels = width;
    conv1 = register_module("conv1", detail::conv(3, width, 7, 2));
    bn1 = register_module("bn1", FrozenBatchNorm2d(width, 1e-5, options.norm));
    layer1 = register_module("layer1", detail::make_stage<Block>(channels, width, Policy::blocks_per_stage[0], 1, options.norm));
    layer2 = register_module("layer2", detail::make_stage<Block>(channels, 2 * width, Policy::blocks_per_stage[1], 2, options.norm));
    layer3 = register_module("layer3", detail::make_stage<Block>(channels, 4 * width, Policy::blocks_per_stage[2], 2, options.norm));
    detail::init_convolutions(*this);
    set_frozen_up_to(options.frozen_up_to);
  }

  at::Tensor forward(const at::Tensor& images) {
    TRIDENT_CHECK(images.dim() == 4 && images.size(1) == 3,
                  "trident::backbone::ResNetStem::forward: images must be [N, 3, H, W], got {}", shape_of(images));
    auto x = detail::can_fold(folding, is_training(), bn1) ? detail::conv_bn_relu(images, *conv1, *bn1, folded_)
                                                           : bn1(conv1(images)).relu_();
    x = at::max_pool2d(x, {3, 3}, {2, 2}, {1, 1});
    return layer3->forward(layer2->forward(layer1->forward(x)));
  }

  /// Freezes conv1 .. `stage` (requires_grad = false) and unfreezes the stages after it.
  void set_frozen_up_to(FrozenUpTo stage) {
    const int last = static_cast<int>(stage);
    TRIDENT_CHECK(last >= 0 && last <= 4,
                  "trident::backbone::ResNetStem::set_frozen_up_to: stage must be a FrozenUpTo value (0..4), got {}",
                  last);
    detail::set_requires_grad(*conv1, last < 1);
    detail::set_requires_grad(*bn1, last < 1);  // its scale and shift (parameters only when trainable)
    detail::set_requires_grad(*layer1, last < 2);
    detail::set_requires_grad(*layer2, last < 3);
    detail::set_requires_grad(*layer3, last < 4);
    frozen_up_to_ = stage;
  }

  FrozenUpTo frozen_up_to() const { return frozen_up_to_; }
  int64_t out_channels() const { return out_channels_; }

  torch::nn::Conv2d conv1{nullptr};
  FrozenBatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr};
  /// When bn1 folds into conv1 (the blocks have their own setting; see backbone::set_batch_norm_folding).
  Folding folding = Folding::always;

 private:
  int64_t out_channels_;
  FrozenUpTo frozen_up_to_ = FrozenUpTo::none;
  detail::FoldedWeights folded_;  // conv1 + bn1
};
TORCH_MODULE(ResNetStem);

/// conv5, applied per proposal: [K, in_channels(), h, w] -> [K, out_channels(), ceil(h/2), ceil(w/2)]
/// (the paper's 24 x 8 RoIs become 12 x 4). Trainable; its batch norms are frozen like the stem's.
class ResNetHeadImpl : public torch::nn::Module {
 public:
  static constexpr int64_t stride = 2;

  template <ResNetPolicy Policy>
  explicit ResNetHeadImpl(Policy /*policy*/, BatchNormMode norm = BatchNormMode::frozen)
      : in_channels_(Policy::stem_channels), out_channels_(Policy::head_channels) {
    using Block = typename Policy::block_type;
    int64_t channels = in_channels_;
    layer4 = register_module(
        "layer4", detail::make_stage<Block>(channels, 8 * Policy::base_width, Policy::blocks_per_stage[3], 2, norm));
    detail::init_convolutions(*this);
  }

  at::Tensor forward(const at::Tensor& rois) {
    TRIDENT_CHECK(rois.dim() == 4 && rois.size(1) == in_channels_,
                  "trident::backbone::ResNetHead::forward: RoI features must be [K, {}, h, w], got {}", in_channels_,
                  shape_of(rois));
    return layer4->forward(rois);
  }

  int64_t in_channels() const { return in_channels_; }
  int64_t out_channels() const { return out_channels_; }

  torch::nn::Sequential layer4{nullptr};

 private:
  int64_t in_channels_;
  int64_t out_channels_;
};
TORCH_MODULE(ResNetHead);

namespace detail {
template <class Block>
constexpr int64_t expansion_of() {
  if constexpr (ResidualBlock<Block>) {
    return Block::Impl::expansion;
  } else {
    return 0;  // only reached after ResNet's static_assert has reported the bad Block
  }
}
}  // namespace detail

/// The backbone policy. Block: Bottleneck or BasicBlock (or any ResidualBlock); L1 .. L4: blocks in layer1 ..
/// layer4 (conv2_x .. conv5_x); BaseWidth: planes of layer1 (64 in torchvision; the later stages double it).
template <class Block, int L1, int L2, int L3, int L4, int BaseWidth>
struct ResNet {
  static_assert(ResidualBlock<Block>,
                "ResNet<Block, ...>: Block must be a residual block module such as Bottleneck or BasicBlock: a "
                "TORCH_MODULE holder whose Impl has `static constexpr int64_t expansion` and a constructor "
                "(in_channels, planes, stride, BatchNormMode)");
  static_assert(L1 > 0 && L2 > 0 && L3 > 0 && L4 > 0,
                "ResNet<Block, L1, L2, L3, L4, BaseWidth>: every stage needs at least one block");
  static_assert(BaseWidth > 0,
                "ResNet<Block, L1, L2, L3, L4, BaseWidth>: BaseWidth (64 in torchvision) must be positive");

  using block_type = Block;
  static constexpr std::array<int64_t, 4> blocks_per_stage{L1, L2, L3, L4};
  static constexpr int64_t base_width = BaseWidth;
  static constexpr int64_t expansion = detail::expansion_of<Block>();
  static constexpr int64_t stem_channels = 4 * BaseWidth * expansion;  ///< output of layer3 (conv4), stride 16
  static constexpr int64_t head_channels = 8 * BaseWidth * expansion;  ///< output of layer4 (conv5)
  static constexpr int64_t stem_stride = ResNetStemImpl::stride;

  static ResNetStem make_stem(StemOptions options = {}) { return ResNetStem(ResNet{}, options); }
  static ResNetHead make_head(BatchNormMode norm = BatchNormMode::frozen) { return ResNetHead(ResNet{}, norm); }
};

/// Sets when every block of `module` (a stem, a head, a whole network) runs folded: each convolution absorbs the
/// batch norm after it and runs channels-last -- the same outputs up to float rounding, faster on the CPU
/// (docs/performance.md). Folding::always (the default) folds wherever the batch norms are a fixed map: in
/// eval() mode, and in train() mode where they are frozen; Folding::inference only in eval() mode;
/// Folding::off runs every layer on its own, as torchvision does. Trainable batch norms in train() mode never
/// fold (their batch statistics change every step).
inline void set_batch_norm_folding(torch::nn::Module& module, Folding folding) {
  auto set = [folding](torch::nn::Module& m) {
    if (auto* b = m.as<BottleneckImpl>()) b->folding = folding;
    else if (auto* bb = m.as<BasicBlockImpl>()) bb->folding = folding;
    else if (auto* st = m.as<ResNetStemImpl>()) st->folding = folding;
  };
  set(module);  // modules(include_self = true) needs a module owned by a shared_ptr; this one may not be
  for (auto& m : module.modules(/*include_self=*/false)) set(*m);
}

/// torchvision's resnet18 / resnet34 / resnet50 / resnet101 (their ImageNet weights load with weights.hpp).
using ResNet18 = ResNet<BasicBlock, 2, 2, 2, 2, 64>;
using ResNet34 = ResNet<BasicBlock, 3, 4, 6, 3, 64>;
using ResNet50 = ResNet<Bottleneck, 3, 4, 6, 3, 64>;  ///< the paper's backbone: stem 1024, head 2048 channels
using ResNet101 = ResNet<Bottleneck, 3, 4, 23, 3, 64>;

/// A small policy for tests and CPU training: ResNet-50's block with a quarter of its width (stem 256, head 512
/// channels, so every channel count is ResNet-50's / 4) and two blocks per stage instead of 3, 4, 6, 3:
/// about 0.88 M parameters against 23.5 M and about 1/20 of the multiply-adds. No pretrained weights exist for it;
/// train it from scratch with StemOptions{.frozen_up_to = FrozenUpTo::none, .norm = BatchNormMode::trainable}.
using ResNetSmall = ResNet<Bottleneck, 2, 2, 2, 2, 16>;

}  // namespace trident::backbone
