// bench_ops: trident's RoIAlign and NMS at person-search sizes, timed in the same run as torchvision's C++
// kernels (loaded from torchvision's _C library with dlopen, no Python) and checked against them.
//
//   bench_ops [--threads N] [--repeat N] [--warmup N] [--filter REGEX]
//             [--torchvision PATH | --no-torchvision] [--force-torchvision]
//
// The torchvision library defaults to $TRIDENT_TORCHVISION_LIB, else Debian's python3-torchvision copy. The
// output is a markdown report on stdout: the setup, then one table row per case with medians over --repeat
// interleaved runs (trident and torchvision alternate, in ABBA order, after --warmup untimed runs of each).
#include <trident/core/threads.hpp>
#include <trident/ops/nms.hpp>
#include <trident/ops/roi_align.hpp>

#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/ops/_unique.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/nonzero.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>
#include <torch/version.h>

#include <dlfcn.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <numeric>
#include <optional>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

constexpr const char* kDefaultTorchvision =
    "/usr/lib/python3/dist-packages/torchvision/_C.cpython-311-x86_64-linux-gnu.so";

// ---------------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------------
struct Options {
  int threads = 0;  // 0: trident::use_all_cores' default (TRIDENT_NUM_THREADS, else every hardware thread)
  int repeat = 7;
  int warmup = 1;
  std::string filter;
  std::string torchvision;
  bool use_torchvision = true;
  bool force_torchvision = false;
};

void usage(std::FILE* to) {
  std::fputs(
      "usage: bench_ops [--threads N] [--repeat N] [--warmup N] [--filter REGEX]\n"
      "                 [--torchvision PATH | --no-torchvision] [--force-torchvision]\n"
      "  --threads N          intra-op threads (default: TRIDENT_NUM_THREADS, else all hardware threads)\n"
      "  --repeat N           timed runs per implementation and case; the median is reported (default 7)\n"
      "  --warmup N           untimed runs first (default 1)\n"
      "  --filter REGEX       only the rows whose operation matches REGEX (e.g. roi_align, 'forward$', nms)\n"
      "  --torchvision PATH   torchvision's _C library (default: $TRIDENT_TORCHVISION_LIB, else\n"
      "                       /usr/lib/python3/dist-packages/torchvision/_C.cpython-311-x86_64-linux-gnu.so)\n"
      "  --no-torchvision     time trident alone\n"
      "  --force-torchvision  load it even if it was linked against another libtorch_cpu than this program\n",
      to);
}

int positive_int(const char* flag, const char* text) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (end == text || *end != '\0' || v < 1 || v > 1'000'000) {
    std::fprintf(stderr, "bench_ops: %s expects a positive integer, got '%s'\n", flag, text);
    std::exit(2);
  }
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("TRIDENT_TORCHVISION_LIB"); env != nullptr && *env != '\0') o.torchvision = env;
  if (o.torchvision.empty()) o.torchvision = kDefaultTorchvision;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_ops: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") {
      o.threads = positive_int("--threads", value());
    } else if (a == "--repeat") {
      o.repeat = positive_int("--repeat", value());
    } else if (a == "--warmup") {
      const char* v = value();
      o.warmup = std::string_view(v) == "0" ? 0 : positive_int("--warmup", v);
    } else if (a == "--filter") {
      o.filter = value();
    } else if (a == "--torchvision") {
      o.torchvision = value();
    } else if (a == "--no-torchvision") {
      o.use_torchvision = false;
    } else if (a == "--force-torchvision") {
      o.force_torchvision = true;
    } else if (a == "-h" || a == "--help") {
      usage(stdout);
      std::exit(0);
    } else {
      std::fprintf(stderr, "bench_ops: unknown argument '%s'\n", argv[i]);
      usage(stderr);
      std::exit(2);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// torchvision's kernels through the dispatcher
// ---------------------------------------------------------------------------------------------------------------

/// The libtorch_cpu a shared library was linked against (its DT_NEEDED string), found by scanning the file for
/// a NUL-delimited "libtorch_cpu.so..." string; empty if there is none.
std::string needed_torch_cpu(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  constexpr std::string_view stem = "libtorch_cpu.so";
  for (size_t at = bytes.find(stem); at != std::string::npos; at = bytes.find(stem, at + 1)) {
    if (at > 0 && bytes[at - 1] != '\0') continue;
    const size_t end = bytes.find('\0', at);
    if (end != std::string::npos) return bytes.substr(at, end - at);
  }
  return {};
}

/// The file name of the libtorch_cpu this program runs with.
std::string own_torch_cpu() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&at::get_num_threads), &info) == 0 || info.dli_fname == nullptr) return {};
  const std::string path = info.dli_fname;
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

