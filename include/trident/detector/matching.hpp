#pragma once
/// \file trident/detector/matching.hpp
/// Matching proposals (or anchors) to ground-truth boxes by IoU, and balanced sampling of positives and
/// negatives — the two steps that turn boxes into training labels in the RPN and in the RoI head
/// (torchvision.models.detection._utils.Matcher and BalancedPositiveNegativeSampler semantics).

#include <trident/config.hpp>

#include <ATen/ops/full.h>
#include <ATen/ops/randperm.h>
#include <ATen/ops/where.h>

#include <cstdint>
#include <utility>

namespace trident::detector {

/// Match codes for proposals that match no ground truth.
inline constexpr int64_t below_low_threshold = -1;  ///< IoU < low: background
inline constexpr int64_t between_thresholds = -2;   ///< low <= IoU < high: ignored

/// For each proposal (column of `iou`, shape [G, P]) the index of its best ground truth when that IoU is at
/// least `high`, else below_low_threshold / between_thresholds. With `allow_low_quality_matches`, every
/// ground truth also keeps the proposals with which it has its highest IoU (ties included), even below
/// `high`, so that no person is left without a positive. G == 0: everything is background.
inline at::Tensor match_proposals(const at::Tensor& iou, double high, double low, bool allow_low_quality_matches) {
  TRIDENT_CHECK(iou.defined() && iou.dim() == 2, "trident::detector::match_proposals: iou must be [G, P], got {}",
                shape_of(iou));
  TRIDENT_CHECK(low <= high, "trident::detector::match_proposals: low ({}) must not exceed high ({})", low, high);
  const auto long_opts = iou.options().dtype(at::kLong);
  if (iou.size(0) == 0) return at::full({iou.size(1)}, below_low_threshold, long_opts);
  if (iou.size(1) == 0) return at::empty({0}, long_opts);
  const auto [best, matches] = iou.max(0);
  auto out = matches.clone();
  out.masked_fill_(best < low, below_low_threshold);
  out.masked_fill_((best >= low) & (best < high), between_thresholds);
  if (allow_low_quality_matches) {
    const auto best_for_gt = std::get<0>(iou.max(1));                   // [G]
    const auto is_best = (iou == best_for_gt.unsqueeze(1)).any(0);     // [P]
    out = at::where(is_best, matches, out);
  }
  return out;
}

/// Indices of a random balanced sample from `labels` (1 positive, 0 negative, -1 ignored): at most
/// batch_size * positive_fraction positives, negatives filling the rest. Draws from LibTorch's default
/// generator (at::manual_seed makes it reproducible). Returns (positive indices, negative indices).
inline std::pair<at::Tensor, at::Tensor> sample_balanced(const at::Tensor& labels, int64_t batch_size,
                                                         double positive_fraction) {
  TRIDENT_CHECK(labels.defined() && labels.dim() == 1, "trident::detector::sample_balanced: labels must be [N], got {}",
                shape_of(labels));
  TRIDENT_CHECK(batch_size > 0 && positive_fraction >= 0 && positive_fraction <= 1,
                "trident::detector::sample_balanced: batch_size {} must be > 0 and positive_fraction {} in [0, 1]",
                batch_size, positive_fraction);
  const auto positive = (labels >= 1).nonzero().select(1, 0);
  const auto negative = (labels == 0).nonzero().select(1, 0);
  const int64_t num_pos = std::min(static_cast<int64_t>(batch_size * positive_fraction), positive.size(0));
  const int64_t num_neg = std::min(batch_size - num_pos, negative.size(0));
  const auto pick = [&](const at::Tensor& from, int64_t n) {
    const auto perm = at::randperm(from.size(0), at::TensorOptions().dtype(at::kLong)).to(from.device());
    return from.index_select(0, perm.narrow(0, 0, n));
  };
  return {pick(positive, num_pos), pick(negative, num_neg)};
}

}  // namespace trident::detector
