// The dataset readers (CUHK-SYSU, PRW, custom JSON): tiny datasets written in the distributed on-disk formats with matio and
// OpenCV, read back field by field; broken files give a trident::Error naming the file and the entry.
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/custom_json.hpp>
#include <trident/data/prw.hpp>

#include "support/mat_writer.hpp"

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;
using namespace trident::test;
using trident::unlabeled_identity;

namespace {

enum class CuhkFlaw { none, box_structs, no_pool, wrong_variable, three_column_box, missing_picture, short_train_box };

/// Images.mat Img(i): imname, nAppear, idlocate (n x 4, x y w h) — or, with box_structs, box(j).idlocate.
MatVar cuhk_images(const std::vector<std::pair<std::string, std::vector<double>>>& images, bool box_structs,
                   const char* name = "Img") {
  std::vector<std::vector<MatVar>> elements;
  for (const auto& [imname, flat] : images) {
    const size_t n = flat.size() / 4;
    MatVar boxes;
    if (box_structs) {
      std::vector<std::vector<MatVar>> rows;
      for (size_t j = 0; j < n; ++j)
        rows.push_back({mat_matrix(1, 4, {flat[4 * j], flat[4 * j + 1], flat[4 * j + 2], flat[4 * j + 3]})});
      boxes = mat_struct(nullptr, 1, n, {"idlocate"}, rows);
    } else {
      boxes = mat_matrix(n, 4, flat);
    }
    elements.push_back({mat_string(imname), mat_scalar(double(n)), boxes});
  }
  return mat_struct(name, 1, elements.size(), {"imname", "nAppear", box_structs ? "box" : "idlocate"}, elements);
}

/// One scene entry (imname, idlocate 1 x 4, ishard) of Train.mat or a Gallery entry of TestG*.mat; the names are
/// 16-bit chars and the boxes doubles stored as uint8, as MATLAB writes them.
std::vector<MatVar> scene(const std::string& imname, const std::vector<double>& box) {
  return {mat_string(imname, true), box.empty() ? mat_empty() : mat_row_as_uint8(box), mat_scalar(0)};
}

/// Writes a five-image CUHK-SYSU under `root`: s1, s2 train; s3, s4, s5 test (pool); two training identities;
/// two queries in TestG50.
void write_cuhk(const fs::path& root, CuhkFlaw flaw = CuhkFlaw::none) {
  for (const char* name : {"s1.jpg", "s2.jpg", "s3.jpg", "s4.jpg", "s5.jpg"})
    if (!(flaw == CuhkFlaw::missing_picture && std::string(name) == "s2.jpg")) write_jpg(root / "Image/SSM" / name);
  std::vector<std::pair<std::string, std::vector<double>>> images{
      {"s1.jpg", {10, 20, 30, 60, 50, 10, 20, 40, 5, 5, 0, 10, 70, 10, 10, 20}},  // third box: width 0, dropped
      {"s2.jpg", {12, 22, 30, 60}},
      {"s3.jpg", {1, 2, 30, 60, 40, 5, 20, 50}},
      {"s4.jpg", {3, 4, 25, 55}},
      {"s5.jpg", {7, 8, 20, 40}}};
  if (flaw == CuhkFlaw::three_column_box) {
    std::vector<std::vector<MatVar>> elements;
    for (size_t i = 0; i < images.size(); ++i) {
      const auto& [imname, flat] = images[i];
      MatVar boxes = i == 1 ? mat_matrix(2, 3, {1, 2, 3, 4, 5, 6}) : mat_matrix(flat.size() / 4, 4, flat);
      elements.push_back({mat_string(imname), mat_scalar(1), boxes});
    }
    write_mat(root / "annotation/Images.mat", mat_struct("Img", 1, elements.size(), {"imname", "nAppear", "idlocate"},
                                                         elements));
  } else {
    write_mat(root / "annotation/Images.mat",
              cuhk_images(images, flaw == CuhkFlaw::box_structs, flaw == CuhkFlaw::wrong_variable ? "Imgs" : "Img"));
  }
  if (flaw != CuhkFlaw::no_pool)
    write_mat(root / "annotation/pool.mat", mat_cell("pool", {mat_string("s3.jpg"), mat_string("s4.jpg"),
                                                              mat_string("s5.jpg")}));
  // Train{k}: idname, nAppear, scene(s) = imname, idlocate, ishard. Train{2}.scene(2) matches no box.
  const std::vector<const char*> person_fields{"idname", "nAppear", "scene"};
  const std::vector<const char*> scene_fields{"imname", "idlocate", "ishard"};
  MatVar p1 = mat_struct(nullptr, 1, 1, person_fields,
                         {{mat_string("p1"), mat_scalar(2),
                           mat_struct(nullptr, 1, 2, scene_fields,
                                      {scene("s1.jpg", {10, 20, 30, 60}),
                                       scene("s2.jpg", flaw == CuhkFlaw::short_train_box
                                                           ? std::vector<double>{12, 22, 30}
                                                           : std::vector<double>{12, 22, 30, 60})})}});
  MatVar p2 = mat_struct(nullptr, 1, 1, person_fields,
                         {{mat_string("p2"), mat_scalar(2),
                           mat_struct(nullptr, 1, 2, scene_fields,
                                      {scene("s1.jpg", {50, 10, 20, 40}), scene("s2.jpg", {99, 99, 5, 5})})}});
  write_mat(root / "annotation/test/train_test/Train.mat", mat_cell("Train", {p1, p2}));
  // TestG50(q): Query (imname, idlocate, idname), Gallery(j) (imname, idlocate: [] or zeros when absent, ishard).
  const std::vector<const char*> query_fields{"imname", "idlocate", "idname"};
  auto query = [&](const std::string& imname, const std::vector<double>& box, const std::string& id) {
    return mat_struct(nullptr, 1, 1, query_fields, {{mat_string(imname), mat_matrix(1, 4, box), mat_string(id)}});
  };
  MatVar g1 = mat_struct(nullptr, 1, 2, scene_fields, {scene("s4.jpg", {3, 4, 25, 55}), scene("s5.jpg", {})});
  MatVar g2 = mat_struct(nullptr, 1, 2, scene_fields, {scene("s3.jpg", {0, 0, 0, 0}), scene("s4.jpg", {})});
  write_mat(root / "annotation/test/train_test/TestG50.mat",
            mat_struct("TestG50", 1, 2, {"Query", "Gallery"},
                       {{query("s3.jpg", {1, 2, 30, 60}, "t1"), g1}, {query("s5.jpg", {7, 8, 20, 40}, "t2"), g2}}));
}

std::vector<float> floats(const at::Tensor& t) {
  const auto c = t.contiguous();
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}
std::vector<int64_t> longs(const at::Tensor& t) {
  const auto c = t.contiguous();
  return {c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel()};
}

void check_cuhk(const trident::data::Dataset& d, const fs::path& root) {
  CHECK(d.name == "CUHK-SYSU");
  REQUIRE(d.images.size() == 5);
  CHECK((d.train == std::vector<int64_t>{0, 1}));
  CHECK((d.test == std::vector<int64_t>{2, 3, 4}));
  CHECK(d.num_train_ids == 2);
  CHECK(d.report.dropped_boxes == 1);
  CHECK(d.report.unmatched_boxes == 1);
  const auto& s1 = d.images[0];
  CHECK(s1.name == "s1.jpg");
  CHECK(fs::path(s1.path) == root / "Image/SSM/s1.jpg");
  CHECK(s1.width == 0);
  CHECK(s1.height == 0);
  CHECK(s1.camera == -1);
  CHECK((s1.boxes.scalar_type() == at::kFloat));
  CHECK((s1.boxes.sizes() == at::IntArrayRef{3, 4}));
  CHECK((floats(s1.boxes) == std::vector<float>{10, 20, 40, 80, 50, 10, 70, 50, 70, 10, 80, 30}));
  CHECK((s1.pids.scalar_type() == at::kLong));
  CHECK((longs(s1.pids) == std::vector<int64_t>{0, 1, unlabeled_identity}));
  CHECK((floats(d.images[1].boxes) == std::vector<float>{12, 22, 42, 82}));
  CHECK((longs(d.images[1].pids) == std::vector<int64_t>{0}));
  CHECK((floats(d.images[2].boxes) == std::vector<float>{1, 2, 31, 62, 40, 5, 60, 55}));
  CHECK((longs(d.images[2].pids) == std::vector<int64_t>{0, unlabeled_identity}));
  CHECK((longs(d.images[3].pids) == std::vector<int64_t>{0}));
  CHECK((longs(d.images[4].pids) == std::vector<int64_t>{1}));
  REQUIRE(d.queries.size() == 2);
  const auto& q1 = d.queries[0];
  CHECK(q1.image == 2);
  CHECK(q1.pid == 0);
  CHECK((q1.box == trident::Box{1, 2, 31, 62}));
  REQUIRE(q1.gallery.size() == 2);
  CHECK(q1.gallery[0].image == 3);
  REQUIRE(q1.gallery[0].box.has_value());
  CHECK((*q1.gallery[0].box == trident::Box{3, 4, 28, 59}));
  CHECK(q1.gallery[1].image == 4);
  CHECK(!q1.gallery[1].box.has_value());
  const auto& q2 = d.queries[1];
  CHECK(q2.image == 4);
  CHECK(q2.pid == 1);
  CHECK((q2.box == trident::Box{7, 8, 27, 48}));
  REQUIRE(q2.gallery.size() == 2);
  CHECK(q2.gallery[0].image == 2);
  CHECK(!q2.gallery[0].box.has_value());
  CHECK(q2.gallery[1].image == 3);
  CHECK(!q2.gallery[1].box.has_value());
}

enum class PrwFlaw { none, no_test_list, unknown_variable, four_column_box, missing_picture, unknown_query };

/// Writes a four-frame PRW under `root`: two train frames, two test frames, two queries (CRLF and LF lines).
void write_prw(const fs::path& root, PrwFlaw flaw = PrwFlaw::none) {
  const std::vector<std::string> frames{"c1s1_000001", "c2s1_000002", "c3s2_000003", "c1s3_000004"};
  for (const auto& frame : frames)
    if (!(flaw == PrwFlaw::missing_picture && frame == "c2s1_000002")) write_jpg(root / "frames" / (frame + ".jpg"));
  write_mat(root / "frame_train.mat", mat_cell("img_index_train", {mat_string(frames[0]), mat_string(frames[1])}));
  if (flaw != PrwFlaw::no_test_list)
    write_mat(root / "frame_test.mat", mat_cell("img_index_test", {mat_string(frames[2]), mat_string(frames[3], true)}));
  auto annotation = [&](const std::string& frame, const char* variable, size_t rows, const std::vector<double>& v) {
    write_mat(root / "annotations" / (frame + ".jpg.mat"), mat_matrix(rows, v.size() / rows, v, variable));
  };
  annotation(frames[0], flaw == PrwFlaw::unknown_variable ? "boxes" : "box_new", 3,
             {7, 10, 20, 30, 60, -2, 5, 5, 10, 20, 3, -4, 10, 20, 40});
  if (flaw == PrwFlaw::four_column_box)
    annotation(frames[1], "anno_file", 2, {3, 1, 2, 10, 9, 5, 5, 0});
  else
    annotation(frames[1], "anno_file", 2, {3, 1, 2, 10, 20, 9, 5, 5, 0, 10});
  annotation(frames[2], "anno_previous", 2, {7, 100, 50, 30, 60, -2, 1, 1, 5, 5});
  annotation(frames[3], "box_new", 1, {7, 11, 12, 30, 60});
  std::ofstream(root / "query_info.txt", std::ios::binary)
      << "7 100 50 30 60 c3s2_000003\r\n"
      << "7 -2 12 30 60 " << (flaw == PrwFlaw::unknown_query ? "c1s1_000001" : "c1s3_000004") << "\n";
}

/// A custom JSON dataset: two train images (one by its "split" field, one by the "train" list), three test
/// images, two queries (one with a gallery list).
const std::string custom_json_text = R"({
  "name": "my-cameras",
  "images": [
    {"file": "cam1/a.jpg", "camera": 1, "split": "train", "width": 16, "height": 12,
     "boxes": [[10, 20, 30, 60], [5, 5, 0, 10], [50, 10, 20, 40]], "pids": [7, 3, null]},
    {"file": "cam2/b.jpg", "camera": 2, "boxes": [[1, 2, 10, 20], [3, 4, 5, 6]], "pids": [3, 7]},
    {"file": "cam1/c.jpg", "camera": 1, "boxes": [[100, 50, 30, 60]], "pids": [42]},
    {"file": "cam2/d.jpg", "boxes": [[11, 12, 30, 60], [0, 0, 5, 5]], "pids": [42, null]},
    {"file": "cam2/e.jpg", "split": "test"}
  ],
  "train": ["cam2/b.jpg"],
  "test": ["cam1/c.jpg", "cam2/d.jpg"],
  "queries": [
    {"image": "cam1/c.jpg", "box": [100, 50, 30, 60], "pid": 42, "gallery": ["cam2/d.jpg", "cam2/e.jpg"]},
    {"image": "cam2/d.jpg", "box": [11, 12, 30, 60], "pid": 42}
  ]
})";