struct Torchvision {
  std::optional<c10::OperatorHandle> roi_align_op, nms_op;
  std::string status;  // one markdown line: what was loaded, or why not

  explicit operator bool() const { return roi_align_op.has_value() && nms_op.has_value(); }

  static Torchvision load(const Options& o) {
    Torchvision tv;
    if (!o.use_torchvision) {
      tv.status = "not used (--no-torchvision): trident alone";
      return tv;
    }
    if (std::ifstream probe(o.torchvision); !probe) {
      tv.status = "not found at `" + o.torchvision +
                  "` (apt-get install python3-torchvision, or pass --torchvision PATH): trident alone";
      return tv;
    }
    const std::string theirs = needed_torch_cpu(o.torchvision), ours = own_torch_cpu();
    if (!o.force_torchvision && !theirs.empty() && !ours.empty() && theirs != ours) {
      tv.status = "`" + o.torchvision + "` was linked against " + theirs + " but this program runs " + ours +
                  "; not loaded (two libtorch in one process would crash; --force-torchvision to try): trident alone";
      return tv;
    }
    if (dlopen(o.torchvision.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr) {
      const char* why = dlerror();
      tv.status = "`" + o.torchvision + "` did not load (" + (why ? why : "unknown error") + "): trident alone";
      return tv;
    }
    auto& dispatcher = c10::Dispatcher::singleton();
    // c10::optional is not std::optional in every LibTorch: copy the handle over.
    if (const auto op = dispatcher.findSchema({"torchvision::roi_align", ""}); op.has_value())
      tv.roi_align_op.emplace(*op);
    if (const auto op = dispatcher.findSchema({"torchvision::nms", ""}); op.has_value()) tv.nms_op.emplace(*op);
    if (!tv) {
      tv.status = "`" + o.torchvision + "` loaded but does not register torchvision::roi_align and torchvision::nms: "
                  "trident alone";
      return tv;
    }
    tv.status = "`" + o.torchvision + "`, called through the dispatcher:\n  - `" +
                c10::toString(tv.roi_align_op->schema()) + "`\n  - `" + c10::toString(tv.nms_op->schema()) + "`";
    return tv;
  }

  // Boxed calls: they work whether the schema says int or SymInt for the output size (torchvision >= 0.15).
  at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double scale, int64_t h, int64_t w,
                       int64_t sampling_ratio, bool aligned) const {
    torch::jit::Stack stack{input, rois, scale, h, w, sampling_ratio, aligned};
    roi_align_op->callBoxed(&stack);
    return stack.front().toTensor();
  }

