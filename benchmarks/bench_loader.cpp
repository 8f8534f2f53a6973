// bench_loader: images per second of trident::data::Loader (JPEG decode, Faster R-CNN resize 900/1500, flip,
// normalise, collate) for several worker counts, on generated 800 x 600 JPEGs.
//
//   bench_loader [--images 48] [--batch 2] [--workers 0,1,2] [--model-ms 0] [--threads 0] [--dir PATH]
//
// --model-ms simulates a model step that keeps the consumer busy (a sleep, so it leaves the CPU free) for that
// many milliseconds per batch: with workers the decoding overlaps it, with 0 workers it adds to it. Prints a
// markdown table with the thread counts: LibTorch's intra-op threads of the consumer and of each worker, and
// OpenCV's thread setting.
#include <trident/core/threads.hpp>
#include <trident/data/loader.hpp>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Args {
  int images = 48;
  int64_t batch = 2;
  std::vector<int> workers = {0, 1, 2};
  int model_ms = 0;
  int threads = 0;
  std::string dir = (std::filesystem::temp_directory_path() / "trident_bench_loader").string();
};

[[noreturn]] void usage(const char* message) {
  std::fprintf(stderr, "bench_loader: %s\nusage: bench_loader [--images N] [--batch N] [--workers 0,1,2] "
               "[--model-ms N] [--threads N] [--dir PATH]\n", message);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (i + 1 >= argc) usage(("missing value after " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--images") a.images = std::stoi(value);
    else if (flag == "--batch") a.batch = std::stoi(value);
    else if (flag == "--model-ms") a.model_ms = std::stoi(value);
    else if (flag == "--threads") a.threads = std::stoi(value);
    else if (flag == "--dir") a.dir = value;
    else if (flag == "--workers") {
      a.workers.clear();
      std::stringstream list(value);
      for (std::string item; std::getline(list, item, ',');) a.workers.push_back(std::stoi(item));
    } else {
      usage(("unknown option " + flag).c_str());
    }
  }
  if (a.images < 1 || a.batch < 1 || a.workers.empty()) usage("need --images >= 1, --batch >= 1, some --workers");
  return a;
}

/// Street-like pictures: a gradient, noise and a few blurred rectangles, saved at JPEG quality 90 (a realistic
/// decode cost; flat pictures decode much faster).
trident::data::Dataset write_pictures(const Args& a) {
  std::filesystem::create_directories(a.dir);
  std::mt19937 rng(1);
  trident::data::Dataset data;
  for (int i = 0; i < a.images; ++i) {
    cv::Mat picture(600, 800, CV_8UC3);
    cv::randu(picture, cv::Scalar(0, 0, 0), cv::Scalar(60, 60, 60));
    for (int k = 0; k < 12; ++k) {
      const int x = static_cast<int>(rng() % 700), y = static_cast<int>(rng() % 400);
      cv::rectangle(picture, {x, y, 40 + static_cast<int>(rng() % 60), 100 + static_cast<int>(rng() % 100)},
                    cv::Scalar(rng() % 256, rng() % 256, rng() % 256), cv::FILLED);
    }
    cv::GaussianBlur(picture, picture, {5, 5}, 1.5);
    trident::data::ImageRecord record;
    record.name = fmt::format("b{:03}.jpg", i);
    record.path = (std::filesystem::path(a.dir) / record.name).string();
    cv::imwrite(record.path, picture, {cv::IMWRITE_JPEG_QUALITY, 90});
    record.boxes = at::tensor({100.0f, 100.0f, 160.0f, 260.0f}).view({1, 4});
    record.pids = at::tensor({int64_t{0}}, at::kLong);
    data.train.push_back(i);
    data.images.push_back(std::move(record));
  }
  return data;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  const int threads = trident::use_all_cores(a.threads);
  const auto data = write_pictures(a);
  fmt::print("bench_loader: {} JPEGs 800x600 -> 1200x900 (min_size 900, max_size 1500), batch {}, model step {} ms, "
             "{} hardware threads, consumer intra-op threads {}\n\n",
             a.images, a.batch, a.model_ms, std::thread::hardware_concurrency(), threads);
  fmt::print("OpenCV's thread count at start: {} (the loader sets cv::setNumThreads(0), process-wide, once it has "
             "workers)\n\n", cv::getNumThreads());
  fmt::print("| workers | images/s | batches | worker intra-op threads | cv::setNumThreads |\n|---|---|---|---|---|\n");
  for (const int workers : a.workers) {
    trident::data::LoaderOptions options;
    options.batch_size = a.batch;
    options.workers = workers;
    options.prefetch = 4;
    const auto start = std::chrono::steady_clock::now();
    trident::data::Loader loader(data, data.train, options);
    int64_t batches = 0, images = 0;
    while (auto batch = loader.next()) {
      ++batches;
      images += static_cast<int64_t>(batch->images.size());
      if (a.model_ms > 0) std::this_thread::sleep_for(std::chrono::milliseconds(a.model_ms));
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::string worker_threads;
    for (const int t : loader.worker_threads()) {
      if (!worker_threads.empty()) worker_threads += ',';
      worker_threads += std::to_string(t);
    }
    fmt::print("| {} | {:.1f} | {} | {} | {} |\n", workers, static_cast<double>(images) / seconds, batches,
               worker_threads.empty() ? "-" : worker_threads,
               workers > 0 ? std::to_string(options.opencv_threads) : std::string("as before"));
  }
  fmt::print("\nconsumer intra-op threads after the runs: {}\n", at::get_num_threads());
  std::filesystem::remove_all(a.dir);
  return 0;
}
