#pragma once
/// \file trident/eval/results_file.hpp
/// Reads and writes a model's outputs on a test set — every gallery image's detections (box, score, embedding)
/// and every query's embedding — as JSON, so that evaluation can run apart from inference and on other
/// methods' outputs. The format is described in docs/results-format.md. Part of trident::io (needs
/// nlohmann_json, Debian package nlohmann-json3-dev).

#include <trident/eval/types.hpp>

#include <trident/io/json_reader.hpp>

#include <nlohmann/json.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace trident::eval {

/// A model's outputs on a test set.
struct SearchOutputs {
  std::vector<std::string> gallery_images;  ///< image file names, one per gallery image
  std::vector<Detections> gallery;          ///< detections of each gallery image (embeddings required)
  std::vector<std::string> query_images;    ///< the image of each query
  at::Tensor query_boxes;                   ///< [Q, 4] xyxy ground-truth box of each query
  at::Tensor query_embeddings;              ///< [Q, D]
};

inline constexpr std::string_view results_format_name = "trident-search-results";
inline constexpr int64_t results_format_version = 1;

namespace detail {

inline nlohmann::json rows_to_json(const at::Tensor& t, int64_t rows, int64_t cols) {
  const auto v = to_doubles(t);
  auto out = nlohmann::json::array();
  for (int64_t r = 0; r < rows; ++r)
    out.push_back(std::vector<double>(v.begin() + r * cols, v.begin() + (r + 1) * cols));
  return out;
}

/// Reads JSON values with errors that name the file and the field ("gallery[3].detections[0].score").
struct JsonReader : io::JsonReader {
  static constexpr const char* fn = "trident::eval::load_search_outputs";
  explicit JsonReader(std::string file) : io::JsonReader(fn, std::move(file)) {}

  /// Appends the `size` numbers of object[key] to `out`.
  void numbers(const nlohmann::json& object, const std::string& key, const std::string& where, int64_t size,
               std::vector<double>& out) const {
    const auto& v = field(object, key, where);
    TRIDENT_CHECK(v.is_array() && static_cast<int64_t>(v.size()) == size,
                  "{}: '{}': {}.{} must be an array of {} numbers, got {}", fn, path, where, key, size,
                  v.is_array() ? fmt::format("{} entries", v.size()) : std::string(v.type_name()));
    for (size_t i = 0; i < v.size(); ++i) {
      TRIDENT_CHECK(v[i].is_number(), "{}: '{}': {}.{}[{}] must be a number, got {}", fn, path, where, key, i,
                    v[i].type_name());
      out.push_back(v[i].get<double>());
    }
  }
  /// Appends object["box"] to `out`: four finite numbers x1, y1, x2, y2 with x2 >= x1 and y2 >= y1.
  void box(const nlohmann::json& object, const std::string& where, std::vector<double>& out) const {
    numbers(object, "box", where, 4, out);
    const double* b = out.data() + out.size() - 4;
    TRIDENT_CHECK(std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && std::isfinite(b[3]) &&
                      b[2] >= b[0] && b[3] >= b[1],
                  "{}: '{}': {}.box = [{}, {}, {}, {}] is not a box x1, y1, x2, y2 with x2 >= x1 and y2 >= y1", fn,
                  path, where, b[0], b[1], b[2], b[3]);
  }
};

inline at::Tensor doubles_to_tensor(const std::vector<double>& v, int64_t rows, int64_t cols) {
  if (rows == 0) return at::empty({0, cols}, at::kFloat);
  return at::tensor(v, at::kDouble).view({rows, cols}).to(at::kFloat);
}

}  // namespace detail

