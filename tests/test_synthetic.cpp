// The MAT writer (trident/io/mat_writer.hpp) and the synthetic benchmark (trident/data/synthetic.hpp): MAT
// values read back through the readers' MatFile; a small synthetic dataset read back through the real CUHK-SYSU
// reader, its galleries checked against the pictures' boxes, its determinism, and its refusals of bad options
// (which leave nothing on disk). Needs matio and OpenCV.
#if defined(TRIDENT_TESTS_WITH_IO)
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/mat_file.hpp>
#include <trident/data/synthetic.hpp>
#include <trident/eval/protocol.hpp>

#include <ATen/ops/ones.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <trident/io/mat_writer.hpp>
#include <trident/viz/gallery_curve.hpp>
#include <trident/viz/search_results.hpp>

#include <opencv2/imgcodecs.hpp>

#include "support/fixtures.hpp"
#include "support/mat_writer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using trident::unlabeled_identity;
using trident::io::MatVariable;

namespace {

using trident::test::check_error;

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// Every regular file under `root`, by relative path, with its bytes.
std::map<std::string, std::string> files_under(const fs::path& root) {
  std::map<std::string, std::string> files;
  for (const auto& entry : fs::recursive_directory_iterator(root))
    if (entry.is_regular_file()) files[fs::relative(entry.path(), root).string()] = bytes_of(entry.path());
  return files;
}

/// A small dataset: 20 training pictures with 10 identities, 60 test pictures with 8 queries (gallery 50).
trident::data::SyntheticOptions small_synthetic_options(uint32_t seed = 7) {
  trident::data::SyntheticOptions o;
  o.seed = seed;
  o.train_images = 20;
  o.test_images = 60;
  o.train_identities = 10;
  o.test_identities = 8;
  o.occlusion_probability = 0.3;
  return o;
}

std::vector<float> box_values(const at::Tensor& boxes, int64_t row) {
  const auto r = boxes[row].contiguous();
  return {r.data_ptr<float>(), r.data_ptr<float>() + 4};
}

}  // namespace

