// The protocol driver (trident/eval/protocol.hpp): a hand-made three-image dataset and results whose detection
// and search metrics are worked out by hand below, in the CUHK-SYSU form (queries with galleries) and the PRW form
// (no galleries, cameras); matching by file name and (image, box); errors naming what the results lack.
#if defined(TRIDENT_TESTS_WITH_JSON)
#include "support/fixtures.hpp"
#include <trident/eval/protocol.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <string>
#include <vector>

using namespace trident;
using doctest::Approx;

namespace {

using test::floats;

data::ImageRecord image(std::string name, std::vector<float> boxes, std::vector<int64_t> pids, int64_t camera) {
  data::ImageRecord r;
  r.name = name;
  r.path = "/nowhere/" + name;
  r.boxes = floats(std::move(boxes), 4);
  r.pids = at::tensor(pids, at::kLong);
  r.camera = camera;
  return r;
}

// Three test images, all 10 x 20 people:
//   a.jpg (camera 1): pid 1 at [0, 0, 10, 20], an unlabeled person at [50, 0, 60, 20]
//   b.jpg (camera 2): pid 1 at [0, 0, 10, 20], pid 2 at [20, 0, 30, 20]
//   c.jpg (camera 2): pid 2 at [0, 0, 10, 20]
// Queries: Q0 = pid 1 in a.jpg (gallery b, c), Q1 = pid 2 in b.jpg (gallery a, c).
data::Dataset tiny_dataset(bool galleries) {
  data::Dataset d;
  d.name = "tiny";
  d.images = {image("a.jpg", {0, 0, 10, 20, 50, 0, 60, 20}, {1, unlabeled_identity}, 1),
              image("b.jpg", {0, 0, 10, 20, 20, 0, 30, 20}, {1, 2}, 2),
              image("c.jpg", {0, 0, 10, 20}, {2}, 2)};
  d.test = {0, 1, 2};
  data::Query q0{0, {0, 0, 10, 20}, 1, 1, {}};
  data::Query q1{1, {20, 0, 30, 20}, 2, 2, {}};
  if (galleries) {
    q0.gallery = {{1, Box{0, 0, 10, 20}}, {2, std::nullopt}};
    q1.gallery = {{0, std::nullopt}, {2, Box{0, 0, 10, 20}}};
  }
  d.queries = {q0, q1};
  return d;
}

// Results (2-d embeddings), in another order than the dataset's, with an extra image z.jpg:
//   a.jpg: [0, 0, 10, 20] score 0.9 embedding (1, 0); [50, 0, 60, 20] score 0.6 embedding (0, 1)
//   b.jpg: [0, 0, 10, 20] score 0.8 embedding (0.6, 0.8)      (pid 2 of b.jpg is missed)
//   c.jpg: no detection
//   queries: Q1 (b.jpg, [20, 0, 30, 20]) embedding (0, 1) first, then Q0 (a.jpg, [0, 0, 10, 20]) embedding (1, 0)
SearchOutputs tiny_results() {
  SearchOutputs o;
  o.gallery_images = {"c.jpg", "a.jpg", "z.jpg", "b.jpg"};
  o.gallery = {{floats({}, 4), at::empty({0}, at::kFloat), floats({}, 2)},
               {floats({0, 0, 10, 20, 50, 0, 60, 20}, 4), at::tensor({0.9f, 0.6f}), floats({1, 0, 0, 1}, 2)},
               {floats({0, 0, 5, 5}, 4), at::tensor({0.99f}), floats({1, 0}, 2)},
               {floats({0, 0, 10, 20}, 4), at::tensor({0.8f}), floats({0.6f, 0.8f}, 2)}};
  o.query_images = {"b.jpg", "a.jpg"};
  o.query_boxes = floats({20, 0, 30, 20, 0, 0, 10, 20.004f}, 4);  // within the 0.01 pixel tolerance
  o.query_embeddings = floats({0, 1, 1, 0}, 2);
  return o;
}

}  // namespace

