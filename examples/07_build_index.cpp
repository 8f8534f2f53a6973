// 07_build_index — embed every picture of an archive once and write a gallery index to search many times.
//
//   ./build/examples/07_build_index --checkpoint out/train/checkpoint.pt --dataset cuhk-sysu --root data/synthetic
//   ./build/examples/07_build_index --checkpoint run/checkpoint.pt --folder photos/ --out photos.tgi
//   ./build/examples/07_build_index --checkpoint ... --list frames.txt --out frames.tgi --resume --ann ivf
//
// 1. the pictures: a dataset's split (--dataset/--root/--split), every .jpg/.jpeg/.png under a folder (--folder,
//    sorted), or a text file with one picture path per line (--list; blank lines and '#' comments skipped);
// 2. builds the network the checkpoint records (train::trained_network: configuration, network options, picture
//    sizes) and loads its weights (train::load_model), on CUDA
//    when there is one (--device auto);
// 3. detects everyone in --batch pictures per network call (pictures zero-padded to a common size, as in
//    training; boxes mapped back to each picture's own pixels) and keeps the detections whose confidence
//    reaches --score-threshold (default 0.05: far below the 0.5 a search uses by default, so a later search
//    may still lower its threshold, yet the clutter of near-zero boxes is not stored);
// 4. every --save-every pictures, writes what is done so far to `<out>.partial` (atomically; itself a gallery
//    index whose description names the checkpoint, its checksum, the configuration, the sizes and the picture
//    list's checksum). --resume continues from it, and refuses one made with another checkpoint, configuration,
//    picture list or threshold, naming the line that differs. Progress (pictures/s, time left) goes to stderr;
//    --stop-after N stops after N pictures in this run, leaving the partial state (to split a long run);
// 5. writes the index atomically (search/gallery_index.hpp; the format: docs/gallery-index.md), removes the
//    partial state, and searches the index for its first detection as a check;
// 6. built with trident::faiss and --ann auto|flat|ivf|hnsw, also writes the FAISS structure beside it
//    (`<out>.faiss`, search/faiss_index.hpp); --ann none (the default) writes none.
#include <trident/core/files.hpp>
#include <trident/core/threads.hpp>
#include <trident/data/pictures.hpp>
#include <trident/data/read_dataset.hpp>
#include <trident/data/transforms.hpp>
#include <trident/eval/inference.hpp>
#include <trident/search/gallery_index.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/configurations.hpp>
#if TRIDENT_HAVE_FAISS
#include <trident/search/faiss_index.hpp>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/cuda.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {
using namespace trident;
namespace fs = std::filesystem;

struct Options {
  std::string checkpoint, config, dataset, root, split = "test", folder, list, out = "out/gallery.tgi";
  std::string device = "auto", ann = "none", ivf_storage = "auto";
  int64_t nlist = 0, nprobe = 0;
  int64_t batch = 4, save_every = 200, stop_after = 0, min_size = 0, max_size = 0;
  int threads = 0;
  double score_threshold = 0.05;
  bool resume = false;
};

bool is_picture(const fs::path& path) {
  auto ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png";
}

// Step 1: the pictures to embed, in a fixed order.
std::vector<std::string> picture_list(const Options& o) {
  std::vector<std::string> out;
  if (!o.dataset.empty()) {
    data::ReadOptions read_options;
    read_options.gallery_size = 50;  // CUHK-SYSU's reader wants a query protocol file; every copy ships TestG50
    const auto ds = data::read_dataset(o.dataset, o.root, read_options);
    std::vector<int64_t> chosen;
    if (o.split != "train") chosen.insert(chosen.end(), ds.test.begin(), ds.test.end());
    if (o.split != "test") chosen.insert(chosen.end(), ds.train.begin(), ds.train.end());
    if (o.split == "all") std::sort(chosen.begin(), chosen.end());
    for (const int64_t i : chosen) out.push_back(ds.images.at(static_cast<size_t>(i)).path);
  } else if (!o.folder.empty()) {
    TRIDENT_CHECK(fs::is_directory(o.folder), "07_build_index: --folder '{}' is not a folder", o.folder);
    for (const auto& entry : fs::recursive_directory_iterator(o.folder))
      if (entry.is_regular_file() && is_picture(entry.path())) out.push_back(entry.path().string());
    std::sort(out.begin(), out.end());
  } else {
    std::ifstream in(o.list);
    TRIDENT_CHECK(in.good(), "07_build_index: cannot open --list '{}'", o.list);
    std::string line;
    while (std::getline(in, line)) {
      const auto first = line.find_first_not_of(" \t\r");
      if (first == std::string::npos || line[first] == '#') continue;
      out.push_back(line.substr(first, line.find_last_not_of(" \t\r") - first + 1));
    }
  }
  TRIDENT_CHECK(!out.empty(), "07_build_index: no pictures to embed");
  return out;
}

