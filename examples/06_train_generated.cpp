// 06_train_generated — train trident on scenes it draws itself, then search them: no dataset and nothing but
// trident::trident (LibTorch, Boost.Hana, fmt) — no OpenCV, matio or JSON. The project's GPU check
// (benchmarks/device-check.sh) trains the paper's configuration with it.
//
//   ./build/examples/06_train_generated                                  (the small configuration on the CPU)
//   ./build/examples/06_train_generated --config paper --device cuda --amp --iterations 300
//   ./build/examples/06_train_generated --config paper --device cuda --amp --amp-dtype bfloat16
//   ./build/examples/06_train_generated ... --resume --iterations 400   (continue the run in --out up to 400)
//
// What it does:
//   1. draws the scenes (data::make_toy_scenes: coloured people whose identity is their pair of clothes colours,
//      60-90 px tall, with boxes and identities): by default 900 x 1500 pictures for `paper` (the size the paper
//      resizes CUHK-SYSU and PRW to), 192 x 320 for `small`; normalises them with ImageNet's mean and standard
//      deviation and pads them to a multiple of 32, as the data loader does. A pool of --scenes training scenes,
//      a held-out gallery of --gallery scenes and a held-out query scene, all from --seed;
//   2. builds the network: `paper` = PaperConfig<CuhkSysu> (ResNet-50, conv1 + layer1 frozen, RoIAlign 24 x 8,
//      detection + re-id + part branches, AGWF; random weights unless --weights names torchvision's ResNet-50),
//      `small` = SmallCpuConfig (a quarter-width ResNet trained from scratch, RoIs of 12 x 4);
//   3. trains it with train::fit (paper: SGD at 0.003, small: AdamW at 0.001; linear warm-up over the first
//      "epoch"; gradient norm clipped to 10; --amp: CUDA autocast to float16 with loss scaling, or to bfloat16)
//      from a train::InMemorySource that cycles over the pool's batches. An epoch is --epoch-length iterations
//      whatever --iterations is, so a run can be resumed to any length. checkpoint.pt and train_log.csv / .jsonl
//      go into --out. Prints images/s and, on CUDA, the peak memory of LibTorch's caching allocator;
//   4. reads train_log.csv back (train::TrainingLog) and prints the loss curve: every loss's mean over each tenth
//      of the run;
//   5. detects everyone in the held-out gallery (net.detect), embeds the query person from its box (net.describe,
//      as the search protocols do) and ranks all gallery detections by the confidence-weighted cosine similarity
//      (search::rank_gallery); prints the top matches and which of them are the query person.
#include <trident/core/threads.hpp>
#include <trident/core/types.hpp>
#include <trident/backbone/weights.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/data/transforms.hpp>
#include <trident/model/configs.hpp>
#include <trident/train/configurations.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/search/rank.hpp>
#include <trident/train/trainer.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ATen/core/grad_mode.h>
#include <ATen/ops/tensor.h>
#include <torch/cuda.h>

// Peak GPU memory comes from the CUDA caching allocator, which only a CUDA build of LibTorch has
// (examples/CMakeLists.txt defines TRIDENT_EXAMPLE_WITH_CUDA when the c10_cuda target exists).
#if defined(TRIDENT_EXAMPLE_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#define TRIDENT_EXAMPLE_CUDA_MEMORY 1
#else
#define TRIDENT_EXAMPLE_CUDA_MEMORY 0
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iostream>
#include <limits>
#include <vector>