TEST_CASE("MAT writer: matrices, strings, structs and cells read back through MatFile") {
  const auto dir = trident::test::fresh_dir("mat_writer");
  const auto file = dir / "values.mat";
  std::vector<trident::io::NamedMatVariable> variables;
  variables.push_back({"M", MatVariable::matrix(2, 3, {1, 2, 3, 4, 5, 6})});
  variables.push_back({"B", MatVariable::row({7, 8, 255}, trident::io::MatStorage::uint8)});
  variables.push_back({"S", MatVariable::struct_array(1, 2, {"name", "box"},
                                                      {{MatVariable::string("a.jpg"), MatVariable::empty()},
                                                       {MatVariable::string("b", trident::io::MatChars::utf16),
                                                        MatVariable::row({1, 2, 3, 4})}})});
  variables.push_back(
      {"C", MatVariable::cell_column({MatVariable::string("x"), MatVariable::scalar(3), MatVariable::string("")})});
  trident::io::write_mat_file(file, std::move(variables));
  CHECK(trident::test::partial_files(dir.string()).empty());

  trident::data::MatFile mat(file.string(), "test");
  auto m = mat.read("M");
  const auto matrix = mat.matrix(m.get(), "M");
  REQUIRE(matrix.rows == 2);
  REQUIRE(matrix.cols == 3);
  CHECK(matrix.at(0, 2) == 3);
  CHECK(matrix.at(1, 0) == 4);
  auto b = mat.read("B");
  CHECK((mat.matrix(b.get(), "B").values == std::vector<double>{7, 8, 255}));
  auto s = mat.read("S");
  CHECK(trident::data::MatFile::numel(s.get()) == 2);
  CHECK(mat.string(mat.field(s.get(), "name", 0, "S"), "S(1).name") == "a.jpg");
  CHECK(mat.string(mat.field(s.get(), "name", 1, "S"), "S(2).name") == "b");
  CHECK(mat.matrix(mat.field(s.get(), "box", 0, "S"), "S(1).box").empty());
  CHECK((mat.matrix(mat.field(s.get(), "box", 1, "S"), "S(2).box").values == std::vector<double>{1, 2, 3, 4}));
  auto c = mat.read("C");
  CHECK(trident::data::MatFile::numel(c.get()) == 3);
  CHECK(mat.string(mat.cell(c.get(), 0, "C"), "C{1}") == "x");
  CHECK(mat.matrix(mat.cell(c.get(), 1, "C"), "C{2}").values == std::vector<double>{3});
  CHECK(mat.string(mat.cell(c.get(), 2, "C"), "C{3}").empty());

  // Copies are deep; the same values give the same bytes (no date in the header).
  const auto original = MatVariable::struct_array(1, 1, {"v"}, {{MatVariable::row({1, 2})}});
  MatVariable copy = original;
  trident::io::write_mat_file(dir / "one.mat", "V", original);
  trident::io::write_mat_file(dir / "two.mat", "V", copy);
  CHECK(bytes_of(dir / "one.mat") == bytes_of(dir / "two.mat"));

  check_error([&] { trident::io::write_mat_file(dir / "bad.mat", "1x", MatVariable::scalar(1)); },
              {"write_mat_file", "bad.mat", "'1x'", "not a valid MATLAB variable name"});
  check_error([&] { trident::io::write_mat_file(dir / "empty.mat", "E", MatVariable()); },
              {"empty.mat", "'E'", "holds no value"});
  check_error([] { MatVariable::matrix(2, 2, {1, 2, 3}); }, {"2 x 2", "4 values", "got 3"});
  check_error([] { MatVariable::row({1, 256}, trident::io::MatStorage::uint8); }, {"256", "uint8"});
  check_error([] { MatVariable::struct_array(1, 1, {"a", "a"}, {{MatVariable::scalar(1), MatVariable::scalar(2)}}); },
              {"'a'", "twice"});
  CHECK(!fs::exists(dir / "bad.mat"));
  CHECK(trident::test::partial_files(dir.string()).empty());
  CHECK(!fs::exists(dir / "empty.mat"));
}

