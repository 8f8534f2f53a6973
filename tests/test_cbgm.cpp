// Context Bipartite Graph Matching (trident/eval/cbgm.hpp): the maximum-weight assignment against brute force
// over all permutations; CBGM re-scoring on hand-made embeddings whose cosine matrices are written out below
// (image selection by k1 with its ties, k2 larger than the context, an image where the query row is left
// unmatched, empty images, an image outside the query's gallery); a seeded case checked against a numpy
// re-implementation of SeqNet's re-scoring (tests/fixtures/cbgm_reference.py, which also runs SeqNet's own
// utils/km.py); the context of a query image in SeqNet's order.
#include "support/fixtures.hpp"
#include <trident/eval/cbgm.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/eye.h>
#include <ATen/ops/full.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

using namespace trident;

namespace {

using test::floats;

/// The best total over all assignments covering the smaller side, by enumerating permutations.
double brute_force_best(const std::vector<double>& w, int64_t rows, int64_t cols) {
  const int64_t small = std::min(rows, cols), large = std::max(rows, cols);
  std::vector<int64_t> perm(static_cast<size_t>(large));
  std::iota(perm.begin(), perm.end(), int64_t{0});
  double best = -std::numeric_limits<double>::infinity();
  do {
    double total = 0;
    for (int64_t s = 0; s < small; ++s) {
      const int64_t r = rows <= cols ? s : perm[static_cast<size_t>(s)];
      const int64_t c = rows <= cols ? perm[static_cast<size_t>(s)] : s;
      total += w[static_cast<size_t>(r * cols + c)];
    }
    best = std::max(best, total);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

/// Throws (fails the test) unless `m` is a valid assignment of the smaller side; returns the sum of its weights.
double checked_total(const eval::Matching& m, const std::vector<double>& w, int64_t rows, int64_t cols) {
  REQUIRE(static_cast<int64_t>(m.column_of_row.size()) == rows);
  std::vector<bool> taken(static_cast<size_t>(cols), false);
  int64_t matched = 0;
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t c = m.column_of_row[static_cast<size_t>(r)];
    if (c < 0) continue;
    REQUIRE(c < cols);
    REQUIRE_FALSE(taken[static_cast<size_t>(c)]);
    taken[static_cast<size_t>(c)] = true;
    ++matched;
    total += w[static_cast<size_t>(r * cols + c)];
  }
  CHECK(matched == std::min(rows, cols));
  return total;
}

// The hand-made gallery of the re-scoring tests, D = 3, plain cosine (SimilarityWeighting::none).
//   query q = (.64, .48, .6); context c1 = (.8, 0, .6), c2 = (0, .6, .8); e1, e2, e3 the unit axes, so the cosine
//   of q or c with e_k is its k-th component.
//   image 0: e1, e3 (rows 0, 1)    image 1: e1 (row 2)    image 2: no detection
//   image 3: e2, e3 (rows 3, 4)    image 4: q itself (row 5; not in the query's gallery)
//   image 5: e1, e2, e3 (rows 6, 7, 8)
// Similarities with q: .64 .6 | .64 | - | .48 .6 | 1 | .64 .48 .6 (the floats .64f ... as doubles).
struct HandCase {
  at::Tensor query = at::tensor(std::vector<float>{0.64f, 0.48f, 0.6f}, at::kFloat);
  at::Tensor context = floats({0.8f, 0.f, 0.6f, 0.f, 0.6f, 0.8f}, 3);
  at::Tensor gallery = floats({1, 0, 0, 0, 0, 1,  1, 0, 0,  0, 1, 0, 0, 0, 1,  0.64f, 0.48f, 0.6f,
                               1, 0, 0, 0, 1, 0, 0, 0, 1},
                              3);
  std::vector<int64_t> offsets = {0, 2, 3, 3, 5, 6, 9};
  std::vector<double> similarities = eval::detail::to_doubles(
      search::similarity(query.view({1, 3}).to(at::kDouble), gallery.to(at::kDouble), at::Tensor(),
                         search::SimilarityWeighting::none));

  std::vector<double> rescore(std::vector<int64_t> images, eval::CbgmOptions options, int64_t context_rows = 2) const {
    return eval::cbgm_rescore(query, context.narrow(0, 0, context_rows), gallery, at::Tensor(),
                              search::SimilarityWeighting::none, offsets, similarities, images, options);
  }
};

constexpr double f(float v) { return static_cast<double>(v); }

}  // namespace

TEST_CASE("CBGM maximum_weight_matching equals brute force over all permutations") {
  std::mt19937_64 rng(15);
  std::uniform_int_distribution<int64_t> size(1, 7);
  std::uniform_real_distribution<double> weight(-1.0, 1.0);
  std::uniform_int_distribution<int> level(-2, 2);
  int64_t square = 0, wide = 0, tall = 0;
  for (int trial = 0; trial < 200; ++trial) {
    const int64_t rows = size(rng), cols = trial % 4 == 0 ? rows : size(rng);  // square at least every fourth
    (rows == cols ? square : rows < cols ? wide : tall) += 1;
    std::vector<double> w(static_cast<size_t>(rows * cols));
    // Every fifth matrix draws from {-1, -.5, 0, .5, 1}: many optimal assignments (ties).
    for (auto& x : w) x = trial % 5 == 0 ? 0.5 * level(rng) : weight(rng);
    CAPTURE(trial);
    CAPTURE(rows);
    CAPTURE(cols);
    const auto m = eval::maximum_weight_matching(w, rows, cols);
    CHECK(std::abs(m.total_weight - brute_force_best(w, rows, cols)) <= 1e-12);
    CHECK(std::abs(checked_total(m, w, rows, cols) - m.total_weight) <= 1e-12);
    CHECK(eval::maximum_weight_matching(w, rows, cols).column_of_row == m.column_of_row);  // deterministic
  }
  CHECK(square >= 50);
  CHECK(wide >= 30);
  CHECK(tall >= 30);
}

TEST_CASE("CBGM maximum_weight_matching: negative weights, empty sides, ties, errors") {
  // The smaller side is always covered, even by negative pairs (SeqNet's K-M matches every x node).
  auto m = eval::maximum_weight_matching(std::vector<double>{-1, -5, -5, -1}, 2, 2);
  CHECK(m.column_of_row == std::vector<int64_t>{0, 1});
  CHECK(m.total_weight == -2.0);
  // 3 x 2: two rows matched, the third left out (-1); the best pair set is rows 0 -> 1 (.9), 2 -> 0 (.8).
  m = eval::maximum_weight_matching(std::vector<double>{0.1, 0.9, 0.2, 0.3, 0.8, -0.4}, 3, 2);
  CHECK(m.column_of_row == std::vector<int64_t>{1, -1, 0});
  CHECK(m.total_weight == doctest::Approx(1.7));
  // 1 x 3 picks the largest (not the first) column.
  CHECK(eval::maximum_weight_matching(std::vector<double>{0.2, 0.7, 0.5}, 1, 3).column_of_row ==
        std::vector<int64_t>{1});
  // Ties: all-equal weights give the diagonal (rows in order, each taking the lowest free column).
  CHECK(eval::maximum_weight_matching(std::vector<double>(9, 0.5), 3, 3).column_of_row ==
        std::vector<int64_t>{0, 1, 2});
  CHECK(eval::maximum_weight_matching(std::vector<double>(6, 0.5), 2, 3).column_of_row ==
        std::vector<int64_t>{0, 1});
  // An empty side: nothing matched, total 0.
  m = eval::maximum_weight_matching(std::vector<double>{}, 0, 3);
  CHECK(m.column_of_row.empty());
  CHECK(m.total_weight == 0.0);
  CHECK(eval::maximum_weight_matching(std::vector<double>{}, 2, 0).column_of_row == std::vector<int64_t>{-1, -1});
  CHECK_THROWS_WITH_AS(eval::maximum_weight_matching(std::vector<double>{1, 2, 3}, 2, 2),
                       "trident::eval::maximum_weight_matching: weights has 3 entries but the matrix is 2 x 2",
                       trident::Error);
  CHECK_THROWS_WITH_AS(
      eval::maximum_weight_matching(std::vector<double>{1, 2, std::numeric_limits<double>::quiet_NaN(), 4}, 2, 2),
      "trident::eval::maximum_weight_matching: weights[2] (row 1, column 0) = nan is not finite", trident::Error);
}

TEST_CASE("CBGM re-scoring by hand: the query's match takes the largest matched weight") {
  const HandCase h;
  const double one = h.similarities[5];  // q . q from the float components: 1 up to rounding
  REQUIRE(one == doctest::Approx(1.0));
  REQUIRE(h.similarities == std::vector<double>{f(.64f), f(.6f), f(.64f), f(.48f), f(.6f), one, f(.64f), f(.48f),
                                                f(.6f)});
  // k2 = 2: rows q, c1. k1 = 10 covers every detection of the gallery {0, 1, 2, 3, 5}.
  //   image 0 (cols e1, e3): q [.64 .6], c1 [.8 .6]. q->e1, c1->e3: 1.24; q->e3, c1->e1: 1.4 (best).
  //     max_val = max(.6, .8) = .8 (not the total 1.4, not q's own .6): e3 .6 -> .8, now above e1 (.64).
  //   image 1 (col e1): q [.64], c1 [.8]. One column: c1 takes it, the query row is unmatched: unchanged.
  //   image 3 (cols e2, e3): q [.48 .6], c1 [0 .6]. q->e2, c1->e3: 1.08 (best); q->e3, c1->e2: .6.
  //     The query gets its less similar detection e2, with max(.48, .6) = .6: e2 .48 -> .6.
  //   image 5 (cols e1, e2, e3): q [.64 .48 .6], c1 [.8 0 .6]. q->e1 + c1->e3 1.24; q->e2 + c1->e1 1.28;
  //     q->e3 + c1->e1 1.4 (best): e3 .6 -> .8.
  //   image 4 is not in the gallery: its 1 stays. Image 2 has no detection.
  const std::vector<int64_t> gallery = {0, 1, 2, 3, 5};
  CHECK(h.rescore(gallery, {10, 2}) ==
        std::vector<double>{f(.64f), f(.8f), f(.64f), f(.6f), f(.6f), one, f(.64f), f(.48f), f(.8f)});
  // SeqNet's CUHK-SYSU preset (k2 = 3) with the two context rows: rows q, c1, c2.
  //   image 0, 3 x 2 (cols e1, e3): q [.64 .6], c1 [.8 .6], c2 [0 .8]. Best cover of both columns:
  //     c1->e1, c2->e3 = 1.6 (q->e1 + c2->e3 1.44, c1->e1 + q->e3 1.4, ...): the query is unmatched: unchanged.
  //   image 1, 3 x 1: q .64, c1 .8, c2 0: c1 takes it: unchanged.
  //   image 3, 3 x 2 (cols e2, e3): q [.48 .6], c1 [0 .6], c2 [.6 .8]. q->e2 + c2->e3 1.28 (best; c2->e2 + q->e3
  //     1.2, c2->e2 + c1->e3 1.2, q->e2 + c1->e3 1.08): e2 .48 -> max(.48, .8) = .8.
  //   image 5, 3 x 3: q [.64 .48 .6], c1 [.8 0 .6], c2 [0 .6 .8]. The six permutations (q, c1, c2 ->):
  //     (e1 e2 e3) 1.44, (e1 e3 e2) 1.84, (e2 e1 e3) 2.08, (e2 e3 e1) 1.08, (e3 e1 e2) 2.0, (e3 e2 e1) .6.
  //     Best: q->e2, c1->e1, c2->e3, max_val .8: e2 .48 -> .8, the least similar detection becomes the first.
  const std::vector<double> with_two = {f(.64f), f(.6f), f(.64f), f(.8f), f(.6f), one, f(.64f), f(.8f), f(.6f)};
  CHECK(h.rescore(gallery, eval::cbgm_cuhk_sysu, 2) == with_two);
  // k2 larger than the context: all of it is used, as k2 = 3 above.
  CHECK(h.rescore(gallery, {10, 10}, 2) == with_two);
  CHECK(h.rescore(gallery, eval::cbgm_prw, 2) == with_two);
  // k2 = 1, or no context: the query alone is matched to its most similar detection, whose similarity is
  // max_val itself: nothing changes.
  CHECK(h.rescore(gallery, {10, 1}, 2) == h.similarities);
  CHECK(h.rescore(gallery, {10, 3}, 0) == h.similarities);
}

TEST_CASE("CBGM re-scores the images holding the k1 largest similarities of the query's gallery") {
  const HandCase h;
  // With k2 = 2 (see the previous test): image 0 -> e3 .8, image 1 unchanged, image 3 -> e2 .6, image 5 -> e3 .8.
  // The pool in gallery order {0, 1, 2, 3, 5}: rows 0 .64, 1 .6, 2 .64, 3 .48, 4 .6, 6 .64, 7 .48, 8 .6;
  // descending with ties in that order: 0, 2, 6 (.64), 1, 4, 8 (.6), 3, 7 (.48). Row 5 (image 4, similarity 1)
  // is outside the gallery and takes no place.
  const std::vector<double> s = h.similarities;
  // k1 = 1: row 0 -> image 0 only.
  CHECK(h.rescore({0, 1, 2, 3, 5}, {1, 2}) ==
        std::vector<double>{s[0], f(.8f), s[2], s[3], s[4], s[5], s[6], s[7], s[8]});
  // The same tie, listed from image 1: row 2 -> image 1, where the query row is unmatched: nothing changes.
  CHECK(h.rescore({1, 0, 2, 3, 5}, {1, 2}) == s);
  // Listed from image 5: row 6 -> image 5.
  CHECK(h.rescore({5, 0, 1, 2, 3}, {1, 2}) ==
        std::vector<double>{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], f(.8f)});
  // k1 = 3 and 4: rows 0, 2, 6 (and 1) -> images 0, 1, 5; image 3 keeps .48 .6.
  const std::vector<double> three = {s[0], f(.8f), s[2], s[3], s[4], s[5], s[6], s[7], f(.8f)};
  CHECK(h.rescore({0, 1, 2, 3, 5}, {3, 2}) == three);
  CHECK(h.rescore({0, 1, 2, 3, 5}, {4, 2}) == three);
  // k1 = 5 adds row 4 -> image 3.
  CHECK(h.rescore({0, 1, 2, 3, 5}, {5, 2}) ==
        std::vector<double>{s[0], f(.8f), s[2], f(.6f), s[4], s[5], s[6], s[7], f(.8f)});
  // Image 4 (row 5 = q, similarity 1) in the gallery takes the one place of k1 = 1; its one column against
  // q (1) and c1 (c1 . q = .8 * .64 + .6 * .6 = .872): the query keeps it, max_val 1: nothing changes.
  CHECK(h.rescore({0, 1, 2, 3, 4, 5}, {1, 2}) == s);
  // A gallery of only empty images, and an empty gallery: nothing to re-score.
  CHECK(h.rescore({2}, {10, 3}) == s);
  CHECK(h.rescore({}, {10, 3}) == s);
}

