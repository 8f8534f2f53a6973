#pragma once
/// \file trident/search/gallery_index.hpp
/// A gallery index: every detection of a fixed archive of pictures (its picture, box, score and embedding),
/// embedded once (examples/07_build_index) and searched for many queries. The file is versioned, little-endian
/// and memory-mappable: GalleryIndex::open maps it read-only and its tensors are views of the mapping, so
/// opening an index of 10^7 detections copies nothing. docs/gallery-index.md describes it for other readers.
///
/// Layout, version 1 (every section starts at a multiple of 64 bytes; the gaps are zero):
///   offset  type       header (128 bytes)
///        0  char[8]    magic "TRIDGIDX"
///        8  u32        version (1)
///       12  u32        dim: D, the embedding width (1..65536)
///       16  u64        count: N, the detections
///       24  u64        pictures: P
///       32  u64        offset of the embeddings   N x D float32, row-major, unit rows (starts at 128)
///       40  u64        offset of the boxes        N x 4 float32: x1, y1, x2, y2 in the picture's pixels
///       48  u64        offset of the scores       N float32: detection confidence
///       56  u64        offset of picture_of       N int64: each detection's picture, in [0, P)
///       64  u64        offset of the names        P + 1 u64 offsets into the name bytes, then the UTF-8 bytes
///       72  u64        name bytes (the bytes after the offsets table)
///       80  u64        offset of the description  free text (model, checkpoint, options)
///       88  u64        description bytes
///       96  u64        file size in bytes
///  104-127  zero
///   trailer: u64 checksum at file size - 8: 64-bit FNV-1a over the file's bytes before it, taken 8 bytes at a
///   time as little-endian words (h = (h ^ word) * 0x100000001b3, from 0xcbf29ce484222325).
///
/// open() refuses, naming the file, the field and the value: a file shorter than a header, a wrong magic or
/// version, a size that is not the header's, counts that do not fit in the file, sections that are not where
/// the counts put them, picture-name offsets out of order, a picture index outside [0, P), a box or score
/// that is not finite, and (unless switched off in OpenOptions, as both read the whole file) an embedding row
/// whose norm is not 1 within the tolerance and a checksum that does not match. Nothing is allocated from a
/// count before the count has been checked against the file's size. write_gallery_index writes atomically
/// (core/files.hpp): an interrupted write leaves the previous index.
///
/// GalleryIndex::search is exact: one blocked matrix product of the queries with the rows, the similarity of
/// search/similarity.hpp (confidence-weighted cosine by default), rows under the score threshold left out, the
/// best k kept per query (best first, ties by the lower row). search/faiss_index.hpp adds approximate search.
#include <trident/config.hpp>
#include <trident/core/files.hpp>
#include <trident/search/similarity.hpp>

#include <ATen/ops/full.h>
#include <ATen/ops/min.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/topk.h>
#include <ATen/ops/where.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace trident::search {

inline constexpr std::string_view gallery_index_magic{"TRIDGIDX", 8};
inline constexpr uint32_t gallery_index_version = 1;

/// What write_gallery_index writes (tensors on any device, of any floating type: converted on the way).
struct GalleryIndexData {
  std::vector<std::string> pictures;  ///< the pictures' paths or names
  at::Tensor picture_of;              ///< [N] int64: each detection's picture (index into pictures)
  at::Tensor boxes;                   ///< [N, 4] float: x1, y1, x2, y2 in the picture's pixels
  at::Tensor scores;                  ///< [N] float: detection confidence
  at::Tensor embeddings;              ///< [N, D] float: unit rows
  std::string description;            ///< free text: model, checkpoint, options
};

