// bench_network: the whole TridentNet<PaperConfig<CuhkSysu>> (ResNet-50, RoIAlign 24x8, detection + re-id + part
// branches, AGWF) timed per image and per training iteration, with its peak memory, its FLOPs and the GFLOP/s it
// achieves next to a plain ResNet-50 classification forward timed in the same run; and a gallery search.
// benchmarks/reference/bench_reference.py times the same cases for the same architecture built from torchvision's
// detection modules and writes the same JSON keys; benchmarks/compare.sh runs both and prints the ratios.
//
//   bench_network [--threads N] [--repeat N] [--warmup N] [--device cpu|cuda]
//                 [--sizes 900x1500,600x1000] [--infer-batches 1] [--batches 2,4] [--train-size 900x1500]
//                 [--gallery 10000,100000,1000000] [--detections 20] [--yardstick-batch 1]
//                 [--amp off|bf16|fp16] [--channels-last] [--tf32] [--cuda-graphs] [--cudnn-benchmark]
//                 [--cudnn-fusion]
//                 [--only infer,train,search,resnet50] [--case NAME] [--json OUT]
//
// Cases (each is one --case NAME): infer-HxW, infer-bB-HxW (B > 1 of --infer-batches), train-bB, search-N,
// resnet50-224. Without --case the program runs every selected case in a child process of its own (the program
// re-executed with --case), so that each case's peak resident memory (VmHWM) is its own; with --case it runs that
// case in this process. Weights are random (timing does not depend on them); images are random; training targets
// are synthetic (a few person boxes per image, labeled and unlabeled). Every figure is printed with the thread
// count, the input size and the proposal counts; --json writes them machine-readably ({"program": "trident",
// "cases": [...]}).
//
// GPU options (the same in bench_reference.py; every record says what it ran with in its text fields "amp",
// "channels_last" and "tf32"):
//   --amp bf16|fp16   CUDA autocast (train::detail::AutocastScope, the trainer's) around the inference passes (the
//                     stage breakdown, net.detect(), the batched cases, the ResNet-50 yardstick) and the training
//                     forward; fp16 training scales the loss with the trainer's train::GradScaler (dynamic, initial
//                     scale 2^16; gradients unscaled and checked in the timed step, a non-finite step skipped).
//                     Search runs in float32. Refused on the CPU.
//   --channels-last   images in channels-last memory format (trident's folded backbone is channels-last inside
//                     anyway; the reference also converts its model).
//   --tf32            TF32 in cuBLAS matmuls and cuDNN convolutions. Without it LibTorch's defaults hold (cuDNN on,
//                     cuBLAS off), and the record says so. Refused on the CPU.
//   --cuda-graphs     (trident only) net.detect() with NetOptions::cuda_graphs: its three stages replayed as CUDA
//                     graphs; affects detect_ms and the batched cases, not the (eager) stage breakdown.
//   --cudnn-benchmark (trident only) cuDNN times its convolution algorithms per shape and keeps the fastest.
//   --cudnn-fusion    (trident only) inference with cuDNN's fused epilogues (backbone::set_cudnn_epilogue_fusion).
//   --profile         (trident only) a Kineto kernel profile of one more detect() / training step (kernel_profile.hpp).
#include <trident/core/threads.hpp>
#include <trident/model/configs.hpp>
#include <trident/search/similarity.hpp>
#include <trident/train/grad_scaler.hpp>
#include <trident/train/trainer.hpp>  // train::detail::AutocastScope (LibTorch 1.13 and 2.x spellings)

#include <ATen/Context.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/stack.h>
#include <ATen/ops/topk.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/version.h>

#if defined(TRIDENT_BENCH_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && \
    __has_include(<cuda_runtime_api.h>) && __has_include(<torch/cuda.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/util/Exception.h>
#include <torch/cuda.h>
#include "kernel_profile.hpp"
#define TRIDENT_BENCH_CUDA 1
#else
#define TRIDENT_BENCH_CUDA 0
#endif

#include <fmt/format.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using Net = trident::TridentNet<trident::PaperConfig<trident::CuhkSysu>>;
using ReidBranch = trident::PaperReidBranch<trident::CuhkSysu>;
using PartBranch = trident::branches::PartBranch<trident::Parts<trident::paper_parts>>;
using trident::branches::DetectionBranch;

// ---------------------------------------------------------------------------------------------------------------
// Command line
// ---------------------------------------------------------------------------------------------------------------
struct Size {
  int64_t height = 0, width = 0;
  std::string str() const { return fmt::format("{}x{}", height, width); }
};

struct Options {
  int threads = 0;
  int repeat = 5;
  int warmup = 1;
  std::string device = "cpu";
  std::vector<Size> sizes{{900, 1500}, {600, 1000}};
  std::vector<int64_t> infer_batches{1};  // 1: infer-HxW (stage breakdown); B > 1: infer-bB-HxW (net.detect())
  std::vector<int64_t> batches{2, 4};
  Size train_size{900, 1500};
  std::vector<int64_t> gallery{10'000, 100'000, 1'000'000};
  int64_t detections = 20;
  int64_t yardstick_batch = 1;
  int64_t top_k = 100;
  std::vector<std::string> only{"infer", "train", "search", "resnet50"};
  bool flops_only = false;
  // backbone::set_batch_norm_folding: always (the library's default), inference (eval() only), off
  trident::backbone::Folding folding = trident::backbone::Folding::always;
  std::string amp = "off";     // off, bf16, fp16: CUDA autocast
  bool channels_last = false;  // images in channels-last memory format
  bool tf32 = false;           // TF32 in cuBLAS and cuDNN (else LibTorch's defaults)
  bool cuda_graphs = false;    // NetOptions::cuda_graphs for net.detect() (CUDA only)
  bool cudnn_benchmark = false;  // cuDNN picks its convolution algorithms by timing them (CUDA only)
  bool cudnn_fusion = false;     // backbone::set_cudnn_epilogue_fusion for inference (CUDA only)
  bool profile = false;          // a kernel profile of one detect() / one training step (CUDA only)
  std::string case_name;
  std::string json;
  std::string record;  // internal: the child writes its case's JSON object here
};

[[noreturn]] void usage(std::FILE* to, int code) {
  std::fputs(
      "usage: bench_network [options]\n"
      "  --threads N            intra-op threads (default: TRIDENT_NUM_THREADS, else all hardware threads)\n"
      "  --repeat N             timed runs per case; medians are reported (default 5)\n"
      "  --warmup N             untimed runs first (default 1)\n"
      "  --device cpu|cuda      where the network runs (cuda only in a CUDA build of LibTorch)\n"
      "  --sizes HxW,...        inference image sizes (default 900x1500,600x1000)\n"
      "  --infer-batches B,...  inference batch sizes (default 1). B = 1: case infer-HxW, one image timed stage by\n"
      "                         stage and through net.detect(); B > 1: case infer-bB-HxW, B images of HxW in one\n"
      "                         batch through net.detect() (total_ms per batch, images_per_s)\n"
      "  --batches B,...        training batch sizes (default 2,4)\n"
      "  --train-size HxW       training image size (default 900x1500)\n"
      "  --gallery N,...        gallery sizes of the search case (default 10000,100000,1000000)\n"
      "  --detections D         boxes of the second (describe) pass in the stage breakdown (default 20)\n"
      "  --yardstick-batch B    batch of the ResNet-50 classification yardstick at 224x224 (default 1)\n"
      "  --top-k K              ranked gallery entries returned by the search (default 100)\n"
      "  --only K,...           case kinds to run: infer, train, search, resnet50 (default all)\n"
      "  --case NAME            run one case in this process: infer-HxW, infer-bB-HxW, train-bB, search-N,\n"
      "                         resnet50-224\n"
      "  --json OUT             write the figures as JSON\n"
      "  --fold off|inference|always  when batch norms fold into their convolutions, channels-last\n"
      "                         (backbone::set_batch_norm_folding; default always, the library's)\n"
      "  --flops                print the FLOPs of every selected infer / train case and exit (no timing)\n"
      "GPU options (--device cuda; the same in bench_reference.py; records name them in \"amp\", \"channels_last\",\n"
      "\"tf32\"):\n"
      "  --amp off|bf16|fp16    CUDA autocast to bfloat16 / float16 (default off) around the inference passes\n"
      "                         (stages, net.detect(), batched cases, ResNet-50 yardstick) and the training forward;\n"
      "                         fp16 training uses the trainer's dynamic loss scaling (train::GradScaler, initial\n"
      "                         scale 2^16, unscaled and checked inside step_ms). Search stays float32.\n"
      "                         Refused on the CPU.\n"
      "  --channels-last        images in channels-last memory format (CPU too; trident's folded backbone is\n"
      "                         channels-last inside anyway)\n"
      "  --tf32                 allow TF32 in cuBLAS matmuls and cuDNN convolutions. Without it LibTorch's defaults\n"
      "                         hold (cuDNN TF32 on, cuBLAS off) and the record says \"default: ...\". CUDA only.\n"
      "  --cuda-graphs          net.detect() with NetOptions::cuda_graphs (its stages replayed as CUDA graphs):\n"
      "                         detect_ms of infer-HxW and the batched cases (the stage breakdown stays eager).\n"
      "                         CUDA only; trident only (bench_reference.py has no such option).\n"
      "  --cudnn-benchmark      cuDNN times its algorithms for each new convolution shape and keeps the fastest\n"
      "                         (at::globalContext().setBenchmarkCuDNN; torch.backends.cudnn.benchmark). CUDA only;\n"
      "                         trident only.\n"
      "  --cudnn-fusion         inference with cuDNN's fused epilogues (backbone::set_cudnn_epilogue_fusion: each\n"
      "                         folded convolution adds its bias, residual and ReLU itself). CUDA only; trident only.\n"
      "  --profile              after the timed runs, one more net.detect() (infer-HxW, infer-bB-HxW) or training\n"
      "                         step (train-bB)\n"
      "                         under LibTorch's Kineto profiler: the device's kernels by total time, its busy time\n"
      "                         against the span, and the CUDA runtime calls (launches, synchronisations). CUDA only;\n"
      "                         trident only.\n",
      to);
  std::exit(code);
}

int64_t parse_int(std::string_view flag, const std::string& text, int64_t low) {
  try {
    size_t used = 0;
    const long long v = std::stoll(text, &used);
    if (used == text.size() && v >= low) return v;
  } catch (const std::exception&) {
  }
  std::fprintf(stderr, "bench_network: %.*s expects an integer >= %lld, got '%s'\n", static_cast<int>(flag.size()),
               flag.data(), static_cast<long long>(low), text.c_str());
  std::exit(2);
}

std::vector<std::string> split(const std::string& text, char sep = ',') {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, sep);)
    if (!item.empty()) out.push_back(item);
  return out;
}

