#pragma once
/// \file trident/losses/reid.hpp
/// The re-identification loss of the paper (Section 4.2): L_id and L_bin for labeled proposals, L_un for
/// unlabeled ones, combined as L_re-id. Plain tensor functions over a score matrix; the scores come from the
/// re-id memory (trident/memory/reid_memory.hpp: S = x [look-up table ; circular queue]^T, look-up table columns
/// first).
///
/// Inputs shared by every function:
///   scores [N, C]  cosine similarities of N proposals with the C = L + Q memory entries; columns [0, L) are the
///                  look-up table (one per identity), columns [L, C) the circular queue;
///   labels [N]     int64, per trident/core/identity.hpp: >= 0 the identity (a look-up table column),
///                  trident::unlabeled_identity (-1), trident::background_identity (-2, ignored by the loss);
///   alpha  [N]     the detection confidence p_i1 (read by `Agwf` only; see trident/losses/weighting.hpp).
/// With `PlainSoftmax`, alpha = 1 in every term, L_bin and L_un included (the paper's "w/o AGWF").
///
/// Decisions on what the paper leaves open:
///  - S-bar (Eq. 10) is detached by default (`ReidLossOptions::detach_mean_positive`): it stands in for the
///    unknown positive score of an unlabeled proposal, a moving target of L_un, and L_un's gradient is the AGWF
///    of the unlabeled proposal's own scores only. Without the detach, L_un also pushes every labeled positive
///    score up, through lambda / |Psi_L|, a second and unstated L_bin.
///  - No labeled proposal in the batch: L_id = L_bin = 0, and L_un = 0 as well (S-bar is undefined, there is no
///    target to compare the unlabeled scores with). No unlabeled proposal: L_un = 0. An empty term is an exact
///    zero that is still connected to the graph of `scores` (a zero gradient, never NaN), so backward() and
///    data-parallel gradient reduction behave the same on every batch.
///  - The terms are returned separately (ReidLossTerms) for logging; `un` is the mean of L_un before lambda.

#include <trident/core/data_parallel.hpp>
#include <trident/core/identity.hpp>
#include <trident/losses/weighting.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/softplus.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string_view>