namespace detail {

inline constexpr uint64_t gallery_header_bytes = 128;
inline constexpr uint64_t gallery_max_dim = 65536;
inline constexpr uint64_t fnv_offset = 0xcbf29ce484222325ULL;
inline constexpr uint64_t fnv_prime = 0x100000001b3ULL;

/// The file's checksum (see the file comment), continued from `hash` over `words` 8-byte words at `data`.
inline uint64_t fnv1a_words(const char* data, uint64_t words, uint64_t hash = fnv_offset) {
  for (uint64_t i = 0; i < words; ++i) {
    uint64_t word;
    std::memcpy(&word, data + 8 * i, 8);
    hash = (hash ^ word) * fnv_prime;
  }
  return hash;
}

inline uint64_t align64(uint64_t offset) { return (offset + 63) / 64 * 64; }

/// Where each section starts for the given counts: embeddings, boxes, scores, picture_of, names, description,
/// and the checksum (the file's size is that + 8). The caller has bounded the counts by the file's size.
inline std::array<uint64_t, 7> gallery_layout(uint64_t count, uint64_t dim, uint64_t pictures, uint64_t name_bytes,
                                              uint64_t description_bytes) {
  std::array<uint64_t, 7> at{};
  at[0] = gallery_header_bytes;
  at[1] = align64(at[0] + count * dim * 4);
  at[2] = align64(at[1] + count * 16);
  at[3] = align64(at[2] + count * 4);
  at[4] = align64(at[3] + count * 8);
  at[5] = align64(at[4] + (pictures + 1) * 8 + name_bytes);
  at[6] = align64(at[5] + description_bytes);
  return at;
}

/// Writes bytes to a stream while hashing them (everything written is a multiple of 8 bytes long).
class HashingWriter {
 public:
  explicit HashingWriter(std::ostream& out) : out_(out) {}
  void write(const void* data, uint64_t bytes) {
    pending_.append(static_cast<const char*>(data), bytes);
    const uint64_t whole = pending_.size() / 8 * 8;
    hash_ = fnv1a_words(pending_.data(), whole / 8, hash_);
    out_.write(pending_.data(), static_cast<std::streamsize>(whole));
    pending_.erase(0, whole);
    written_ += bytes;
  }
  /// Large blocks go straight through without the pending buffer when it is empty and they are whole words.
  void write_block(const void* data, uint64_t bytes) {
    if (!pending_.empty() || bytes % 8 != 0) return write(data, bytes);
    constexpr uint64_t step = uint64_t{1} << 24;
    const char* p = static_cast<const char*>(data);
    for (uint64_t done = 0; done < bytes; done += step) {
      const uint64_t n = std::min(step, bytes - done);
      hash_ = fnv1a_words(p + done, n / 8, hash_);
      out_.write(p + done, static_cast<std::streamsize>(n));
    }
    written_ += bytes;
  }
  void pad_to(uint64_t offset) {
    const std::string zeros(offset - written_, '\0');
    write(zeros.data(), zeros.size());
  }
  uint64_t hash() const { return hash_; }
  uint64_t written() const { return written_; }

 private:
  std::ostream& out_;
  std::string pending_;
  uint64_t hash_ = fnv_offset;
  uint64_t written_ = 0;
};

}  // namespace detail