Size parse_size(std::string_view flag, const std::string& text) {
  const auto parts = split(text, 'x');
  if (parts.size() != 2) {
    std::fprintf(stderr, "bench_network: %.*s expects HxW, got '%s'\n", static_cast<int>(flag.size()), flag.data(),
                 text.c_str());
    std::exit(2);
  }
  return {parse_int(flag, parts[0], 32), parse_int(flag, parts[1], 32)};
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_network: %s needs a value\n", argv[i]);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") o.threads = static_cast<int>(parse_int(a, value(), 1));
    else if (a == "--repeat") o.repeat = static_cast<int>(parse_int(a, value(), 1));
    else if (a == "--warmup") o.warmup = static_cast<int>(parse_int(a, value(), 0));
    else if (a == "--device") o.device = value();
    else if (a == "--sizes") {
      o.sizes.clear();
      for (const auto& s : split(value())) o.sizes.push_back(parse_size(a, s));
    } else if (a == "--batches") {
      o.batches.clear();
      for (const auto& s : split(value())) o.batches.push_back(parse_int(a, s, 1));
    } else if (a == "--train-size") o.train_size = parse_size(a, value());
    else if (a == "--gallery") {
      o.gallery.clear();
      for (const auto& s : split(value())) o.gallery.push_back(parse_int(a, s, 1));
    } else if (a == "--detections") o.detections = parse_int(a, value(), 1);
    else if (a == "--yardstick-batch") o.yardstick_batch = parse_int(a, value(), 1);
    else if (a == "--top-k") o.top_k = parse_int(a, value(), 1);
    else if (a == "--only") o.only = split(value());
    else if (a == "--case") o.case_name = value();
    else if (a == "--json") o.json = value();
    else if (a == "--flops") o.flops_only = true;
    else if (a == "--fold") {
      const std::string v = value();
      if (v == "off") o.folding = trident::backbone::Folding::off;
      else if (v == "inference") o.folding = trident::backbone::Folding::inference;
      else if (v == "always") o.folding = trident::backbone::Folding::always;
      else {
        std::fprintf(stderr, "bench_network: --fold expects off, inference or always, got '%s'\n", v.c_str());
        std::exit(2);
      }
    }
    else if (a == "--infer-batches") {
      o.infer_batches.clear();
      for (const auto& s : split(value())) o.infer_batches.push_back(parse_int(a, s, 1));
    } else if (a == "--amp") {
      o.amp = value();
      if (o.amp != "off" && o.amp != "bf16" && o.amp != "fp16") {
        std::fprintf(stderr, "bench_network: --amp expects off, bf16 or fp16, got '%s'\n", o.amp.c_str());
        std::exit(2);
      }
    } else if (a == "--channels-last") o.channels_last = true;
    else if (a == "--tf32") o.tf32 = true;
    else if (a == "--cuda-graphs") o.cuda_graphs = true;
    else if (a == "--cudnn-benchmark") o.cudnn_benchmark = true;
    else if (a == "--cudnn-fusion") o.cudnn_fusion = true;
    else if (a == "--profile") o.profile = true;
    else if (a == "--record") o.record = value();
    else if (a == "-h" || a == "--help") usage(stdout, 0);
    else {
      std::fprintf(stderr, "bench_network: unknown argument '%s'\n", argv[i]);
      usage(stderr, 2);
    }
  }
  if (o.device != "cpu" && o.device != "cuda") {
    std::fprintf(stderr, "bench_network: --device must be cpu or cuda, got '%s'\n", o.device.c_str());
    std::exit(2);
  }
  if (o.amp != "off" && o.device != "cuda") {
    std::fprintf(stderr,
                 "bench_network: --amp %s needs --device cuda: mixed precision (autocast) is timed on CUDA only; on "
                 "the CPU use --amp off\n",
                 o.amp.c_str());
    std::exit(2);
  }
  if (o.tf32 && o.device != "cuda") {
    std::fprintf(stderr, "bench_network: --tf32 needs --device cuda: TF32 is a cuBLAS / cuDNN setting\n");
    std::exit(2);
  }
  if ((o.cuda_graphs || o.cudnn_benchmark || o.cudnn_fusion || o.profile) && o.device != "cuda") {
    std::fprintf(stderr,
                 "bench_network: --cuda-graphs, --cudnn-benchmark, --cudnn-fusion and --profile need --device cuda\n");
    std::exit(2);
  }
  return o;
}

// ---------------------------------------------------------------------------------------------------------------
// Clocks, memory, records
// ---------------------------------------------------------------------------------------------------------------
struct Device {
  at::Device device{at::kCPU};
  bool cuda() const { return device.is_cuda(); }
  void sync() const {
#if TRIDENT_BENCH_CUDA
    if (cuda()) torch::cuda::synchronize();
#endif
  }
};

/// Counts the host-device synchronisations in its scope on CUDA (c10's sync debug mode in warn mode, each of its
/// warnings counted by a handler installed for the scope; other warnings go on to the previous handler). A
/// backward pass's warnings arrive when backward() returns. -1 where it cannot count (the CPU, a CPU build).
class SyncCount {
 public:
  explicit SyncCount(bool cuda) {
#if TRIDENT_BENCH_CUDA
    if (!cuda) return;
    active_ = true;
    previous_handler_ = c10::WarningUtils::get_warning_handler();
    previous_mode_ = static_cast<int>(c10::cuda::warning_state().get_sync_debug_mode());
    c10::WarningUtils::set_warning_handler(&handler_);
    handler_.next = previous_handler_;
    c10::cuda::warning_state().set_sync_debug_mode(c10::cuda::SyncDebugMode::L_WARN);
#else
    (void)cuda;
#endif
  }
  ~SyncCount() { stop(); }
  SyncCount(const SyncCount&) = delete;
  SyncCount& operator=(const SyncCount&) = delete;

