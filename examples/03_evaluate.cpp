// 03_evaluate — evaluate a trained model, or score a results file, with the person-search protocols.
//
//   ./build/examples/03_evaluate --dataset cuhk-sysu --root data/synthetic --checkpoint out/small/checkpoint.pt
//                                --gallery-sizes 50 [--results run.trs] [--compare-untrained]
//   ./build/examples/03_evaluate --dataset cuhk-sysu --root data/cuhk_sysu --results run.trs [--json scores.json]
//                                [--gallery-sizes 50,100,500,1000,2000,4000,full] [--curve gallery.png]
//   ./build/examples/03_evaluate --dataset prw --root data/PRW --results run.json [--similarity cosine]
//   ./build/examples/03_evaluate --dataset json --root my_dataset.json --results run.json
//
// A results file holds a model's outputs on the test split — every gallery image's detections (box, score,
// re-id embedding) and every query's embedding — in JSON or in trident's binary form (docs/results-format.md;
// load_search_outputs tells them apart by their first bytes). Evaluation is kept apart from inference so that
// the numbers can be recomputed, with other protocols or on other methods' outputs, without running a model.
// What this program does:
//   1. read the results file;
//   2. read the dataset's annotations: CUHK-SYSU once per setting — each TestG<size>.mat gives every query its
//      own gallery of that size (G50 and G100 by default); "full" searches every test picture but the query's
//      (OIM's full-set protocol); the occlusion and low-resolution query subsets come from annotation/test/subset
//      (a missing file skips its row with a warning) — PRW once (its galleries are built from the test split:
//      regular, multi-view = other cameras only, same-camera), or a dataset in trident's JSON format
//      (docs/datasets.md, "Your own data"; its queries may carry galleries or not). What the reader dropped
//      (boxes without area, identity boxes matching no box) is printed;
//   3. score: detection AP and recall over the test images (all people, and labeled people only; detections with
//      score >= --det-threshold), and search mAP and top-k (--top-k) over the gallery detections with score >=
//      --search-threshold, ranked by the confidence-weighted cosine (--similarity cosine: the plain one) —
//      SeqNet's thresholds by default; --cbgm re-scores with SeqNet's context bipartite graph matching;
//   4. print the table and, with --json, write it as JSON with every query's result (its AP, the rank of its
//      first match, its best match); with --curve, draw mAP and top-1 against the CUHK-SYSU gallery size.
// Pictures are never opened: scoring needs the annotations only. The results must cover every test image (by
// file name) and every query (by image and box); an error names what is missing.
//
// With --checkpoint the model comes first (step 0): the network the checkpoint records (its configuration, its
// network options and picture sizes: train::trained_network; --config, --min-size and --max-size replace them)
// is built, the checkpoint's weights are loaded, and eval::compute_search_outputs runs it over every test picture and embeds every query from its
// box; the outputs are written to --results (when given) and scored as above. --compare-untrained also scores
// the same network with its initial random weights (the same seed as 02_train), the floor the training lifts.

#include <trident/core/threads.hpp>
#include <trident/data/read_dataset.hpp>
#include <trident/eval/inference.hpp>
#include <trident/eval/protocol.hpp>
#include <trident/eval/results_file.hpp>
#include <trident/core/files.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/configurations.hpp>
#include <trident/viz/gallery_curve.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace trident;

struct ScoreOptions {
  /// CUHK-SYSU only: one search row per gallery size (50 ... 4000), "full" for the full test set as gallery.
  std::vector<std::string> gallery_sizes = {"50", "100"};
  /// CUHK-SYSU only: the query subsets of annotation/test/subset ("occlusion", "low-resolution"); a missing
  /// file skips its row with a warning.
  std::vector<std::string> subsets = {"occlusion", "low-resolution"};
  std::string json_out;                    ///< where to write the table as JSON; empty: nowhere
  std::string curve_out;                   ///< CUHK-SYSU: where to draw mAP against gallery size (PNG)
  eval::ProtocolOptions protocol;          ///< SeqNet's thresholds by default
};