namespace {
using namespace trident;

/// Identities 0..7 wear distinct pairs of colours (make_toy_scenes' palette has eight); a draw of 8 is an
/// unlabeled grey person.
constexpr int identities = 8;

struct Options {
  std::string config = "small", device = "cpu", out = "out/06_train_generated", weights, amp_dtype = "float16";
  int64_t batch_size = 4, iterations = 200, epoch_length = 100, height = 0, width = 0;
  int scenes = 16, gallery = 8, people = 0, threads = 0;
  int64_t top_k = 5, seed = 0;
  double lr = 0, clip = 10, score_threshold = 0.5;
  bool amp = false, resume = false;
};

// --- 1. Scenes -------------------------------------------------------------------------------------------------

/// `count` scenes as the network takes them: ImageNet-normalised and zero-padded to a multiple of 32
/// (ImageBatch::sizes keeps each picture's own size, as the data loader's batches do).
data::ToyScenes make_scenes(int count, const Options& o, uint32_t seed) {
  at::manual_seed(seed);  // the background noise; make_toy_scenes' seed places and dresses the people
  auto s = data::make_toy_scenes(count, o.people, identities, o.height, o.width, seed);
  std::vector<at::Tensor> images;  // data/transforms.hpp, as the loader prepares pictures
  for (int i = 0; i < count; ++i) images.push_back(data::normalize(s.batch.images[i]));
  auto collated = data::collate(images, std::move(s.targets));
  s.batch = std::move(collated.batch);
  s.targets = std::move(collated.targets);
  return s;
}

/// Scenes [first, first + n) as one batch on `device`.
ImageBatch batch_of(const data::ToyScenes& s, int64_t first, int64_t n, c10::Device device) {
  ImageBatch b;
  b.images = s.batch.images.narrow(0, first, n).to(device);
  b.sizes.assign(s.batch.sizes.begin() + first, s.batch.sizes.begin() + first + n);
  return b;
}

/// One epoch of batches: the pool cut into batches (moved to the device once), repeated to `epoch_length`.
/// The repeats share their tensors, so a long epoch costs no memory.
std::vector<train::Batch> epoch_of(const data::ToyScenes& pool, const Options& o, c10::Device device) {
  const int64_t distinct = static_cast<int64_t>(pool.targets.size()) / o.batch_size;
  TRIDENT_CHECK(distinct > 0, "06_train_generated: --scenes {} is fewer than --batch-size {}", pool.targets.size(),
                o.batch_size);
  std::vector<Target> targets;
  for (const auto& t : pool.targets) targets.push_back({t.boxes.to(device), t.pids.to(device)});
  auto batches = train::split_into_batches({pool.batch.images.to(device), pool.batch.sizes}, targets, o.batch_size);
  batches.resize(static_cast<size_t>(distinct));  // a last, shorter batch is left out
  std::vector<train::Batch> epoch;
  for (int64_t k = 0; k < o.epoch_length; ++k) epoch.push_back(batches[static_cast<size_t>(k % distinct)]);
  return epoch;
}

// --- 3. Peak GPU memory ----------------------------------------------------------------------------------------

void reset_peak_memory([[maybe_unused]] c10::Device device) {
#if TRIDENT_EXAMPLE_CUDA_MEMORY
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.has_index() ? device.index() : 0);
#endif
}

std::string peak_memory([[maybe_unused]] c10::Device device) {
#if TRIDENT_EXAMPLE_CUDA_MEMORY
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.has_index() ? device.index() : 0);
    constexpr double mib = 1024.0 * 1024.0;
    return fmt::format("{:.0f} MiB allocated, {:.0f} MiB reserved",
                       static_cast<double>(stats.allocated_bytes[0].peak) / mib,
                       static_cast<double>(stats.reserved_bytes[0].peak) / mib);
  }
  return "";
#else
  return device.is_cuda() ? "not available (examples/CMakeLists.txt found no c10_cuda target)" : "";
#endif
}

// --- 4. The loss curve -----------------------------------------------------------------------------------------

/// Every loss's mean over each tenth of the logged iterations (fewer rows when the run is shorter than ten).
void print_loss_curve(const train::TrainingLog& log) {
  const auto& rows = log.rows();
  if (rows.empty()) {
    std::cout << "loss per tenth of the run: nothing logged\n";
    return;
  }
  const auto& names = log.loss_names();
  std::string header = fmt::format("{:>13} {:>8}", "iterations", "total");
  for (const auto& n : names) header += fmt::format(" {:>8}", n);
  std::cout << fmt::format("loss per tenth of the run (means of {} logged iterations):\n{}\n", rows.size(), header);
  const size_t parts = std::min<size_t>(10, rows.size());
  for (size_t p = 0; p < parts; ++p) {
    const size_t begin = p * rows.size() / parts, end = (p + 1) * rows.size() / parts;
    std::vector<double> sums(names.size(), 0.0);
    double total = 0;
    for (size_t r = begin; r < end; ++r) {
      total += rows[r].total;
      for (size_t i = 0; i < names.size(); ++i) sums[i] += rows[r].losses[i];
    }
    const double n = static_cast<double>(end - begin);
    const auto span = fmt::format("{}-{}", rows[begin].iteration, rows[end - 1].iteration);
    std::string line = fmt::format("{:>13} {:>8.4g}", span, total / n);
    for (double s : sums) line += fmt::format(" {:>8.4g}", s / n);
    std::cout << line << "\n";
  }
}