  /// Ends the count; the number of synchronisations (-1: not counted).
  int64_t stop() {
#if TRIDENT_BENCH_CUDA
    if (active_) {
      active_ = false;
      c10::cuda::warning_state().set_sync_debug_mode(static_cast<c10::cuda::SyncDebugMode>(previous_mode_));
      c10::WarningUtils::set_warning_handler(previous_handler_);
    }
    return handler_.count;
#else
    return -1;
#endif
  }

 private:
#if TRIDENT_BENCH_CUDA
  struct Handler final : c10::WarningHandler {
    std::atomic<int64_t> count{0};
    c10::WarningHandler* next = nullptr;
    void process(const c10::Warning& w) override {
      if (w.msg().find("synchroniz") != std::string::npos) ++count;
      else if (next != nullptr) next->process(w);
    }
  };
  Handler handler_;
  c10::WarningHandler* previous_handler_ = nullptr;
  int previous_mode_ = 0;
  bool active_ = false;
#endif
};

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

/// A field of /proc/self/status in MiB (VmHWM: peak resident set; VmRSS: current), -1 if unreadable.
double proc_status_mb(std::string_view field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(field, 0) == 0 && line.size() > field.size() && line[field.size()] == ':') {
      return std::stod(line.substr(field.size() + 1)) / 1024.0;  // the kernel writes kB
    }
  }
  return -1.0;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// One case's figures: ordered (name, value) pairs, plus descriptive strings. Written as one JSON object.
struct Record {
  std::string name, kind;
  std::vector<std::pair<std::string, std::string>> info;  // already-quoted JSON values
  std::vector<std::pair<std::string, double>> figures;

  void text(const std::string& key, const std::string& value) { info.emplace_back(key, "\"" + value + "\""); }
  void number(const std::string& key, double value) { info.emplace_back(key, fmt::format("{}", value)); }
  void figure(const std::string& key, double value) { figures.emplace_back(key, value); }

  std::string json() const {
    std::string out = fmt::format("{{\"case\": \"{}\", \"kind\": \"{}\"", name, kind);
    for (const auto& [k, v] : info) out += fmt::format(", \"{}\": {}", k, v);
    out += ", \"figures\": {";
    for (size_t i = 0; i < figures.size(); ++i)
      out += fmt::format("{}\"{}\": {:.10g}", i ? ", " : "", figures[i].first, figures[i].second);
    return out + "}}";
  }
};

/// Stage timings of repeated runs: name -> one value per timed run, kept in first-seen order.
struct Stages {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> runs;
  void add(const std::string& name, double ms) {
    if (!runs.count(name)) order.push_back(name);
    runs[name].push_back(ms);
  }
};

// ---------------------------------------------------------------------------------------------------------------
// FLOPs: 2 x multiply-adds of every convolution and fully connected layer, walked over the modules' own options and
// the feature-map sizes they see. Batch norms, ReLUs, pooling, RoIAlign, NMS, losses are not counted. Training
// counts the backward pass as the two products autograd computes where needed: the weight gradient of a layer
// whose weight requires grad, and the input gradient of a layer whose input requires grad (each as many FLOPs as
// the forward product), so frozen conv1 / layer1 cost their forward only.
// ---------------------------------------------------------------------------------------------------------------
struct FlopCount {
  double forward = 0, backward = 0;
  FlopCount& operator+=(const FlopCount& o) {
    forward += o.forward;
    backward += o.backward;
    return *this;
  }
  FlopCount operator*(double k) const { return {forward * k, backward * k}; }
  FlopCount operator+(const FlopCount& o) const { return {forward + o.forward, backward + o.backward}; }
};

int64_t first(const torch::ExpandingArray<2>& a) { return (*a)[0]; }
int64_t second(const torch::ExpandingArray<2>& a) { return (*a)[1]; }

/// One convolution on an h x w map; updates h, w to the output's and `grad` to whether its output requires grad.
FlopCount conv_flops(const torch::nn::Conv2d& conv, int64_t& h, int64_t& w, bool& grad) {
  const auto& o = conv->options;
  // options.padding() is a c10::variant in LibTorch 1.13 and a std::variant in 2.x: an unqualified visit finds
  // the right one by argument-dependent lookup. trident's convolutions have explicit padding.
  std::array<int64_t, 2> pad{-1, -1};
  visit(
      [&](const auto& p) {
        if constexpr (std::is_same_v<std::decay_t<decltype(p)>, torch::ExpandingArray<2>>) pad = {(*p)[0], (*p)[1]};
      },
      o.padding());
  TRIDENT_CHECK(pad[0] >= 0, "bench_network: the FLOP counter needs explicit convolution padding");
  const int64_t kh = first(o.kernel_size()), kw = second(o.kernel_size());
  h = (h + 2 * pad[0] - first(o.dilation()) * (kh - 1) - 1) / first(o.stride()) + 1;
  w = (w + 2 * pad[1] - second(o.dilation()) * (kw - 1) - 1) / second(o.stride()) + 1;
  const double f = 2.0 * static_cast<double>(o.in_channels() / o.groups() * kh * kw * o.out_channels() * h * w);
  const bool weight_grad = conv->weight.requires_grad();
  FlopCount c{f, (weight_grad ? f : 0.0) + (grad ? f : 0.0)};
  grad = grad || weight_grad;
  return c;
}

FlopCount linear_flops(const torch::nn::Linear& l, double rows, bool input_grad) {
  const double f = 2.0 * rows * static_cast<double>(l->options.in_features() * l->options.out_features());
  return {f, (l->weight.requires_grad() ? f : 0.0) + (input_grad ? f : 0.0)};
}

/// A stage of residual blocks (Bottleneck or BasicBlock) on an h x w map.
FlopCount stage_flops(const torch::nn::Sequential& stage, int64_t& h, int64_t& w, bool& grad) {
  FlopCount total;
  for (const auto& child : stage->children()) {
    int64_t mh = h, mw = w, sh = h, sw = w;
    bool mg = grad, sg = grad;
    if (auto* b = child->as<trident::backbone::BottleneckImpl>()) {
      total += conv_flops(b->conv1, mh, mw, mg);
      total += conv_flops(b->conv2, mh, mw, mg);
      total += conv_flops(b->conv3, mh, mw, mg);
      if (b->downsample) total += conv_flops(b->downsample->ptr<torch::nn::Conv2dImpl>(0), sh, sw, sg);
    } else if (auto* bb = child->as<trident::backbone::BasicBlockImpl>()) {
      total += conv_flops(bb->conv1, mh, mw, mg);
      total += conv_flops(bb->conv2, mh, mw, mg);
      if (bb->downsample) total += conv_flops(bb->downsample->ptr<torch::nn::Conv2dImpl>(0), sh, sw, sg);
    } else {
      trident::fail("bench_network: the FLOP counter knows Bottleneck and BasicBlock stages only");
    }
    h = mh, w = mw, grad = mg || sg;
  }
  return total;
}

/// conv1 .. conv4 on a padded image; h, w become the feature map's size.
FlopCount stem_flops(trident::backbone::ResNetStemImpl& stem, int64_t& h, int64_t& w) {
  bool grad = false;  // the image does not require grad
  FlopCount total = conv_flops(stem.conv1, h, w, grad);
  h = (h + 2 - 3) / 2 + 1, w = (w + 2 - 3) / 2 + 1;  // max pool 3x3, stride 2, padding 1
  total += stage_flops(stem.layer1, h, w, grad);
  total += stage_flops(stem.layer2, h, w, grad);
  total += stage_flops(stem.layer3, h, w, grad);
  return total;
}

/// conv5 on one RoI of the pooler's size; the pooled input requires grad in training (layer2, layer3 train).
FlopCount head_flops(trident::backbone::ResNetHeadImpl& head, bool training) {
  int64_t h = Net::Pooler::output_height, w = Net::Pooler::output_width;
  bool grad = training;
  return stage_flops(head.layer4, h, w, grad);
}

torch::nn::Conv2d conv_child(torch::nn::Module& m, const std::string& name) {
  return torch::nn::Conv2d(std::dynamic_pointer_cast<torch::nn::Conv2dImpl>(m.named_children()[name]));
}

