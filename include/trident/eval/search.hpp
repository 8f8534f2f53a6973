#pragma once
/// \file trident/eval/search.hpp
/// Person-search mAP and top-k with the semantics of SeqNet's eval_search_cuhk and eval_search_prw
/// (itself following OIM's protocol code). For one query:
///
///  1. the gallery is a list of images, each with the query person's ground-truth box there if the person
///     appears in it (the "target"); the query's own image is never part of it;
///  2. in each gallery image, keep the detections whose score >= score_threshold; an image with none adds
///     nothing but still counts in the recall's denominator when the person is in it;
///  3. similarity(query, detection) = confidence * cosine (search::similarity: the paper's and SeqNet's
///     confidence-weighted similarity, whose gallery embeddings carry the detection score; SimilarityWeighting::none
///     gives the plain cosine of OIM); with SearchOptions::cbgm, SeqNet's context bipartite graph matching then
///     revises the similarities of the images most likely to hold the person (eval/cbgm.hpp);
///  4. in an image with a target of width w and height h, rank its detections by similarity (descending,
///     earlier detection first on ties) and mark as the one true positive the first whose IoU with the target
///     is >= min(0.5, w*h / ((w + 10) * (h + 10))) — the rule that lets small people be found with looser
///     boxes; every other detection of every gallery image is a negative;
///  5. recall = true positives / gallery images containing the person;
///     AP = average_precision(similarities, labels) * recall over all kept gallery detections
///     (scikit-learn's definition, eval/average_precision.hpp), and 0 when there is no true positive;
///  6. top-k hit = a true positive is among the k most similar gallery detections (ties keep the gallery
///     order: image order of the list, then the per-image ranking of step 4).
/// mAP and the top-k accuracies are the means over the queries. Per query the result also holds the rank of the
/// first true positive in that ranking and the top-ranked detection (image, box, score, similarity, correct).
/// Embeddings must be unit length (SearchOptions::unit_norm_tolerance): a query or kept gallery row that is not is
/// an error naming it, since the dot product of other vectors is not the cosine.
///
/// SeqNet applies the same per-image IoU rule on PRW (eval_search_prw), so trident does too.
/// Where trident differs from SeqNet (documented in docs/results-format.md): a gallery list that names an
/// image twice is an error (SeqNet counts its target twice); a query whose gallery holds no image of the person
/// (possible in PRW's multi-view gallery) is left out of the means and counted in queries_without_ground_truth
/// (SeqNet divides by zero); ties in similarity are broken by order as stated above (numpy's argsort leaves
/// them unspecified).

#include <trident/eval/average_precision.hpp>
#include <trident/eval/cbgm.hpp>
#include <trident/eval/types.hpp>
#include <trident/search/similarity.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <unordered_set>
#include <vector>