/// Writes `text` (with `from` replaced by `to`) as <root>/data.json and the pictures, all but `missing`.
fs::path write_custom_json(const fs::path& root, const std::string& from = "", const std::string& to = "",
                           const std::string& missing = "") {
  for (const char* name : {"cam1/a.jpg", "cam2/b.jpg", "cam1/c.jpg", "cam2/d.jpg", "cam2/e.jpg"})
    if (name != missing) write_jpg(root / name);
  std::string text = custom_json_text;
  if (!from.empty()) {
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
  }
  std::ofstream(root / "data.json") << text;
  return root / "data.json";
}

}  // namespace

TEST_CASE("custom JSON reader: every field of a tiny dataset, and errors naming the file and the JSON path") {
  namespace data = trident::data;
  SUBCASE("every field") {
    const auto root = fresh_dir("custom_json");
    const auto file = write_custom_json(root);
    std::vector<std::string> lines;
    data::CustomJsonOptions options;
    options.log = [&](const std::string& line) { lines.push_back(line); };
    const auto d = data::read_custom_json(file.string(), options);
    CHECK(d.name == "my-cameras");
    CHECK(fs::path(d.root) == root);
    REQUIRE(d.images.size() == 5);
    CHECK((d.train == std::vector<int64_t>{0, 1}));
    CHECK((d.test == std::vector<int64_t>{2, 3, 4}));
    CHECK(d.num_train_ids == 2);
    CHECK(d.report.dropped_boxes == 1);
    CHECK(d.report.unmatched_boxes == 0);
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find("images[0].boxes[1]") != std::string::npos);
    const auto& a = d.images[0];
    CHECK(a.name == "cam1/a.jpg");
    CHECK(fs::path(a.path) == root / "cam1/a.jpg");
    CHECK(a.camera == 1);
    CHECK(a.width == 16);
    CHECK(a.height == 12);
    CHECK((a.boxes.scalar_type() == at::kFloat));
    CHECK((a.boxes.sizes() == at::IntArrayRef{2, 4}));
    CHECK((floats(a.boxes) == std::vector<float>{10, 20, 40, 80, 50, 10, 70, 50}));
    CHECK((a.pids.scalar_type() == at::kLong));
    CHECK((longs(a.pids) == std::vector<int64_t>{0, unlabeled_identity}));  // raw 7 -> 0; raw 3's box was dropped
    CHECK(d.images[1].camera == 2);
    CHECK(d.images[1].width == 0);
    CHECK((floats(d.images[1].boxes) == std::vector<float>{1, 2, 11, 22, 3, 4, 8, 10}));
    CHECK((longs(d.images[1].pids) == std::vector<int64_t>{1, 0}));  // raw 3 -> 1, raw 7 -> 0
    CHECK((floats(d.images[2].boxes) == std::vector<float>{100, 50, 130, 110}));
    CHECK((longs(d.images[2].pids) == std::vector<int64_t>{42}));  // test pids stay raw
    CHECK(d.images[3].camera == -1);
    CHECK((floats(d.images[3].boxes) == std::vector<float>{11, 12, 41, 72, 0, 0, 5, 5}));
    CHECK((longs(d.images[3].pids) == std::vector<int64_t>{42, unlabeled_identity}));
    CHECK((d.images[4].boxes.sizes() == at::IntArrayRef{0, 4}));
    CHECK((d.images[4].pids.sizes() == at::IntArrayRef{0}));
    REQUIRE(d.queries.size() == 2);
    const auto& q1 = d.queries[0];
    CHECK(q1.image == 2);
    CHECK(q1.camera == 1);
    CHECK(q1.pid == 42);
    CHECK((q1.box == trident::Box{100, 50, 130, 110}));
    REQUIRE(q1.gallery.size() == 2);
    CHECK(q1.gallery[0].image == 3);
    REQUIRE(q1.gallery[0].box.has_value());
    CHECK((*q1.gallery[0].box == trident::Box{11, 12, 41, 72}));
    CHECK(q1.gallery[1].image == 4);
    CHECK(!q1.gallery[1].box.has_value());
    const auto& q2 = d.queries[1];
    CHECK(q2.image == 3);
    CHECK(q2.camera == -1);
    CHECK((q2.box == trident::Box{11, 12, 41, 72}));
    CHECK(q2.gallery.empty());
  }
  SUBCASE("no name: the file's stem; no pictures checked") {
    const auto root = fresh_dir("custom_json_unnamed");
    const auto file = write_custom_json(root, R"("name": "my-cameras",)", "", "cam2/b.jpg");
    data::CustomJsonOptions options;
    options.check_images = false;
    const auto d = data::read_custom_json(file.string(), options);
    CHECK(d.name == "data");
    CHECK(d.images.size() == 5);
  }
  SUBCASE("a malformed file") {
    const auto root = fresh_dir("custom_json_malformed");
    const auto file = write_custom_json(root, "\n  ]\n", "\n");
    check_error([&] { data::read_custom_json(file.string()); }, {"read_custom_json", file.string(), "not valid JSON"});
  }
  SUBCASE("a box of the wrong size") {
    const auto root = fresh_dir("custom_json_short_box");
    const auto file = write_custom_json(root, "[3, 4, 5, 6]", "[3, 4, 5]");
    check_error([&] { data::read_custom_json(file.string()); },
                {"'" + file.string() + "': images[1].boxes[1] has 3 numbers, expected 4"});
  }
  SUBCASE("a picture that does not exist") {
    const auto root = fresh_dir("custom_json_missing_picture");
    const auto file = write_custom_json(root, "", "", "cam2/b.jpg");
    check_error([&] { data::read_custom_json(file.string()); },
                {file.string(), "images[1].file", "cam2/b.jpg", "does not exist"});
  }
  SUBCASE("more broken entries") {
    const auto root = fresh_dir("custom_json_broken");
    check_error([&] { data::read_custom_json(write_custom_json(root, "[3, 7]", "[3, -7]").string()); },
                {"images[1].pids[1]", "-7"});
    check_error([&] { data::read_custom_json(write_custom_json(root, "[3, 7]", "[3]").string()); },
                {"images[1]", "2 boxes but 1 pids"});
    check_error([&] { data::read_custom_json(write_custom_json(root, R"("cam2/b.jpg"])", "]").string()); },
                {"images[1]", "cam2/b.jpg", "no split"});
    check_error([&] { data::read_custom_json(write_custom_json(root, R"(["cam1/c.jpg", )", "[").string()); },
                {"images[2]", "cam1/c.jpg", "no split"});
    check_error(
        [&] { data::read_custom_json(write_custom_json(root, R"("image": "cam2/d.jpg")", R"("image": "cam2/b.jpg")")
                                         .string()); },
        {"queries[1].image", "cam2/b.jpg", "not a test image"});
    check_error([&] { data::read_custom_json(write_custom_json(root, R"(, "cam2/e.jpg"])", R"(, "cam1/c.jpg"])")
                                                 .string()); },
                {"queries[0].gallery[1]", "query's own image"});
    check_error([&] { data::read_custom_json(write_custom_json(root, R"(, "pid": 42})", "}").string()); },
                {"queries[1] has no field 'pid'"});
    check_error([&] { data::read_custom_json((root / "none.json").string()); }, {"none.json", "does not exist"});
  }
}

