#pragma once
/// \file trident/search/rank.hpp
/// Person search proper: rank every detection of a gallery by its similarity to a query embedding (the
/// confidence-weighted cosine of search/similarity.hpp by default) and keep the best k.
#include <trident/config.hpp>
#include <trident/eval/types.hpp>
#include <trident/search/similarity.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/sort.h>

#include <array>
#include <cstdint>
#include <span>
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
};

/// The gallery's detections ranked by similarity to `query` ([D] or [1, D], unit length), best first.
inline std::vector<Match> rank_gallery(const at::Tensor& query, std::span<const eval::Detections> gallery,
                                       const RankOptions& options = {}) {
  constexpr const char* fn = "trident::search::rank_gallery";
  TRIDENT_CHECK(query.defined() && (query.dim() == 1 || (query.dim() == 2 && query.size(0) == 1)),
                "{}: query must be [D] or [1, D], got {}", fn, shape_of(query));
  const at::Tensor q = query.reshape({1, -1}).to(at::kFloat).cpu();
  std::vector<Match> candidates;
  std::vector<at::Tensor> embeddings, scores;
  for (size_t i = 0; i < gallery.size(); ++i) {
    const auto& d = gallery[i];
    if (!d.boxes.defined() || d.boxes.size(0) == 0) continue;
    TRIDENT_CHECK(d.embeddings.defined() && d.embeddings.dim() == 2 && d.embeddings.size(0) == d.boxes.size(0) &&
                      d.embeddings.size(1) == q.size(1),
                  "{}: gallery image {} needs embeddings [{}, {}], got {}", fn, i, d.boxes.size(0), q.size(1),
                  shape_of(d.embeddings));
    const auto boxes = d.boxes.to(at::kFloat).cpu().contiguous();
    const auto s = d.scores.to(at::kDouble).cpu().contiguous();
    for (int64_t j = 0; j < boxes.size(0); ++j) {
      if (s[j].item<double>() < options.score_threshold) continue;
      Match m;
      m.image = static_cast<int64_t>(i);
      m.detection = j;
      for (int k = 0; k < 4; ++k) m.box[static_cast<size_t>(k)] = boxes[j][k].item<float>();
      m.score = s[j].item<double>();
      candidates.push_back(m);
      embeddings.push_back(d.embeddings[j].to(at::kFloat).cpu().reshape({1, -1}));
      scores.push_back(d.scores[j].to(at::kFloat).cpu().reshape({1}));
    }
  }
  if (candidates.empty()) return {};
  const auto sims = similarity(q, at::cat(embeddings), at::cat(scores), options.weighting).squeeze(0);
  const auto order = std::get<1>(at::sort(sims, /*stable=*/true, /*dim=*/0, /*descending=*/true));
  const int64_t keep = options.top_k > 0 ? std::min<int64_t>(options.top_k, order.size(0)) : order.size(0);
  std::vector<Match> out;
  for (int64_t r = 0; r < keep; ++r) {
    const auto idx = order[r].item<int64_t>();
    Match m = candidates[static_cast<size_t>(idx)];
    m.similarity = sims[idx].item<double>();
    out.push_back(m);
  }
  return out;
}

}  // namespace trident::search