TEST_CASE("CBGM matches a numpy re-implementation of SeqNet's re-scoring (and SeqNet's km.py)") {
  // Printed by `python3 tests/fixtures/cbgm_reference.py /path/to/SeqNet` (numpy, scipy; with a SeqNet checkout
  // it also runs SeqNet's utils/km.py, which gave the same values): seed 15, D 4, k1 5, k2 3, confidence-weighted
  // similarities (SeqNet's CWS), 8 images, image 3 empty, image 6 (the query's own embedding) outside the
  // gallery; re-scored images 0, 1, 2; changed rows 2 (.491840 -> .642166) and 6 (.294664 -> .418088).
  const std::vector<int64_t> offsets = {0, 4, 7, 10, 10, 11, 12, 13, 13};
  const std::vector<int64_t> gallery_images = {0, 1, 2, 3, 4, 5, 7};
  const std::vector<float> gallery = {0.3380607f, -0.44974828f, 0.4510609f, 0.6928099f, -0.51494986f, 0.3628164f,
      -0.2124853f, 0.7470214f, 0.7645839f, -0.56553984f, 0.211413f, 0.22556764f, 0.1460363f, 0.61746716f, 0.23614655f,
      0.7359637f, 0.27831316f, -0.077997655f, -0.6689519f, -0.6848076f, 0.118656896f, 0.4003632f, 0.8362726f,
      -0.35535607f, 0.031642538f, -0.3307624f, -0.17182744f, -0.92739975f, 0.6550987f, -0.64070195f, -0.06445565f,
      0.39521158f, 0.15606913f, -0.6048894f, 0.69875306f, 0.34856194f, 0.20561816f, -0.27117723f, -0.6595583f,
      -0.6701992f, -0.10539052f, 0.08124631f, -0.35566655f, 0.9250909f, 0.17227764f, 0.5712354f, 0.5186322f,
      -0.6123979f, 0.18280207f, -0.89839906f, -0.38469407f, -0.10711226f};
  const std::vector<float> scores = {0.677066f, 0.8626077f, 0.90685475f, 0.9989371f, 0.7287361f, 0.600356f,
      0.62911534f, 0.6908385f, 0.53570247f, 0.84653926f, 0.528428f, 0.7324775f, 0.9989961f};
  const std::vector<float> query = {0.18280207f, -0.89839906f, -0.38469407f, -0.10711226f};
  const std::vector<float> context = {-0.7331826f, -0.062460814f, -0.57479537f, 0.3579835f, 0.46866867f,
      -0.052366562f, -0.8592915f, 0.19805433f, -0.38904822f, -0.41973075f, 0.6774528f, -0.46208793f, -0.47872147f,
      0.2748143f, 0.6182262f, 0.5595527f};
  const std::vector<double> expected = {0.14768349886626275, -0.3608815271745296, 0.6421660424923075,
      -0.6969694763476127, 0.32912809929891984, -0.37320608482326584, 0.418088086772282, 0.46826631789748346,
      0.14240064589826062, 0.5136186568558173, -0.028811468562034436, -0.45093075573252706, 0.9989960995509876};
  const auto g = floats(gallery, 4);
  const auto sc = at::tensor(scores, at::kFloat);
  const auto q = at::tensor(query, at::kFloat);
  const auto similarities = eval::detail::to_doubles(search::similarity(
      q.view({1, 4}).to(at::kDouble), g.to(at::kDouble), sc, search::SimilarityWeighting::confidence));
  const auto out = eval::cbgm_rescore(q, floats(context, 4), g, sc, search::SimilarityWeighting::confidence,
                                      offsets, similarities, gallery_images, {5, 3});
  REQUIRE(out.size() == expected.size());
  for (size_t r = 0; r < out.size(); ++r) {
    CAPTURE(r);
    CHECK(std::abs(out[r] - expected[r]) <= 1e-12);
  }
  // Rows 2 and 6 are the revised ones, the rest equal the input bit for bit.
  for (size_t r = 0; r < out.size(); ++r)
    if (r != 2 && r != 6) CHECK(out[r] == similarities[r]);
  CHECK(out[2] > similarities[2] + 0.1);
  CHECK(out[6] > similarities[6] + 0.1);
}

