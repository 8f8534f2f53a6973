// bench_gallery_index: building and searching a gallery index (search/gallery_index.hpp) of N clustered
// embeddings, exactly and with FAISS (search/faiss_index.hpp, when built with trident::faiss).
//
//   OMP_NUM_THREADS=2 OMP_WAIT_POLICY=PASSIVE ./build/benchmarks/bench_gallery_index --n 1000000 --dir /tmp/gi
//
// The data: N / per identities, each a centre drawn uniformly on the unit sphere of dimension D, and `per` rows
// per identity, each its centre plus Gaussian noise of norm ~`noise`, renormalised; every score 1 (so the
// confidence-weighted similarity is the cosine). Generated in chunks of identities with a fixed seed per chunk
// straight into the one [N, D] tensor that is written to the index file and then freed: the search runs on the
// file's mapping. The queries: a further noisy view (same noise) of `queries` identities picked with a fixed
// seed. The ground truth: the exact top-10 of every query, by the blocked exact search over all queries at once.
// Printed: for each method, build time, bytes of its structure, per-query latency (median and p90, one query at a
// time) and recall@10 against the ground truth; the process's max RSS at the end.
#include <trident/search/gallery_index.hpp>
#if TRIDENT_HAVE_FAISS
#include <trident/search/faiss_index.hpp>
#endif

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <random>
#include <set>
#include <string>
#include <vector>

using namespace trident;

namespace {

struct Options {
  int64_t n = 100000, dim = 256, per = 10, queries = 200, exact_queries = 200, threads = 2;
  int64_t flat_max = 2000000, hnsw_max = 200000;
  double noise = 0.8;
  std::string dir = "/tmp/bench_gallery_index";
  std::vector<int64_t> nprobes{8, 16, 32, 64};
  std::vector<int64_t> efs{64, 128, 256};
  std::vector<std::string> storages{"auto"};  // IVF storages to build (search::IvfStorage names)
  int64_t nlist = 0;                          // IVF lists; 0: automatic
  std::vector<int64_t> candidates{0};         // rows asked of FAISS before re-ranking; 0: the default
  bool keep = false;
  bool breakdown = false;  // also time FAISS's candidate search alone (without the exact re-ranking)
};

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

double max_rss_gib() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_maxrss) / (1024.0 * 1024.0);
}

at::Tensor unit_rows(const at::Tensor& x) { return x / x.norm(2, {1}, /*keepdim=*/true); }

/// The index's rows (see the file comment) and the queries' identities' centres.
at::Tensor generate(const Options& o, const std::vector<int64_t>& query_identities, at::Tensor& query_centres) {
  const int64_t identities = o.n / o.per;
  const int64_t chunk = std::max<int64_t>(1, (1 << 16) / o.per);
  auto rows = at::empty({identities * o.per, o.dim});
  query_centres = at::zeros({static_cast<int64_t>(query_identities.size()), o.dim});
  const double sigma = o.noise / std::sqrt(static_cast<double>(o.dim));
  for (int64_t first = 0; first < identities; first += chunk) {
    const int64_t count = std::min(chunk, identities - first);
    at::manual_seed(static_cast<uint64_t>(1000 + first / chunk));
    const auto centres = unit_rows(at::randn({count, o.dim}));
    rows.narrow(0, first * o.per, count * o.per)
        .copy_(unit_rows(centres.repeat_interleave(o.per, 0) + sigma * at::randn({count * o.per, o.dim})));
    for (size_t q = 0; q < query_identities.size(); ++q)
      if (query_identities[q] >= first && query_identities[q] < first + count)
        query_centres[static_cast<int64_t>(q)].copy_(centres[query_identities[q] - first]);
  }
  return rows;
}

struct Latency {
  double median_ms = 0, p90_ms = 0;
};

/// Runs `search(q)` for each query row, one at a time; the latencies' median and 90th percentile.
Latency time_queries(int64_t count, const std::function<void(int64_t)>& search) {
  std::vector<double> ms;
  for (int64_t q = 0; q < count; ++q) {
    const auto start = std::chrono::steady_clock::now();
    search(q);
    ms.push_back(1000 * seconds_since(start));
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms[std::min(ms.size() - 1, ms.size() * 9 / 10)]};
}

double recall_at_10(const std::vector<std::vector<int64_t>>& truth, const std::vector<std::vector<int64_t>>& found) {
  double hits = 0, total = 0;
  for (size_t q = 0; q < found.size(); ++q) {
    const std::set<int64_t> t(truth[q].begin(), truth[q].end());
    for (const auto row : found[q]) hits += t.count(row) ? 1 : 0;
    total += static_cast<double>(truth[q].size());
  }
  return total > 0 ? hits / total : 0;
}

