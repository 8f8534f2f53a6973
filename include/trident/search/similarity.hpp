#pragma once
/// \file trident/search/similarity.hpp
/// How a query is compared with gallery detections. Embeddings are L2-normalised, so their dot product is the
/// cosine similarity. The paper (Section 4.2, "Distinction from related work") performs re-identification with
/// the similarity weighted by the detection confidence, as CWS [23] and NAE [3] do at test time (and SeqNet,
/// whose gallery embeddings are multiplied by the detection score):
///     sim(q, d) = alpha_d * cos(x_q, x_d),
/// so a box that is barely a person ranks below a confident one with the same appearance. trident uses that
/// by default, keeping the embeddings unit length and the score apart; SimilarityWeighting::none gives the plain
/// cosine (OIM's; for ablations and for other methods' results).

#include <trident/config.hpp>

#include <ATen/ops/matmul.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string_view>

namespace trident::search {

enum class SimilarityWeighting { confidence, none };

/// Throws unless every row of `embeddings` ([N, D]) has an L2 norm within `tolerance` of 1 (a negative tolerance
/// checks nothing); `what(r)` names row r in the message. The similarities here are dot products, which are
/// cosines only for unit rows: score-weighted embeddings, say, would silently give score^2 * cosine.
template <class Name>
void check_unit_rows(const at::Tensor& embeddings, double tolerance, std::string_view caller, Name&& what) {
  if (tolerance < 0 || !embeddings.defined() || embeddings.numel() == 0) return;
  // Row by row over the float values (a view when they already are contiguous CPU floats: a memory-mapped
  // gallery of 10^7 rows is read once, never copied), summed in double.
  const auto rows = embeddings.detach().to(at::kCPU, at::kFloat).contiguous();
  const int64_t count = rows.size(0), dim = rows.numel() / std::max<int64_t>(count, 1);
  const float* data = rows.data_ptr<float>();
  for (int64_t r = 0; r < count; ++r) {
    double squares = 0;
    for (int64_t k = 0; k < dim; ++k) squares += static_cast<double>(data[r * dim + k]) * data[r * dim + k];
    const double norm = std::sqrt(squares);
    TRIDENT_CHECK(std::abs(norm - 1.0) <= tolerance,
                  "{}: {} has L2 norm {:.6g}, not 1 (tolerance {}): embeddings must be unit length (a similarity is "
                  "their dot product; score-weighted embeddings, for example, would give score^2 * cosine)",
                  caller, what(static_cast<size_t>(r)), norm, tolerance);
  }
}

/// queries [Q, D], gallery [N, D] (both unit rows), gallery_scores [N] -> [Q, N].
inline at::Tensor similarity(const at::Tensor& queries, const at::Tensor& gallery, const at::Tensor& gallery_scores,
                             SimilarityWeighting weighting = SimilarityWeighting::confidence) {
  constexpr const char* fn = "trident::search::similarity";
  TRIDENT_CHECK(queries.defined() && queries.dim() == 2, "{}: queries must be [Q, D], got {}", fn, shape_of(queries));
  TRIDENT_CHECK(gallery.defined() && gallery.dim() == 2 && gallery.size(1) == queries.size(1),
                "{}: gallery must be [N, {}], got {}", fn, queries.size(1), shape_of(gallery));
  const auto cosine = at::matmul(queries, gallery.t());
  if (weighting == SimilarityWeighting::none) return cosine;
  TRIDENT_CHECK(gallery_scores.defined() && gallery_scores.dim() == 1 && gallery_scores.size(0) == gallery.size(0),
                "{}: gallery_scores must be [{}], got {}", fn, gallery.size(0), shape_of(gallery_scores));
  return cosine * gallery_scores.unsqueeze(0).to(cosine.scalar_type());
}

}  // namespace trident::search
