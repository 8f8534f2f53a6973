#pragma once
/// \file trident/eval/protocol.hpp
/// Scores a results file (SearchOutputs, core/types.hpp) against a dataset (data::Dataset) with the person-search
/// protocols: detection AP / recall over the test images (all people, and labeled people only) and search mAP /
/// top-k.
///
///   * Gallery images are the dataset's test split, matched to the results by file name (ImageRecord::name ==
///     SearchOutputs::gallery_images[i]); their annotations (boxes, identities, camera) are the ground truth.
///     A test image missing from the results is an error naming it; result images outside the test split are
///     ignored (counted in EvaluationTable::ignored_gallery_images).
///   * Queries are matched by (image name, box): each dataset query needs a result query on the same image whose
///     box is the same to within 0.01 pixel; a missing one is an error naming the image and the box. Extra
///     result queries are ignored.
///   * Search. When the dataset's queries carry galleries (CUHK-SYSU's TestG50 ... TestG4000 lists, or a custom
///     dataset's "gallery" lists), evaluate_search runs on them — one row, labelled by the caller (for
///     CUHK-SYSU, read the dataset once per gallery size and call score_search once per size). A query without a
///     gallery then searches the whole test split but its own image. When no query has a gallery (PRW),
///     evaluate_search_prw runs once per ProtocolOptions::camera_galleries: the regular gallery and, if every
///     test image has a camera, the multi-view gallery (the query camera's images left out) and the same-camera
///     gallery (only the query camera's images).
///   * score_search_full_set: every test image but the query's own is the gallery, the query person's boxes
///     taken from the annotations (for CUHK-SYSU: OIM's full-set protocol, read with the TestG50 lists, which
///     name every picture of each test person; see docs/results-format.md for why not SeqNet's gallery_size=-1).
/// format_table prints the result as a text table, to_json as JSON (with every query's result). Part of
/// trident::json (nlohmann_json).

#include <trident/data/dataset.hpp>
#include <trident/eval/detection.hpp>
#include <trident/eval/results_file.hpp>
#include <trident/eval/search.hpp>

#include <nlohmann/json.hpp>

#include <ATen/ops/index_select.h>
#include <ATen/ops/tensor.h>

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

