// 05_search — search a gallery for a person with a trained model and draw the best matches.
//
//   ./build/examples/05_search --checkpoint out/small/checkpoint.pt --dataset cuhk-sysu --root data/synthetic --query 3
//   ./build/examples/05_search --checkpoint run/checkpoint.pt --dataset prw --root /data/PRW --query 0
//   ./build/examples/05_search --checkpoint ... --query-image me.jpg --query-box 40,30,120,260 --gallery photos/
//   ./build/examples/05_search --checkpoint ... --index out/gallery.tgi --query 3 --root data/synthetic
//   ./build/examples/05_search --checkpoint ... --index photos.tgi --query-image me.jpg --query-box 40,30,120,260
//
// 1. builds the network the checkpoint records — its configuration, network options and picture sizes
//    (train::trained_network) — and loads its weights (train::load_model);
// 2. embeds the query person from its box (describe_box: the query's feature comes from its annotated box);
// 3. detects everyone in every gallery picture (detect_picture: boxes, confidences, embeddings);
// 4. ranks all detections by the confidence-weighted cosine similarity (search::rank_gallery);
// With --index (a gallery index written by 07_build_index) step 3 is gone: the archive was embedded once, and the
// query is answered from the index in milliseconds — exactly (GalleryIndex::search, one matrix product), or,
// built with trident::faiss and when the index has its FAISS structure beside it (`<index>.faiss`), approximately
// (FaissIndex::search; --exact forces the exact path). The query's own picture is left out of the matches.
// 5. draws the query and the top-k matches into one picture (viz::draw_search_results). With a dataset, each
//    match is marked with the evaluation protocol's own rule (eval/search.hpp), so that green and red agree with
//    the mAP 03_evaluate prints: in a picture where the query person is annotated with a w x h box, the most
//    similar detection whose IoU with it is >= min(0.5, w h / ((w + 10)(h + 10))) is correct (green); every other
//    match is wrong (red; the true box, if the person is in that picture, is outlined in white).
#include <trident/core/threads.hpp>
#include <trident/data/read_dataset.hpp>
#include <trident/eval/inference.hpp>
#include <trident/eval/search.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/search/gallery_index.hpp>
#include <trident/search/rank.hpp>
#if TRIDENT_HAVE_FAISS
#include <trident/search/faiss_index.hpp>
#endif
#include <trident/train/checkpoint.hpp>
#include <trident/train/configurations.hpp>
#include <trident/viz/search_results.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <unordered_map>

