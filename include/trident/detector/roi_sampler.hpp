#pragma once
/// \file trident/detector/roi_sampler.hpp
/// Training-time selection of the proposals that the RoI head and the task branches learn from: ground-truth
/// boxes are added to the proposals, each proposal is matched to a person (IoU >= 0.5) or called background
/// (IoU < 0.5), and 128 per image are sampled with at most half positives. A foreground proposal inherits its
/// person's pid (an identity, or unlabeled_identity); a background proposal gets background_identity.

#include <trident/core/types.hpp>
#include <trident/detector/matching.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/boxes.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sort.h>

#include <array>
#include <vector>

namespace trident::detector {

struct RoiSamplerOptions {
  double fg_iou_threshold = 0.5;
  double bg_iou_threshold = 0.5;
  int64_t batch_size_per_image = 128;
  double positive_fraction = 0.5;
  bool add_ground_truth = true;
  std::array<double, 4> box_coder_weights{10.0, 10.0, 5.0, 5.0};
};

/// The sampled proposals of a batch, concatenated over images in image order.
struct SampledProposals {
  std::vector<at::Tensor> boxes;   ///< per image [k_i, 4]
  at::Tensor pids;                 ///< [K] int64: identity >= 0, unlabeled_identity or background_identity
  at::Tensor matched_boxes;        ///< [K, 4] the matched person's box (own box for background)
  at::Tensor regression_targets;   ///< [K, 4] BoxCoder(weights) encoding of matched_boxes
  at::Tensor is_foreground() const { return pids != background_identity; }
};

inline SampledProposals sample_proposals(const std::vector<at::Tensor>& proposals, const std::vector<Target>& targets,
                                         const RoiSamplerOptions& options = {}) {
  TRIDENT_CHECK(proposals.size() == targets.size(),
                "trident::detector::sample_proposals: {} proposal sets for {} targets", proposals.size(),
                targets.size());
  const ops::BoxCoder coder(options.box_coder_weights);
  SampledProposals out;
  std::vector<at::Tensor> pids, matched;
  for (size_t i = 0; i < proposals.size(); ++i) {
    const auto& t = targets[i];
    TRIDENT_CHECK(t.boxes.defined() && t.pids.defined() && t.boxes.size(0) == t.pids.size(0),
                  "trident::detector::sample_proposals: target {} needs boxes [n, 4] and pids [n], got {} and {}", i,
                  shape_of(t.boxes), shape_of(t.pids));
    const auto gt = t.boxes.to(proposals[i].scalar_type());
    const auto candidates = options.add_ground_truth ? at::cat({proposals[i], gt}) : proposals[i];
    at::Tensor labels, pid;
    at::Tensor matched_idx;
    if (gt.size(0) == 0) {
      matched_idx = at::zeros({candidates.size(0)}, candidates.options().dtype(at::kLong));
      labels = at::zeros({candidates.size(0)}, candidates.options());
      pid = at::full({candidates.size(0)}, background_identity, candidates.options().dtype(at::kLong));
    } else {
      const auto matches = match_proposals(ops::box_iou(gt, candidates), options.fg_iou_threshold,
                                           options.bg_iou_threshold, /*allow_low_quality_matches=*/false);
      matched_idx = matches.clamp_min(0);
      labels = (matches >= 0).to(candidates.scalar_type());
      labels.masked_fill_(matches == between_thresholds, -1.0);
      pid = at::where(matches >= 0, t.pids.to(at::kLong).index_select(0, matched_idx),
                      at::full_like(matches, background_identity));
    }
    const auto [pos, neg] = sample_balanced(labels, options.batch_size_per_image, options.positive_fraction);
    const auto chosen = std::get<0>(at::cat({pos, neg}).sort());
    const auto boxes = candidates.index_select(0, chosen);
    const auto own = gt.size(0) ? gt.index_select(0, matched_idx.index_select(0, chosen)) : boxes;
    const auto p = pid.index_select(0, chosen);
    out.boxes.push_back(boxes);
    pids.push_back(p);
    matched.push_back(at::where((p != background_identity).unsqueeze(1), own, boxes));
  }
  out.pids = at::cat(pids);
  out.matched_boxes = at::cat(matched);
  out.regression_targets = coder.encode(out.matched_boxes, at::cat(out.boxes));
  return out;
}

}  // namespace trident::detector
