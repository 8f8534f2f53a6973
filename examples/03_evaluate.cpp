// 03_evaluate — evaluate a trained model, or score a results file, with the person-search protocols.
//
//   ./build/examples/03_evaluate --dataset cuhk-sysu --root data/synthetic --checkpoint out/small/checkpoint.pt
//                                --config small --gallery-sizes 50 [--results run.trs] [--compare-untrained]
//   ./build/examples/03_evaluate --dataset cuhk-sysu --root data/cuhk_sysu --results run.trs [--json scores.json]
//                                [--gallery-sizes 50,100,500,1000,2000,4000]
//   ./build/examples/03_evaluate --dataset prw --root data/PRW --results run.json
//   ./build/examples/03_evaluate --dataset json --root my_dataset.json --results run.json
//
// A results file holds a model's outputs on the test split — every gallery image's detections (box, score,
// re-id embedding) and every query's embedding — in JSON or in trident's binary form (docs/results-format.md;
// load_search_outputs tells them apart by their first bytes). Evaluation is kept apart from inference so that
// the numbers can be recomputed, with other protocols or on other methods' outputs, without running a model.
// What this program does:
//   1. read the results file;
//   2. read the dataset's annotations: CUHK-SYSU once per gallery size (each TestG<size>.mat gives every query
//      its own gallery of that size), PRW once (its galleries are built from the test split), or a dataset in
//      trident's JSON format (docs/datasets.md, "Your own data"; its queries may carry galleries or not);
//   3. score: detection AP and recall over the test images (all people, and labeled people only), and search
//      mAP and top-1/5/10 (for PRW the regular and the multi-view gallery), with SeqNet's thresholds;
//   4. print the table and, with --json, write it as JSON.
// Pictures are never opened: scoring needs the annotations only. The results must cover every test image (by
// file name) and every query (by image and box); an error names what is missing.
//
// With --checkpoint the model comes first (step 0): the network of --config is built, the checkpoint's weights
// are loaded, and eval::compute_search_outputs runs it over every test picture and embeds every query from its
// box; the outputs are written to --results (when given) and scored as above. --compare-untrained also scores
// the same network with its initial random weights (the same seed as 02_train), the floor the training lifts.

#include <trident/core/threads.hpp>
#include <trident/data/read_dataset.hpp>
#include <trident/eval/inference.hpp>
#include <trident/eval/protocol.hpp>
#include <trident/eval/results_file.hpp>
#include <trident/model/configs.hpp>
#include <trident/train/checkpoint.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <string>
#include <vector>

