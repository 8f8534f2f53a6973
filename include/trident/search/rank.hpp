#pragma once
/// \file trident/search/rank.hpp
/// Person search proper: rank every detection of a gallery by its similarity to a query embedding (the
/// confidence-weighted cosine of search/similarity.hpp by default) and keep the best k.
#include <trident/config.hpp>
#include <trident/core/types.hpp>
#include <trident/search/similarity.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/sort.h>

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace trident::search {

/// One ranked gallery detection.
struct Match {
  int64_t image = -1;              ///< index into the gallery
  int64_t detection = -1;          ///< index into that image's detections
  std::array<float, 4> box{};      ///< x1, y1, x2, y2
  double score = 0;                ///< detection confidence
  double similarity = 0;           ///< what the ranking sorts by
};

struct RankOptions {
  int64_t top_k = 10;                 ///< matches returned (all when <= 0)
  double score_threshold = 0.5;       ///< detections below this confidence are not candidates (SeqNet's 0.5)
  SimilarityWeighting weighting = SimilarityWeighting::confidence;
  double unit_norm_tolerance = 1e-3;  ///< the query and the candidates must be unit length (negative: no check)
};

/// The gallery's detections ranked by similarity to `query` ([D] or [1, D], unit length), best first. One matrix
/// product over all candidates; ties keep gallery order (image, then detection).
inline std::vector<Match> rank_gallery(const at::Tensor& query, std::span<const GalleryDetections> gallery,
                                       const RankOptions& options = {}) {
  constexpr const char* fn = "trident::search::rank_gallery";
  TRIDENT_CHECK(query.defined() && (query.dim() == 1 || (query.dim() == 2 && query.size(0) == 1)),
                "{}: query must be [D] or [1, D], got {}", fn, shape_of(query));
  const at::Tensor q = query.reshape({1, -1}).to(at::kFloat).cpu();
  std::vector<at::Tensor> boxes, scores, embeddings, images, detections;
  for (size_t i = 0; i < gallery.size(); ++i) {
    const auto& d = gallery[i];
    if (!d.boxes.defined() || d.boxes.size(0) == 0) continue;
    const int64_t n = d.boxes.size(0);
    TRIDENT_CHECK(d.embeddings.defined() && d.embeddings.dim() == 2 && d.embeddings.size(0) == n &&
                      d.embeddings.size(1) == q.size(1),
                  "{}: gallery image {} needs embeddings [{}, {}], got {}", fn, i, n, q.size(1), shape_of(d.embeddings));
    TRIDENT_CHECK(d.scores.defined() && d.scores.numel() == n, "{}: gallery image {} needs {} scores, got {}", fn, i, n,
                  shape_of(d.scores));
    boxes.push_back(d.boxes.to(at::kCPU, at::kFloat).reshape({n, 4}));
    scores.push_back(d.scores.to(at::kCPU, at::kDouble).reshape({n}));
    embeddings.push_back(d.embeddings.to(at::kCPU, at::kFloat));
    images.push_back(at::full({n}, static_cast<int64_t>(i), at::kLong));
    detections.push_back(at::arange(n, at::kLong));
  }
  if (boxes.empty()) return {};
  const auto all_scores = at::cat(scores);
  const auto keep = (all_scores >= options.score_threshold).nonzero().select(1, 0);
  if (keep.numel() == 0) return {};
  const auto kept_scores = all_scores.index_select(0, keep);
  const auto candidates = at::cat(embeddings).index_select(0, keep);
  check_unit_rows(q, options.unit_norm_tolerance, fn, [](size_t) { return std::string("the query"); });
  check_unit_rows(candidates, options.unit_norm_tolerance, fn, [&](size_t r) {
    const auto row = keep[static_cast<int64_t>(r)].item<int64_t>();
    return fmt::format("gallery image {} detection {}", at::cat(images)[row].item<int64_t>(),
                       at::cat(detections)[row].item<int64_t>());
  });
  const auto sims = similarity(q, candidates, kept_scores.to(at::kFloat), options.weighting).squeeze(0);
  const auto order = std::get<1>(at::sort(sims, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t count = options.top_k > 0 ? std::min<int64_t>(options.top_k, order.size(0)) : order.size(0);
  const auto top = order.narrow(0, 0, count);
  const auto rows = keep.index_select(0, top);
  const auto top_boxes = at::cat(boxes).index_select(0, rows).contiguous();
  const auto top_images = at::cat(images).index_select(0, rows).contiguous();
  const auto top_detections = at::cat(detections).index_select(0, rows).contiguous();
  const auto top_scores = kept_scores.index_select(0, top).contiguous();
  const auto top_sims = sims.index_select(0, top).to(at::kDouble).contiguous();
  const auto b = top_boxes.accessor<float, 2>();
  std::vector<Match> out(static_cast<size_t>(count));
  for (int64_t r = 0; r < count; ++r) {
    auto& m = out[static_cast<size_t>(r)];
    m.image = top_images.data_ptr<int64_t>()[r];
    m.detection = top_detections.data_ptr<int64_t>()[r];
    m.box = {b[r][0], b[r][1], b[r][2], b[r][3]};
    m.score = top_scores.data_ptr<double>()[r];
    m.similarity = top_sims.data_ptr<double>()[r];
  }
  return out;
}

}  // namespace trident::search
