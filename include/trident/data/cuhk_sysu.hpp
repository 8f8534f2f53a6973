#pragma once
/// \file trident/data/cuhk_sysu.hpp
/// Reads CUHK-SYSU as distributed (the layout is in docs/datasets.md):
///   Image/SSM/<name>.jpg                         the pictures
///   annotation/Images.mat                        Img: every image and every person box (x, y, w, h)
///   annotation/pool.mat                          pool: the test images; the training images are the rest
///   annotation/test/train_test/Train.mat         Train: the training identities and where they appear
///   annotation/test/train_test/TestG<size>.mat   TestG<size>: the queries and their galleries
///   annotation/test/subset/Occlusion.mat         Occlusion1: the occluded queries and their galleries (optional)
///   annotation/test/subset/Resolution.mat        Test_Size: the low-resolution queries and their galleries
///                                                (optional; the subsets of Xiao et al. that GFN reports)
/// Part of trident::mat (matio).
#include <trident/config.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/mat_file.hpp>

#include <array>
#include <cmath>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

namespace trident::data {

/// The query subsets that CUHK-SYSU's annotation ships beside the TestG<size> lists: each a file of its own
/// with the same structure (queries and their galleries).
enum class CuhkSysuSubset {
  none,            ///< all queries: TestG<gallery_size>.mat
  occlusion,       ///< annotation/test/subset/Occlusion.mat, variable Occlusion1
  low_resolution,  ///< annotation/test/subset/Resolution.mat, variable Test_Size
};

struct CuhkSysuOptions {
  /// Which test protocol gives the queries' galleries: 50, 100 (the standard one), 500, 1000, 2000 or 4000.
  int gallery_size = 100;
  /// A query subset instead of TestG<gallery_size> (gallery_size is then not used: the subset file has its own
  /// galleries).
  CuhkSysuSubset subset = CuhkSysuSubset::none;
  /// Check that every picture exists (an error names the missing one).
  bool check_images = true;
  /// Receives a line for each dropped box and each identity box that matches no box of its image.
  LogCallback log;
};

namespace detail {

/// A box as the annotation files give it, truncated to integers as the reference code compares them.
using IntegerBox = std::array<int64_t, 4>;

/// Whether integer_box may truncate x, y, w, h: finite and within +-2^53. Converting a NaN or a value beyond
/// int64_t's range is undefined behaviour (a corrupt Images.mat found by fuzz/cuhk_sysu.cpp).
inline bool integer_box_ok(double x, double y, double w, double h) {
  for (const double v : {x, y, w, h})
    if (!(std::fabs(v) <= 9007199254740992.0)) return false;
  return true;
}

inline IntegerBox integer_box(double x, double y, double w, double h) {
  return {static_cast<int64_t>(x), static_cast<int64_t>(y), static_cast<int64_t>(w), static_cast<int64_t>(h)};
}

/// The four numbers (x, y, w, h) of a single box entry (1 x 4 or 4 x 1); `what` names it in errors.
inline std::array<double, 4> single_box(const MatFile& mat, const matvar_t* var, const std::string& what) {
  const MatMatrix m = mat.matrix(var, what);
  TRIDENT_CHECK(m.values.size() == 4, "{}: '{}': {} must be one box (1 x 4: x, y, w, h), got {}", mat.caller(),
                mat.path(), what, MatFile::dims_of(var));
  return {m.values[0], m.values[1], m.values[2], m.values[3]};
}

}  // namespace detail

/// Where the queries of `options` come from: the file under `root` and the MATLAB variable in it.
struct CuhkSysuProtocolFile {
  std::filesystem::path path;
  std::string variable;
};

inline CuhkSysuProtocolFile cuhk_sysu_protocol_file(const std::string& root, const CuhkSysuOptions& options) {
  const auto base = std::filesystem::path(root) / "annotation" / "test";
  switch (options.subset) {
    case CuhkSysuSubset::occlusion: return {base / "subset" / "Occlusion.mat", "Occlusion1"};
    case CuhkSysuSubset::low_resolution: return {base / "subset" / "Resolution.mat", "Test_Size"};
    case CuhkSysuSubset::none: break;
  }
  const auto name = fmt::format("TestG{}", options.gallery_size);
  return {base / "train_test" / (name + ".mat"), name};
}

/// Reads CUHK-SYSU from `root`. Train images carry the Train.mat identities (pid = 0-based index in Train) and
/// unlabeled_identity for every other box; test images carry the test identities of the chosen protocol (pid =
/// 0-based query index) and unlabeled_identity. Boxes with a non-positive width or height are dropped and
/// counted in report.dropped_boxes.
inline Dataset read_cuhk_sysu(const std::string& root, const CuhkSysuOptions& options = {}) {
  static constexpr const char* caller = "trident::data::read_cuhk_sysu";
  namespace fs = std::filesystem;
  const int g = options.gallery_size;
  TRIDENT_CHECK(options.subset != CuhkSysuSubset::none || g == 50 || g == 100 || g == 500 || g == 1000 ||
                    g == 2000 || g == 4000,
                "{}: gallery_size must be 50, 100, 500, 1000, 2000 or 4000, got {}", caller, g);
  const fs::path base(root);
  const auto note = [&](const std::string& line) {
    if (options.log) options.log(line);
  };

  Dataset data;
  data.name = "CUHK-SYSU";
  data.root = root;
  std::unordered_map<std::string, int64_t> index_of;
  std::vector<std::vector<detail::IntegerBox>> raw_boxes;  // per image, the kept boxes as x, y, w, h integers
  std::vector<std::vector<int64_t>> pids;

  // Images.mat: Img(i).imname and the boxes: Img(i).box(j).idlocate (1 x 4 each), Img(i).box or Img(i).idlocate (n x 4).
  {
    MatFile mat((base / "annotation" / "Images.mat").string(), caller);
    auto img = mat.read("Img");
    mat.expect_struct(img.get(), "Img");
    const size_t count = MatFile::numel(img.get());
    data.images.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      const std::string entry = fmt::format("Img({})", i + 1);
      ImageRecord record;
      record.name = mat.string(mat.field(img.get(), "imname", i, "Img"), entry + ".imname");
      TRIDENT_CHECK(!record.name.empty(), "{}: '{}': {}.imname is empty", caller, mat.path(), entry);
      TRIDENT_CHECK(!index_of.count(record.name), "{}: '{}': {}.imname '{}' appears twice", caller, mat.path(), entry,
                    record.name);
      record.path = (base / "Image" / "SSM" / record.name).string();
      TRIDENT_CHECK(!options.check_images || fs::is_regular_file(record.path),
                    "{}: '{}': the picture of {}.imname '{}' does not exist: '{}'", caller, mat.path(), entry,
                    record.name, record.path);
      std::vector<std::array<double, 4>> rows;
      TRIDENT_CHECK(MatFile::has_field(img.get(), "box") || MatFile::has_field(img.get(), "idlocate"),
                    "{}: '{}': Img has neither a field 'box' nor 'idlocate'", caller, mat.path());
      const std::string field = MatFile::has_field(img.get(), "box") ? "box" : "idlocate";
      const std::string what = entry + "." + field;
      matvar_t* boxes = mat.field(img.get(), field, i, "Img");
      if (boxes != nullptr && boxes->class_type == MAT_C_STRUCT) {  // box(j).idlocate, 1 x 4 each
        for (size_t j = 0; j < MatFile::numel(boxes); ++j)
          rows.push_back(detail::single_box(mat, mat.field(boxes, "idlocate", j, what),
                                            fmt::format("{}({}).idlocate", what, j + 1)));
      } else {  // n x 4
        const MatMatrix m = mat.matrix(boxes, what);
        TRIDENT_CHECK(m.empty() || (m.cols == 4 && boxes->rank == 2), "{}: '{}': {} must be n x 4 (x, y, w, h), got {}",
                      caller, mat.path(), what, MatFile::dims_of(boxes));
        for (size_t r = 0; r < m.rows; ++r) rows.push_back({m.at(r, 0), m.at(r, 1), m.at(r, 2), m.at(r, 3)});
      }
      std::vector<float> flat;
      std::vector<detail::IntegerBox> kept;
      for (size_t r = 0; r < rows.size(); ++r) {
        const auto [x, y, w, h] = rows[r];
        if (!(w > 0 && h > 0)) {
          ++data.report.dropped_boxes;
          note(fmt::format("{}: '{}': dropped box {} of {} ('{}'): width {} height {}", caller, mat.path(), r + 1,
                           entry, record.name, w, h));
          continue;
        }
        TRIDENT_CHECK(detail::integer_box_ok(x, y, w, h),
                      "{}: '{}': box {} of {} ('{}') is [{}, {}, {}, {}], expected finite pixel coordinates", caller,
                      mat.path(), r + 1, what, record.name, x, y, w, h);
        flat.insert(flat.end(), {float(x), float(y), float(x + w), float(y + h)});
        kept.push_back(detail::integer_box(x, y, w, h));
      }
      pids.emplace_back(kept.size(), unlabeled_identity);
      raw_boxes.push_back(std::move(kept));
      record.boxes = at::tensor(flat, at::kFloat).view({static_cast<int64_t>(raw_boxes.back().size()), 4});
      index_of.emplace(record.name, static_cast<int64_t>(data.images.size()));
      data.images.push_back(std::move(record));
    }
  }

