// The gallery index (search/gallery_index.hpp): the file format round trip, atomic writes, every corruption
// refused with its message, exact search against a plain double-precision loop; and, where FAISS is built in
// (search/faiss_index.hpp), FAISS flat = exact, IVF/HNSW recall on clustered data, and a sidecar of another
// index refused.
#include "support/fixtures.hpp"

#include <trident/search/gallery_index.hpp>
#if TRIDENT_TESTS_WITH_FAISS
#include <trident/search/faiss_index.hpp>
#endif

#include <ATen/ops/cat.h>
#include <ATen/ops/dot.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace trident;
using search::GalleryIndex;
using search::GalleryIndexData;

namespace {

std::string index_path(const std::string& name) {
  const auto dir = std::filesystem::path(TRIDENT_TEST_TMP_DIR) / "gallery-index";
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

at::Tensor unit_rows(const at::Tensor& x) { return x / x.norm(2, {1}, /*keepdim=*/true); }

/// A random gallery of `n` detections of dimension `dim` over `pictures` pictures (fixed seed).
GalleryIndexData random_gallery(int64_t n, int64_t dim, int64_t pictures, uint64_t seed) {
  at::manual_seed(seed);
  GalleryIndexData gallery;
  for (int64_t p = 0; p < pictures; ++p) gallery.pictures.push_back(fmt::format("pictures/scene {:03d} é.jpg", p));
  gallery.picture_of = at::randint(pictures, {n}, at::kLong);
  const auto corner = at::rand({n, 2}) * 500;
  gallery.boxes = at::cat({corner, corner + 10 + at::rand({n, 2}) * 100}, 1);
  gallery.scores = at::rand({n});
  gallery.embeddings = unit_rows(at::randn({n, dim}));
  gallery.description = "checkpoint: test.pt; config: small";
  return gallery;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

template <class T>
void poke(std::string& bytes, uint64_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof value);
}

template <class T>
T peek(const std::string& bytes, uint64_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof value);
  return value;
}

/// Recomputes the trailer's checksum after an edit (so that the check under test, not the checksum, refuses).
void reseal(std::string& bytes) {
  poke(bytes, bytes.size() - 8, search::detail::fnv1a_words(bytes.data(), (bytes.size() - 8) / 8));
}

/// The message of what open() throws for `bytes` (empty when it opens).
std::string refusal(const std::string& bytes, const search::OpenOptions& options = {}) {
  const auto path = index_path("corrupt.tgi");
  write_file(path, bytes);
  try {
    GalleryIndex::open(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// The reference: every row, similarity in double precision, a stable sort by (similarity desc, row asc).
std::vector<std::pair<double, int64_t>> brute_force(const GalleryIndexData& gallery, const std::vector<float>& query,
                                                    const search::SearchParams& params) {
  const auto e = gallery.embeddings.contiguous();
  const auto s = gallery.scores.contiguous();
  const int64_t n = e.size(0), dim = e.size(1);
  std::vector<std::pair<double, int64_t>> all;
  for (int64_t r = 0; r < n; ++r) {
    const double score = s.data_ptr<float>()[r];
    if (score < params.score_threshold) continue;
    double dot = 0;
    for (int64_t k = 0; k < dim; ++k) dot += static_cast<double>(query[static_cast<size_t>(k)]) * e.data_ptr<float>()[r * dim + k];
    all.emplace_back(params.weighting == search::SimilarityWeighting::confidence ? dot * score : dot, r);
  }
  std::stable_sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  if (static_cast<int64_t>(all.size()) > params.top_k) all.resize(static_cast<size_t>(params.top_k));
  return all;
}

std::vector<float> as_vector(const at::Tensor& t) {
  const auto c = t.contiguous().to(at::kFloat);
  return {c.data_ptr<float>(), c.data_ptr<float>() + c.numel()};
}

#if TRIDENT_TESTS_WITH_FAISS
/// Clustered unit rows: `identities` centres uniform on the sphere, `per` rows each at Gaussian spread `noise`.
at::Tensor clustered(int64_t identities, int64_t per, int64_t dim, double noise, uint64_t seed) {
  at::manual_seed(seed);
  const auto centres = unit_rows(at::randn({identities, dim}));
  return unit_rows(centres.repeat_interleave(per, 0) + noise / std::sqrt(static_cast<double>(dim)) *
                                                           at::randn({identities * per, dim}));
}
#endif

}  // namespace

TEST_CASE("gallery index: round trip, every field bit-exact, tensors over the mapping") {
  const auto gallery = random_gallery(37, 24, 5, 1);
  const auto path = index_path("round-trip.tgi");
  search::write_gallery_index(path, gallery);
  const auto bytes = read_file(path);
  CHECK(bytes.substr(0, 8) == "TRIDGIDX");
  CHECK(peek<uint64_t>(bytes, 32) == 128);  // the embeddings start right after the header
  for (uint64_t field = 32; field <= 80; field += 8)
    if (field != 72) CHECK(peek<uint64_t>(bytes, field) % 64 == 0);
  CHECK(peek<uint64_t>(bytes, 96) == bytes.size());
  at::Tensor embeddings;
  {
    const auto index = GalleryIndex::open(path);
    CHECK(index.size() == 37);
    CHECK(index.dim() == 24);
    CHECK(index.pictures() == gallery.pictures);
    CHECK(index.description() == gallery.description);
    CHECK(at::equal(index.embeddings(), gallery.embeddings));
    CHECK(at::equal(index.boxes(), gallery.boxes));
    CHECK(at::equal(index.scores(), gallery.scores));
    CHECK(at::equal(index.picture_of(), gallery.picture_of));
    // Views, not copies: the embeddings start 128 bytes into the mapping, as the layout says.
    CHECK(static_cast<const char*>(index.boxes().data_ptr()) - static_cast<const char*>(index.embeddings().data_ptr()) ==
          static_cast<std::ptrdiff_t>(peek<uint64_t>(bytes, 40) - 128));
    embeddings = index.embeddings();
  }
  // The mapping outlives the GalleryIndex while a tensor taken from it exists.
  CHECK(at::equal(embeddings, gallery.embeddings));
  // Empty description, a picture without detections, an empty name.
  auto small = random_gallery(3, 4, 2, 2);
  small.description.clear();
  small.pictures.push_back("");
  search::write_gallery_index(path, small);
  const auto index = GalleryIndex::open(path, {.verify_checksum = false, .check_unit_norms = false});
  CHECK(index.pictures().size() == 3);
  CHECK(index.pictures()[2].empty());
  CHECK(index.description().empty());
  CHECK(at::equal(index.picture_of(), small.picture_of));
}

TEST_CASE("gallery index: a failed write leaves the previous file, and the writer refuses bad data") {
  const auto path = index_path("atomic.tgi");
  const auto good = random_gallery(10, 8, 3, 3);
  search::write_gallery_index(path, good);
  const auto before = read_file(path);
  auto bad = random_gallery(10, 8, 3, 4);
  bad.picture_of[7] = 3;  // picture 3 of 3
  CHECK_THROWS_WITH_AS(search::write_gallery_index(path, bad),
                       doctest::Contains("picture_of[7] = 3 is not a picture index (there are 3)"), Error);
  bad = random_gallery(10, 8, 3, 4);
  bad.embeddings[2] *= 2;
  CHECK_THROWS_WITH_AS(search::write_gallery_index(path, bad), doctest::Contains("embeddings row 2 has L2 norm 2"),
                       Error);
  bad = random_gallery(10, 8, 3, 4);
  bad.scores[5] = std::nanf("");
  CHECK_THROWS_WITH_AS(search::write_gallery_index(path, bad), doctest::Contains("scores[5] = nan is not finite"), Error);
  bad = random_gallery(10, 8, 3, 4);
  bad.boxes = bad.boxes.narrow(1, 0, 3);
  CHECK_THROWS_WITH_AS(search::write_gallery_index(path, bad), doctest::Contains("boxes must be [10, 4], got [10, 3]"),
                       Error);
  // A write that fails part-way (its folder is a file: the temporary file cannot be created) changes nothing.
  const auto blocked = index_path("not-a-folder");
  write_file(blocked, "x");
  CHECK_THROWS_AS(search::write_gallery_index(blocked + "/index.tgi", good), Error);
  CHECK(read_file(path) == before);
  for (const auto& entry : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path()))
    CHECK(entry.path().string().find(".partial") == std::string::npos);
  CHECK(at::equal(GalleryIndex::open(path).embeddings(), good.embeddings));
}

TEST_CASE("gallery index: every corruption is refused with its message") {
  const auto path = index_path("valid.tgi");
  const auto gallery = random_gallery(20, 16, 4, 5);
  search::write_gallery_index(path, gallery);
  const auto valid = read_file(path);
  REQUIRE(refusal(valid).empty());
  // Truncated: inside the header, inside the embeddings, just before the checksum, one byte short.
  CHECK(refusal(valid.substr(0, 50)).find("has 50 bytes, fewer than a gallery index's header") != std::string::npos);
  for (const size_t keep : {size_t{700}, valid.size() - 8, valid.size() - 1})
    CHECK(refusal(valid.substr(0, keep)).find(fmt::format("the header's file size is {} bytes, the file has {}",
                                                          valid.size(), keep)) != std::string::npos);
  CHECK(refusal(valid + std::string(8, '\0')).find("the header's file size") != std::string::npos);
  // A flipped byte anywhere past the header's checked fields: the checksum.
  for (const size_t at : {size_t{200}, valid.size() / 2, valid.size() - 20}) {
    auto flipped = valid;
    flipped[at] = static_cast<char>(flipped[at] ^ 0x10);
    CHECK(refusal(flipped).find("does not match the contents") != std::string::npos);
    // ... which a caller may skip: then the value checks still guard the rows they read.
    const auto skipped = refusal(flipped, {.verify_checksum = false});
    CHECK(skipped.find("does not match") == std::string::npos);
  }
  auto bad = valid;
  bad[0] = 'X';
  CHECK(refusal(bad).find("is not a trident gallery index: its magic is 'XRIDGIDX'") != std::string::npos);
  bad = valid;
  poke<uint32_t>(bad, 8, 2);
  CHECK(refusal(bad).find("version 2, this build reads version 1") != std::string::npos);
  bad = valid;
  poke<uint64_t>(bad, 16, uint64_t{1} << 60);  // a count larger than the file
  CHECK(refusal(bad).find(fmt::format("count = {} detections of dim 16 do not fit in {} bytes", uint64_t{1} << 60,
                                      valid.size())) != std::string::npos);
  bad = valid;
  poke<uint64_t>(bad, 16, 21);  // one row more than there is room for
  CHECK(refusal(bad).find("count 21, dim 16, pictures 4 need") != std::string::npos);
  bad = valid;
  poke<uint32_t>(bad, 12, 0);
  CHECK(refusal(bad).find("dim = 0 is outside [1, 65536]") != std::string::npos);
  bad = valid;
  poke<uint64_t>(bad, 24, ~uint64_t{0});
  CHECK(refusal(bad).find("pictures = 18446744073709551615 do not fit") != std::string::npos);
  bad = valid;
  poke<uint64_t>(bad, 40, peek<uint64_t>(valid, 40) + 64);
  CHECK(refusal(bad).find("the boxes offset is") != std::string::npos);
  // Values behind a valid checksum (a writer that is not ours): picture index, non-finite score, norm, names.
  const auto picture_at = peek<uint64_t>(valid, 56), scores_at = peek<uint64_t>(valid, 48);
  const auto names_at = peek<uint64_t>(valid, 64);
  bad = valid;
  poke<int64_t>(bad, picture_at + 8 * 13, 4);
  reseal(bad);
  CHECK(refusal(bad).find("picture_of[13] = 4 is not a picture index (there are 4)") != std::string::npos);
  bad = valid;
  poke<int64_t>(bad, picture_at + 8 * 2, -1);
  reseal(bad);
  CHECK(refusal(bad).find("picture_of[2] = -1") != std::string::npos);
  bad = valid;
  poke<float>(bad, scores_at + 4 * 6, std::numeric_limits<float>::infinity());
  reseal(bad);
  CHECK(refusal(bad).find("scores[6] = inf is not finite") != std::string::npos);
  bad = valid;
  poke<float>(bad, 128 + 4 * (16 * 9 + 3), 3.0f);  // row 9 no longer unit length
  reseal(bad);
  CHECK(refusal(bad).find("embeddings row 9 has L2 norm") != std::string::npos);
  CHECK(refusal(bad, {.check_unit_norms = false}).empty());
  bad = valid;
  poke<uint64_t>(bad, names_at + 8 * 2, 1000);
  reseal(bad);
  CHECK(refusal(bad).find("picture name 1 has offsets") != std::string::npos);
  CHECK(refusal("").find("has 0 bytes") != std::string::npos);
  CHECK_THROWS_WITH_AS(GalleryIndex::open(index_path("missing.tgi")), doctest::Contains("cannot open"), Error);
}

TEST_CASE("gallery index: exact search = a double-precision loop over every row, both weightings, Q > 1") {
  const auto gallery = random_gallery(3000, 32, 50, 6);
  const auto path = index_path("search.tgi");
  search::write_gallery_index(path, gallery);
  const auto index = GalleryIndex::open(path);
  const auto queries = unit_rows(at::randn({5, 32}));
  for (const auto weighting : {search::SimilarityWeighting::confidence, search::SimilarityWeighting::none})
    for (const double threshold : {0.0, 0.5, 0.97}) {
      // Small blocks, so that the best k of several blocks are merged.
      const search::SearchParams params{.top_k = 12, .score_threshold = threshold, .weighting = weighting,
                                        .block_rows = 700};
      const auto hits = index.search(queries, params);
      REQUIRE(hits.size() == 5);
      for (int64_t q = 0; q < 5; ++q) {
        const auto expected = brute_force(gallery, as_vector(queries[q]), params);
        const auto& got = hits[static_cast<size_t>(q)];
        REQUIRE(got.size() == expected.size());
        for (size_t j = 0; j < got.size(); ++j) {
          CHECK(got[j].row == expected[j].second);
          CHECK(got[j].similarity == doctest::Approx(expected[j].first).epsilon(1e-5));
          CHECK(got[j].score >= threshold);
          const auto row = got[j].row;
          CHECK(got[j].picture == gallery.picture_of[row].item<int64_t>());
          CHECK(got[j].picture_name == gallery.pictures[static_cast<size_t>(got[j].picture)]);
          CHECK(got[j].box[2] == gallery.boxes[row][2].item<float>());
        }
      }
    }
  // threshold 0.97 leaves fewer than k candidates: all of them come back, and none under it.
  const auto few = index.search(queries[0], {.top_k = 1000, .score_threshold = 0.97});
  CHECK(few[0].size() == static_cast<size_t>((gallery.scores >= 0.97).sum().item<int64_t>()));
  // A [D] query is one query; queries that are not unit length are refused by row and norm.
  CHECK(index.search(queries[1]).size() == 1);
  auto bad = queries.clone();
  bad[3] *= 0.5;
  CHECK_THROWS_WITH_AS(index.search(bad), doctest::Contains("query row 3 has L2 norm 0.5"), Error);
  CHECK_THROWS_WITH_AS(index.search(at::zeros({2, 31})), doctest::Contains("queries must be [32] or [Q, 32]"), Error);
}

TEST_CASE("gallery index: ties keep row order, also across blocks, and the weighting decides the order") {
  // Rows: 0..5 copies of (1, 0) at score 1, rows 6..7 (0.6, 0.8) at score 1, row 8 (1, 0) at score 0.5.
  GalleryIndexData gallery;
  gallery.pictures = {"a.jpg", "b.jpg"};
  std::vector<float> e;
  std::vector<float> s;
  for (int r = 0; r < 9; ++r) {
    const bool tilted = r == 6 || r == 7;
    e.insert(e.end(), {tilted ? 0.6f : 1.0f, tilted ? 0.8f : 0.0f});
    s.push_back(r == 8 ? 0.5f : 1.0f);
  }
  gallery.embeddings = at::tensor(e).view({9, 2});
  gallery.scores = at::tensor(s);
  gallery.boxes = at::zeros({9, 4});
  gallery.picture_of = at::tensor(std::vector<int64_t>{0, 1, 0, 1, 0, 1, 0, 1, 0});
  const auto path = index_path("ties.tgi");
  search::write_gallery_index(path, gallery);
  const auto index = GalleryIndex::open(path);
  const auto query = at::tensor({1.0f, 0.0f});
  for (const int64_t block : {2, 3, 100}) {
    const auto hits = index.search(query, {.top_k = 3, .score_threshold = 0, .block_rows = block})[0];
    REQUIRE(hits.size() == 3);
    CHECK(hits[0].row == 0);
    CHECK(hits[1].row == 1);
    CHECK(hits[2].row == 2);
    const auto all = index.search(query, {.top_k = 9, .score_threshold = 0, .block_rows = block})[0];
    std::vector<int64_t> rows;
    for (const auto& h : all) rows.push_back(h.row);
    // Confidence-weighted: the six copies (1.0), the tilted pair (0.6), the weak copy (0.5).
    CHECK(rows == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8});
    const auto plain = index.search(query, {.top_k = 9, .score_threshold = 0,
                                            .weighting = search::SimilarityWeighting::none, .block_rows = block})[0];
    rows.clear();
    for (const auto& h : plain) rows.push_back(h.row);
    // Plain cosine: the weak copy ties with the others at 1.0 and takes its row's place.
    CHECK(rows == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 8, 6, 7});
    CHECK(plain[6].similarity == 1.0);
    CHECK(all[8].similarity == 0.5);
  }
}

