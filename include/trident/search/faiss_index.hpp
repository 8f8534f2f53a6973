#pragma once
/// \file trident/search/faiss_index.hpp
/// Approximate search of a gallery index (search/gallery_index.hpp) with FAISS, for archives too large to scan
/// for every query. Part of trident::faiss (FAISS: Debian's libfaiss-dev); the exact GalleryIndex::search needs
/// none of it.
///
/// What FAISS holds: the rows whose score passes FaissBuildOptions::score_threshold (recorded; a search with a
/// lower threshold is refused), by the inner product of their unit embeddings, i.e. the cosine. A search asks
/// FAISS for the best `candidates` rows by cosine (default max(4 k, 64)), drops those under the search's score
/// threshold and ranks the rest exactly by the search's similarity (confidence-weighted or plain cosine),
/// computed from the gallery index's own float32 embeddings as GalleryIndex::search computes it. While fewer
/// than k candidates pass, or a row outside the candidates could still beat the k-th (its cosine is at most the
/// last candidate's, its score at most the highest indexed), it asks again for twice as many. So with the exact
/// kind (flat) the hits are GalleryIndex::search's, threshold and weighting included.
///
/// Kinds (FaissKind), `automatic` choosing by the number N of indexed rows (figures: docs/gallery-index.md):
///   flat   N < 50,000: faiss::IndexFlatIP, exact;
///   ivf    N >= 50,000: an inverted file over k-means lists, nlist = the power of two nearest to 4 sqrt(N),
///          within [64, 4096] (k-means on few cores costs N x nlist), trained with 10 iterations on 40 nlist
///          evenly spaced rows; nprobe = max(16, nlist / 16) lists searched per query. The lists hold float32 rows
///          (faiss::IndexIVFFlat) while those take at most 256 MiB, else 8-bit product codes of D / 8 bytes a row
///          (faiss::IndexIVFPQ): the re-ranking above makes the hits exact among the candidates, so the codes
///          only choose them (recall@10 0.9965 at 1.9 ms on the clustered 10^6 x 256 set of
///          bench_gallery_index, 0.98 at 7.4 ms on 10^7, two cores);
///   hnsw   on request: faiss::IndexHNSWFlat, M = 32, efConstruction = 80, efSearch = 128 (hours to build for
///          10^7 rows on two cores).
/// save() writes the structure beside the gallery index (sidecar_path: `<index>.faiss`), atomically, with a
/// header naming the gallery index's checksum, rows and file size; load() refuses a sidecar of another index.
///
/// Sidecar layout, version 1 (little-endian): char[8] "TRIDFAIS"; u32 version; u32 dim; u64 the gallery index's
/// checksum, rows, file size; f64 score threshold; u64 M indexed rows; u32 kind (1 flat, 2 ivf, 3 hnsw); u32 0;
/// M int64 gallery rows (FAISS id i is gallery row rows[i]); u64 bytes of the FAISS structure, those bytes as
/// faiss::write_index writes them, zero padding to 8 bytes; u64 checksum (the gallery index's word-wise FNV-1a).
#include <trident/config.hpp>
#include <trident/core/files.hpp>
#include <trident/search/gallery_index.hpp>

#include <faiss/IndexFlat.h>
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexIVFPQFastScan.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/impl/io.h>
#include <faiss/index_io.h>

#include <ATen/ops/index_select.h>
#include <ATen/ops/matmul.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/tensor.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace trident::search {

enum class FaissKind { automatic = 0, flat = 1, ivf = 2, hnsw = 3 };
/// How an IVF index stores its rows: float32 (flat), 8-bit scalar codes (sq8, D bytes a row), product codes of
/// 8 bits (pq: D / 8 sub-vectors, D / 8 bytes a row) or 4 bits scanned with FAISS's fast-scan kernels (pq4: D / 4
/// sub-vectors, D / 8 bytes a row). Codes only choose the candidates: a search re-ranks them exactly from the
/// gallery index's float32 rows.
enum class IvfStorage { automatic, flat, sq8, pq, pq4 };

