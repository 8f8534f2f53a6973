#pragma once
/// \file trident/eval/average_precision.hpp
/// Average precision exactly as scikit-learn's average_precision_score(y_true, y_score) computes it, which is
/// what the person-search reference codebases (OIM, NAE, SeqNet) call:
///
///   sort the samples by score, descending; for every *distinct* score t_k (highest first) let
///     TP_k = positives with score >= t_k,   FP_k = negatives with score >= t_k,
///     P_k  = TP_k / (TP_k + FP_k),          R_k  = TP_k / (all positives);
///   AP = sum_k (R_k - R_{k-1}) * P_k,   with R_0 = 0.
///
/// Samples with equal scores enter the curve together (one point per distinct score), so the order of tied
/// samples does not change the result. No interpolation (unlike PASCAL VOC). With no positive sample, or no
/// sample at all, AP is 0 (recent scikit-learn also gives 0, with a warning; older versions gave NaN).

#include <trident/config.hpp>

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <cmath>
#include <vector>

namespace trident::eval {

/// scikit-learn's average_precision_score for binary labels (see the file comment).
inline double average_precision(const std::vector<double>& scores, const std::vector<bool>& positive) {
  TRIDENT_CHECK(scores.size() == positive.size(),
                "trident::eval::average_precision: scores has {} entries but positive has {}", scores.size(),
                positive.size());
  for (size_t i = 0; i < scores.size(); ++i)
    TRIDENT_CHECK(std::isfinite(scores[i]), "trident::eval::average_precision: scores[{}] = {} is not finite", i,
                  scores[i]);
  const auto positives = static_cast<double>(std::count(positive.begin(), positive.end(), true));
  if (positives == 0) return 0.0;
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  double ap = 0.0, true_positives = 0.0, previous_recall = 0.0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (positive[order[i]]) true_positives += 1.0;
    // One point of the curve per distinct score: only at the last sample of a run of equal scores.
    if (i + 1 < order.size() && scores[order[i + 1]] == scores[order[i]]) continue;
    const double precision = true_positives / static_cast<double>(i + 1);
    const double recall = true_positives / positives;
    ap += (recall - previous_recall) * precision;
    previous_recall = recall;
  }
  return ap;
}

}  // namespace trident::eval
