#pragma once
/// \file trident/branches/concepts.hpp
/// What a task branch is. A branch is a torch::nn::Module with
///   static constexpr std::string_view name;                        // module name, unique in a configuration
///   static constexpr std::array<std::string_view, N> loss_names;   // every loss it adds (N may be 0)
///   explicit Branch(const BranchSetup&);                            // built for the backbone's widths
///   template <class Weighting, losses::ConfidenceGradient C>
///   void add_losses(const RoiContext&, LossMap&);                   // training: its losses, AGWF-weighted
///   void infer(const RoiContext&, RoiOutputs&);                     // inference: its per-RoI outputs
/// A branch may have runtime options of its own: it declares `using options_type = ...;` (a struct with
/// defaults) and a constructor `Branch(const BranchSetup&, const options_type&)`; a network is then built with
/// them as TridentNet<Cfg>(net_options, my_options...), and with options_type{} where none is given.
/// The loss names of a configuration's branches (and the RPN's rpn_cls and rpn_reg) must differ: checked at
/// compile time, and at run time that a branch adds only the losses it declares.
/// The detection branch additionally computes the confidence every other branch reads:
///   DetectionOutputs detect(const RoiContext&);
/// A branch weights its own losses with the confidence as the configuration says through
/// losses::classification_loss<Weighting, C> (the paper's AGWF of its scores) or
/// losses::confidence_weights<Weighting, C> (alpha, or ones without AGWF).
/// A type that is not a branch is rejected where it is used, with a sentence saying what is missing.

#include <trident/branches/context.hpp>
#include <trident/losses/weighting.hpp>

#include <torch/nn/module.h>

#include <array>
#include <concepts>
#include <ranges>
#include <string_view>
#include <tuple>
#include <type_traits>

namespace trident::branches {

template <class B>
concept HasBranchName = requires {
  { B::name } -> std::convertible_to<std::string_view>;
};

/// `static constexpr std::array<std::string_view, N> loss_names`: a fixed-size array (std::array) of names.
template <class B>
concept HasLossNames = requires {
  typename std::tuple_size<std::remove_cvref_t<decltype(B::loss_names)>>::type;
  requires std::convertible_to<std::ranges::range_value_t<std::remove_cvref_t<decltype(B::loss_names)>>,
                               std::string_view>;
};

/// The branch's own runtime options, when it has any: `options_type` and a constructor from the setup and them.
template <class B>
concept HasBranchOptions = requires { typename B::options_type; } &&
                           std::default_initializable<typename B::options_type> &&
                           std::constructible_from<B, const BranchSetup&, const typename B::options_type&>;

template <class B>
concept Branch = std::derived_from<B, torch::nn::Module> && HasBranchName<B> && HasLossNames<B> &&
                 (std::constructible_from<B, const BranchSetup&> || HasBranchOptions<B>) &&
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
  static_assert(HasLossNames<B>,
                "a trident branch needs `static constexpr std::array<std::string_view, N> loss_names{...};` naming "
                "every loss its add_losses adds (the names are checked for collisions at compile time)");
  static_assert(std::constructible_from<B, const BranchSetup&> || HasBranchOptions<B>,
                "a trident branch needs a constructor `explicit B(const trident::branches::BranchSetup&)`, or, with "
                "options of its own, `using options_type = ...;` (default-constructible) and a constructor "
                "`B(const trident::branches::BranchSetup&, const options_type&)`");
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