inline const char* ivf_storage_name(IvfStorage storage) {
  switch (storage) {
    case IvfStorage::automatic: return "auto";
    case IvfStorage::flat: return "flat";
    case IvfStorage::sq8: return "sq8";
    case IvfStorage::pq: return "pq";
    case IvfStorage::pq4: return "pq4";
  }
  return "?";
}

inline IvfStorage parse_ivf_storage(std::string_view text, std::string_view caller) {
  for (const auto storage : {IvfStorage::automatic, IvfStorage::flat, IvfStorage::sq8, IvfStorage::pq, IvfStorage::pq4})
    if (text == ivf_storage_name(storage)) return storage;
  fail("{}: '{}' is not an IVF storage (auto, flat, sq8, pq, pq4)", caller, text);
}

inline const char* faiss_kind_name(FaissKind kind) {
  switch (kind) {
    case FaissKind::automatic: return "auto";
    case FaissKind::flat: return "flat";
    case FaissKind::ivf: return "ivf";
    case FaissKind::hnsw: return "hnsw";
  }
  return "?";
}

/// "auto", "flat", "ivf" or "hnsw"; anything else is refused, naming `caller`.
inline FaissKind parse_faiss_kind(std::string_view text, std::string_view caller) {
  for (const auto kind : {FaissKind::automatic, FaissKind::flat, FaissKind::ivf, FaissKind::hnsw})
    if (text == faiss_kind_name(kind)) return kind;
  fail("{}: '{}' is not a FAISS index kind (auto, flat, ivf, hnsw)", caller, text);
}

struct FaissBuildOptions {
  FaissKind kind = FaissKind::automatic;
  double score_threshold = 0;  ///< rows indexed: score >= this (a search may ask for more, never for less)
  int64_t nlist = 0;           ///< IVF lists; 0: automatic (file comment)
  int64_t nprobe = 0;          ///< IVF lists searched per query; 0: automatic
  IvfStorage storage = IvfStorage::automatic;
  int hnsw_m = 32;
  int hnsw_ef_construction = 80;
  int hnsw_ef_search = 128;
  int64_t chunk_rows = 1 << 16;  ///< rows handed to FAISS at a time (bounds the copies of a large index)
};

/// The automatic choices of the file comment for N indexed rows of dimension D.
inline FaissKind automatic_faiss_kind(int64_t rows) { return rows < 50000 ? FaissKind::flat : FaissKind::ivf; }
inline int64_t automatic_nlist(int64_t rows) {
  const double target = 4.0 * std::sqrt(static_cast<double>(std::max<int64_t>(rows, 1)));
  const int64_t power = int64_t{1} << static_cast<int>(std::lround(std::log2(target)));
  return std::clamp<int64_t>(power, 64, 4096);
}
inline int64_t automatic_nprobe(int64_t nlist) { return std::max<int64_t>(16, nlist / 16); }
inline IvfStorage automatic_ivf_storage(int64_t rows, int64_t dim) {
  return static_cast<double>(rows) * static_cast<double>(dim) * 4.0 > 256.0 * (1ULL << 20) ? IvfStorage::pq
                                                                                             : IvfStorage::flat;
}

/// Product-quantiser sub-vectors for D dimensions: the largest divisor of D that is at most D / `width` (each
/// sub-vector at least `width` wide), at least 1.
inline size_t pq_subvectors(int dim, int width) {
  for (int m = std::max(1, dim / width); m > 1; --m)
    if (dim % m == 0) return static_cast<size_t>(m);
  return 1;
}

/// A FAISS structure over (some of) the rows of one gallery index.
class FaissIndex {
 public:
  /// `<gallery index path>.faiss`: where 07_build_index writes the sidecar and where a searcher looks for it.
  static std::string sidecar_path(const std::string& gallery_path) { return gallery_path + ".faiss"; }

