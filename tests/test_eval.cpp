// trident::eval: detection AP/recall, CUHK-SYSU and PRW search mAP/top-k, the results file. Every expected
// value is worked out by hand in the comments (scikit-learn AP: sum over distinct scores of dRecall * Precision).
#include "support/fixtures.hpp"

#include <trident/eval/detection.hpp>
#include <trident/eval/search.hpp>
#if defined(TRIDENT_TESTS_WITH_JSON)
#include <trident/eval/results_file.hpp>
#endif

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <ATen/ops/cat.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

using namespace trident;
using doctest::Approx;

namespace {

at::Tensor rows(std::vector<std::vector<double>> r) {
  if (r.empty()) return at::empty({0, 4}, at::kFloat);
  std::vector<double> flat;
  for (const auto& row : r) flat.insert(flat.end(), row.begin(), row.end());
  return at::tensor(flat, at::kDouble).view({static_cast<int64_t>(r.size()), -1}).to(at::kFloat);
}
at::Tensor vec(std::vector<double> v) { return at::tensor(v, at::kDouble).to(at::kFloat); }

GalleryDetections dets(std::vector<std::vector<double>> boxes, std::vector<double> scores,
                      std::vector<std::vector<double>> embeddings = {}) {
  GalleryDetections d{rows(std::move(boxes)), scores.empty() ? at::empty({0}, at::kFloat) : vec(scores), {}};
  if (!embeddings.empty()) d.embeddings = rows(std::move(embeddings));
  return d;
}
eval::ImageAnnotation anno(std::vector<std::vector<double>> boxes, std::vector<int64_t> ids, int64_t camera = -1) {
  return {rows(std::move(boxes)), std::move(ids), camera};
}

}  // namespace

TEST_CASE("eval average_precision is scikit-learn's average_precision_score") {
  // 0.9 T, 0.8 F, 0.7 T: (R, P) = (.5, 1), (.5, .5), (1, 2/3) -> .5 * 1 + .5 * 2/3 = 5/6.
  CHECK(eval::average_precision({0.9, 0.8, 0.7}, {true, false, true}) == Approx(5.0 / 6.0));
  // Ties enter together: 0.9 {F, T}, 0.5 T -> (.5, 1/2), (1, 2/3) -> .25 + 1/3 = 7/12, whatever the tie order.
  CHECK(eval::average_precision({0.9, 0.9, 0.5}, {false, true, true}) == Approx(7.0 / 12.0));
  CHECK(eval::average_precision({0.9, 0.9, 0.5}, {true, false, true}) == Approx(7.0 / 12.0));
  CHECK(eval::average_precision({0.9, 0.1}, {false, false}) == 0.0);  // no positive
  CHECK(eval::average_precision({}, {}) == 0.0);
  CHECK_THROWS_WITH_AS(eval::average_precision({0.5}, {true, false}),
                       "trident::eval::average_precision: scores has 1 entries but positive has 2", trident::Error);
}