/// Writes `data` to `path` in the format of the file comment, atomically. Refuses, naming the field and the
/// value, what open() would refuse: inconsistent shapes, a picture index out of range, a box or score that is
/// not finite, a row that is not unit length (within 1e-3).
inline void write_gallery_index(const std::string& path, const GalleryIndexData& data) {
  constexpr const char* fn = "trident::search::write_gallery_index";
  const auto& e = data.embeddings;
  TRIDENT_CHECK(e.defined() && e.dim() == 2 && e.size(1) >= 1 && static_cast<uint64_t>(e.size(1)) <=
                    detail::gallery_max_dim,
                "{}: '{}': embeddings must be [N, D] with 1 <= D <= {}, got {}", fn, path, detail::gallery_max_dim,
                shape_of(e));
  const int64_t n = e.size(0), dim = e.size(1);
  TRIDENT_CHECK(data.boxes.defined() && data.boxes.dim() == 2 && data.boxes.size(0) == n && data.boxes.size(1) == 4,
                "{}: '{}': boxes must be [{}, 4], got {}", fn, path, n, shape_of(data.boxes));
  TRIDENT_CHECK(data.scores.defined() && data.scores.dim() == 1 && data.scores.size(0) == n,
                "{}: '{}': scores must be [{}], got {}", fn, path, n, shape_of(data.scores));
  TRIDENT_CHECK(data.picture_of.defined() && data.picture_of.dim() == 1 && data.picture_of.size(0) == n,
                "{}: '{}': picture_of must be [{}], got {}", fn, path, n, shape_of(data.picture_of));
  // No copy when the tensors already are contiguous CPU float32 / int64 (a 10^7-row gallery is 10 GB).
  const auto embeddings = e.detach().to(at::kCPU, at::kFloat).contiguous();
  const auto boxes = data.boxes.detach().to(at::kCPU, at::kFloat).contiguous();
  const auto scores = data.scores.detach().to(at::kCPU, at::kFloat).contiguous();
  const auto picture_of = data.picture_of.detach().to(at::kCPU, at::kLong).contiguous();
  const auto pictures = static_cast<int64_t>(data.pictures.size());
  const int64_t* p = picture_of.data_ptr<int64_t>();
  const float* b = boxes.data_ptr<float>();
  const float* s = scores.data_ptr<float>();
  for (int64_t i = 0; i < n; ++i) {
    TRIDENT_CHECK(p[i] >= 0 && p[i] < pictures, "{}: '{}': picture_of[{}] = {} is not a picture index (there are {})",
                  fn, path, i, p[i], pictures);
    TRIDENT_CHECK(std::isfinite(s[i]), "{}: '{}': scores[{}] = {} is not finite", fn, path, i, s[i]);
    for (int64_t k = 0; k < 4; ++k)
      TRIDENT_CHECK(std::isfinite(b[4 * i + k]), "{}: '{}': boxes[{}][{}] = {} is not finite", fn, path, i, k,
                    b[4 * i + k]);
  }
  check_unit_rows(embeddings, 1e-3, fn, [](size_t r) { return fmt::format("embeddings row {}", r); });
  uint64_t name_bytes = 0;
  for (const auto& name : data.pictures) name_bytes += name.size();
  const auto un = static_cast<uint64_t>(n), up = static_cast<uint64_t>(pictures);
  const auto at = detail::gallery_layout(un, static_cast<uint64_t>(dim), up, name_bytes, data.description.size());
  std::array<char, detail::gallery_header_bytes> header{};
  const auto put = [&header](uint64_t offset, auto value) { write_le(header.data(), offset, value); };
  std::memcpy(header.data(), gallery_index_magic.data(), 8);
  put(8, gallery_index_version);
  put(12, static_cast<uint32_t>(dim));
  put(16, un);
  put(24, up);
  for (uint64_t k = 0; k < 5; ++k) put(32 + 8 * k, at[k]);
  put(72, name_bytes);
  put(80, at[5]);
  put(88, static_cast<uint64_t>(data.description.size()));
  put(96, at[6] + 8);
  write_stream_atomically(path, fn, [&](std::ostream& out) {
    detail::HashingWriter w(out);
    w.write(header.data(), header.size());
    w.write_block(embeddings.data_ptr<float>(), un * static_cast<uint64_t>(dim) * 4);
    w.pad_to(at[1]);
    w.write_block(b, un * 16);
    w.pad_to(at[2]);
    w.write(s, un * 4);
    w.pad_to(at[3]);
    w.write_block(p, un * 8);
    w.pad_to(at[4]);
    uint64_t offset = 0;
    w.write(&offset, 8);
    for (const auto& name : data.pictures) {
      offset += name.size();
      w.write(&offset, 8);
    }
    for (const auto& name : data.pictures) w.write(name.data(), name.size());
    w.pad_to(at[5]);
    w.write(data.description.data(), data.description.size());
    w.pad_to(at[6]);
    const uint64_t checksum = w.hash();
    out.write(reinterpret_cast<const char*>(&checksum), 8);
  });
}