/// Images per second of this run after its first tenth (cuDNN's algorithm search, the allocator's first
/// requests and the warm-up of the caches fall into the first iterations).
double steady_images_per_second(const train::TrainingLog& log, int64_t first_iteration, int64_t batch_size) {
  std::vector<const train::LogRow*> run;
  for (const auto& r : log.rows())
    if (r.iteration >= first_iteration) run.push_back(&r);
  if (run.size() < 10) return 0;
  const auto* from = run[run.size() / 10 - 1];
  const auto* to = run.back();
  const double seconds = to->seconds - from->seconds;
  return seconds > 0 ? static_cast<double>((to->iteration - from->iteration) * batch_size) / seconds : 0;
}

// --- 5. Search -------------------------------------------------------------------------------------------------

/// Which annotated person a box is (IoU >= 0.5 with their box): their identity, unlabeled_identity, or -2 for none.
int64_t person_at(const Target& truth, const at::Tensor& box) {
  const auto iou = ops::box_iou(box.view({1, 4}).to(at::kFloat), truth.boxes.to(at::kFloat)).squeeze(0);
  if (iou.numel() == 0) return -2;
  const auto best = iou.argmax().item<int64_t>();
  return iou[best].item<double>() >= 0.5 ? truth.pids[best].item<int64_t>() : -2;
}

std::string person_name(int64_t pid) {
  return pid >= 0 ? fmt::format("person {}", pid) : pid == unlabeled_identity ? "unlabeled person" : "background";
}

std::string box_text(const at::Tensor& b) {
  const auto c = b.to(at::kCPU, at::kFloat).contiguous();
  const float* p = c.data_ptr<float>();
  return fmt::format("[{:.0f}, {:.0f}, {:.0f}, {:.0f}]", p[0], p[1], p[2], p[3]);
}

template <class Net>
void search_gallery(Net& net, const Options& o, c10::Device device) {
  const auto gallery = make_scenes(o.gallery, o, static_cast<uint32_t>(2000 + o.seed));
  const auto queries = make_scenes(4, o, static_cast<uint32_t>(3000 + o.seed));
  // The query: the first labeled person of the query scenes who is also in the gallery (else the first labeled).
  const auto in_gallery = [&](int64_t pid) {
    for (const auto& t : gallery.targets)
      if ((t.pids == pid).any().item<bool>()) return true;
    return false;
  };
  int64_t qi = -1, qk = -1;
  for (int pass = 0; pass < 2 && qi < 0; ++pass)
    for (size_t i = 0; i < queries.targets.size() && qi < 0; ++i)
      for (int64_t k = 0; k < queries.targets[i].pids.size(0) && qi < 0; ++k) {
        const int64_t pid = queries.targets[i].pids[k].item<int64_t>();
        if (pid >= 0 && (pass == 1 || in_gallery(pid))) qi = static_cast<int64_t>(i), qk = k;
      }
  TRIDENT_CHECK(qi >= 0, "06_train_generated: the query scenes hold nobody labeled (try another --seed)");
  const auto& query_truth = queries.targets[static_cast<size_t>(qi)];
  const at::Tensor query_box = query_truth.boxes[qk];
  const int64_t query_pid = query_truth.pids[qk].item<int64_t>();

  net.eval();
  at::NoGradGuard no_grad;
  const auto embedding =
      net.describe(batch_of(queries, qi, 1, device), {query_box.view({1, 4}).to(device)})[0].at("embedding");

  // Every gallery scene through detect(): boxes, confidences and every branch's outputs per detection.
  std::vector<GalleryDetections> detections;  // what search::rank_gallery ranks (core/types.hpp)
  int64_t people = 0, found = 0, holding_query = 0;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < o.gallery; ++i) {
    auto d = std::move(net.detect(batch_of(gallery, i, 1, device))[0]);
    detections.push_back({d.boxes.cpu(), d.scores.cpu(), d.outputs.at("embedding").cpu()});
    const auto& truth = gallery.targets[static_cast<size_t>(i)];
    for (int64_t k = 0; k < truth.boxes.size(0); ++k) {
      ++people;
      const auto iou = ops::box_iou(truth.boxes[k].view({1, 4}), detections.back().boxes.to(at::kFloat));
      if (iou.numel() > 0 && iou.max().item<double>() >= 0.5) ++found;
      if (truth.pids[k].item<int64_t>() == query_pid) ++holding_query;
    }
  }
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  int64_t detected = 0;
  for (const auto& d : detections) detected += d.boxes.size(0);
  std::cout << fmt::format("gallery: {} held-out scenes, {} people, {} detections (score >= {}), {} people found "
                           "(IoU >= 0.5); {:.1f} ms per scene\n",
                           o.gallery, people, detected, o.score_threshold, found, ms / o.gallery);

  search::RankOptions ro;
  ro.top_k = o.top_k;
  ro.score_threshold = o.score_threshold;
  const auto matches = search::rank_gallery(embedding, detections, ro);
  std::cout << fmt::format("query: {} at {} in a held-out scene; {} of the {} gallery scenes show this person\n",
                           person_name(query_pid), box_text(query_box), holding_query, o.gallery);
  std::cout << fmt::format("top {} matches:\n", o.top_k);
  if (matches.empty()) {
    std::cout << fmt::format("  none: no gallery detection scored >= {}\n", o.score_threshold);
    return;
  }
  int64_t correct = 0;
  for (size_t r = 0; r < matches.size(); ++r) {
    const auto& m = matches[r];
    const at::Tensor box = at::tensor(std::vector<float>(m.box.begin(), m.box.end()));
    const int64_t pid = person_at(gallery.targets[static_cast<size_t>(m.image)], box);
    correct += pid == query_pid ? 1 : 0;
    std::cout << fmt::format("  {:2d}. scene {:2d} {:<24} score {:.3f} similarity {:+.3f}  {}{}\n", r + 1, m.image,
                             box_text(box), m.score, m.similarity, person_name(pid),
                             pid == query_pid ? "  = query" : "");
  }
  std::cout << fmt::format("{} of the top {} are the query person\n", correct, matches.size());
}