TEST_CASE("protocol: detection and CUHK-SYSU-style search of a tiny dataset, computed by hand") {
  const auto table = eval::score_search_outputs(tiny_dataset(true), tiny_results(), {}, "gallery 2");
  CHECK(table.gallery_images == 3);
  CHECK(table.queries == 2);
  CHECK(table.ignored_gallery_images == 1);  // z.jpg

  // Detection, all people: 5 ground truths; a's two detections and b's one each match their person at IoU 1
  // (3 TP, b's pid 2 missed, c has no detection): recall 3/5. All kept detections are TPs, so the curve's
  // precision is 1 everywhere: AP = 1 * recall = 0.6.
  CHECK(table.detection.ground_truths == 5);
  CHECK(table.detection.true_positives == 3);
  CHECK(table.detection.detections == 3);
  CHECK(table.detection.recall == Approx(0.6));
  CHECK(table.detection.average_precision == Approx(0.6));
  // Labeled only: a's unlabeled person goes: 4 ground truths; a's 0.6 detection becomes a false positive.
  // TP = 2, recall 1/2; curve 0.9 T (P 1, R 1/2), 0.8 T (P 1, R 1), 0.6 F: AP = 1/2 + 1/2 = 1; times recall: 0.5.
  CHECK(table.detection_labeled.ground_truths == 4);
  CHECK(table.detection_labeled.true_positives == 2);
  CHECK(table.detection_labeled.recall == Approx(0.5));
  CHECK(table.detection_labeled.average_precision == Approx(0.5));

  // Search (score >= 0.5, similarity = score * cosine):
  //   Q0 (1, 0) over b, c: b's detection, similarity 0.8 * 0.6 = 0.48, IoU 1 with pid 1's box (threshold
  //     min(0.5, 200 / (20 * 30)) = 1/3): the one TP; c has neither detection nor pid 1. AP = 1, top-1 hit.
  //   Q1 (0, 1) over a, c: a holds no pid 2, its detections are negatives (similarities 0 and 0.6); c holds
  //     pid 2 but no detection: 1 ground truth, 0 TP: AP 0, recall 0, no hit in any top-k.
  //   mAP = (1 + 0) / 2 = 0.5; top-1 = top-5 = top-10 = 1/2.
  REQUIRE(table.search.size() == 1);
  const auto& row = table.search[0];
  CHECK(row.setting == "gallery 2");
  REQUIRE(row.metrics.queries.size() == 2);
  CHECK(row.metrics.queries[0].average_precision == Approx(1.0));
  CHECK(row.metrics.queries[0].true_positives == 1);
  CHECK(row.metrics.queries[1].average_precision == 0.0);
  CHECK(row.metrics.queries[1].ground_truths == 1);
  CHECK(row.metrics.queries[1].true_positives == 0);
  CHECK(row.metrics.mean_average_precision == Approx(0.5));
  CHECK(row.metrics.top_k_accuracy == std::vector<double>{0.5, 0.5, 0.5});

  const auto text = eval::format_table(table);
  CHECK(text.find("tiny: 3 gallery images, 2 queries (1 result images outside the test split ignored)") !=
        std::string::npos);
  CHECK(text.find("  all people" + std::string(9, ' ') + "60.00%   60.00%       3       5") != std::string::npos);
  CHECK(text.find("  gallery 2" + std::string(10, ' ') + "50.00%   50.00%   50.00%   50.00%        2") != std::string::npos);
  const auto json = eval::to_json(table);
  CHECK(json["detection"]["labeled"]["ap"].get<double>() == Approx(0.5));
  CHECK(json["search"][0]["setting"] == "gallery 2");
  CHECK(json["search"][0]["top_k"]["10"].get<double>() == Approx(0.5));
}

TEST_CASE("protocol: PRW-style search (no galleries): regular and multi-view rows") {
  const auto table = eval::score_search_outputs(tiny_dataset(false), tiny_results());
  REQUIRE(table.search.size() == 3);  // regular, multi-view, same-camera
  // Regular: every test image but the query's, i.e. the same galleries as above: mAP 0.5, top-1 0.5.
  CHECK(table.search[0].setting == "regular");
  CHECK(table.search[0].metrics.mean_average_precision == Approx(0.5));
  CHECK(table.search[0].metrics.top_k_accuracy[0] == Approx(0.5));
  // Multi-view: Q0 (camera 1) searches b and c (camera 2): AP 1 as before. Q1 (camera 2) searches a only, which
  // does not hold pid 2: left out of the means. mAP = top-1 = 1.
  CHECK(table.search[1].setting == "multi-view");
  CHECK(table.search[1].metrics.queries_without_ground_truth == 1);
  CHECK(table.search[1].metrics.mean_average_precision == Approx(1.0));
  CHECK(table.search[1].metrics.top_k_accuracy[0] == Approx(1.0));
  CHECK(eval::format_table(table).find("(1 without the person in their gallery, left out)") != std::string::npos);

  // Without cameras there is no multi-view row.
  auto no_cameras = tiny_dataset(false);
  for (auto& image : no_cameras.images) image.camera = -1;
  for (auto& query : no_cameras.queries) query.camera = -1;
  CHECK(eval::score_search(no_cameras, tiny_results()).size() == 1);
}