/// How open() checks a file (the two full reads of a large index can be skipped for a trusted file).
struct OpenOptions {
  bool verify_checksum = true;      ///< recompute the checksum over the whole file
  bool check_unit_norms = true;     ///< check every embedding row's norm
  double unit_norm_tolerance = 1e-3;
};

/// One hit of a search.
struct IndexHit {
  int64_t row = -1;             ///< the detection's row in the index
  int64_t picture = -1;         ///< its picture (index into pictures())
  std::string picture_name;     ///< pictures()[picture]
  std::array<float, 4> box{};   ///< x1, y1, x2, y2 in the picture's pixels
  double score = 0;             ///< detection confidence
  double similarity = 0;        ///< what the ranking sorts by
};

/// What a search returns and how it ranks.
struct SearchParams {
  int64_t top_k = 10;            ///< hits per query (>= 1)
  double score_threshold = 0.5;  ///< detections with a lower confidence are not candidates (SeqNet's 0.5)
  SimilarityWeighting weighting = SimilarityWeighting::confidence;
  int64_t block_rows = 1 << 16;  ///< rows per matrix product: Q x block_rows floats at a time
};

/// The exact search of the file comment over `embeddings` ([N, D] float32 CPU, unit rows) with their `scores`
/// ([N] float32) for `queries` ([Q, D] float32 CPU, contiguous): per query the best (similarity, row) pairs.
inline std::vector<std::vector<std::pair<double, int64_t>>> exact_top_k(const at::Tensor& embeddings,
                                                                        const at::Tensor& scores,
                                                                        const at::Tensor& queries,
                                                                        const SearchParams& params) {
  constexpr const char* fn = "trident::search::exact_top_k";
  TRIDENT_CHECK(params.top_k >= 1 && params.block_rows >= 1, "{}: top_k and block_rows must be >= 1, got {} and {}",
                fn, params.top_k, params.block_rows);
  const int64_t nq = queries.size(0), n = embeddings.size(0);
  std::vector<std::vector<std::pair<double, int64_t>>> found(static_cast<size_t>(nq));
  const auto minus_infinity = at::full({}, -std::numeric_limits<float>::infinity(), at::kFloat);
  for (int64_t begin = 0; begin < n; begin += params.block_rows) {
    const int64_t rows = std::min(params.block_rows, n - begin);
    const auto block_scores = scores.narrow(0, begin, rows);
    auto sims = similarity(queries, embeddings.narrow(0, begin, rows), block_scores, params.weighting);
    sims = at::where((block_scores >= params.score_threshold).unsqueeze(0), sims, minus_infinity);
    const int64_t k = std::min(params.top_k, rows);
    const auto top = at::topk(sims, k, 1, /*largest=*/true, /*sorted=*/false);
    const auto values = std::get<0>(top).contiguous(), indices = std::get<1>(top).contiguous();
    // topk keeps an arbitrary few of the rows tied with its k-th value; the queries with more such rows than it
    // kept take them all, so that the lowest rows win the tie below (one more scan of their row of the block).
    const auto kth = std::get<0>(values.min(1, /*keepdim=*/true));
    const auto tied = (sims == kth).sum(1).contiguous(), kept_tied = (values == kth).sum(1).contiguous();
    const float* v = values.data_ptr<float>();
    const float* kv = kth.data_ptr<float>();
    const int64_t* i = indices.data_ptr<int64_t>();
    for (int64_t q = 0; q < nq; ++q) {
      auto& out = found[static_cast<size_t>(q)];
      const bool all_ties = std::isfinite(kv[q]) && tied.data_ptr<int64_t>()[q] > kept_tied.data_ptr<int64_t>()[q];
      for (int64_t j = 0; j < k; ++j)
        if (std::isfinite(v[q * k + j]) && !(all_ties && v[q * k + j] == kv[q]))
          out.emplace_back(v[q * k + j], begin + i[q * k + j]);
      if (!all_ties) continue;
      const auto rows_tied = (sims[q] == kv[q]).nonzero().select(1, 0).contiguous();
      for (int64_t t = 0; t < rows_tied.numel(); ++t) out.emplace_back(kv[q], begin + rows_tied.data_ptr<int64_t>()[t]);
    }
    for (auto& out : found) {
      std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
        return a.first > b.first || (a.first == b.first && a.second < b.second);
      });
      if (static_cast<int64_t>(out.size()) > params.top_k) out.resize(static_cast<size_t>(params.top_k));
    }
  }
  return found;
}

