#pragma once
/// \file trident/losses/weighting.hpp
/// How a classification loss weights its gradients (Sections 3 and 4.1 of the paper), and the one loss form
/// every classification term of the paper shares.
///
/// For a score row S_i [C], its true class y_i, a confidence alpha_i and a temperature tau,
///
///     L(S_i, alpha_i, y_i) = log(1 + sum_{k != y_i} exp(alpha_i (S_ik - S_iy_i) / tau))
///                          = cross_entropy(alpha_i S_i / tau, y_i),
///
/// computed as -log_softmax(alpha_i S_i / tau)[y_i] (the log-sum-exp form: no overflow for any score).
/// Its derivative with respect to S_ik is the gradient weighting function
///
///     G_k(S_i, alpha_i, y_i) = alpha_i * F_k(alpha_i S_i, y_i),
///
/// with F_k the softmax-like weighting of plain cross-entropy. Two gradient weightings, as tags:
///  - `Agwf`: alpha_i is the detection confidence p_i1 (the adaptive gradient weighting function, AGWF);
///  - `PlainSoftmax`: alpha_i = 1 for every row: the plain loss, the paper's "w/o AGWF" ablation. The
///    confidence argument is then ignored (it may be undefined), so switching the weighting is a change of
///    type only.
///
/// Whether the confidence also receives a gradient is a compile-time choice, `ConfidenceGradient`. The paper
/// uses alpha to scale the gradient of the scores and says nothing of a gradient of the loss with respect to
/// alpha; trident detaches it by default (`ConfidenceGradient::detached`), so that the re-id and part losses
/// cannot lower themselves by moving the detector's person probability (for a well-classified row, a higher
/// alpha lowers every loss here, including for background proposals in L_part). `propagated` keeps alpha in
/// the graph for experiments.

#include <trident/config.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/log_softmax.h>
#include <ATen/ops/max.h>
#include <ATen/ops/min.h>
#include <ATen/ops/ones_like.h>
#include <ATen/ops/stack.h>

#include <c10/core/ScalarType.h>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>