TEST_CASE("CBGM re-scoring rejects bad options and inputs, naming them") {
  const HandCase h;
  const std::vector<int64_t> gallery = {0, 1};
  CHECK_THROWS_WITH_AS(h.rescore(gallery, {0, 3}),
                       "trident::eval::cbgm_rescore: options.top_images_k1 must be >= 1, got 0", trident::Error);
  CHECK_THROWS_WITH_AS(h.rescore(gallery, {10, 0}),
                       "trident::eval::cbgm_rescore: options.context_k2 must be >= 1 (the query's own row), got 0",
                       trident::Error);
  CHECK_THROWS_WITH_AS(h.rescore({0, 7}, {10, 3}),
                       "trident::eval::cbgm_rescore: gallery_images[1] = 7 is not an image index (there are 6)",
                       trident::Error);
  CHECK_THROWS_WITH_AS(h.rescore({0, 3, 0}, {10, 3}),
                       "trident::eval::cbgm_rescore: gallery_images lists image 0 twice", trident::Error);
  CHECK_THROWS_WITH_AS(eval::cbgm_rescore(h.query, h.context, h.gallery, at::Tensor(),
                                          search::SimilarityWeighting::none, std::vector<int64_t>{0, 2, 3},
                                          h.similarities, gallery, {}),
                       "trident::eval::cbgm_rescore: offsets must run from 0 to the 9 gallery rows, got 3 entries "
                       "from 0 to 3",
                       trident::Error);
  CHECK_THROWS_WITH_AS(eval::cbgm_rescore(h.query, floats({1, 0, 0, 0}, 4), h.gallery, at::Tensor(),
                                          search::SimilarityWeighting::none, h.offsets, h.similarities, gallery, {}),
                       "trident::eval::cbgm_rescore: context must be [C, 3], got [1, 4]", trident::Error);
  CHECK_THROWS_WITH_AS(eval::cbgm_rescore(h.query, h.context, h.gallery, at::Tensor(),
                                          search::SimilarityWeighting::confidence, h.offsets, h.similarities,
                                          gallery, {}),
                       "trident::eval::cbgm_rescore: gallery_scores must be [9] for confidence weighting, got "
                       "undefined",
                       trident::Error);
  // Plain cosines passed as the similarities of a confidence-weighted search (scores .5): the query's row would
  // not be the ranking's similarity.
  CHECK_THROWS_WITH_AS(eval::cbgm_rescore(h.query, h.context, h.gallery, at::full({9}, 0.5, at::kFloat),
                                          search::SimilarityWeighting::confidence, h.offsets, h.similarities,
                                          gallery, {}),
                       doctest::Contains("trident::eval::cbgm_rescore: similarities[0] = 0.6399999856948853 but the "
                                        "query's similarity with gallery row 0 is 0.3199999928474426"),
                       trident::Error);
}

