// 01_synthetic_dataset — render the synthetic person-search benchmark and read it back as CUHK-SYSU.
//
//   ./build/examples/01_synthetic_dataset [--out data/synthetic] [--seed 1] [--train-images 400]
//                                         [--test-images 100] [--train-identities 200] [--test-identities 50]
//                                         [--overwrite] [--preview preview.png]
//
// Real person-search datasets are large and licensed; to train and evaluate on a CPU in minutes we render one:
//   1. trident::data::write_synthetic_cuhk_sysu draws street-like scenes (gradients, clutter, poles and boxes in
//      front of some people, sensor noise) with several people each. Every identity has a fixed look (clothes
//      from a shared ten-colour palette, a pattern, hair or hat, skin, sleeves, a bag, a build) and varies in
//      pose, size, lighting and mirroring between pictures; colour alone does not tell identities apart.
//   2. It writes the pictures and the annotation .mat files exactly as CUHK-SYSU ships them (Image/SSM/,
//      annotation/Images.mat, pool.mat, test/train_test/Train.mat, TestG50.mat ...), into <out>.partial first
//      and renamed at the end, so a half-written dataset never appears under --out.
//   3. We read it back with the real reader, trident::data::read_cuhk_sysu, and print what it found — the
//      same path a real CUHK-SYSU takes, so everything downstream (training, the gallery-50 protocol) works
//      unchanged on the synthetic data.
//   4. We draw a few training scenes with their boxes into a mosaic (labeled people coloured by identity,
//      unlabeled people grey) to see what the network will see.
// The same seed and options give byte-identical files.

#include <trident/core/threads.hpp>
#include <trident/data/cuhk_sysu.hpp>
#include <trident/data/synthetic.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>

namespace {

using namespace trident;

// A distinct, saturated colour per identity (BGR): hues spread by a step coprime with 180.
cv::Scalar identity_colour(int64_t pid) {
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(double((pid * 47) % 180), 230, 255)), out;
  cv::cvtColor(hsv, out, cv::COLOR_HSV2BGR);
  const auto p = out.at<cv::Vec3b>(0, 0);
  return cv::Scalar(p[0], p[1], p[2]);
}