/// The RPN's 3x3 convolution and its two 1x1 predictors on an h x w feature map.
FlopCount rpn_flops(trident::detector::RegionProposalNetworkImpl& rpn, int64_t h, int64_t w, bool training) {
  bool grad = training;
  FlopCount total = conv_flops(conv_child(rpn, "conv"), h, w, grad);
  for (const char* name : {"cls_logits", "bbox_pred"}) {
    int64_t h2 = h, w2 = w;
    bool g2 = grad;
    total += conv_flops(conv_child(rpn, name), h2, w2, g2);
  }
  return total;
}

torch::nn::Linear linear_child(torch::nn::Module& m, const std::string& name) {
  return torch::nn::Linear(std::dynamic_pointer_cast<torch::nn::LinearImpl>(m.named_children()[name]));
}

/// The fully connected layers per RoI: the detection branch always; the re-id encoders where embeddings are made
/// (the describe pass, training) and, in training, the memory product and the part classifier on 6 strips.
FlopCount roi_linear_flops(Net& net, double rois, bool embed, bool training) {
  auto& det = net.branch<DetectionBranch>();
  auto& reid = net.branch<ReidBranch>();
  FlopCount total = linear_flops(linear_child(det, "cls_hat"), rois, training);
  total += linear_flops(linear_child(det, "cls"), rois, training);
  total += linear_flops(linear_child(det, "bbox_pred"), rois, training);
  if (embed || training) {
    total += linear_flops(linear_child(reid, "encoder_hat"), rois, training);
    total += linear_flops(linear_child(reid, "encoder"), rois, training);
  }
  if (training) {
    const double memory = 2.0 * rois * ReidBranch::embedding_dim * (ReidBranch::lut_size + ReidBranch::queue_size);
    total += FlopCount{memory, memory};  // input gradient only: the memory is a buffer
    total += linear_flops(linear_child(net.branch<PartBranch>(), "classifier"), rois * PartBranch::num_parts, true);
  }
  return total;
}

int64_t pad32(int64_t v) { return (v + 31) / 32 * 32; }

/// One image's inference: stem and RPN on the padded image, the RoI head and the detection branch on `rois`
/// proposals, then RoI head, detection branch and re-id encoders on `described` boxes. fh, fw: conv4's size.
FlopCount infer_flops(Net& net, Size size, int64_t rois, int64_t described, int64_t& fh, int64_t& fw) {
  fh = pad32(size.height), fw = pad32(size.width);
  FlopCount flops = stem_flops(*net.stem(), fh, fw);
  flops += rpn_flops(*net.rpn(), fh, fw, false);
  const FlopCount per_roi = head_flops(*net.head(), false);
  flops += per_roi * static_cast<double>(rois) + roi_linear_flops(net, static_cast<double>(rois), false, false);
  flops += per_roi * static_cast<double>(described) +
           roi_linear_flops(net, static_cast<double>(described), true, false);
  return flops;
}

/// One training iteration: forward and backward of a batch, with the sampler's RoIs per image (its batch size:
/// there are always enough candidates with 2000 proposals per image).
FlopCount train_flops(Net& net, Size size, int64_t batch) {
  const double rois = static_cast<double>(batch * net.options().sampler.batch_size_per_image);
  int64_t fh = pad32(size.height), fw = pad32(size.width);
  FlopCount flops = stem_flops(*net.stem(), fh, fw) * static_cast<double>(batch);
  flops += rpn_flops(*net.rpn(), fh, fw, true) * static_cast<double>(batch);
  flops += head_flops(*net.head(), true) * rois + roi_linear_flops(net, rois, true, true);
  return flops;
}

// ---------------------------------------------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------------------------------------------
/// The first n rows of `boxes`, repeated cyclically when it has fewer (none: n zero-size boxes).
at::Tensor cycle_to(const at::Tensor& boxes, int64_t n) {
  const int64_t have = boxes.size(0);
  if (have >= n) return boxes.narrow(0, 0, n);
  if (have == 0) return at::zeros({n, 4}, boxes.options());
  return boxes.repeat({(n + have - 1) / have, 1}).narrow(0, 0, n);
}

/// `batch` random images of `size` padded to a multiple of 32, channels-last under --channels-last.
trident::ImageBatch make_batch(int64_t batch, Size size, const at::Device& device, bool channels_last) {
  trident::ImageBatch b;
  b.images = at::randn({batch, 3, pad32(size.height), pad32(size.width)}).to(device);
  if (channels_last) b.images = b.images.contiguous(at::MemoryFormat::ChannelsLast);
  b.sizes.assign(static_cast<size_t>(batch), trident::ImageSize{size.height, size.width});
  return b;
}

/// A few standing people per image: heights 15% .. 60% of the picture's, width 0.4 of the height, inside the
/// picture; the first three labeled with an identity, the rest unlabeled.
std::vector<trident::Target> make_targets(int64_t batch, Size size, const at::Device& device) {
  std::vector<trident::Target> out;
  for (int64_t i = 0; i < batch; ++i) {
    constexpr int64_t people = 5;
    const auto heights = (at::rand({people}) * 0.45 + 0.15) * static_cast<double>(size.height);
    const auto widths = heights * 0.4;
    const auto x1 = at::rand({people}) * (static_cast<double>(size.width) - widths);
    const auto y1 = at::rand({people}) * (static_cast<double>(size.height) - heights);
    trident::Target t;
    t.boxes = at::stack({x1, y1, x1 + widths, y1 + heights}, 1).to(device);
    t.pids = at::randint(0, trident::CuhkSysu::identities, {people}, at::kLong);
    t.pids.narrow(0, people / 2 + 1, people - people / 2 - 1).fill_(trident::unlabeled_identity);
    t.pids = t.pids.to(device);
    out.push_back(t);
  }
  return out;
}

void print_proposal_counts(const trident::NetOptions& o, bool training) {
  if (training)
    fmt::print("  RPN: pre-NMS top {} / post-NMS top {} per image (training), NMS {}; RoI sampler: {} per image, "
               "{} positive at most; {} anchors per cell\n",
               o.rpn.pre_nms_top_n_train, o.rpn.post_nms_top_n_train, o.rpn.nms_threshold,
               o.sampler.batch_size_per_image, o.sampler.positive_fraction, o.rpn.anchors.num_anchors_per_location());
  else
    fmt::print("  RPN: pre-NMS top {} / post-NMS top {} (test), NMS {}; detections: score >= {}, NMS {}, at most {}; "
               "{} anchors per cell\n",
               o.rpn.pre_nms_top_n_test, o.rpn.post_nms_top_n_test, o.rpn.nms_threshold, o.score_threshold,
               o.nms_threshold, o.detections_per_image, o.rpn.anchors.num_anchors_per_location());
}

void add_proposal_info(Record& r, const trident::NetOptions& o) {
  r.number("rpn_pre_nms_top_n_test", static_cast<double>(o.rpn.pre_nms_top_n_test));
  r.number("rpn_post_nms_top_n_test", static_cast<double>(o.rpn.post_nms_top_n_test));
  r.number("rpn_pre_nms_top_n_train", static_cast<double>(o.rpn.pre_nms_top_n_train));
  r.number("rpn_post_nms_top_n_train", static_cast<double>(o.rpn.post_nms_top_n_train));
  r.number("rpn_nms_threshold", o.rpn.nms_threshold);
  r.number("roi_batch_size_per_image", static_cast<double>(o.sampler.batch_size_per_image));
  r.number("detection_score_threshold", o.score_threshold);
  r.number("detection_nms_threshold", o.nms_threshold);
}

// ---------------------------------------------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------------------------------------------
struct Context {
  Options options;
  Device dev;
  int threads = 1;
  double base_rss_mb = 0;
};

/// --amp: whether autocast is on, and to which type. Each timed pass runs under its own
/// train::detail::AutocastScope, the trainer's (a no-op when off), which also clears autocast's cache at its end.
bool amp_on(const Options& o) { return o.amp != "off"; }
at::ScalarType amp_dtype(const Options& o) { return o.amp == "fp16" ? at::kHalf : at::kBFloat16; }
using Autocast = trident::train::detail::AutocastScope;