namespace trident::eval {

/// One image of a query's gallery: its index in the gallery detections and, if the query person appears
/// in it, that person's ground-truth box.
struct GalleryEntry {
  int64_t image = 0;
  std::optional<Box> target;
};

struct SearchOptions {
  double score_threshold = 0.5;  ///< SeqNet's det_thresh for search
  search::SimilarityWeighting weighting = search::SimilarityWeighting::confidence;
  std::vector<int64_t> top_k = {1, 5, 10};
  /// Every query embedding and every kept gallery embedding must have an L2 norm within this of 1, else the
  /// evaluation stops naming the row: the similarity is a dot product, and embeddings that are not unit length
  /// (score-weighted ones, say) silently give another measure (s^2 cos). Negative: no check.
  double unit_norm_tolerance = 1e-3;
  /// SeqNet's context bipartite graph matching (eval/cbgm.hpp; cbgm_cuhk_sysu, cbgm_prw), applied to each query
  /// before its ranking; needs the queries' boxes (the context is built from the query image's detections).
  std::optional<CbgmOptions> cbgm;
};

/// The most similar gallery detection of a query.
struct BestMatch {
  int64_t image = -1;    ///< index into the gallery detections (the protocol maps it to a file name)
  Box box{};             ///< x1, y1, x2, y2
  double score = 0.0;    ///< detection confidence
  double similarity = 0.0;
  bool correct = false;  ///< it is the query person's true positive (step 4)
};

struct QueryMetrics {
  double average_precision = 0.0;
  double recall = 0.0;
  int64_t true_positives = 0;
  int64_t ground_truths = 0;    ///< gallery images that contain the query person
  std::vector<bool> top_k_hit;  ///< one per SearchOptions::top_k
  int64_t first_match_rank = 0;     ///< 1-based rank of the first true positive in the query's ranking; 0: none
  std::optional<BestMatch> best;    ///< the top-ranked gallery detection; empty when none was kept
};

struct SearchMetrics {
  double mean_average_precision = 0.0;
  std::vector<int64_t> top_k;            ///< the k of each accuracy
  std::vector<double> top_k_accuracy;    ///< fraction of queries with a hit in their top k
  std::vector<QueryMetrics> queries;     ///< per query, in input order
  int64_t queries_without_ground_truth = 0;  ///< left out of the means (their gallery lacks the person)
};

/// The per-image IoU threshold for a target of width w and height h: min(0.5, w*h / ((w+10)*(h+10))).
inline double target_iou_threshold(double width, double height) {
  return std::min(0.5, width * height / ((width + 10.0) * (height + 10.0)));
}

namespace detail {

/// The kept detections (score >= threshold) of all gallery images, concatenated once for every query.
struct KeptGallery {
  at::Tensor boxes, scores, embeddings;  // [K, 4] double, [K] float, [K, D] float (CPU)
  std::vector<int64_t> offsets;          // image i owns rows [offsets[i], offsets[i + 1])
};

inline KeptGallery keep_gallery(std::span<const GalleryDetections> gallery, int64_t dim, double score_threshold,
                                std::string_view caller, double unit_norm_tolerance = -1) {
  KeptGallery out;
  out.offsets.push_back(0);
  std::vector<at::Tensor> boxes, scores, embeddings;
  for (size_t i = 0; i < gallery.size(); ++i) {
    check_detections(gallery[i], caller, fmt::format("gallery[{}]", i), true, dim);
    // The threshold is compared in the scores' own precision, as numpy compares a float32 array with a float.
    const auto s = gallery[i].scores.detach().to(at::kCPU);
    const auto keep = (s >= score_threshold).nonzero().select(1, 0);
    if (keep.numel() > 0) {
      boxes.push_back(gallery[i].boxes.detach().to(at::kCPU, at::kDouble).index_select(0, keep));
      scores.push_back(s.index_select(0, keep).to(at::kFloat));
      embeddings.push_back(gallery[i].embeddings.detach().to(at::kCPU, at::kFloat).index_select(0, keep));
      search::check_unit_rows(embeddings.back(), unit_norm_tolerance, caller, [&](size_t r) {
        return fmt::format("gallery[{}].embeddings row {}", i, keep[static_cast<int64_t>(r)].item<int64_t>());
      });
    }
    out.offsets.push_back(out.offsets.back() + keep.numel());
  }
  if (boxes.empty()) {
    out.boxes = at::empty({0, 4}, at::kDouble);
    out.scores = at::empty({0}, at::kFloat);
    out.embeddings = at::empty({0, dim}, at::kFloat);
  } else {
    out.boxes = at::cat(boxes);
    out.scores = at::cat(scores);
    out.embeddings = at::cat(embeddings);
  }
  return out;
}

inline QueryMetrics evaluate_query(const at::Tensor& query, const KeptGallery& kept,
                                   const std::vector<GalleryEntry>& entries, int64_t query_image,
                                   const SearchOptions& options, std::string_view caller, size_t q,
                                   const at::Tensor& context = {}) {
  const auto num_images = static_cast<int64_t>(kept.offsets.size()) - 1;
  QueryMetrics out;
  std::vector<const GalleryEntry*> searched;  // the entries in list order, the query's own image left out
  std::unordered_set<int64_t> seen;
  for (size_t e = 0; e < entries.size(); ++e) {
    const auto& entry = entries[e];
    TRIDENT_CHECK(entry.image >= 0 && entry.image < num_images,
                  "{}: galleries[{}][{}].image = {} is not a gallery image index (there are {})", caller, q, e,
                  entry.image, num_images);
    if (entry.image == query_image) continue;
    TRIDENT_CHECK(seen.insert(entry.image).second, "{}: galleries[{}] lists image {} twice", caller, q,
                  entry.image);
    searched.push_back(&entry);
  }
  std::vector<double> similarity;
  if (kept.embeddings.size(0) > 0)
    similarity = to_doubles(search::similarity(query.unsqueeze(0), kept.embeddings, kept.scores, options.weighting));
  if (options.cbgm && !similarity.empty()) {
    std::vector<int64_t> images;
    for (const auto* entry : searched) images.push_back(entry->image);
    similarity = cbgm_rescore(query, context.defined() ? context : at::empty({0, query.size(0)}, at::kFloat),
                              kept.embeddings, kept.scores, options.weighting, kept.offsets, similarity, images,
                              *options.cbgm);
  }
  std::vector<int64_t> ranked_row;  // gallery order: images as listed, each ranked by similarity
  std::vector<double> ranked_similarity;
  std::vector<bool> ranked_positive;
  std::vector<int64_t> ranked_image;
  for (const auto* entry_pointer : searched) {
    const auto& entry = *entry_pointer;
    if (entry.target) ++out.ground_truths;
    const int64_t begin = kept.offsets[static_cast<size_t>(entry.image)];
    const int64_t count = kept.offsets[static_cast<size_t>(entry.image) + 1] - begin;
    if (count == 0) continue;
    std::vector<int64_t> order(static_cast<size_t>(count));
    std::iota(order.begin(), order.end(), begin);
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return similarity[static_cast<size_t>(a)] > similarity[static_cast<size_t>(b)];
    });
    int64_t true_positive = -1;
    if (entry.target) {
      const auto& t = *entry.target;
      const double threshold = target_iou_threshold(t[2] - t[0], t[3] - t[1]);
      const auto target = at::tensor(std::vector<double>(t.begin(), t.end()), at::kDouble).view({1, 4});
      const auto iou = to_doubles(ops::box_iou(kept.boxes.narrow(0, begin, count), target));
      for (const int64_t d : order)
        if (iou[static_cast<size_t>(d - begin)] >= threshold) {
          true_positive = d;
          ++out.true_positives;
          break;
        }
    }
    for (const int64_t d : order) {
      ranked_row.push_back(d);
      ranked_similarity.push_back(similarity[static_cast<size_t>(d)]);
      ranked_positive.push_back(d == true_positive);
      ranked_image.push_back(entry.image);
    }
  }
  if (out.ground_truths > 0)
    out.recall = static_cast<double>(out.true_positives) / static_cast<double>(out.ground_truths);
  if (out.true_positives > 0) out.average_precision = average_precision(ranked_similarity, ranked_positive) * out.recall;
  std::vector<size_t> order(ranked_similarity.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return ranked_similarity[a] > ranked_similarity[b]; });
  for (size_t r = 0; r < order.size() && out.first_match_rank == 0; ++r)
    if (ranked_positive[order[r]]) out.first_match_rank = static_cast<int64_t>(r) + 1;
  for (const int64_t k : options.top_k)
    out.top_k_hit.push_back(out.first_match_rank > 0 && out.first_match_rank <= k);
  if (!order.empty()) {
    const size_t top = order.front();
    const auto row = static_cast<size_t>(ranked_row[top]);
    BestMatch best;
    best.image = ranked_image[top];
    best.box = box_at(to_doubles(kept.boxes.narrow(0, static_cast<int64_t>(row), 1)), 0);
    best.score = kept.scores[static_cast<int64_t>(row)].item<double>();
    best.similarity = ranked_similarity[top];
    best.correct = ranked_positive[top];
    out.best = best;
  }
  return out;
}