TEST_CASE("synthetic benchmark: reads back through read_cuhk_sysu with the expected counts and galleries") {
  namespace data = trident::data;
  const auto root = trident::test::fresh_dir("synthetic") / "set";
  const auto o = small_synthetic_options();
  const auto report = data::write_synthetic_cuhk_sysu(root.string(), o);
  CHECK(!fs::exists(root.string() + ".partial"));
  CHECK(report.root == root.string());
  CHECK(report.images == 80);
  CHECK(report.train_images == 20);
  CHECK(report.test_images == 60);
  CHECK(report.identities == 18);
  CHECK(report.queries == 8);
  CHECK((report.gallery_sizes == std::vector<int>{50}));
  CHECK(report.occluded > 0);
  CHECK(report.unlabeled > 0);
  CHECK(fs::is_regular_file(root / "annotation/test/train_test/TestG50.mat"));
  CHECK(!fs::exists(root / "annotation/test/train_test/TestG100.mat"));

  data::CuhkSysuOptions read_options;
  read_options.gallery_size = 50;
  const auto d = data::read_cuhk_sysu(root.string(), read_options);
  REQUIRE(d.images.size() == 80);
  CHECK(d.train.size() == 20);
  CHECK(d.test.size() == 60);
  CHECK(d.num_train_ids == 10);
  CHECK(d.report.dropped_boxes == 0);
  CHECK(d.report.unmatched_boxes == 0);
  REQUIRE(d.queries.size() == 8);

  // Boxes, identities per split, people per picture; every box inside its picture.
  int64_t boxes = 0, unlabeled = 0;
  std::vector<int> train_pictures(10, 0), test_pictures(8, 0);
  std::set<int64_t> test_set(d.test.begin(), d.test.end());
  for (size_t i = 0; i < d.images.size(); ++i) {
    const auto& image = d.images[i];
    const bool test = test_set.count(int64_t(i)) > 0;
    const cv::Mat picture = cv::imread(image.path, cv::IMREAD_COLOR);
    REQUIRE(!picture.empty());
    CHECK(picture.rows == o.image_height);
    CHECK(picture.cols == o.image_width);
    const int64_t n = image.boxes.size(0);
    CHECK(n >= o.min_people);
    CHECK(n <= o.max_people);
    boxes += n;
    std::set<int64_t> seen;
    for (int64_t b = 0; b < n; ++b) {
      const auto v = box_values(image.boxes, b);
      CHECK(v[0] >= 0);
      CHECK(v[1] >= 0);
      CHECK(v[2] <= float(picture.cols));
      CHECK(v[3] <= float(picture.rows));
      CHECK(v[3] - v[1] >= 0.9f * float(o.min_person_height));
      CHECK(v[3] - v[1] <= float(o.max_person_height));
      const int64_t pid = image.pids[b].item<int64_t>();
      if (pid == unlabeled_identity) {
        ++unlabeled;
        continue;
      }
      CHECK(seen.insert(pid).second);  // one identity at most once per picture
      if (test) {
        REQUIRE(pid < 8);
        ++test_pictures[size_t(pid)];
      } else {
        REQUIRE(pid < 10);
        ++train_pictures[size_t(pid)];
      }
    }
  }
  CHECK(boxes == report.boxes);
  CHECK(unlabeled == report.unlabeled);
  for (const int count : train_pictures) {
    CHECK(count >= o.min_train_appearances);
    CHECK(count <= o.max_train_appearances);
  }
  for (const int count : test_pictures) {
    CHECK(count >= o.min_test_appearances);
    CHECK(count <= o.max_test_appearances);
  }

  // Each query: its box carries its pid; its gallery is 50 distinct other test pictures, holding every other
  // picture of the identity with the right box, and distractors without it.
  for (const auto& q : d.queries) {
    const auto& query_image = d.images[size_t(q.image)];
    CHECK(test_set.count(q.image) == 1);
    bool found = false;
    for (int64_t b = 0; b < query_image.boxes.size(0); ++b)
      if (query_image.pids[b].item<int64_t>() == q.pid) {
        CHECK((box_values(query_image.boxes, b) == std::vector<float>(q.box.begin(), q.box.end())));
        found = true;
      }
    CHECK(found);
    REQUIRE(q.gallery.size() == 50);
    std::set<int64_t> gallery_images;
    int positives = 0;
    for (const auto& item : q.gallery) {
      CHECK(item.image != q.image);
      CHECK(test_set.count(item.image) == 1);
      gallery_images.insert(item.image);
      const auto& image = d.images[size_t(item.image)];
      int64_t row = -1;
      for (int64_t b = 0; b < image.boxes.size(0); ++b)
        if (image.pids[b].item<int64_t>() == q.pid) row = b;
      CHECK(item.box.has_value() == (row >= 0));
      if (item.box && row >= 0) {
        ++positives;
        CHECK((box_values(image.boxes, row) == std::vector<float>(item.box->begin(), item.box->end())));
      }
    }
    CHECK(gallery_images.size() == 50);
    CHECK(positives == test_pictures[size_t(q.pid)] - 1);
  }

  // Training and test identities are different people: distinct names in Train.mat and TestG50.mat, and no
  // test pid on a training picture (the reader refuses a Train scene in a test picture).
  std::set<std::string> train_names, test_names;
  {
    data::MatFile mat((root / "annotation/test/train_test/Train.mat").string(), "test");
    auto train = mat.read("Train");
    for (size_t k = 0; k < data::MatFile::numel(train.get()); ++k)
      train_names.insert(mat.string(mat.field(mat.cell(train.get(), k, "Train"), "idname", 0, "Train"), "idname"));
    data::MatFile test_mat((root / "annotation/test/train_test/TestG50.mat").string(), "test");
    auto test = test_mat.read("TestG50");
    for (size_t q = 0; q < data::MatFile::numel(test.get()); ++q)
      test_names.insert(test_mat.string(
          test_mat.field(test_mat.field(test.get(), "Query", q, "TestG50"), "idname", 0, "Query"), "idname"));
  }
  CHECK(train_names.size() == 10);
  CHECK(test_names.size() == 8);
  std::vector<std::string> both;
  std::set_intersection(train_names.begin(), train_names.end(), test_names.begin(), test_names.end(),
                        std::back_inserter(both));
  CHECK(both.empty());
}