TEST_CASE("CUHK-SYSU reader: every field of a tiny dataset written in the distributed format") {
  const auto root = fresh_dir("cuhk");
  write_cuhk(root);
  std::vector<std::string> lines;
  trident::data::CuhkSysuOptions options;
  options.gallery_size = 50;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  const auto d = trident::data::read_cuhk_sysu(root.string(), options);
  check_cuhk(d, root);
  REQUIRE(lines.size() == 2);
  CHECK(lines[0].find("Img(1)") != std::string::npos);
  CHECK(lines[1].find("Train{2}.scene(2).idlocate") != std::string::npos);
}

TEST_CASE("CUHK-SYSU reader: the occlusion and low-resolution query subsets (annotation/test/subset)") {
  const auto root = fresh_dir("cuhk_subsets");
  write_cuhk(root);
  // Occlusion.mat holds TestG50's second query (s5.jpg) under the variable Occlusion1; Resolution.mat the first
  // (s3.jpg) under Test_Size, with a gallery of its own (s4.jpg with the person, s5.jpg without).
  const std::vector<const char*> query_fields{"imname", "idlocate", "idname"};
  const std::vector<const char*> scene_fields{"imname", "idlocate", "ishard"};
  auto query = [&](const std::string& imname, const std::vector<double>& box, const std::string& id) {
    return mat_struct(nullptr, 1, 1, query_fields, {{mat_string(imname), mat_matrix(1, 4, box), mat_string(id)}});
  };
  write_mat(root / "annotation/test/subset/Occlusion.mat",
            mat_struct("Occlusion1", 1, 1, {"Query", "Gallery"},
                       {{query("s5.jpg", {7, 8, 20, 40}, "t2"),
                         mat_struct(nullptr, 1, 1, scene_fields, {scene("s3.jpg", {})})}}));
  write_mat(root / "annotation/test/subset/Resolution.mat",
            mat_struct("Test_Size", 1, 1, {"Query", "Gallery"},
                       {{query("s3.jpg", {1, 2, 30, 60}, "t1"),
                         mat_struct(nullptr, 1, 2, scene_fields, {scene("s4.jpg", {3, 4, 25, 55}), scene("s5.jpg", {})})}}));
  trident::data::CuhkSysuOptions options;
  options.subset = trident::data::CuhkSysuSubset::occlusion;
  options.gallery_size = 0;  // not used with a subset
  auto d = trident::data::read_cuhk_sysu(root.string(), options);
  REQUIRE(d.queries.size() == 1);
  CHECK(d.queries[0].image == 4);
  CHECK((d.queries[0].box == trident::Box{7, 8, 27, 48}));
  REQUIRE(d.queries[0].gallery.size() == 1);
  CHECK(d.queries[0].gallery[0].image == 2);
  CHECK(!d.queries[0].gallery[0].box.has_value());
  CHECK((longs(d.images[4].pids) == std::vector<int64_t>{0}));  // the subset's query 0
  options.subset = trident::data::CuhkSysuSubset::low_resolution;
  d = trident::data::read_cuhk_sysu(root.string(), options);
  REQUIRE(d.queries.size() == 1);
  CHECK(d.queries[0].image == 2);
  REQUIRE(d.queries[0].gallery.size() == 2);
  CHECK((*d.queries[0].gallery[0].box == trident::Box{3, 4, 28, 59}));
  CHECK((trident::data::cuhk_sysu_protocol_file(root.string(), options).path ==
         root / "annotation/test/subset/Resolution.mat"));
  // A missing subset file is an error naming it (03_evaluate checks first and skips the row with a warning).
  fs::remove(root / "annotation/test/subset/Resolution.mat");
  check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); }, {"Resolution.mat"});
}