  /// Indexes the rows of `gallery` whose score passes options.score_threshold.
  static FaissIndex build(const GalleryIndex& gallery, const FaissBuildOptions& options = {}) {
    constexpr const char* fn = "trident::search::FaissIndex::build";
    const auto keep = (gallery.scores() >= options.score_threshold).nonzero().select(1, 0).contiguous();
    TRIDENT_CHECK(keep.numel() > 0, "{}: no row of '{}' has a score >= {}", fn, gallery.path(), options.score_threshold);
    TRIDENT_CHECK(options.chunk_rows >= 1, "{}: chunk_rows must be >= 1, got {}", fn, options.chunk_rows);
    FaissIndex out;
    out.rows_.assign(keep.data_ptr<int64_t>(), keep.data_ptr<int64_t>() + keep.numel());
    out.dim_ = gallery.dim();
    out.score_threshold_ = options.score_threshold;
    out.gallery_checksum_ = gallery.checksum();
    out.gallery_rows_ = gallery.size();
    out.gallery_bytes_ = gallery.file_size();
    const auto n = static_cast<int64_t>(out.rows_.size());
    const auto d = static_cast<int>(out.dim_);
    const auto embeddings = gallery.embeddings();
    const bool every_row = n == gallery.size();
    // Rows [begin, begin + count) of the indexed ones, as a contiguous float32 block (a view when every row is).
    const auto rows_of = [&](int64_t begin, int64_t count) {
      if (every_row) return embeddings.narrow(0, begin, count);
      return embeddings.index_select(0, keep.narrow(0, begin, count)).contiguous();
    };
    out.kind_ = options.kind == FaissKind::automatic ? automatic_faiss_kind(n) : options.kind;
    if (out.kind_ == FaissKind::flat) {
      out.index_ = std::make_unique<faiss::IndexFlatIP>(d);
    } else if (out.kind_ == FaissKind::hnsw) {
      auto hnsw = std::make_unique<faiss::IndexHNSWFlat>(d, options.hnsw_m, faiss::METRIC_INNER_PRODUCT);
      hnsw->hnsw.efConstruction = options.hnsw_ef_construction;
      hnsw->hnsw.efSearch = options.hnsw_ef_search;
      out.index_ = std::move(hnsw);
    } else {
      const int64_t nlist = options.nlist > 0 ? options.nlist : automatic_nlist(n);
      TRIDENT_CHECK(n >= nlist, "{}: an IVF index of {} lists needs at least {} rows; '{}' has {} with score >= {}",
                    fn, nlist, nlist, gallery.path(), n, options.score_threshold);
      const auto storage =
          options.storage == IvfStorage::automatic ? automatic_ivf_storage(n, out.dim_) : options.storage;
      const int64_t codebook = storage == IvfStorage::pq ? 256 : storage == IvfStorage::pq4 ? 16 : 1;
      TRIDENT_CHECK(n >= codebook,
                    "{}: IVF storage '{}' trains {} centroids per sub-vector and needs at least {} rows; '{}' has {} "
                    "with score >= {}", fn, ivf_storage_name(storage), codebook, codebook, gallery.path(), n,
                    options.score_threshold);
      auto quantizer = std::make_unique<faiss::IndexFlatIP>(d);
      std::unique_ptr<faiss::IndexIVF> ivf;
      const auto lists = static_cast<size_t>(nlist);
      if (storage == IvfStorage::sq8) {
        ivf = std::make_unique<faiss::IndexIVFScalarQuantizer>(quantizer.get(), d, lists,
                                                               faiss::ScalarQuantizer::QT_8bit,
                                                               faiss::METRIC_INNER_PRODUCT);
      } else if (storage == IvfStorage::pq) {
        ivf = std::make_unique<faiss::IndexIVFPQ>(quantizer.get(), d, lists, pq_subvectors(d, 8), 8,
                                                  faiss::METRIC_INNER_PRODUCT);
      } else if (storage == IvfStorage::pq4) {
        ivf = std::make_unique<faiss::IndexIVFPQFastScan>(quantizer.get(), d, lists, pq_subvectors(d, 4), 4,
                                                          faiss::METRIC_INNER_PRODUCT);
      } else {
        ivf = std::make_unique<faiss::IndexIVFFlat>(quantizer.get(), d, lists, faiss::METRIC_INNER_PRODUCT);
      }
      ivf->own_fields = true;
      quantizer.release();
      ivf->nprobe = static_cast<size_t>(options.nprobe > 0 ? options.nprobe : automatic_nprobe(nlist));
      ivf->cp.niter = 10;
      ivf->cp.max_points_per_centroid = 40;
      // k-means on 40 rows per list, evenly spaced over the indexed rows.
      const int64_t sample = std::min<int64_t>(n, 40 * nlist);
      std::vector<int64_t> picks(static_cast<size_t>(sample));
      for (int64_t i = 0; i < sample; ++i) picks[static_cast<size_t>(i)] = out.rows_[static_cast<size_t>(i * n / sample)];
      const auto training = embeddings.index_select(0, at::tensor(picks, at::kLong)).contiguous();
      ivf->train(sample, training.data_ptr<float>());
      out.index_ = std::move(ivf);
    }
    for (int64_t begin = 0; begin < n; begin += options.chunk_rows) {
      const auto block = rows_of(begin, std::min(options.chunk_rows, n - begin));
      out.index_->add(block.size(0), block.data_ptr<float>());
    }
    out.prepare(gallery);
    return out;
  }