TEST_CASE("protocol: the full-set row ignores the queries' lists and searches every other test image") {
  // Q0's list names c only (pid 1 is not there): the given-gallery row leaves Q0 out. The full set searches b and
  // c, where b's detection finds pid 1 as in the first test case: AP 1. Q1 as before: AP 0. mAP 0.5.
  auto dataset = tiny_dataset(true);
  dataset.queries[0].gallery = {{2, std::nullopt}};
  const auto given = eval::score_search(dataset, tiny_results(), {}, "lists");
  REQUIRE(given.size() == 1);
  CHECK(given[0].metrics.queries_without_ground_truth == 1);
  const auto full = eval::score_search_full_set(dataset, tiny_results());
  CHECK(full.setting == "full set");
  CHECK(full.metrics.queries_without_ground_truth == 0);
  CHECK(full.metrics.queries[0].average_precision == Approx(1.0));
  CHECK(full.metrics.queries[1].average_precision == 0.0);
  CHECK(full.metrics.mean_average_precision == Approx(0.5));
  // An independent computation of the same thing: the PRW-style regular gallery of the dataset without lists
  // (built by evaluate_search_prw from the annotations) gives every query's numbers.
  const auto regular = eval::score_search(tiny_dataset(false), tiny_results());
  REQUIRE(regular.size() >= 1);
  CHECK(regular[0].setting == "regular");
  for (size_t q = 0; q < 2; ++q) {
    CHECK(full.metrics.queries[q].average_precision == regular[0].metrics.queries[q].average_precision);
    CHECK(full.metrics.queries[q].ground_truths == regular[0].metrics.queries[q].ground_truths);
    CHECK(full.metrics.queries[q].first_match_rank == regular[0].metrics.queries[q].first_match_rank);
  }
}

TEST_CASE("protocol: the same-camera row, per-query results and the JSON that lists them") {
  const auto table = eval::score_search_outputs(tiny_dataset(false), tiny_results());
  REQUIRE(table.search.size() == 3);
  // Same camera: Q0 (camera 1, a.jpg) has no other camera-1 image: left out. Q1 (camera 2, b.jpg) searches c
  // (camera 2), which holds pid 2 but has no detection: AP 0, counted. mAP 0.
  const auto& same = table.search[2];
  CHECK(same.setting == "same-camera");
  CHECK(same.metrics.queries_without_ground_truth == 1);
  CHECK(same.metrics.queries[1].ground_truths == 1);
  CHECK(same.metrics.mean_average_precision == 0.0);
  CHECK(!same.metrics.queries[1].best.has_value());  // c has no detection: nothing ranked

  // Regular row, per query. Q0: b's detection is ranked first and is the true positive: rank 1, best match b.jpg
  // [0, 0, 10, 20], score 0.8, similarity 0.48. Q1: a's two detections (similarities 0.9 * 0 and 0.6 * 1), the
  // best a.jpg [50, 0, 60, 20] with similarity 0.6, not the person: no match, rank 0.
  const auto& regular = table.search[0];
  const auto& q0 = regular.metrics.queries[0];
  CHECK(q0.first_match_rank == 1);
  REQUIRE(q0.best.has_value());
  CHECK(q0.best->image == 1);
  CHECK((q0.best->box == Box{0, 0, 10, 20}));
  CHECK(q0.best->score == Approx(0.8));
  CHECK(q0.best->similarity == Approx(0.48));
  CHECK(q0.best->correct);
  const auto& q1 = regular.metrics.queries[1];
  CHECK(q1.first_match_rank == 0);
  REQUIRE(q1.best.has_value());
  CHECK(q1.best->image == 0);
  CHECK((q1.best->box == Box{50, 0, 60, 20}));
  CHECK(q1.best->similarity == Approx(0.6));
  CHECK(!q1.best->correct);

  const auto json = eval::to_json(table);
  const auto& entry = json["search"][0]["per_query"];
  REQUIRE(entry.size() == 2);
  CHECK(entry[0]["image"] == "a.jpg");
  CHECK(entry[0]["box"][3].get<double>() == 20.0);
  CHECK(entry[0]["first_match_rank"] == 1);
  CHECK(entry[0]["top_k"]["1"] == true);
  CHECK(entry[0]["best_match"]["image"] == "b.jpg");
  CHECK(entry[0]["best_match"]["correct"] == true);
  CHECK(entry[1]["best_match"]["image"] == "a.jpg");
  CHECK(entry[1]["top_k"]["10"] == false);
  CHECK(json["search"][2]["per_query"][1]["best_match"].is_null());
  CHECK(!eval::to_json(table, /*per_query=*/false)["search"][0].contains("per_query"));
}