  at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) const {
    torch::jit::Stack stack{boxes, scores, iou_threshold};
    nms_op->callBoxed(&stack);
    return stack.front().toTensor();
  }

  /// torchvision.ops.batched_nms, written out in C++: a loop over the groups (torchvision's choice for more than
  /// 4000 box coordinates on the CPU), else the coordinate-offset trick.
  at::Tensor batched_nms(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& idxs,
                         double iou_threshold) const {
    if (boxes.numel() > 4000) {
      auto keep_mask = at::zeros_like(scores, scores.options().dtype(at::kBool));
      const auto classes = std::get<0>(at::_unique(idxs));
      const auto* class_ids = classes.data_ptr<int64_t>();
      for (int64_t c = 0; c < classes.numel(); ++c) {
        const auto members = at::nonzero(idxs == class_ids[c]).squeeze(1);
        const auto kept = nms(boxes.index_select(0, members), scores.index_select(0, members), iou_threshold);
        keep_mask.index_fill_(0, members.index_select(0, kept), true);
      }
      const auto keep = at::nonzero(keep_mask).squeeze(1);
      return keep.index_select(0, std::get<1>(scores.index_select(0, keep).sort(0, /*descending=*/true)));
    }
    const auto offsets = idxs.to(boxes.scalar_type()) * (boxes.max() + 1);
    return nms(boxes + offsets.unsqueeze(1), scores, iou_threshold);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// Inputs: a ResNet-50 conv4 map of a 900x1500 picture and person-like boxes, from a fixed seed
// ---------------------------------------------------------------------------------------------------------------
constexpr double kImageW = 1500, kImageH = 900;  // the picture; padded to 1504x928 -> a 94x58 map at stride 16

struct Box {
  float x1, y1, x2, y2;
};

/// A pedestrian-shaped box: height log-uniform in [40, 700] px, width/height in [0.3, 0.55], centre anywhere in
/// the picture, clipped to it.
Box person_box(std::mt19937& rng) {
  std::uniform_real_distribution<double> log_h(std::log(40.0), std::log(700.0)), aspect(0.3, 0.55);
  std::uniform_real_distribution<double> cx(0, kImageW), cy(0, kImageH);
  const double h = std::exp(log_h(rng)), w = h * aspect(rng), x = cx(rng), y = cy(rng);
  return {static_cast<float>(std::max(0.0, x - w / 2)), static_cast<float>(std::max(0.0, y - h / 2)),
          static_cast<float>(std::min(kImageW, x + w / 2)), static_cast<float>(std::min(kImageH, y + h / 2))};
}

/// RPN-like proposals: 70% jittered copies of 30 people in the picture (they overlap, so NMS has work to do),
/// the rest anywhere. Sides are at least 1 px.
std::vector<Box> proposals(std::mt19937& rng, int64_t n) {
  std::vector<Box> people(30);
  for (auto& p : people) p = person_box(rng);
  std::uniform_real_distribution<double> u(0, 1);
  std::normal_distribution<double> shift(0, 0.12), log_scale(0, 0.15);
  std::uniform_int_distribution<size_t> pick(0, people.size() - 1);
  std::vector<Box> out(static_cast<size_t>(n));
  for (auto& b : out) {
    if (u(rng) >= 0.7) {
      b = person_box(rng);
      continue;
    }
    const Box& p = people[pick(rng)];
    const double w = (p.x2 - p.x1) * std::exp(log_scale(rng)), h = (p.y2 - p.y1) * std::exp(log_scale(rng));
    const double cx = (p.x1 + p.x2) / 2 + shift(rng) * w, cy = (p.y1 + p.y2) / 2 + shift(rng) * h;
    const double x1 = std::clamp(cx - w / 2, 0.0, kImageW - 1), y1 = std::clamp(cy - h / 2, 0.0, kImageH - 1);
    b = {static_cast<float>(x1), static_cast<float>(y1),
         static_cast<float>(std::clamp(cx + w / 2, x1 + 1, kImageW)),
         static_cast<float>(std::clamp(cy + h / 2, y1 + 1, kImageH))};
  }
  return out;
}

at::Tensor boxes_tensor(const std::vector<Box>& boxes) {
  return at::from_blob(const_cast<Box*>(boxes.data()), {static_cast<int64_t>(boxes.size()), 4}, at::kFloat).clone();
}

/// RoIs [n, 5] in image 0.
at::Tensor person_rois(std::mt19937& rng, int64_t n) {
  std::vector<float> v;
  v.reserve(static_cast<size_t>(n) * 5);
  for (int64_t i = 0; i < n; ++i) {
    const Box b = person_box(rng);
    v.insert(v.end(), {0.f, b.x1, b.y1, b.x2, b.y2});
  }
  return at::from_blob(v.data(), {n, 5}, at::kFloat).clone();
}

/// Distinct scores in (0, 1), a random permutation (distinct so that no tie order can differ between the two).
at::Tensor distinct_scores(std::mt19937& rng, int64_t n) {
  std::vector<float> s(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) s[i] = static_cast<float>((static_cast<double>(i) + 0.5) / static_cast<double>(n));
  std::shuffle(s.begin(), s.end(), rng);
  return at::from_blob(s.data(), {n}, at::kFloat).clone();
}

at::Tensor feature_map(std::mt19937& rng) {
  auto f = at::empty({1, 1024, 58, 94}, at::kFloat);
  std::normal_distribution<float> normal(0.f, 1.f);
  float* p = f.data_ptr<float>();
  for (int64_t i = 0; i < f.numel(); ++i) p[i] = std::max(0.f, normal(rng));  // post-ReLU activations
  return f;
}

// ---------------------------------------------------------------------------------------------------------------
// Timing and the report
// ---------------------------------------------------------------------------------------------------------------

/// "model name" from /proc/cpuinfo (Linux), else "unknown CPU".
std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
  }
  return "unknown CPU";
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/// Medians in milliseconds of each function: `warmup` untimed calls of each, then `repeat` rounds that call
/// each once, alternating the order from round to round (ABBA) so that drifting machine load hits both alike.
std::vector<double> measure(const std::vector<std::function<void()>>& fs, int warmup, int repeat) {
  for (int w = 0; w < warmup; ++w)
    for (const auto& f : fs) f();
  std::vector<std::vector<double>> ms(fs.size());
  for (int r = 0; r < repeat; ++r) {
    for (size_t k = 0; k < fs.size(); ++k) {
      const size_t i = r % 2 == 0 ? k : fs.size() - 1 - k;
      const auto t0 = std::chrono::steady_clock::now();
      fs[i]();
      const auto t1 = std::chrono::steady_clock::now();
      ms[i].push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    }
  }
  std::vector<double> out;
  for (auto& m : ms) out.push_back(median(m));
  return out;
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string ms_text(double ms) { return fixed(ms, ms < 10 ? 2 : ms < 100 ? 1 : 0); }

std::string max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (!a.sizes().equals(b.sizes())) return "shapes differ";
  const double d = (a - b).abs().max().item<double>();
  return d == 0 ? "max abs diff 0" : "max abs diff " + fixed(d, 9);
}