/// An opened gallery index: the file mapped read-only (read into memory where it cannot be mapped), its
/// sections as tensors over the mapping without a copy. The mapping lives as long as the GalleryIndex, its
/// copies, or any tensor taken from them. The tensors are read-only: writing into them is an access violation.
class GalleryIndex {
 public:
  /// Maps and validates the index at `path` (see the file comment for what is refused).
  static GalleryIndex open(const std::string& path, const OpenOptions& options = {}) {
    constexpr const char* fn = "trident::search::GalleryIndex::open";
    GalleryIndex index;
    index.path_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    TRIDENT_CHECK(fd >= 0, "{}: cannot open '{}': {}", fn, path, std::strerror(errno));
    struct stat st {};
    const bool stat_ok = ::fstat(fd, &st) == 0;
    const uint64_t size = stat_ok ? static_cast<uint64_t>(st.st_size) : 0;
    void* map = MAP_FAILED;
    if (stat_ok && size >= detail::gallery_header_bytes + 8) map = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    ::close(fd);
    TRIDENT_CHECK(stat_ok && size >= detail::gallery_header_bytes + 8,
                  "{}: '{}' has {} bytes, fewer than a gallery index's header and checksum ({}): truncated?", fn,
                  path, size, detail::gallery_header_bytes + 8);
    if (map != MAP_FAILED) {
      index.owner_ = std::shared_ptr<const void>(map, [size](const void* m) { ::munmap(const_cast<void*>(m), size); });
      index.data_ = static_cast<const char*>(map);
      index.size_ = size;
    } else {
      auto bytes = std::make_shared<const std::string>(read_whole_file(path, fn));
      index.data_ = bytes->data();
      index.size_ = bytes->size();
      index.owner_ = std::move(bytes);
    }
    index.validate(options);
    return index;
  }

  const std::string& path() const { return path_; }
  int64_t size() const { return count_; }
  int64_t dim() const { return dim_; }
  uint64_t file_size() const { return size_; }
  /// The checksum stored in the file (what a FAISS sidecar records to know its gallery index).
  uint64_t checksum() const { return checksum_; }
  const std::vector<std::string>& pictures() const { return pictures_; }
  const std::string& description() const { return description_; }
  /// [N, D] float32, [N, 4] float32, [N] float32, [N] int64: read-only views of the mapping.
  at::Tensor embeddings() const { return view(at_[0], {count_, dim_}, at::kFloat); }
  at::Tensor boxes() const { return view(at_[1], {count_, 4}, at::kFloat); }
  at::Tensor scores() const { return view(at_[2], {count_}, at::kFloat); }
  at::Tensor picture_of() const { return view(at_[3], {count_}, at::kLong); }

  /// The best params.top_k detections for each query of `queries` ([D] or [Q, D], unit rows), best first.
  std::vector<std::vector<IndexHit>> search(const at::Tensor& queries, const SearchParams& params = {}) const {
    const auto q = prepare_queries(queries, "trident::search::GalleryIndex::search");
    const auto found = exact_top_k(embeddings(), scores(), q, params);
    std::vector<std::vector<IndexHit>> out(found.size());
    for (size_t r = 0; r < found.size(); ++r)
      for (const auto& [value, row] : found[r]) out[r].push_back(hit(row, value));
    return out;
  }

