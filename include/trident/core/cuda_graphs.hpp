#pragma once
/// \file trident/core/cuda_graphs.hpp
/// trident::CudaGraphs: replays a function of fixed-shape tensors as a CUDA graph, one graph per key and input
/// signature, so that the kernels of a whole stage (the ResNet stem, the RoI head for a fixed number of RoIs)
/// are launched with one call instead of one launch each.
///
///   trident::CudaGraphs graphs;
///   auto out = graphs.run("stem", {images}, [&](const std::vector<at::Tensor>& in) {
///     return std::vector<at::Tensor>{stem->forward(in[0])};
///   });
///
/// The first run of a key with new input shapes (dtypes, strides, device, autocast state) copies the inputs
/// into static tensors, runs the function `warmup` times eagerly on a side stream (cuDNN picks its algorithms,
/// lazily built caches fill), captures one more run into a graph (private memory pool, thread-local capture
/// mode, autocast's weight cache off as capture requires), and replays it. Later runs copy the inputs into the
/// static tensors and replay. The outputs are the graph's static tensors: they hold until the next run of the
/// same key and signature — copy what must outlive it.
///
/// The function must be capturable: no host-device synchronisation, no host work that depends on device data,
/// the same kernels on every call; and every tensor it reads besides its inputs (weights, folded weights) must
/// keep its storage, since the graph reads the addresses it captured (clear() after loading new weights). Where
/// a capture fails (an operation that waits for the device, for example) the key falls back to eager runs and
/// `failures()` says why. Without CUDA (a CPU build of LibTorch: TRIDENT_WITH_CUDA unset, no CUDA toolkit
/// headers, or inputs not on a CUDA device) and with autograd recording, run() simply calls the function.
#include <trident/config.hpp>

#include <ATen/Tensor.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>
#include <torch/version.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

// TRIDENT_WITH_CUDA: set by trident's CMake package where LibTorch was built with CUDA (define it yourself
// elsewhere); TRIDENT_NO_CUDA_GRAPHS leaves the graphs out (run() is then always eager).
#if defined(TRIDENT_WITH_CUDA) && TRIDENT_WITH_CUDA && !defined(TRIDENT_NO_CUDA_GRAPHS) && defined(__has_include)
#if __has_include(<ATen/cuda/CUDAGraph.h>) && __has_include(<cuda_runtime_api.h>) && \
    __has_include(<c10/cuda/CUDAStream.h>) && __has_include(<ATen/cuda/CUDAEvent.h>)
#define TRIDENT_HAS_CUDA_GRAPHS 1
#endif
#endif
#ifndef TRIDENT_HAS_CUDA_GRAPHS
#define TRIDENT_HAS_CUDA_GRAPHS 0
#endif

#if TRIDENT_HAS_CUDA_GRAPHS
#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace trident {

class CudaGraphs {
 public:
  using Function = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;

  /// Whether this build can capture CUDA graphs (a CUDA LibTorch and the CUDA toolkit's headers).
  static constexpr bool available() { return TRIDENT_HAS_CUDA_GRAPHS != 0; }

  explicit CudaGraphs(int warmup = 2) : warmup_(warmup < 1 ? 1 : warmup) {}

  /// fn(inputs), through the graph of `key` where it can be (see the file comment).
  std::vector<at::Tensor> run(const std::string& key, const std::vector<at::Tensor>& inputs, const Function& fn) {
#if TRIDENT_HAS_CUDA_GRAPHS
    if (inputs.empty() || !inputs.front().defined() || !inputs.front().is_cuda() || c10::GradMode::is_enabled())
      return fn(inputs);
    const std::string full_key = key + signature(inputs);
    if (failed_.count(full_key)) return fn(inputs);
    auto found = entries_.find(full_key);
    if (found != entries_.end()) {
      for (size_t i = 0; i < inputs.size(); ++i) found->second.inputs[i].copy_(inputs[i], /*non_blocking=*/true);
      found->second.graph->replay();
      ++replays_;
      return found->second.outputs;
    }
    return capture(full_key, inputs, fn);
#else
    (void)key;
    return fn(inputs);
#endif
  }

