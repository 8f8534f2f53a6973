#pragma once
/// \file trident/eval/detection.hpp
/// Person-detection AP and recall over the gallery images, as SeqNet's eval_detection computes them (and as
/// the person-search papers, this one's Table 1 included, report them):
///
///  1. keep the detections whose score >= score_threshold;
///  2. in each image, match detections to ground-truth boxes (DetectionMatching below); a detection is a true
///     positive when it is matched, every other kept detection is a false positive;
///  3. recall = matched ground truths / all ground truths (missed images and images without any kept
///     detection count in the denominator);
///  4. AP = average_precision(scores, is_true_positive) * recall, with average_precision exactly scikit-learn's
///     average_precision_score over all kept detections of all images (eval/average_precision.hpp). The
///     factor recall accounts for the ground truths no detection reaches, which the curve alone cannot see.
///
/// labeled_only keeps only the ground truths with an identity (person id >= 0); an image left with none is
/// skipped entirely, its detections included (SeqNet does the same). An image without any ground truth (with
/// labeled_only off) contributes its detections as false positives (SeqNet fails on such an image).

#include <trident/eval/average_precision.hpp>
#include <trident/eval/types.hpp>

#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>

#include <algorithm>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace trident::eval {

enum class DetectionMatching {
  /// SeqNet's rule (the default): detection j and ground truth i match when IoU(i, j) >= iou_threshold, i is
  /// the ground truth of highest IoU with j and j is the detection of highest IoU with i (first index on ties,
  /// as numpy's argmax). Scores play no part in the matching.
  mutual_best_iou,
  /// PASCAL-VOC-style greedy matching: detections in decreasing score (stable on ties) each take the unmatched
  /// ground truth of highest IoU, if that IoU >= iou_threshold.
  greedy_by_score,
};

struct DetectionOptions {
  /// SeqNet's evaluation calls eval_detection with det_thresh = 0.01 (the function's own default is 0.5).
  double score_threshold = 0.01;
  double iou_threshold = 0.5;
  bool labeled_only = false;
  DetectionMatching matching = DetectionMatching::mutual_best_iou;
};

struct DetectionMetrics {
  double average_precision = 0.0;  ///< in [0, 1]
  double recall = 0.0;             ///< in [0, 1]
  int64_t true_positives = 0;
  int64_t ground_truths = 0;
  int64_t detections = 0;          ///< kept detections (score >= threshold) of the images evaluated
};

