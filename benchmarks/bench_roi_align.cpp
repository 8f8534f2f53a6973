// bench_roi_align: RoIAlign at the paper's sizes on one device, every formulation trident has, forward and
// forward + backward, with the peak device memory of each; the numbers behind docs/design.md ("RoIAlign on the
// GPU").
//
//   bench_roi_align [--device cpu|cuda] [--repeat N] [--warmup N] [--threads N] [--dtype float|bfloat16|half]
//                   [--batches 1,4] [--rois 300,128]
//
// Features are conv4 of a 900 x 1500 image padded to 928 x 1504 ([B, 1024, 58, 94], stride 16); RoIs are random
// person-shaped boxes inside the image, RoIAlign 24 x 8, sampling ratio 2 (the paper's pooler). For each batch
// size B and RoIs per image R, the rows are
//   - sampled:  detail::roi_align_sampled_path (grid sampling + average pooling; what ops::roi_align runs on a
//               GPU without NVRTC, with a fixed sampling ratio; no host-device synchronisation)
//   - gather:   detail::roi_align_tensor_path (the gather / contract formulation, grouped by sampling grid; what
//               the GPU ran before, and still runs for an adaptive sampling ratio)
//   - kernel:   what ops::roi_align runs: the direct CPU kernel on the CPU, the NVRTC-compiled CUDA kernels
//               (ops/roi_align_cuda.hpp) on CUDA
// Medians of --repeat after --warmup; on CUDA each run is bracketed by device synchronisation. The output is a
// markdown table.
#include <trident/core/threads.hpp>
#include <trident/ops/roi_align.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randn.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/grad_mode.h>

#if defined(TRIDENT_BENCH_WITH_CUDA) && __has_include(<c10/cuda/CUDACachingAllocator.h>) && \
    __has_include(<torch/cuda.h>)
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#define TRIDENT_BENCH_CUDA 1
#else
#define TRIDENT_BENCH_CUDA 0
#endif

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Options {
  std::string device = "cpu";
  std::string dtype = "float";
  int repeat = 10;
  int warmup = 3;
  int threads = 0;
  std::vector<int64_t> batches{1, 4};
  std::vector<int64_t> rois{300, 128};
};

[[noreturn]] void usage(std::FILE* to, int code) {
  std::fputs(
      "usage: bench_roi_align [options]\n"
      "  --device cpu|cuda        (default cpu; cuda needs a CUDA build of LibTorch)\n"
      "  --dtype float|bfloat16|half   the features' dtype (RoIs and positions stay float32)\n"
      "  --repeat N               timed runs per row, median reported (default 10)\n"
      "  --warmup N               untimed runs first (default 3)\n"
      "  --threads N              CPU threads (default: TRIDENT_NUM_THREADS, else all)\n"
      "  --batches B,...          images per batch (default 1,4)\n"
      "  --rois R,...             RoIs per image (default 300,128: inference proposals, training samples)\n",
      to);
  std::exit(code);
}

std::vector<int64_t> parse_list(const std::string& s, const char* flag) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (item.empty() || *end != '\0' || v <= 0) {
      std::fprintf(stderr, "bench_roi_align: %s takes positive integers separated by commas, got '%s'\n", flag,
                   s.c_str());
      std::exit(2);
    }
    out.push_back(v);
  }
  return out;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "bench_roi_align: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--device") o.device = value();
    else if (a == "--dtype") o.dtype = value();
    else if (a == "--repeat") o.repeat = std::max(1, std::atoi(value().c_str()));
    else if (a == "--warmup") o.warmup = std::max(0, std::atoi(value().c_str()));
    else if (a == "--threads") o.threads = std::atoi(value().c_str());
    else if (a == "--batches") o.batches = parse_list(value(), "--batches");
    else if (a == "--rois") o.rois = parse_list(value(), "--rois");
    else if (a == "-h" || a == "--help") usage(stdout, 0);
    else {
      std::fprintf(stderr, "bench_roi_align: unknown argument '%s'\n", argv[i]);
      usage(stderr, 2);
    }
  }
  if (o.device != "cpu" && o.device != "cuda") {
    std::fprintf(stderr, "bench_roi_align: --device must be cpu or cuda, got '%s'\n", o.device.c_str());
    std::exit(2);
  }
  if (o.dtype != "float" && o.dtype != "bfloat16" && o.dtype != "half") {
    std::fprintf(stderr, "bench_roi_align: --dtype must be float, bfloat16 or half, got '%s'\n", o.dtype.c_str());
    std::exit(2);
  }
  return o;
}

void sync(const at::Device& d) {
#if TRIDENT_BENCH_CUDA
  if (d.is_cuda()) torch::cuda::synchronize();
#else
  (void)d;
#endif
}