/// What the TF32 switches are: "on: ..." with --tf32, else "default: ..." (LibTorch's defaults, as read back).
std::string tf32_state(const Context& c) {
  if (!c.dev.cuda()) return "n/a (cpu)";
  auto& g = at::globalContext();
  return fmt::format("{}: cublas {}, cudnn {}", c.options.tf32 ? "on" : "default", g.allowTF32CuBLAS() ? "on" : "off",
                     g.allowTF32CuDNN() ? "on" : "off");
}

/// The record's precision fields; `applies`: whether the case takes --amp and --channels-last (search does not).
void add_precision(Record& r, const Context& c, bool applies) {
  r.text("amp", applies ? c.options.amp : "off");
  r.text("channels_last", applies && c.options.channels_last ? "on" : "off");
  r.text("tf32", tf32_state(c));
  r.text("cuda_graphs", applies && c.options.cuda_graphs ? "on" : "off");
  r.text("cudnn_benchmark", c.options.cudnn_benchmark ? "on" : "off");
  r.text("cudnn_fusion", applies && c.options.cudnn_fusion ? "on" : "off");
}

void print_precision(const Context& c, bool applies) {
  fmt::print("  precision: amp {}, channels-last {}, tf32 {}\n", applies ? c.options.amp : "off",
             applies && c.options.channels_last ? "on" : "off", tf32_state(c));
}