  // pool.mat: pool{k} = the name of a test image.
  std::vector<bool> is_test(data.images.size(), false);
  {
    MatFile mat((base / "annotation" / "pool.mat").string(), caller);
    auto pool = mat.read("pool");
    mat.expect_cell(pool.get(), "pool");
    for (size_t k = 0; k < MatFile::numel(pool.get()); ++k) {
      const std::string what = fmt::format("pool{{{}}}", k + 1);
      const std::string name = mat.string(mat.cell(pool.get(), k, "pool"), what);
      const auto it = index_of.find(name);
      TRIDENT_CHECK(it != index_of.end(), "{}: '{}': {} names '{}', which is not in Images.mat", caller, mat.path(),
                    what, name);
      is_test[static_cast<size_t>(it->second)] = true;
    }
  }
  for (size_t i = 0; i < data.images.size(); ++i) (is_test[i] ? data.test : data.train).push_back(int64_t(i));

  // Gives `pid` to the box of image `image` equal to `box` (compared as integers); counts a miss.
  const auto assign = [&](int64_t image, const std::array<double, 4>& box, int64_t pid, const std::string& file,
                          const std::string& what) {
    TRIDENT_CHECK(detail::integer_box_ok(box[0], box[1], box[2], box[3]),
                  "{}: '{}': {} is [{}, {}, {}, {}], expected finite pixel coordinates", caller, file, what, box[0],
                  box[1], box[2], box[3]);
    const auto key = detail::integer_box(box[0], box[1], box[2], box[3]);
    auto& boxes = raw_boxes[static_cast<size_t>(image)];
    for (size_t b = 0; b < boxes.size(); ++b)
      if (boxes[b] == key) {
        pids[static_cast<size_t>(image)][b] = pid;
        return;
      }
    ++data.report.unmatched_boxes;
    note(fmt::format("{}: '{}': {} ({}, {}, {}, {}) matches no box of '{}' in Images.mat", caller, file, what, box[0],
                     box[1], box[2], box[3], data.images[static_cast<size_t>(image)].name));
  };
  const auto image_named = [&](const MatFile& mat, const std::string& name, const std::string& what) {
    const auto it = index_of.find(name);
    TRIDENT_CHECK(it != index_of.end(), "{}: '{}': {} names '{}', which is not in Images.mat", caller, mat.path(),
                  what, name);
    return it->second;
  };