  /// Reads the sidecar at `path` written for `gallery`; refuses a corrupted one, or one of another index.
  static FaissIndex load(const std::string& path, const GalleryIndex& gallery) {
    constexpr const char* fn = "trident::search::FaissIndex::load";
    const std::string bytes = read_whole_file(path, fn);
    const char* b = bytes.data();
    const uint64_t size = bytes.size();
    TRIDENT_CHECK(size >= header_bytes + 16 && size % 8 == 0,
                  "{}: '{}' has {} bytes: not a trident FAISS sidecar (truncated?)", fn, path, size);
    TRIDENT_CHECK(std::string_view(b, 8) == magic, "{}: '{}' is not a trident FAISS sidecar: its magic is '{}'", fn,
                  path, std::string(b, 8));
    const auto version = read_le<uint32_t>(b, 8);
    TRIDENT_CHECK(version == 1, "{}: '{}': version {}, this build reads version 1", fn, path, version);
    const uint64_t checksum = read_le<uint64_t>(b, size - 8);
    const uint64_t actual = detail::fnv1a_words(b, (size - 8) / 8);
    TRIDENT_CHECK(checksum == actual, "{}: '{}': checksum {:016x} does not match the contents ({:016x}): corrupted",
                  fn, path, checksum, actual);
    FaissIndex out;
    out.dim_ = read_le<uint32_t>(b, 12);
    out.gallery_checksum_ = read_le<uint64_t>(b, 16);
    out.gallery_rows_ = static_cast<int64_t>(read_le<uint64_t>(b, 24));
    out.gallery_bytes_ = read_le<uint64_t>(b, 32);
    out.score_threshold_ = read_le<double>(b, 40);
    TRIDENT_CHECK(out.gallery_checksum_ == gallery.checksum() && out.gallery_rows_ == gallery.size() &&
                      out.gallery_bytes_ == gallery.file_size() && out.dim_ == gallery.dim(),
                  "{}: '{}' belongs to a gallery index of {} rows, {} bytes, checksum {:016x}, not to '{}' ({} rows, "
                  "{} bytes, checksum {:016x}): rebuild it (07_build_index --ann)", fn, path, out.gallery_rows_,
                  out.gallery_bytes_, out.gallery_checksum_, gallery.path(), gallery.size(), gallery.file_size(),
                  gallery.checksum());
    const uint64_t count = read_le<uint64_t>(b, 48);
    const auto kind = read_le<uint32_t>(b, 56);
    TRIDENT_CHECK(kind >= 1 && kind <= 3, "{}: '{}': kind = {} (1 flat, 2 ivf, 3 hnsw)", fn, path, kind);
    out.kind_ = static_cast<FaissKind>(kind);
    TRIDENT_CHECK(count <= static_cast<uint64_t>(gallery.size()) && count <= (size - header_bytes - 16) / 8,
                  "{}: '{}': {} indexed rows do not fit in the file ({} bytes) or the gallery index ({} rows)", fn,
                  path, count, size, gallery.size());
    out.rows_.resize(count);
    std::memcpy(out.rows_.data(), b + header_bytes, count * 8);
    for (uint64_t i = 0; i < count; ++i)
      TRIDENT_CHECK(out.rows_[i] >= 0 && out.rows_[i] < gallery.size(),
                    "{}: '{}': indexed row {} is {}, not a row of '{}'", fn, path, i, out.rows_[i], gallery.path());
    const uint64_t at = header_bytes + 8 * count;
    const uint64_t structure = read_le<uint64_t>(b, at);
    TRIDENT_CHECK(structure <= size - at - 16, "{}: '{}': the FAISS structure's {} bytes do not fit in {} bytes", fn,
                  path, structure, size);
    faiss::VectorIOReader reader;
    reader.data.assign(b + at + 8, b + at + 8 + structure);
    try {
      out.index_.reset(faiss::read_index(&reader));
    } catch (const std::exception& e) {
      fail("{}: '{}': FAISS cannot read the structure: {}", fn, path, e.what());
    }
    TRIDENT_CHECK(out.index_->d == out.dim_ && static_cast<uint64_t>(out.index_->ntotal) == count,
                  "{}: '{}': the FAISS structure holds {} rows of dim {}, the header says {} of dim {}", fn, path,
                  out.index_->ntotal, out.index_->d, count, out.dim_);
    out.prepare(gallery);
    return out;
  }