inline void check_search_inputs(const at::Tensor& query_embeddings, size_t num_queries, const SearchOptions& options,
                                std::string_view caller) {
  TRIDENT_CHECK(query_embeddings.defined() && query_embeddings.dim() == 2, "{}: query_embeddings must be [Q, D], got {}",
                caller, shape_of(query_embeddings));
  TRIDENT_CHECK(static_cast<size_t>(query_embeddings.size(0)) == num_queries,
                "{}: query_embeddings has {} rows but there are {} queries", caller, query_embeddings.size(0),
                num_queries);
  for (const int64_t k : options.top_k)
    TRIDENT_CHECK(k >= 1, "{}: options.top_k must hold positive k, got {}", caller, k);
  search::check_unit_rows(query_embeddings.detach().to(at::kCPU, at::kFloat), options.unit_norm_tolerance, caller,
                  [](size_t r) { return fmt::format("query_embeddings row {}", r); });
}

/// The CBGM context of a query (the other people of its image, eval/cbgm.hpp), or nothing without CBGM or
/// without the query's image among the gallery's.
inline at::Tensor query_context(std::span<const GalleryDetections> gallery, int64_t image, const Box& box,
                                const SearchOptions& options) {
  if (!options.cbgm || image < 0 || image >= static_cast<int64_t>(gallery.size())) return {};
  return cbgm_context(gallery[static_cast<size_t>(image)], box, options.score_threshold).embeddings;
}

