#pragma once
/// \file trident/detector/rpn.hpp
/// The region proposal network of Faster R-CNN on conv4 (stride 16), with the settings of the reference
/// codebases the paper follows ("[3]", NAE; SeqNet alike): 15 anchors per cell, IoU >= 0.7 positive and
/// < 0.3 negative (each person also keeps its best anchors), 256 anchors per image at half positives,
/// smooth-L1 (beta 1/9) and binary cross-entropy losses, and proposals from the top 12000 / 6000 anchors
/// (train / test) through NMS at 0.7, keeping 2000 / 300.

#include <trident/core/data_parallel.hpp>
#include <trident/core/types.hpp>
#include <trident/detector/matching.hpp>
#include <trident/ops/anchors.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/nms.hpp>

#include <ATen/ops/binary_cross_entropy_with_logits.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/relu.h>
#include <ATen/ops/smooth_l1_loss.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include <vector>

namespace trident::detector {

struct RpnOptions {
  ops::AnchorGenerator anchors{};
  int64_t pre_nms_top_n_train = 12000;
  int64_t post_nms_top_n_train = 2000;
  int64_t pre_nms_top_n_test = 6000;
  int64_t post_nms_top_n_test = 300;
  double nms_threshold = 0.7;
  double fg_iou_threshold = 0.7;
  double bg_iou_threshold = 0.3;
  int64_t batch_size_per_image = 256;
  double positive_fraction = 0.5;
  double min_size = 1e-3;     ///< proposals smaller than this (pixels) are dropped
  double score_threshold = 0.0;
};

/// The RPN's output: per-image proposals (detached, xyxy, clipped) with their objectness probability, and
/// in training the two losses.
struct RpnOutput {
  std::vector<at::Tensor> proposals;
  std::vector<at::Tensor> scores;
  at::Tensor loss_objectness;  ///< rpn_cls; undefined in evaluation
  at::Tensor loss_box;         ///< rpn_reg; undefined in evaluation
};

/// The RPN head's outputs of a batch before its NMS: objectness logits [B, H*W*A], box deltas [B, H*W*A, 4] and
/// the anchors [H*W*A, 4] they refer to (float32, or the deltas' dtype when wider).
struct RpnHeads {
  at::Tensor objectness, deltas, anchors;
};

class RegionProposalNetworkImpl : public torch::nn::Module {
 public:
  RegionProposalNetworkImpl(int64_t in_channels, RpnOptions options) : options_(std::move(options)) {
    TRIDENT_CHECK(in_channels > 0, "trident::detector::RegionProposalNetwork: in_channels must be positive, got {}",
                  in_channels);
    const int64_t a = options_.anchors.num_anchors_per_location();
    conv_ = register_module("conv", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, in_channels, 3).padding(1)));
    cls_logits_ = register_module("cls_logits", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, a, 1)));
    bbox_pred_ = register_module("bbox_pred", torch::nn::Conv2d(torch::nn::Conv2dOptions(in_channels, 4 * a, 1)));
    for (auto* conv : {&conv_, &cls_logits_, &bbox_pred_}) {
      torch::nn::init::normal_((*conv)->weight, 0.0, 0.01);
      torch::nn::init::zeros_((*conv)->bias);
    }
  }

  const RpnOptions& options() const { return options_; }
  /// The proposals kept per image in the current mode (post_nms_top_n_train or _test).
  int64_t post_nms_top_n() const {
    return is_training() ? options_.post_nms_top_n_train : options_.post_nms_top_n_test;
  }

  /// features [B, C, H, W] of the padded batch; `sizes` each image's unpadded size; `targets` required in
  /// training (one per image).
  /// The RPN before its NMS: per image the top pre-NMS anchors (pre_nms_top_n of the mode) decoded, clipped,
  /// with their objectness probability and the mask of those NMS may keep (size >= min_size, probability >=
  /// score_threshold), as NMS problems capped at the post-NMS count. Every shape depends on the input sizes
  /// only (no host-device synchronisation), so a CUDA graph can capture this stage with the stem. `heads`
  /// receives what the losses need besides: the objectness logits, the box deltas and the anchors.
  std::vector<ops::detail::NmsProblem> candidates(const at::Tensor& features, const std::vector<ImageSize>& sizes,
                                                  RpnHeads* heads = nullptr) {
    TRIDENT_CHECK(features.dim() == 4 && features.size(0) == static_cast<int64_t>(sizes.size()),
                  "trident::detector::RegionProposalNetwork: features {} must be [B, C, H, W] with B = {} image sizes",
                  shape_of(features), sizes.size());
    const int64_t batch = features.size(0), a = options_.anchors.num_anchors_per_location();
    // NCHW: at batch 1 the 3x3 convolution is faster in it than channels-last (a folded eval() backbone's
    // layout; docs/performance.md), and the copy is one feature map.
    const auto hidden = at::relu(conv_->forward(features.contiguous()));
    // [B, A, H, W] -> [B, H*W*A], anchor order (cell, anchor) as AnchorGenerator lays them out.
    const auto objectness = cls_logits_->forward(hidden).permute({0, 2, 3, 1}).reshape({batch, -1});
    const auto deltas = bbox_pred_->forward(hidden)
                            .reshape({batch, a, 4, features.size(2), features.size(3)})
                            .permute({0, 3, 4, 1, 2})
                            .reshape({batch, -1, 4});
    const auto anchors = options_.anchors(features).to(ops::coordinate_dtype(deltas.scalar_type()));
    const ops::BoxCoder coder({1.0, 1.0, 1.0, 1.0});
    const bool train = is_training();
    const int64_t pre_n = train ? options_.pre_nms_top_n_train : options_.pre_nms_top_n_test;
    const int64_t post_n = train ? options_.post_nms_top_n_train : options_.post_nms_top_n_test;
    // The boxes too small or scored below the threshold are masked out of NMS rather than removed, so that all
    // images' NMS wait for the device once, together (ops::detail::nms_each).
    const auto obj = objectness.detach();
    const auto del = deltas.detach();
    std::vector<ops::detail::NmsProblem> problems(static_cast<size_t>(batch));
    for (int64_t i = 0; i < batch; ++i) {
      const int64_t k = std::min(pre_n, obj.size(1));
      const auto top = std::get<1>(obj[i].topk(k));
      const auto boxes = coder.decode(del[i].index_select(0, top), anchors.index_select(0, top));
      auto& p = problems[static_cast<size_t>(i)];
      p.boxes = ops::clip_boxes_to_image(boxes, sizes[i][0], sizes[i][1]);
      p.scores = obj[i].index_select(0, top).sigmoid();
      p.valid = ops::box_size_at_least(p.boxes, options_.min_size) & (p.scores >= options_.score_threshold);
      p.iou_threshold = options_.nms_threshold;
      p.max_keep = post_n;
    }
    if (heads != nullptr) *heads = {objectness, deltas, anchors};
    return problems;
  }

  /// The proposals of candidates(): NMS per image (one wait for the device for the whole batch).
  static void select_proposals(const std::vector<ops::detail::NmsProblem>& problems, RpnOutput& out) {
    const auto keep = ops::detail::nms_each(problems);
    for (size_t i = 0; i < problems.size(); ++i) {
      out.proposals.push_back(problems[i].boxes.index_select(0, keep[i]));
      out.scores.push_back(problems[i].scores.index_select(0, keep[i]));
    }
  }

  /// features [B, C, H, W] of the padded batch; `sizes` each image's unpadded size; `targets` required in
  /// training (one per image).
  RpnOutput forward(const at::Tensor& features, const std::vector<ImageSize>& sizes,
                    const std::vector<Target>* targets = nullptr) {
    RpnHeads heads;
    const auto problems = candidates(features, sizes, &heads);
    const auto& [objectness, deltas, anchors] = heads;
    const int64_t batch = features.size(0);
    const bool train = is_training();
    RpnOutput out;
    select_proposals(problems, out);
    if (!train) return out;

    const ops::BoxCoder coder({1.0, 1.0, 1.0, 1.0});
    TRIDENT_CHECK(targets != nullptr && static_cast<int64_t>(targets->size()) == batch,
                  "trident::detector::RegionProposalNetwork: training needs one Target per image ({}), got {}", batch,
                  targets ? targets->size() : 0);
    // A fixed-size sample per image (sample_balanced): the losses weight its entries instead of gathering a
    // number of rows only the device knows, so nothing here waits for the device.
    std::vector<at::Tensor> sampled, positive, valid, all_labels, all_targets;
    const int64_t per_image = anchors.size(0);
    for (int64_t i = 0; i < batch; ++i) {
      const auto& gt = (*targets)[i].boxes.to(anchors.scalar_type());
      at::Tensor labels, regression;
      if (gt.size(0) == 0) {
        labels = at::zeros({per_image}, anchors.options());
        regression = at::zeros_like(anchors);
      } else {
        const auto matches = match_proposals(ops::box_iou(gt, anchors), options_.fg_iou_threshold,
                                             options_.bg_iou_threshold, /*allow_low_quality_matches=*/true);
        labels = (matches >= 0).to(anchors.scalar_type());
        labels.masked_fill_(matches == between_thresholds, -1.0);
        regression = coder.encode(gt.index_select(0, matches.clamp_min(0)), anchors);
      }
      auto sample = sample_balanced(labels, options_.batch_size_per_image, options_.positive_fraction,
                                    /*fill_with_positives=*/false, /*max_size=*/-1,
                                    image_generator(i, ImageStream::rpn_sample));
      sampled.push_back(sample.index + i * per_image);
      positive.push_back(sample.positive);
      valid.push_back(sample.valid);
      all_labels.push_back(labels);
      all_targets.push_back(regression);
    }
    const auto index = at::cat(sampled);
    const auto is_positive = at::cat(positive), is_valid = at::cat(valid);
    const auto labels = at::cat(all_labels).index_select(0, index), regression = at::cat(all_targets);
    const auto flat_deltas = deltas.reshape({-1, 4}), flat_obj = objectness.reshape({-1});
    // Means over the sampled anchors of the whole batch (core/data_parallel.hpp: over every process's images).
    const auto count = batch_sum(is_valid.sum().to(at::kDouble));
    const auto box = at::smooth_l1_loss(flat_deltas.index_select(0, index), regression.index_select(0, index),
                                        at::Reduction::None, 1.0 / 9.0);
    out.loss_box = batch_mean_of_total(at::where(is_positive.unsqueeze(1), box, 0.0).sum(), count);
    const auto objectness_rows = at::binary_cross_entropy_with_logits(
        flat_obj.index_select(0, index), at::where(is_valid, labels, 0.0), {}, {}, at::Reduction::None);
    out.loss_objectness = batch_mean_of_total(at::where(is_valid, objectness_rows, 0.0).sum(), count);
    return out;
  }

 private:
  RpnOptions options_;
  torch::nn::Conv2d conv_{nullptr}, cls_logits_{nullptr}, bbox_pred_{nullptr};
};

TORCH_MODULE(RegionProposalNetwork);

}  // namespace trident::detector
