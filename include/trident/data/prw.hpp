#pragma once
/// \file trident/data/prw.hpp
/// Reads PRW as distributed (the layout is in docs/datasets.md):
///   frames/<frame>.jpg                 the pictures
///   annotations/<frame>.jpg.mat        box_new, anno_file or anno_previous: n x 5 rows (pid, x, y, w, h)
///   frame_train.mat / frame_test.mat   img_index_train / img_index_test: cells of frame names (no ".jpg")
///   query_info.txt                     one query per line: pid x y w h frame
/// Part of trident::mat (matio).
#include <trident/config.hpp>
#include <trident/data/dataset.hpp>
#include <trident/data/mat_file.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace trident::data {

struct PrwOptions {
  /// Check that every frame's picture exists (an error names the missing one).
  bool check_images = true;
  /// Receives a line for each dropped box.
  LogCallback log;
};

/// PRW's raw identity for a person without one.
inline constexpr int64_t prw_unlabeled_pid = -2;

/// The camera of a PRW frame name: the number after the first 'c' followed by a digit ("c3s2_012345" -> 3).
inline int64_t prw_camera(const std::string& frame) {
  for (size_t i = 0; i + 1 < frame.size(); ++i) {
    if (frame[i] != 'c' || !std::isdigit(static_cast<unsigned char>(frame[i + 1]))) continue;
    int64_t camera = 0;
    for (size_t j = i + 1; j < frame.size() && std::isdigit(static_cast<unsigned char>(frame[j])); ++j)
      camera = camera * 10 + (frame[j] - '0');
    return camera;
  }
  trident::fail("trident::data::prw_camera: the frame name '{}' has no camera (c<digits>)", frame);
}