  // Train.mat: Train{k}.scene(s).imname / .idlocate; pid = k - 1.
  {
    MatFile mat((base / "annotation" / "test" / "train_test" / "Train.mat").string(), caller);
    auto train = mat.read("Train");
    mat.expect_cell(train.get(), "Train");
    data.num_train_ids = static_cast<int64_t>(MatFile::numel(train.get()));
    for (size_t k = 0; k < MatFile::numel(train.get()); ++k) {
      const std::string person = fmt::format("Train{{{}}}", k + 1);
      matvar_t* item = mat.cell(train.get(), k, "Train");
      matvar_t* scenes = mat.field(item, "scene", 0, person);
      mat.expect_struct(scenes, person + ".scene");
      for (size_t s = 0; s < MatFile::numel(scenes); ++s) {
        const std::string where = fmt::format("{}.scene({})", person, s + 1);
        const std::string name = mat.string(mat.field(scenes, "imname", s, person + ".scene"), where + ".imname");
        const int64_t image = image_named(mat, name, where + ".imname");
        TRIDENT_CHECK(!is_test[static_cast<size_t>(image)], "{}: '{}': {}.imname '{}' is a test image (in pool.mat)",
                      caller, mat.path(), where, name);
        const auto box = detail::single_box(mat, mat.field(scenes, "idlocate", s, person + ".scene"),
                                            where + ".idlocate");
        assign(image, box, static_cast<int64_t>(k), mat.path(), where + ".idlocate");
      }
    }
  }

