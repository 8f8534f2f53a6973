#pragma once
// kernel_profile: where a piece of GPU work spends its time, from LibTorch's Kineto profiler (CUPTI): the device
// activities (kernels, copies, memsets) grouped by name with their count and total time, the device's busy time
// against the span from the first to the last activity, and the CUDA runtime calls made from the host (launches,
// synchronisations, copies) grouped the same way. Used by bench_network --profile (GPU builds only).
#include <torch/csrc/autograd/profiler_kineto.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace trident_bench {

struct ActivityTotals {
  int64_t count = 0;
  double ms = 0;
};

/// Runs `work` once under the profiler (the caller synchronises inside it) and prints two markdown tables: the
/// `top` device activities by total time, and the CUDA runtime calls.
inline void print_kernel_profile(const std::string& title, const std::function<void()>& work, int top = 30) {
  namespace prof = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  prof::prepareProfiler(config, activities);
  prof::enableProfiler(config, activities);
  work();
  const auto result = prof::disableProfiler();

  std::map<std::string, ActivityTotals> device, runtime;
  uint64_t first = UINT64_MAX, last = 0;
  double busy = 0;
  int64_t kernels = 0;
  for (const auto& e : result->events()) {
    const double ms = static_cast<double>(e.durationNs()) / 1e6;
    std::string name = e.name();
    if (e.deviceType() == c10::DeviceType::CUDA) {
      if (name.size() > 110) name = name.substr(0, 107) + "...";
      auto& t = device[name];
      ++t.count;
      t.ms += ms;
      busy += ms;
      ++kernels;
      first = std::min<uint64_t>(first, e.startNs());
      last = std::max<uint64_t>(last, e.endNs());
    } else if (name.rfind("cuda", 0) == 0 || name.rfind("cu", 0) == 0) {
      auto& t = runtime[name];
      ++t.count;
      t.ms += ms;
    }
  }
  const double span = last > first ? static_cast<double>(last - first) / 1e6 : 0.0;
  fmt::print("\n### profile: {} — {} device activities, busy {:.3f} ms of a {:.3f} ms span ({:.0f}%)\n\n", title,
             kernels, busy, span, span > 0 ? 100.0 * busy / span : 0.0);
  std::vector<std::pair<std::string, ActivityTotals>> sorted(device.begin(), device.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  fmt::print("| device activity | count | total ms | share |\n|---|---:|---:|---:|\n");
  double shown = 0;
  for (size_t i = 0; i < sorted.size() && i < static_cast<size_t>(top); ++i) {
    fmt::print("| `{}` | {} | {:.3f} | {:.1f}% |\n", sorted[i].first, sorted[i].second.count, sorted[i].second.ms,
               busy > 0 ? 100.0 * sorted[i].second.ms / busy : 0.0);
    shown += sorted[i].second.ms;
  }
  if (sorted.size() > static_cast<size_t>(top))
    fmt::print("| ({} more names) | | {:.3f} | {:.1f}% |\n", sorted.size() - static_cast<size_t>(top), busy - shown,
               busy > 0 ? 100.0 * (busy - shown) / busy : 0.0);
  std::vector<std::pair<std::string, ActivityTotals>> calls(runtime.begin(), runtime.end());
  std::sort(calls.begin(), calls.end(), [](const auto& a, const auto& b) { return a.second.ms > b.second.ms; });
  fmt::print("\n| CUDA runtime call (host) | count | total ms |\n|---|---:|---:|\n");
  for (size_t i = 0; i < calls.size() && i < 12; ++i)
    fmt::print("| `{}` | {} | {:.3f} |\n", calls[i].first, calls[i].second.count, calls[i].second.ms);
  std::fflush(stdout);
}

}  // namespace trident_bench