/// Writes `outputs` to `path` as JSON (docs/results-format.md).
inline void save_search_outputs(const SearchOutputs& outputs, const std::string& path) {
  constexpr const char* fn = "trident::eval::save_search_outputs";
  TRIDENT_CHECK(outputs.gallery_images.size() == outputs.gallery.size(), "{}: {} gallery_images but {} gallery entries",
                fn, outputs.gallery_images.size(), outputs.gallery.size());
  TRIDENT_CHECK(outputs.query_embeddings.defined() && outputs.query_embeddings.dim() == 2 &&
                    static_cast<size_t>(outputs.query_embeddings.size(0)) == outputs.query_images.size(),
                "{}: query_embeddings must be [{}, D] (one row per query image), got {}", fn,
                outputs.query_images.size(), shape_of(outputs.query_embeddings));
  const int64_t q = outputs.query_embeddings.size(0), dim = outputs.query_embeddings.size(1);
  ops::check_box_shape(outputs.query_boxes, fn, "query_boxes");
  TRIDENT_CHECK(outputs.query_boxes.size(0) == q, "{}: query_boxes must be [{}, 4], got {}", fn, q,
                shape_of(outputs.query_boxes));
  nlohmann::json root;
  root["format"] = results_format_name;
  root["version"] = results_format_version;
  root["embedding_dim"] = dim;
  auto gallery = nlohmann::json::array();
  for (size_t i = 0; i < outputs.gallery.size(); ++i) {
    const auto& d = outputs.gallery[i];
    detail::check_detections(d, fn, fmt::format("gallery[{}]", i), true, dim);
    const int64_t n = d.boxes.size(0);
    const auto boxes = detail::rows_to_json(d.boxes, n, 4);
    const auto embeddings = detail::rows_to_json(d.embeddings, n, dim);
    const auto scores = detail::to_doubles(d.scores);
    auto detections = nlohmann::json::array();
    for (int64_t j = 0; j < n; ++j)
      detections.push_back({{"box", boxes[static_cast<size_t>(j)]},
                            {"score", scores[static_cast<size_t>(j)]},
                            {"embedding", embeddings[static_cast<size_t>(j)]}});
    gallery.push_back({{"image", outputs.gallery_images[i]}, {"detections", std::move(detections)}});
  }
  root["gallery"] = std::move(gallery);
  const auto boxes = detail::rows_to_json(outputs.query_boxes, q, 4);
  const auto embeddings = detail::rows_to_json(outputs.query_embeddings, q, dim);
  auto queries = nlohmann::json::array();
  for (int64_t i = 0; i < q; ++i)
    queries.push_back({{"image", outputs.query_images[static_cast<size_t>(i)]},
                       {"box", boxes[static_cast<size_t>(i)]},
                       {"embedding", embeddings[static_cast<size_t>(i)]}});
  root["queries"] = std::move(queries);
  std::ofstream file(path);
  TRIDENT_CHECK(file.good(), "{}: cannot open '{}' for writing", fn, path);
  file << root.dump() << '\n';
  TRIDENT_CHECK(file.good(), "{}: writing '{}' failed", fn, path);
}

/// Reads a file written by save_search_outputs (or by any tool following docs/results-format.md). Errors name
/// the file and the offending field.
inline SearchOutputs load_search_outputs(const std::string& path) {
  const detail::JsonReader r{path};
  constexpr const char* fn = detail::JsonReader::fn;
  const nlohmann::json root = r.parse();
  const auto format = r.string(root, "format", "the file");
  TRIDENT_CHECK(format == results_format_name, "{}: '{}': format is '{}', expected '{}'", fn, path, format,
                results_format_name);
  const double version = r.number(root, "version", "the file");
  TRIDENT_CHECK(version == static_cast<double>(results_format_version), "{}: '{}': version {} is not supported (this "
                "reader knows version {})", fn, path, version, results_format_version);
  const double dim_value = r.number(root, "embedding_dim", "the file");
  TRIDENT_CHECK(dim_value >= 0 && dim_value == static_cast<double>(static_cast<int64_t>(dim_value)),
                "{}: '{}': embedding_dim must be a non-negative integer, got {}", fn, path, dim_value);
  const auto dim = static_cast<int64_t>(dim_value);

  SearchOutputs out;
  const auto& gallery = r.array(root, "gallery", "the file");
  for (size_t i = 0; i < gallery.size(); ++i) {
    const auto where = fmt::format("gallery[{}]", i);
    out.gallery_images.push_back(r.string(gallery[i], "image", where));
    const auto& detections = r.array(gallery[i], "detections", where);
    std::vector<double> boxes, scores, embeddings;
    for (size_t j = 0; j < detections.size(); ++j) {
      const auto dwhere = fmt::format("{}.detections[{}]", where, j);
      r.box(detections[j], dwhere, boxes);
      scores.push_back(r.number(detections[j], "score", dwhere));
      r.numbers(detections[j], "embedding", dwhere, dim, embeddings);
    }
    const auto n = static_cast<int64_t>(detections.size());
    Detections d;
    d.boxes = detail::doubles_to_tensor(boxes, n, 4);
    d.scores = n == 0 ? at::empty({0}, at::kFloat) : at::tensor(scores, at::kDouble).to(at::kFloat);
    d.embeddings = detail::doubles_to_tensor(embeddings, n, dim);
    out.gallery.push_back(std::move(d));
  }
  const auto& queries = r.array(root, "queries", "the file");
  std::vector<double> boxes, embeddings;
  for (size_t i = 0; i < queries.size(); ++i) {
    const auto where = fmt::format("queries[{}]", i);
    out.query_images.push_back(r.string(queries[i], "image", where));
    r.box(queries[i], where, boxes);
    r.numbers(queries[i], "embedding", where, dim, embeddings);
  }
  const auto q = static_cast<int64_t>(queries.size());
  out.query_boxes = detail::doubles_to_tensor(boxes, q, 4);
  out.query_embeddings = detail::doubles_to_tensor(embeddings, q, dim);
  return out;
}

}  // namespace trident::eval
