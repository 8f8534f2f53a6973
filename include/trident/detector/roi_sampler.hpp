#pragma once
/// \file trident/detector/roi_sampler.hpp
/// Training-time selection of the proposals that the RoI head and the task branches learn from: ground-truth
/// boxes are added to the proposals, each proposal is matched to a person (IoU >= 0.5) or called background
/// (IoU < 0.5), and 128 per image are sampled with at most half positives (more only where the negatives run
/// out: the sample is always full, so its size is known without reading the device). A foreground proposal
/// inherits its person's pid (an identity, or unlabeled_identity); a background proposal gets
/// background_identity.

#include <trident/core/host_copy.hpp>
#include <trident/core/data_parallel.hpp>
#include <trident/core/types.hpp>
#include <trident/detector/matching.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/boxes.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sort.h>
#include <ATen/ops/stack.h>

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
  HostCopy pids_on_host;           ///< pids copied to the host without waiting (the re-id memory's update reads it)
  at::Tensor is_foreground() const { return pids != background_identity; }
};

inline SampledProposals sample_proposals(const std::vector<at::Tensor>& proposals, const std::vector<Target>& targets,
                                         const RoiSamplerOptions& options = {}) {
  TRIDENT_CHECK(proposals.size() == targets.size(),
                "trident::detector::sample_proposals: {} proposal sets for {} targets", proposals.size(),
                targets.size());
  struct Labeled {
    at::Tensor gt, candidates, labels, pid, matched_idx;
  };
  std::vector<Labeled> images;
  for (size_t i = 0; i < proposals.size(); ++i) {
    const auto& t = targets[i];
    TRIDENT_CHECK(t.boxes.defined() && t.pids.defined() && t.boxes.size(0) == t.pids.size(0),
                  "trident::detector::sample_proposals: target {} needs boxes [n, 4] and pids [n], got {} and {}", i,
                  shape_of(t.boxes), shape_of(t.pids));
    Labeled l;
    l.gt = t.boxes.to(proposals[i].scalar_type());
    l.candidates = options.add_ground_truth ? at::cat({proposals[i], l.gt}) : proposals[i];
    const auto n = l.candidates.size(0);
    if (l.gt.size(0) == 0) {
      l.matched_idx = at::zeros({n}, l.candidates.options().dtype(at::kLong));
      l.labels = at::zeros({n}, l.candidates.options());
      l.pid = at::full({n}, background_identity, l.candidates.options().dtype(at::kLong));
    } else {
      const auto matches = match_proposals(ops::box_iou(l.gt, l.candidates), options.fg_iou_threshold,
                                           options.bg_iou_threshold, /*allow_low_quality_matches=*/false);
      l.matched_idx = matches.clamp_min(0);
      l.labels = (matches >= 0).to(l.candidates.scalar_type());
      l.labels.masked_fill_(matches == between_thresholds, -1.0);
      l.pid = at::where(matches >= 0, to_device(t.pids.to(at::kLong), l.candidates.device()).index_select(0, l.matched_idx),
                        at::full_like(matches, background_identity));
    }
    images.push_back(std::move(l));
  }
  // Each image's sample is full: min(batch_size_per_image, usable candidates) proposals, positives filling what
  // the negatives cannot (sample_balanced's fill_with_positives). The default thresholds (0.5 / 0.5, SeqNet's)
  // ignore no candidate, so the sizes are known on the host; a band of ignored IoUs costs one read of the usable
  // counts for the whole batch.
  std::vector<int64_t> sizes;
  if (options.fg_iou_threshold > options.bg_iou_threshold && !images.empty()) {
    std::vector<at::Tensor> usable;
    for (const auto& l : images) usable.push_back((l.labels >= 0).sum());
    const auto counts = at::stack(usable).to(at::kCPU, at::kLong).contiguous();
    sizes.assign(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + counts.numel());
  } else {
    for (const auto& l : images) sizes.push_back(l.candidates.size(0));
  }
  const ops::BoxCoder coder(options.box_coder_weights);
  SampledProposals out;
  std::vector<at::Tensor> pids, matched;
  for (size_t i = 0; i < images.size(); ++i) {
    const auto& l = images[i];
    const auto sample = sample_balanced(l.labels, options.batch_size_per_image, options.positive_fraction,
                                        /*fill_with_positives=*/true, sizes[i],
                                        image_generator(static_cast<int64_t>(i), ImageStream::roi_sample));
    const auto chosen = std::get<0>(sample.index.sort());  // candidate order
    const auto boxes = l.candidates.index_select(0, chosen);
    const auto own = l.gt.size(0) ? l.gt.index_select(0, l.matched_idx.index_select(0, chosen)) : boxes;
    const auto p = l.pid.index_select(0, chosen);
    out.boxes.push_back(boxes);
    pids.push_back(p);
    matched.push_back(at::where((p != background_identity).unsqueeze(1), own, boxes));
  }
  out.pids = at::cat(pids);
  out.pids_on_host = HostCopy(out.pids);
  out.matched_boxes = at::cat(matched);
  out.regression_targets = coder.encode(out.matched_boxes, at::cat(out.boxes));
  return out;
}

}  // namespace trident::detector