// --- 2. + 3. The network and its training ----------------------------------------------------------------------

template <class Cfg>
int run(const Options& o, NetOptions net_options, c10::Device device, bool paper) {
  net_options.score_threshold = o.score_threshold;
  at::manual_seed(static_cast<uint64_t>(o.seed));  // the initialisation; fit() reseeds for the sampling
  TridentNet<Cfg> net(net_options);
  if (!o.weights.empty() && !o.resume) {
    backbone::load_torchvision_weights(o.weights, net.stem(), net.head());
    std::cout << fmt::format("ImageNet weights from {}\n", o.weights);
  } else if (paper && !o.resume) {
    std::cout << "the paper configuration without --weights: ResNet-50 starts from random weights\n";
  }

  const auto pool = make_scenes(o.scenes, o, static_cast<uint32_t>(1000 + o.seed));
  train::InMemorySource source(epoch_of(pool, o, device), /*shuffle=*/true, static_cast<uint64_t>(o.seed));

  train::TrainerOptions to;
  to.optimizer = paper ? train::OptimizerKind::sgd : train::OptimizerKind::adamw;
  to.schedule.base_lr = o.lr > 0 ? o.lr : paper ? 3e-3 : 1e-3;
  to.schedule.warmup_iterations = -1;  // one epoch
  to.schedule.milestones = {};         // a short run keeps the rate after the warm-up
  to.clip_grad_norm = o.clip;
  to.epochs = (o.iterations + o.epoch_length - 1) / o.epoch_length;
  to.max_iterations = o.iterations;
  to.out_dir = o.out;
  to.resume = o.resume;
  to.seed = o.seed;
  to.device = device;
  to.mixed_precision = o.amp;
  to.amp_dtype = train::amp_dtype_named(o.amp_dtype);  // bfloat16 needs no loss scaling
  std::cout << fmt::format("{} config on {}{}: {} scenes of {}x{} with {} people each, batch {}, {} iterations "
                           "({} per epoch), {} lr {} -> {}\n",
                           o.config, device.str(), o.amp ? fmt::format(" (mixed precision, {})", o.amp_dtype) : "",
                           o.scenes, o.height, o.width, o.people, o.batch_size, o.iterations, o.epoch_length,
                           paper ? "sgd" : "adamw", to.schedule.base_lr, o.out);
  reset_peak_memory(device);
  train::TrainSummary summary;
  std::string diverged;
  try {
    summary = train::fit(net, source, to);
  } catch (const train::TrainingDiverged& e) {
    diverged = e.what();  // a loss became NaN or Inf: still report what the run did, then stop
  }
  const train::TrainingLog log(o.out, std::numeric_limits<int64_t>::max());  // reads train_log.csv back
  if (diverged.empty()) {
    const int64_t first = summary.resumed_from < 0 ? 0 : summary.resumed_from;
    const double steady = steady_images_per_second(log, first, o.batch_size);
    std::cout << fmt::format("trained {} iterations ({} in this run) in {}, {:.2f} images/s{}; checkpoint {}\n",
                             summary.iterations, summary.iterations_this_run, train::format_duration(summary.seconds),
                             summary.images_per_second,
                             steady > 0 ? fmt::format(" ({:.2f} after the first tenth)", steady) : std::string(),
                             summary.checkpoint);
  } else {
    std::cout << fmt::format("training stopped: {}\n", diverged);
    if (!log.rows().empty())
      std::cout << fmt::format("logged {} iterations, {:.2f} images/s in this run\n", log.rows().size(),
                               log.rows().back().images_per_second);
  }
  if (device.is_cuda()) std::cout << fmt::format("peak GPU memory (training): {}\n", peak_memory(device));
  print_loss_curve(log);
  if (!diverged.empty()) return 2;
  search_gallery(net, o, device);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 06: train on generated scenes and search them (trident::trident only)"};
  Options o;
  app.add_option("--config", o.config, "small (CPU, from scratch) or paper (PaperConfig<CuhkSysu>, ResNet-50)")
      ->check(CLI::IsMember({"small", "paper"}))->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  app.add_flag("--amp", o.amp, "mixed precision: CUDA autocast to --amp-dtype (CUDA only)");
  app.add_option("--amp-dtype", o.amp_dtype, "float16 (with dynamic loss scaling) or bfloat16")
      ->check(CLI::IsMember({"float16", "bfloat16"}))->capture_default_str();
  app.add_option("--batch-size", o.batch_size, "scenes per iteration")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--iterations", o.iterations, "train up to this many iterations in total")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--epoch-length", o.epoch_length,
                 "iterations per epoch: the warm-up's length, a checkpoint at each end (keep it when resuming)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--height", o.height, "scene height in pixels (default: paper 900, small 192)");
  app.add_option("--width", o.width, "scene width in pixels (default: paper 1500, small 320)");
  app.add_option("--scenes", o.scenes, "training scenes in the pool")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--people", o.people, "people per scene (default: width / 100, at most 8)");
  app.add_option("--gallery", o.gallery, "held-out gallery scenes searched after training")
      ->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--top-k", o.top_k, "matches printed")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--score-threshold", o.score_threshold, "detections below this confidence are dropped")
      ->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate after the warm-up (default: paper SGD 0.003, small AdamW 0.001)");
  app.add_option("--clip", o.clip, "clip the gradient norm to this (0: off; from random weights the first steps "
                                   "are rough)")->capture_default_str();
  app.add_option("--weights", o.weights, "torchvision ResNet-50 weights for the paper configuration (see README)");
  app.add_option("--out", o.out, "run folder: checkpoint.pt, train_log.csv/.jsonl")->capture_default_str();
  app.add_flag("--resume", o.resume, "continue from OUT/checkpoint.pt up to --iterations");
  app.add_option("--seed", o.seed, "scenes, initialisation, sampling and batch order")->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    std::cout << fmt::format("trident example 06, {} threads\n", use_all_cores(o.threads));
    const bool paper = o.config == "paper";
    if (o.height == 0) o.height = paper ? 900 : 192;
    if (o.width == 0) o.width = paper ? 1500 : 320;
    if (o.people == 0) o.people = static_cast<int>(std::clamp<int64_t>(o.width / 100, 1, 8));
    const c10::Device device(o.device);
    TRIDENT_CHECK(!device.is_cuda() || torch::cuda::is_available(),
                  "06_train_generated: --device {}, but LibTorch sees no CUDA device", o.device);
    // The two configurations this program trains, by name (train/configurations.hpp); the network options are
    // each configuration's defaults (not the recipes': this program has its own short schedule and scenes).
    const auto configurations = boost::hana::make_tuple(
        train::named_configuration<SmallCpuConfig>("small", "the small CPU configuration", &train::small_recipe),
        train::named_configuration<PaperConfig<CuhkSysu>>("paper", "the paper's configuration (CUHK-SYSU sizes)",
                                                          +[] { return train::paper_recipe("cuhk-sysu"); }));
    return train::with_configuration(configurations, o.config, [&](const auto& entry) {
      using Cfg = typename std::decay_t<decltype(entry)>::config;
      return run<Cfg>(o, paper ? NetOptions{} : small_net_options(), device, paper);
    });
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