uint64_t checksum_of(const std::string& bytes) {
  std::string padded = bytes;
  padded.append((8 - padded.size() % 8) % 8, '\0');
  return search::detail::fnv1a_words(padded.data(), padded.size() / 8);
}

/// What a partial state must agree on to be resumed: one "name: value" line each.
std::string run_identity(const Options& o, const std::string& config, const std::vector<std::string>& pictures,
                         const eval::InferenceOptions& io) {
  std::string names;
  for (const auto& p : pictures) names += p + "\n";
  return fmt::format("trident 07_build_index\ncheckpoint: {} (checksum {:016x})\nconfig: {}\npicture list: {} pictures "
                     "(checksum {:016x})\nscore threshold: {}\npicture size: {}/{}\n",
                     fs::absolute(o.checkpoint).string(), checksum_of(read_whole_file(o.checkpoint, "07_build_index")),
                     config, pictures.size(), checksum_of(names), o.score_threshold, io.min_size, io.max_size);
}

/// The detections gathered so far, in picture order.
struct Gathered {
  std::vector<at::Tensor> boxes, scores, embeddings, picture_of;
  int64_t pictures = 0, rows = 0;

  search::GalleryIndexData data(const std::vector<std::string>& names, const std::string& description,
                                int64_t dim) const {
    search::GalleryIndexData d;
    d.pictures.assign(names.begin(), names.begin() + pictures);
    d.boxes = boxes.empty() ? at::zeros({0, 4}) : at::cat(boxes);
    d.scores = scores.empty() ? at::zeros({0}) : at::cat(scores);
    d.embeddings = embeddings.empty() ? at::zeros({0, dim}) : at::cat(embeddings);
    d.picture_of = picture_of.empty() ? at::zeros({0}, at::kLong) : at::cat(picture_of);
    d.description = description;
    return d;
  }
};