TEST_CASE("eval detection AP and recall follow SeqNet's eval_detection") {
  // Image A: g0 = [0,0,10,10], g1 = [20,0,30,10] (g1 unlabeled).
  //   d0 [0,0,10,10] .9 (IoU g0 1) -> TP; d1 [0,0,10,8] .8 (IoU g0 .8, but g0's best is d0) -> FP;
  //   d2 [20,0,30,10] .3 (IoU g1 1) -> TP; d3 .005 is below the 0.01 threshold -> dropped.
  // Image B: one gt, no detection -> a missed gt. Image C: one gt, d [5,0,15,10] .6, IoU 50/150 -> FP.
  const std::vector<eval::ImageAnnotation> annotations = {
      anno({{0, 0, 10, 10}, {20, 0, 30, 10}}, {0, unlabeled_identity}), anno({{0, 0, 10, 10}}, {unlabeled_identity}),
      anno({{0, 0, 10, 10}}, {3})};
  const std::vector<GalleryDetections> detections = {
      dets({{0, 0, 10, 10}, {0, 0, 10, 8}, {20, 0, 30, 10}, {100, 100, 110, 110}}, {0.9, 0.8, 0.3, 0.005}),
      dets({}, {}), dets({{5, 0, 15, 10}}, {0.6})};
  // All: gt 4, TP 2, recall .5. Ranked .9 T, .8 F, .6 F, .3 T: (R, P) = (.5, 1), (1, .5) -> .75; AP = .75 * .5.
  auto m = eval::evaluate_detection(annotations, detections);
  CHECK(m.ground_truths == 4);
  CHECK(m.true_positives == 2);
  CHECK(m.detections == 4);
  CHECK(m.recall == Approx(0.5));
  CHECK(m.average_precision == Approx(0.375));
  // Labeled only: A keeps g0 (d2 becomes FP), B is skipped, C stays: gt 2, TP 1 (d0), recall .5.
  // Ranked .9 T, .8 F, .6 F, .3 F: (R, P) = (1, 1) -> 1; AP = 1 * .5.
  eval::DetectionOptions labeled;
  labeled.labeled_only = true;
  m = eval::evaluate_detection(annotations, detections, labeled);
  CHECK(m.ground_truths == 2);
  CHECK(m.true_positives == 1);
  CHECK(m.recall == Approx(0.5));
  CHECK(m.average_precision == Approx(0.5));
  // A higher threshold drops d1 (.8 < .85) and the rest but d0: TP 1 of 4 gt, curve 1 -> AP .25.
  eval::DetectionOptions strict;
  strict.score_threshold = 0.85;
  m = eval::evaluate_detection(annotations, detections, strict);
  CHECK(m.recall == Approx(0.25));
  CHECK(m.average_precision == Approx(0.25));

  // Mutual best IoU vs greedy by score: gt [0,0,10,10]; da [0,0,10,8] .9 (IoU .8), db [0,0,10,10] .5 (IoU 1).
  const std::vector<eval::ImageAnnotation> one = {anno({{0, 0, 10, 10}}, {0})};
  const std::vector<GalleryDetections> two = {dets({{0, 0, 10, 8}, {0, 0, 10, 10}}, {0.9, 0.5})};
  // SeqNet: db is the gt's best -> .9 F, .5 T: (1, 1/2) -> AP .5, recall 1.
  m = eval::evaluate_detection(one, two);
  CHECK(m.recall == Approx(1.0));
  CHECK(m.average_precision == Approx(0.5));
  // Greedy: da (higher score) takes the gt -> .9 T, .5 F: AP 1.
  eval::DetectionOptions greedy;
  greedy.matching = eval::DetectionMatching::greedy_by_score;
  m = eval::evaluate_detection(one, two, greedy);
  CHECK(m.average_precision == Approx(1.0));

  // The threshold is compared in the scores' precision (as numpy does): a float score 0.01f (0.0099999998) passes
  // the default threshold 0.01 -> kept, TP, recall 1.
  m = eval::evaluate_detection(one, std::vector<GalleryDetections>{dets({{0, 0, 10, 10}}, {0.01})});
  CHECK(m.detections == 1);
  CHECK(m.recall == Approx(1.0));

  CHECK_THROWS_WITH_AS(eval::evaluate_detection(one, detections),
                       "trident::eval::evaluate_detection: 1 annotations but 3 detection sets (one per gallery image)",
                       trident::Error);
}

