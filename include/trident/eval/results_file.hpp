#pragma once
/// \file trident/eval/results_file.hpp
/// Reads and writes a model's outputs on a test set — every gallery image's detections (box, score, embedding)
/// and every query's embedding — so that evaluation can run apart from inference and on other methods' outputs.
/// Two forms, both described in docs/results-format.md: JSON (readable, any tool writes it) and a compact
/// little-endian binary form (magic "TRIDENTR", float32 numbers; about 5x smaller and much faster to read).
/// save_search_outputs picks the form by extension (".json"; ".trs" or ".bin"), load_search_outputs by the
/// file's first bytes. Files are written atomically: to a temporary file in the same folder, then renamed, so a
/// reader never sees half a file. Part of trident::json (nlohmann_json, Debian package nlohmann-json3-dev).

#include <trident/core/files.hpp>
#include <trident/core/types.hpp>
#include <trident/eval/types.hpp>

#include <trident/io/json_reader.hpp>

#include <nlohmann/json.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace trident::eval {

inline constexpr std::string_view results_format_name = "trident-search-results";
inline constexpr int64_t results_format_version = 1;

/// The binary form's first 8 bytes and its layout version (docs/results-format.md, "Binary form").
inline constexpr std::string_view results_binary_magic = "TRIDENTR";
inline constexpr uint32_t results_binary_version = 1;

/// The two forms of a results file.
enum class ResultsFormat {
  json,    ///< docs/results-format.md, "JSON form"
  binary,  ///< docs/results-format.md, "Binary form"
};

/// The form save_search_outputs(outputs, path) writes: ".json" -> JSON, ".trs" or ".bin" -> binary (the
/// extension's case does not matter); any other extension is an error naming these.
inline ResultsFormat results_format_for(const std::string& path) {
  std::string ext = std::filesystem::path(path).extension().string();
  for (auto& c : ext) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  if (ext == ".json") return ResultsFormat::json;
  if (ext == ".trs" || ext == ".bin") return ResultsFormat::binary;
  trident::fail("trident::eval::save_search_outputs: cannot tell the form of '{}' from its extension '{}': use "
                "\".json\" (JSON) or \".trs\" / \".bin\" (binary), or pass a ResultsFormat", path, ext);
}

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

namespace detail {

/// Throws unless `outputs` is consistent; returns D (the embedding width).
inline int64_t check_outputs(const SearchOutputs& outputs, const char* fn) {
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
  for (size_t i = 0; i < outputs.gallery.size(); ++i)
    check_detections(outputs.gallery[i], fn, fmt::format("gallery[{}]", i), true, dim);
  return dim;
}

/// Little-endian encoding of 32-bit words, floats and float tensors.
class BinaryWriter {
 public:
  explicit BinaryWriter(std::ostream& out) : out_(out) {}
  void bytes(const void* data, size_t size) { out_.write(static_cast<const char*>(data), static_cast<std::streamsize>(size)); }
  void u32(uint32_t v) {
    const std::array<unsigned char, 4> b{static_cast<unsigned char>(v), static_cast<unsigned char>(v >> 8),
                                         static_cast<unsigned char>(v >> 16), static_cast<unsigned char>(v >> 24)};
    bytes(b.data(), 4);
  }
  void u64(uint64_t v) {
    u32(static_cast<uint32_t>(v));
    u32(static_cast<uint32_t>(v >> 32));
  }
  void string(const std::string& s, const std::string& where) {
    TRIDENT_CHECK(s.size() <= 0xffffffffu, "trident::eval::save_search_outputs: {} is too long ({} bytes)", where,
                  s.size());
    u32(static_cast<uint32_t>(s.size()));
    bytes(s.data(), s.size());
  }
  /// The tensor's values as float32, row-major.
  void floats(const at::Tensor& t) {
    if (!t.defined() || t.numel() == 0) return;
    const at::Tensor c = t.detach().to(at::kCPU, at::kFloat).contiguous();
    const float* p = c.data_ptr<float>();
    if constexpr (std::endian::native == std::endian::little) {
      bytes(p, static_cast<size_t>(c.numel()) * sizeof(float));
    } else {
      for (int64_t i = 0; i < c.numel(); ++i) u32(std::bit_cast<uint32_t>(p[i]));
    }
  }