/// The reader's notes: the first few printed, every one counted.
struct ReaderNotes {
  std::vector<std::string> lines;
  void print(const data::Dataset& dataset) const {
    const auto& r = dataset.report;
    if (r.dropped_boxes == 0 && r.unmatched_boxes == 0 && lines.empty()) return;
    std::cerr << fmt::format("03_evaluate: the {} reader dropped {} boxes (width or height <= 0) and found {} "
                             "identity boxes matching no box of their picture:\n",
                             dataset.name, r.dropped_boxes, r.unmatched_boxes);
    for (size_t i = 0; i < lines.size() && i < 8; ++i) std::cerr << "  " << lines[i] << "\n";
    if (lines.size() > 8) std::cerr << fmt::format("  ... and {} more\n", lines.size() - 8);
  }
};

data::Dataset read_reported(const std::string& kind, const std::string& root, data::ReadOptions read_options,
                            bool report) {
  ReaderNotes notes;
  read_options.log = [&notes](const std::string& line) { notes.lines.push_back(line); };
  auto dataset = data::read_dataset(kind, root, read_options);
  if (report) notes.print(dataset);
  return dataset;
}

/// One CUHK-SYSU search setting: a TestG<size> list, the full set, or a query subset.
struct CuhkSetting {
  std::string row;   ///< the table's row name
  int size = 0;      ///< gallery size; 0 for the full set and the subsets
  data::ReadOptions read;
  bool full_set = false;
};

std::vector<CuhkSetting> cuhk_settings(const ScoreOptions& options) {
  std::vector<CuhkSetting> out;
  for (const auto& value : options.gallery_sizes) {
    CuhkSetting s;
    s.read.check_images = false;
    if (value == "full") {
      s.row = "full set";
      s.full_set = true;
      s.read.gallery_size = 50;  // TestG50 names every picture of each test person
    } else {
      int size = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), size);
      TRIDENT_CHECK(ec == std::errc() && end == value.data() + value.size() &&
                        (size == 50 || size == 100 || size == 500 || size == 1000 || size == 2000 || size == 4000),
                    "03_evaluate: --gallery-sizes takes 50, 100, 500, 1000, 2000, 4000 or full, got '{}'", value);
      s.row = fmt::format("gallery {}", size);
      s.size = size;
      s.read.gallery_size = size;
    }
    out.push_back(s);
  }
  for (const auto& value : options.subsets) {
    CuhkSetting s;
    s.read.check_images = false;
    if (value == "occlusion") s.read.subset = data::CuhkSysuSubset::occlusion;
    else if (value == "low-resolution") s.read.subset = data::CuhkSysuSubset::low_resolution;
    else fail("03_evaluate: --subsets takes occlusion and low-resolution, got '{}'", value);
    s.row = value;
    out.push_back(s);
  }
  return out;
}

/// mAP and top-1 against gallery size, drawn when at least two sizes were scored.
void draw_curve(const std::vector<std::pair<int, const eval::SearchRow*>>& points, const std::string& path,
                const std::string& dataset) {
  if (points.size() < 2) {
    std::cerr << fmt::format("03_evaluate: warning: --curve needs at least two gallery sizes; '{}' not drawn\n", path);
    return;
  }
  viz::GalleryCurveSeries map{"mAP", {}, {}}, top1{"top-1", {}, {}};
  for (const auto& [size, row] : points) {
    map.sizes.push_back(size);
    map.values.push_back(row->metrics.mean_average_precision);
    top1.sizes.push_back(size);
    top1.values.push_back(row->metrics.top_k_accuracy.empty() ? 0.0 : row->metrics.top_k_accuracy.front());
  }
  viz::draw_gallery_size_curve({map, top1}, path, fmt::format("{}: search against gallery size", dataset));
  std::cout << fmt::format("wrote {}\n", path);
}