TEST_CASE("protocol: plain cosine, thresholds and top-k values are the caller's") {
  eval::ProtocolOptions options;
  // Plain cosine: Q1's best is a's second detection with similarity 1 (not 0.6 * 1).
  options.search.weighting = search::SimilarityWeighting::none;
  auto table = eval::score_search_outputs(tiny_dataset(true), tiny_results(), options, "g");
  CHECK(table.search[0].metrics.queries[1].best->similarity == Approx(1.0));
  // Q0's only candidate b (cosine 0.6) is still its match: AP 1.
  CHECK(table.search[0].metrics.queries[0].average_precision == Approx(1.0));
  // A detection threshold of 0.7 drops a's 0.6 detection: all people 2 TP of 5, 2 detections; AP = 1 * 2/5.
  options.detection.score_threshold = 0.7;
  table = eval::score_search_outputs(tiny_dataset(true), tiny_results(), options, "g");
  CHECK(table.detection.detections == 2);
  CHECK(table.detection.true_positives == 2);
  CHECK(table.detection.average_precision == Approx(0.4));
  CHECK(eval::format_table(table).find("(score >= 0.7)") != std::string::npos);
  // A search threshold of 0.85 keeps only a's 0.9 detection: Q0 (over b, c) finds nothing: AP 0.
  options.search.score_threshold = 0.85;
  options.search.top_k = {2};
  table = eval::score_search_outputs(tiny_dataset(true), tiny_results(), options, "g");
  CHECK(table.search[0].metrics.queries[0].average_precision == 0.0);
  CHECK(table.search[0].metrics.top_k == std::vector<int64_t>{2});
  CHECK(eval::to_json(table)["search"][0]["top_k"].contains("2"));
}

TEST_CASE("protocol: embeddings that are not unit length are refused, naming the row") {
  auto results = tiny_results();
  results.query_embeddings = floats({0, 0.5f, 1, 0}, 2);  // a score-weighted query, say (query 1 of the dataset)
  CHECK_THROWS_WITH_AS(eval::score_search(tiny_dataset(true), results),
                       doctest::Contains("query_embeddings row 1 has L2 norm 0.5, not 1"), trident::Error);
  results = tiny_results();
  results.gallery[1].embeddings = floats({1, 0, 0, 0.6f}, 2);  // a.jpg's second detection
  CHECK_THROWS_WITH_AS(eval::score_search(tiny_dataset(true), results),
                       doctest::Contains("gallery[0].embeddings row 1 has L2 norm 0.6"), trident::Error);
  // The check can be switched off.
  eval::ProtocolOptions options;
  options.search.unit_norm_tolerance = -1;
  CHECK(eval::score_search(tiny_dataset(true), results, options).size() == 1);
}