void row(const std::string& method, const std::string& parameters, double build_s, double bytes, Latency l,
         double recall) {
  std::cout << fmt::format("| {} | {} | {:.1f} | {:.0f} | {:.3f} | {:.3f} | {:.4f} |\n", method, parameters, build_s,
                           bytes / (1024.0 * 1024.0), l.median_ms, l.p90_ms, recall)
            << std::flush;
}

std::vector<std::string> split(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t end = std::min(text.find(',', start), text.size());
    if (end > start) out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  for (const auto& item : split(text)) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--n") o.n = static_cast<int64_t>(std::stod(value));
    else if (key == "--dim") o.dim = std::stoll(value);
    else if (key == "--per") o.per = std::stoll(value);
    else if (key == "--noise") o.noise = std::stod(value);
    else if (key == "--queries") o.queries = std::stoll(value);
    else if (key == "--exact-queries") o.exact_queries = std::stoll(value);
    else if (key == "--threads") o.threads = std::stoll(value);
    else if (key == "--flat-max") o.flat_max = static_cast<int64_t>(std::stod(value));
    else if (key == "--hnsw-max") o.hnsw_max = static_cast<int64_t>(std::stod(value));
    else if (key == "--nprobe") o.nprobes = parse_list(value);
    else if (key == "--ef") o.efs = parse_list(value);
    else if (key == "--storage") o.storages = split(value);
    else if (key == "--nlist") o.nlist = std::stoll(value);
    else if (key == "--candidates") o.candidates = parse_list(value);
    else if (key == "--dir") o.dir = value;
    else if (key == "--keep") o.keep = value == "1";
    else if (key == "--breakdown") o.breakdown = value == "1";
    else {
      std::cerr << "bench_gallery_index: unknown option " << key << "\n";
      return 2;
    }
  }
  try {
    at::set_num_threads(static_cast<int>(o.threads));
    const int64_t identities = o.n / o.per;
    std::mt19937_64 pick(7);
    std::vector<int64_t> query_identities;
    for (int64_t q = 0; q < o.queries; ++q)
      query_identities.push_back(static_cast<int64_t>(pick() % static_cast<uint64_t>(identities)));
    std::cout << fmt::format("# N = {}, D = {}, {} rows per identity, noise {}, {} queries, {} threads\n",
                             identities * o.per, o.dim, o.per, o.noise, o.queries, o.threads);
    // 1. The data and the index file.
    auto start = std::chrono::steady_clock::now();
    at::Tensor query_centres;
    auto rows = generate(o, query_identities, query_centres);
    const double generate_s = seconds_since(start);
    at::manual_seed(99);
    const auto queries = unit_rows(query_centres + o.noise / std::sqrt(static_cast<double>(o.dim)) *
                                                        at::randn({o.queries, o.dim}));
    std::filesystem::create_directories(o.dir);
    const auto path = fmt::format("{}/index-{}.tgi", o.dir, rows.size(0));
    const int64_t n = rows.size(0);
    search::GalleryIndexData data;
    data.pictures = {"synthetic"};
    data.picture_of = at::zeros({n}, at::kLong);
    data.boxes = at::zeros({n, 4});
    data.scores = at::ones({n});
    data.embeddings = rows;
    data.description = "bench_gallery_index";
    start = std::chrono::steady_clock::now();
    search::write_gallery_index(path, data);
    const double write_s = seconds_since(start);
    data = {};
    rows = at::Tensor();
    start = std::chrono::steady_clock::now();
    auto index = search::GalleryIndex::open(path);
    const double open_checked_s = seconds_since(start);
    start = std::chrono::steady_clock::now();
    index = search::GalleryIndex::open(path, {.verify_checksum = false, .check_unit_norms = false});
    const double open_trusted_s = seconds_since(start);
    std::cout << fmt::format("# generate {:.1f} s; write {:.1f} s ({:.2f} GB); open with checksum and norms {:.1f} s, "
                             "without {:.3f} s\n",
                             generate_s, write_s, static_cast<double>(index.file_size()) / 1e9, open_checked_s,
                             open_trusted_s);
    // 2. The ground truth: all queries at once, blocked.
    const search::SearchParams params{.top_k = 10, .score_threshold = 0};
    start = std::chrono::steady_clock::now();
    const auto exact = index.search(queries, params);
    const double truth_s = seconds_since(start);
    std::vector<std::vector<int64_t>> truth;
    for (const auto& hits : exact) {
      truth.emplace_back();
      for (const auto& h : hits) truth.back().push_back(h.row);
    }
    std::cout << fmt::format("# ground truth: {} queries at once in {:.1f} s ({:.2f} ms per query)\n", o.queries,
                             truth_s, 1000 * truth_s / static_cast<double>(o.queries));
    std::cout << "| method | parameters | build s | MiB | median ms | p90 ms | recall@10 |\n|---|---|---|---|---|---|---|\n";
    // 3. Exact, one query at a time.
    {
      const int64_t count = std::min(o.exact_queries, o.queries);
      std::vector<std::vector<int64_t>> found(static_cast<size_t>(count));
      const auto l = time_queries(count, [&](int64_t q) {
        const auto hits = index.search(queries[q], params);
        for (const auto& h : hits[0]) found[static_cast<size_t>(q)].push_back(h.row);
      });
      row("trident exact", fmt::format("{} queries", count), 0, static_cast<double>(index.file_size()), l,
          recall_at_10({truth.begin(), truth.begin() + count}, found));
    }
#if TRIDENT_HAVE_FAISS
    const auto run_faiss = [&](const std::string& method, const std::string& parameters, double build_s,
                               const search::FaissIndex& ann, double bytes, int64_t candidates = 0) {
      std::vector<std::vector<int64_t>> found(static_cast<size_t>(o.queries));
      const auto l = time_queries(o.queries, [&](int64_t q) {
        const auto hits = ann.search(index, queries[q], params, candidates);
        for (const auto& h : hits[0]) found[static_cast<size_t>(q)].push_back(h.row);
      });
      row(method, parameters, build_s, bytes, l, recall_at_10(truth, found));
      if (o.breakdown) {
        const int64_t asked = candidates > 0 ? candidates : 64;
        const auto prepared = queries.contiguous();
        const auto c = time_queries(o.queries, [&](int64_t q) { (void)ann.nearest(prepared.narrow(0, q, 1), asked); });
        row(method, parameters + fmt::format(": FAISS's {} candidates alone", asked), build_s, bytes, c, 0);
      }
    };
    if (n <= o.flat_max) {
      start = std::chrono::steady_clock::now();
      const auto flat = search::FaissIndex::build(index, {.kind = search::FaissKind::flat});
      const double build_s = seconds_since(start);
      run_faiss("FAISS flat", "IndexFlatIP", build_s, flat, static_cast<double>(flat.memory_bytes()));
    } else {
      std::cout << fmt::format("| FAISS flat | not run: a float32 copy of {:.1f} GB beside the mapped index | | | | | |\n",
                               static_cast<double>(n * o.dim * 4) / 1e9);
    }
    if (n >= 50000) {
      for (const auto& name : o.storages) {
        const auto asked = search::parse_ivf_storage(name, "bench_gallery_index: --storage");
        const auto storage = asked == search::IvfStorage::automatic ? search::automatic_ivf_storage(n, o.dim) : asked;
        start = std::chrono::steady_clock::now();
        auto ivf = search::FaissIndex::build(index, {.kind = search::FaissKind::ivf, .nlist = o.nlist,
                                                     .storage = asked});
        const double build_s = seconds_since(start);
        const double bytes = static_cast<double>(ivf.memory_bytes());
        const int64_t automatic = ivf.nprobe();
        for (const int64_t nprobe : o.nprobes)
          for (const int64_t candidates : o.candidates) {
            ivf.set_nprobe(nprobe);
            run_faiss(fmt::format("FAISS IVF-{}{}", search::ivf_storage_name(storage),
                                  asked == search::IvfStorage::automatic ? " (auto)" : ""),
                      fmt::format("nlist {}, nprobe {}{}{}", ivf.nlist(), nprobe, nprobe == automatic ? " (auto)" : "",
                                  candidates > 0 ? fmt::format(", {} candidates", candidates) : ""),
                      build_s, ivf, bytes, candidates);
          }
      }
    }
    if (n <= o.hnsw_max) {
      start = std::chrono::steady_clock::now();
      auto hnsw = search::FaissIndex::build(index, {.kind = search::FaissKind::hnsw});
      const double build_s = seconds_since(start);
      const double bytes = static_cast<double>(hnsw.memory_bytes());
      for (const int64_t ef : o.efs) {
        hnsw.set_ef_search(static_cast<int>(ef));
        run_faiss("FAISS HNSW", fmt::format("M 32, efConstruction 80, efSearch {}", ef), build_s, hnsw, bytes);
      }
    } else {
      std::cout << fmt::format("| FAISS HNSW | not run: N > --hnsw-max {} (the graph's build on 2 cores: about an "
                               "hour for 10^6 rows, a day for 10^7) | | | | | |\n", o.hnsw_max);
    }
#else
    std::cout << "# FAISS: not built in (trident::faiss)\n";
#endif
    std::cout << fmt::format("# max RSS {:.2f} GiB\n", max_rss_gib());
    if (!o.keep) std::filesystem::remove(path);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
