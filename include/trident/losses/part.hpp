#pragma once
/// \file trident/losses/part.hpp
/// The part classification loss of the paper (Section 4.3). Each of M proposals is cut horizontally into Np
/// partitions; a part classifier scores partition j of proposal i against Np + 1 classes: the Np partitions and
/// a dummy class for background proposals. Labels are 0-based: z_ij = j for a foreground (person) proposal and
/// z_ij = Np (the paper's N_p + 1) for a background proposal. The loss is weighting.hpp's form with tau_3 and
/// the proposal's confidence alpha_i on every one of its partitions, averaged over all M * Np partitions.
/// An empty batch (M = 0) gives an exact 0 in the graph of the scores.

#include <trident/core/data_parallel.hpp>
#include <trident/losses/weighting.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/arange.h>
#include <ATen/ops/full.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/softmax.h>
#include <ATen/ops/where.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>

namespace trident::losses {

/// What Eq. (11) compares as P_ijk. The paper's text calls P_ijk "the probability that h_ij belongs to the k-th
/// partition" and its classifier "a fully connected layer"; it does not say whether a softmax comes between.
enum class PartScores {
  /// The classifier's outputs themselves (the default): Eq. (11) is then Eq. (2)'s AGWF cross-entropy with
  /// tau_3, the form of every other classification loss of the paper (L_id and L_un compare scores, not
  /// probabilities). docs/paper-mapping.md, "Choices the paper leaves open", gives the reasons.
  logits,
  /// softmax(P_ij) over the Np + 1 classes first, then Eq. (11) on those probabilities: differences within
  /// [-1, 1], so with tau_3 = 1/10 a partition's loss never falls below log(1 + Np exp(-10 alpha_i)) and its
  /// gradient passes through the softmax's Jacobian.
  probabilities,
};

/// Runtime hyper-parameters of the part loss, with the paper's value (Section 5.2).
struct PartLossOptions {
  double tau_part = 0.1;                  ///< tau_3, the temperature of L_part
  PartScores scores = PartScores::logits;  ///< what P_ijk is (see PartScores)
};

/// The part labels [M, Np] (int64) of M proposals from their foreground mask [M] (bool): row i is 0, 1, ..., Np-1
/// for a foreground proposal and Np everywhere (the dummy class) for a background one.
inline at::Tensor part_labels(const at::Tensor& foreground, int64_t num_parts) {
  constexpr std::string_view caller = "trident::losses::part_labels";
  TRIDENT_CHECK(foreground.defined() && foreground.dim() == 1, "{}: foreground must be a [M] tensor, got {}", caller,
                shape_of(foreground));
  TRIDENT_CHECK(foreground.scalar_type() == at::kBool, "{}: foreground must be a bool mask, got {}", caller,
                std::string(c10::toString(foreground.scalar_type())));
  TRIDENT_CHECK(num_parts >= 1, "{}: num_parts must be >= 1, got {}", caller, num_parts);
  const auto options = foreground.options().dtype(at::kLong);
  const auto parts = at::arange(num_parts, options).unsqueeze(0);
  const auto dummy = at::full({1, 1}, num_parts, options);
  return at::where(foreground.unsqueeze(1), parts, dummy).expand({foreground.size(0), num_parts}).contiguous();
}

/// L_part: scores [M, Np, Np + 1] (the part classifier's outputs; P_ijk themselves or their softmax over k, as
/// options.scores says), labels [M, Np] int64 in [0, Np] (see part_labels), alpha [M] (read by `Agwf` only).
/// Returns a 0-d tensor, the mean over the M * Np partitions.
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor part_loss(const at::Tensor& scores, const at::Tensor& labels, const at::Tensor& alpha,
                     const PartLossOptions& options = {}) {
  constexpr std::string_view caller = "trident::losses::part_loss";
  detail::assert_gradient_weighting<Weighting>();
  TRIDENT_CHECK(scores.defined() && scores.dim() == 3 && scores.size(2) == scores.size(1) + 1,
                "{}: scores must be a [M, Np, Np + 1] tensor, got {}", caller, shape_of(scores));
  TRIDENT_CHECK(scores.is_floating_point(), "{}: scores must be floating point, got {}", caller,
                std::string(c10::toString(scores.scalar_type())));
  TRIDENT_CHECK(scores.size(1) >= 1, "{}: scores must have at least one partition, got {}", caller, shape_of(scores));
  const auto m = scores.size(0), parts = scores.size(1);
  TRIDENT_CHECK(labels.defined() && labels.dim() == 2 && labels.size(0) == m && labels.size(1) == parts,
                "{}: labels must be a [{}, {}] tensor, got {}", caller, m, parts, shape_of(labels));
  detail::check_labels(labels.reshape({-1}), m * parts, 0, parts + 1, scores, caller, "labels");
  detail::check_temperature(options.tau_part, caller, "options.tau_part");
  TRIDENT_CHECK(options.scores == PartScores::logits || options.scores == PartScores::probabilities,
                "{}: options.scores must be PartScores::logits or ::probabilities, got {}", caller,
                static_cast<int>(options.scores));
  const auto weight = detail::effective_confidence<Weighting, Confidence>(alpha, m, scores, caller);

  // Eq. (11): (1 / (Np |Psi|)) sum_{i, j} log(1 + sum_{k != z_ij} exp(alpha_i (P_ijk - P_ijz_ij) / tau_3))
  const auto p = options.scores == PartScores::probabilities ? at::softmax(scores, 2) : scores;
  const auto rows = detail::weighted_cross_entropy(p.reshape({m * parts, parts + 1}), labels.reshape({-1}),
                                                   weight.defined() ? weight.unsqueeze(1).expand({m, parts}).reshape({-1}) : weight,
                                                   options.tau_part);
  // The mean over the partitions of the whole batch (core/data_parallel.hpp: over every process's proposals).
  return batch_mean(rows.sum(), at::scalar_tensor(static_cast<double>(rows.numel()), rows.options().dtype(at::kDouble)));
}

}  // namespace trident::losses