TEST_CASE("protocol: CBGM lets the query picture's other person pull the query to its true match") {
  // 3-d embeddings, every score 1 (so the weighted similarity is the cosine). Picture 0 holds the query person
  // (its own detection, (1, 0, 0)) and a companion c = (0.6, 0.8, 0) at [50, 0, 60, 20]; picture 1 holds the
  // person t = (0.6, 0, 0.8) at [0, 0, 10, 20] and a look-alike l = (0.8, 0.6, 0) at [20, 0, 30, 20].
  // Without CBGM the look-alike ranks first (0.8 > 0.6): AP 1/2, first match at rank 2.
  // With CBGM (k2 = 2: the query and c; the query's own detection is dropped by the NMS with the query box):
  // weights q.t = 0.6, q.l = 0.8, c.t = 0.36, c.l = 0.96; the assignments are {q-l, c-t} = 1.16 and
  // {q-t, c-l} = 1.56, so q goes to t and t's similarity becomes the largest matched weight, 0.96 > 0.8: AP 1.
  const auto rows = [](std::vector<float> v) { return floats(std::move(v), 3); };
  std::vector<GalleryDetections> gallery{
      {floats({0, 0, 10, 20, 50, 0, 60, 20}, 4), at::tensor({1.0f, 1.0f}), rows({1, 0, 0, 0.6f, 0.8f, 0})},
      {floats({0, 0, 10, 20, 20, 0, 30, 20}, 4), at::tensor({1.0f, 1.0f}), rows({0.6f, 0, 0.8f, 0.8f, 0.6f, 0})}};
  const std::vector<std::vector<eval::GalleryEntry>> galleries{{{1, Box{0, 0, 10, 20}}}};
  const std::vector<int64_t> query_images{0};
  const std::vector<Box> query_boxes{Box{0, 0, 10, 20}};
  const auto query = rows({1, 0, 0});
  eval::SearchOptions options;
  auto plain = eval::evaluate_search(query, query_images, gallery, galleries, options);
  CHECK(plain.queries[0].average_precision == Approx(0.5));
  CHECK(plain.queries[0].first_match_rank == 2);
  options.cbgm = eval::CbgmOptions{10, 2};
  auto cbgm = eval::evaluate_search(query, query_images, gallery, galleries, options, query_boxes);
  CHECK(cbgm.queries[0].average_precision == Approx(1.0));
  CHECK(cbgm.queries[0].first_match_rank == 1);
  REQUIRE(cbgm.queries[0].best.has_value());
  CHECK(cbgm.queries[0].best->similarity == Approx(0.96));
  CHECK(cbgm.queries[0].best->correct);
  // k2 = 1 (the query alone): nothing changes.
  options.cbgm = eval::CbgmOptions{10, 1};
  CHECK(eval::evaluate_search(query, query_images, gallery, galleries, options, query_boxes)
            .queries[0].average_precision == Approx(0.5));
  // Without the boxes CBGM cannot build the context: refused.
  CHECK_THROWS_WITH_AS(eval::evaluate_search(query, query_images, gallery, galleries, options),
                       doctest::Contains("CBGM needs every query's box"), trident::Error);
  // Through the protocol the boxes come from the dataset, and the rows say that CBGM re-scored them.
  eval::ProtocolOptions protocol;
  protocol.search.cbgm = eval::cbgm_cuhk_sysu;
  CHECK(eval::score_search(tiny_dataset(true), tiny_results(), protocol, "g")[0].setting == "g +CBGM");
  CHECK(eval::score_search(tiny_dataset(false), tiny_results(), protocol)[1].setting == "multi-view +CBGM");
}

TEST_CASE("protocol: results lacking a gallery image or a query are errors naming them") {
  auto results = tiny_results();
  results.gallery_images[0] = "elsewhere.jpg";  // c.jpg's entry renamed
  CHECK_THROWS_WITH_AS(eval::score_search_outputs(tiny_dataset(true), results),
                       "trident::eval::score_search_outputs: the results have no detections for gallery image "
                       "'c.jpg' (test image 2 of tiny)",
                       trident::Error);
  results = tiny_results();
  results.query_boxes[0][0] = 21.0f;  // Q1's box moved by a pixel
  CHECK_THROWS_WITH_AS(eval::score_search_outputs(tiny_dataset(true), results),
                       "trident::eval::score_search_outputs: the results have no query on image 'b.jpg' with box "
                       "[20, 0, 30, 20] (query 1 of tiny)",
                       trident::Error);
  results = tiny_results();
  results.gallery_images[2] = "a.jpg";
  CHECK_THROWS_WITH_AS(eval::score_detection(tiny_dataset(true), results), doctest::Contains("gallery image 'a.jpg' twice"),
                       trident::Error);
}
#endif