  /// Writes the sidecar (layout in the file comment) to `path` atomically.
  void save(const std::string& path) const {
    faiss::VectorIOWriter writer;
    faiss::write_index(index_.get(), &writer);
    std::string bytes(header_bytes, '\0');
    const auto put = [&bytes](uint64_t offset, auto value) { write_le(bytes.data(), offset, value); };
    std::memcpy(bytes.data(), magic.data(), 8);
    put(8, uint32_t{1});
    put(12, static_cast<uint32_t>(dim_));
    put(16, gallery_checksum_);
    put(24, static_cast<uint64_t>(gallery_rows_));
    put(32, gallery_bytes_);
    put(40, score_threshold_);
    put(48, static_cast<uint64_t>(rows_.size()));
    put(56, static_cast<uint32_t>(kind_));
    bytes.append(reinterpret_cast<const char*>(rows_.data()), rows_.size() * 8);
    const auto structure = static_cast<uint64_t>(writer.data.size());
    bytes.append(reinterpret_cast<const char*>(&structure), 8);
    bytes.append(reinterpret_cast<const char*>(writer.data.data()), writer.data.size());
    bytes.append((8 - bytes.size() % 8) % 8, '\0');
    const uint64_t checksum = detail::fnv1a_words(bytes.data(), bytes.size() / 8);
    bytes.append(reinterpret_cast<const char*>(&checksum), 8);
    write_bytes_atomically(path, bytes, "trident::search::FaissIndex::save");
  }