TEST_CASE("eval CUHK-SYSU search: one TP per image, small-box IoU rule, recall, top-k, never-found query") {
  CHECK(eval::target_iou_threshold(40, 80) == Approx(0.5));           // 3200 / 4500 = .71 -> capped at .5
  CHECK(eval::target_iou_threshold(5, 10) == Approx(50.0 / 300.0));   // 5*10 / (15*20)
  const std::vector<GalleryDetections> gallery = {
      // 0: the first query's own image (listed below, must be skipped)
      dets({{0, 0, 10, 20}}, {1.0}, {{1, 0}}),
      // 1: the person at [0,0,40,80] (threshold .5). For q = [1,0], confidence-weighted:
      //    a [0,0,40,80]  .9 * .6 = .54 (IoU 1)   b [100,0,140,80] 1 * 1 = 1 (IoU 0)   c [0,0,40,70] .8*.8 = .64
      //    (IoU .875). Ranked b, c, a: c is the first overlapping -> the only TP; a is a negative.
      dets({{0, 0, 40, 80}, {100, 0, 140, 80}, {0, 0, 40, 70}}, {0.9, 1.0, 0.8}, {{0.6, 0.8}, {1, 0}, {0.8, 0.6}}),
      // 2: a small person [0,0,5,10] (threshold 1/6); d [0,0,5,4] has IoU 20/50 = .4 -> TP; sim .7 * 0 = 0.
      dets({{0, 0, 5, 4}}, {0.7}, {{0, 1}}),
      // 3: the person is there but its only detection scores .3 < .5 -> dropped: a missed gt.
      dets({{0, 0, 10, 10}}, {0.3}, {{1, 0}}),
      // 4: no person of interest; e .5 (kept: >= threshold) * .8 = .4.
      dets({{0, 0, 10, 10}}, {0.5}, {{0.8, 0.6}}),
      // 5: no detections at all.
      dets({}, {})};
  const Box big{0, 0, 40, 80}, small{0, 0, 5, 10}, box3{0, 0, 10, 10};
  const std::vector<std::vector<eval::GalleryEntry>> galleries = {
      {{0, std::nullopt}, {1, big}, {2, small}, {3, box3}, {4, std::nullopt}, {5, std::nullopt}},
      {{3, box3}, {4, std::nullopt}, {5, std::nullopt}},  // the person is never detected
      {{4, std::nullopt}},                                // the person is not in this gallery
  };
  const auto queries = rows({{1, 0}, {0, 1}, {1, 0}});
  const std::vector<int64_t> query_images = {0, -1, -1};
  eval::SearchOptions options;
  options.top_k = {1, 2, 5};
  // Query 0: gt 3 (images 1, 2, 3), TP 2 -> recall 2/3. Ranked b 1 F, c .64 T, a .54 F, e .4 F, d 0 T:
  // (R, P) = (0, 0), (.5, 1/2), (.5, 1/3), (.5, 1/4), (1, 2/5) -> .25 + .2 = .45; AP = .45 * 2/3 = .3.
  auto m = eval::evaluate_search(queries, query_images, gallery, galleries, options);
  REQUIRE(m.queries.size() == 3);
  CHECK(m.queries[0].ground_truths == 3);
  CHECK(m.queries[0].true_positives == 2);
  CHECK(m.queries[0].recall == Approx(2.0 / 3.0));
  CHECK(m.queries[0].average_precision == Approx(0.3));
  CHECK(m.queries[0].top_k_hit == std::vector<bool>{false, true, true});
  // Query 1: gt 1, TP 0 -> AP 0, recall 0, no hit.
  CHECK(m.queries[1].ground_truths == 1);
  CHECK(m.queries[1].average_precision == 0.0);
  CHECK(m.queries[1].recall == 0.0);
  CHECK(m.queries[1].top_k_hit == std::vector<bool>{false, false, false});
  // Query 2 has no ground truth in its gallery: left out of the means.
  CHECK(m.queries_without_ground_truth == 1);
  CHECK(m.mean_average_precision == Approx(0.15));  // (.3 + 0) / 2
  CHECK(m.top_k_accuracy == std::vector<double>{0.0, 0.5, 0.5});

  // Plain cosine: a .6, b 1, c .8, d 0, e .8. Image 1 still ranks b, c, a -> c TP. Ranked b 1 F, {c T, e F} .8
  // (tied: one point), a .6 F, d 0 T: (0, 0), (.5, 1/3), (.5, 1/4), (1, 2/5) -> 1/6 + .2 = 11/30; AP = 11/30*2/3.
  // Top-2 with the tie: b, then c (image 1 is listed before image 4) -> hit.
  options.weighting = search::SimilarityWeighting::none;
  m = eval::evaluate_search(queries, query_images, gallery, galleries, options);
  CHECK(m.queries[0].average_precision == Approx(11.0 / 30.0 * 2.0 / 3.0));
  CHECK(m.queries[0].top_k_hit == std::vector<bool>{false, true, true});

  const std::vector<std::vector<eval::GalleryEntry>> twice = {{{1, big}, {1, big}}};
  CHECK_THROWS_WITH_AS(eval::evaluate_search(rows({{1, 0}}), std::vector<int64_t>{-1}, gallery, twice),
                       "trident::eval::evaluate_search: galleries[0] lists image 1 twice", trident::Error);
  const std::vector<std::vector<eval::GalleryEntry>> outside = {{{6, std::nullopt}}};
  CHECK_THROWS_WITH_AS(eval::evaluate_search(rows({{1, 0}}), std::vector<int64_t>{-1}, gallery, outside),
                       "trident::eval::evaluate_search: galleries[0][0].image = 6 is not a gallery image index "
                       "(there are 6)",
                       trident::Error);
}