struct Row {
  std::string operation, input;
  int threads;
  double trident_ms;
  std::optional<double> torchvision_ms;
  std::string check;
};

void print_row(const Row& r) {
  std::printf("| %s | %s | %d | %s | %s | %s | %s |\n", r.operation.c_str(), r.input.c_str(), r.threads,
              ms_text(r.trident_ms).c_str(), r.torchvision_ms ? ms_text(*r.torchvision_ms).c_str() : "–",
              r.torchvision_ms ? (fixed(*r.torchvision_ms / r.trident_ms, 2) + "x").c_str() : "–", r.check.c_str());
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const int threads = trident::use_all_cores(o.threads);
  const Torchvision tv = Torchvision::load(o);
  // --filter REGEX keeps the rows whose operation name it matches (std::regex_search).
  std::regex filter;
  try {
    filter = std::regex(o.filter);
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "bench_ops: --filter '%s' is not a regular expression: %s\n", o.filter.c_str(), e.what());
    return 2;
  }
  auto wanted = [&](const std::string& op) { return o.filter.empty() || std::regex_search(op, filter); };

  std::printf("## bench_ops\n\n");
  std::printf("- trident %s, LibTorch %s, float32, CPU\n", std::string(trident::version).c_str(), TORCH_VERSION);
  std::printf("- CPU: %s, %u hardware threads; intra-op threads: %d (at::get_num_threads)\n", cpu_model().c_str(),
              std::thread::hardware_concurrency(), threads);
  std::printf("- torchvision: %s\n", tv.status.c_str());
  std::printf("- medians of %d interleaved runs after %d warm-up run(s) each; ratio = torchvision / trident "
              "(> 1: trident faster)\n\n",
              o.repeat, o.warmup);
  std::printf("| operation | input | threads | trident (ms) | torchvision (ms) | ratio | outputs |\n");
  std::printf("|---|---|---:|---:|---:|---:|---|\n");
  std::fflush(stdout);

  // Every input has its own fixed seed, so that --filter does not change what the other cases see.
  // ---- RoIAlign: 24x8 bins, spatial scale 1/16, sampling ratio 2 and adaptive, aligned = false. ------------------
  if (wanted("roi_align forward") || wanted("roi_align forward+backward")) {
    std::mt19937 feature_rng(1);
    const auto features = feature_map(feature_rng);
    constexpr int64_t out_h = 24, out_w = 8;
    constexpr double scale = 1.0 / 16;
    for (const int64_t k : {300, 2000}) {
      std::mt19937 rng(100 + static_cast<unsigned>(k));
      const auto rois = person_rois(rng, k);
      at::manual_seed(7);
      const auto grad_out = wanted("roi_align forward+backward") ? at::randn({k, features.size(1), out_h, out_w})
                                                                  : at::Tensor();
      const auto leaf = features.detach().requires_grad_(true);
      for (const int64_t sr : {2, -1}) {
        const std::string input = "feature [1, 1024, 58, 94], " + std::to_string(k) + " RoIs, 24x8, sampling " +
                                  (sr > 0 ? std::to_string(sr) : std::string("adaptive (-1)"));
        auto tri_fwd = [&] {
          at::NoGradGuard no_grad;
          return trident::ops::roi_align(features, rois, {out_h, out_w}, scale, sr, false);
        };
        auto tv_fwd = [&] {
          at::NoGradGuard no_grad;
          return tv.roi_align(features, rois, scale, out_h, out_w, sr, false);
        };
        auto tri_grad = [&] {
          const auto y = trident::ops::roi_align(leaf, rois, {out_h, out_w}, scale, sr, false);
          return torch::autograd::grad({y}, {leaf}, {grad_out})[0];
        };
        auto tv_grad = [&] {
          const auto y = tv.roi_align(leaf, rois, scale, out_h, out_w, sr, false);
          return torch::autograd::grad({y}, {leaf}, {grad_out})[0];
        };
        for (const bool backward : {false, true}) {
          Row row{backward ? "roi_align forward+backward" : "roi_align forward", input, threads, 0, {}, ""};
          if (!wanted(row.operation)) continue;
          std::vector<std::function<void()>> fs;
          if (backward) {
            fs.push_back([&] { (void)tri_grad(); });
            if (tv) fs.push_back([&] { (void)tv_grad(); });
            row.check = tv ? "grad input: " + max_abs_diff(tri_grad(), tv_grad()) : "–";
          } else {
            fs.push_back([&] { (void)tri_fwd(); });
            if (tv) fs.push_back([&] { (void)tv_fwd(); });
            row.check = tv ? max_abs_diff(tri_fwd(), tv_fwd()) : "–";
          }
          const auto ms = measure(fs, o.warmup, o.repeat);
          row.trident_ms = ms[0];
          if (tv) row.torchvision_ms = ms[1];
          print_row(row);
        }
      }
    }
  }

  // ---- NMS at IoU 0.7: RPN pre-NMS top-N sizes, and per-image batched NMS of two pictures. ------------------------
  constexpr double iou = 0.7;
  auto nms_check = [](const at::Tensor& a, const at::Tensor& b) {
    return a.sizes().equals(b.sizes()) && a.equal(b) ? "identical indices (" + std::to_string(a.size(0)) + " kept)"
                                                     : std::string("**indices differ**");
  };
  if (wanted("nms")) {
    for (const int64_t n : {2000, 12000}) {
      std::mt19937 rng(200 + static_cast<unsigned>(n));
      const auto boxes = boxes_tensor(proposals(rng, n));
      const auto scores = distinct_scores(rng, n);
      Row row{"nms", std::to_string(n) + " boxes, IoU 0.7", threads, 0, {}, "–"};
      std::vector<std::function<void()>> fs{[&] { (void)trident::ops::nms(boxes, scores, iou); }};
      if (tv) {
        fs.push_back([&] { (void)tv.nms(boxes, scores, iou); });
        row.check = nms_check(trident::ops::nms(boxes, scores, iou), tv.nms(boxes, scores, iou));
      }
      const auto ms = measure(fs, o.warmup, o.repeat);
      row.trident_ms = ms[0];
      if (tv) row.torchvision_ms = ms[1];
      print_row(row);
    }
  }
  if (wanted("batched_nms (per image)")) {
    for (const int64_t n : {2000, 12000}) {
      std::mt19937 rng(300 + static_cast<unsigned>(n));
      constexpr int64_t images = 2;
      std::vector<Box> all;
      std::vector<int64_t> image_of;
      for (int64_t i = 0; i < images; ++i) {
        const auto b = proposals(rng, n);
        all.insert(all.end(), b.begin(), b.end());
        image_of.insert(image_of.end(), static_cast<size_t>(n), i);
      }
      const auto boxes = boxes_tensor(all);
      const auto scores = distinct_scores(rng, images * n);
      const auto idxs = at::from_blob(image_of.data(), {images * n}, at::kLong).clone();
      Row row{"batched_nms (per image)", std::to_string(images) + " images x " + std::to_string(n) + " boxes, IoU 0.7",
              threads, 0, {}, "–"};
      std::vector<std::function<void()>> fs{[&] { (void)trident::ops::batched_nms(boxes, scores, idxs, iou); }};
      if (tv) {
        fs.push_back([&] { (void)tv.batched_nms(boxes, scores, idxs, iou); });
        row.check =
            nms_check(trident::ops::batched_nms(boxes, scores, idxs, iou), tv.batched_nms(boxes, scores, idxs, iou));
      }
      const auto ms = measure(fs, o.warmup, o.repeat);
      row.trident_ms = ms[0];
      if (tv) row.torchvision_ms = ms[1];
      print_row(row);
    }
  }
  std::printf("\n");
  return 0;
}
