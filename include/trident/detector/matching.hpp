#pragma once
/// \file trident/detector/matching.hpp
/// Matching proposals (or anchors) to ground-truth boxes by IoU, and balanced sampling of positives and
/// negatives — the two steps that turn boxes into training labels in the RPN and in the RoI head
/// (torchvision.models.detection._utils.Matcher and BalancedPositiveNegativeSampler semantics).

#include <trident/config.hpp>
#include <trident/core/host_copy.hpp>

#include <ATen/core/Generator.h>
#include <c10/util/Optional.h>

#include <ATen/ops/arange.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <ATen/ops/maximum.h>
#include <ATen/ops/minimum.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
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

/// A balanced sample of a fixed size: `index` [S] into the labels, with S = min(batch_size, N) known on the host.
/// The sampled positives come first (`positive` marks them), then the sampled negatives; `valid` marks the entries
/// that are part of the sample (the others, present only when too few labels are usable, point at some element
/// and must be left out). Every count stays on the device.
struct BalancedSample {
  at::Tensor index;     ///< [S] int64
  at::Tensor positive;  ///< [S] bool: a sampled positive
  at::Tensor valid;     ///< [S] bool: a sampled positive or negative
};

/// A random balanced sample from `labels` (>= 1 positive, 0 negative, < 0 ignored; any dtype): at most
/// batch_size * positive_fraction positives, chosen uniformly among the positives, and negatives, chosen
/// uniformly, filling the rest of the batch (torchvision's BalancedPositiveNegativeSampler). With
/// `fill_with_positives`, positives beyond that fraction fill what the negatives cannot, so the sample is full
/// whenever min(batch_size, N) labels are usable (the RoI head's case: its thresholds ignore nothing).
/// `max_size` >= 0 caps the sample size further (the RoI sampler passes the usable count it read).
///
/// Shapes depend only on N and batch_size, so on a GPU nothing waits for the device: each element draws a key,
/// the positives and the negatives with the smallest keys are taken (top-k), and the counts stay device tensors.
/// The keys come from `generator`, a CPU generator (by default LibTorch's default one, which at::manual_seed makes
/// reproducible; the samplers pass image_generator(i) of core/data_parallel.hpp), and go to the labels' device
/// without a wait (to_device): the same seed samples the same elements on every device.
inline BalancedSample sample_balanced(const at::Tensor& labels, int64_t batch_size, double positive_fraction,
                                      bool fill_with_positives = false, int64_t max_size = -1,
                                      c10::optional<at::Generator> generator = c10::nullopt) {
  TRIDENT_CHECK(labels.defined() && labels.dim() == 1, "trident::detector::sample_balanced: labels must be [N], got {}",
                shape_of(labels));
  TRIDENT_CHECK(batch_size > 0 && positive_fraction >= 0 && positive_fraction <= 1,
                "trident::detector::sample_balanced: batch_size {} must be > 0 and positive_fraction {} in [0, 1]",
                batch_size, positive_fraction);
  const int64_t n = labels.size(0);
  const int64_t size = std::min({batch_size, n, max_size >= 0 ? max_size : n});
  const auto long_opts = labels.options().dtype(at::kLong);
  BalancedSample out;
  if (size == 0) {
    out.index = at::empty({0}, long_opts);
    out.positive = out.valid = at::empty({0}, long_opts.dtype(at::kBool));
    return out;
  }
  const auto is_positive = labels >= 1;
  const auto is_negative = labels == 0;
  // Keys in [0, 1) for the wanted class, 2 for the others: the k smallest keys are a uniform sample of the class
  // followed, when the class has fewer than k members, by elements of other classes (never counted as taken).
  const auto keys = to_device(at::rand({n}, generator, at::TensorOptions().dtype(at::kFloat)), labels.device());
  const auto smallest = [&](const at::Tensor& member, int64_t k) {
    return std::get<1>(at::where(member, keys, 2.0f).topk(k, /*dim=*/0, /*largest=*/false, /*sorted=*/true));
  };
  const int64_t cap = std::min(static_cast<int64_t>(batch_size * positive_fraction), size);
  const int64_t positive_slots = fill_with_positives ? size : cap;
  const auto available_positive = is_positive.sum();
  const auto available_negative = is_negative.sum();
  auto taken_positive = available_positive.clamp_max(cap);
  if (fill_with_positives)  // positives beyond the fraction take the places the negatives leave
    taken_positive = at::maximum(taken_positive, at::minimum(available_positive, size - available_negative));
  const auto taken_negative = at::minimum(size - taken_positive, available_negative);
  const auto slot = at::arange(size, long_opts);
  const auto negatives = smallest(is_negative, size);
  const auto from_negatives = negatives.index_select(0, (slot - taken_positive).clamp_min(0));
  if (positive_slots > 0) {
    const auto positives = smallest(is_positive, positive_slots);
    out.positive = slot < taken_positive;
    out.index = at::where(out.positive, positives.index_select(0, slot.clamp_max(positive_slots - 1)), from_negatives);
  } else {
    out.positive = at::zeros({size}, long_opts.dtype(at::kBool));
    out.index = from_negatives;
  }
  out.valid = slot < taken_positive + taken_negative;
  return out;
}

}  // namespace trident::detector