void reset_peak(const Context& c) {
#if TRIDENT_BENCH_CUDA
  if (c.dev.cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(c.dev.device.index() < 0 ? 0 : c.dev.device.index());
#else
  (void)c;
#endif
}

void add_memory(Record& r, const Context& c) {
  r.figure("peak_rss_mb", proc_status_mb("VmHWM"));
  r.figure("base_rss_mb", c.base_rss_mb);
#if TRIDENT_BENCH_CUDA
  if (c.dev.cuda()) {
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(c.dev.device.index() < 0 ? 0 : c.dev.device.index());
    r.figure("cuda_peak_allocated_mb", static_cast<double>(stats.allocated_bytes[0].peak) / (1024.0 * 1024.0));
    r.figure("cuda_peak_reserved_mb", static_cast<double>(stats.reserved_bytes[0].peak) / (1024.0 * 1024.0));
  }
#endif
}

void print_figures(const Record& r) {
  for (const auto& [k, v] : r.figures) fmt::print("  {:<28} {:>12.4g}\n", k, v);
}

void add_stage_figures(Record& r, const Stages& s) {
  for (const auto& name : s.order) r.figure(name + "_ms", median(s.runs.at(name)));
}

/// Inference per image: the steps of TridentNet::detect replicated with the same library calls, timed stage by
/// stage. So that the work does not depend on the random weights, the first pass takes exactly the post-NMS top-N
/// proposals (300; the RPN's, repeated if its NMS kept fewer) and the second pass describes exactly --detections
/// boxes (the top ones after NMS, repeated if NMS kept fewer). net.detect() itself is timed as well, with the
/// counts the random weights give.
/// The network of the inference cases: the library's options, with --cuda-graphs.
trident::NetOptions infer_options(const Options& o) {
  trident::NetOptions n;
  n.cuda_graphs = o.cuda_graphs;
  return n;
}

/// An inference case's network on the device, in eval() mode, with --fold's batch-norm folding.
void prepare_for_inference(Net& net, const Context& c) {
  net.to(c.dev.device);
  net.eval();
  trident::backbone::set_batch_norm_folding(net, c.options.folding);
  trident::backbone::set_cudnn_epilogue_fusion(c.options.cudnn_fusion);
}

Record run_infer(Context& c, Size size) {
  const auto& o = c.options;
  Net net(infer_options(o));
  prepare_for_inference(net, c);
  at::NoGradGuard no_grad;
  const auto batch = make_batch(1, size, c.dev.device, o.channels_last);
  const Net::Pooler pooler(net.options().pooler);
  const auto& opt = net.options();
  auto& det = net.branch<DetectionBranch>();
  auto& reid = net.branch<ReidBranch>();
  const trident::ops::BoxCoder coder(opt.sampler.box_coder_weights);

  Stages stages;
  const int64_t rois_per_image = opt.rpn.post_nms_top_n_test;
  int64_t proposals = 0, kept_by_nms = 0;
  auto context = [&](const at::Tensor& features, const std::vector<at::Tensor>& boxes, trident::branches::RoiContext& ctx,
                     const std::function<void(const char*)>& lap) {
    ctx.boxes = boxes;
    ctx.pooled = pooler(features, boxes);
    lap("roi_align");
    ctx.g_map = net.head()->forward(ctx.pooled);
    ctx.g_hat = trident::ops::max_pool_strips(ctx.pooled, 1).flatten(1);
    ctx.g = trident::ops::max_pool_strips(ctx.g_map, 1).flatten(1);
    lap("head");
  };
  auto pipeline = [&](bool timed) {
    const Autocast autocast(amp_on(o), amp_dtype(o));  // every stage under --amp
    std::vector<std::pair<std::string, double>> laps;
    c.dev.sync();
    auto t = Clock::now();
    const auto start = t;
    auto lap = [&](const char* name) {
      c.dev.sync();
      laps.emplace_back(name, ms_since(t));
      t = Clock::now();
    };
    const auto features = net.stem()->forward(batch.images);
    lap("stem");
    const auto rpn = net.rpn()->forward(features, batch.sizes);
    lap("rpn");
    // Exactly post-NMS top-N RoIs: the RPN's proposals, repeated if its NMS kept fewer (random weights do).
    const int64_t found = rpn.proposals[0].size(0);
    const std::vector<at::Tensor> rois{cycle_to(rpn.proposals[0], rois_per_image)};
    trident::branches::RoiContext ctx;
    context(features, rois, ctx, lap);
    ctx.detection = det.detect(ctx);
    lap("branches");
    const auto refined = coder.decode(ctx.detection.deltas, rois[0]);
    auto boxes = trident::ops::clip_boxes_to_image(refined, batch.sizes[0][0], batch.sizes[0][1]);
    auto scores = ctx.detection.alpha;
    auto keep = trident::ops::remove_small_boxes(boxes, opt.min_box_size);
    boxes = boxes.index_select(0, keep);
    scores = scores.index_select(0, keep);
    keep = trident::ops::nms(boxes, scores, opt.nms_threshold);
    const int64_t kept = keep.size(0);
    const std::vector<at::Tensor> detected{cycle_to(boxes.index_select(0, keep), o.detections)};
    lap("postprocess");
    trident::branches::RoiContext second;
    context(features, detected, second, [](const char*) {});
    second.detection = det.detect(second);
    trident::branches::RoiOutputs outputs;
    reid.infer(second, outputs);
    lap("describe");
    const double total = ms_since(start);
    if (timed) {
      for (const auto& [name, ms] : laps) stages.add(name, ms);
      stages.add("total", total);
      proposals = found;
      kept_by_nms = kept;
    }
  };
  for (int i = 0; i < o.warmup; ++i) pipeline(false);
  reset_peak(c);
  for (int i = 0; i < o.repeat; ++i) pipeline(true);

  // The library call, as an application makes it.
  std::vector<double> detect_runs;
  int64_t detect_count = 0;
  for (int i = 0; i < o.warmup; ++i) {
    const Autocast autocast(amp_on(o), amp_dtype(o));
    (void)net.detect(batch);
  }
  for (int i = 0; i < o.repeat; ++i) {
    const Autocast autocast(amp_on(o), amp_dtype(o));
    c.dev.sync();
    const auto t0 = Clock::now();
    const auto d = net.detect(batch);
    c.dev.sync();
    detect_runs.push_back(ms_since(t0));
    detect_count = d[0].boxes.size(0);
  }
  int64_t detect_syncs = -1;
  if (c.dev.cuda()) {
    SyncCount count(true);
    const Autocast autocast(amp_on(o), amp_dtype(o));
    (void)net.detect(batch);
    detect_syncs = count.stop();
  }
#if TRIDENT_BENCH_CUDA
  if (o.profile)
    trident_bench::print_kernel_profile(fmt::format("net.detect(), {} batch 1", size.str()), [&] {
      const Autocast autocast(amp_on(o), amp_dtype(o));
      (void)net.detect(batch);
      c.dev.sync();
    });
#endif

  int64_t fh = 0, fw = 0;
  const FlopCount flops = infer_flops(net, size, rois_per_image, o.detections, fh, fw);

  Record r;
  r.name = "infer-" + size.str();
  r.kind = "infer";
  r.text("image", size.str());
  r.text("padded", fmt::format("{}x{}", pad32(size.height), pad32(size.width)));
  r.text("features", fmt::format("{}x{}", fh, fw));
  r.number("batch", 1);
  add_precision(r, c, true);
  add_proposal_info(r, opt);
  add_stage_figures(r, stages);
  r.figure("detect_ms", median(detect_runs));
  r.figure("proposals", static_cast<double>(proposals));
  r.figure("rois", static_cast<double>(rois_per_image));
  r.figure("kept_by_nms", static_cast<double>(kept_by_nms));
  r.figure("described", static_cast<double>(o.detections));
  r.figure("detect_detections", static_cast<double>(detect_count));
  if (detect_syncs >= 0) r.figure("detect_syncs", static_cast<double>(detect_syncs));
  r.figure("gflop", flops.forward / 1e9);
  r.figure("gflops_per_s", flops.forward / 1e9 / (median(stages.runs.at("total")) / 1e3));
  add_memory(r, c);
  fmt::print("\n## {} — {} thread(s), device {}, image {} (padded {}, conv4 {}x{}), batch 1\n", r.name, c.threads,
             c.dev.device.str(), size.str(), fmt::format("{}x{}", pad32(size.height), pad32(size.width)), fh, fw);
  print_precision(c, true);
  print_proposal_counts(opt, false);
  fmt::print("  stage breakdown: RPN kept {} proposals, the first pass takes {} (repeated to the post-NMS top-N) -> "
             "RoIAlign 24x8 + conv5 + detection branch; post-processing (decode, clip, NMS {} kept {}) -> describe "
             "pass on {} boxes (RoIAlign + conv5 + detection + re-id)\n",
             proposals, rois_per_image, opt.nms_threshold, kept_by_nms, o.detections);
  fmt::print("  net.detect(): {} detections (random weights); medians of {} runs after {} warm-up\n", detect_count,
             o.repeat, o.warmup);
  print_figures(r);
  return r;
}

/// Batched inference: `batch_size` images of `size` in one batch through net.detect(), as an application calls it
/// (eval(), no grad, under --amp). The RoI counts are the random weights' (the RPN's NMS and the detector decide),
/// so, as detect_ms of infer-HxW, this is not a like-for-like comparison with the reference; detect_detections
/// (all images) says how many boxes the second pass described.
Record run_infer_batch(Context& c, Size size, int64_t batch_size) {
  const auto& o = c.options;
  Net net(infer_options(o));
  prepare_for_inference(net, c);
  at::NoGradGuard no_grad;
  const auto batch = make_batch(batch_size, size, c.dev.device, o.channels_last);
  const auto& opt = net.options();
  std::vector<double> runs;
  int64_t detections = 0;
  auto once = [&](bool timed) {
    const Autocast autocast(amp_on(o), amp_dtype(o));
    c.dev.sync();
    const auto t0 = Clock::now();
    const auto d = net.detect(batch);
    c.dev.sync();
    const double ms = ms_since(t0);
    if (timed) {
      runs.push_back(ms);
      detections = 0;
      for (const auto& image : d) detections += image.boxes.size(0);
    }
  };
  for (int i = 0; i < o.warmup; ++i) once(false);
  reset_peak(c);
  for (int i = 0; i < o.repeat; ++i) once(true);
#if TRIDENT_BENCH_CUDA
  if (o.profile)
    trident_bench::print_kernel_profile(fmt::format("net.detect(), {} batch {}", size.str(), batch_size),
                                        [&] { once(false); });
#endif

  int64_t fh = pad32(size.height), fw = pad32(size.width);
  (void)stem_flops(*net.stem(), fh, fw);  // conv4's size only
  const double total = median(runs);
  Record r;
  r.name = fmt::format("infer-b{}-{}", batch_size, size.str());
  r.kind = "infer-batch";
  r.text("image", size.str());
  r.text("padded", fmt::format("{}x{}", pad32(size.height), pad32(size.width)));
  r.text("features", fmt::format("{}x{}", fh, fw));
  r.number("batch", static_cast<double>(batch_size));
  add_precision(r, c, true);
  add_proposal_info(r, opt);
  r.figure("total_ms", total);
  r.figure("images_per_s", static_cast<double>(batch_size) / (total / 1e3));
  r.figure("detect_detections", static_cast<double>(detections));
  add_memory(r, c);
  fmt::print("\n## {} — {} thread(s), device {}, batch {} of {} (padded {}x{}, conv4 {}x{}), net.detect()\n", r.name,
             c.threads, c.dev.device.str(), batch_size, size.str(), pad32(size.height), pad32(size.width), fh, fw);
  print_precision(c, true);
  print_proposal_counts(opt, false);
  fmt::print("  net.detect() on the whole batch: {} detections in all (random weights: the RoI counts are the "
             "weights'); medians of {} runs after {} warm-up\n",
             detections, o.repeat, o.warmup);
  print_figures(r);
  return r;
}

/// One training iteration: losses (forward, RPN and RoI sampling included), backward, SGD step.
Record run_train(Context& c, int64_t batch_size) {
  const auto& o = c.options;
  Net net;
  net.to(c.dev.device);
  net.train();
  trident::backbone::set_batch_norm_folding(net, o.folding);
  std::vector<at::Tensor> params;
  for (auto& p : net.parameters())
    if (p.requires_grad()) params.push_back(p);
  // train::fit's optimizer (SGD with multi-tensor updates; the reference's torch.optim.SGD takes its foreach path
  // on CUDA too).
  trident::train::ForeachSgd sgd(params, torch::optim::SGDOptions(0.003).momentum(0.9).weight_decay(5e-4));
  const auto batch = make_batch(batch_size, o.train_size, c.dev.device, o.channels_last);
  const auto targets = make_targets(batch_size, o.train_size, c.dev.device);
  const auto& opt = net.options();

  // Every run starts from the same weights and memory (restored untimed): an untrained network on random
  // pictures would otherwise drift, and its later runs would time other work (or NaNs).
  std::vector<std::pair<at::Tensor, at::Tensor>> initial;
  for (auto& p : net.parameters()) initial.emplace_back(p, p.detach().clone());
  for (auto& b : net.buffers()) initial.emplace_back(b, b.clone());
  // --amp fp16: the trainer's dynamic loss scaling (bfloat16 and float32 need none). Its scale carries over from
  // run to run, as in training; a step whose gradients overflow is skipped (counted in skipped_steps).
  trident::train::GradScaler scaler({}, o.amp == "fp16");
  int64_t skipped = 0;
  Stages stages;
  double loss_value = 0;
  auto step = [&](bool timed) {
    {
      at::NoGradGuard no_grad;
      for (auto& [live, start] : initial) live.copy_(start);
    }
    c.dev.sync();
    const auto t0 = Clock::now();
    sgd.zero_grad();
    trident::LossMap losses;
    {
      const Autocast autocast(amp_on(o), amp_dtype(o));  // the forward under --amp, as train::fit runs it
      losses = net.losses(batch, targets);
    }
    const auto total = losses.total();
    c.dev.sync();
    const double forward = ms_since(t0);
    const auto t1 = Clock::now();
    scaler.scale_loss(total).backward();
    c.dev.sync();
    const double backward = ms_since(t1);
    const auto t2 = Clock::now();
    const bool finite = scaler.unscale(params);  // no-op (true) without loss scaling
    if (finite) sgd.step();
    scaler.update(finite);
    c.dev.sync();
    const double update = ms_since(t2);
    if (timed && !finite) ++skipped;
    loss_value = total.item<double>();
    if (!std::isfinite(loss_value)) {
      std::fprintf(stderr, "bench_network: train-b%lld: the loss is %f\n", static_cast<long long>(batch_size),
                   loss_value);
      std::exit(1);
    }
    if (timed) {
      stages.add("forward", forward);
      stages.add("backward", backward);
      stages.add("step", update);
      stages.add("total", forward + backward + update);
    }
  };
  for (int i = 0; i < o.warmup; ++i) step(false);
  reset_peak(c);
  for (int i = 0; i < o.repeat; ++i) step(true);
  // The synchronisations of one more (untimed) iteration, forward and backward + step apart.
  int64_t forward_syncs = -1, backward_syncs = -1;
  if (c.dev.cuda()) {
    for (auto& [live, start] : initial) {
      at::NoGradGuard no_grad;
      live.copy_(start);
    }
    sgd.zero_grad();
    SyncCount in_forward(true);
    trident::LossMap losses;
    {
      const Autocast autocast(amp_on(o), amp_dtype(o));
      losses = net.losses(batch, targets);
    }
    const auto total = losses.total();
    forward_syncs = in_forward.stop();
    SyncCount in_backward(true);
    scaler.scale_loss(total).backward();
    const bool finite = scaler.unscale(params);
    if (finite) sgd.step();
    backward_syncs = in_backward.stop();
  }
#if TRIDENT_BENCH_CUDA
  if (o.profile)
    trident_bench::print_kernel_profile(fmt::format("training step, batch {} of {}", batch_size, o.train_size.str()),
                                        [&] { step(false); });
#endif

  // RoIs per iteration: the sampler draws batch_size_per_image per image whenever there are that many candidates
  // (2000 proposals + the ground truth), which the RPN's post-NMS top-N always provides at these sizes.
  const double rois = static_cast<double>(batch_size * opt.sampler.batch_size_per_image);
  const FlopCount flops = train_flops(net, o.train_size, batch_size);

  Record r;
  r.name = fmt::format("train-b{}", batch_size);
  r.kind = "train";
  r.text("image", o.train_size.str());
  r.text("padded", fmt::format("{}x{}", pad32(o.train_size.height), pad32(o.train_size.width)));
  r.number("batch", static_cast<double>(batch_size));
  add_precision(r, c, true);
  r.number("loss_scale", scaler.scale());
  r.number("skipped_steps", static_cast<double>(skipped));
  add_proposal_info(r, opt);
  add_stage_figures(r, stages);
  r.figure("sampled_rois", rois);
  r.figure("gflop", (flops.forward + flops.backward) / 1e9);
  r.figure("gflop_forward", flops.forward / 1e9);
  r.figure("gflops_per_s", (flops.forward + flops.backward) / 1e9 / (median(stages.runs.at("total")) / 1e3));
  r.figure("loss", loss_value);
  if (forward_syncs >= 0) {
    r.figure("forward_syncs", static_cast<double>(forward_syncs));
    r.figure("backward_step_syncs", static_cast<double>(backward_syncs));
  }
  add_memory(r, c);
  fmt::print("\n## {} — {} thread(s), device {}, batch {} of {} (padded {}x{}), 5 people per image\n", r.name,
             c.threads, c.dev.device.str(), batch_size, o.train_size.str(), pad32(o.train_size.height),
             pad32(o.train_size.width));
  print_precision(c, true);
  if (scaler.enabled())
    fmt::print("  float16 loss scaling (train::GradScaler): scale {} at the end, {} of {} timed steps skipped\n",
               scaler.scale(), skipped, o.repeat);
  print_proposal_counts(opt, true);
  fmt::print("  SGD lr 0.003, momentum 0.9, weight decay 5e-4 over {} trainable tensors, each run from the same "
             "weights; medians of {} runs after {} warm-up\n",
             params.size(), o.repeat, o.warmup);
  print_figures(r);
  return r;
}

/// One query against N stored unit embeddings of width 256 with detection confidences: search::similarity (the
/// confidence-weighted cosine) and the top-k.
Record run_search(Context& c, int64_t n) {
  const auto& o = c.options;
  at::NoGradGuard no_grad;
  constexpr int64_t dim = ReidBranch::embedding_dim;
  auto gallery = at::randn({n, dim});
  gallery = (gallery / gallery.norm(2, {1}, true)).to(c.dev.device);
  const auto scores = (at::rand({n}) * 0.5 + 0.5).to(c.dev.device);
  auto query = at::randn({1, dim});
  query = (query / query.norm(2, {1}, true)).to(c.dev.device);
  const int64_t k = std::min(o.top_k, n);
  Stages stages;
  auto once = [&](bool timed) {
    c.dev.sync();
    const auto t0 = Clock::now();
    const auto sim = trident::search::similarity(query, gallery, scores);
    c.dev.sync();
    const double t_sim = ms_since(t0);
    const auto t1 = Clock::now();
    const auto top = at::topk(sim, k, 1);
    c.dev.sync();
    const double t_top = ms_since(t1);
    if (timed) {
      stages.add("similarity", t_sim);
      stages.add("topk", t_top);
      stages.add("total", t_sim + t_top);
    }
  };
  for (int i = 0; i < o.warmup; ++i) once(false);
  reset_peak(c);
  for (int i = 0; i < o.repeat; ++i) once(true);
  Record r;
  r.name = fmt::format("search-{}", n);
  r.kind = "search";
  r.number("gallery", static_cast<double>(n));
  r.number("dim", dim);
  r.number("top_k", static_cast<double>(k));
  add_precision(r, c, false);
  add_stage_figures(r, stages);
  add_memory(r, c);
  fmt::print("\n## {} — {} thread(s), device {}, 1 query x {} gallery embeddings of {} floats, top {}\n", r.name,
             c.threads, c.dev.device.str(), n, dim, k);
  print_precision(c, false);
  print_figures(r);
  return r;
}

/// The hardware yardstick: a plain ResNet-50 classification forward (trident's stem + head = torchvision's conv1 ..
/// layer4 on the whole image, global average pool, 1000-way linear) at 224x224.
Record run_resnet50(Context& c) {
  const auto& o = c.options;
  auto stem = trident::backbone::ResNet50::make_stem();
  auto head = trident::backbone::ResNet50::make_head();
  torch::nn::Linear fc(trident::backbone::ResNet50::head_channels, 1000);
  stem->to(c.dev.device), head->to(c.dev.device), fc->to(c.dev.device);
  stem->eval(), head->eval(), fc->eval();
  trident::backbone::set_batch_norm_folding(*stem, o.folding);
  trident::backbone::set_batch_norm_folding(*head, o.folding);
  at::NoGradGuard no_grad;
  auto images = at::randn({o.yardstick_batch, 3, 224, 224}).to(c.dev.device);
  if (o.channels_last) images = images.contiguous(at::MemoryFormat::ChannelsLast);
  std::vector<double> runs;
  auto once = [&](bool timed) {
    const Autocast autocast(amp_on(o), amp_dtype(o));
    c.dev.sync();
    const auto t0 = Clock::now();
    const auto logits = fc(head->forward(stem->forward(images)).mean({2, 3}));
    c.dev.sync();
    if (timed) runs.push_back(ms_since(t0));
  };
  for (int i = 0; i < o.warmup; ++i) once(false);
  reset_peak(c);
  for (int i = 0; i < o.repeat; ++i) once(true);
  int64_t h = 224, w = 224;
  FlopCount flops = stem_flops(*stem, h, w);
  bool grad = false;
  flops += stage_flops(head->layer4, h, w, grad);
  flops += linear_flops(fc, 1, false);
  flops = flops * static_cast<double>(o.yardstick_batch);
  Record r;
  r.name = "resnet50-224";
  r.kind = "resnet50";
  r.text("image", "224x224");
  r.number("batch", static_cast<double>(o.yardstick_batch));
  add_precision(r, c, true);
  r.figure("forward_ms", median(runs));
  r.figure("gflop", flops.forward / 1e9);
  r.figure("gflops_per_s", flops.forward / 1e9 / (median(runs) / 1e3));
  add_memory(r, c);
  fmt::print("\n## {} — {} thread(s), device {}, ResNet-50 classification forward, batch {} of 224x224\n", r.name,
             c.threads, c.dev.device.str(), o.yardstick_batch);
  print_precision(c, true);
  print_figures(r);
  return r;
}

Record run_case(Context& c, const std::string& name) {
  if (name.rfind("infer-b", 0) == 0) {  // infer-bB-HxW
    const auto dash = name.find('-', 7);
    if (dash != std::string::npos)
      return run_infer_batch(c, parse_size("--case", name.substr(dash + 1)),
                             parse_int("--case", name.substr(7, dash - 7), 1));
  }
  if (name.rfind("infer-", 0) == 0) return run_infer(c, parse_size("--case", name.substr(6)));
  if (name.rfind("train-b", 0) == 0) return run_train(c, parse_int("--case", name.substr(7), 1));
  if (name.rfind("search-", 0) == 0) return run_search(c, parse_int("--case", name.substr(7), 1));
  if (name == "resnet50-224") return run_resnet50(c);
  std::fprintf(stderr,
               "bench_network: unknown case '%s' (infer-HxW, infer-bB-HxW, train-bB, search-N, resnet50-224)\n",
               name.c_str());
  std::exit(2);
}

std::vector<std::string> selected_cases(const Options& o) {
  auto wanted = [&](const char* kind) { return std::find(o.only.begin(), o.only.end(), kind) != o.only.end(); };
  std::vector<std::string> out;
  if (wanted("resnet50")) out.push_back("resnet50-224");
  if (wanted("infer"))
    for (const auto& s : o.sizes)
      for (const auto b : o.infer_batches)
        out.push_back(b == 1 ? "infer-" + s.str() : fmt::format("infer-b{}-{}", b, s.str()));
  if (wanted("train"))
    for (auto b : o.batches) out.push_back(fmt::format("train-b{}", b));
  if (wanted("search"))
    for (auto n : o.gallery) out.push_back(fmt::format("search-{}", n));
  return out;
}

std::string header_json(const Context& c) {
  return fmt::format("\"program\": \"trident\", \"libtorch\": \"{}\", \"threads\": {}, \"device\": \"{}\", "
                     "\"repeat\": {}, \"warmup\": {}, \"hardware_threads\": {}, \"amp\": \"{}\", "
                     "\"channels_last\": \"{}\", \"tf32\": \"{}\"",
                     TORCH_VERSION, c.threads, c.dev.device.str(), c.options.repeat, c.options.warmup,
                     std::thread::hardware_concurrency(), c.options.amp, c.options.channels_last ? "on" : "off",
                     tf32_state(c));
}

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  TRIDENT_CHECK(out.good(), "bench_network: could not write {}", path);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

/// Runs `case_name` in a fresh process (this program with --case), returning the JSON object it recorded.
std::string run_child(int argc, char** argv, const std::string& case_name, const std::string& record) {
  std::vector<std::string> args;
  for (int i = 0; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--json" || a == "--case" || a == "--record") {
      ++i;
      continue;
    }
    args.emplace_back(argv[i]);
  }
  args.insert(args.end(), {"--case", case_name, "--record", record});
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid == 0) {
    execv("/proc/self/exe", cargs.data());
    std::perror("bench_network: execv");
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "bench_network: case %s failed (status %d)\n", case_name.c_str(), status);
    return {};
  }
  return read_file(record);
}

}  // namespace