inline SearchMetrics summarize(std::vector<QueryMetrics> queries, const SearchOptions& options) {
  SearchMetrics out;
  out.top_k = options.top_k;
  out.top_k_accuracy.assign(options.top_k.size(), 0.0);
  int64_t counted = 0;
  for (const auto& q : queries) {
    if (q.ground_truths == 0) {
      ++out.queries_without_ground_truth;
      continue;
    }
    ++counted;
    out.mean_average_precision += q.average_precision;
    for (size_t k = 0; k < q.top_k_hit.size(); ++k) out.top_k_accuracy[k] += q.top_k_hit[k] ? 1.0 : 0.0;
  }
  if (counted > 0) {
    out.mean_average_precision /= static_cast<double>(counted);
    for (auto& a : out.top_k_accuracy) a /= static_cast<double>(counted);
  }
  out.queries = std::move(queries);
  return out;
}

}  // namespace detail

/// Search with explicit per-query galleries (CUHK-SYSU's TestG50 ... TestG4000 lists, or the full test set).
///   query_embeddings [Q, D]: each query's embedding, computed from its ground-truth box;
///   query_images[q]: index of query q's own image in `gallery` (skipped if listed), or -1 if not there;
///   gallery[i]: the detections of gallery image i;
///   galleries[q]: query q's gallery, each image with the query person's box there when present;
///   query_boxes[q]: query q's box in its image (needed by options.cbgm only).
inline SearchMetrics evaluate_search(const at::Tensor& query_embeddings, std::span<const int64_t> query_images,
                                     std::span<const GalleryDetections> gallery,
                                     const std::vector<std::vector<GalleryEntry>>& galleries,
                                     const SearchOptions& options = {}, std::span<const Box> query_boxes = {}) {
  constexpr const char* fn = "trident::eval::evaluate_search";
  detail::check_search_inputs(query_embeddings, galleries.size(), options, fn);
  TRIDENT_CHECK(query_images.size() == galleries.size(), "{}: {} query_images but {} galleries", fn,
                query_images.size(), galleries.size());
  TRIDENT_CHECK(!options.cbgm || query_boxes.size() == galleries.size(),
                "{}: CBGM needs every query's box: {} query_boxes for {} queries", fn, query_boxes.size(),
                galleries.size());
  const auto queries = query_embeddings.detach().to(at::kCPU, at::kFloat);
  const auto kept = detail::keep_gallery(gallery, queries.size(1), options.score_threshold, fn, options.unit_norm_tolerance);
  std::vector<QueryMetrics> results;
  for (size_t q = 0; q < galleries.size(); ++q)
    results.push_back(detail::evaluate_query(
        queries[static_cast<int64_t>(q)], kept, galleries[q], query_images[q], options, fn, q,
        options.cbgm ? detail::query_context(gallery, query_images[q], query_boxes[q], options) : at::Tensor()));
  return detail::summarize(std::move(results), options);
}