#if TRIDENT_TESTS_WITH_FAISS
TEST_CASE("faiss index: flat = exact search, threshold and weighting included; the sidecar round trip") {
  const auto gallery = random_gallery(2000, 32, 40, 7);
  const auto path = index_path("faiss.tgi");
  search::write_gallery_index(path, gallery);
  const auto index = GalleryIndex::open(path);
  const auto flat = search::FaissIndex::build(index, {.kind = search::FaissKind::automatic, .score_threshold = 0.3});
  CHECK(flat.kind() == search::FaissKind::flat);
  CHECK(flat.size() == (gallery.scores >= 0.3).sum().item<int64_t>());
  const auto queries = unit_rows(at::randn({6, 32}));
  const auto sidecar = search::FaissIndex::sidecar_path(path);
  flat.save(sidecar);
  const auto loaded = search::FaissIndex::load(sidecar, index);
  CHECK(loaded.kind() == search::FaissKind::flat);
  CHECK(loaded.size() == flat.size());
  for (const auto weighting : {search::SimilarityWeighting::confidence, search::SimilarityWeighting::none})
    for (const double threshold : {0.3, 0.6, 0.95}) {
      const search::SearchParams params{.top_k = 10, .score_threshold = threshold, .weighting = weighting};
      const auto exact = index.search(queries, params);
      for (const auto* faiss : {&flat, &loaded}) {
        const auto approximate = faiss->search(index, queries, params, /*candidates=*/12);
        for (size_t q = 0; q < exact.size(); ++q) {
          REQUIRE(approximate[q].size() == exact[q].size());
          for (size_t j = 0; j < exact[q].size(); ++j) {
            CHECK(approximate[q][j].row == exact[q][j].row);
            CHECK(approximate[q][j].similarity == doctest::Approx(exact[q][j].similarity).epsilon(1e-5));
          }
        }
      }
    }
  CHECK_THROWS_WITH_AS(flat.search(index, queries, {.score_threshold = 0.2}),
                       doctest::Contains("score threshold 0.2 is below the 0.3"), Error);
}

