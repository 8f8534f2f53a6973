// The protocol driver (trident/eval/protocol.hpp): a hand-made three-image dataset and results whose detection
// and search metrics are worked out by hand below, in the CUHK-SYSU form (queries with galleries) and the PRW form
// (no galleries, cameras); matching by file name and (image, box); errors naming what the results lack.
#if defined(TRIDENT_TESTS_WITH_JSON)
#include <trident/eval/protocol.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <string>
#include <vector>

using namespace trident;
using doctest::Approx;

namespace {

at::Tensor floats(std::vector<float> v, int64_t cols) {
  const auto rows = static_cast<int64_t>(v.size()) / cols;
  if (rows == 0) return at::empty({0, cols}, at::kFloat);
  return at::tensor(v, at::kFloat).view({rows, cols});
}

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
  REQUIRE(table.search.size() == 2);
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