  /// Forgets every graph (after the weights were replaced: graphs read the storage they captured).
  void clear() {
#if TRIDENT_HAS_CUDA_GRAPHS
    entries_.clear();
#endif
    failed_.clear();
  }

  /// Graphs captured and held now.
  size_t size() const {
#if TRIDENT_HAS_CUDA_GRAPHS
    return entries_.size();
#else
    return 0;
#endif
  }
  /// Runs served by replaying a graph (captures not counted).
  int64_t replays() const { return replays_; }
  /// Keys whose capture failed (they run eagerly), with the error.
  const std::map<std::string, std::string>& failures() const { return failed_; }

 private:
  /// The part of the key that the inputs and the thread's state decide: shapes, strides, dtypes, device, autocast.
  static std::string signature(const std::vector<at::Tensor>& inputs) {
    std::string s;
    for (const auto& t : inputs) {
      if (!t.defined()) {
        s += "|undefined";
        continue;
      }
      s += fmt::format("|{}:{}:{}:{}", t.device().str(), c10::toString(t.scalar_type()), fmt::join(t.sizes(), "x"),
                       fmt::join(t.strides(), ","));
    }
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    const bool amp = at::autocast::is_autocast_enabled(at::kCUDA);
    const auto amp_dtype = at::autocast::get_autocast_dtype(at::kCUDA);
#else
    const bool amp = at::autocast::is_enabled();
    const auto amp_dtype = at::autocast::get_autocast_gpu_dtype();
#endif
    if (amp) s += fmt::format("|autocast:{}", c10::toString(amp_dtype));
    return s;
  }

#if TRIDENT_HAS_CUDA_GRAPHS
  struct Entry {
    std::vector<at::Tensor> inputs, outputs;
    std::unique_ptr<at::cuda::CUDAGraph> graph;
  };

  /// Restores autocast's weight cache (capture needs it off: cached casts would outlive the graph's pool).
  struct AutocastCacheOff {
    bool previous = at::autocast::is_autocast_cache_enabled();
    AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(false); }
    ~AutocastCacheOff() { at::autocast::set_autocast_cache_enabled(previous); }
  };

  std::vector<at::Tensor> capture(const std::string& full_key, const std::vector<at::Tensor>& inputs,
                                  const Function& fn) {
    const auto device = inputs.front().device();
    const c10::cuda::CUDAGuard device_guard(device);
    Entry e;
    for (const auto& t : inputs) e.inputs.push_back(t.defined() ? t.clone() : t);
    auto current = c10::cuda::getCurrentCUDAStream(device.index());
    auto side = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    at::cuda::CUDAEvent inputs_ready;
    inputs_ready.record(current);
    inputs_ready.block(side);
    std::string error;
    {
      const c10::cuda::CUDAStreamGuard on_side(side);
      const AutocastCacheOff no_cache;
      try {
        for (int i = 0; i < warmup_; ++i) (void)fn(e.inputs);
        e.graph = std::make_unique<at::cuda::CUDAGraph>();
#if TORCH_VERSION_MAJOR >= 2
        e.graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
#else
        e.graph->capture_begin();
#endif
        try {
          e.outputs = fn(e.inputs);
        } catch (...) {
          try {
            e.graph->capture_end();  // ends the stream's capture; fails, as the capture is broken
          } catch (...) {
          }
          throw;
        }
        e.graph->capture_end();
      } catch (const std::exception& ex) {
        error = ex.what();
      }
    }
    at::cuda::CUDAEvent side_done;
    side_done.record(side);
    side_done.block(current);
    if (!error.empty()) {
      (void)cudaGetLastError();  // a failed capture leaves its (non-sticky) error behind
      failed_[full_key] = error.substr(0, error.find('\n'));
      return fn(inputs);
    }
    e.graph->replay();  // the capture recorded the work without running it
    auto& stored = entries_[full_key] = std::move(e);
    return stored.outputs;
  }

  std::map<std::string, Entry> entries_;
#endif
  int warmup_;
  int64_t replays_ = 0;
  std::map<std::string, std::string> failed_;
};

}  // namespace trident
