#pragma once
/// \file trident/branches/detection.hpp
/// The detection branch (Section 4, Figure 2, red): person/background classification from both scales of the
/// proposal feature — foreground classifiers without bias on g-hat and on g, whose logits add up — and box
/// regression from g. Its person probability p_i1 is the confidence alpha_i that AGWF hands to the other
/// branches. Losses: det_cls (cross-entropy over all sampled RoIs) and det_reg (smooth-L1, beta 1/9 unless
/// BranchSetup::detection_loss says otherwise, over the foreground RoIs, normalised by the number of sampled
/// RoIs, as torchvision's Fast R-CNN loss; weighted 1 unless detection_loss.box_weight says otherwise).

#include <trident/branches/concepts.hpp>
#include <trident/core/data_parallel.hpp>

#include <ATen/ops/cross_entropy_loss.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/smooth_l1_loss.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/where.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/linear.h>

#include <cmath>

namespace trident::branches {

class DetectionBranch : public torch::nn::Module {
 public:
  static constexpr std::string_view name = "det";
  static constexpr std::array<std::string_view, 2> loss_names{"det_cls", "det_reg"};

  explicit DetectionBranch(const BranchSetup& setup) : options_(setup.detection_loss) {
    TRIDENT_CHECK(std::isfinite(options_.box_beta) && options_.box_beta > 0,
                  "trident::branches::DetectionBranch: detection_loss.box_beta must be a positive number, got {}",
                  options_.box_beta);
    TRIDENT_CHECK(std::isfinite(options_.box_weight) && options_.box_weight >= 0,
                  "trident::branches::DetectionBranch: detection_loss.box_weight must be a number >= 0, got {}",
                  options_.box_weight);
    cls_hat_ = register_module("cls_hat", torch::nn::Linear(torch::nn::LinearOptions(setup.stem_channels, 2).bias(false)));
    cls_ = register_module("cls", torch::nn::Linear(torch::nn::LinearOptions(setup.head_channels, 2).bias(false)));
    bbox_ = register_module("bbox_pred", torch::nn::Linear(setup.head_channels, 4));
    for (auto* l : {&cls_hat_, &cls_, &bbox_}) torch::nn::init::normal_((*l)->weight, 0.0, 0.01);
    torch::nn::init::zeros_(bbox_->bias);
  }

  DetectionOutputs detect(const RoiContext& ctx) {
    DetectionOutputs out;
    out.logits = cls_hat_->forward(ctx.g_hat) + cls_->forward(ctx.g);
    out.alpha = at::softmax(out.logits, 1).select(1, 1);
    out.deltas = bbox_->forward(ctx.g);
    return out;
  }

  template <class Weighting, losses::ConfidenceGradient C>
  void add_losses(const RoiContext& ctx, LossMap& losses) {
    TRIDENT_CHECK(ctx.sampled != nullptr, "trident::branches::DetectionBranch: training needs sampled proposals");
    const auto fg = ctx.sampled->is_foreground();
    const auto& d = ctx.detection;
    // Means over the sampled RoIs of the whole batch (core/data_parallel.hpp: over every process's images).
    // The count on the logits' device: summed over processes there (NCCL) without a trip through the host.
    const auto sampled =
        batch_sum(at::scalar_tensor(static_cast<double>(ctx.size()), d.logits.options().dtype(at::kDouble)));
    losses.add("det_cls", batch_mean_of_total(
                              at::cross_entropy_loss(d.logits, fg.to(at::kLong), {}, at::Reduction::Sum), sampled));
    // The foreground rows by mask, not by index: their number stays on the device.
    const auto rows = at::smooth_l1_loss(d.deltas, ctx.sampled->regression_targets.to(d.deltas.scalar_type()),
                                         at::Reduction::None, options_.box_beta);
    auto reg = batch_mean_of_total(at::where(fg.unsqueeze(1), rows, 0.0).sum(), sampled);
    losses.add("det_reg", options_.box_weight == 1.0 ? reg : reg * options_.box_weight);
  }

  /// Nothing per box: the model reports the detection boxes and scores itself (Detections::boxes, ::scores).
  void infer(const RoiContext&, RoiOutputs&) {}

 private:
  torch::nn::Linear cls_hat_{nullptr}, cls_{nullptr}, bbox_{nullptr};
  DetectionLossOptions options_;
};

}  // namespace trident::branches