  /// `queries` as [Q, D] contiguous float32 on the CPU, after checking its shape and that every row is unit
  /// length (the error names `caller`, the query row and its norm).
  at::Tensor prepare_queries(const at::Tensor& queries, std::string_view caller) const {
    TRIDENT_CHECK(queries.defined() && (queries.dim() == 1 || queries.dim() == 2) && queries.size(-1) == dim_,
                  "{}: queries must be [{}] or [Q, {}] for '{}', got {}", caller, dim_, dim_, path_, shape_of(queries));
    const auto q = queries.detach().reshape({-1, dim_}).to(at::kCPU, at::kFloat).contiguous();
    check_unit_rows(q, 1e-3, caller, [](size_t r) { return fmt::format("query row {}", r); });
    return q;
  }

  /// The hit for `row` with similarity `value`: its picture, box and score read from the index.
  IndexHit hit(int64_t row, double value) const {
    constexpr const char* fn = "trident::search::GalleryIndex::hit";
    TRIDENT_CHECK(row >= 0 && row < count_, "{}: row {} is not a row of '{}' ({} rows)", fn, row, path_, count_);
    const auto r = static_cast<uint64_t>(row);
    IndexHit h;
    h.row = row;
    h.picture = read_le<int64_t>(data_, at_[3] + 8 * r);
    h.picture_name = pictures_[static_cast<size_t>(h.picture)];
    for (uint64_t k = 0; k < 4; ++k) h.box[k] = read_le<float>(data_, at_[1] + 16 * r + 4 * k);
    h.score = read_le<float>(data_, at_[2] + 4 * r);
    h.similarity = value;
    return h;
  }

 private:
  GalleryIndex() = default;

  at::Tensor view(uint64_t offset, std::vector<int64_t> sizes, at::ScalarType type) const {
    auto owner = owner_;  // the tensor's deleter keeps the mapping alive
    return at::from_blob(const_cast<char*>(data_ + offset), sizes, [owner](void*) {},
                         at::TensorOptions().dtype(type));
  }