TEST_CASE("CBGM context: the query image's other people in SeqNet's query_dets order") {
  // Query box [0, 0, 10, 20]. Detections of its image (row: box, score), IoU with the query box:
  //   0 [0, 0, 10, 20]   .95  1     -> suppressed by the query box (the query person's own detection)
  //   1 [30, 0, 40, 20]  .7   0     -> kept
  //   2 [60, 0, 70, 20]  .9   0     -> kept, first
  //   3 [31, 0, 41, 20]  .6   0     -> IoU with row 1: 180 / 220 = .82 > .5, suppressed by row 1
  //   4 [90, 0, 100, 20] .3         -> below the score threshold .5
  //   5 [2, 0, 12, 20]   .8   160 / 240 = .67 -> suppressed by the query box
  //   6 [5, 0, 15, 20]   .55  100 / 300 = .33 -> kept: row 5 overlaps it by .67 but row 5 was itself suppressed
  //   7 [120, 0, 130, 20] .7  0     -> kept, after row 1 (equal score, later row)
  //   8 [0, 0, 10, 10]   .52  100 / 200 = .5 exactly -> kept (only IoU > .5 suppresses)
  // Order: 2 (.9), 1 (.7), 7 (.7), 6 (.55), 8 (.52).
  GalleryDetections image;
  image.boxes = floats({0, 0, 10, 20, 30, 0, 40, 20, 60, 0, 70, 20, 31, 0, 41, 20, 90, 0, 100, 20, 2, 0, 12, 20,
                        5, 0, 15, 20, 120, 0, 130, 20, 0, 0, 10, 10},
                       4);
  image.scores = at::tensor(std::vector<float>{0.95f, 0.7f, 0.9f, 0.6f, 0.3f, 0.8f, 0.55f, 0.7f, 0.52f}, at::kFloat);
  image.embeddings = at::eye(9, at::kFloat);
  const Box query_box{0, 0, 10, 20};
  auto context = eval::cbgm_context(image, query_box);
  CHECK(context.rows == std::vector<int64_t>{2, 1, 7, 6, 8});
  REQUIRE(context.embeddings.sizes() == at::IntArrayRef{5, 9});
  for (int64_t k = 0; k < 5; ++k)
    CHECK(context.embeddings[k].argmax().item<int64_t>() == context.rows[static_cast<size_t>(k)]);
  // A lower score threshold lets row 4 in (last).
  CHECK(eval::cbgm_context(image, query_box, 0.25).rows == std::vector<int64_t>{2, 1, 7, 6, 8, 4});
  // An image without detections, or none above the threshold: no context.
  GalleryDetections empty{at::empty({0, 4}, at::kFloat), at::empty({0}, at::kFloat), at::Tensor()};
  CHECK(eval::cbgm_context(empty, query_box).rows.empty());
  CHECK(eval::cbgm_context(empty, query_box).embeddings.size(0) == 0);
  CHECK(eval::cbgm_context(image, query_box, 0.99).rows.empty());
  CHECK_THROWS_WITH_AS(eval::cbgm_context(image, Box{10, 0, 0, 20}),
                       "trident::eval::cbgm_context: query_box must be x1, y1, x2, y2 with x2 >= x1 and y2 >= y1, "
                       "got [10, 0, 0, 20]",
                       trident::Error);
}
