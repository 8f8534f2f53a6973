// 03_evaluate — score a results file with the person-search protocols.
//
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
// score_and_print() is the reusable part: a program that first runs a model over the test split (and writes its
// outputs with eval::save_search_outputs) hands the outputs to it.

#include <trident/core/threads.hpp>
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/custom_json.hpp>
#include <trident/data/prw.hpp>
#include <trident/eval/protocol.hpp>
#include <trident/eval/results_file.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace trident;

enum class DatasetKind { cuhk_sysu, prw, json };

struct ScoreOptions {
  std::vector<int> gallery_sizes = {100};  ///< CUHK-SYSU only: one search row per size
  std::string json_out;                    ///< where to write the table as JSON; empty: nowhere
  eval::ProtocolOptions protocol;          ///< SeqNet's thresholds by default
};

// Steps 2 to 4: read the dataset's annotations, score `outputs`, print the table and write the JSON.
eval::EvaluationTable score_and_print(DatasetKind kind, const std::string& root, const eval::SearchOutputs& outputs,
                                      const ScoreOptions& options) {
  eval::EvaluationTable table;
  switch (kind) {
    case DatasetKind::cuhk_sysu: {
      // The first size gives the detection rows (they do not depend on the gallery size), every size a search
      // row. Each size is a separate read: TestG<size>.mat holds the galleries of that size.
      for (size_t i = 0; i < options.gallery_sizes.size(); ++i) {
        const int size = options.gallery_sizes[i];
        data::CuhkSysuOptions read_options;
        read_options.gallery_size = size;
        read_options.check_images = false;  // scoring opens no picture
        const auto dataset = data::read_cuhk_sysu(root, read_options);
        const auto setting = fmt::format("gallery {}", size);
        if (i == 0) {
          table = eval::score_search_outputs(dataset, outputs, options.protocol, setting);
        } else {
          for (auto& row : eval::score_search(dataset, outputs, options.protocol, setting))
            table.search.push_back(std::move(row));
        }
      }
      break;
    }
    case DatasetKind::prw: {
      data::PrwOptions read_options;
      read_options.check_images = false;
      table = eval::score_search_outputs(data::read_prw(root, read_options), outputs, options.protocol);
      break;
    }
    case DatasetKind::json: {
      data::CustomJsonOptions read_options;
      read_options.check_images = false;
      table = eval::score_search_outputs(data::read_custom_json(root, read_options), outputs, options.protocol);
      break;
    }
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"03_evaluate: score a results file (JSON or binary) with the person-search protocols"};
  DatasetKind kind = DatasetKind::cuhk_sysu;
  std::string root, results;
  ScoreOptions options;
  int threads = 0;
  const std::map<std::string, DatasetKind> kinds{
      {"cuhk-sysu", DatasetKind::cuhk_sysu}, {"prw", DatasetKind::prw}, {"json", DatasetKind::json}};
  app.add_option("--dataset", kind, "cuhk-sysu, prw, or json (trident's JSON dataset format)")
      ->required()
      ->transform(CLI::CheckedTransformer(kinds, CLI::ignore_case));
  app.add_option("--root", root, "the dataset's folder (for json: the dataset's .json file)")->required();
  app.add_option("--results", results, "the results file (.json, .trs or .bin)")->required()->check(CLI::ExistingFile);
  app.add_option("--json", options.json_out, "also write the table to this JSON file");
  app.add_option("--gallery-sizes", options.gallery_sizes, "CUHK-SYSU gallery sizes (50, 100, 500, 1000, 2000, 4000)")
      ->delimiter(',');
  app.add_option("--threads", threads, "LibTorch intra-op threads (0: TRIDENT_NUM_THREADS, else all cores)");
  CLI11_PARSE(app, argc, argv);

  try {
    use_all_cores(threads);
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