// --- 4. The preview mosaic ----------------------------------------------------------------------------------------
cv::Mat preview(const data::Dataset& d, int scenes, int columns) {
  std::vector<cv::Mat> tiles;
  for (int k = 0; k < scenes && k < int(d.train.size()); ++k) {
    const auto& image = d.images[size_t(d.train[size_t(k)])];
    cv::Mat tile = cv::imread(image.path, cv::IMREAD_COLOR);
    const auto boxes = image.boxes.contiguous();
    const auto pids = image.pids.contiguous();
    for (int64_t b = 0; b < boxes.size(0); ++b) {
      const float* x = boxes[b].data_ptr<float>();
      const int64_t pid = pids[b].item<int64_t>();
      const bool labeled = pid != unlabeled_identity;
      const cv::Scalar colour = labeled ? identity_colour(pid) : cv::Scalar(170, 170, 170);
      // x2, y2 are exclusive edges: the last pixel row/column of the person is x2 - 1, y2 - 1.
      cv::rectangle(tile, cv::Point(int(x[0]), int(x[1])), cv::Point(int(x[2]) - 1, int(x[3]) - 1), colour,
                    labeled ? 2 : 1);
      if (labeled)
        cv::putText(tile, std::to_string(pid), cv::Point(int(x[0]) + 2, int(x[1]) + 11), cv::FONT_HERSHEY_PLAIN,
                    0.8, colour, 1);
    }
    tiles.push_back(tile);
  }
  TRIDENT_CHECK(!tiles.empty(), "01_synthetic_dataset: no training pictures to preview");
  const int rows = (int(tiles.size()) + columns - 1) / columns, gap = 4;
  const int w = tiles[0].cols, h = tiles[0].rows;
  cv::Mat mosaic(rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap, CV_8UC3, cv::Scalar(255, 255, 255));
  for (size_t i = 0; i < tiles.size(); ++i)
    tiles[i].copyTo(mosaic(cv::Rect(int(i % size_t(columns)) * (w + gap), int(i / size_t(columns)) * (h + gap), w, h)));
  return mosaic;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 01: render the synthetic person-search benchmark in the CUHK-SYSU layout"};
  data::SyntheticOptions o;
  std::string out = "data/synthetic", preview_path;
  int threads = 0, preview_scenes = 6;
  double preview_scale = 1.0;
  app.add_option("--out", out, "dataset folder (written as <out>.partial, then renamed)")->capture_default_str();
  app.add_option("--seed", o.seed, "random seed: the same seed gives the same bytes")->capture_default_str();
  app.add_option("--train-images", o.train_images, "training pictures")->capture_default_str();
  app.add_option("--test-images", o.test_images, "test pictures (>= 51)")->capture_default_str();
  app.add_option("--train-identities", o.train_identities, "labeled training identities")->capture_default_str();
  app.add_option("--test-identities", o.test_identities, "test identities (one query each)")->capture_default_str();
  app.add_option("--min-train-appearances", o.min_train_appearances, "pictures per training identity, at least")
      ->capture_default_str();
  app.add_option("--max-train-appearances", o.max_train_appearances, "pictures per training identity, at most")
      ->capture_default_str();
  app.add_option("--min-test-appearances", o.min_test_appearances, "pictures per test identity, at least (>= 2)")
      ->capture_default_str();
  app.add_option("--max-test-appearances", o.max_test_appearances, "pictures per test identity, at most")
      ->capture_default_str();
  app.add_option("--min-people", o.min_people, "people per picture, at least")->capture_default_str();
  app.add_option("--max-people", o.max_people, "people per picture, at most")->capture_default_str();
  app.add_option("--height", o.image_height, "picture height in pixels")->capture_default_str();
  app.add_option("--width", o.image_width, "picture width in pixels")->capture_default_str();
  app.add_option("--min-person-height", o.min_person_height, "smallest person, pixels")->capture_default_str();
  app.add_option("--max-person-height", o.max_person_height, "tallest person, pixels")->capture_default_str();
  app.add_option("--unlabeled", o.unlabeled_fraction, "fraction of unlabeled people")->capture_default_str();
  app.add_option("--occlusion", o.occlusion_probability, "chance a person is partly occluded")->capture_default_str();
  app.add_option("--clutter", o.clutter, "background clutter, 0..1")->capture_default_str();
  app.add_option("--gallery-sizes", o.gallery_sizes, "TestG<G>.mat files to write (default: every size that fits)");
  app.add_flag("--overwrite", o.overwrite, "replace a non-empty --out");
  app.add_option("--preview", preview_path, "preview mosaic PNG (default: <out>/preview.png)");
  app.add_option("--preview-scenes", preview_scenes, "training scenes in the preview")->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--preview-scale", preview_scale, "scale of the preview mosaic (0.5: half size)")
      ->capture_default_str()->check(CLI::Range(0.1, 4.0));
  app.add_option("--threads", threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::cout << fmt::format("trident {} — example 01, {} threads\n", trident::version, use_all_cores(threads));

    // --- 1 and 2. Render and write --------------------------------------------------------------------------
    const auto start = std::chrono::steady_clock::now();
    const auto report = data::write_synthetic_cuhk_sysu(out, o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cout << fmt::format(
        "1. wrote {} pictures ({} train, {} test) of {}x{} in {:.2f} s: {} people, {} unlabeled, {} occluded\n",
        report.images, report.train_images, report.test_images, o.image_width, o.image_height, seconds, report.boxes,
        report.unlabeled, report.occluded);
    std::cout << fmt::format("2. {} training identities, {} test identities (queries); galleries: {}\n",
                             report.train_identities, report.queries, fmt::join(report.gallery_sizes, ", "));

    // --- 3. Read it back with the CUHK-SYSU reader ----------------------------------------------------------
    data::CuhkSysuOptions read_options;
    read_options.gallery_size = report.gallery_sizes.front();
    const auto dataset = data::read_cuhk_sysu(out, read_options);
    int64_t labeled = 0, boxes = 0, positives = 0;
    for (const auto& image : dataset.images) {
      boxes += image.boxes.size(0);
      labeled += (image.pids != unlabeled_identity).sum().item<int64_t>();
    }
    for (const auto& q : dataset.queries)
      for (const auto& g : q.gallery) positives += g.box.has_value();
    std::cout << fmt::format(
        "3. read_cuhk_sysu (gallery {}): {} images ({} train, {} test), {} boxes ({} labeled), {} train ids, "
        "{} queries with {:.2f} true matches per gallery; dropped {}, unmatched {}\n",
        read_options.gallery_size, dataset.images.size(), dataset.train.size(), dataset.test.size(), boxes, labeled,
        dataset.num_train_ids, dataset.queries.size(),
        dataset.queries.empty() ? 0.0 : double(positives) / double(dataset.queries.size()),
        dataset.report.dropped_boxes, dataset.report.unmatched_boxes);

    // --- 4. Preview -----------------------------------------------------------------------------------------
    if (preview_path.empty()) preview_path = (std::filesystem::path(out) / "preview.png").string();
    cv::Mat mosaic = preview(dataset, preview_scenes, std::min(preview_scenes, 3));
    if (preview_scale != 1.0)
      cv::resize(mosaic, mosaic, cv::Size(), preview_scale, preview_scale,
                 preview_scale < 1.0 ? cv::INTER_AREA : cv::INTER_LINEAR);
    if (std::filesystem::path(preview_path).has_parent_path())
      std::filesystem::create_directories(std::filesystem::path(preview_path).parent_path());
    TRIDENT_CHECK(cv::imwrite(preview_path, mosaic, {cv::IMWRITE_PNG_COMPRESSION, 9}),
                  "01_synthetic_dataset: cannot write '{}'", preview_path);
    std::cout << fmt::format("4. wrote {}\n", preview_path);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