namespace trident::eval {

struct ProtocolOptions {
  DetectionOptions detection;  ///< SeqNet's values (score >= 0.01, IoU >= 0.5); labeled_only is set per row
  SearchOptions search;        ///< SeqNet's values (score >= 0.5, confidence-weighted similarity, top-1/5/10)
  double query_box_tolerance = 0.01;  ///< pixels: how close a result query's box must be to the dataset's
  /// The rows of a dataset whose queries carry no gallery (PRW), in this order; multi-view and same-camera need
  /// cameras.
  struct CameraGalleries {
    bool regular = true, multi_view = true, same_camera = true;
    bool has(PrwGallery kind) const {
      return kind == PrwGallery::regular ? regular : kind == PrwGallery::multi_view ? multi_view : same_camera;
    }
  } camera_galleries;
};

/// One search row of the table: a gallery setting and its metrics.
struct SearchRow {
  std::string setting;  ///< "gallery 100", "regular", "multi-view", ...
  SearchMetrics metrics;
  /// The file name of each gallery image index of metrics (BestMatch::image), and each query's image and box:
  /// what to_json writes per query.
  std::vector<std::string> gallery_names, query_names;
  std::vector<Box> query_boxes;
};

/// Everything the protocol measured on one dataset.
struct EvaluationTable {
  std::string dataset;
  int64_t gallery_images = 0;          ///< test images scored
  int64_t queries = 0;
  int64_t ignored_gallery_images = 0;  ///< result images that are not test images of the dataset
  DetectionMetrics detection;          ///< all annotated people
  DetectionMetrics detection_labeled;  ///< people with an identity only (SeqNet's labeled_only)
  double detection_score_threshold = 0.01;  ///< the detections counted (ProtocolOptions::detection)
  std::vector<SearchRow> search;
};

namespace detail {

/// The results rearranged in the dataset's order: the detections of each test image, and each query's embedding.
struct MatchedOutputs {
  std::vector<GalleryDetections> gallery;          // gallery[i]: detections of dataset.test[i]
  std::vector<ImageAnnotation> annotations; // annotations[i]: ground truth of dataset.test[i]
  at::Tensor query_embeddings;              // row q: dataset.queries[q]
  std::vector<int64_t> query_positions;     // position of each query's image in dataset.test, or -1
  std::unordered_map<int64_t, int64_t> test_position;  // dataset image index -> position in dataset.test
  int64_t ignored_gallery_images = 0;
};

inline MatchedOutputs match_outputs(const data::Dataset& dataset, const SearchOutputs& outputs,
                                    const ProtocolOptions& options, const char* fn) {
  TRIDENT_CHECK(outputs.gallery_images.size() == outputs.gallery.size(), "{}: {} gallery_images but {} gallery entries",
                fn, outputs.gallery_images.size(), outputs.gallery.size());
  std::unordered_map<std::string, size_t> result_of;
  for (size_t i = 0; i < outputs.gallery_images.size(); ++i)
    TRIDENT_CHECK(result_of.emplace(outputs.gallery_images[i], i).second,
                  "{}: the results list gallery image '{}' twice", fn, outputs.gallery_images[i]);

  MatchedOutputs out;
  size_t used = 0;
  for (size_t t = 0; t < dataset.test.size(); ++t) {
    const int64_t index = dataset.test[t];
    TRIDENT_CHECK(index >= 0 && index < static_cast<int64_t>(dataset.images.size()),
                  "{}: dataset.test[{}] = {} is not an image of the dataset", fn, t, index);
    const auto& record = dataset.images[static_cast<size_t>(index)];
    const auto it = result_of.find(record.name);
    TRIDENT_CHECK(it != result_of.end(), "{}: the results have no detections for gallery image '{}' (test image {} "
                  "of {})", fn, record.name, t, dataset.name);
    out.gallery.push_back(outputs.gallery[it->second]);
    ++used;
    ImageAnnotation annotation;
    annotation.boxes = record.boxes.defined() ? record.boxes.to(at::kFloat) : at::empty({0, 4}, at::kFloat);
    if (record.pids.defined())
      for (const double pid : to_doubles(record.pids))
        annotation.person_ids.push_back(pid >= 0 ? static_cast<int64_t>(pid) : unlabeled_identity);
    annotation.camera = record.camera;
    out.annotations.push_back(std::move(annotation));
    out.test_position.emplace(index, static_cast<int64_t>(t));
  }
  out.ignored_gallery_images = static_cast<int64_t>(outputs.gallery.size() - std::min(used, outputs.gallery.size()));

  // Queries: by image name, then the closest box.
  const int64_t num_results = static_cast<int64_t>(outputs.query_images.size());
  TRIDENT_CHECK(outputs.query_embeddings.defined() && outputs.query_embeddings.dim() == 2 &&
                    outputs.query_embeddings.size(0) == num_results,
                "{}: query_embeddings must be [{}, D], got {}", fn, num_results, shape_of(outputs.query_embeddings));
  ops::check_box_shape(outputs.query_boxes, fn, "query_boxes");
  TRIDENT_CHECK(outputs.query_boxes.size(0) == num_results, "{}: query_boxes must be [{}, 4], got {}", fn,
                num_results, shape_of(outputs.query_boxes));
  const auto result_boxes = to_doubles(outputs.query_boxes);
  std::unordered_map<std::string, std::vector<int64_t>> results_on;
  for (int64_t r = 0; r < num_results; ++r) results_on[outputs.query_images[static_cast<size_t>(r)]].push_back(r);
  std::vector<int64_t> rows;
  for (size_t q = 0; q < dataset.queries.size(); ++q) {
    const auto& query = dataset.queries[q];
    TRIDENT_CHECK(query.image >= 0 && query.image < static_cast<int64_t>(dataset.images.size()),
                  "{}: dataset.queries[{}].image = {} is not an image of the dataset", fn, q, query.image);
    const auto& name = dataset.images[static_cast<size_t>(query.image)].name;
    int64_t best = -1;
    double best_distance = options.query_box_tolerance;
    if (const auto it = results_on.find(name); it != results_on.end())
      for (const int64_t r : it->second) {
        double distance = 0;
        for (size_t k = 0; k < 4; ++k)
          distance = std::max(distance, std::abs(result_boxes[static_cast<size_t>(r) * 4 + k] - query.box[k]));
        if (distance <= best_distance) {
          best = r;
          best_distance = distance;
        }
      }
    TRIDENT_CHECK(best >= 0, "{}: the results have no query on image '{}' with box [{}, {}, {}, {}] (query {} of {})",
                  fn, name, query.box[0], query.box[1], query.box[2], query.box[3], q, dataset.name);
    rows.push_back(best);
    const auto position = out.test_position.find(query.image);
    out.query_positions.push_back(position == out.test_position.end() ? -1 : position->second);
  }
  const auto embeddings = outputs.query_embeddings.detach().to(at::kCPU, at::kFloat);
  out.query_embeddings = rows.empty() ? at::empty({0, embeddings.size(1)}, at::kFloat)
                                      : embeddings.index_select(0, at::tensor(rows, at::kLong));
  return out;
}

/// A query's gallery for evaluate_search: its own list, or (empty list) every test image but its own, with the
/// query person's box where the annotations have it.
inline std::vector<GalleryEntry> gallery_entries(const data::Dataset& dataset, const data::Query& query,
                                                 const MatchedOutputs& matched, const char* fn, size_t q,
                                                 bool use_lists = true) {
  std::vector<GalleryEntry> entries;
  if (use_lists && !query.gallery.empty()) {
    for (size_t g = 0; g < query.gallery.size(); ++g) {
      const auto& item = query.gallery[g];
      const auto position = matched.test_position.find(item.image);
      TRIDENT_CHECK(position != matched.test_position.end(),
                    "{}: dataset.queries[{}].gallery[{}] (image {}) is not a test image", fn, q, g, item.image);
      entries.push_back({position->second, item.box});
    }
    return entries;
  }
  for (size_t t = 0; t < dataset.test.size(); ++t) {
    if (dataset.test[t] == query.image) continue;
    GalleryEntry entry{static_cast<int64_t>(t), std::nullopt};
    const auto& annotation = matched.annotations[t];
    const auto boxes = to_doubles(annotation.boxes);
    for (size_t b = 0; b < annotation.person_ids.size() && !entry.target; ++b)
      if (query.pid >= 0 && annotation.person_ids[b] == query.pid)
        entry.target = box_at(boxes, b);
    entries.push_back(entry);
  }
  return entries;
}

}  // namespace detail

namespace detail {

inline std::pair<DetectionMetrics, DetectionMetrics> score_detection(const MatchedOutputs& matched,
                                                                     const ProtocolOptions& options) {
  DetectionOptions all = options.detection, labeled = options.detection;
  all.labeled_only = false;
  labeled.labeled_only = true;
  return {evaluate_detection(matched.annotations, matched.gallery, all),
          evaluate_detection(matched.annotations, matched.gallery, labeled)};
}

/// Every query's box, in the dataset's order.
inline std::vector<Box> query_boxes(const data::Dataset& dataset) {
  std::vector<Box> out;
  for (const auto& query : dataset.queries) out.push_back(query.box);
  return out;
}

/// A row with the names to_json needs ("+CBGM" added to the setting when CBGM re-scored it).
inline SearchRow named_row(std::string setting, SearchMetrics metrics, const data::Dataset& dataset,
                           const ProtocolOptions& options) {
  if (options.search.cbgm) setting += " +CBGM";
  SearchRow row{std::move(setting), std::move(metrics), {}, {}, query_boxes(dataset)};
  for (const int64_t index : dataset.test) row.gallery_names.push_back(dataset.images[static_cast<size_t>(index)].name);
  for (const auto& query : dataset.queries) row.query_names.push_back(dataset.images[static_cast<size_t>(query.image)].name);
  return row;
}

inline std::vector<SearchRow> score_search(const data::Dataset& dataset, const MatchedOutputs& matched,
                                           const ProtocolOptions& options, const std::string& setting,
                                           const char* fn) {
  bool any_gallery = false;
  for (const auto& query : dataset.queries) any_gallery = any_gallery || !query.gallery.empty();
  std::vector<SearchRow> rows;
  if (any_gallery) {
    std::vector<std::vector<GalleryEntry>> galleries;
    for (size_t q = 0; q < dataset.queries.size(); ++q)
      galleries.push_back(gallery_entries(dataset, dataset.queries[q], matched, fn, q));
    rows.push_back(named_row(setting,
                             evaluate_search(matched.query_embeddings, matched.query_positions, matched.gallery,
                                             galleries, options.search, query_boxes(dataset)),
                             dataset, options));
    return rows;
  }
  std::vector<PrwQuery> queries;
  for (size_t q = 0; q < dataset.queries.size(); ++q)
    queries.push_back({matched.query_positions[q], dataset.queries[q].pid, dataset.queries[q].camera,
                       dataset.queries[q].box});
  bool cameras = !matched.annotations.empty();
  for (const auto& annotation : matched.annotations) cameras = cameras && annotation.camera >= 0;
  for (const auto kind : {PrwGallery::regular, PrwGallery::multi_view, PrwGallery::same_camera}) {
    if (!options.camera_galleries.has(kind) || (kind != PrwGallery::regular && !cameras)) continue;
    rows.push_back(named_row(gallery_name(kind),
                             evaluate_search_prw(matched.query_embeddings, queries, matched.annotations,
                                                 matched.gallery, kind, options.search),
                             dataset, options));
  }
  return rows;
}

}  // namespace detail

/// Detection AP / recall of the results on the dataset's test images: {all people, labeled people only}.
inline std::pair<DetectionMetrics, DetectionMetrics> score_detection(const data::Dataset& dataset,
                                                                     const SearchOutputs& outputs,
                                                                     const ProtocolOptions& options = {}) {
  return detail::score_detection(
      detail::match_outputs(dataset, outputs, options, "trident::eval::score_detection"), options);
}

/// The search rows of the results on the dataset (see the file comment). `setting` names the row when the
/// queries carry galleries ("gallery 100"); PRW-style datasets give the rows "regular" and "multi-view".
inline std::vector<SearchRow> score_search(const data::Dataset& dataset, const SearchOutputs& outputs,
                                           const ProtocolOptions& options = {},
                                           const std::string& setting = "given galleries") {
  constexpr const char* fn = "trident::eval::score_search";
  return detail::score_search(dataset, detail::match_outputs(dataset, outputs, options, fn), options, setting, fn);
}

/// The full-set row: every query searches every test image but its own, the query person's boxes taken from the
/// annotations (test-image pids equal to the query's pid), whatever galleries the queries carry. For CUHK-SYSU
/// read with gallery_size 50: its lists name every picture of each test person (OIM's "full set" protocol).
inline SearchRow score_search_full_set(const data::Dataset& dataset, const SearchOutputs& outputs,
                                       const ProtocolOptions& options = {}, const std::string& setting = "full set") {
  constexpr const char* fn = "trident::eval::score_search_full_set";
  const auto matched = detail::match_outputs(dataset, outputs, options, fn);
  std::vector<std::vector<GalleryEntry>> galleries;
  for (size_t q = 0; q < dataset.queries.size(); ++q)
    galleries.push_back(detail::gallery_entries(dataset, dataset.queries[q], matched, fn, q, /*use_lists=*/false));
  return detail::named_row(setting,
                           evaluate_search(matched.query_embeddings, matched.query_positions, matched.gallery,
                                           galleries, options.search, detail::query_boxes(dataset)),
                           dataset, options);
}

namespace detail {

/// The table without search rows: what was scored and the detection rows.
inline EvaluationTable detection_table(const data::Dataset& dataset, const MatchedOutputs& matched,
                                       const ProtocolOptions& options) {
  EvaluationTable table;
  table.dataset = dataset.name;
  table.gallery_images = static_cast<int64_t>(dataset.test.size());
  table.queries = static_cast<int64_t>(dataset.queries.size());
  table.ignored_gallery_images = matched.ignored_gallery_images;
  std::tie(table.detection, table.detection_labeled) = detail::score_detection(matched, options);
  table.detection_score_threshold = options.detection.score_threshold;
  return table;
}

}  // namespace detail

/// The table of the results on the dataset without search rows (the detection rows only), for a caller that adds
/// its own rows (score_search, score_search_full_set).
inline EvaluationTable score_detection_table(const data::Dataset& dataset, const SearchOutputs& outputs,
                                             const ProtocolOptions& options = {}) {
  return detail::detection_table(
      dataset, detail::match_outputs(dataset, outputs, options, "trident::eval::score_detection_table"), options);
}

/// Detection and search of the results on the dataset, in one table.
inline EvaluationTable score_search_outputs(const data::Dataset& dataset, const SearchOutputs& outputs,
                                            const ProtocolOptions& options = {},
                                            const std::string& setting = "given galleries") {
  constexpr const char* fn = "trident::eval::score_search_outputs";
  const auto matched = detail::match_outputs(dataset, outputs, options, fn);
  auto table = detail::detection_table(dataset, matched, options);
  table.search = detail::score_search(dataset, matched, options, setting, fn);
  return table;
}

/// The table as text: detection AP / recall, then one line per search setting (percentages).
inline std::string format_table(const EvaluationTable& table) {
  std::string out = fmt::format("{}: {} gallery images, {} queries", table.dataset, table.gallery_images, table.queries);
  if (table.ignored_gallery_images > 0)
    out += fmt::format(" ({} result images outside the test split ignored)", table.ignored_gallery_images);
  out += "\n\n";
  out += fmt::format("{:<18}{:>9}{:>9}{:>8}{:>8}   (score >= {})\n", "detection", "AP", "recall", "TP", "GT",
                     table.detection_score_threshold);
  const auto detection_line = [&](const char* name, const DetectionMetrics& m) {
    out += fmt::format("{:<18}{:>8.2f}%{:>8.2f}%{:>8}{:>8}\n", name, 100 * m.average_precision, 100 * m.recall,
                       m.true_positives, m.ground_truths);
  };
  detection_line("  all people", table.detection);
  detection_line("  labeled only", table.detection_labeled);
  if (table.search.empty()) return out;
  size_t width = 18;  // the settings' column: wider for long names ("low-resolution +CBGM")
  for (const auto& row : table.search) width = std::max(width, row.setting.size() + 3);
  out += fmt::format("\n{:<{}}{:>9}", "search", width, "mAP");
  for (const int64_t k : table.search.front().metrics.top_k) out += fmt::format("{:>9}", fmt::format("top-{}", k));
  out += fmt::format("{:>9}\n", "queries");
  for (const auto& row : table.search) {
    out += fmt::format("{:<{}}{:>8.2f}%", "  " + row.setting, width, 100 * row.metrics.mean_average_precision);
    for (const double a : row.metrics.top_k_accuracy) out += fmt::format("{:>8.2f}%", 100 * a);
    const auto counted = static_cast<int64_t>(row.metrics.queries.size()) - row.metrics.queries_without_ground_truth;
    out += fmt::format("{:>9}", counted);
    if (row.metrics.queries_without_ground_truth > 0)
      out += fmt::format("  ({} without the person in their gallery, left out)", row.metrics.queries_without_ground_truth);
    out += "\n";
  }
  return out;
}

/// The table as JSON (fractions in [0, 1], not percentages):
///   {"dataset", "gallery_images", "queries", "ignored_gallery_images",
///    "detection": {"score_threshold", "all": {"ap", "recall", "true_positives", "ground_truths", "detections"},
///                  "labeled": {...}},
///    "search": [{"setting", "mAP", "top_k": {"1": ..., "5": ..., "10": ...}, "queries",
///                "queries_without_ground_truth", "per_query": [...]}, ...]}
/// With `per_query`, each row lists every query in the dataset's order (docs/results-format.md):
///   {"query", "image", "box", "ap", "recall", "ground_truths", "true_positives", "first_match_rank" (1-based, 0:
///    none), "top_k": {"1": true, ...}, "best_match": {"image", "box", "score", "similarity", "correct"} or null}.
inline nlohmann::json to_json(const EvaluationTable& table, bool per_query = true) {
  const auto detection = [](const DetectionMetrics& m) {
    return nlohmann::json{{"ap", m.average_precision}, {"recall", m.recall}, {"true_positives", m.true_positives},
                          {"ground_truths", m.ground_truths}, {"detections", m.detections}};
  };
  const auto box = [](const Box& b) { return nlohmann::json::array({b[0], b[1], b[2], b[3]}); };
  nlohmann::json out{{"dataset", table.dataset},
                     {"gallery_images", table.gallery_images},
                     {"queries", table.queries},
                     {"ignored_gallery_images", table.ignored_gallery_images},
                     {"detection", {{"score_threshold", table.detection_score_threshold},
                                    {"all", detection(table.detection)},
                                    {"labeled", detection(table.detection_labeled)}}}};
  auto search = nlohmann::json::array();
  for (const auto& row : table.search) {
    nlohmann::json top_k = nlohmann::json::object();
    for (size_t k = 0; k < row.metrics.top_k.size(); ++k)
      top_k[std::to_string(row.metrics.top_k[k])] = row.metrics.top_k_accuracy[k];
    nlohmann::json entry{{"setting", row.setting},
                         {"mAP", row.metrics.mean_average_precision},
                         {"top_k", std::move(top_k)},
                         {"queries", static_cast<int64_t>(row.metrics.queries.size())},
                         {"queries_without_ground_truth", row.metrics.queries_without_ground_truth}};
    if (per_query) {
      auto queries = nlohmann::json::array();
      for (size_t q = 0; q < row.metrics.queries.size(); ++q) {
        const auto& m = row.metrics.queries[q];
        nlohmann::json hits = nlohmann::json::object();
        for (size_t k = 0; k < row.metrics.top_k.size() && k < m.top_k_hit.size(); ++k)
          hits[std::to_string(row.metrics.top_k[k])] = static_cast<bool>(m.top_k_hit[k]);
        nlohmann::json best = nullptr;
        if (m.best) {
          const auto image = static_cast<size_t>(m.best->image);
          best = {{"image", image < row.gallery_names.size() ? row.gallery_names[image] : std::to_string(image)},
                  {"box", box(m.best->box)},
                  {"score", m.best->score},
                  {"similarity", m.best->similarity},
                  {"correct", m.best->correct}};
        }
        nlohmann::json item{{"query", static_cast<int64_t>(q)},
                            {"ap", m.average_precision},
                            {"recall", m.recall},
                            {"ground_truths", m.ground_truths},
                            {"true_positives", m.true_positives},
                            {"first_match_rank", m.first_match_rank},
                            {"top_k", std::move(hits)},
                            {"best_match", std::move(best)}};
        if (q < row.query_names.size()) item["image"] = row.query_names[q];
        if (q < row.query_boxes.size()) item["box"] = box(row.query_boxes[q]);
        queries.push_back(std::move(item));
      }
      entry["per_query"] = std::move(queries);
    }
    search.push_back(std::move(entry));
  }
  out["search"] = std::move(search);
  return out;
}

}  // namespace trident::eval