TEST_CASE("eval PRW search: regular and multi-view galleries") {
  const std::vector<eval::ImageAnnotation> annotations = {
      anno({{0, 0, 40, 80}, {50, 0, 90, 80}}, {7, unlabeled_identity}, 1),  // 0: the first query's image
      anno({{0, 0, 40, 80}}, {7}, 1),
      anno({{0, 0, 40, 80}, {100, 0, 140, 80}}, {7, 3}, 2),
      anno({{0, 0, 40, 80}}, {3}, 2)};
  const std::vector<GalleryDetections> gallery = {
      dets({{0, 0, 40, 80}}, {0.9}, {{1, 0}}), dets({{0, 0, 40, 80}}, {0.9}, {{1, 0}}),
      dets({{0, 0, 40, 80}, {100, 0, 140, 80}}, {1.0, 1.0}, {{0.6, 0.8}, {0.8, 0.6}}),
      dets({{0, 0, 40, 80}}, {0.5}, {{1, 0}})};
  const std::vector<eval::PrwQuery> queries = {{0, 7, 1}, {3, 3, 2}};
  const auto embeddings = rows({{1, 0}, {0.8, 0.6}});
  // Query 0, regular (images 1, 2, 3): gt 2. Image 1: .9 T. Image 2: .8 (other person) F, .6 T. Image 3: .5 F.
  // Ranked .9 T, .8 F, .6 T, .5 F: (.5, 1), (.5, .5), (1, 2/3), (1, .5) -> .5 + 1/3 = 5/6; recall 1.
  // Query 1 (person 3), regular (images 0, 1, 2): image 2 ranks 1.0 (its box) T, .96 F; images 0, 1: .72 F.
  // -> AP 1.
  auto m = eval::evaluate_search_prw(embeddings, queries, annotations, gallery, eval::PrwGallery::regular);
  CHECK(m.queries[0].ground_truths == 2);
  CHECK(m.queries[0].average_precision == Approx(5.0 / 6.0).epsilon(1e-5));
  CHECK(m.queries[0].top_k_hit == std::vector<bool>{true, true, true});
  CHECK(m.queries[1].average_precision == Approx(1.0).epsilon(1e-5));
  CHECK(m.mean_average_precision == Approx((5.0 / 6.0 + 1.0) / 2).epsilon(1e-5));
  // Multi-view: query 0 (camera 1) sees images 2, 3 only: gt 1; ranked .8 F, .6 T, .5 F -> (1, 1/2): AP .5,
  // top-1 miss. Query 1 (camera 2) sees images 0, 1, where person 3 never appears: left out of the means.
  m = eval::evaluate_search_prw(embeddings, queries, annotations, gallery, eval::PrwGallery::multi_view);
  CHECK(m.queries[0].ground_truths == 1);
  CHECK(m.queries[0].average_precision == Approx(0.5).epsilon(1e-5));
  CHECK(m.queries[0].top_k_hit == std::vector<bool>{false, true, true});
  CHECK(m.queries[1].ground_truths == 0);
  CHECK(m.queries_without_ground_truth == 1);
  CHECK(m.mean_average_precision == Approx(0.5).epsilon(1e-5));
  CHECK(m.top_k_accuracy == std::vector<double>{0.0, 1.0, 1.0});
}

