#pragma once
/// \file trident/eval/cbgm.hpp
/// Context Bipartite Graph Matching (CBGM): the optional re-scoring of SeqNet (Li & Miao, "Sequential End-to-end
/// Network for Efficient Person Search", AAAI 2021), which GLCNet and COAT reuse for their "+CBGM" columns. It
/// lets the people around the query vote for the best match in the gallery images most likely to hold it. What
/// SeqNet does (github.com/serend1p1ty/SeqNet), for one query:
///
///  1. context (models/seqnet.py, SeqNet.inference and SeqRoIHeads.forward / postprocess_boxes with
///     query_img_as_gallery=True; engine.py, evaluate_performance): the detector runs on the query image, keeps the
///     boxes with score > SCORE_THRESH_TEST (0.5), adds the query's ground-truth box with score 1.0 and its own
///     embedding, and applies NMS at IoU 0.5 over them all; the kept boxes come in decreasing score order, so the
///     query box is first (engine.py asserts it) and a detection whose IoU with the query box exceeds 0.5 (the
///     query person's own detection, normally) is suppressed. The query image's embeddings are not weighted by
///     the detection confidence (cws = False there). cbgm_context builds this list without the query itself.
///  2. images (eval_func.py, eval_search_cuhk and eval_search_prw, the `if cbgm:` blocks): the similarities of
///     all kept detections (score >= det_thresh) of all the query's gallery images are pooled, and the images
///     holding the k1 largest (`np.argsort(sims)[-k1:]`) are re-scored: at most k1 images, fewer when several of
///     those detections share one. The pooled values are the similarities before any revision.
///  3. graph (same blocks): the first k2 rows of the query image's list, i.e. the query and the k2 - 1 most
///     confident other people (all of them when there are fewer), against all kept detections of the image; the
///     weight of a pair is the dot product of their embeddings, the same quantity as the ranking similarity
///     (SeqNet's gallery embeddings carry the detection confidence, CWS, so it is confidence * cosine there;
///     trident's similarity follows its SimilarityWeighting).
///  4. matching (utils/km.py, run_kuhn_munkres): Kuhn-Munkres on the complete bipartite graph takes the smaller
///     side as its x side and matches every x node, maximising the total weight, i.e. a maximum-weight assignment
///     that covers the smaller side (not a matching free to leave negative pairs out).
///  5. revision (same blocks; km.py, KuhnMunkres.get_max_value_result): max_val is the LARGEST WEIGHT AMONG THE
///     MATCHED PAIRS (`ret = max(ret, matrix[i][j])` from -100; the total is commented out), not the matching's
///     total. If the query row is matched, to detection j, similarity[j] becomes max_val; every other detection
///     of the image keeps its similarity. If the query row is left unmatched (more query-side rows than
///     detections in the image, and the optimum uses the others), nothing in the image changes.
/// Consequences: a revised similarity is never lower than the query's own weight with that detection; with k2 = 1
/// or a query without context the query is matched to its most similar detection and max_val is that very
/// similarity, so nothing changes. SeqNet uses k1 = 10, k2 = 3 on CUHK-SYSU and k1 = 30, k2 = 4 on PRW (the
/// defaults of eval_search_cuhk / eval_search_prw): cbgm_cuhk_sysu and cbgm_prw.
///
/// Where trident differs, and why:
///  - ties are broken by order, never left open: the k1 largest similarities are taken in the order of the
///    query's gallery list (image by image, rows in order) among equal values (numpy's quicksort argsort leaves
///    them unspecified); the matching's ties as maximum_weight_matching states (SeqNet's K-M resolves them by its
///    depth-first search and treats reduced costs below 1e-8 as zero, so it may return another optimum, or one up
///    to about 1e-8 per row below the optimum); the context keeps equal scores in detection order (ops::nms).
///  - k1 and k2 must be >= 1: SeqNet's `argsort(sims)[-0:]` would re-score every image for k1 = 0.
///  - the query row of the graph holds the caller's similarities themselves, so a revision that keeps the query's
///    own edge as the largest leaves the value bit for bit; SeqNet uses the query box's embedding from the
///    query-image pass (query_feats[i][0]), the same as query_box_feats[i] up to float rounding. The other
///    weights are computed in double precision (SeqNet: float32).
///  - the context is built from trident's detections of the query image, already suppressed by trident's
///    detector: cbgm_context keeps score >= the threshold (the rule trident's gallery uses; SeqNet's detector
///    keeps score > 0.5) and then applies SeqNet's NMS with the query box at the top; a detection that SeqNet's
///    single NMS pass would have kept because its suppressor was itself suppressed by the query box may already
///    be gone.