TEST_CASE("synthetic benchmark: the occlusion and low-resolution query subsets are TestG50's queries") {
  namespace data = trident::data;
  const auto root = trident::test::fresh_dir("synthetic_subsets") / "set";
  auto o = small_synthetic_options(5);
  o.occlusion_probability = 0.5;  // enough occluded queries for a subset
  data::write_synthetic_cuhk_sysu(root.string(), o);
  data::CuhkSysuOptions read_options;
  read_options.gallery_size = 50;
  const auto all = data::read_cuhk_sysu(root.string(), read_options);
  const auto same_query = [&](const data::Query& q) -> const data::Query* {
    for (const auto& candidate : all.queries)
      if (candidate.image == q.image && candidate.box == q.box) return &candidate;
    return nullptr;
  };
  std::vector<float> heights;
  for (const auto& q : all.queries) heights.push_back(q.box[3] - q.box[1]);
  std::sort(heights.begin(), heights.end());
  for (const auto subset : {data::CuhkSysuSubset::occlusion, data::CuhkSysuSubset::low_resolution}) {
    read_options.subset = subset;
    const auto d = data::read_cuhk_sysu(root.string(), read_options);
    REQUIRE(!d.queries.empty());
    CHECK(d.queries.size() < all.queries.size());
    for (const auto& q : d.queries) {
      const auto* full = same_query(q);
      REQUIRE(full != nullptr);
      REQUIRE(q.gallery.size() == full->gallery.size());  // TestG50's gallery of the same person
      for (size_t g = 0; g < q.gallery.size(); ++g) {
        CHECK(q.gallery[g].image == full->gallery[g].image);
        CHECK(q.gallery[g].box.has_value() == full->gallery[g].box.has_value());
      }
      // Low resolution: the third of the queries with the smallest boxes.
      if (subset == data::CuhkSysuSubset::low_resolution)
        CHECK(q.box[3] - q.box[1] <= heights[all.queries.size() / 3 - 1]);
    }
    if (subset == data::CuhkSysuSubset::low_resolution) CHECK(d.queries.size() == all.queries.size() / 3);
  }
}

TEST_CASE("synthetic benchmark: the same seed gives the same bytes, another seed other pictures") {
  namespace data = trident::data;
  const auto dir = trident::test::fresh_dir("synthetic_determinism");
  auto o = small_synthetic_options(11);
  o.train_images = 8;
  o.train_identities = 4;
  data::write_synthetic_cuhk_sysu((dir / "a").string(), o);
  data::write_synthetic_cuhk_sysu((dir / "b").string(), o);
  o.seed = 12;
  data::write_synthetic_cuhk_sysu((dir / "c").string(), o);
  const auto a = files_under(dir / "a"), b = files_under(dir / "b"), c = files_under(dir / "c");
  CHECK(a.size() == 8 + 60 + 4 + 2);  // pictures, Images/pool/Train/TestG50, the two query subsets
  CHECK(a == b);
  REQUIRE(a.size() == c.size());
  CHECK(a.at("annotation/Images.mat") != c.at("annotation/Images.mat"));
  CHECK(a.at("Image/SSM/s1.jpg") != c.at("Image/SSM/s1.jpg"));
}

