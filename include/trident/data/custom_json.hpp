#pragma once
/// \file trident/data/custom_json.hpp
/// Reads a user's own person-search data from one JSON file (the format is in docs/datasets.md, "Your own data"):
///   {"images":  [{"file": "cam1/0001.jpg", "camera": 1, "split": "train",
///                 "boxes": [[x, y, w, h], ...], "pids": [3, null, ...]}, ...],
///    "train": [...], "test": [...],                       (image files; or a "split" field per image)
///    "queries": [{"image": "cam2/0007.jpg", "box": [x, y, w, h], "pid": 3, "gallery": [...]}, ...]}
/// Image files are relative to the JSON file's folder. Part of trident::json (nlohmann_json).
#include <trident/config.hpp>
#include <trident/data/dataset.hpp>

#include <trident/io/json_reader.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace trident::data {

struct CustomJsonOptions {
  /// Check that every image file exists (an error names the missing one).
  bool check_images = true;
  /// Receives a line for each dropped box.
  LogCallback log;
};

namespace detail {

/// Reads the values of a custom dataset file; errors name the reader, the file and the JSON path of the entry
/// ("images[3].boxes[1]").
struct CustomJsonReader : io::JsonReader {
  static constexpr const char* fn = "trident::data::read_custom_json";
  explicit CustomJsonReader(std::string file) : io::JsonReader(fn, std::move(file)) {}

  /// An integer >= 0; `what` names it ("an identity").
  int64_t natural(const nlohmann::json& v, const std::string& where, const char* what) const {
    TRIDENT_CHECK(v.is_number_integer() && v.get<int64_t>() >= 0, "{}: '{}': {} must be {} (an integer >= 0), got {}",
                  fn, path, where, what, v.dump());
    return v.get<int64_t>();
  }
  /// x, y, w, h -> x1, y1, x2, y2 (not checked for a positive size).
  Box box(const nlohmann::json& v, const std::string& where) const {
    TRIDENT_CHECK(v.is_array(), "{}: '{}': {} must be an array of 4 numbers (x, y, w, h), got {}", fn, path, where,
                  v.type_name());
    TRIDENT_CHECK(v.size() == 4, "{}: '{}': {} has {} numbers, expected 4 (x, y, w, h)", fn, path, where, v.size());
    std::array<double, 4> b{};
    for (size_t i = 0; i < 4; ++i) {
      TRIDENT_CHECK(v[i].is_number(), "{}: '{}': {}[{}] must be a number, got {}", fn, path, where, i, v[i].dump());
      b[i] = v[i].get<double>();
    }
    return {float(b[0]), float(b[1]), float(b[0] + b[2]), float(b[1] + b[3])};
  }
};

}  // namespace detail