TEST_CASE("faiss index: IVF and HNSW recall@10 >= 0.95 on clustered embeddings") {
  // 600 identities x 10 rows, spread 0.5 (a row's cosine with its identity's centre ~0.9); queries: a further
  // noisy view of 50 identities, whose 10 best rows are (nearly always) their identity's.
  const int64_t identities = 600, per = 10, dim = 32;
  GalleryIndexData gallery;
  gallery.embeddings = clustered(identities, per, dim, 0.5, 8);
  const int64_t n = identities * per;
  gallery.pictures = {"all.jpg"};
  gallery.picture_of = at::zeros({n}, at::kLong);
  gallery.boxes = at::zeros({n, 4});
  gallery.scores = at::ones({n});
  const auto path = index_path("recall.tgi");
  search::write_gallery_index(path, gallery);
  const auto index = GalleryIndex::open(path);
  at::manual_seed(9);
  const auto picks = at::randint(identities, {50}, at::kLong) * per;
  const auto queries = unit_rows(gallery.embeddings.index_select(0, picks) + 0.5 / std::sqrt(32.0) * at::randn({50, dim}));
  const search::SearchParams params{.top_k = 10, .score_threshold = 0};
  const auto exact = index.search(queries, params);
  using search::IvfStorage;
  const std::vector<std::pair<search::FaissKind, IvfStorage>> variants{
      {search::FaissKind::ivf, IvfStorage::flat}, {search::FaissKind::ivf, IvfStorage::sq8},
      {search::FaissKind::ivf, IvfStorage::pq},   {search::FaissKind::ivf, IvfStorage::pq4},
      {search::FaissKind::hnsw, IvfStorage::automatic}};
  for (const auto& [kind, storage] : variants) {
    const auto ann = search::FaissIndex::build(index, {.kind = kind, .nlist = 64, .nprobe = 16, .storage = storage});
    CHECK(ann.kind() == kind);
    CHECK(ann.ivf_storage() == storage);
    const auto found = ann.search(index, queries, params);
    double recall = 0;
    for (size_t q = 0; q < exact.size(); ++q) {
      std::set<int64_t> truth;
      for (const auto& h : exact[q]) truth.insert(h.row);
      for (const auto& h : found[q]) recall += truth.count(h.row) ? 0.1 / static_cast<double>(exact.size()) : 0;
      // Whatever the codes, a hit's similarity is the exact one, recomputed from the float32 row.
      for (const auto& h : found[q])
        CHECK(h.similarity == doctest::Approx(at::dot(queries[static_cast<int64_t>(q)], index.embeddings()[h.row])
                                                  .item<double>()).epsilon(1e-5));
    }
    INFO("kind ", std::string(search::faiss_kind_name(kind)), ", storage ", search::ivf_storage_name(storage),
         ": recall@10 ", recall);
    CHECK(recall >= 0.95);
  }
  // A row's codes take 1 byte per dimension (sq8) or per 8 dimensions (pq, pq4) instead of 4 bytes per dimension:
  // the structure shrinks by that per row, less its codebooks (sq8: 2 D floats; pq: 256 centroids x D floats;
  // pq4: 16 x D, and its lists padded to blocks of 32 rows), and a few hundred bytes of parameters.
  const auto bytes = [&](IvfStorage storage) {
    return static_cast<double>(
        search::FaissIndex::build(index, {.kind = search::FaissKind::ivf, .nlist = 64, .storage = storage})
            .memory_bytes());
  };
  const double flat_bytes = bytes(IvfStorage::flat), rows = static_cast<double>(n), d = static_cast<double>(dim);
  const double parameters = 512;
  CHECK(flat_bytes - bytes(IvfStorage::sq8) >= rows * (4 * d - d) - 2 * d * 4 - parameters);
  CHECK(flat_bytes - bytes(IvfStorage::pq) >= rows * (4 * d - d / 8) - 256 * d * 4 - parameters);
  CHECK(flat_bytes - bytes(IvfStorage::pq4) >= rows * (4 * d - d / 8) - 16 * d * 4 - 64 * 32 * d / 8 - parameters);
  // A quantised index survives its sidecar: the loaded one finds the same rows, in the same order.
  for (const auto storage : {IvfStorage::pq, IvfStorage::pq4}) {
    const auto built = search::FaissIndex::build(index, {.kind = search::FaissKind::ivf, .nlist = 64, .nprobe = 8,
                                                         .storage = storage});
    const auto sidecar = search::FaissIndex::sidecar_path(path);
    built.save(sidecar);
    const auto loaded = search::FaissIndex::load(sidecar, index);
    CHECK(loaded.nprobe() == 8);
    CHECK(loaded.ivf_storage() == storage);
    const auto a = built.search(index, queries, params), b = loaded.search(index, queries, params);
    for (size_t q = 0; q < a.size(); ++q) {
      REQUIRE(a[q].size() == b[q].size());
      for (size_t j = 0; j < a[q].size(); ++j) CHECK(a[q][j].row == b[q][j].row);
    }
  }
  CHECK(search::pq_subvectors(256, 8) == 32);
  CHECK(search::pq_subvectors(256, 4) == 64);
  CHECK(search::pq_subvectors(36, 8) == 4);  // 36 / 8 = 4.5: 4 sub-vectors of 9
  CHECK(search::pq_subvectors(7, 8) == 1);
  CHECK(search::parse_ivf_storage("pq4", "test") == IvfStorage::pq4);
  CHECK_THROWS_WITH_AS(search::parse_ivf_storage("pq2", "test"), doctest::Contains("'pq2' is not an IVF storage"),
                       Error);
  // The automatic rule: flat below 50,000 rows, IVF above, nlist ~ 4 sqrt(N) as a power of two.
  CHECK(search::automatic_faiss_kind(49999) == search::FaissKind::flat);
  CHECK(search::automatic_faiss_kind(50000) == search::FaissKind::ivf);
  CHECK(search::automatic_nlist(1000000) == 4096);
  CHECK(search::automatic_nlist(100000) == 1024);
  // nlist / 16 lists searched; float32 lists up to 256 MiB of rows, 8-bit product codes above.
  CHECK(search::automatic_nprobe(4096) == 256);
  CHECK(search::automatic_nprobe(64) == 16);
  CHECK(search::automatic_ivf_storage(262144, 256) == IvfStorage::flat);
  CHECK(search::automatic_ivf_storage(262145, 256) == IvfStorage::pq);
  CHECK(search::automatic_ivf_storage(1 << 20, 64) == IvfStorage::flat);
}