TEST_CASE("CUHK-SYSU reader: Images.mat with box(j).idlocate structs reads the same") {
  const auto root = fresh_dir("cuhk_box_structs");
  write_cuhk(root, CuhkFlaw::box_structs);
  trident::data::CuhkSysuOptions options;
  options.gallery_size = 50;
  check_cuhk(trident::data::read_cuhk_sysu(root.string(), options), root);
}

TEST_CASE("CUHK-SYSU reader: broken datasets give errors naming the file and the entry") {
  trident::data::CuhkSysuOptions options;
  options.gallery_size = 50;
  SUBCASE("a missing file") {
    const auto root = fresh_dir("cuhk_no_pool");
    write_cuhk(root, CuhkFlaw::no_pool);
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); },
                {"read_cuhk_sysu", "pool.mat", "does not exist"});
  }
  SUBCASE("a missing protocol file") {
    const auto root = fresh_dir("cuhk_no_protocol");
    write_cuhk(root);
    options.gallery_size = 100;
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); }, {"TestG100.mat", "does not exist"});
  }
  SUBCASE("a missing variable") {
    const auto root = fresh_dir("cuhk_wrong_variable");
    write_cuhk(root, CuhkFlaw::wrong_variable);
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); },
                {"Images.mat", "no variable 'Img'"});
  }
  SUBCASE("a box of the wrong size") {
    const auto root = fresh_dir("cuhk_three_columns");
    write_cuhk(root, CuhkFlaw::three_column_box);
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); },
                {"Images.mat", "Img(2).idlocate", "2 x 3"});
  }
  SUBCASE("an identity box of the wrong size") {
    const auto root = fresh_dir("cuhk_short_train_box");
    write_cuhk(root, CuhkFlaw::short_train_box);
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); },
                {"Train.mat", "Train{1}.scene(2).idlocate", "1 x 3"});
  }
  SUBCASE("a picture that does not exist") {
    const auto root = fresh_dir("cuhk_missing_picture");
    write_cuhk(root, CuhkFlaw::missing_picture);
    check_error([&] { trident::data::read_cuhk_sysu(root.string(), options); },
                {"Images.mat", "Img(2).imname", "s2.jpg", "does not exist"});
  }
  SUBCASE("a gallery size no protocol has") {
    options.gallery_size = 70;
    check_error([&] { trident::data::read_cuhk_sysu("nowhere", options); }, {"gallery_size", "70"});
  }
}