#if defined(TRIDENT_TESTS_WITH_JSON)
namespace {

/// Two gallery images (one without detections) and one query, 3-d embeddings.
SearchOutputs two_image_outputs() {
  SearchOutputs outputs;
  outputs.gallery_images = {"s1.jpg", "s2.jpg"};
  outputs.gallery = {dets({{1, 2, 30, 40}, {5, 6, 7, 8.5}}, {0.75, 0.125}, {{0.6, 0.8, 0}, {0, 0, 1}}),
                     dets({}, {})};
  outputs.gallery[1].embeddings = at::empty({0, 3}, at::kFloat);
  outputs.query_images = {"s9.jpg"};
  outputs.query_boxes = rows({{10, 20, 30, 60}});
  outputs.query_embeddings = rows({{0.1f, 0.2f, 0.3f}});
  return outputs;
}

}  // namespace

TEST_CASE("eval results file: JSON round trip and errors naming the file and the field") {
  SearchOutputs outputs = two_image_outputs();
  const std::string path = std::string(TRIDENT_TEST_TMP_DIR) + "/eval_results.json";
  eval::save_search_outputs(outputs, path);
  const auto back = eval::load_search_outputs(path);
  CHECK(back.gallery_images == outputs.gallery_images);
  CHECK(back.query_images == outputs.query_images);
  REQUIRE(back.gallery.size() == 2);
  CHECK(back.gallery[0].boxes.equal(outputs.gallery[0].boxes));
  CHECK(back.gallery[0].scores.equal(outputs.gallery[0].scores));
  CHECK(back.gallery[0].embeddings.equal(outputs.gallery[0].embeddings));
  CHECK(back.gallery[1].boxes.sizes() == at::IntArrayRef({0, 4}));
  CHECK(back.gallery[1].embeddings.sizes() == at::IntArrayRef({0, 3}));
  CHECK(back.query_boxes.equal(outputs.query_boxes));
  CHECK(back.query_embeddings.equal(outputs.query_embeddings));
  std::remove(path.c_str());

  const std::string bad = std::string(TRIDENT_TEST_TMP_DIR) + "/eval_bad.json";
  std::ofstream(bad) << R"({"format": "trident-search-results", "version": 1, "embedding_dim": 2,
    "gallery": [{"image": "a.jpg", "detections": [{"box": [0, 0, 1, 1], "embedding": [1, 0]}]}], "queries": []})";
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad),
                       ("trident::eval::load_search_outputs: '" + bad +
                        "': gallery[0].detections[0] has no field 'score'").c_str(),
                       trident::Error);
  std::ofstream(bad) << R"({"format": "trident-search-results", "version": 1, "embedding_dim": 2,
    "gallery": [], "queries": [{"image": "q.jpg", "box": [0, 0, 1, 1], "embedding": [1, 0, 0]}]})";
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad),
                       ("trident::eval::load_search_outputs: '" + bad +
                        "': queries[0].embedding must be an array of 2 numbers, got 3 entries").c_str(),
                       trident::Error);
  std::ofstream(bad) << R"({"format": "trident-search-results", "version": 1, "embedding_dim": 2,
    "gallery": [], "queries": [{"image": "q.jpg", "box": [5, 0, 1, 1], "embedding": [1, 0]}]})";
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("queries[0].box = [5, 0, 1, 1] is not a box"),
                       trident::Error);
  std::ofstream(bad) << "{ not json";
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("' is not valid JSON"), trident::Error);
  std::remove(bad.c_str());
}