namespace {

using namespace trident;

struct ScoreOptions {
  std::vector<int> gallery_sizes = {100};  ///< CUHK-SYSU only: one search row per size
  std::string json_out;                    ///< where to write the table as JSON; empty: nowhere
  eval::ProtocolOptions protocol;          ///< SeqNet's thresholds by default
};

// Steps 2 to 4: read the dataset's annotations, score `outputs`, print the table and write the JSON.
eval::EvaluationTable score_and_print(const std::string& kind, const std::string& root,
                                      const SearchOutputs& outputs, const ScoreOptions& options) {
  eval::EvaluationTable table;
  data::ReadOptions read_options;
  read_options.check_images = false;  // scoring opens no picture
  if (kind == "cuhk-sysu") {
    // The first size gives the detection rows (they do not depend on the gallery size), every size a search
    // row. Each size is a separate read: TestG<size>.mat holds the galleries of that size.
    for (size_t i = 0; i < options.gallery_sizes.size(); ++i) {
      read_options.gallery_size = options.gallery_sizes[i];
      const auto dataset = data::read_dataset(kind, root, read_options);
      const auto setting = fmt::format("gallery {}", read_options.gallery_size);
      if (i == 0) {
        table = eval::score_search_outputs(dataset, outputs, options.protocol, setting);
      } else {
        for (auto& row : eval::score_search(dataset, outputs, options.protocol, setting))
          table.search.push_back(std::move(row));
      }
    }
  } else {
    table = eval::score_search_outputs(data::read_dataset(kind, root, read_options), outputs, options.protocol);
  }
  std::cout << eval::format_table(table);
  if (!options.json_out.empty()) {
    std::ofstream file(options.json_out);
    TRIDENT_CHECK(file.good(), "03_evaluate: cannot open '{}' for writing", options.json_out);
    file << eval::to_json(table).dump(2) << '\n';
    TRIDENT_CHECK(file.good(), "03_evaluate: writing '{}' failed", options.json_out);
    std::cout << fmt::format("\nwrote {}\n", options.json_out);
  }
  return table;
}

/// What step 0 needs: the checkpoint, the configuration and the picture size.
struct ModelOptions {
  std::string checkpoint, config = "small";
  bool compare_untrained = false;
  int64_t seed = 0, min_size = 0, max_size = 0;
};

// Step 0: run the network of configuration Cfg (trained, and untrained when asked) over the test split.
template <class Cfg>
std::vector<SearchOutputs> run_model(const ModelOptions& m, NetOptions net_options, const data::Dataset& dataset) {
  eval::InferenceOptions io;
  if (m.min_size > 0) io.min_size = m.min_size;
  if (m.max_size > 0) io.max_size = m.max_size;
  if (m.min_size == 0 && m.config == "small") {  // the small configuration runs the pictures at their own size
    const auto sides = data::picture_sides(dataset.images.at(static_cast<size_t>(dataset.test.at(0))).path);
    io.min_size = sides[0];
    io.max_size = sides[1];
  }
  int64_t last = -1;
  io.progress = [&last](int64_t done, int64_t total) {
    if (done * 10 / total != last) std::cerr << fmt::format("  inference {}/{}\n", done, total);
    last = done * 10 / total;
  };
  std::vector<SearchOutputs> out;
  at::manual_seed(static_cast<uint64_t>(m.seed));  // the initialisation 02_train started from
  TridentNet<Cfg> untrained(net_options);
  TridentNet<Cfg> net(net_options);
  train::load_model(m.checkpoint, net);
  std::cout << fmt::format("{}: {} test pictures, {} queries, pictures resized to {}/{}\n", m.checkpoint,
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
  app.add_option("--config", model.config, "the checkpoint's configuration: small or paper")
      ->check(CLI::IsMember({"small", "paper"}))->capture_default_str();
  app.add_flag("--compare-untrained", model.compare_untrained, "also score the untrained network (same seed)");
  app.add_option("--seed", model.seed, "the seed 02_train initialised the network with")->capture_default_str();
  app.add_option("--min-size", model.min_size, "short side of the test pictures (default: paper 900, small: theirs)");
  app.add_option("--max-size", model.max_size, "long side limit (default: paper 1500, small: the pictures')");
  app.add_option("--json", options.json_out, "also write the table to this JSON file");
  app.add_option("--gallery-sizes", options.gallery_sizes, "CUHK-SYSU gallery sizes (50, 100, 500, 1000, 2000, 4000)")
      ->delimiter(',');
  app.add_option("--threads", threads, "LibTorch intra-op threads (0: TRIDENT_NUM_THREADS, else all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    use_all_cores(threads);
    if (!model.checkpoint.empty()) {
      // 0. Run the model; write its outputs; score them (and the untrained network's).
      data::ReadOptions read_options;
      read_options.gallery_size = options.gallery_sizes.at(0);
      const auto dataset = data::read_dataset(kind, root, read_options);
      std::vector<SearchOutputs> runs;
      if (model.config == "small") runs = run_model<SmallCpuConfig>(model, small_net_options(), dataset);
      else if (kind == "prw") runs = run_model<PaperConfig<Prw>>(model, {}, dataset);
      else runs = run_model<PaperConfig<CuhkSysu>>(model, {}, dataset);
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
        const auto untrained = score_and_print(kind, root, runs[1], untrained_options);
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