namespace trident::losses {

/// The adaptive gradient weighting function of the paper: G_k(S_i, alpha_i, y_i) = alpha_i F_k(alpha_i S_i, y_i),
/// alpha_i the detection confidence of proposal i.
// Eq. (5)
struct Agwf {
  static constexpr std::string_view name = "agwf";
  static constexpr bool uses_confidence = true;
};

/// Plain softmax cross-entropy: alpha_i = 1, the gradient weighting is F_k(S_i, y_i) itself:
/// F_k = (1/tau) softmax_k(S_i / tau) for k != y_i, and -sum_{j != y_i} F_j for k = y_i.
// Eq. (4)
struct PlainSoftmax {
  static constexpr std::string_view name = "plain_softmax";
  static constexpr bool uses_confidence = false;
};

/// A gradient-weighting tag: an empty type naming itself and saying whether it scales rows by a confidence.
template <typename T>
concept GradientWeighting = std::is_empty_v<T> && requires {
  { T::name } -> std::convertible_to<std::string_view>;
  { T::uses_confidence } -> std::convertible_to<bool>;
};

/// Whether the confidence alpha is a constant for autograd (`detached`, the default) or part of the graph.
enum class ConfidenceGradient { detached, propagated };

namespace detail {

template <typename Weighting>
constexpr void assert_gradient_weighting() {
  static_assert(GradientWeighting<Weighting>,
                "trident::losses: the gradient weighting must be a tag such as trident::losses::Agwf or "
                "trident::losses::PlainSoftmax (an empty struct with `static constexpr std::string_view name` and "
                "`static constexpr bool uses_confidence`)");
}

inline void check_scores(const at::Tensor& scores, std::string_view caller, std::string_view arg) {
  TRIDENT_CHECK(scores.defined() && scores.dim() == 2, "{}: {} must be a [N, C] tensor, got {}", caller, arg,
                shape_of(scores));
  TRIDENT_CHECK(scores.is_floating_point(), "{}: {} must be floating point, got {}", caller, arg,
                std::string(c10::toString(scores.scalar_type())));
}

/// labels must be an int64 [rows] tensor on the device of `like`, every value in [low, high). The values are
/// read on the host: checked where checks_values() says (CPU tensors by default).
inline void check_labels(const at::Tensor& labels, int64_t rows, int64_t low, int64_t high, const at::Tensor& like,
                         std::string_view caller, std::string_view arg) {
  TRIDENT_CHECK(labels.defined() && labels.dim() == 1 && labels.size(0) == rows,
                "{}: {} must be a [{}] tensor, got {}", caller, arg, rows, shape_of(labels));
  TRIDENT_CHECK(labels.scalar_type() == at::kLong, "{}: {} must be int64, got {}", caller, arg,
                std::string(c10::toString(labels.scalar_type())));
  TRIDENT_CHECK(labels.device() == like.device(), "{}: {} must be on {}, got {}", caller, arg, like.device().str(),
                labels.device().str());
  if (rows == 0 || !checks_values(labels)) return;
  const auto range = at::stack({at::min(labels), at::max(labels)}).cpu();
  const auto lo = range[0].item<int64_t>(), hi = range[1].item<int64_t>();
  TRIDENT_CHECK(lo >= low && hi < high, "{}: {} must lie in [{}, {}), got values in [{}, {}]", caller, arg, low, high,
                lo, hi);
}

/// The effective confidence of `Weighting` for `rows` rows: alpha itself (detached or not) for a weighting that
/// uses it, an undefined tensor (meaning 1) otherwise.
template <typename Weighting, ConfidenceGradient Confidence>
at::Tensor effective_confidence(const at::Tensor& alpha, int64_t rows, const at::Tensor& like,
                                std::string_view caller) {
  assert_gradient_weighting<Weighting>();
  if constexpr (!GradientWeighting<Weighting>) {
    return {};  // the static_assert above has already said why
  } else if constexpr (!Weighting::uses_confidence) {
    return {};
  } else {
    TRIDENT_CHECK(alpha.defined() && alpha.dim() == 1 && alpha.size(0) == rows,
                  "{}: alpha must be a [{}] tensor (one confidence per row), got {}", caller, rows, shape_of(alpha));
    TRIDENT_CHECK(alpha.is_floating_point(), "{}: alpha must be floating point, got {}", caller,
                  std::string(c10::toString(alpha.scalar_type())));
    TRIDENT_CHECK(alpha.device() == like.device(), "{}: alpha must be on {}, got {}", caller, like.device().str(),
                  alpha.device().str());
    if constexpr (Confidence == ConfidenceGradient::detached) return alpha.detach();
    else return alpha;
  }
}

/// The loss form of the header's comment, unchecked. `weight` undefined means alpha = 1.
inline at::Tensor weighted_cross_entropy(const at::Tensor& scores, const at::Tensor& labels, const at::Tensor& weight,
                                         double tau) {
  // Eq. (1) and Eq. (2): -log softmax(S_i / tau)[y_i] = log(1 + sum_{j != y_i} exp((S_ij - S_iy_i) / tau)), here
  // with the scores scaled by alpha_i first, which makes the gradient with respect to S_ik Eq. (5)'s G_k.
  const auto logits = (weight.defined() ? scores * weight.unsqueeze(1) : scores) / tau;
  return -at::log_softmax(logits, 1).gather(1, labels.unsqueeze(1)).squeeze(1);
}

inline void check_temperature(double tau, std::string_view caller, std::string_view arg) {
  TRIDENT_CHECK(std::isfinite(tau) && tau > 0, "{}: {} must be a positive temperature, got {}", caller, arg, tau);
}

/// classification_loss with its checks, errors naming `caller` and the labels argument `labels_name`.
template <typename Weighting, ConfidenceGradient Confidence>
at::Tensor checked_classification_loss(const at::Tensor& scores, const at::Tensor& labels, const at::Tensor& alpha,
                                       double tau, std::string_view caller, std::string_view labels_name) {
  assert_gradient_weighting<Weighting>();
  check_scores(scores, caller, "scores");
  check_labels(labels, scores.size(0), 0, scores.size(1), scores, caller, labels_name);
  check_temperature(tau, caller, "tau");
  const auto weight = effective_confidence<Weighting, Confidence>(alpha, scores.size(0), scores, caller);
  return weighted_cross_entropy(scores, labels, weight, tau);
}

}  // namespace detail

/// Per-row loss L(S_i, alpha_i, y_i) = log(1 + sum_{k != y_i} exp(alpha_i (S_ik - S_iy_i) / tau)): the plain
/// cross-entropy with `PlainSoftmax`, the AGWF form with `Agwf`. Its gradient with respect to S_ik is
/// G_k = alpha_i F_k(alpha_i S_i, y_i), F_k the weighting function of plain cross-entropy.
///
/// scores [N, C] floating point, labels [N] int64 in [0, C), alpha [N] (ignored by PlainSoftmax), tau > 0.
/// Returns [N], one loss per row, in the graph of `scores` (and of `alpha` when propagated).
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor classification_loss(const at::Tensor& scores, const at::Tensor& labels, const at::Tensor& alpha,
                               double tau) {
  return detail::checked_classification_loss<Weighting, Confidence>(scores, labels, alpha, tau,
                                                                    "trident::losses::classification_loss", "labels");
}

/// The per-row confidence that a configuration's gradient weighting gives a branch's loss, for a branch of your
/// own that follows the configuration's choice (examples/04_custom_branches.cpp): alpha itself for a weighting
/// that uses it (Agwf; detached from the graph unless Confidence is `propagated`), ones for one that does not
/// (PlainSoftmax: the "w/o AGWF" ablation). A classification loss applies it the paper's way through
/// classification_loss (the scores scaled by alpha before the softmax, Eq. (5)); another loss may scale its
/// per-row values with it.
///
/// alpha [N] floating point (the detection branch's p_i1: RoiContext::detection.alpha). Returns [N].
template <typename Weighting = Agwf, ConfidenceGradient Confidence = ConfidenceGradient::detached>
at::Tensor confidence_weights(const at::Tensor& alpha) {
  detail::assert_gradient_weighting<Weighting>();
  constexpr std::string_view caller = "trident::losses::confidence_weights";
  TRIDENT_CHECK(alpha.defined() && alpha.dim() == 1 && alpha.is_floating_point(),
                "{}: alpha must be a floating-point [N] tensor (one confidence per row), got {}", caller,
                shape_of(alpha));
  const auto weight = detail::effective_confidence<Weighting, Confidence>(alpha, alpha.size(0), alpha, caller);
  return weight.defined() ? weight : at::ones_like(alpha);
}

}  // namespace trident::losses