/// A PRW query: its image (index into the gallery annotations, -1 if not among them), identity, camera and box
/// (the box is needed by SearchOptions::cbgm only).
struct PrwQuery {
  int64_t image = -1;
  int64_t person_id = 0;
  int64_t camera = -1;
  Box box{};
};

enum class PrwGallery {
  regular,     ///< every test image but the query's (SeqNet's ignore_cam_id = True, its default)
  multi_view,   ///< every test image but those of the query's camera (SeqNet's ignore_cam_id = False)
  same_camera,  ///< the test images of the query's camera only, but the query's own
};

/// The row name of a PRW gallery: "regular", "multi-view", "same-camera".
inline const char* gallery_name(PrwGallery kind) {
  switch (kind) {
    case PrwGallery::regular: return "regular";
    case PrwGallery::multi_view: return "multi-view";
    case PrwGallery::same_camera: return "same-camera";
  }
  return "?";
}

/// PRW search: the gallery of each query is built from the test images' annotations (`annotations[i]` and
/// `gallery[i]` describe test image i), as SeqNet's eval_search_prw builds it.
inline SearchMetrics evaluate_search_prw(const at::Tensor& query_embeddings, std::span<const PrwQuery> queries,
                                         std::span<const ImageAnnotation> annotations,
                                         std::span<const GalleryDetections> gallery, PrwGallery kind,
                                         const SearchOptions& options = {}) {
  constexpr const char* fn = "trident::eval::evaluate_search_prw";
  detail::check_search_inputs(query_embeddings, queries.size(), options, fn);
  TRIDENT_CHECK(annotations.size() == gallery.size(), "{}: {} annotations but {} detection sets", fn,
                annotations.size(), gallery.size());
  std::vector<std::vector<double>> boxes(annotations.size());
  for (size_t i = 0; i < annotations.size(); ++i) {
    ops::check_box_shape(annotations[i].boxes, fn, fmt::format("annotations[{}].boxes", i));
    TRIDENT_CHECK(static_cast<int64_t>(annotations[i].person_ids.size()) == annotations[i].boxes.size(0),
                  "{}: annotations[{}] has {} boxes but {} person_ids", fn, i, annotations[i].boxes.size(0),
                  annotations[i].person_ids.size());
    boxes[i] = detail::to_doubles(annotations[i].boxes);
  }
  const auto num_images = static_cast<int64_t>(annotations.size());
  const auto embeddings = query_embeddings.detach().to(at::kCPU, at::kFloat);
  const auto kept = detail::keep_gallery(gallery, embeddings.size(1), options.score_threshold, fn, options.unit_norm_tolerance);
  std::vector<QueryMetrics> results;
  for (size_t q = 0; q < queries.size(); ++q) {
    const auto& query = queries[q];
    TRIDENT_CHECK(query.image >= -1 && query.image < num_images,
                  "{}: queries[{}].image = {} is not a test image index (there are {}) or -1", fn, q, query.image,
                  num_images);
    TRIDENT_CHECK(query.person_id >= 0, "{}: queries[{}].person_id = {} is not a labeled identity", fn, q,
                  query.person_id);
    std::vector<GalleryEntry> entries;
    for (int64_t i = 0; i < num_images; ++i) {
      const auto& anno = annotations[static_cast<size_t>(i)];
      if (i == query.image) continue;
      if (kind == PrwGallery::multi_view && anno.camera == query.camera) continue;
      if (kind == PrwGallery::same_camera && anno.camera != query.camera) continue;
      GalleryEntry entry{i, std::nullopt};
      for (size_t g = 0; g < anno.person_ids.size(); ++g) {
        if (anno.person_ids[g] != query.person_id) continue;
        TRIDENT_CHECK(!entry.target, "{}: annotations[{}] has person {} twice", fn, i, query.person_id);
        const auto& b = boxes[static_cast<size_t>(i)];
        entry.target = detail::box_at(b, g);
      }
      entries.push_back(entry);
    }
    results.push_back(detail::evaluate_query(embeddings[static_cast<int64_t>(q)], kept, entries, query.image, options,
                                             fn, q, detail::query_context(gallery, query.image, query.box, options)));
  }
  return detail::summarize(std::move(results), options);
}

}  // namespace trident::eval