 private:
  std::ostream& out_;
};

}  // namespace detail

/// Writes `outputs` to `path` as JSON (docs/results-format.md, "JSON form"), atomically.
inline void save_search_outputs_json(const SearchOutputs& outputs, const std::string& path) {
  constexpr const char* fn = "trident::eval::save_search_outputs";
  const int64_t dim = detail::check_outputs(outputs, fn);
  const int64_t q = outputs.query_embeddings.size(0);
  nlohmann::json root;
  root["format"] = results_format_name;
  root["version"] = results_format_version;
  root["embedding_dim"] = dim;
  auto gallery = nlohmann::json::array();
  for (size_t i = 0; i < outputs.gallery.size(); ++i) {
    const auto& d = outputs.gallery[i];
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
  write_stream_atomically(path, fn, [&](std::ostream& file) { file << root.dump() << '\n'; });
}

/// Writes `outputs` to `path` in the binary form (docs/results-format.md, "Binary form"), atomically. Numbers
/// are stored as float32: float tensors come back bit-identical.
inline void save_search_outputs_binary(const SearchOutputs& outputs, const std::string& path) {
  constexpr const char* fn = "trident::eval::save_search_outputs";
  const int64_t dim = detail::check_outputs(outputs, fn);
  TRIDENT_CHECK(dim <= 0xffffffff, "{}: embedding width {} does not fit the binary form", fn, dim);
  write_stream_atomically(path, fn, [&](std::ostream& file) {
    detail::BinaryWriter w(file);
    w.bytes(results_binary_magic.data(), results_binary_magic.size());
    w.u32(results_binary_version);
    w.u32(static_cast<uint32_t>(dim));
    w.u64(outputs.gallery.size());
    w.u64(outputs.query_images.size());
    for (size_t i = 0; i < outputs.gallery.size(); ++i) {
      const auto& d = outputs.gallery[i];
      w.string(outputs.gallery_images[i], fmt::format("gallery[{}].image", i));
      const int64_t n = d.boxes.size(0);
      TRIDENT_CHECK(n <= 0xffffffff, "{}: gallery[{}] has too many detections ({})", fn, i, n);
      w.u32(static_cast<uint32_t>(n));
      w.floats(d.boxes);
      w.floats(d.scores);
      if (n > 0) w.floats(d.embeddings);
    }
    const at::Tensor boxes = outputs.query_boxes.detach().to(at::kCPU, at::kFloat).contiguous();
    const at::Tensor embeddings = outputs.query_embeddings.detach().to(at::kCPU, at::kFloat).contiguous();
    for (size_t q = 0; q < outputs.query_images.size(); ++q) {
      w.string(outputs.query_images[q], fmt::format("queries[{}].image", q));
      w.floats(boxes[static_cast<int64_t>(q)]);
      w.floats(embeddings[static_cast<int64_t>(q)]);
    }
  });
}

/// Writes `outputs` to `path` in the given form.
inline void save_search_outputs(const SearchOutputs& outputs, const std::string& path, ResultsFormat format) {
  if (format == ResultsFormat::binary)
    save_search_outputs_binary(outputs, path);
  else
    save_search_outputs_json(outputs, path);
}

/// Writes `outputs` to `path` in the form its extension names (results_format_for): ".json", ".trs" or ".bin".
inline void save_search_outputs(const SearchOutputs& outputs, const std::string& path) {
  save_search_outputs(outputs, path, results_format_for(path));
}

/// Reads a JSON results file (docs/results-format.md, "JSON form"). Errors name the file and the offending field.
inline SearchOutputs load_search_outputs_json(const std::string& path) {
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
  // Range first: converting a double beyond int64_t's range is undefined (found by fuzz/results_json.cpp). The
  // binary form's bound (a u32) serves both forms.
  TRIDENT_CHECK(dim_value >= 0 && dim_value <= 4294967295.0 && dim_value == std::floor(dim_value),
                "{}: '{}': embedding_dim must be an integer in [0, 4294967295], got {}", fn, path, dim_value);
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
    GalleryDetections d;
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

namespace detail {

/// Reads the binary form from memory; every error names the file, the field and its byte offset.
class BinaryReader {
 public:
  static constexpr const char* fn = "trident::eval::load_search_outputs";
  BinaryReader(std::string path, std::string bytes) : path_(std::move(path)), bytes_(std::move(bytes)) {}

  size_t offset() const { return offset_; }
  void skip(size_t size) { offset_ += size; }
  size_t left() const { return bytes_.size() - offset_; }
  const std::string& path() const { return path_; }

  /// Throws unless `size` more bytes are there for `field`.
  void need(uint64_t size, const std::string& field) const {
    TRIDENT_CHECK(size <= left(), "{}: '{}': truncated file: {} needs {} bytes at offset {}, only {} left", fn, path_,
                  field, size, offset_, left());
  }
  uint32_t u32(const std::string& field) {
    need(4, field);
    const auto* b = reinterpret_cast<const unsigned char*>(bytes_.data() + offset_);
    offset_ += 4;
    return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
  }
  uint64_t u64(const std::string& field) {
    need(8, field);
    const uint64_t lo = u32(field);
    return lo | uint64_t{u32(field)} << 32;
  }
  std::string string(const std::string& field) {
    const uint32_t size = u32(field + " (length)");
    need(size, field);
    std::string s = bytes_.substr(offset_, size);
    offset_ += size;
    return s;
  }
  /// Throws unless `count` items of `item_size` bytes each are there for `field` (no overflow for huge counts).
  void need_items(uint64_t count, uint64_t item_size, const std::string& field) const {
    TRIDENT_CHECK(item_size == 0 || count <= left() / item_size,
                  "{}: '{}': truncated file: {} needs {} x {} bytes at offset {}, only {} left", fn, path_, field,
                  count, item_size, offset_, left());
  }
  /// `count` float32 values as a [rows, cols] float tensor (count = rows * cols).
  at::Tensor floats(int64_t rows, int64_t cols, const std::string& field) {
    const auto count = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
    need(count * 4, field);
    at::Tensor t = at::empty({rows, cols}, at::kFloat);
    float* p = t.data_ptr<float>();
    if constexpr (std::endian::native == std::endian::little) {
      if (count > 0) std::memcpy(p, bytes_.data() + offset_, count * 4);
      offset_ += count * 4;
    } else {
      for (uint64_t i = 0; i < count; ++i) p[i] = std::bit_cast<float>(u32(field));
    }
    return t;
  }
  /// Throws unless every row of `boxes` [n, 4] (read from `start`) is a box x1, y1, x2, y2 with x2 >= x1, y2 >= y1.
  void check_boxes(const at::Tensor& boxes, size_t start, const std::string& field) const {
    const float* b = boxes.data_ptr<float>();
    for (int64_t r = 0; r < boxes.size(0); ++r, b += 4)
      TRIDENT_CHECK(std::isfinite(b[0]) && std::isfinite(b[1]) && std::isfinite(b[2]) && std::isfinite(b[3]) &&
                        b[2] >= b[0] && b[3] >= b[1],
                    "{}: '{}': {}[{}] = [{}, {}, {}, {}] (offset {}) is not a box x1, y1, x2, y2 with x2 >= x1 and "
                    "y2 >= y1", fn, path_, field, r, b[0], b[1], b[2], b[3], start + static_cast<size_t>(r) * 16);
  }

 private:
  std::string path_;
  std::string bytes_;
  size_t offset_ = 0;
};

inline bool starts_with_binary_magic(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::array<char, 8> head{};
  file.read(head.data(), head.size());
  return file.gcount() == 8 && std::string_view(head.data(), 8) == results_binary_magic;
}

}  // namespace detail

/// Reads a binary results file (docs/results-format.md, "Binary form"). Errors for a truncated or corrupt file
/// name the file, the field and the byte offset.
inline SearchOutputs load_search_outputs_binary(const std::string& path) {
  constexpr const char* fn = detail::BinaryReader::fn;
  detail::BinaryReader r(path, read_whole_file(path, fn));
  r.need(8, "the magic bytes");
  TRIDENT_CHECK(detail::starts_with_binary_magic(path),
                "{}: '{}': not a binary results file (the first 8 bytes are not \"{}\")", fn, path,
                results_binary_magic);
  r.skip(8);
  const uint32_t version = r.u32("version");
  TRIDENT_CHECK(version == results_binary_version,
                "{}: '{}': binary version {} (offset 8) is not supported (this reader knows version {})", fn, path,
                version, results_binary_version);
  const auto dim = static_cast<int64_t>(r.u32("embedding_dim"));
  const uint64_t num_gallery = r.u64("gallery count");
  const uint64_t num_queries = r.u64("query count");
  // Each gallery image takes at least 8 bytes and each query 4 + 16 + 4 D: a corrupt count cannot allocate much.
  r.need_items(num_gallery, 8, fmt::format("{} gallery images", num_gallery));
  SearchOutputs out;
  for (uint64_t i = 0; i < num_gallery; ++i) {
    const auto where = fmt::format("gallery[{}]", i);
    out.gallery_images.push_back(r.string(where + ".image"));
    const auto n = static_cast<int64_t>(r.u32(where + ".detection count"));
    r.need_items(static_cast<uint64_t>(n), static_cast<uint64_t>(4 + 1 + dim) * 4,
                 fmt::format("{}'s {} detections", where, n));
    GalleryDetections d;
    const size_t boxes_at = r.offset();
    d.boxes = r.floats(n, 4, where + ".boxes");
    r.check_boxes(d.boxes, boxes_at, where + ".boxes");
    d.scores = r.floats(n, 1, where + ".scores").view({n});
    d.embeddings = r.floats(n, dim, where + ".embeddings");
    out.gallery.push_back(std::move(d));
  }
  r.need_items(num_queries, static_cast<uint64_t>(4 + 16 + 4 * dim), fmt::format("{} queries", num_queries));
  std::vector<at::Tensor> boxes, embeddings;
  for (uint64_t q = 0; q < num_queries; ++q) {
    const auto where = fmt::format("queries[{}]", q);
    out.query_images.push_back(r.string(where + ".image"));
    const size_t box_at = r.offset();
    boxes.push_back(r.floats(1, 4, where + ".box"));
    r.check_boxes(boxes.back(), box_at, where + ".box");
    embeddings.push_back(r.floats(1, dim, where + ".embedding"));
  }
  TRIDENT_CHECK(r.left() == 0, "{}: '{}': {} unexpected bytes after the last query (offset {})", fn, path, r.left(),
                r.offset());
  out.query_boxes = boxes.empty() ? at::empty({0, 4}, at::kFloat) : at::cat(boxes);
  out.query_embeddings = embeddings.empty() ? at::empty({0, dim}, at::kFloat) : at::cat(embeddings);
  return out;
}

/// Reads a results file in either form, told apart by its first bytes (the binary form starts with "TRIDENTR").
inline SearchOutputs load_search_outputs(const std::string& path) {
  std::ifstream probe(path, std::ios::binary);
  TRIDENT_CHECK(probe.good(), "trident::eval::load_search_outputs: cannot open '{}'", path);
  probe.close();
  return detail::starts_with_binary_magic(path) ? load_search_outputs_binary(path) : load_search_outputs_json(path);
}

}  // namespace trident::eval