TEST_CASE("synthetic benchmark: bad options and an occupied root are refused, leaving nothing behind") {
  namespace data = trident::data;
  const auto dir = trident::test::fresh_dir("synthetic_refusals");
  const auto root = dir / "set";
  const auto refused = [&](auto change, const std::vector<std::string>& parts) {
    auto o = small_synthetic_options();
    change(o);
    check_error([&] { data::write_synthetic_cuhk_sysu(root.string(), o); }, parts);
    CHECK(!fs::exists(root));
    CHECK(!fs::exists(root.string() + ".partial"));
  };
  refused([](auto& o) { o.test_images = 50; }, {"write_synthetic_cuhk_sysu", "options.test_images", "got 50"});
  refused([](auto& o) { o.max_people = 0; }, {"options.max_people", "got 0"});
  refused([](auto& o) { o.min_test_appearances = 1; }, {"options.min_test_appearances", "got 1"});
  refused([](auto& o) { o.unlabeled_fraction = 1.5; }, {"options.unlabeled_fraction", "1.5"});
  refused([](auto& o) { o.max_person_height = 500; }, {"options.max_person_height", "500"});
  refused([](auto& o) { o.gallery_sizes = {100}; }, {"options.gallery_sizes[0] = 100", "at least 101", "got 60"});
  refused([](auto& o) { o.gallery_sizes = {60}; }, {"options.gallery_sizes[0]", "CUHK-SYSU gallery size", "got 60"});
  refused([](auto& o) { o.max_test_appearances = 52; }, {"options.max_test_appearances must be at most 51", "got 52"});
  refused([](auto& o) { o.train_identities = 1000; }, {"options.train_identities", "1000", "options.max_people"});

  check_error([&] { data::write_synthetic_cuhk_sysu((dir / "..").string(), small_synthetic_options()); },
              {"must name a folder of its own"});
  CHECK(fs::is_directory(dir));

  // A non-empty root is kept unless overwrite is set; an empty one is used.
  fs::create_directories(root);
  std::ofstream(root / "keep.txt") << "mine";
  auto o = small_synthetic_options();
  check_error([&] { data::write_synthetic_cuhk_sysu(root.string(), o); }, {root.string(), "not empty", "overwrite"});
  CHECK(fs::is_regular_file(root / "keep.txt"));
  CHECK(!fs::exists(root.string() + ".partial"));
  o.overwrite = true;
  data::write_synthetic_cuhk_sysu(root.string(), o);
  CHECK(!fs::exists(root / "keep.txt"));
  CHECK(fs::is_regular_file(root / "annotation/Images.mat"));
  fs::create_directories(dir / "empty");
  o.overwrite = false;
  CHECK(data::write_synthetic_cuhk_sysu((dir / "empty").string(), o).images == 80);
}
TEST_CASE("protocol at every written gallery size: an oracle scores 100%, no detections score 0") {
  // 520 test pictures give TestG50, TestG100 and TestG500. The oracle's outputs are the annotations themselves:
  // every annotated person detected with score 1 and a one-hot embedding of its test identity (unlabeled people
  // share one more dimension), every query embedded as its identity. Each query's true matches then rank first
  // in every gallery: AP 1 for every query at every size, and detection AP 1 and recall 1. Any slip in a gallery
  // (a missing image, a wrong box, the query's own picture) would lower it.
  const auto root = fs::path(TRIDENT_TEST_TMP_DIR) / "synthetic-protocol";
  auto o = small_synthetic_options(5);
  o.test_images = 520;
  o.test_identities = 12;
  o.overwrite = true;
  const auto report = trident::data::write_synthetic_cuhk_sysu(root.string(), o);
  REQUIRE((report.gallery_sizes == std::vector<int>{50, 100, 500}));

  trident::data::CuhkSysuOptions read_options;
  read_options.gallery_size = 50;
  const auto dataset = trident::data::read_cuhk_sysu(root.string(), read_options);
  const int64_t dim = o.test_identities + 1;
  auto one_hot = [dim](int64_t pid) {
    auto v = at::zeros({dim});
    v[pid >= 0 ? pid : dim - 1] = 1.0;
    return v;
  };
  trident::SearchOutputs oracle, blind;
  for (const int64_t i : dataset.test) {
    const auto& image = dataset.images[static_cast<size_t>(i)];
    const int64_t n = image.boxes.size(0);
    std::vector<at::Tensor> embeddings;
    for (int64_t j = 0; j < n; ++j) embeddings.push_back(one_hot(image.pids[j].item<int64_t>()));
    oracle.gallery_images.push_back(image.name);
    oracle.gallery.push_back({image.boxes.clone(), at::ones({n}), n ? at::stack(embeddings) : at::zeros({0, dim})});
    blind.gallery_images.push_back(image.name);
    blind.gallery.push_back({at::zeros({0, 4}), at::zeros({0}), at::zeros({0, dim})});
  }
  std::vector<at::Tensor> queries;
  std::vector<float> boxes;
  for (const auto& q : dataset.queries) {
    queries.push_back(one_hot(q.pid));
    boxes.insert(boxes.end(), q.box.begin(), q.box.end());
    oracle.query_images.push_back(dataset.images[static_cast<size_t>(q.image)].name);
  }
  oracle.query_boxes = at::tensor(boxes).view({-1, 4});
  oracle.query_embeddings = at::stack(queries);
  blind.query_images = oracle.query_images;
  blind.query_boxes = oracle.query_boxes;
  blind.query_embeddings = oracle.query_embeddings;

  for (const int size : report.gallery_sizes) {
    CAPTURE(size);
    read_options.gallery_size = size;
    const auto at_size = trident::data::read_cuhk_sysu(root.string(), read_options);
    for (const auto& q : at_size.queries) CHECK(q.gallery.size() == static_cast<size_t>(size));
    const auto table = trident::eval::score_search_outputs(at_size, oracle);
    CHECK(table.detection.average_precision == doctest::Approx(1.0));
    CHECK(table.detection.recall == doctest::Approx(1.0));
    REQUIRE(table.search.size() == 1);
    CHECK(table.search[0].metrics.mean_average_precision == doctest::Approx(1.0));
    CHECK(table.search[0].metrics.top_k_accuracy.at(0) == doctest::Approx(1.0));
    CHECK(table.search[0].metrics.queries.size() == static_cast<size_t>(o.test_identities));
    const auto none = trident::eval::score_search_outputs(at_size, blind);
    CHECK(none.detection.recall == 0.0);
    CHECK(none.search[0].metrics.mean_average_precision == 0.0);
  }
}