template <class Cfg>
int run(const Options& o, const train::TrainedNetwork& trained, c10::Device device) {
  const auto pictures = picture_list(o);
  // 2. The network and its trained weights.
  TridentNet<Cfg> net(trained.net);
  train::load_model(o.checkpoint, net, trained.configuration);
  net.to(device);
  eval::EvalModeScope<TridentNet<Cfg>> eval_mode(net);
  eval::InferenceOptions io;
  io.min_size = o.min_size > 0 ? o.min_size : trained.min_size;  // the checkpoint's, 0: the pictures' own
  io.max_size = o.max_size > 0 ? o.max_size : trained.max_size;
  if (io.min_size == 0 || io.max_size == 0) {
    const auto sides = data::picture_sides(pictures.front());
    if (io.min_size == 0) io.min_size = sides[0];
    if (io.max_size == 0) io.max_size = sides[1];
  }
  const std::string identity = run_identity(o, trained.configuration, pictures, io);
  const std::string partial = o.out + ".partial";
  Gathered g;
  int64_t dim = 0;
  // 4. Resume: the partial state must come from this very run's settings.
  if (o.resume && fs::exists(partial)) {
    const auto state = search::GalleryIndex::open(partial);
    std::istringstream theirs(state.description()), ours(identity);
    for (std::string a, b; std::getline(ours, b);) {
      std::getline(theirs, a);
      TRIDENT_CHECK(a == b, "07_build_index: --resume: '{}' was made with '{}', this run has '{}' (remove it, or run "
                    "without --resume to start over)", partial, a, b);
    }
    for (size_t i = 0; i < state.pictures().size(); ++i)
      TRIDENT_CHECK(state.pictures()[i] == pictures[i], "07_build_index: --resume: picture {} of '{}' is '{}', not '{}'",
                    i, partial, state.pictures()[i], pictures[i]);
    g.pictures = static_cast<int64_t>(state.pictures().size());
    g.rows = state.size();
    dim = state.dim();
    g.boxes.push_back(state.boxes().clone());
    g.scores.push_back(state.scores().clone());
    g.embeddings.push_back(state.embeddings().clone());
    g.picture_of.push_back(state.picture_of().clone());
    std::cerr << fmt::format("resumed from {}: {} of {} pictures done, {} detections\n", partial, g.pictures,
                             pictures.size(), g.rows);
  } else if (fs::exists(partial)) {
    std::cerr << fmt::format("note: {} exists; starting over (--resume continues it)\n", partial);
  }
  std::cout << fmt::format("{}: {} pictures, config {}, device {}, batch {}, pictures resized to {}/{}\n",
                           o.checkpoint, pictures.size(), trained.configuration, device.str(), o.batch, io.min_size, io.max_size);
  // 3. The detections, --batch pictures per network call.
  const auto start = std::chrono::steady_clock::now();
  const int64_t first = g.pictures;
  int64_t last_saved = g.pictures;
  at::NoGradGuard no_grad;
  const auto total = static_cast<int64_t>(pictures.size());
  const int64_t stop = o.stop_after > 0 ? std::min(total, first + o.stop_after) : total;
  while (g.pictures < stop) {
    const int64_t count = std::min(o.batch, stop - g.pictures);
    std::vector<at::Tensor> images;
    std::vector<data::Resized> resized;
    for (int64_t i = 0; i < count; ++i) {
      const Target none{at::zeros({0, 4}), at::zeros({0}, at::kLong)};
      resized.push_back(data::resize_for_detection(data::load_image(pictures[static_cast<size_t>(g.pictures + i)]),
                                                   none, io.min_size, io.max_size));
      images.push_back(data::normalize(resized.back().image));
    }
    auto collated = data::collate(images, {});
    collated.batch.images = collated.batch.images.to(device);
    const auto found = net.detect(collated.batch);
    for (int64_t i = 0; i < count; ++i) {
      const auto& d = found.at(static_cast<size_t>(i));
      const auto it = d.outputs.find(io.embedding);
      TRIDENT_CHECK(it != d.outputs.end(), "07_build_index: the network has no '{}' output", io.embedding);
      const auto scores = d.scores.to(at::kCPU, at::kFloat);
      const auto keep = (scores >= o.score_threshold).nonzero().select(1, 0);
      const auto r = resized[static_cast<size_t>(i)];
      g.boxes.push_back(
          data::boxes_to_original(d.boxes.to(at::kCPU), r.size, r.original_size).to(at::kFloat).index_select(0, keep));
      g.scores.push_back(scores.index_select(0, keep));
      g.embeddings.push_back(it->second.to(at::kCPU, at::kFloat).index_select(0, keep));
      g.picture_of.push_back(at::full({keep.size(0)}, g.pictures + i, at::kLong));
      g.rows += keep.size(0);
      dim = it->second.size(1);
    }
    g.pictures += count;
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = static_cast<double>(g.pictures - first) / std::max(seconds, 1e-9);
    std::cerr << fmt::format("\r  {}/{} pictures, {} detections, {:.2f} pictures/s, {:.0f} s left   ", g.pictures,
                             total, g.rows, rate, static_cast<double>(total - g.pictures) / rate)
              << std::flush;
    if (g.pictures - last_saved >= o.save_every || (g.pictures == stop && stop < total)) {
      search::write_gallery_index(partial, g.data(pictures, identity, dim));
      last_saved = g.pictures;
    }
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cerr << "\n";
  std::cout << fmt::format("embedded {} pictures in this run in {:.1f} s ({:.2f} pictures/s), {} detections with "
                           "score >= {}\n", g.pictures - first, seconds,
                           static_cast<double>(g.pictures - first) / std::max(seconds, 1e-9), g.rows,
                           o.score_threshold);
  if (g.pictures < total) {
    std::cout << fmt::format("stopped after {} of {} pictures; the state is in {} (continue with --resume)\n",
                             g.pictures, total, partial);
    return 0;
  }
  // 5. The index, then a check: its first detection must find itself.
  search::write_gallery_index(o.out, g.data(pictures, identity, dim));
  fs::remove(partial);
  const auto index = search::GalleryIndex::open(o.out);
  std::cout << fmt::format("wrote {}: {} detections of {} pictures, dim {}, {:.1f} MB\n", o.out, index.size(),
                           index.pictures().size(), index.dim(), static_cast<double>(index.file_size()) / 1e6);
  if (index.size() > 0) {
    const auto hits = index.search(index.embeddings()[0], {.top_k = 1, .score_threshold = 0,
                                                           .weighting = search::SimilarityWeighting::none});
    std::cout << fmt::format("check: detection 0 finds row {} ({}) at cosine {:.4f}\n", hits[0][0].row,
                             fs::path(hits[0][0].picture_name).filename().string(), hits[0][0].similarity);
  }
  // 6. The FAISS structure beside it.
  if (o.ann != "none") {
#if TRIDENT_HAVE_FAISS
    const auto ann = search::FaissIndex::build(
        index, {.kind = search::parse_faiss_kind(o.ann, "07_build_index"),
                .score_threshold = o.score_threshold,
                .nlist = o.nlist,
                .nprobe = o.nprobe,
                .storage = search::parse_ivf_storage(o.ivf_storage, "07_build_index: --ivf-storage")});
    ann.save(search::FaissIndex::sidecar_path(o.out));
    std::cout << fmt::format("wrote {}: FAISS {} over {} rows{}\n", search::FaissIndex::sidecar_path(o.out),
                             search::faiss_kind_name(ann.kind()), ann.size(),
                             ann.nlist() > 0 ? fmt::format(" ({} lists, {} searched, {})", ann.nlist(), ann.nprobe(),
                                                           search::ivf_storage_name(ann.ivf_storage()))
                                             : "");
#else
    fail("07_build_index: --ann {} needs trident::faiss (FAISS was not found when this was built)", o.ann);
#endif
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 07: embed every picture of an archive once and write a gallery index"};
  Options o;
  app.add_option("--checkpoint", o.checkpoint, "checkpoint of 02_train (its model is loaded)")->required();
  app.add_option("--config", o.config, "the checkpoint's configuration (default: the one it records; paper: "
                 "paper-<dataset>)");
  app.add_option("--dataset", o.dataset, "cuhk-sysu, prw or json: embed a split of this dataset")
      ->check(CLI::IsMember({"cuhk-sysu", "prw", "json"}));
  app.add_option("--root", o.root, "dataset folder (json: the .json file)");
  app.add_option("--split", o.split, "the dataset's split: test, train or all")
      ->check(CLI::IsMember({"test", "train", "all"}))->capture_default_str();
  app.add_option("--folder", o.folder, "embed every .jpg/.jpeg/.png under this folder");
  app.add_option("--list", o.list, "embed the pictures listed in this text file, one path per line");
  app.add_option("--out", o.out, "the gallery index to write")->capture_default_str();
  app.add_option("--batch", o.batch, "pictures per network call")->check(CLI::PositiveNumber)->capture_default_str();
  app.add_option("--device", o.device, "auto (CUDA when present), cpu or cuda")
      ->check(CLI::IsMember({"auto", "cpu", "cuda"}))->capture_default_str();
  app.add_option("--score-threshold", o.score_threshold, "detections stored: confidence >= this")
      ->capture_default_str();
  app.add_option("--save-every", o.save_every, "pictures between two writes of <out>.partial")
      ->check(CLI::PositiveNumber)->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from <out>.partial");
  app.add_option("--stop-after", o.stop_after, "stop after this many pictures in this run (0: all)");
  app.add_option("--ann", o.ann, "also write <out>.faiss: none, auto, flat, ivf or hnsw (needs trident::faiss)")
      ->check(CLI::IsMember({"none", "auto", "flat", "ivf", "hnsw"}))->capture_default_str();
  app.add_option("--ivf-storage", o.ivf_storage,
                 "with an IVF --ann: auto, flat (float32), sq8 (8-bit), pq (8-bit product codes) or pq4 (4-bit "
                 "fast-scan codes)")
      ->check(CLI::IsMember({"auto", "flat", "sq8", "pq", "pq4"}))->capture_default_str();
  app.add_option("--nlist", o.nlist, "with an IVF --ann: lists (0: automatic)")->capture_default_str();
  app.add_option("--nprobe", o.nprobe, "with an IVF --ann: lists searched per query (0: automatic)")
      ->capture_default_str();
  app.add_option("--min-size", o.min_size, "short side after resizing (default: the checkpoint's)");
  app.add_option("--max-size", o.max_size, "long side limit (default: the checkpoint's)");
  app.add_option("--threads", o.threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    std::cout << fmt::format("trident example 07, {} threads\n", use_all_cores(o.threads));
    TRIDENT_CHECK(static_cast<int>(!o.dataset.empty()) + static_cast<int>(!o.folder.empty()) +
                          static_cast<int>(!o.list.empty()) == 1,
                  "07_build_index: give one of --dataset (with --root), --folder or --list");
    TRIDENT_CHECK(o.dataset.empty() || !o.root.empty(), "07_build_index: --dataset {} needs --root", o.dataset);
    const bool cuda = torch::cuda::is_available();
    TRIDENT_CHECK(o.device != "cuda" || cuda, "07_build_index: --device cuda, but LibTorch sees no CUDA device");
    const c10::Device device(o.device == "auto" ? (cuda ? "cuda" : "cpu") : o.device);
    // 2. The network the checkpoint records (its configuration, network options and picture sizes).
    const auto configurations = train::example_configurations();
    const auto trained = train::trained_network(configurations, o.checkpoint,
                                                train::configuration_name(o.config, o.dataset));
    return train::with_configuration(configurations, trained.configuration, [&](const auto& entry) {
      return run<typename std::decay_t<decltype(entry)>::config>(o, trained, device);
    });
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