  void validate(const OpenOptions& options) {
    constexpr const char* fn = "trident::search::GalleryIndex::open";
    const auto u64 = [this](uint64_t at) { return read_le<uint64_t>(data_, at); };
    TRIDENT_CHECK(std::string_view(data_, 8) == gallery_index_magic,
                  "{}: '{}' is not a trident gallery index: its magic is '{}', not 'TRIDGIDX'", fn, path_,
                  std::string(data_, 8));
    const auto version = read_le<uint32_t>(data_, 8);
    TRIDENT_CHECK(version == gallery_index_version, "{}: '{}': version {}, this build reads version {}", fn, path_,
                  version, gallery_index_version);
    TRIDENT_CHECK(u64(96) == size_, "{}: '{}': the header's file size is {} bytes, the file has {} (truncated?)", fn,
                  path_, u64(96), size_);
    const uint64_t dim = read_le<uint32_t>(data_, 12);
    TRIDENT_CHECK(dim >= 1 && dim <= detail::gallery_max_dim, "{}: '{}': dim = {} is outside [1, {}]", fn, path_, dim,
                  detail::gallery_max_dim);
    const uint64_t count = u64(16), pictures = u64(24), name_bytes = u64(72), description_bytes = u64(88);
    // Each count bounded by the file's size first, so that the layout's arithmetic cannot overflow.
    TRIDENT_CHECK(count <= size_ / (4 * dim + 28), "{}: '{}': count = {} detections of dim {} do not fit in {} bytes",
                  fn, path_, count, dim, size_);
    TRIDENT_CHECK(pictures < size_ / 8, "{}: '{}': pictures = {} do not fit in {} bytes", fn, path_, pictures, size_);
    TRIDENT_CHECK(name_bytes <= size_, "{}: '{}': name bytes = {} do not fit in {} bytes", fn, path_, name_bytes, size_);
    TRIDENT_CHECK(description_bytes <= size_, "{}: '{}': description bytes = {} do not fit in {} bytes", fn, path_,
                  description_bytes, size_);
    const auto layout = detail::gallery_layout(count, dim, pictures, name_bytes, description_bytes);
    TRIDENT_CHECK(layout[6] + 8 == size_, "{}: '{}': count {}, dim {}, pictures {} need {} bytes, the file has {}", fn,
                  path_, count, dim, pictures, layout[6] + 8, size_);
    constexpr std::array<const char*, 6> sections{"embeddings", "boxes", "scores", "picture_of", "names",
                                                  "description"};
    for (size_t k = 0; k < 6; ++k) {
      const uint64_t field = k < 5 ? 32 + 8 * k : 80;
      TRIDENT_CHECK(u64(field) == layout[k], "{}: '{}': the {} offset is {}, expected {}", fn, path_, sections[k],
                    u64(field), layout[k]);
    }
    checksum_ = u64(layout[6]);
    if (options.verify_checksum) {
      const uint64_t actual = detail::fnv1a_words(data_, layout[6] / 8);
      TRIDENT_CHECK(actual == checksum_,
                    "{}: '{}': checksum {:016x} does not match the contents ({:016x}): the file is corrupted", fn,
                    path_, checksum_, actual);
    }
    const uint64_t table = layout[4], text = table + 8 * (pictures + 1);
    TRIDENT_CHECK(u64(table) == 0 && u64(table + 8 * pictures) == name_bytes,
                  "{}: '{}': the picture-name offsets run from {} to {}, expected 0 to {}", fn, path_, u64(table),
                  u64(table + 8 * pictures), name_bytes);
    pictures_.reserve(pictures);
    for (uint64_t i = 0; i < pictures; ++i) {
      const uint64_t begin = u64(table + 8 * i), end = u64(table + 8 * i + 8);
      TRIDENT_CHECK(begin <= end && end <= name_bytes,
                    "{}: '{}': picture name {} has offsets {} to {} (out of order or past the {} name bytes)", fn,
                    path_, i, begin, end, name_bytes);
      pictures_.emplace_back(data_ + text + begin, end - begin);
    }
    description_.assign(data_ + layout[5], description_bytes);
    std::copy(layout.begin(), layout.end(), at_.begin());
    count_ = static_cast<int64_t>(count);
    dim_ = static_cast<int64_t>(dim);
    for (int64_t i = 0; i < count_; ++i) {
      const auto r = static_cast<uint64_t>(i);
      const auto picture = read_le<int64_t>(data_, layout[3] + 8 * r);
      TRIDENT_CHECK(picture >= 0 && static_cast<uint64_t>(picture) < pictures,
                    "{}: '{}': picture_of[{}] = {} is not a picture index (there are {})", fn, path_, i, picture,
                    pictures);
      const auto score = read_le<float>(data_, layout[2] + 4 * r);
      TRIDENT_CHECK(std::isfinite(score), "{}: '{}': scores[{}] = {} is not finite", fn, path_, i, score);
      for (uint64_t k = 0; k < 4; ++k) {
        const auto v = read_le<float>(data_, layout[1] + 16 * r + 4 * k);
        TRIDENT_CHECK(std::isfinite(v), "{}: '{}': boxes[{}][{}] = {} is not finite", fn, path_, i, k, v);
      }
    }
    if (options.check_unit_norms)
      check_unit_rows(embeddings(), options.unit_norm_tolerance, fn,
                      [&](size_t r) { return fmt::format("'{}': embeddings row {}", path_, r); });
  }

  std::string path_;
  std::shared_ptr<const void> owner_;
  const char* data_ = nullptr;
  uint64_t size_ = 0;
  std::array<uint64_t, 7> at_{};
  int64_t count_ = 0, dim_ = 0;
  uint64_t checksum_ = 0;
  std::vector<std::string> pictures_;
  std::string description_;
};

}  // namespace trident::search