namespace {

void check_bit_identical(const SearchOutputs& a, const SearchOutputs& b) {
  CHECK(a.gallery_images == b.gallery_images);
  CHECK(a.query_images == b.query_images);
  REQUIRE(a.gallery.size() == b.gallery.size());
  for (size_t i = 0; i < a.gallery.size(); ++i) {
    CHECK(a.gallery[i].boxes.equal(b.gallery[i].boxes));
    CHECK(a.gallery[i].scores.equal(b.gallery[i].scores));
    CHECK(a.gallery[i].embeddings.equal(b.gallery[i].embeddings));
  }
  CHECK(a.query_boxes.equal(b.query_boxes));
  CHECK(a.query_embeddings.equal(b.query_embeddings));
}

using test::file_bytes;
void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

/// 30 gallery images with 0 .. 5 detections of 64-d unit embeddings, and 6 queries.
SearchOutputs random_outputs() {
  SearchOutputs out;
  constexpr int64_t dim = 64;
  for (int64_t i = 0; i < 30; ++i) {
    const int64_t n = i % 6;
    const auto xy = at::rand({n, 2}) * 500;
    const auto wh = at::rand({n, 2}) * 200;
    const auto e = at::randn({n, dim});
    out.gallery_images.push_back(fmt::format("s{}.jpg", 1000 + i));
    out.gallery.push_back({at::cat({xy, xy + wh}, 1), at::rand({n}), e / e.norm(2, 1, true)});
  }
  for (int64_t q = 0; q < 6; ++q) out.query_images.push_back(fmt::format("s{}.jpg", 2000 + q));
  out.query_boxes = rows({{1, 2, 30, 60}, {0, 0, 5, 5}, {3, 3, 3, 3}, {10, 20, 30, 40}, {1, 1, 2, 2}, {7, 8, 9, 10}});
  const auto e = at::randn({6, dim});
  out.query_embeddings = e / e.norm(2, 1, true);
  return out;
}

}  // namespace

TEST_CASE("eval results file: binary form round trip, size, form by extension and by magic, atomic writes") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(TRIDENT_TEST_TMP_DIR) / "results_binary";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const auto outputs = random_outputs();
  const std::string json = (dir / "run.json").string(), trs = (dir / "run.trs").string(),
                    bin = (dir / "run.BIN").string();
  eval::save_search_outputs(outputs, json);
  eval::save_search_outputs(outputs, trs);
  eval::save_search_outputs(outputs, bin);
  CHECK(file_bytes(trs).substr(0, 8) == "TRIDENTR");
  CHECK(file_bytes(bin) == file_bytes(trs));
  CHECK(file_bytes(json).front() == '{');
  check_bit_identical(eval::load_search_outputs(json), outputs);
  check_bit_identical(eval::load_search_outputs(trs), outputs);
  check_bit_identical(eval::load_search_outputs_binary(trs), outputs);
  check_bit_identical(eval::load_search_outputs_json(json), outputs);
  // The explicit form wins over the extension.
  const std::string json_named_bin = (dir / "json-inside.bin").string();
  eval::save_search_outputs(outputs, json_named_bin, eval::ResultsFormat::json);
  check_bit_identical(eval::load_search_outputs(json_named_bin), outputs);

  // Exact size of the binary form: 32 header bytes; per gallery image 4 + 9 name bytes, 4 count bytes and
  // n (16 + 4 + 256) bytes; per query 4 + 9 + 16 + 256 bytes. 75 detections in all (0 + 1 + ... + 5, 5 times).
  const auto binary_size = fs::file_size(trs);
  CHECK(binary_size == 32 + 30 * (4 + 9 + 4) + 75 * (16 + 4 + 256) + 6 * (4 + 9 + 16 + 256));
  const auto json_size = fs::file_size(json);
  MESSAGE("results file sizes: JSON ", json_size, " bytes, binary ", binary_size, " bytes");
  CHECK(static_cast<double>(json_size) / static_cast<double>(binary_size) > 4.0);

  // Nothing but the three files and the JSON one named .bin: the temporary files were renamed.
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 4);
  CHECK_THROWS_WITH_AS(eval::save_search_outputs(outputs, (dir / "run.txt").string()),
                       doctest::Contains("cannot tell the form of"), trident::Error);
  // A missing folder is created, as for every atomic write (core/files.hpp); one that cannot be (a file is in
  // its way) is named in the error, and nothing is left behind.
  eval::save_search_outputs(outputs, (dir / "new-folder" / "run.trs").string());
  check_bit_identical(eval::load_search_outputs((dir / "new-folder" / "run.trs").string()), outputs);
  CHECK_THROWS_WITH_AS(eval::save_search_outputs(outputs, (dir / "run.trs" / "inside.trs").string()),
                       doctest::Contains("cannot create the folder of"), trident::Error);
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 5);
  fs::remove_all(dir);
}