  // TestG<size>.mat: TestG<size>(q).Query.imname / .idlocate, TestG<size>(q).Gallery(j).imname / .idlocate
  // (a subset file: the same structure under its own variable name).
  {
    const auto protocol = cuhk_sysu_protocol_file(root, options);
    const std::string& var_name = protocol.variable;
    MatFile mat(protocol.path.string(), caller);
    auto test = mat.read(var_name);
    mat.expect_struct(test.get(), var_name);
    for (size_t q = 0; q < MatFile::numel(test.get()); ++q) {
      const std::string entry = fmt::format("{}({})", var_name, q + 1);
      const auto pid = static_cast<int64_t>(q);
      matvar_t* query_var = mat.field(test.get(), "Query", q, var_name);
      mat.expect_struct(query_var, entry + ".Query");
      Query query;
      query.pid = pid;
      const std::string name = mat.string(mat.field(query_var, "imname", 0, entry + ".Query"), entry + ".Query.imname");
      query.image = image_named(mat, name, entry + ".Query.imname");
      const auto qbox = detail::single_box(mat, mat.field(query_var, "idlocate", 0, entry + ".Query"),
                                           entry + ".Query.idlocate");
      TRIDENT_CHECK(qbox[2] > 0 && qbox[3] > 0, "{}: '{}': {}.Query.idlocate has width {} and height {}", caller,
                    mat.path(), entry, qbox[2], qbox[3]);
      query.box = {float(qbox[0]), float(qbox[1]), float(qbox[0] + qbox[2]), float(qbox[1] + qbox[3])};
      assign(query.image, qbox, pid, mat.path(), entry + ".Query.idlocate");

      matvar_t* gallery = mat.field(test.get(), "Gallery", q, var_name);
      mat.expect_struct(gallery, entry + ".Gallery");
      for (size_t j = 0; j < MatFile::numel(gallery); ++j) {
        const std::string where = fmt::format("{}.Gallery({})", entry, j + 1);
        GalleryItem item;
        const std::string gname = mat.string(mat.field(gallery, "imname", j, entry + ".Gallery"), where + ".imname");
        item.image = image_named(mat, gname, where + ".imname");
        const matvar_t* loc = mat.field(gallery, "idlocate", j, entry + ".Gallery");
        const MatMatrix m = mat.matrix(loc, where + ".idlocate");
        const bool absent = m.empty() || (m.values.size() == 4 && m.values[0] == 0 && m.values[1] == 0 &&
                                          m.values[2] == 0 && m.values[3] == 0);
        if (!absent) {
          const auto box = detail::single_box(mat, loc, where + ".idlocate");
          item.box = Box{float(box[0]), float(box[1]), float(box[0] + box[2]), float(box[1] + box[3])};
          assign(item.image, box, pid, mat.path(), where + ".idlocate");
        }
        query.gallery.push_back(item);
      }
      data.queries.push_back(std::move(query));
    }
  }

  for (size_t i = 0; i < data.images.size(); ++i)
    data.images[i].pids = at::tensor(pids[i], at::kLong).view({static_cast<int64_t>(pids[i].size())});
  return data;
}

}  // namespace trident::data