int main(int argc, char** argv) try {
  Context c;
  c.options = parse(argc, argv);
  const auto& o = c.options;
  c.threads = trident::use_all_cores(o.threads);
  if (o.device == "cuda") {
#if TRIDENT_BENCH_CUDA
    TRIDENT_CHECK(torch::cuda::is_available(), "bench_network: --device cuda, but no CUDA device is available");
    c.dev.device = at::Device(at::kCUDA, 0);
    if (o.cudnn_benchmark) at::globalContext().setBenchmarkCuDNN(true);  // process-wide, as --tf32
    if (o.tf32) {  // process-wide; each case's child process sets it again (the flag is passed on)
      at::globalContext().setAllowTF32CuBLAS(true);
      at::globalContext().setAllowTF32CuDNN(true);
    }
#else
    std::fprintf(stderr, "bench_network: --device cuda needs a build against a CUDA LibTorch\n");
    return 2;
#endif
  }
  c.base_rss_mb = proc_status_mb("VmRSS");
  at::manual_seed(0);

  if (o.flops_only) {
    Net net;
    fmt::print("# FLOPs of TridentNet<PaperConfig<CuhkSysu>>: 2 x multiply-adds of its convolutions and fully "
               "connected layers\n");
    for (const auto& size : o.sizes) {
      int64_t fh = 0, fw = 0;
      const auto f = infer_flops(net, size, net.options().rpn.post_nms_top_n_test, o.detections, fh, fw);
      fmt::print("infer {} (padded {}x{}, conv4 {}x{}), {} proposals, {} described: {:.3f} GFLOP per image\n",
                 size.str(), pad32(size.height), pad32(size.width), fh, fw, net.options().rpn.post_nms_top_n_test,
                 o.detections, f.forward / 1e9);
      int64_t h = pad32(size.height), w = pad32(size.width);
      const double stem = stem_flops(*net.stem(), h, w).forward, rpn = rpn_flops(*net.rpn(), h, w, false).forward;
      const double head = head_flops(*net.head(), false).forward;
      fmt::print("  stem (conv1..conv4) {:.3f}, RPN {:.3f}, conv5 per RoI {:.4f} x {} RoIs = {:.3f}, fully connected "
                 "{:.4f} GFLOP\n",
                 stem / 1e9, rpn / 1e9, head / 1e9, net.options().rpn.post_nms_top_n_test + o.detections,
                 head * static_cast<double>(net.options().rpn.post_nms_top_n_test + o.detections) / 1e9,
                 (f.forward - stem - rpn - head * static_cast<double>(net.options().rpn.post_nms_top_n_test + o.detections)) / 1e9);
    }
    for (const auto b : o.batches) {
      const auto f = train_flops(net, o.train_size, b);
      fmt::print("train batch {} of {}, {} RoIs per image: {:.3f} GFLOP forward + {:.3f} backward = {:.3f} GFLOP per "
                 "iteration\n",
                 b, o.train_size.str(), net.options().sampler.batch_size_per_image, f.forward / 1e9, f.backward / 1e9,
                 (f.forward + f.backward) / 1e9);
    }
    return 0;
  }

  if (!o.case_name.empty()) {
    const auto r = run_case(c, o.case_name);
    const std::string obj = r.json();
    if (!o.record.empty()) write_file(o.record, obj);
    if (!o.json.empty()) write_file(o.json, "{" + header_json(c) + ", \"cases\": [" + obj + "]}\n");
    return 0;
  }

  fmt::print("# bench_network: TridentNet<PaperConfig<CuhkSysu>>, LibTorch {}, {} intra-op thread(s) of {} hardware "
             "threads, device {}, {} timed run(s) after {} warm-up per case; each case in a fresh process; amp {}, "
             "channels-last {}, tf32 {}\n",
             TORCH_VERSION, c.threads, std::thread::hardware_concurrency(), c.dev.device.str(), o.repeat, o.warmup,
             o.amp, o.channels_last ? "on" : "off", tf32_state(c));
  std::vector<std::string> objects;
  const std::string record = fmt::format("/tmp/bench_network_{}.json", getpid());
  double yard = 0;
  std::vector<std::pair<std::string, double>> rates;
  for (const auto& name : selected_cases(o)) {
    auto obj = run_child(argc, argv, name, record);
    if (obj.empty()) continue;
    objects.push_back(obj);
    // The child's own figures are printed; pick the GFLOP/s out of its JSON for the summary.
    const auto at = obj.find("\"gflops_per_s\": ");
    if (at != std::string::npos) {
      const double rate = std::stod(obj.substr(at + 16));
      if (name == "resnet50-224") yard = rate;
      else rates.emplace_back(name, rate);
    }
  }
  std::remove(record.c_str());
  if (yard > 0) {
    fmt::print("\n## Efficiency: GFLOP/s as a fraction of the ResNet-50 classification forward ({:.1f} GFLOP/s)\n",
               yard);
    for (const auto& [name, rate] : rates) fmt::print("  {:<20} {:>8.1f} GFLOP/s  {:>6.1f}%\n", name, rate, 100 * rate / yard);
  }
  if (!o.json.empty()) {
    std::string all = "{" + header_json(c) + ", \"cases\": [";
    for (size_t i = 0; i < objects.size(); ++i) all += (i ? ",\n  " : "\n  ") + objects[i];
    write_file(o.json, all + "\n]}\n");
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_network: %s\n", e.what());
  return 1;
}
