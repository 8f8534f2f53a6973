#pragma once
/// \file trident/branches/concepts.hpp
/// What a task branch is. A branch is a torch::nn::Module with
///   static constexpr std::string_view name;                        // module name and loss prefix, unique
///   explicit Branch(const BranchSetup&);                            // built for the backbone's widths
///   template <class Weighting, losses::ConfidenceGradient C>
///   void add_losses(const RoiContext&, LossMap&);                   // training: its losses, AGWF-weighted
///   void infer(const RoiContext&, RoiOutputs&);                     // inference: its per-RoI outputs
/// The detection branch additionally computes the confidence every other branch reads:
///   DetectionOutputs detect(const RoiContext&);
/// A type that is not a branch is rejected where it is used, with a sentence saying what is missing.

#include <trident/branches/context.hpp>
#include <trident/losses/weighting.hpp>

#include <torch/nn/module.h>

#include <concepts>
#include <string_view>
#include <type_traits>

namespace trident::branches {

template <class B>
concept HasBranchName = requires {
  { B::name } -> std::convertible_to<std::string_view>;
};

template <class B>
concept Branch = std::derived_from<B, torch::nn::Module> && HasBranchName<B> &&
                 std::constructible_from<B, const BranchSetup&> &&
                 requires(B& b, const RoiContext& ctx, LossMap& losses, RoiOutputs& outputs) {
                   b.template add_losses<losses::Agwf, losses::ConfidenceGradient::detached>(ctx, losses);
                   b.infer(ctx, outputs);
                 };

template <class B>
concept DetectionBranchLike = Branch<B> && requires(B& b, const RoiContext& ctx) {
  { b.detect(ctx) } -> std::same_as<DetectionOutputs>;
};

/// Compile-time diagnosis of a would-be branch: one static_assert per missing piece, each a sentence.
template <class B>
constexpr bool check_branch() {
  static_assert(std::derived_from<B, torch::nn::Module>,
                "a trident branch must derive from torch::nn::Module (its layers are registered submodules)");
  static_assert(HasBranchName<B>,
                "a trident branch needs `static constexpr std::string_view name = \"...\";` (its module name and "
                "the prefix of its losses)");
  static_assert(std::constructible_from<B, const BranchSetup&>,
                "a trident branch needs a constructor `explicit B(const trident::branches::BranchSetup&)`");
  static_assert(requires(B& b, const RoiContext& ctx, LossMap& l) {
    b.template add_losses<losses::Agwf, losses::ConfidenceGradient::detached>(ctx, l);
  }, "a trident branch needs `template <class Weighting, trident::losses::ConfidenceGradient C> "
     "void add_losses(const RoiContext&, LossMap&)` (training losses)");
  static_assert(requires(B& b, const RoiContext& ctx, RoiOutputs& o) { b.infer(ctx, o); },
                "a trident branch needs `void infer(const RoiContext&, RoiOutputs&)` (inference outputs, may add "
                "nothing)");
  return true;
}

}  // namespace trident::branches