/// Reads a dataset described by the JSON file `path` (docs/datasets.md, "Your own data"). Images keep the file
/// order; `train` and `test` list them in that order. Training pids are renumbered 0, 1, ... in order of first
/// appearance (images in file order, boxes in order); test pids are kept as written; null -> unlabeled_identity.
/// Boxes with a non-positive width or height are dropped and counted in report.dropped_boxes. A query's gallery
/// is its "gallery" list (each item carries the box of the query's pid in that image, if any) or, without one,
/// empty: the whole test split but the query image.
inline Dataset read_custom_json(const std::string& path, const CustomJsonOptions& options = {}) {
  namespace fs = std::filesystem;
  const detail::CustomJsonReader r{path};
  constexpr const char* fn = detail::CustomJsonReader::fn;
  TRIDENT_CHECK(fs::is_regular_file(path), "{}: the file '{}' does not exist", fn, path);
  const nlohmann::json root = r.parse();
  const fs::path base = fs::path(path).parent_path();

  Dataset data;
  data.name = r.optional_string(root, "name", "the file").value_or(fs::path(path).stem().string());
  data.root = base.string();
  std::unordered_map<std::string, int64_t> index_of;
  std::vector<std::string> split_of;  // "train", "test" or "" (not said yet)

  const auto& images = r.array(root, "images", "the file");
  for (size_t i = 0; i < images.size(); ++i) {
    const auto where = fmt::format("images[{}]", i);
    ImageRecord record;
    record.name = r.string(images[i], "file", where);
    TRIDENT_CHECK(!record.name.empty(), "{}: '{}': {}.file is empty", fn, path, where);
    TRIDENT_CHECK(!index_of.count(record.name), "{}: '{}': {}.file '{}' appears twice", fn, path, where, record.name);
    record.path = (base / record.name).string();
    TRIDENT_CHECK(!options.check_images || fs::is_regular_file(record.path),
                  "{}: '{}': the picture of {}.file '{}' does not exist: '{}'", fn, path, where, record.name,
                  record.path);
    if (const auto* v = r.find(images[i], "camera", where))
      record.camera = r.natural(*v, where + ".camera", "a camera id");
    if (const auto* v = r.find(images[i], "width", where))
      record.width = r.natural(*v, where + ".width", "a width in pixels");
    if (const auto* v = r.find(images[i], "height", where))
      record.height = r.natural(*v, where + ".height", "a height in pixels");
    const auto split = r.optional_string(images[i], "split", where).value_or("");
    TRIDENT_CHECK(split.empty() || split == "train" || split == "test",
                  "{}: '{}': {}.split must be \"train\" or \"test\", got \"{}\"", fn, path, where, split);
    index_of.emplace(record.name, static_cast<int64_t>(data.images.size()));
    split_of.push_back(split);
    data.images.push_back(std::move(record));
  }

  // The top-level lists "train" and "test" (file names), checked against the per-image "split" fields.
  for (const char* list : {"train", "test"}) {
    const auto* names = r.optional_array(root, list, "the file");
    if (names == nullptr) continue;
    for (size_t k = 0; k < names->size(); ++k) {
      const auto where = fmt::format("{}[{}]", list, k);
      const auto& v = (*names)[k];
      TRIDENT_CHECK(v.is_string(), "{}: '{}': {} must be an image file (a string), got {}", fn, path, where,
                    v.dump());
      const auto it = index_of.find(v.get<std::string>());
      TRIDENT_CHECK(it != index_of.end(), "{}: '{}': {} names '{}', which is not in images", fn, path, where,
                    v.get<std::string>());
      auto& split = split_of[static_cast<size_t>(it->second)];
      TRIDENT_CHECK(split.empty() || split == list, "{}: '{}': {} names '{}', which is already a {} image", fn, path,
                    where, v.get<std::string>(), split);
      split = list;
    }
  }
  for (size_t i = 0; i < data.images.size(); ++i) {
    TRIDENT_CHECK(!split_of[i].empty(),
                  "{}: '{}': images[{}] ('{}') is in no split: give it \"split\" or list it in \"train\" or \"test\"",
                  fn, path, i, data.images[i].name);
    (split_of[i] == "train" ? data.train : data.test).push_back(static_cast<int64_t>(i));
  }

  // Boxes and pids, train images renumbering their identities in order of first appearance.
  detail::TrainIdentities train_id;
  for (size_t i = 0; i < data.images.size(); ++i) {
    const auto where = fmt::format("images[{}]", i);
    const bool training = split_of[i] == "train";
    const auto* boxes = r.optional_array(images[i], "boxes", where);
    const auto* pids = r.optional_array(images[i], "pids", where);
    const size_t n = boxes == nullptr ? 0 : boxes->size();
    TRIDENT_CHECK(pids == nullptr || pids->size() == n, "{}: '{}': {} has {} boxes but {} pids", fn, path, where, n,
                  pids == nullptr ? 0 : pids->size());
    std::vector<float> flat;
    std::vector<int64_t> kept_pids;
    for (size_t j = 0; j < n; ++j) {
      const auto bwhere = fmt::format("{}.boxes[{}]", where, j);
      const Box box = r.box((*boxes)[j], bwhere);
      int64_t pid = unlabeled_identity;
      if (pids != nullptr && !(*pids)[j].is_null())
        pid = r.natural((*pids)[j], fmt::format("{}.pids[{}]", where, j), "an identity or null");
      if (!(box[2] > box[0] && box[3] > box[1])) {
        ++data.report.dropped_boxes;
        if (options.log)
          options.log(fmt::format("{}: '{}': dropped {} ('{}'): width {} height {}", fn, path, bwhere,
                                  data.images[i].name, box[2] - box[0], box[3] - box[1]));
        continue;
      }
      if (training && pid != unlabeled_identity) pid = train_id(pid);
      flat.insert(flat.end(), box.begin(), box.end());
      kept_pids.push_back(pid);
    }
    detail::set_boxes(data.images[i], flat, kept_pids);
  }
  data.num_train_ids = train_id.size();

  // Queries: a test image, a box with a positive size, a test identity and optionally the gallery images.
  const auto test_image = [&](const nlohmann::json& v, const std::string& where) {
    TRIDENT_CHECK(v.is_string(), "{}: '{}': {} must be an image file (a string), got {}", fn, path, where, v.dump());
    const auto it = index_of.find(v.get<std::string>());
    TRIDENT_CHECK(it != index_of.end() && split_of[static_cast<size_t>(it->second)] == "test",
                  "{}: '{}': {} names '{}', which is not a test image", fn, path, where, v.get<std::string>());
    return it->second;
  };
  if (const auto* queries = r.optional_array(root, "queries", "the file")) {
    for (size_t q = 0; q < queries->size(); ++q) {
      const auto where = fmt::format("queries[{}]", q);
      const auto& entry = (*queries)[q];
      Query query;
      query.image = test_image(r.field(entry, "image", where), where + ".image");
      query.camera = data.images[static_cast<size_t>(query.image)].camera;
      query.box = r.box(r.field(entry, "box", where), where + ".box");
      TRIDENT_CHECK(query.box[2] > query.box[0] && query.box[3] > query.box[1],
                    "{}: '{}': {}.box has width {} and height {}, expected both > 0", fn, path, where,
                    query.box[2] - query.box[0], query.box[3] - query.box[1]);
      query.pid = r.natural(r.field(entry, "pid", where), where + ".pid", "an identity");
      if (const auto* gallery = r.optional_array(entry, "gallery", where)) {
        for (size_t j = 0; j < gallery->size(); ++j) {
          const auto gwhere = fmt::format("{}.gallery[{}]", where, j);
          GalleryItem item;
          item.image = test_image((*gallery)[j], gwhere);
          TRIDENT_CHECK(item.image != query.image, "{}: '{}': {} is the query's own image '{}'", fn, path, gwhere,
                        data.images[static_cast<size_t>(item.image)].name);
          const auto& image = data.images[static_cast<size_t>(item.image)];
          const auto* pid = image.pids.data_ptr<int64_t>();
          const auto* box = image.boxes.data_ptr<float>();
          for (int64_t b = 0; b < image.pids.numel() && !item.box; ++b)
            if (pid[b] == query.pid) item.box = Box{box[4 * b], box[4 * b + 1], box[4 * b + 2], box[4 * b + 3]};
          query.gallery.push_back(item);
        }
      }
      data.queries.push_back(std::move(query));
    }
  }
  return data;
}

}  // namespace trident::data