#endif

TEST_CASE("gallery-size curve: the points where the axes put them, bad series refused by name") {
  const auto dir = trident::test::fresh_dir("gallery_curve");
  const auto path = (dir / "curve.png").string();
  // mAP 0.8 at 50 and 0.5 at 500; top-1 0.9 at 50 and 0.6 at 500 (720 x 440: the plot spans x 64..570 and
  // y 40..392, so value v sits at y = 392 - round(352 v) and size 50 at x 64, size 500 at x 570).
  trident::viz::draw_gallery_size_curve({{"mAP", {50, 500}, {0.8, 0.5}}, {"top-1", {50, 500}, {0.9, 0.6}}}, path,
                                        "test");
  const cv::Mat picture = cv::imread(path, cv::IMREAD_COLOR);
  REQUIRE(!picture.empty());
  CHECK(picture.cols == 720);
  CHECK(picture.rows == 440);
  const auto colour = [&](int x, int y) { return picture.at<cv::Vec3b>(y, x); };
  CHECK(colour(64, 392 - 282) == cv::Vec3b(160, 70, 20));   // mAP at 50: the first series' colour
  CHECK(colour(570, 392 - 176) == cv::Vec3b(160, 70, 20));  // mAP at 500
  CHECK(colour(64, 392 - 317) == cv::Vec3b(40, 120, 230));  // top-1 at 50: the second series' colour
  CHECK(colour(300, 300) == cv::Vec3b(255, 255, 255));      // blank plot area between the lines
  CHECK(trident::test::partial_files(dir.string()).empty());
  check_error([&] { trident::viz::draw_gallery_size_curve({{"mAP", {50, 100}, {0.5, 1.2}}}, path, "t"); },
              {"series 'mAP'", "gallery size 100", "1.2"});
  check_error([&] { trident::viz::draw_gallery_size_curve({{"mAP", {100, 50}, {0.5, 0.4}}}, path, "t"); },
              {"increasing", "got 50"});
  check_error([&] { trident::viz::draw_gallery_size_curve({{"mAP", {50}, {0.5, 0.4}}}, path, "t"); },
              {"1 sizes and 2 values"});
}