// Steps 2 to 4: read the dataset's annotations, score `outputs`, print the table and write the JSON.
eval::EvaluationTable score_and_print(const std::string& kind, const std::string& root,
                                      const SearchOutputs& outputs, const ScoreOptions& options,
                                      bool report_reader = true) {
  eval::EvaluationTable table;
  if (kind == "cuhk-sysu") {
    // The first setting read gives the detection rows (they do not depend on the gallery), every setting a
    // search row. Each is a separate read: TestG<size>.mat (or the subset's file) holds its galleries. A
    // missing file skips its row with a warning (not every copy of the dataset ships every size).
    bool first = true;
    std::vector<std::pair<int, size_t>> sizes;  // gallery size -> row
    for (const auto& setting : cuhk_settings(options)) {
      data::CuhkSysuOptions file_options;
      file_options.gallery_size = setting.read.gallery_size;
      file_options.subset = setting.read.subset;
      const auto file = data::cuhk_sysu_protocol_file(root, file_options).path;
      if (!std::filesystem::exists(file)) {
        std::cerr << fmt::format("03_evaluate: warning: '{}' does not exist: row '{}' skipped\n", file.string(),
                                 setting.row);
        continue;
      }
      const auto dataset = read_reported(kind, root, setting.read, report_reader && first);
      if (first) table = eval::score_detection_table(dataset, outputs, options.protocol);
      first = false;
      if (setting.full_set) {
        table.search.push_back(eval::score_search_full_set(dataset, outputs, options.protocol));
      } else {
        for (auto& row : eval::score_search(dataset, outputs, options.protocol, setting.row))
          table.search.push_back(std::move(row));
      }
      if (setting.size > 0) sizes.emplace_back(setting.size, table.search.size() - 1);
    }
    TRIDENT_CHECK(!first, "03_evaluate: none of the requested CUHK-SYSU protocol files exists under '{}'", root);
    if (!options.curve_out.empty()) {
      std::sort(sizes.begin(), sizes.end());
      std::vector<std::pair<int, const eval::SearchRow*>> points;
      for (const auto& [size, row] : sizes) points.emplace_back(size, &table.search[row]);
      draw_curve(points, options.curve_out, table.dataset);
    }
  } else {
    data::ReadOptions read_options;
    read_options.check_images = false;  // scoring opens no picture
    table = eval::score_search_outputs(read_reported(kind, root, read_options, report_reader), outputs,
                                       options.protocol);
  }
  std::cout << eval::format_table(table);
  if (!options.json_out.empty()) {
    write_bytes_atomically(options.json_out, eval::to_json(table).dump(2) + "\n", "03_evaluate");
    std::cout << fmt::format("\nwrote {}\n", options.json_out);
  }
  return table;
}

/// What step 0 needs: the checkpoint, and what may replace what it records (configuration, picture sizes).
struct ModelOptions {
  std::string checkpoint, config;
  bool compare_untrained = false;
  int64_t seed = 0, min_size = 0, max_size = 0;
};

