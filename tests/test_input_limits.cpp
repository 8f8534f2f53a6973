// Input limits (issue 16, docs/reliability.md "Input limits"): training annotations that cannot be learned from,
// and a results file with a million detections in one picture. Each has one defined behaviour, tested here.

#include "support/fixtures.hpp"

#include <trident/data/transforms.hpp>
#include <trident/eval/detection.hpp>
#include <trident/eval/search.hpp>
#if defined(TRIDENT_TESTS_WITH_JSON)
#include <trident/eval/results_file.hpp>
#endif

#include <ATen/ops/arange.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

using namespace trident;

namespace {

data::ImageRecord record_with(std::vector<float> boxes) {
  data::ImageRecord record;
  record.name = "p.jpg";
  record.path = "/data/p.jpg";
  const auto n = static_cast<int64_t>(boxes.size() / 4);
  record.boxes = at::tensor(boxes, at::kFloat).reshape({n, 4});
  record.pids = at::arange(n, at::kLong);
  return record;
}

/// prepare_training_sample of a 3 x 40 x 60 picture (width 60, height 40) at its own size, no flip.
data::TrainingSample prepare(const data::ImageRecord& record) {
  data::TransformOptions options;
  options.min_size = 40;
  options.max_size = 60;
  options.flip_probability = 0;
  std::mt19937 rng(1);
  return data::prepare_training_sample(at::rand({3, 40, 60}), record, options, rng);
}

}  // namespace

TEST_CASE("input limits: a training box that is not a number, empty or wholly outside its picture is refused") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  // A box partly outside (a person cut by the edge) is kept as it is: the picture stays at its own size.
  const auto kept = prepare(record_with({-5, -5, 10, 20, 50, 30, 70, 45}));
  CHECK(at::equal(kept.target.boxes, at::tensor({-5.f, -5.f, 10.f, 20.f, 50.f, 30.f, 70.f, 45.f}).reshape({2, 4})));
  CHECK(at::equal(kept.target.pids, at::tensor({0L, 1L})));
  // Touching the picture only at its edge (x2 = 0, or x1 = width) is outside: no pixel of the box is in it.
  const std::vector<std::pair<std::vector<float>, std::string>> refused{
      {{1, 2, nan, 20}, "box 0 (x1, y1, x2, y2) = [1, 2, nan, 20] is not finite"},
      {{1, 2, 10, 20, 1, -inf, 10, 20}, "box 1 (x1, y1, x2, y2) = [1, -inf, 10, 20] is not finite"},
      {{1, 2, 1, 20}, "box 0 (x1, y1, x2, y2) = [1, 2, 1, 20] has a width or height <= 0"},
      {{1, 20, 10, 2}, "box 0 (x1, y1, x2, y2) = [1, 20, 10, 2] has a width or height <= 0"},
      {{1, 2, 10, 20, 60, 5, 80, 30}, "box 1 (x1, y1, x2, y2) = [60, 5, 80, 30] lies wholly outside the 60 x 40 picture"},
      {{-30, 5, 0, 30}, "box 0 (x1, y1, x2, y2) = [-30, 5, 0, 30] lies wholly outside the 60 x 40 picture"},
      {{5, 40, 30, 50}, "box 0 (x1, y1, x2, y2) = [5, 40, 30, 50] lies wholly outside the 60 x 40 picture"},
      {{5, -50, 30, -1}, "box 0 (x1, y1, x2, y2) = [5, -50, 30, -1] lies wholly outside the 60 x 40 picture"}};
  for (const auto& [boxes, message] : refused) {
    INFO(message);
    CHECK_THROWS_WITH_AS(prepare(record_with(boxes)),
                         doctest::Contains(("prepare_training_sample: '/data/p.jpg': " + message).c_str()), Error);
  }
  // No box at all is a picture of background only: allowed.
  CHECK(prepare(record_with({})).target.boxes.size(0) == 0);
}

TEST_CASE("input limits: a million detections in one picture are scored, and survive a binary results file") {
  // One picture, one annotated person at [100, 100, 150, 220]; 10^6 detections: 999,999 random boxes away from
  // the person with scores in [0.01, 0.5), and the person's own box with score 0.9. Every ground truth is found,
  // the first-ranked detection is the true one: AP = recall = 1.
  constexpr int64_t n = 1000000;
  at::manual_seed(3);
  const auto corner = at::rand({n, 2}) * 400 + 300;  // x1, y1 in [300, 700): no overlap with the person
  GalleryDetections detections;
  detections.boxes = at::cat({corner, corner + 20}, 1);
  detections.scores = at::rand({n}) * 0.49 + 0.01;
  detections.boxes[n / 2] = at::tensor({100.f, 100.f, 150.f, 220.f});
  detections.scores[n / 2] = 0.9;
  eval::ImageAnnotation annotation;
  annotation.boxes = at::tensor({100.f, 100.f, 150.f, 220.f}).reshape({1, 4});
  annotation.person_ids = {7};
  const std::vector<eval::ImageAnnotation> annotations{annotation};
  std::vector<GalleryDetections> gallery{detections};
  for (const auto matching : {eval::DetectionMatching::mutual_best_iou, eval::DetectionMatching::greedy_by_score}) {
    const auto metrics = eval::evaluate_detection(annotations, gallery, {.matching = matching});
    CHECK(metrics.detections == n);
    CHECK(metrics.true_positives == 1);
    CHECK(metrics.average_precision == doctest::Approx(1.0));
    CHECK(metrics.recall == doctest::Approx(1.0));
  }
  // Search: the query is the person's own embedding; every detection is kept (threshold 0.01). The person's
  // detection has cosine 1 and the highest score: the one true match, ranked first (AP 1, top-1 1).
  gallery[0].embeddings = at::randn({n, 8});
  gallery[0].embeddings /= gallery[0].embeddings.norm(2, {1}, true);
  const auto query = gallery[0].embeddings.narrow(0, n / 2, 1).clone();
  const std::vector<int64_t> query_images{-1};
  const std::vector<std::vector<eval::GalleryEntry>> galleries{{{.image = 0, .target = Box{100, 100, 150, 220}}}};
  eval::SearchOptions search_options;
  search_options.score_threshold = 0.01;
  const auto search = eval::evaluate_search(query, query_images, gallery, galleries, search_options);
  CHECK(search.mean_average_precision == doctest::Approx(1.0));
  CHECK(search.top_k_accuracy.at(0) == doctest::Approx(1.0));
#if defined(TRIDENT_TESTS_WITH_JSON)
  // The binary results file holds them (8-dim embeddings: 52 MB) and gives them back bit for bit.
  SearchOutputs outputs;
  outputs.gallery_images = {"p.jpg"};
  outputs.gallery = gallery;
  outputs.query_images = {"q.jpg"};
  outputs.query_boxes = at::tensor({1.f, 2.f, 30.f, 60.f}).reshape({1, 4});
  outputs.query_embeddings = gallery[0].embeddings.narrow(0, 0, 1).clone();
  const std::string path = std::string(TRIDENT_TEST_TMP_DIR) + "/million.trs";
  eval::save_search_outputs(outputs, path, eval::ResultsFormat::binary);
  const auto loaded = eval::load_search_outputs(path);
  REQUIRE(loaded.gallery.size() == 1);
  CHECK(at::equal(loaded.gallery[0].boxes, gallery[0].boxes));
  CHECK(at::equal(loaded.gallery[0].scores, gallery[0].scores));
  CHECK(at::equal(loaded.gallery[0].embeddings, gallery[0].embeddings));
  std::remove(path.c_str());
#endif
}