TEST_CASE("eval results file: truncated, corrupt and wrong-version binary files name the file, field and offset") {
  namespace fs = std::filesystem;
  SearchOutputs outputs = two_image_outputs();
  const std::string path = std::string(TRIDENT_TEST_TMP_DIR) + "/eval_results.trs";
  const std::string bad = std::string(TRIDENT_TEST_TMP_DIR) + "/eval_bad.trs";
  eval::save_search_outputs(outputs, path);
  const std::string bytes = file_bytes(path);
  // 32 header bytes; s1.jpg: 4 + 6 name, 4 count, 2 x 16 boxes, 2 x 4 scores, 2 x 12 embeddings = 78 bytes;
  // s2.jpg: 4 + 6 + 4 = 14; the query: 4 + 6 + 16 + 12 = 38.
  REQUIRE(bytes.size() == 32 + 78 + 14 + 38);
  check_bit_identical(eval::load_search_outputs(path), outputs);

  // Every truncation is an error (those under 8 bytes are not recognised as binary and fail as JSON).
  for (size_t size = 0; size < bytes.size(); ++size) {
    write_bytes(bad, bytes.substr(0, size));
    CAPTURE(size);
    CHECK_THROWS_AS(eval::load_search_outputs(bad), trident::Error);
  }
  write_bytes(bad, bytes.substr(0, 60));  // inside s1.jpg's boxes, which start at offset 32 + 10 + 4 = 46
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad),
                       ("trident::eval::load_search_outputs: '" + bad +
                        "': truncated file: gallery[0]'s 2 detections needs 2 x 32 bytes at offset 46, only 14 left")
                           .c_str(),
                       trident::Error);
  write_bytes(bad, bytes + "x");
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("1 unexpected bytes after the last query (offset 162)"),
                       trident::Error);

  std::string corrupt = bytes;
  corrupt[7] = 'X';  // "TRIDENTX"
  write_bytes(bad, corrupt);
  CHECK_THROWS_WITH_AS(eval::load_search_outputs_binary(bad), doctest::Contains("not a binary results file"),
                       trident::Error);
  corrupt = bytes;
  corrupt[8] = 2;  // version 2
  write_bytes(bad, corrupt);
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad),
                       ("trident::eval::load_search_outputs: '" + bad +
                        "': binary version 2 (offset 8) is not supported (this reader knows version 1)").c_str(),
                       trident::Error);
  corrupt = bytes;
  corrupt[24] = 7;  // 7 queries announced, one present
  write_bytes(bad, corrupt);
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("truncated file: 7 queries needs 7 x 32 bytes"),
                       trident::Error);
  corrupt = bytes;
  corrupt[16] = 0;
  corrupt[21] = 1;  // 2^40 gallery images
  write_bytes(bad, corrupt);
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("1099511627776 gallery images needs"),
                       trident::Error);
  // A box with x2 < x1: s1.jpg's first box x2 is float 30 at offset 46 + 8; write 0.
  corrupt = bytes;
  corrupt.replace(54, 4, std::string(4, '\0'));
  write_bytes(bad, corrupt);
  CHECK_THROWS_WITH_AS(eval::load_search_outputs(bad), doctest::Contains("gallery[0].boxes[0] = [1, 2, 0, 40] (offset 46) is not a box"),
                       trident::Error);
  std::remove(path.c_str());
  std::remove(bad.c_str());
}
#endif