  FaissKind kind() const { return kind_; }
  int64_t size() const { return static_cast<int64_t>(rows_.size()); }
  int64_t dim() const { return dim_; }
  double score_threshold() const { return score_threshold_; }
  /// IVF: lists and lists searched per query; 0 for the other kinds.
  int64_t nlist() const { return ivf() ? static_cast<int64_t>(ivf()->nlist) : 0; }
  int64_t nprobe() const { return ivf() ? static_cast<int64_t>(ivf()->nprobe) : 0; }
  /// IVF: how the lists store the rows; IvfStorage::automatic for the other kinds.
  IvfStorage ivf_storage() const {
    const auto* index = index_.get();
    if (dynamic_cast<const faiss::IndexIVFPQFastScan*>(index)) return IvfStorage::pq4;
    if (dynamic_cast<const faiss::IndexIVFPQ*>(index)) return IvfStorage::pq;
    if (dynamic_cast<const faiss::IndexIVFScalarQuantizer*>(index)) return IvfStorage::sq8;
    if (dynamic_cast<const faiss::IndexIVFFlat*>(index)) return IvfStorage::flat;
    return IvfStorage::automatic;
  }
  void set_nprobe(int64_t nprobe) {
    TRIDENT_CHECK(nprobe >= 1, "trident::search::FaissIndex::set_nprobe: nprobe must be >= 1, got {}", nprobe);
    if (auto* index = ivf()) index->nprobe = static_cast<size_t>(nprobe);
  }
  /// HNSW: the candidates kept while walking the graph (at least the candidates asked for).
  void set_ef_search(int ef) {
    TRIDENT_CHECK(ef >= 1, "trident::search::FaissIndex::set_ef_search: efSearch must be >= 1, got {}", ef);
    if (auto* hnsw = dynamic_cast<faiss::IndexHNSW*>(index_.get())) hnsw->hnsw.efSearch = ef;
  }
  /// Bytes of the FAISS structure as serialised (vectors or codes, lists, graph): its memory, give or take.
  size_t memory_bytes() const {
    faiss::VectorIOWriter writer;
    faiss::write_index(index_.get(), &writer);
    return writer.data.size();
  }
  const faiss::Index& faiss_index() const { return *index_; }