TEST_CASE("faiss index: a sidecar of another gallery index, or a corrupted one, is refused") {
  const auto a_path = index_path("a.tgi"), b_path = index_path("b.tgi");
  search::write_gallery_index(a_path, random_gallery(300, 8, 5, 10));
  search::write_gallery_index(b_path, random_gallery(300, 8, 5, 11));
  const auto a = GalleryIndex::open(a_path), b = GalleryIndex::open(b_path);
  const auto sidecar = search::FaissIndex::sidecar_path(a_path);
  search::FaissIndex::build(a).save(sidecar);
  CHECK(search::FaissIndex::load(sidecar, a).size() == 300);
  // The ~30 rows with score >= 0.9 cannot train 256 centroids per sub-vector: refused, named.
  CHECK_THROWS_WITH_AS(search::FaissIndex::build(a, {.kind = search::FaissKind::ivf, .score_threshold = 0.9, .nlist = 4,
                                                     .storage = search::IvfStorage::pq}),
                       doctest::Contains("IVF storage 'pq' trains 256 centroids per sub-vector and needs at least 256 rows"),
                       Error);
  CHECK_THROWS_WITH_AS(search::FaissIndex::load(sidecar, b),
                       doctest::Contains(fmt::format("belongs to a gallery index of 300 rows, {} bytes, checksum {:016x}, "
                                                     "not to '{}'", a.file_size(), a.checksum(), b_path).c_str()),
                       Error);
  auto bytes = read_file(sidecar);
  bytes[bytes.size() / 2] = static_cast<char>(bytes[bytes.size() / 2] ^ 1);
  write_file(sidecar + ".bad", bytes);
  CHECK_THROWS_WITH_AS(search::FaissIndex::load(sidecar + ".bad", a), doctest::Contains("does not match the contents"),
                       Error);
  write_file(sidecar + ".bad", read_file(sidecar).substr(0, 100));
  CHECK_THROWS_WITH_AS(search::FaissIndex::load(sidecar + ".bad", a), doctest::Contains("has 100 bytes"), Error);
  const auto flat = search::FaissIndex::build(a);
  CHECK_THROWS_WITH_AS(flat.search(b, unit_rows(at::randn({1, 8}))), doctest::Contains("belongs to a gallery index"),
                       Error);
}
#endif