// Step 0: run the network of configuration Cfg (trained, and untrained when asked) over the test split.
template <class Cfg>
std::vector<SearchOutputs> run_model(const ModelOptions& m, const train::TrainedNetwork& trained,
                                     const data::Dataset& dataset) {
  eval::InferenceOptions io;
  io.min_size = m.min_size > 0 ? m.min_size : trained.min_size;
  io.max_size = m.max_size > 0 ? m.max_size : trained.max_size;
  if (io.min_size == 0 || io.max_size == 0) {  // trained at the pictures' own size
    const auto sides = data::picture_sides(dataset.images.at(static_cast<size_t>(dataset.test.at(0))).path);
    if (io.min_size == 0) io.min_size = sides[0];
    if (io.max_size == 0) io.max_size = sides[1];
  }
  int64_t last = -1;
  io.progress = [&last](int64_t done, int64_t total) {
    if (done * 10 / total != last) std::cerr << fmt::format("  inference {}/{}\n", done, total);
    last = done * 10 / total;
  };
  std::vector<SearchOutputs> out;
  at::manual_seed(static_cast<uint64_t>(m.seed));  // the initialisation 02_train started from
  TridentNet<Cfg> untrained(trained.net);
  TridentNet<Cfg> net(trained.net);
  train::load_model(m.checkpoint, net, trained.configuration);
  std::cout << fmt::format("{}: configuration {}{}; {} test pictures, {} queries, pictures resized to {}/{}\n",
                           m.checkpoint, trained.configuration,
                           trained.recorded ? "" : " (its network options and sizes not recorded: its recipe's)",
                           dataset.test.size(), dataset.queries.size(), io.min_size, io.max_size);
  out.push_back(eval::compute_search_outputs(net, dataset, io));
  if (m.compare_untrained) out.push_back(eval::compute_search_outputs(untrained, dataset, io));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"03_evaluate: score a results file (JSON or binary) with the person-search protocols"};
  std::string kind = "cuhk-sysu";
  std::string root, results;
  ScoreOptions options;
  int threads = 0;
  app.add_option("--dataset", kind, "cuhk-sysu, prw, or json (trident's JSON dataset format)")
      ->required()
      ->check(CLI::IsMember({"cuhk-sysu", "prw", "json"}));
  app.add_option("--root", root, "the dataset's folder (for json: the dataset's .json file)")->required();
  ModelOptions model;
  app.add_option("--results", results, "the results file (.json, .trs or .bin) to score; with --checkpoint, to write");
  app.add_option("--checkpoint", model.checkpoint, "run this checkpoint of 02_train over the test split first");
  app.add_option("--config", model.config, "the checkpoint's configuration (default: the one it records; paper: "
                 "paper-<dataset>)");
  app.add_flag("--compare-untrained", model.compare_untrained, "also score the untrained network (same seed)");
  app.add_option("--seed", model.seed, "the seed 02_train initialised the network with")->capture_default_str();
  app.add_option("--min-size", model.min_size, "short side of the test pictures (default: the checkpoint's)");
  app.add_option("--max-size", model.max_size, "long side limit (default: the checkpoint's)");
  app.add_option("--json", options.json_out, "also write the table to this JSON file");
  app.add_option("--gallery-sizes", options.gallery_sizes,
                 "CUHK-SYSU: one search row per gallery size (50, 100, 500, 1000, 2000, 4000) and 'full' (every test "
                 "picture but the query's)")
      ->delimiter(',')->capture_default_str();
  app.add_option("--subsets", options.subsets,
                 "CUHK-SYSU: query subset rows (occlusion, low-resolution; 'none' for none); a missing file is skipped "
                 "with a warning")
      ->delimiter(',')->capture_default_str();
  std::vector<std::string> camera_galleries = {"regular", "multi-view", "same-camera"};
  app.add_option("--camera-galleries", camera_galleries,
                 "PRW (queries without galleries): rows regular, multi-view (other cameras), same-camera")
      ->delimiter(',')->capture_default_str()
      ->check(CLI::IsMember({"regular", "multi-view", "same-camera"}));
  std::string similarity = "weighted";
  app.add_option("--similarity", similarity,
                 "weighted: detection confidence x cosine (the paper's, SeqNet's, NAE's); cosine: plain cosine (OIM's)")
      ->check(CLI::IsMember({"weighted", "cosine"}))->capture_default_str();
  app.add_option("--det-threshold", options.protocol.detection.score_threshold,
                 "detections counted by the detection AP / recall (SeqNet's 0.01)")->capture_default_str();
  app.add_option("--search-threshold", options.protocol.search.score_threshold,
                 "gallery detections searched (SeqNet's 0.5)")->capture_default_str();
  app.add_option("--top-k", options.protocol.search.top_k, "the k of the top-k accuracies")
      ->delimiter(',')->capture_default_str();
  app.add_option("--curve", options.curve_out, "CUHK-SYSU: draw mAP and top-1 against gallery size into this PNG");
  bool cbgm = false;
  int64_t cbgm_k1 = 0, cbgm_k2 = 0;
  app.add_flag("--cbgm", cbgm,
               "re-score with SeqNet's context bipartite graph matching (rows marked +CBGM), as the '+CBGM' columns of "
               "SeqNet, GLCNet and COAT");
  app.add_option("--cbgm-k1", cbgm_k1, "CBGM: images re-scored (default: SeqNet's, 10 CUHK-SYSU, 30 PRW)");
  app.add_option("--cbgm-k2", cbgm_k2, "CBGM: the query and k2 - 1 people of its picture (default: 3 CUHK-SYSU, 4 PRW)");
  app.add_option("--threads", threads, "LibTorch intra-op threads (0: TRIDENT_NUM_THREADS, else all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    use_all_cores(threads);
    options.protocol.search.weighting =
        similarity == "cosine" ? search::SimilarityWeighting::none : search::SimilarityWeighting::confidence;
    const auto wanted = [&](const char* name) {
      return std::find(camera_galleries.begin(), camera_galleries.end(), name) != camera_galleries.end();
    };
    options.protocol.camera_galleries = {wanted("regular"), wanted("multi-view"), wanted("same-camera")};
    if (options.subsets.size() == 1 && options.subsets[0] == "none") options.subsets.clear();
    if (cbgm) {
      auto c = kind == "prw" ? eval::cbgm_prw : eval::cbgm_cuhk_sysu;
      if (cbgm_k1 > 0) c.top_images_k1 = cbgm_k1;
      if (cbgm_k2 > 0) c.context_k2 = cbgm_k2;
      options.protocol.search.cbgm = c;
    }
    if (!model.checkpoint.empty()) {
      // 0. Run the model; write its outputs; score them (and the untrained network's).
      // The queries are the same people in every TestG<size> list (and the subsets' are among them): the first
      // gallery size given (or 50) decides which list is read to embed them.
      data::ReadOptions read_options;
      read_options.gallery_size = 50;
      for (const auto& value : options.gallery_sizes)
        if (value != "full") {
          read_options.gallery_size = std::stoi(value);
          break;
        }
      const auto dataset = data::read_dataset(kind, root, read_options);
      const auto configurations = train::example_configurations();
      const std::string config = train::configuration_name(model.config, kind);
      const auto network = train::trained_network(configurations, model.checkpoint, config);
      const auto runs = train::with_configuration(configurations, network.configuration, [&](const auto& entry) {
        return run_model<typename std::decay_t<decltype(entry)>::config>(model, network, dataset);
      });
      if (!results.empty()) {
        eval::save_search_outputs(runs[0], results);
        std::cout << fmt::format("wrote {}\n", results);
      }
      std::cout << "\ntrained model\n";
      const auto trained = score_and_print(kind, root, runs[0], options);
      if (runs.size() > 1) {
        std::cout << "\nthe same network untrained (its initial random weights)\n";
        auto untrained_options = options;
        untrained_options.json_out.clear();
        untrained_options.curve_out.clear();
        const auto untrained = score_and_print(kind, root, runs[1], untrained_options, /*report_reader=*/false);
        std::cout << "\n" << fmt::format("{:<16} {:>10} {:>10}\n", "", "untrained", "trained");
        std::cout << fmt::format("{:<16} {:>9.2f}% {:>9.2f}%\n", "detection AP", 100 * untrained.detection.average_precision,
                                 100 * trained.detection.average_precision);
        for (size_t r = 0; r < trained.search.size(); ++r) {
          std::cout << fmt::format("{:<16} {:>9.2f}% {:>9.2f}%\n", trained.search[r].setting + " mAP",
                                   100 * untrained.search[r].metrics.mean_average_precision,
                                   100 * trained.search[r].metrics.mean_average_precision);
          std::cout << fmt::format("{:<16} {:>9.2f}% {:>9.2f}%\n", trained.search[r].setting + " top-1",
                                   100 * untrained.search[r].metrics.top_k_accuracy.at(0),
                                   100 * trained.search[r].metrics.top_k_accuracy.at(0));
        }
      }
      return 0;
    }
    TRIDENT_CHECK(!results.empty(), "03_evaluate: give --results FILE to score (or --checkpoint to run a model)");
    // 1. The model's outputs, in either form.
    const auto outputs = eval::load_search_outputs(results);
    std::cout << fmt::format("{}: {} gallery images, {} queries, {}-d embeddings\n\n", results,
                             outputs.gallery_images.size(), outputs.query_images.size(),
                             outputs.query_embeddings.size(1));
    // 2.-4.
    score_and_print(kind, root, outputs, options);
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 1;
  }
  return 0;
}