void reset_peak(const at::Device& d) {
#if TRIDENT_BENCH_CUDA
  if (d.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(d.has_index() ? d.index() : 0);
#else
  (void)d;
#endif
}

/// Peak bytes allocated on the device since reset_peak, in MiB (-1 on the CPU).
double peak_mb(const at::Device& d) {
#if TRIDENT_BENCH_CUDA
  if (d.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(d.has_index() ? d.index() : 0);
    return static_cast<double>(
               stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak) /
           (1024.0 * 1024.0);
  }
#else
  (void)d;
#endif
  return -1.0;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// Person-shaped boxes (about 2.5 : 1) inside a height x width image, with their image index in column 0.
at::Tensor person_rois(int64_t batch, int64_t per_image, int64_t height, int64_t width, const at::Device& device) {
  const auto n = batch * per_image;
  const auto h = 40.0 + at::rand({n, 1}, at::kDouble) * 500.0;
  const auto w = h * (0.3 + at::rand({n, 1}, at::kDouble) * 0.2);
  const auto x1 = at::rand({n, 1}, at::kDouble) * (static_cast<double>(width) - w);
  const auto y1 = at::rand({n, 1}, at::kDouble) * (static_cast<double>(height) - h);
  std::vector<at::Tensor> images;
  for (int64_t b = 0; b < batch; ++b) images.push_back(at::full({per_image, 1}, static_cast<double>(b), at::kDouble));
  return at::cat({at::cat(images, 0), x1, y1, x1 + w, y1 + h}, 1).to(at::kFloat).to(device);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  trident::use_all_cores(o.threads);
  const at::Device device(o.device == "cuda" ? at::kCUDA : at::kCPU);
#if !TRIDENT_BENCH_CUDA
  if (device.is_cuda()) {
    std::fprintf(stderr, "bench_roi_align: this build has no CUDA support (LibTorch without CUDA)\n");
    return 2;
  }
#endif
  const auto dtype = o.dtype == "float" ? at::kFloat : o.dtype == "bfloat16" ? at::kBFloat16 : at::kHalf;
  const trident::ops::RoiAlignParams p{24, 8, 1.0 / 16.0, 2, false};
  const int64_t channels = 1024, fh = 58, fw = 94, image_h = 900, image_w = 1500;
  at::manual_seed(0);

  fmt::print("# bench_roi_align: device {}, features {} [B, {}, {}, {}] (900 x 1500 padded to 928 x 1504), RoIAlign "
             "{} x {}, scale 1/16, sampling ratio {}; medians of {} after {} warm-up\n\n",
             device.str(), o.dtype, channels, fh, fw, p.output_h, p.output_w, p.sampling_ratio, o.repeat, o.warmup);
  fmt::print("| path | images | RoIs | forward ms | forward + backward ms | peak MiB (fwd+bwd) |\n");
  fmt::print("|---|---:|---:|---:|---:|---:|\n");

  using Pool = std::function<at::Tensor(const at::Tensor&, const at::Tensor&)>;
  std::vector<std::pair<std::string, Pool>> paths{
      {"sampled", [&](const at::Tensor& x, const at::Tensor& r) {
         return trident::ops::detail::roi_align_sampled_path(x, r, p);
       }},
      {"gather", [&](const at::Tensor& x, const at::Tensor& r) {
         return trident::ops::detail::roi_align_tensor_path(x, r, p);
       }}};
  // ops::roi_align: the CPU kernel on the CPU, the NVRTC kernels on CUDA (where they are available).
  std::string why;
  if (!device.is_cuda() || trident::CudaJit::available(&why))
    paths.emplace_back("kernel", [&](const at::Tensor& x, const at::Tensor& r) {
      return trident::ops::roi_align(x, r, {p.output_h, p.output_w}, p.spatial_scale, p.sampling_ratio, p.aligned);
    });
  else
    fmt::print("(no kernel row: the CUDA kernels are not available: {})\n\n", why);

  for (const int64_t batch : o.batches) {
    for (const int64_t per_image : o.rois) {
      const auto features = at::randn({batch, channels, fh, fw}, at::TensorOptions().dtype(dtype).device(device))
                                .contiguous(at::MemoryFormat::ChannelsLast);  // a folded stem's layout
      const auto rois = person_rois(batch, per_image, image_h, image_w, device);
      for (const auto& [name, pool] : paths) {
        std::vector<double> forward, both;
        double peak = -1.0;
        try {
          const auto grad_out = at::randn({batch * per_image, channels, p.output_h, p.output_w}, features.options());
          for (int i = 0; i < o.warmup + o.repeat; ++i) {
            {
              at::NoGradGuard no_grad;
              sync(device);
              const auto t0 = std::chrono::steady_clock::now();
              const auto y = pool(features, rois);
              sync(device);
              const auto t1 = std::chrono::steady_clock::now();
              if (i >= o.warmup) forward.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
            }
            const auto leaf = features.detach().requires_grad_(true);
            if (i == o.warmup + o.repeat - 1) reset_peak(device);
            sync(device);
            const auto t0 = std::chrono::steady_clock::now();
            const auto y = pool(leaf, rois);
            const auto g = torch::autograd::grad({y}, {leaf}, {grad_out})[0];
            sync(device);
            if (i >= o.warmup)
              both.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
            if (i == o.warmup + o.repeat - 1) peak = peak_mb(device);
          }
        } catch (const std::exception& e) {
          fmt::print("| {} | {} | {} | failed: {} | | |\n", name, batch, per_image,
                     std::string(e.what()).substr(0, 200));
          continue;
        }
        fmt::print("| {} | {} | {} | {:.3f} | {:.3f} | {} |\n", name, batch, batch * per_image, median(forward),
                   median(both), peak < 0 ? std::string("-") : fmt::format("{:.0f}", peak));
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
