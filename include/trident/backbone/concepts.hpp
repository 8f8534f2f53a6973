#pragma once
/// \file trident/backbone/concepts.hpp
/// What a backbone policy is: what TridentNet<Config> builds its stem and its proposal head from. A policy is a
/// type with
///   static constexpr int64_t stem_channels;           // channels of the stem's features (g-hat's width)
///   static constexpr int64_t head_channels;           // channels of the head's output map (g's width)
///   static Stem make_stem(const StemOptions&);         // image [N, 3, H, W] -> features [N, stem_channels, h, w]
///   static Head make_head(BatchNormMode);              // pooled RoIs [K, stem_channels, H', W'] -> [K, head_channels, ...]
/// where Stem and Head are module holders (TORCH_MODULE, or torch::nn::Sequential) with forward(Tensor) ->
/// Tensor. backbone::ResNet<...> (ResNet50, ResNetSmall, ...) is one; any other is welcome. The features' stride
/// is the RPN anchors' stride and the pooler's 1 / spatial_scale (runtime options: NetOptions::rpn.anchors.stride
/// and NetOptions::pooler.spatial_scale, 16 by default). StemOptions says what to freeze and whether batch norms
/// train; a policy without such layers may ignore it.

#include <trident/backbone/resnet.hpp>

#include <ATen/core/Tensor.h>
#include <torch/nn/module.h>

#include <concepts>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace trident::backbone {

namespace detail {
/// A LibTorch module holder: a class with ::ContainedType derived from torch::nn::Module.
template <class H>
concept ModuleHolder = requires { typename std::decay_t<H>::ContainedType; } &&
                       std::derived_from<typename std::decay_t<H>::ContainedType, torch::nn::Module>;
}  // namespace detail

template <class B>
concept BackbonePolicy = requires(const StemOptions& options, BatchNormMode norm, const at::Tensor& x) {
  { B::stem_channels } -> std::convertible_to<int64_t>;
  { B::head_channels } -> std::convertible_to<int64_t>;
  { B::make_stem(options) } -> detail::ModuleHolder;
  { B::make_head(norm) } -> detail::ModuleHolder;
  { B::make_stem(options)->forward(x) } -> std::convertible_to<at::Tensor>;
  { B::make_head(norm)->forward(x) } -> std::convertible_to<at::Tensor>;
};

/// Compile-time diagnosis of a would-be backbone policy: one static_assert per missing piece, each a sentence.
template <class B>
constexpr bool check_backbone() {
  static_assert(requires {
    { B::stem_channels } -> std::convertible_to<int64_t>;
    { B::head_channels } -> std::convertible_to<int64_t>;
  }, "a trident backbone policy needs `static constexpr int64_t stem_channels` and `head_channels` (the widths of "
     "the stem's features and of the head's output)");
  static_assert(requires(const StemOptions& o) {
    { B::make_stem(o) } -> detail::ModuleHolder;
  }, "a trident backbone policy needs `static Stem make_stem(const trident::backbone::StemOptions&)` returning a "
     "module holder (TORCH_MODULE or torch::nn::Sequential) whose forward(image batch) gives the features");
  static_assert(requires(BatchNormMode m) {
    { B::make_head(m) } -> detail::ModuleHolder;
  }, "a trident backbone policy needs `static Head make_head(trident::backbone::BatchNormMode)` returning a module "
     "holder whose forward(pooled RoIs) gives the proposal head's map");
  static_assert(requires(const StemOptions& o, BatchNormMode m, const at::Tensor& x) {
    { B::make_stem(o)->forward(x) } -> std::convertible_to<at::Tensor>;
    { B::make_head(m)->forward(x) } -> std::convertible_to<at::Tensor>;
  }, "a trident backbone policy's stem and head need `at::Tensor forward(const at::Tensor&)`");
  return true;
}

static_assert(BackbonePolicy<ResNet50> && BackbonePolicy<ResNetSmall>);

}  // namespace trident::backbone