/// Reads PRW from `root`. Training pids are renumbered 0, 1, ... in order of first appearance (frames in
/// frame_train.mat order, rows in file order; 482 identities on the full dataset = the look-up table's rows);
/// test pids are PRW's raw ids, as query_info.txt gives them; raw pid -2 becomes unlabeled_identity.
/// x, y, w, h are each clipped at 0 (some are negative), then boxes with a non-positive width or height are
/// dropped and counted in report.dropped_boxes. Queries have no gallery list: the whole test split is searched.
inline Dataset read_prw(const std::string& root, const PrwOptions& options = {}) {
  static constexpr const char* caller = "trident::data::read_prw";
  namespace fs = std::filesystem;
  const fs::path base(root);
  Dataset data;
  data.name = "PRW";
  data.root = root;
  std::unordered_map<std::string, int64_t> index_of;  // frame name without ".jpg"
  detail::TrainIdentities train_id;                   // raw pid -> 0-based training identity

  for (const bool training : {true, false}) {
    const std::string file = training ? "frame_train.mat" : "frame_test.mat";
    const std::string variable = training ? "img_index_train" : "img_index_test";
    std::vector<std::string> frames;
    {
      MatFile mat((base / file).string(), caller);
      auto list = mat.read(variable);
      mat.expect_cell(list.get(), variable);
      for (size_t k = 0; k < MatFile::numel(list.get()); ++k)
        frames.push_back(
            mat.string(mat.cell(list.get(), k, variable), fmt::format("{}{{{}}}", variable, k + 1)));
    }
    for (size_t k = 0; k < frames.size(); ++k) {
      const std::string& frame = frames[k];
      TRIDENT_CHECK(!index_of.count(frame), "{}: '{}': {}{{{}}} = '{}' is listed twice (in frame_train.mat or "
                    "frame_test.mat)", caller, (base / file).string(), variable, k + 1, frame);
      ImageRecord record;
      record.name = frame + ".jpg";
      record.path = (base / "frames" / record.name).string();
      TRIDENT_CHECK(!options.check_images || fs::is_regular_file(record.path),
                    "{}: '{}': the picture of {}{{{}}} = '{}' does not exist: '{}'", caller, (base / file).string(),
                    variable, k + 1, frame, record.path);
      record.camera = prw_camera(frame);

      MatFile mat((base / "annotations" / (record.name + ".mat")).string(), caller);
      std::string box_key;
      for (const char* key : {"box_new", "anno_file", "anno_previous"})
        if (box_key.empty() && mat.has(key)) box_key = key;
      TRIDENT_CHECK(!box_key.empty(), "{}: '{}' has no variable 'box_new', 'anno_file' or 'anno_previous'", caller,
                    mat.path());
      auto var = mat.read(box_key);
      const MatMatrix m = mat.matrix(var.get(), box_key);
      TRIDENT_CHECK(m.empty() || (m.cols == 5 && var->rank == 2),
                    "{}: '{}': {} must be n x 5 (pid, x, y, w, h), got {}", caller, mat.path(), box_key,
                    MatFile::dims_of(var.get()));
      std::vector<float> boxes;
      std::vector<int64_t> pids;
      for (size_t r = 0; r < m.rows; ++r) {
        const double raw = m.at(r, 0);
        // Range first: converting a NaN or a value beyond int64_t's range is undefined (found by fuzz/prw.cpp).
        TRIDENT_CHECK(std::fabs(raw) <= 9007199254740992.0 && raw == std::floor(raw) &&
                          (raw >= 0 || raw == prw_unlabeled_pid),
                      "{}: '{}': {} row {} has the pid {}, expected an id >= 0 or -2 (unlabeled)", caller, mat.path(),
                      box_key, r + 1, raw);
        const double x = std::max(m.at(r, 1), 0.0), y = std::max(m.at(r, 2), 0.0);
        const double w = std::max(m.at(r, 3), 0.0), h = std::max(m.at(r, 4), 0.0);
        if (!(w > 0 && h > 0)) {
          ++data.report.dropped_boxes;
          if (options.log)
            options.log(fmt::format("{}: '{}': dropped {} row {}: width {} height {}", caller, mat.path(), box_key,
                                    r + 1, w, h));
          continue;
        }
        int64_t pid = unlabeled_identity;
        if (raw >= 0) {
          pid = static_cast<int64_t>(raw);
          if (training) pid = train_id(pid);
        }
        boxes.insert(boxes.end(), {float(x), float(y), float(x + w), float(y + h)});
        pids.push_back(pid);
      }
      detail::set_boxes(record, boxes, pids);
      const auto index = static_cast<int64_t>(data.images.size());
      index_of.emplace(frame, index);
      (training ? data.train : data.test).push_back(index);
      data.images.push_back(std::move(record));
    }
  }
  data.num_train_ids = train_id.size();

  // query_info.txt: "pid x y w h frame" per line (CRLF or LF).
  const std::string query_path = (base / "query_info.txt").string();
  TRIDENT_CHECK(fs::is_regular_file(query_path), "{}: the file '{}' does not exist", caller, query_path);
  std::ifstream in(query_path);
  TRIDENT_CHECK(in.good(), "{}: cannot open '{}'", caller, query_path);
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    if (line.empty()) continue;
    std::istringstream fields(line);
    double pid = 0, x = 0, y = 0, w = 0, h = 0;
    std::string frame, rest;
    fields >> pid >> x >> y >> w >> h >> frame;
    TRIDENT_CHECK(!fields.fail() && !(fields >> rest) && pid >= 0 && pid <= 9007199254740992.0 &&
                      pid == std::floor(pid),
                  "{}: '{}': line {} must be 'pid x y w h frame' with an id >= 0, got '{}'", caller, query_path,
                  number, line);
    if (frame.size() > 4 && frame.substr(frame.size() - 4) == ".jpg") frame.resize(frame.size() - 4);
    const auto it = index_of.find(frame);
    TRIDENT_CHECK(it != index_of.end() &&
                      std::find(data.test.begin(), data.test.end(), it->second) != data.test.end(),
                  "{}: '{}': line {} names the frame '{}', which is not in frame_test.mat", caller, query_path, number,
                  frame);
    Query query;
    query.image = it->second;
    query.pid = static_cast<int64_t>(pid);
    query.camera = data.images[static_cast<size_t>(it->second)].camera;
    query.box = {float(std::max(x, 0.0)), float(std::max(y, 0.0)), float(std::max(x + w, 0.0)),
                 float(std::max(y + h, 0.0))};
    TRIDENT_CHECK(query.box[2] > query.box[0] && query.box[3] > query.box[1],
                  "{}: '{}': line {} has an empty box after clipping at 0: '{}'", caller, query_path, number, line);
    data.queries.push_back(std::move(query));
  }
  return data;
}

}  // namespace trident::data
