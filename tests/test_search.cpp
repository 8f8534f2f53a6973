// Person search over a gallery: ranking detections by confidence-weighted similarity, and running a network
// over pictures (boxes mapped back to the pictures' pixels, queries embedded from their boxes).
#include "support/fixtures.hpp"

#include <trident/search/rank.hpp>

#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#if TRIDENT_TESTS_WITH_VISION
#include <trident/eval/inference.hpp>
#include <trident/model/trident_net.hpp>

#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#endif

using namespace trident;

namespace {

GalleryDetections gallery_image(std::vector<float> boxes, std::vector<float> scores, std::vector<float> embeddings) {
  const auto n = static_cast<int64_t>(scores.size());
  if (n == 0) return {at::zeros({0, 4}), at::zeros({0}), at::zeros({0, 2})};
  return {at::tensor(boxes).view({n, 4}), at::tensor(scores), at::tensor(embeddings).view({n, -1})};
}

}  // namespace

TEST_CASE("rank_gallery: confidence-weighted cosine, best first, score threshold and top-k") {
  // Query (1, 0). Image 0: a (0.6, 0.8) at score 0.9 -> 0.54 and a (1, 0) at score 0.55 -> 0.55;
  // image 1: nothing; image 2: a (0.8, 0.6) at 1.0 -> 0.8 and a (1, 0) at 0.4 (below the 0.5 threshold).
  std::vector<GalleryDetections> gallery{
      gallery_image({0, 0, 10, 20, 5, 5, 15, 25}, {0.9f, 0.55f}, {0.6f, 0.8f, 1.0f, 0.0f}),
      gallery_image({}, {}, {}),
      gallery_image({1, 1, 2, 2, 3, 3, 4, 4}, {1.0f, 0.4f}, {0.8f, 0.6f, 1.0f, 0.0f})};
  const auto query = at::tensor({1.0f, 0.0f});
  const auto all = search::rank_gallery(query, gallery, {.top_k = 0});
  REQUIRE(all.size() == 3);
  CHECK(all[0].image == 2);
  CHECK(all[0].detection == 0);
  CHECK(all[0].similarity == doctest::Approx(0.8));
  CHECK(all[1].image == 0);
  CHECK(all[1].detection == 1);
  CHECK(all[1].similarity == doctest::Approx(0.55));
  CHECK(all[1].box == std::array<float, 4>{5, 5, 15, 25});
  CHECK(all[2].similarity == doctest::Approx(0.54));
  CHECK(all[2].score == doctest::Approx(0.9));
  // Plain cosine: the (1, 0) detection of image 0 comes first; with the threshold at 0.3 the one of image 2 ties it.
  const auto plain = search::rank_gallery(query, gallery,
                                          {.top_k = 2, .score_threshold = 0.3, .weighting = search::SimilarityWeighting::none});
  REQUIRE(plain.size() == 2);
  CHECK(plain[0].similarity == doctest::Approx(1.0));
  CHECK(plain[1].similarity == doctest::Approx(1.0));
  CHECK(search::rank_gallery(query, gallery, {.top_k = 5, .score_threshold = 2.0}).empty());
  CHECK_THROWS_WITH(search::rank_gallery(at::zeros({2, 2}), gallery), doctest::Contains("query must be [D] or [1, D]"));
  // Embeddings that are not unit length: named (image 2's first detection scaled by its score, say).
  CHECK_THROWS_WITH(search::rank_gallery(at::tensor({0.5f, 0.0f}), gallery),
                    doctest::Contains("the query has L2 norm 0.5, not 1"));
  auto scaled = gallery;
  scaled[2].embeddings = at::tensor({0.4f, 0.3f, 1.0f, 0.0f}).view({2, 2});
  CHECK_THROWS_WITH(search::rank_gallery(query, scaled), doctest::Contains("gallery image 2 detection 0 has L2 norm 0.5"));
  CHECK(search::rank_gallery(query, scaled, {.top_k = 0, .unit_norm_tolerance = -1}).size() == 3);
  gallery[0].embeddings = at::zeros({2, 3});
  CHECK_THROWS_WITH(search::rank_gallery(query, gallery), doctest::Contains("gallery image 0 needs embeddings [2, 2]"));
}

#if TRIDENT_TESTS_WITH_VISION
namespace {

/// Stands in for a TridentNet: detects one box at fixed batch-image coordinates and embeds any box as its
/// normalised (x1, y1); records what it was given.
struct FixedNet : torch::nn::Module {
  std::vector<Detections> detect(const ImageBatch& batch) {
    seen_sizes.push_back(batch.sizes.at(0));
    Detections d;
    d.boxes = at::tensor({10.0f, 20.0f, 30.0f, 60.0f}).view({1, 4});
    d.scores = at::tensor({0.9f});
    d.outputs["embedding"] = at::tensor({0.6f, 0.8f}).view({1, 2});
    return {d};
  }
  std::vector<branches::RoiOutputs> describe(const ImageBatch&, const std::vector<at::Tensor>& boxes) {
    described = boxes.at(0).clone();
    branches::RoiOutputs out;
    out["embedding"] = at::tensor({1.0f, 0.0f}).view({1, 2});
    return {out};
  }
  std::vector<ImageSize> seen_sizes;
  at::Tensor described;
};

}  // namespace

TEST_CASE("inference: detections come back in the picture's pixels, queries are embedded from their boxes") {
  namespace fs = std::filesystem;
  const auto dir = fs::path(TRIDENT_TEST_TMP_DIR) / "inference";
  fs::create_directories(dir);
  const auto path = (dir / "a.png").string();
  cv::imwrite(path, cv::Mat(100, 200, CV_8UC3, cv::Scalar(10, 20, 30)));
  FixedNet net;
  net.train();
  eval::InferenceOptions o;
  o.min_size = 50;  // 100 x 200 -> 50 x 100: every coordinate is halved on the way in, doubled on the way out
  o.max_size = 1000;
  data::Dataset ds;
  ds.name = "two pictures";
  data::ImageRecord record;
  record.name = "a.png";
  record.path = path;
  ds.images = {record, record};
  ds.test = {0, 1};
  ds.queries.push_back({.image = 1, .box = {40, 20, 80, 100}, .pid = 0, .camera = -1, .gallery = {}});
  const auto outputs = eval::compute_search_outputs(net, ds, o);
  CHECK(net.is_training());  // the mode is restored
  REQUIRE(net.seen_sizes.size() == 2);
  CHECK(net.seen_sizes[0] == ImageSize{50, 100});
  REQUIRE(outputs.gallery.size() == 2);
  CHECK(outputs.gallery_images == std::vector<std::string>{"a.png", "a.png"});
  CHECK(at::allclose(outputs.gallery[0].boxes, at::tensor({20.0f, 40.0f, 60.0f, 120.0f}).view({1, 4})));
  CHECK(outputs.gallery[0].scores.item<float>() == doctest::Approx(0.9));
  CHECK(at::allclose(net.described, at::tensor({20.0f, 10.0f, 40.0f, 50.0f}).view({1, 4})));
  CHECK(at::allclose(outputs.query_boxes, at::tensor({40.0f, 20.0f, 80.0f, 100.0f}).view({1, 4})));
  CHECK(outputs.query_embeddings.sizes() == at::IntArrayRef{1, 2});
  CHECK(outputs.query_images == std::vector<std::string>{"a.png"});
  ds.images[0].path = (dir / "missing.png").string();
  CHECK_THROWS_WITH(eval::compute_search_outputs(net, ds, o), doctest::Contains("missing.png"));
}
#endif