namespace trident::losses {

/// Runtime hyper-parameters of the re-id loss, with the paper's values (Sections 4.2 and 5.2).
struct ReidLossOptions {
  double tau_id = 1.0 / 30.0;        ///< tau_1, the temperature of L_id and L_un
  double tau_bin = 2.0;              ///< tau_2, the temperature of L_bin
  double s_kappa = 1.0;              ///< s_kappa of L_bin: the maximum cosine similarity
  double lambda_unlabeled = 0.1;     ///< lambda, the weight of the unlabeled term
  bool detach_mean_positive = true;  ///< S-bar is a constant for autograd (see the header's comment)
};

/// The re-id loss and its terms, each a 0-d tensor in the graph of `scores` (mean_positive detached).
struct ReidLossTerms {
  at::Tensor total;          ///< L_re-id = id + bin + lambda * un
  at::Tensor id;             ///< mean over labeled proposals of L_id (0 without any)
  at::Tensor bin;            ///< mean over labeled proposals of L_bin (0 without any)
  at::Tensor un;             ///< mean over unlabeled proposals of L_un, before lambda (0 without any)
  at::Tensor mean_positive;  ///< S-bar, detached (0 without labeled proposals)
  at::Tensor num_labeled;    ///< 0-d int64 on the device of the scores: |Psi_L|
  at::Tensor num_unlabeled;  ///< 0-d int64: |Psi_U|
};

namespace detail {

/// L_id per row for scores [N, C], identities [N] and an effective confidence (undefined: 1).
inline at::Tensor identity_rows(const at::Tensor& scores, const at::Tensor& identities, const at::Tensor& weight,
                                double tau) {
  // Eq. (7): log(1 + sum_{k in Omega_L U Omega_Q, k != y_i} exp(alpha_i (S_ik - S_iy_i) / tau_1))
  return weighted_cross_entropy(scores, identities, weight, tau);
}

/// L_bin per row for positive scores [N] and an effective confidence (undefined: 1).
inline at::Tensor binary_rows(const at::Tensor& positive, const at::Tensor& weight, double tau, double s_kappa) {
  // Eq. (8): log(1 + exp((s_kappa - alpha_i S_iy_i) / tau_2)), a softplus (stable for any argument).
  const auto weighted = weight.defined() ? positive * weight : positive;
  return at::softplus((s_kappa - weighted) / tau);
}

/// L_un per row for look-up-table scores [N, L], S-bar (0-d) and an effective confidence (undefined: 1).
inline at::Tensor unlabeled_rows(const at::Tensor& lut_scores, const at::Tensor& mean_positive,
                                 const at::Tensor& weight, double tau) {
  // Eq. (9): log(1 + sum_{k in Omega_L} exp(alpha_i (S_ik - S-bar) / tau_1)) is the loss of weighting.hpp with a
  // virtual true class of score S-bar prepended as column 0; its gradient is then the AGWF of Eq. (5) as well.
  const auto rows = lut_scores.size(0);
  const auto target = mean_positive.to(lut_scores.scalar_type()).reshape({1, 1}).expand({rows, 1});
  const auto labels = at::zeros({rows}, lut_scores.options().dtype(at::kLong));
  return weighted_cross_entropy(at::cat({target, lut_scores}, 1), labels, weight, tau);
}

/// sum / max(count, 1): the mean of a possibly empty tensor, 0 (in the graph) when empty.
inline at::Tensor mean_or_zero(const at::Tensor& rows) {
  return rows.sum() / static_cast<double>(std::max<int64_t>(rows.numel(), 1));
}

/// S-bar from the positive scores S_iy_i [N_L] of the labeled proposals (0 when there is none).
inline at::Tensor mean_positive(const at::Tensor& positive) {
  // Eq. (10): S-bar = (1 / |Psi_L|) sum_{i in Psi_L} S_iy_i
  return mean_or_zero(positive);
}

inline void check_lut_size(int64_t lut_size, const at::Tensor& scores, std::string_view caller) {
  TRIDENT_CHECK(lut_size >= 1 && lut_size <= scores.size(1),
                "{}: lut_size must lie in [1, {}] (the look-up table columns of scores {}), got {}", caller,
                scores.size(1), shape_of(scores), lut_size);
}

}  // namespace detail

/// L_id per labeled row: the classification loss over look-up table and queue columns with the identity as the
/// true class (weighting.hpp's form with tau_1).
/// scores [N, C], identities [N] int64 in [0, C), alpha [N]. Returns [N].
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor id_loss(const at::Tensor& scores, const at::Tensor& identities, const at::Tensor& alpha,
                   double tau = ReidLossOptions{}.tau_id) {
  // Eq. (7) is the shared classification form over look-up table and queue columns.
  return detail::checked_classification_loss<Weighting, Confidence>(scores, identities, alpha, tau,
                                                                    "trident::losses::id_loss", "identities");
}

/// L_bin per row from the positive scores S_iy_i [N] and alpha [N]. Returns [N].
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor bin_loss(const at::Tensor& positive_scores, const at::Tensor& alpha, double tau = ReidLossOptions{}.tau_bin,
                    double s_kappa = ReidLossOptions{}.s_kappa) {
  constexpr std::string_view caller = "trident::losses::bin_loss";
  detail::assert_gradient_weighting<Weighting>();
  TRIDENT_CHECK(positive_scores.defined() && positive_scores.dim() == 1 && positive_scores.is_floating_point(),
                "{}: positive_scores must be a floating-point [N] tensor, got {}", caller, shape_of(positive_scores));
  detail::check_temperature(tau, caller, "tau");
  const auto weight =
      detail::effective_confidence<Weighting, Confidence>(alpha, positive_scores.size(0), positive_scores, caller);
  return detail::binary_rows(positive_scores, weight, tau, s_kappa);
}

/// S-bar: the mean positive score S_iy_i over the rows of `scores` [N, C] with identities [N] in [0, C); a 0-d
/// tensor in the graph of `scores`, 0 when N = 0.
inline at::Tensor mean_positive_score(const at::Tensor& scores, const at::Tensor& identities) {
  constexpr std::string_view caller = "trident::losses::mean_positive_score";
  detail::check_scores(scores, caller, "scores");
  detail::check_labels(identities, scores.size(0), 0, scores.size(1), scores, caller, "identities");
  return detail::mean_positive(scores.gather(1, identities.unsqueeze(1)).squeeze(1));
}

/// L_un per unlabeled row from its look-up table scores [N, L], S-bar (a 0-d tensor, used as given: detach it
/// for a constant target) and alpha [N]. Returns [N].
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor unlabeled_loss(const at::Tensor& lut_scores, const at::Tensor& mean_positive, const at::Tensor& alpha,
                          double tau = ReidLossOptions{}.tau_id) {
  constexpr std::string_view caller = "trident::losses::unlabeled_loss";
  detail::assert_gradient_weighting<Weighting>();
  detail::check_scores(lut_scores, caller, "lut_scores");
  TRIDENT_CHECK(mean_positive.defined() && mean_positive.numel() == 1 && mean_positive.is_floating_point(),
                "{}: mean_positive must be a floating-point scalar tensor, got {}", caller, shape_of(mean_positive));
  TRIDENT_CHECK(mean_positive.device() == lut_scores.device(), "{}: mean_positive must be on {}, got {}", caller,
                lut_scores.device().str(), mean_positive.device().str());
  detail::check_temperature(tau, caller, "tau");
  const auto weight =
      detail::effective_confidence<Weighting, Confidence>(alpha, lut_scores.size(0), lut_scores, caller);
  return detail::unlabeled_rows(lut_scores, mean_positive, weight, tau);
}

/// L_re-id of a mini-batch: mean over labeled proposals of L_id + L_bin, plus lambda times the mean over
/// unlabeled proposals of L_un; background rows are ignored. scores [N, C] with the look-up table in columns
/// [0, lut_size), labels [N] in {-2, -1} U [0, lut_size), alpha [N].
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
ReidLossTerms reid_loss(const at::Tensor& scores, const at::Tensor& labels, const at::Tensor& alpha, int64_t lut_size,
                        const ReidLossOptions& options = {}) {
  constexpr std::string_view caller = "trident::losses::reid_loss";
  detail::assert_gradient_weighting<Weighting>();
  detail::check_scores(scores, caller, "scores");
  detail::check_lut_size(lut_size, scores, caller);
  detail::check_labels(labels, scores.size(0), background_identity, lut_size, scores, caller, "labels");
  detail::check_temperature(options.tau_id, caller, "options.tau_id");
  detail::check_temperature(options.tau_bin, caller, "options.tau_bin");
  TRIDENT_CHECK(std::isfinite(options.lambda_unlabeled) && options.lambda_unlabeled >= 0,
                "{}: options.lambda_unlabeled must be finite and >= 0, got {}", caller, options.lambda_unlabeled);
  const auto weight = detail::effective_confidence<Weighting, Confidence>(alpha, scores.size(0), scores, caller);

  ReidLossTerms terms;
  // Rows are selected by mask, never by index: the numbers of labeled and unlabeled rows stay on the device,
  // so on a GPU nothing here waits. Every row is scored; a row outside a term contributes an exact 0 to its sum
  // and to its gradient.
  const auto labeled = labels >= 0;
  const auto unlabeled = labels == unlabeled_identity;
  terms.num_labeled = labeled.sum();
  terms.num_unlabeled = unlabeled.sum();
  // Means over the rows of the whole batch (core/data_parallel.hpp: over every process's proposals when a batch is
  // split over processes). The two counts and the positive scores' sum of S-bar go in one sum over the processes.
  const auto identities = labels.clamp_min(0);
  const auto positive = scores.gather(1, identities.unsqueeze(1)).squeeze(1);
  const auto local_positive = at::where(labeled, positive, 0.0).sum();
  const auto totals = batch_sum(at::stack({terms.num_labeled.to(at::kDouble), terms.num_unlabeled.to(at::kDouble),
                                           local_positive.detach().to(at::kDouble)}));
  const auto total_labeled = totals[0], total_unlabeled = totals[1];
  const auto masked_mean = [](const at::Tensor& mask, const at::Tensor& rows, const at::Tensor& count) {
    return batch_mean_of_total(at::where(mask, rows, 0.0).sum(), count);
  };
  terms.id = masked_mean(labeled, detail::identity_rows(scores, identities, weight, options.tau_id), total_labeled);
  terms.bin = masked_mean(labeled, detail::binary_rows(positive, weight, options.tau_bin, options.s_kappa),
                          total_labeled);

  // Eq. (10): S-bar over the labeled rows of the whole batch (0 without any). Its value is the whole batch's;
  // undetached, its gradient reaches this process's rows only.
  const auto others_positive = totals[2].to(positive.scalar_type()) - local_positive.detach();
  const auto mean_positive =
      (local_positive + others_positive) / total_labeled.clamp_min(1).to(positive.scalar_type());
  terms.mean_positive = mean_positive.detach();
  // L_un needs both kinds of rows; without them it is an exact 0 in the graph of scores.
  const auto target = options.detach_mean_positive ? mean_positive.detach() : mean_positive;
  const auto un_rows = detail::unlabeled_rows(scores.narrow(1, 0, lut_size), target, weight, options.tau_id);
  const auto both = (total_labeled > 0) & (total_unlabeled > 0);
  terms.un = at::where(both, masked_mean(unlabeled, un_rows, total_unlabeled), 0.0);
  // Eq. (6)
  terms.total = terms.id + terms.bin + options.lambda_unlabeled * terms.un;
  return terms;
}

}  // namespace trident::losses
