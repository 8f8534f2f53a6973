#pragma once
/// \file trident/branches/part.hpp
/// The part-classification branch (Section 4.3, Figure 2, green). g's map is max-pooled into N_p horizontal
/// strips, h_i [N_p, C5]; one fully connected classifier shared by the strips scores each against N_p + 1
/// classes (its own index, or the dummy class for a background proposal); the loss is L_part of Eq. (11),
/// AGWF-weighted. Training only: at inference the branch outputs nothing.

#include <trident/branches/concepts.hpp>
#include <trident/core/policies.hpp>
#include <trident/losses/part.hpp>
#include <trident/ops/pooling.hpp>

#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

namespace trident::branches {

template <class NumParts = Parts<6>>
class PartBranch : public torch::nn::Module {
  static_assert(is_size_tag_v<NumParts, Parts>, "PartBranch<NumParts>: NumParts must be Parts<N>");

 public:
  static constexpr std::string_view name = "part";
  static constexpr std::array<std::string_view, 1> loss_names{"part"};
  static constexpr int64_t num_parts = NumParts::value;

  explicit PartBranch(const BranchSetup& setup) : options_(setup.part_loss) {
    classifier_ = register_module("classifier", torch::nn::Linear(setup.head_channels, num_parts + 1));
    torch::nn::init::normal_(classifier_->weight, 0.0, 0.01);
    torch::nn::init::zeros_(classifier_->bias);
  }

  /// h_i: [K, N_p, C5], strip j covering rows [j H / N_p, (j + 1) H / N_p) of g's map.
  static at::Tensor strips(const at::Tensor& g_map) {
    return ops::max_pool_strips(g_map, num_parts).squeeze(3).transpose(1, 2);
  }

  /// P_i: [K, N_p, N_p + 1].
  at::Tensor scores(const RoiContext& ctx) { return classifier_->forward(strips(ctx.g_map)); }

  template <class Weighting, losses::ConfidenceGradient C>
  void add_losses(const RoiContext& ctx, LossMap& out) {
    TRIDENT_CHECK(ctx.sampled != nullptr, "trident::branches::PartBranch: training needs sampled proposals");
    const auto labels = losses::part_labels(ctx.sampled->is_foreground(), num_parts);
    out.add("part", losses::part_loss<Weighting, C>(scores(ctx), labels, ctx.detection.alpha, options_));
  }

  void infer(const RoiContext&, RoiOutputs&) {}

 private:
  losses::PartLossOptions options_;
  torch::nn::Linear classifier_{nullptr};
};

}  // namespace trident::branches