TEST_CASE("search results picture: tiles scaled to one height, boxes where the matches are, bad pictures named") {
  const auto dir = trident::test::fresh_dir("search_results");
  // A grey query of 100 rows x 50 columns and a grey gallery picture of 50 x 150; at height 200 they are scaled
  // by 2 and by 4, so the canvas is 100 + 6 + 600 columns wide and 28 + 200 rows high (the caption band on top).
  const auto query = (dir / "query.png").string(), gallery = (dir / "gallery.png").string();
  REQUIRE(cv::imwrite(query, cv::Mat(100, 50, CV_8UC3, cv::Scalar(128, 128, 128))));
  REQUIRE(cv::imwrite(gallery, cv::Mat(50, 150, CV_8UC3, cv::Scalar(128, 128, 128))));
  const auto out = (dir / "results.png").string();
  trident::viz::ShownMatch match{gallery, {30, 10, 60, 40}, 0.75, true, std::nullopt};
  trident::viz::draw_search_results(query, {10, 20, 40, 80}, {match}, out, 200);
  const cv::Mat picture = cv::imread(out, cv::IMREAD_COLOR);
  REQUIRE(!picture.empty());
  CHECK(picture.cols == 706);
  CHECK(picture.rows == 228);
  const auto colour = [&](int x, int y) { return picture.at<cv::Vec3b>(y, x); };
  CHECK(colour(20, 28 + 100) == cv::Vec3b(255, 160, 0));    // the query box's left side, x 10 * 2
  CHECK(colour(35, 28 + 100) == cv::Vec3b(128, 128, 128));  // inside it: the picture
  CHECK(colour(103, 28 + 100) == cv::Vec3b(255, 255, 255)); // the gap between the tiles
  CHECK(colour(106 + 120, 28 + 100) == cv::Vec3b(0, 170, 0));  // the correct match's box, x 30 * 4
  CHECK(colour(106 + 240, 28 + 100) == cv::Vec3b(0, 170, 0));  // its right side, x 60 * 4
  CHECK(trident::test::partial_files(dir.string()).empty());
  // A picture that cannot be decoded, or that OpenCV refuses (a side over 2^20 pixels), is named; nothing is written.
  fs::remove(out);
  std::ofstream(dir / "tall.pgm", std::ios::binary) << "P5\n1 2000000\n255\n\x01\x02";
  match.path = (dir / "tall.pgm").string();
  check_error([&] { trident::viz::draw_search_results(query, {10, 20, 40, 80}, {match}, out, 200); },
              {"trident::viz::draw_search_results", "OpenCV refuses the image file", match.path});
  check_error([&] { trident::viz::draw_search_results((dir / "missing.png").string(), {0, 0, 1, 1}, {}, out); },
              {"trident::viz::draw_search_results", "no such image file", (dir / "missing.png").string()});
  CHECK_FALSE(fs::exists(out));
}
