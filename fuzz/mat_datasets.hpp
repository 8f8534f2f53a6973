#pragma once
// Small valid CUHK-SYSU and PRW folders (annotations only, no pictures: the harnesses read with
// check_images = false) written with trident's MAT writer; the cuhk_sysu and prw harnesses replace one file of
// such a folder by the input, make_corpus.cpp writes them as seeds. The same shapes as tests/test_datasets.cpp.
#include <trident/io/mat_writer.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace trident::fuzz {

using io::MatVariable;

inline MatVariable named(MatVariable v, const char* name) {
  v.set_name(name);
  return v;
}
inline MatVariable mat_struct(size_t cols, const std::vector<std::string>& fields,
                              std::vector<std::vector<MatVariable>> elements) {
  return MatVariable::struct_array(1, cols, fields, std::move(elements));
}
inline MatVariable mat_string(const std::string& s, bool wide = false) {
  return MatVariable::string(s, wide ? io::MatChars::utf16 : io::MatChars::ascii);
}

/// The files of the CUHK-SYSU folder, relative to its root; an input's first byte picks the one it replaces.
inline const std::vector<std::string>& cuhk_sysu_files() {
  static const std::vector<std::string> files{"annotation/Images.mat", "annotation/pool.mat",
                                              "annotation/test/train_test/Train.mat",
                                              "annotation/test/train_test/TestG50.mat"};
  return files;
}

/// Five images (s1, s2 train; s3, s4, s5 test), two training identities, two queries in TestG50.
inline void write_cuhk_sysu(const std::filesystem::path& root) {
  const std::vector<std::pair<std::string, std::vector<double>>> images{
      {"s1.jpg", {10, 20, 30, 60, 50, 10, 20, 40, 5, 5, 0, 10}},
      {"s2.jpg", {12, 22, 30, 60}},
      {"s3.jpg", {1, 2, 30, 60, 40, 5, 20, 50}},
      {"s4.jpg", {3, 4, 25, 55}},
      {"s5.jpg", {7, 8, 20, 40}}};
  std::vector<std::vector<MatVariable>> elements;
  for (const auto& [name, flat] : images)
    elements.push_back({mat_string(name), MatVariable::scalar(double(flat.size() / 4)),
                        MatVariable::matrix(flat.size() / 4, 4, flat)});
  const size_t count = elements.size();  // before the move: argument order is unspecified
  io::write_mat_file(root / "annotation/Images.mat", "Img",
                     mat_struct(count, {"imname", "nAppear", "idlocate"}, std::move(elements)));
  io::write_mat_file(root / "annotation/pool.mat", "pool",
                     MatVariable::cell_column({mat_string("s3.jpg"), mat_string("s4.jpg"), mat_string("s5.jpg")}));
  const auto scene = [](const std::string& imname, const std::vector<double>& box) {
    return std::vector<MatVariable>{mat_string(imname, true),
                                    box.empty() ? MatVariable::empty() : MatVariable::row(box, io::MatStorage::uint8),
                                    MatVariable::scalar(0)};
  };
  const std::vector<std::string> person_fields{"idname", "nAppear", "scene"};
  const std::vector<std::string> scene_fields{"imname", "idlocate", "ishard"};
  auto p1 = mat_struct(1, person_fields,
                       {{mat_string("p1"), MatVariable::scalar(2),
                         mat_struct(2, scene_fields,
                                    {scene("s1.jpg", {10, 20, 30, 60}), scene("s2.jpg", {12, 22, 30, 60})})}});
  auto p2 = mat_struct(1, person_fields,
                       {{mat_string("p2"), MatVariable::scalar(2),
                         mat_struct(2, scene_fields,
                                    {scene("s1.jpg", {50, 10, 20, 40}), scene("s2.jpg", {99, 99, 5, 5})})}});
  io::write_mat_file(root / "annotation/test/train_test/Train.mat", "Train",
                     MatVariable::cell_column({std::move(p1), std::move(p2)}));
  const auto query = [](const std::string& imname, const std::vector<double>& box, const std::string& id) {
    return mat_struct(1, {"imname", "idlocate", "idname"},
                      {{mat_string(imname), MatVariable::matrix(1, 4, box), mat_string(id)}});
  };
  auto g1 = mat_struct(2, scene_fields, {scene("s4.jpg", {3, 4, 25, 55}), scene("s5.jpg", {})});
  auto g2 = mat_struct(2, scene_fields, {scene("s3.jpg", {0, 0, 0, 0}), scene("s4.jpg", {})});
  io::write_mat_file(root / "annotation/test/train_test/TestG50.mat", "TestG50",
                     mat_struct(2, {"Query", "Gallery"},
                                {{query("s3.jpg", {1, 2, 30, 60}, "t1"), std::move(g1)},
                                 {query("s5.jpg", {7, 8, 20, 40}, "t2"), std::move(g2)}}));
}

/// The files of the PRW folder, relative to its root; an input's first byte picks the one it replaces.
inline const std::vector<std::string>& prw_files() {
  static const std::vector<std::string> files{
      "frame_train.mat", "frame_test.mat", "annotations/c1s1_000001.jpg.mat", "annotations/c2s1_000002.jpg.mat",
      "annotations/c3s2_000003.jpg.mat", "annotations/c1s3_000004.jpg.mat", "query_info.txt"};
  return files;
}

/// Four frames (two train, two test), the three annotation variable names PRW uses, two queries.
inline void write_prw(const std::filesystem::path& root) {
  const std::vector<std::string> frames{"c1s1_000001", "c2s1_000002", "c3s2_000003", "c1s3_000004"};
  io::write_mat_file(root / "frame_train.mat", "img_index_train",
                     MatVariable::cell_column({mat_string(frames[0]), mat_string(frames[1])}));
  io::write_mat_file(root / "frame_test.mat", "img_index_test",
                     MatVariable::cell_column({mat_string(frames[2]), mat_string(frames[3], true)}));
  const auto annotation = [&](const std::string& frame, const char* variable, size_t rows,
                              const std::vector<double>& v) {
    io::write_mat_file(root / "annotations" / (frame + ".jpg.mat"), variable,
                       MatVariable::matrix(rows, v.size() / rows, v));
  };
  annotation(frames[0], "box_new", 3, {7, 10, 20, 30, 60, -2, 5, 5, 10, 20, 3, -4, 10, 20, 40});
  annotation(frames[1], "anno_file", 2, {3, 1, 2, 10, 20, 9, 5, 5, 0, 10});
  annotation(frames[2], "anno_previous", 2, {7, 100, 50, 30, 60, -2, 1, 1, 5, 5});
  annotation(frames[3], "box_new", 1, {7, 11, 12, 30, 60});
  std::ofstream(root / "query_info.txt", std::ios::binary) << "7 100 50 30 60 c3s2_000003\r\n"
                                                            << "7 -2 12 30 60 c1s3_000004\n";
}

}  // namespace trident::fuzz