/// Detection AP and recall of `detections[i]` against `annotations[i]` for every gallery image i.
inline DetectionMetrics evaluate_detection(std::span<const ImageAnnotation> annotations,
                                           std::span<const GalleryDetections> detections,
                                           const DetectionOptions& options = {}) {
  constexpr const char* fn = "trident::eval::evaluate_detection";
  TRIDENT_CHECK(annotations.size() == detections.size(),
                "{}: {} annotations but {} detection sets (one per gallery image)", fn, annotations.size(),
                detections.size());
  TRIDENT_CHECK(options.iou_threshold > 0 && options.iou_threshold <= 1,
                "{}: options.iou_threshold must be in (0, 1], got {}", fn, options.iou_threshold);
  DetectionMetrics out;
  std::vector<double> all_scores;
  std::vector<bool> all_positive;
  for (size_t img = 0; img < annotations.size(); ++img) {
    const auto& anno = annotations[img];
    ops::check_box_shape(anno.boxes, fn, fmt::format("annotations[{}].boxes", img));
    TRIDENT_CHECK(static_cast<int64_t>(anno.person_ids.size()) == anno.boxes.size(0),
                  "{}: annotations[{}] has {} boxes but {} person_ids", fn, img, anno.boxes.size(0),
                  anno.person_ids.size());
    detail::check_detections(detections[img], fn, fmt::format("detections[{}]", img), false);

    // Ground truths of this image (xyxy rows).
    std::vector<int64_t> gt_rows;
    for (size_t g = 0; g < anno.person_ids.size(); ++g)
      if (!options.labeled_only || anno.person_ids[g] >= 0) gt_rows.push_back(static_cast<int64_t>(g));
    if (options.labeled_only && gt_rows.empty()) continue;
    const auto num_gt = static_cast<int64_t>(gt_rows.size());
    out.ground_truths += num_gt;

    // The threshold is compared in the scores' own precision, as numpy compares a float32 array with a float.
    const auto raw_scores = detections[img].scores.detach().to(at::kCPU);
    const auto scores = detail::to_doubles(raw_scores);
    std::vector<int64_t> kept;
    const auto keep_mask = detail::to_doubles(raw_scores >= options.score_threshold);
    for (size_t j = 0; j < keep_mask.size(); ++j)
      if (keep_mask[j] != 0) kept.push_back(static_cast<int64_t>(j));
    const auto num_det = static_cast<int64_t>(kept.size());
    if (num_det == 0) continue;
    out.detections += num_det;

    std::vector<bool> matched(static_cast<size_t>(num_det), false);
    if (num_gt > 0) {
      const auto gt_index = at::tensor(gt_rows, at::kLong);
      const auto det_index = at::tensor(kept, at::kLong);
      const auto gt_boxes = anno.boxes.detach().to(at::kCPU, at::kDouble).index_select(0, gt_index);
      const auto det_boxes = detections[img].boxes.detach().to(at::kCPU, at::kDouble).index_select(0, det_index);
      const auto iou = detail::to_doubles(ops::box_iou(gt_boxes, det_boxes));  // [num_gt, num_det] row-major
      const auto iou_at = [&](int64_t i, int64_t j) { return iou[static_cast<size_t>(i * num_det + j)]; };
      if (options.matching == DetectionMatching::mutual_best_iou) {
        // Each ground truth's best detection (argmax, first on ties), once: O(G x D), not O(G x D^2) (a picture
        // with a million detections).
        std::vector<int64_t> best_det_of(static_cast<size_t>(num_gt), 0);
        for (int64_t i = 0; i < num_gt; ++i) {
          int64_t& best = best_det_of[static_cast<size_t>(i)];
          for (int64_t k = 1; k < num_det; ++k)
            if (iou_at(i, k) > iou_at(i, best)) best = k;
        }
        for (int64_t j = 0; j < num_det; ++j) {
          int64_t best_gt = 0;  // argmax over ground truths, first on ties
          for (int64_t i = 1; i < num_gt; ++i)
            if (iou_at(i, j) > iou_at(best_gt, j)) best_gt = i;
          if (best_det_of[static_cast<size_t>(best_gt)] == j && iou_at(best_gt, j) >= options.iou_threshold) {
            matched[static_cast<size_t>(j)] = true;
            ++out.true_positives;
          }
        }
      } else {
        std::vector<int64_t> order(static_cast<size_t>(num_det));
        for (int64_t j = 0; j < num_det; ++j) order[static_cast<size_t>(j)] = j;
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return scores[static_cast<size_t>(kept[static_cast<size_t>(a)])] >
                 scores[static_cast<size_t>(kept[static_cast<size_t>(b)])];
        });
        std::vector<bool> gt_taken(static_cast<size_t>(num_gt), false);
        for (const int64_t j : order) {
          int64_t best_gt = -1;
          for (int64_t i = 0; i < num_gt; ++i)
            if (!gt_taken[static_cast<size_t>(i)] && iou_at(i, j) >= options.iou_threshold &&
                (best_gt < 0 || iou_at(i, j) > iou_at(best_gt, j)))
              best_gt = i;
          if (best_gt < 0) continue;
          gt_taken[static_cast<size_t>(best_gt)] = true;
          matched[static_cast<size_t>(j)] = true;
          ++out.true_positives;
        }
      }
    }
    for (int64_t j = 0; j < num_det; ++j) {
      all_scores.push_back(scores[static_cast<size_t>(kept[static_cast<size_t>(j)])]);
      all_positive.push_back(matched[static_cast<size_t>(j)]);
    }
  }
  if (out.ground_truths > 0)
    out.recall = static_cast<double>(out.true_positives) / static_cast<double>(out.ground_truths);
  out.average_precision = average_precision(all_scores, all_positive) * out.recall;
  return out;
}

}  // namespace trident::eval