namespace {
using namespace trident;
namespace fs = std::filesystem;

struct Options {
  std::string checkpoint, config, dataset = "cuhk-sysu", root, query_image, gallery, out = "out/05_search.png";
  std::vector<float> query_box;
  int query = -1, gallery_size = 50, threads = 0, height = 240;
  int64_t top_k = 5, min_size = 0, max_size = 0;
  double score_threshold = 0.5;
  std::string index;   ///< a gallery index (07_build_index) to search instead of detecting a gallery
  bool exact = false;  ///< with --index: the exact search even when a FAISS structure is there
};

/// The query, the gallery pictures and (with a dataset) where the query person is in each.
struct Problem {
  std::string query_path;
  Box query_box{};
  std::vector<std::string> gallery;
  std::vector<std::optional<Box>> truth;  // empty without a dataset
};

/// Where person `pid` is annotated in `record`, if anywhere.
std::optional<Box> person_box(const data::ImageRecord& record, int64_t pid) {
  const auto pids = record.pids.contiguous();
  for (int64_t j = 0; j < pids.size(0); ++j)
    if (pids[j].item<int64_t>() == pid)
      return Box{record.boxes[j][0].item<float>(), record.boxes[j][1].item<float>(), record.boxes[j][2].item<float>(),
                 record.boxes[j][3].item<float>()};
  return std::nullopt;
}

Problem from_dataset(const Options& o) {
  data::ReadOptions read_options;
  read_options.gallery_size = o.gallery_size;
  const data::Dataset ds = data::read_dataset(o.dataset, o.root, read_options);
  TRIDENT_CHECK(o.query >= 0 && static_cast<size_t>(o.query) < ds.queries.size(),
                "05_search: --query {} is outside 0..{} ('{}' has {} queries)", o.query,
                static_cast<int64_t>(ds.queries.size()) - 1, o.root, ds.queries.size());
  const auto& q = ds.queries[static_cast<size_t>(o.query)];
  Problem p;
  p.query_path = ds.images.at(static_cast<size_t>(q.image)).path;
  p.query_box = q.box;
  std::vector<int64_t> images;
  if (!q.gallery.empty()) {
    for (const auto& item : q.gallery) images.push_back(item.image);
  } else {
    for (const int64_t i : ds.test)
      if (i != q.image) images.push_back(i);
  }
  for (const int64_t i : images) {
    const auto& record = ds.images.at(static_cast<size_t>(i));
    p.gallery.push_back(record.path);
    p.truth.push_back(person_box(record, q.pid));
  }
  return p;
}

Problem from_folder(const Options& o) {
  TRIDENT_CHECK(o.query_box.size() == 4, "05_search: --query-box needs x1,y1,x2,y2, got {} numbers", o.query_box.size());
  TRIDENT_CHECK(fs::is_directory(o.gallery), "05_search: --gallery '{}' is not a folder", o.gallery);
  Problem p;
  p.query_path = o.query_image;
  p.query_box = {o.query_box[0], o.query_box[1], o.query_box[2], o.query_box[3]};
  for (const auto& entry : fs::directory_iterator(o.gallery)) {
    auto ext = entry.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (entry.is_regular_file() && (ext == ".jpg" || ext == ".jpeg" || ext == ".png") &&
        fs::absolute(entry.path()) != fs::absolute(o.query_image))
      p.gallery.push_back(entry.path().string());
  }
  std::sort(p.gallery.begin(), p.gallery.end());
  TRIDENT_CHECK(!p.gallery.empty(), "05_search: --gallery '{}' has no .jpg or .png picture", o.gallery);
  return p;
}

/// The protocol's overlap rule (eval/search.hpp, step 4): `box` finds the person annotated at `truth` when their
/// IoU reaches min(0.5, w h / ((w + 10)(h + 10))) for the w x h truth.
bool finds(const std::array<float, 4>& box, const Box& truth) {
  const double iou = ops::box_iou(at::tensor(std::vector<float>(box.begin(), box.end())).view({1, 4}),
                                  at::tensor(std::vector<float>(truth.begin(), truth.end())).view({1, 4}))
                         .item<double>();
  return iou >= eval::target_iou_threshold(truth[2] - truth[0], truth[3] - truth[1]);
}

/// The protocol's true positive of each gallery picture (eval/search.hpp, step 4): the first detection in the
/// ranking, among those of that picture, that finds the query person. -1 where none does or the person is not
/// there.
std::vector<int64_t> true_positives(const std::vector<search::Match>& ranking,
                                    const std::vector<std::optional<Box>>& truth) {
  std::vector<int64_t> out(truth.size(), -1);
  for (size_t r = 0; r < ranking.size(); ++r) {
    const auto image = static_cast<size_t>(ranking[r].image);
    if (image < truth.size() && truth[image] && out[image] < 0 && finds(ranking[r].box, *truth[image]))
      out[image] = static_cast<int64_t>(r);
  }
  return out;
}

/// The picture sizes the network sees: --min-size/--max-size, or those it trained at (the checkpoint's), where 0
/// means the query picture's own.
eval::InferenceOptions inference_options(const Options& o, const train::TrainedNetwork& trained,
                                         const std::string& query_path) {
  eval::InferenceOptions io;
  io.min_size = o.min_size > 0 ? o.min_size : trained.min_size;
  io.max_size = o.max_size > 0 ? o.max_size : trained.max_size;
  if (io.min_size == 0 || io.max_size == 0) {
    const auto sides = data::picture_sides(query_path);
    if (io.min_size == 0) io.min_size = sides[0];
    if (io.max_size == 0) io.max_size = sides[1];
  }
  return io;
}

template <class Cfg>
int run(const Options& o, const train::TrainedNetwork& trained) {
  // 1. The network and its trained weights.
  TridentNet<Cfg> net(trained.net);
  train::load_model(o.checkpoint, net, trained.configuration);
  eval::EvalModeScope<TridentNet<Cfg>> eval_mode(net);
  const Problem p = o.query_image.empty() ? from_dataset(o) : from_folder(o);
  const auto io = inference_options(o, trained, p.query_path);
  // 2. The query person's embedding, from its box.
  const at::Tensor query = eval::describe_box(net, p.query_path, p.query_box, io);
  // 3. Everyone in the gallery.
  std::vector<GalleryDetections> gallery;
  for (const auto& path : p.gallery) gallery.push_back(eval::detect_picture(net, path, io));
  // 4. The ranking.
  search::RankOptions ro;
  ro.top_k = 0;  // the whole ranking: a picture's true positive is its best-ranked detection that overlaps enough
  ro.score_threshold = o.score_threshold;
  auto matches = search::rank_gallery(query, gallery, ro);
  const auto positive = true_positives(matches, p.truth);
  const size_t shown_count = std::min(matches.size(), static_cast<size_t>(std::max<int64_t>(o.top_k, 0)));
  int64_t people = 0;
  for (const auto& d : gallery) people += d.boxes.size(0);
  std::cout << fmt::format("query {} [{:.0f} {:.0f} {:.0f} {:.0f}]; {} gallery pictures, {} detections\n",
                           p.query_path, p.query_box[0], p.query_box[1], p.query_box[2], p.query_box[3],
                           p.gallery.size(), people);
  std::vector<viz::ShownMatch> shown;
  int correct = 0;
  for (size_t r = 0; r < shown_count; ++r) {
    const auto& m = matches[r];
    viz::ShownMatch s;
    s.path = p.gallery[static_cast<size_t>(m.image)];
    s.box = m.box;
    s.similarity = m.similarity;
    if (!p.truth.empty()) {
      const auto& truth = p.truth[static_cast<size_t>(m.image)];
      s.correct = positive[static_cast<size_t>(m.image)] == static_cast<int64_t>(r);
      if (truth) s.truth = std::array<float, 4>{(*truth)[0], (*truth)[1], (*truth)[2], (*truth)[3]};
      correct += *s.correct ? 1 : 0;
    }
    std::cout << fmt::format("#{:<2} {:.3f}  {}  [{:.0f} {:.0f} {:.0f} {:.0f}] score {:.2f}{}\n", r + 1, m.similarity,
                             fs::path(s.path).filename().string(), m.box[0], m.box[1], m.box[2], m.box[3], m.score,
                             s.correct ? (*s.correct ? "  correct" : "  wrong") : "");
    shown.push_back(s);
  }
  if (!p.truth.empty()) std::cout << fmt::format("{} of the top {} are the query person\n", correct, shown_count);
  // 5. The picture.
  viz::draw_search_results(p.query_path, {p.query_box[0], p.query_box[1], p.query_box[2], p.query_box[3]}, shown, o.out,
                              o.height);
  std::cout << "wrote " << o.out << "\n";
  return 0;
}

/// --index: the query from a dataset (--query N with --root) or a picture and a box; the gallery from the index.
template <class Cfg>
int run_index(const Options& o, const train::TrainedNetwork& trained) {
  using clock = std::chrono::steady_clock;
  const auto since = [](clock::time_point t) { return std::chrono::duration<double, std::milli>(clock::now() - t).count(); };
  auto start = clock::now();
  const auto index = search::GalleryIndex::open(o.index);
  std::cout << fmt::format("index {}: {} detections in {} pictures, {}-d, opened and checked in {:.0f} ms\n", o.index,
                           index.size(), index.pictures().size(), index.dim(), since(start));
  // 1. The query: its picture and box, and (with a dataset) where the person is in each picture of the archive.
  std::string query_path;
  Box query_box{};
  std::unordered_map<std::string, std::optional<Box>> truth;  // picture path -> the person's box there
  if (o.query >= 0) {
    data::ReadOptions read_options;
    read_options.gallery_size = o.gallery_size;
    read_options.check_images = false;
    const data::Dataset ds = data::read_dataset(o.dataset, o.root, read_options);
    TRIDENT_CHECK(static_cast<size_t>(o.query) < ds.queries.size(), "05_search: --query {} is outside 0..{} ('{}')",
                  o.query, static_cast<int64_t>(ds.queries.size()) - 1, o.root);
    const auto& q = ds.queries[static_cast<size_t>(o.query)];
    query_path = ds.images.at(static_cast<size_t>(q.image)).path;
    query_box = q.box;
    for (const auto& record : ds.images) truth[record.path] = person_box(record, q.pid);
  } else {
    TRIDENT_CHECK(o.query_box.size() == 4, "05_search: --query-box needs x1,y1,x2,y2, got {} numbers", o.query_box.size());
    query_path = o.query_image;
    query_box = {o.query_box[0], o.query_box[1], o.query_box[2], o.query_box[3]};
  }
  // 2. The query person's embedding, from its box.
  TridentNet<Cfg> net(trained.net);
  train::load_model(o.checkpoint, net, trained.configuration);
  eval::EvalModeScope<TridentNet<Cfg>> eval_mode(net);
  const auto io = inference_options(o, trained, query_path);
  const at::Tensor query = eval::describe_box(net, query_path, query_box, io).reshape({1, -1});
  // 3. The index answers (a few more than asked, since the query's own picture is dropped).
  search::SearchParams params;
  params.top_k = o.top_k + 64;
  params.score_threshold = o.score_threshold;
  start = clock::now();
  std::vector<search::IndexHit> hits;
  std::string how = "exact";
#if TRIDENT_HAVE_FAISS
  const auto sidecar = search::FaissIndex::sidecar_path(o.index);
  if (!o.exact && fs::exists(sidecar)) {
    const auto ann = search::FaissIndex::load(sidecar, index);
    const auto t = clock::now();
    hits = ann.search(index, query, params).at(0);
    how = fmt::format("FAISS {} (loaded in {:.0f} ms)", search::faiss_kind_name(ann.kind()), std::chrono::duration<double, std::milli>(t - start).count());
    start = t;
  }
#endif
  if (how == "exact") hits = index.search(query, params).at(0);
  const double query_ms = since(start);
  std::vector<search::IndexHit> kept;
  for (const auto& h : hits)
    if (h.picture_name != query_path && static_cast<int64_t>(kept.size()) < o.top_k) kept.push_back(h);
  std::cout << fmt::format("query {} [{:.0f} {:.0f} {:.0f} {:.0f}]; {} search: {:.2f} ms\n", query_path, query_box[0],
                           query_box[1], query_box[2], query_box[3], how, query_ms);
  // 4. The protocol's rule (true_positives): per picture, the best-ranked detection that finds the person.
  std::unordered_map<std::string, size_t> positive;
  std::vector<viz::ShownMatch> shown;
  int correct = 0;
  for (size_t r = 0; r < kept.size(); ++r) {
    const auto& h = kept[r];
    viz::ShownMatch s;
    s.path = h.picture_name;
    s.box = h.box;
    s.similarity = h.similarity;
    if (!truth.empty()) {
      const auto it = truth.find(h.picture_name);
      const std::optional<Box> where = it == truth.end() ? std::nullopt : it->second;
      bool is = false;
      if (where && !positive.count(h.picture_name) && finds(h.box, *where)) {
        positive[h.picture_name] = r;
        is = true;
      }
      s.correct = is;
      if (where) s.truth = std::array<float, 4>{(*where)[0], (*where)[1], (*where)[2], (*where)[3]};
      correct += is ? 1 : 0;
    }
    std::cout << fmt::format("#{:<2} {:.3f}  {}  [{:.0f} {:.0f} {:.0f} {:.0f}] score {:.2f}{}\n", r + 1, h.similarity,
                             fs::path(h.picture_name).filename().string(), h.box[0], h.box[1], h.box[2], h.box[3], h.score,
                             s.correct ? (*s.correct ? "  correct" : "  wrong") : "");
    shown.push_back(s);
  }
  if (!truth.empty()) std::cout << fmt::format("{} of the top {} are the query person\n", correct, kept.size());
  viz::draw_search_results(query_path, {query_box[0], query_box[1], query_box[2], query_box[3]}, shown, o.out, o.height);
  std::cout << "wrote " << o.out << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 05: search a gallery for a person and draw the best matches"};
  Options o;
  app.add_option("--checkpoint", o.checkpoint, "checkpoint of 02_train (its model is loaded)")->required();
  app.add_option("--config", o.config, "the checkpoint's configuration (default: the one it records; paper: "
                 "paper-<dataset>)");
  app.add_option("--dataset", o.dataset, "cuhk-sysu, prw or json")
      ->check(CLI::IsMember({"cuhk-sysu", "prw", "json"}))->capture_default_str();
  app.add_option("--root", o.root, "dataset folder (json: the .json file)");
  app.add_option("--query", o.query, "query index in the dataset");
  app.add_option("--gallery-size", o.gallery_size, "CUHK-SYSU gallery protocol")->capture_default_str();
  app.add_option("--query-image", o.query_image, "a picture with the person to look for (instead of --query)");
  app.add_option("--query-box", o.query_box, "x1,y1,x2,y2 of the person in --query-image")->delimiter(',');
  app.add_option("--gallery", o.gallery, "folder of pictures to search (with --query-image)");
  app.add_option("--index", o.index, "a gallery index of 07_build_index to search (instead of --gallery or the dataset's)");
  app.add_flag("--exact", o.exact, "with --index: exact search even when the index has a FAISS structure beside it");
  app.add_option("--top-k", o.top_k, "matches to show")->capture_default_str();
  app.add_option("--score-threshold", o.score_threshold, "detections below this confidence are ignored")
      ->capture_default_str();
  app.add_option("--min-size", o.min_size, "short side after resizing (default: the checkpoint's)");
  app.add_option("--max-size", o.max_size, "long side limit (default: the checkpoint's)");
  app.add_option("--out", o.out, "the picture to write")->capture_default_str();
  app.add_option("--height", o.height, "height of each picture in the drawing, pixels")->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    std::cout << fmt::format("trident example 05, {} threads\n", use_all_cores(o.threads));
    TRIDENT_CHECK(o.query_image.empty() != (o.query < 0),
                  "05_search: give either --query N (with --root) or --query-image with --query-box and --gallery");
    // 1. The network the checkpoint records (its configuration, network options and picture sizes).
    const auto configurations = train::example_configurations();
    const auto trained = train::trained_network(configurations, o.checkpoint,
                                                train::configuration_name(o.config, o.dataset));
    return train::with_configuration(configurations, trained.configuration, [&](const auto& entry) {
      using Cfg = typename std::decay_t<decltype(entry)>::config;
      return o.index.empty() ? run<Cfg>(o, trained) : run_index<Cfg>(o, trained);
    });
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