  /// The search of the file comment: per query the best params.top_k hits of `gallery` (the index this was
  /// built for), best first. `candidates`: rows asked of FAISS at first (0: max(4 k, 64)).
  std::vector<std::vector<IndexHit>> search(const GalleryIndex& gallery, const at::Tensor& queries,
                                            const SearchParams& params = {}, int64_t candidates = 0) const {
    constexpr const char* fn = "trident::search::FaissIndex::search";
    TRIDENT_CHECK(gallery.checksum() == gallery_checksum_ && gallery.size() == gallery_rows_,
                  "{}: this FAISS index belongs to a gallery index of {} rows with checksum {:016x}, not to '{}'", fn,
                  gallery_rows_, gallery_checksum_, gallery.path());
    TRIDENT_CHECK(params.score_threshold >= score_threshold_,
                  "{}: the search's score threshold {} is below the {} this FAISS index was built with (the rows "
                  "between are not in it)", fn, params.score_threshold, score_threshold_);
    TRIDENT_CHECK(params.top_k >= 1, "{}: top_k must be >= 1, got {}", fn, params.top_k);
    const auto q = gallery.prepare_queries(queries, fn);
    const auto embeddings = gallery.embeddings();
    const auto scores = gallery.scores();
    const float* s = scores.data_ptr<float>();
    const double highest = highest_score_;
    const int64_t first = std::min(size(), candidates > 0 ? candidates : std::max<int64_t>(4 * params.top_k, 64));
    std::vector<std::vector<IndexHit>> out(static_cast<size_t>(q.size(0)));
    auto found = nearest(q, first);
    for (int64_t r = 0; r < q.size(0); ++r) {
      const auto query = q.narrow(0, r, 1);
      for (int64_t asked = first;; asked = std::min(size(), 2 * asked)) {
        auto& pairs = found[static_cast<size_t>(r)];
        // The candidates that pass the threshold, ranked by the search's similarity (the exact path's formula).
        std::vector<int64_t> passing;
        for (const auto& [row, cosine] : pairs)
          if (s[row] >= params.score_threshold) passing.push_back(row);
        std::vector<std::pair<double, int64_t>> ranked;
        if (!passing.empty()) {
          const auto rows = at::tensor(passing, at::kLong);
          const auto sims = similarity(query, embeddings.index_select(0, rows), scores.index_select(0, rows),
                                       params.weighting).contiguous();
          for (size_t j = 0; j < passing.size(); ++j) ranked.emplace_back(sims.data_ptr<float>()[j], passing[j]);
        }
        std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
          return a.first > b.first || (a.first == b.first && a.second < b.second);
        });
        const bool exhausted = static_cast<int64_t>(pairs.size()) < asked || asked >= size();
        bool complete = exhausted;
        if (!complete && static_cast<int64_t>(ranked.size()) >= params.top_k) {
          // A row FAISS did not return has a cosine <= the last candidate's (for an exact kind).
          const double last = pairs.back().second;
          const double bound = params.weighting == SimilarityWeighting::none ? last
                               : last >= 0                                    ? highest * last
                                                                              : 0.0;
          complete = ranked[static_cast<size_t>(params.top_k - 1)].first > bound;
        }
        if (complete) {
          if (static_cast<int64_t>(ranked.size()) > params.top_k) ranked.resize(static_cast<size_t>(params.top_k));
          for (const auto& [value, row] : ranked) out[static_cast<size_t>(r)].push_back(gallery.hit(row, value));
          break;
        }
        pairs = std::move(nearest(query, std::min(size(), 2 * asked))[0]);
      }
    }
    return out;
  }

  /// The best `k` indexed rows by inner product for each query ([Q, D] float32 CPU contiguous): (gallery row,
  /// inner product), best first; fewer where FAISS finds fewer.
  std::vector<std::vector<std::pair<int64_t, float>>> nearest(const at::Tensor& queries, int64_t k) const {
    const int64_t nq = queries.size(0);
    std::vector<float> distances(static_cast<size_t>(nq * k));
    std::vector<faiss::Index::idx_t> labels(static_cast<size_t>(nq * k));
    index_->search(nq, queries.data_ptr<float>(), k, distances.data(), labels.data());
    std::vector<std::vector<std::pair<int64_t, float>>> out(static_cast<size_t>(nq));
    for (int64_t r = 0; r < nq; ++r)
      for (int64_t j = 0; j < k; ++j) {
        const auto label = labels[static_cast<size_t>(r * k + j)];
        if (label >= 0 && label < size())
          out[static_cast<size_t>(r)].emplace_back(rows_[static_cast<size_t>(label)],
                                                   distances[static_cast<size_t>(r * k + j)]);
      }
    return out;
  }

 private:
  static constexpr uint64_t header_bytes = 64;
  static constexpr std::string_view magic{"TRIDFAIS", 8};

  faiss::IndexIVF* ivf() const { return dynamic_cast<faiss::IndexIVF*>(index_.get()); }

  /// After build or load: the highest indexed score (the bound of search) and, for IVF, the lists of one query
  /// spread over the threads (FAISS's parallel_mode 1; its default spreads queries, which leaves one query on
  /// one thread).
  void prepare(const GalleryIndex& gallery) {
    const auto scores = gallery.scores();
    const float* s = scores.data_ptr<float>();
    highest_score_ = 0;
    for (const int64_t row : rows_) highest_score_ = std::max(highest_score_, static_cast<double>(s[row]));
    if (auto* index = ivf()) index->parallel_mode = 1;
  }

  std::unique_ptr<faiss::Index> index_;
  std::vector<int64_t> rows_;
  FaissKind kind_ = FaissKind::flat;
  int64_t dim_ = 0;
  double score_threshold_ = 0, highest_score_ = 0;
  uint64_t gallery_checksum_ = 0;
  int64_t gallery_rows_ = 0;
  uint64_t gallery_bytes_ = 0;
};

}  // namespace trident::search