#include <trident/config.hpp>
#include <trident/core/types.hpp>
#include <trident/eval/types.hpp>
#include <trident/ops/nms.hpp>
#include <trident/search/similarity.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <unordered_set>
#include <vector>

namespace trident::eval {

/// A maximum-weight assignment of a rows x cols weight matrix.
struct Matching {
  std::vector<int64_t> column_of_row;  ///< per row, its column; -1 for a row left unmatched (only when rows > cols)
  double total_weight = 0.0;           ///< sum of the matched weights, in row order
};

/// Maximum-weight assignment (Hungarian / Kuhn-Munkres with potentials, shortest augmenting paths, O(n^2 m) for
/// n = min(rows, cols), m = max(rows, cols)) of a row-major rows x cols matrix of finite weights, in double
/// precision: min(rows, cols) pairs, no row or column twice, the largest total weight among all such
/// assignments. Every row is matched when rows <= cols, every column when rows > cols (as SeqNet's K-M matches
/// its smaller side); negative weights are matched too. An empty side gives an empty matching (total 0).
/// Ties: the result is a fixed function of the matrix. The smaller side is inserted in index order (the rows, or
/// the columns of a matrix with more rows than columns), and each step of the augmenting-path search takes the
/// lowest-index free node of the other side among those with the smallest reduced cost; of several optimal
/// assignments the one reached first this way is returned.
inline Matching maximum_weight_matching(std::span<const double> weights, int64_t rows, int64_t cols) {
  constexpr const char* fn = "trident::eval::maximum_weight_matching";
  TRIDENT_CHECK(rows >= 0 && cols >= 0, "{}: rows and cols must be >= 0, got {} x {}", fn, rows, cols);
  TRIDENT_CHECK(weights.size() == static_cast<size_t>(rows * cols),
                "{}: weights has {} entries but the matrix is {} x {}", fn, weights.size(), rows, cols);
  for (size_t k = 0; k < weights.size(); ++k)
    TRIDENT_CHECK(std::isfinite(weights[k]), "{}: weights[{}] (row {}, column {}) = {} is not finite", fn, k,
                  static_cast<int64_t>(k) / cols, static_cast<int64_t>(k) % cols, weights[k]);
  Matching out;
  out.column_of_row.assign(static_cast<size_t>(rows), -1);
  if (rows == 0 || cols == 0) return out;
  // Minimum-cost form on an n x m matrix, n <= m, 1-based (index 0 is the search's virtual start column).
  const bool transposed = rows > cols;
  const int64_t n = transposed ? cols : rows, m = transposed ? rows : cols;
  const auto cost = [&](int64_t i, int64_t j) {
    return -weights[static_cast<size_t>(transposed ? (j - 1) * cols + (i - 1) : (i - 1) * cols + (j - 1))];
  };
  constexpr double infinity = std::numeric_limits<double>::infinity();
  std::vector<double> u(static_cast<size_t>(n + 1), 0.0), v(static_cast<size_t>(m + 1), 0.0);
  std::vector<int64_t> owner(static_cast<size_t>(m + 1), 0), way(static_cast<size_t>(m + 1), 0);
  std::vector<double> slack(static_cast<size_t>(m + 1));
  std::vector<char> used(static_cast<size_t>(m + 1));
  for (int64_t i = 1; i <= n; ++i) {
    owner[0] = i;
    int64_t j0 = 0;
    std::fill(slack.begin(), slack.end(), infinity);
    std::fill(used.begin(), used.end(), char{0});
    do {
      used[static_cast<size_t>(j0)] = 1;
      const int64_t i0 = owner[static_cast<size_t>(j0)];
      double delta = infinity;
      int64_t j1 = 0;
      for (int64_t j = 1; j <= m; ++j) {
        const auto sj = static_cast<size_t>(j);
        if (used[sj] != 0) continue;
        const double reduced = cost(i0, j) - u[static_cast<size_t>(i0)] - v[sj];
        if (reduced < slack[sj]) {
          slack[sj] = reduced;
          way[sj] = j0;
        }
        if (slack[sj] < delta) {  // strict: the lowest-index column among equal slacks
          delta = slack[sj];
          j1 = j;
        }
      }
      TRIDENT_CHECK(j1 != 0, "{}: no augmenting path for row {} of a {} x {} matrix (internal error)", fn, i, rows,
                    cols);
      for (int64_t j = 0; j <= m; ++j) {
        const auto sj = static_cast<size_t>(j);
        if (used[sj] != 0) {
          u[static_cast<size_t>(owner[sj])] += delta;
          v[sj] -= delta;
        } else {
          slack[sj] -= delta;
        }
      }
      j0 = j1;
    } while (owner[static_cast<size_t>(j0)] != 0);
    do {  // flip the augmenting path
      const int64_t j1 = way[static_cast<size_t>(j0)];
      owner[static_cast<size_t>(j0)] = owner[static_cast<size_t>(j1)];
      j0 = j1;
    } while (j0 != 0);
  }
  for (int64_t j = 1; j <= m; ++j) {
    const int64_t i = owner[static_cast<size_t>(j)];
    if (i == 0) continue;
    const int64_t row = transposed ? j - 1 : i - 1, col = transposed ? i - 1 : j - 1;
    out.column_of_row[static_cast<size_t>(row)] = col;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = out.column_of_row[static_cast<size_t>(r)];
    if (c >= 0) out.total_weight += weights[static_cast<size_t>(r * cols + c)];
  }
  return out;
}

/// CBGM's two hyper-parameters (SeqNet's k1, k2).
struct CbgmOptions {
  int64_t top_images_k1 = 10;  ///< re-score the images holding the k1 most similar gallery detections
  int64_t context_k2 = 3;      ///< graph rows: the query and the k2 - 1 most confident other people of its image
};

/// SeqNet's values for CUHK-SYSU (eval_search_cuhk: k1 = 10, k2 = 3).
inline constexpr CbgmOptions cbgm_cuhk_sysu{10, 3};
/// SeqNet's values for PRW (eval_search_prw: k1 = 30, k2 = 4).
inline constexpr CbgmOptions cbgm_prw{30, 4};

/// The context of a query: the other people of its image, in the order SeqNet's query_dets lists them.
struct CbgmContext {
  at::Tensor embeddings;      ///< [C, D] CPU float, most confident first
  std::vector<int64_t> rows;  ///< their rows in the query image's detections
};

/// The query image's other people, as SeqNet orders its query_dets after the query box (step 1 of the file
/// comment): the detections with score >= `score_threshold` (pass the gallery's SearchOptions::score_threshold
/// so that they are the ones the gallery keeps), then greedy NMS at `nms_iou` over them and the query box placed
/// at the top (ops::nms: IoU > nms_iou suppresses, equal scores keep detection order), which drops the query
/// person's own detection and anything else overlapping the query box by more than nms_iou; the survivors
/// in decreasing score order, the query box itself left out (cbgm_rescore puts the query first).
inline CbgmContext cbgm_context(const GalleryDetections& query_image, const Box& query_box,
                                double score_threshold = 0.5, double nms_iou = 0.5) {
  constexpr const char* fn = "trident::eval::cbgm_context";
  detail::check_detections(query_image, fn, "query_image", true);
  TRIDENT_CHECK(query_box[2] >= query_box[0] && query_box[3] >= query_box[1],
                "{}: query_box must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1, got [{}, {}, {}, {}]", fn,
                query_box[0], query_box[1], query_box[2], query_box[3]);
  TRIDENT_CHECK(nms_iou >= 0 && nms_iou <= 1, "{}: nms_iou must be in [0, 1], got {}", fn, nms_iou);
  CbgmContext out;
  const int64_t n = query_image.boxes.size(0);
  const int64_t dim = n > 0 ? query_image.embeddings.size(1) : 0;
  out.embeddings = at::empty({0, dim}, at::kFloat);
  if (n == 0) return out;
  const auto scores = query_image.scores.detach().to(at::kCPU);
  const auto keep = (scores >= score_threshold).nonzero().select(1, 0);
  if (keep.numel() == 0) return out;
  const auto kept_scores = scores.index_select(0, keep).to(at::kDouble);
  // The query box goes first, with a score no detection exceeds (SeqNet: 1.0), so NMS visits it first.
  const double top = std::max(1.0, kept_scores.max().item<double>());
  const auto box = at::tensor(std::vector<double>(query_box.begin(), query_box.end()), at::kDouble).view({1, 4});
  const auto boxes = at::cat({box, query_image.boxes.detach().to(at::kCPU, at::kDouble).index_select(0, keep)});
  const auto order = detail::to_doubles(
      ops::nms(boxes, at::cat({at::tensor(std::vector<double>{top}, at::kDouble), kept_scores}), nms_iou));
  const auto kept_rows = detail::to_doubles(keep);
  for (const double k : order)
    if (k > 0) out.rows.push_back(static_cast<int64_t>(kept_rows[static_cast<size_t>(k) - 1]));
  out.embeddings = query_image.embeddings.detach()
                       .to(at::kCPU, at::kFloat)
                       .index_select(0, at::tensor(out.rows, at::kLong));
  return out;
}

/// CBGM for one query (steps 2 to 5 of the file comment): the gallery's similarities with the matched
/// detection of each re-scored image revised.
///   query [D]: the query's embedding;
///   context [C, D]: the query image's other people in SeqNet's order (cbgm_context), the query NOT included;
///     the first context_k2 - 1 rows are used;
///   gallery_embeddings [K, D], gallery_scores [K]: every gallery image's kept detections concatenated, image i
///     owning rows [offsets[i], offsets[i + 1]) (offsets: one more entry than images, from 0 to K);
///   weighting: how `similarities` were computed from them (search::similarity); the context's weights are
///     computed the same way (gallery_scores may be undefined for SimilarityWeighting::none);
///   similarities [K]: the query's similarity with every gallery row (search::similarity), the query row of
///     every graph; the rows of images outside `gallery_images` are neither read for the selection nor changed;
///   gallery_images: the images of this query's gallery (indices, each once; the query's own image left out).
/// Returns `similarities` with the revisions (the other entries copied unchanged).
inline std::vector<double> cbgm_rescore(const at::Tensor& query, const at::Tensor& context,
                                        const at::Tensor& gallery_embeddings, const at::Tensor& gallery_scores,
                                        search::SimilarityWeighting weighting, std::span<const int64_t> offsets,
                                        std::span<const double> similarities,
                                        std::span<const int64_t> gallery_images, const CbgmOptions& options = {}) {
  constexpr const char* fn = "trident::eval::cbgm_rescore";
  TRIDENT_CHECK(options.top_images_k1 >= 1, "{}: options.top_images_k1 must be >= 1, got {}", fn,
                options.top_images_k1);
  TRIDENT_CHECK(options.context_k2 >= 1, "{}: options.context_k2 must be >= 1 (the query's own row), got {}", fn,
                options.context_k2);
  TRIDENT_CHECK(query.defined() && query.dim() == 1, "{}: query must be [D], got {}", fn, shape_of(query));
  const int64_t dim = query.size(0);
  TRIDENT_CHECK(context.defined() && context.dim() == 2 && (context.size(0) == 0 || context.size(1) == dim),
                "{}: context must be [C, {}], got {}", fn, dim, shape_of(context));
  TRIDENT_CHECK(gallery_embeddings.defined() && gallery_embeddings.dim() == 2 &&
                    (gallery_embeddings.size(0) == 0 || gallery_embeddings.size(1) == dim),
                "{}: gallery_embeddings must be [K, {}], got {}", fn, dim, shape_of(gallery_embeddings));
  const int64_t rows = gallery_embeddings.size(0);
  if (weighting == search::SimilarityWeighting::confidence)
    TRIDENT_CHECK(gallery_scores.defined() && gallery_scores.dim() == 1 && gallery_scores.size(0) == rows,
                  "{}: gallery_scores must be [{}] for confidence weighting, got {}", fn, rows,
                  shape_of(gallery_scores));
  TRIDENT_CHECK(static_cast<int64_t>(similarities.size()) == rows,
                "{}: similarities has {} entries but gallery_embeddings has {} rows", fn, similarities.size(), rows);
  TRIDENT_CHECK(!offsets.empty() && offsets.front() == 0 && offsets.back() == rows,
                "{}: offsets must run from 0 to the {} gallery rows, got {} entries from {} to {}", fn, rows,
                offsets.size(), offsets.empty() ? 0 : offsets.front(), offsets.empty() ? 0 : offsets.back());
  for (size_t i = 1; i < offsets.size(); ++i)
    TRIDENT_CHECK(offsets[i] >= offsets[i - 1],
                  "{}: offsets must not decrease, got offsets[{}] = {} < offsets[{}] = {}", fn, i, offsets[i], i - 1,
                  offsets[i - 1]);
  const auto num_images = static_cast<int64_t>(offsets.size()) - 1;

  // Step 2: the images holding the k1 largest similarities of the query's gallery (ties: gallery order).
  std::vector<int64_t> pool;  // gallery rows in the order of the query's gallery list
  std::unordered_set<int64_t> listed;
  for (size_t e = 0; e < gallery_images.size(); ++e) {
    const int64_t image = gallery_images[e];
    TRIDENT_CHECK(image >= 0 && image < num_images, "{}: gallery_images[{}] = {} is not an image index (there are {})",
                  fn, e, image, num_images);
    TRIDENT_CHECK(listed.insert(image).second, "{}: gallery_images lists image {} twice", fn, image);
    for (int64_t r = offsets[static_cast<size_t>(image)]; r < offsets[static_cast<size_t>(image) + 1]; ++r) {
      TRIDENT_CHECK(std::isfinite(similarities[static_cast<size_t>(r)]), "{}: similarities[{}] = {} is not finite",
                    fn, r, similarities[static_cast<size_t>(r)]);
      pool.push_back(r);
    }
  }
  std::vector<double> out(similarities.begin(), similarities.end());
  const auto top = static_cast<size_t>(std::min<int64_t>(options.top_images_k1, static_cast<int64_t>(pool.size())));
  std::stable_sort(pool.begin(), pool.end(), [&](int64_t a, int64_t b) {
    return similarities[static_cast<size_t>(a)] > similarities[static_cast<size_t>(b)];
  });
  std::vector<int64_t> images;  // the images to re-score, each once
  for (size_t k = 0; k < top; ++k) {
    const auto it = std::upper_bound(offsets.begin(), offsets.end(), pool[k]);
    const auto image = static_cast<int64_t>(it - offsets.begin()) - 1;
    if (std::find(images.begin(), images.end(), image) == images.end()) images.push_back(image);
  }
  if (images.empty()) return out;

  // Step 3: the query-side rows, the query first.
  const int64_t context_rows = std::min<int64_t>(options.context_k2 - 1, context.size(0));
  const auto side = at::cat({query.detach().to(at::kCPU, at::kDouble).view({1, dim}),
                             context.detach().to(at::kCPU, at::kDouble).narrow(0, 0, context_rows)});
  const int64_t side_rows = side.size(0);
  for (const int64_t image : images) {
    const int64_t begin = offsets[static_cast<size_t>(image)];
    const int64_t count = offsets[static_cast<size_t>(image) + 1] - begin;
    const auto scores = weighting == search::SimilarityWeighting::confidence
                            ? gallery_scores.detach().narrow(0, begin, count).to(at::kCPU)
                            : at::Tensor();
    auto weights = detail::to_doubles(search::similarity(
        side, gallery_embeddings.detach().narrow(0, begin, count).to(at::kCPU, at::kDouble), scores, weighting));
    // The query's row is the caller's similarities; they must be what this weighting gives.
    for (int64_t j = 0; j < count; ++j) {
      const double given = similarities[static_cast<size_t>(begin + j)];
      TRIDENT_CHECK(std::abs(weights[static_cast<size_t>(j)] - given) <= 1e-4,
                    "{}: similarities[{}] = {} but the query's similarity with gallery row {} is {}: pass the "
                    "similarities computed from these embeddings with the same weighting",
                    fn, begin + j, given, begin + j, weights[static_cast<size_t>(j)]);
      weights[static_cast<size_t>(j)] = given;
    }
    // Step 4: maximum-weight assignment covering the smaller side (SeqNet's run_kuhn_munkres).
    const auto matching = maximum_weight_matching(weights, side_rows, count);
    const int64_t matched = matching.column_of_row[0];
    if (matched < 0) continue;  // the query row is left out: SeqNet revises nothing in this image
    // Step 5: the largest weight among the matched pairs (km.py, get_max_value_result), not their total.
    double largest = -std::numeric_limits<double>::infinity();
    for (int64_t r = 0; r < side_rows; ++r) {
      const int64_t c = matching.column_of_row[static_cast<size_t>(r)];
      if (c >= 0) largest = std::max(largest, weights[static_cast<size_t>(r * count + c)]);
    }
    out[static_cast<size_t>(begin + matched)] = largest;
  }
  return out;
}

}  // namespace trident::eval
