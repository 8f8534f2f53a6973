#pragma once
/// \file trident/model/config.hpp
/// A trident configuration: a flat list of policies, each with the paper's choice as default.
///
///   Config<Backbone, Pooler, Branches<B...>, Weighting, Confidence>
///     Backbone    backbone::ResNet50 (paper), backbone::ResNetSmall (CPU), any backbone::ResNet<...>
///     Pooler      roi::RoiAlignPooler<24, 8> (paper)
///     Branches    the task branches, a Boost.Hana tuple inside the model; exactly one detection branch
///     Weighting   losses::Agwf (paper) or losses::PlainSoftmax (the "w/o AGWF" ablation)
///     Confidence  losses::ConfidenceGradient::detached (default) or ::propagated

#include <trident/backbone/resnet.hpp>
#include <trident/branches/concepts.hpp>
#include <trident/losses/weighting.hpp>
#include <trident/roi/pooler.hpp>

namespace trident {

/// The list of task branches of a configuration, in the order they run (the detection branch runs first
/// whatever its position, since every other branch reads its confidence).
template <class... Bs>
struct Branches {
  static_assert(sizeof...(Bs) > 0, "Branches<...>: a configuration needs at least the detection branch");
};

template <class Backbone, class Pooler, class BranchList, class Weighting = losses::Agwf,
          losses::ConfidenceGradient Confidence = losses::ConfidenceGradient::detached>
struct Config {
  using backbone = Backbone;
  using pooler = Pooler;
  using branches = BranchList;
  using weighting = Weighting;
  static constexpr losses::ConfidenceGradient confidence = Confidence;
};

}  // namespace trident