TEST_CASE("PRW reader: every field of a tiny dataset written in the distributed format") {
  const auto root = fresh_dir("prw");
  write_prw(root);
  std::vector<std::string> lines;
  trident::data::PrwOptions options;
  options.log = [&](const std::string& line) { lines.push_back(line); };
  const auto d = trident::data::read_prw(root.string(), options);
  CHECK(d.name == "PRW");
  REQUIRE(d.images.size() == 4);
  CHECK((d.train == std::vector<int64_t>{0, 1}));
  CHECK((d.test == std::vector<int64_t>{2, 3}));
  CHECK(d.num_train_ids == 2);
  CHECK(d.report.dropped_boxes == 1);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("c2s1_000002.jpg.mat") != std::string::npos);
  const auto& f0 = d.images[0];
  CHECK(f0.name == "c1s1_000001.jpg");
  CHECK(fs::path(f0.path) == root / "frames/c1s1_000001.jpg");
  CHECK(f0.camera == 1);
  CHECK(f0.width == 0);
  CHECK((floats(f0.boxes) == std::vector<float>{10, 20, 40, 80, 5, 5, 15, 25, 0, 10, 20, 50}));
  CHECK((longs(f0.pids) == std::vector<int64_t>{0, unlabeled_identity, 1}));
  CHECK(d.images[1].camera == 2);
  CHECK((floats(d.images[1].boxes) == std::vector<float>{1, 2, 11, 22}));
  CHECK((longs(d.images[1].pids) == std::vector<int64_t>{1}));
  CHECK(d.images[2].camera == 3);
  CHECK((floats(d.images[2].boxes) == std::vector<float>{100, 50, 130, 110, 1, 1, 6, 6}));
  CHECK((longs(d.images[2].pids) == std::vector<int64_t>{7, unlabeled_identity}));
  CHECK(d.images[3].name == "c1s3_000004.jpg");
  CHECK((longs(d.images[3].pids) == std::vector<int64_t>{7}));
  REQUIRE(d.queries.size() == 2);
  CHECK(d.queries[0].image == 2);
  CHECK(d.queries[0].pid == 7);
  CHECK(d.queries[0].camera == 3);
  CHECK((d.queries[0].box == trident::Box{100, 50, 130, 110}));
  CHECK(d.queries[0].gallery.empty());
  CHECK(d.queries[1].image == 3);
  CHECK(d.queries[1].camera == 1);
  CHECK((d.queries[1].box == trident::Box{0, 12, 28, 72}));
}

TEST_CASE("PRW reader: broken datasets give errors naming the file and the entry") {
  SUBCASE("a missing file") {
    const auto root = fresh_dir("prw_no_test_list");
    write_prw(root, PrwFlaw::no_test_list);
    check_error([&] { trident::data::read_prw(root.string()); }, {"read_prw", "frame_test.mat", "does not exist"});
  }
  SUBCASE("a missing variable") {
    const auto root = fresh_dir("prw_unknown_variable");
    write_prw(root, PrwFlaw::unknown_variable);
    check_error([&] { trident::data::read_prw(root.string()); }, {"c1s1_000001.jpg.mat", "box_new"});
  }
  SUBCASE("a box of the wrong size") {
    const auto root = fresh_dir("prw_four_columns");
    write_prw(root, PrwFlaw::four_column_box);
    check_error([&] { trident::data::read_prw(root.string()); }, {"c2s1_000002.jpg.mat", "anno_file", "2 x 4"});
  }
  SUBCASE("a picture that does not exist") {
    const auto root = fresh_dir("prw_missing_picture");
    write_prw(root, PrwFlaw::missing_picture);
    check_error([&] { trident::data::read_prw(root.string()); },
                {"frame_train.mat", "img_index_train{2}", "c2s1_000002", "does not exist"});
  }
  SUBCASE("a query in no test frame") {
    const auto root = fresh_dir("prw_unknown_query");
    write_prw(root, PrwFlaw::unknown_query);
    check_error([&] { trident::data::read_prw(root.string()); }, {"query_info.txt", "line 2", "c1s1_000001"});
  }
  SUBCASE("a frame name without a camera") {
    check_error([] { trident::data::prw_camera("s1_000001"); }, {"prw_camera", "s1_000001"});
  }
}
