#pragma once
/// \file trident/distributed/process_group.hpp
/// The processes of a data-parallel run, over LibTorch's distributed engine c10d: a TCPStore for the rendezvous
/// (hosted by rank 0) and ProcessGroupGloo on the CPU or ProcessGroupNCCL on CUDA for the collectives. This is
/// the implementation of core/data_parallel.hpp's DataParallelGroup that train::fit uses
/// (TrainerOptions::group).
///
///   auto env = distributed::LaunchEnvironment::from_environment();   // torchrun's / SLURM's variables
///   auto group = distributed::join(env, {.device = c10::kCPU});       // every process calls it
///   options.group = group;                                            // then train::fit as usual
///
/// Start-up refuses, with a message naming the variable and the value: a missing or malformed variable, a rank
/// outside the world, two processes claiming one rank, processes that disagree on the world size (compared
/// through the store before any collective). Faults while training: every collective is bounded by
/// `GroupOptions::timeout`. When one fails (a process died: its connections close at once; a process hangs: the
/// timeout), the survivors meet in the store for `GroupOptions::grace` and the error names the ranks that did not
/// come, with any message a failing process left there (DataParallelGroup::abandon). If rank 0, which hosts the
/// store, is the one that died, the error says so.
///
/// Needs c10d's headers: Gloo's (Debian's libgloo-dev; pip's LibTorch ships none, but the Debian headers serve,
/// see docs/toolchains.md) for the CPU, nccl.h for CUDA. TRIDENT_WITH_GLOO / TRIDENT_WITH_NCCL (1 or 0) say which
/// are compiled in: Gloo where its headers are found, NCCL where CMake found nccl.h (CMakeLists.txt); a group
/// without its backend is refused by join() with a message naming what to install.
#include <trident/config.hpp>
#include <trident/core/data_parallel.hpp>

#ifndef TRIDENT_WITH_GLOO
#if __has_include(<gloo/context.h>)
#define TRIDENT_WITH_GLOO 1
#else
#define TRIDENT_WITH_GLOO 0
#endif
#endif
#ifndef TRIDENT_WITH_NCCL
#define TRIDENT_WITH_NCCL 0
#endif
#if TRIDENT_WITH_GLOO && !defined(USE_C10D_GLOO)
#define USE_C10D_GLOO 1  // what LibTorch's own build defines; its header declares the group only with it
#endif
#if TRIDENT_WITH_NCCL && !defined(USE_C10D_NCCL)
#define USE_C10D_NCCL 1
#endif

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>  // and, in LibTorch 2.x, Backend.hpp
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#if TRIDENT_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#if TRIDENT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#include <torch/version.h>

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace trident::distributed {

/// Where this process stands in a launch: what torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
/// or SLURM (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, with MASTER_ADDR and MASTER_PORT set by the job script)
/// tells it.
struct LaunchEnvironment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;  ///< the processes of this machine (torchrun's LOCAL_WORLD_SIZE; 1 when not given)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source = "defaults";  ///< "torchrun", "SLURM" or "defaults" (one process)
  /// torchrun's agent already hosts a store at MASTER_ADDR:MASTER_PORT (TORCHELASTIC_USE_AGENT_STORE=True): every
  /// process, rank 0 included, joins it as a client.
  bool agent_store = false;
  /// Names this attempt of the run in the store (torchrun: TORCHELASTIC_RUN_ID and TORCHELASTIC_RESTART_COUNT),
  /// so that a restarted attempt does not meet the keys of the previous one.
  std::string attempt = "0";

  /// The device of this process for `requested`: with several processes, "cuda" without an index becomes
  /// cuda:LOCAL_RANK (one GPU per process); anything else as it is.
  c10::Device device_for(c10::Device requested) const {
    if (requested.is_cuda() && !requested.has_index() && world_size > 1)
      return c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(local_rank));
    return requested;
  }

  /// The intra-op threads of this process when `cores` are shared by the processes of this machine (at least 1).
  int threads_from(int cores) const { return std::max(1, cores / local_world_size); }

  /// A launcher's variables, torchrun's first, then SLURM's; none: one process (rank 0 of 1).
  static LaunchEnvironment from_environment() {
    static constexpr const char* caller = "trident::distributed::LaunchEnvironment";
    const auto get = [](const char* name) -> std::optional<std::string> {
      const char* v = std::getenv(name);
      return v && *v ? std::optional<std::string>(v) : std::nullopt;
    };
    const auto integer = [&](const char* name, int low, int high) {
      const auto v = get(name);
      TRIDENT_CHECK(v.has_value(), "{}: the environment variable {} is not set", caller, name);
      char* end = nullptr;
      errno = 0;
      const long n = std::strtol(v->c_str(), &end, 10);
      TRIDENT_CHECK(errno == 0 && end != v->c_str() && *end == '\0' && n >= low && n <= high,
                    "{}: the environment variable {} must be an integer in [{}, {}], got '{}'", caller, name, low,
                    high, *v);
      return static_cast<int>(n);
    };
    LaunchEnvironment env;
    if (get("WORLD_SIZE") || get("RANK")) {
      env.source = "torchrun";
      env.world_size = integer("WORLD_SIZE", 1, 1 << 20);
      env.rank = integer("RANK", 0, 1 << 20);
      env.local_rank = get("LOCAL_RANK") ? integer("LOCAL_RANK", 0, 1 << 20) : 0;
      env.local_world_size = get("LOCAL_WORLD_SIZE") ? integer("LOCAL_WORLD_SIZE", 1, 1 << 20) : 1;
    } else if (get("SLURM_NTASKS") && get("SLURM_PROCID")) {
      env.source = "SLURM";
      env.world_size = integer("SLURM_NTASKS", 1, 1 << 20);
      env.rank = integer("SLURM_PROCID", 0, 1 << 20);
      env.local_rank = get("SLURM_LOCALID") ? integer("SLURM_LOCALID", 0, 1 << 20) : 0;
    } else {
      return env;
    }
    env.agent_store = get("TORCHELASTIC_USE_AGENT_STORE").value_or("") == "True";
    env.attempt = get("TORCHELASTIC_RUN_ID").value_or("run") + "/" + get("TORCHELASTIC_RESTART_COUNT").value_or("0");
    TRIDENT_CHECK(env.rank < env.world_size, "{}: rank {} (from {}) lies outside the world of {} processes", caller,
                  env.rank, env.source, env.world_size);
    if (env.world_size > 1) {
      const auto addr = get("MASTER_ADDR");
      TRIDENT_CHECK(addr.has_value(), "{}: {} processes need MASTER_ADDR (the host of rank 0) in the environment",
                    caller, env.world_size);
      env.master_addr = *addr;
      env.master_port = integer("MASTER_PORT", 1, 65535);
    }
    return env;
  }
};

/// How the group behaves.
struct GroupOptions {
  /// Where the training runs: CPU tensors go through Gloo, CUDA tensors through NCCL (or Gloo, see backend).
  c10::Device device = c10::kCPU;
  /// "auto" (NCCL for CUDA, Gloo for the CPU), "gloo" or "nccl".
  std::string backend = "auto";
  /// The longest any collective (and the rendezvous) may take before the processes give up.
  std::chrono::milliseconds timeout = std::chrono::minutes(10);
  /// After a failed collective, how long the survivors wait for each other in the store to find who is missing.
  std::chrono::milliseconds grace = std::chrono::seconds(3);
};

namespace detail {

#if TORCH_VERSION_MAJOR >= 2
using Backend = c10d::Backend;
#else
using Backend = c10d::ProcessGroup;
#endif

inline std::string store_text(const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); }
inline std::vector<uint8_t> store_bytes(std::string_view s) { return std::vector<uint8_t>(s.begin(), s.end()); }

}  // namespace detail

/// A DataParallelGroup over a c10d backend (see the file comment). Made by join().
class C10dGroup : public DataParallelGroup {
 public:
  C10dGroup(c10::intrusive_ptr<c10d::Store> store, c10::intrusive_ptr<detail::Backend> backend, std::string name,
            int rank, int size, c10::Device device, GroupOptions options)
      : store_(std::move(store)), backend_(std::move(backend)), name_(std::move(name)), rank_(rank), size_(size),
        device_(device), options_(std::move(options)) {}

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string describe() const override {
    return fmt::format("rank {} of {} (c10d {})", rank_, size_, name_);
  }

  void all_reduce_sum(std::vector<at::Tensor>& tensors) override { all_reduce_sum_async(tensors)(); }

  // c10d's collectives take one tensor per device of a process: each of `tensors` is a collective of its own
  // (all started, then waited for).
  std::function<void()> all_reduce_sum_async(std::vector<at::Tensor>& tensors) override {
    auto staged = stage(tensors);
    c10d::AllreduceOptions opts;
    opts.reduceOp = c10d::ReduceOp::SUM;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : staged) {
      std::vector<at::Tensor> one{t};
      works.push_back(run("all-reduce", [&] { return backend_->allreduce(one, opts); }));
    }
    return [this, works, staged, tensors]() mutable {
      for (const auto& w : works) wait("all-reduce", w);
      unstage(staged, tensors);
    };
  }

  std::vector<at::Tensor> all_gather(const at::Tensor& tensor) override {
    std::vector<at::Tensor> input{on_device(tensor.contiguous())};
    std::vector<std::vector<at::Tensor>> output(1);
    for (int r = 0; r < size_; ++r) output[0].push_back(at::empty_like(input[0]));
    auto work = run("all-gather", [&] { return backend_->allgather(output, input); });
    wait("all-gather", work);
    if (tensor.device() != input[0].device())
      for (auto& t : output[0]) t = t.to(tensor.device());
    return output[0];
  }

  void broadcast(std::vector<at::Tensor>& tensors, int root) override {
    auto staged = stage(tensors);
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (auto& t : staged) {
      std::vector<at::Tensor> one{t};
      works.push_back(run("broadcast", [&] { return backend_->broadcast(one, opts); }));
    }
    for (const auto& w : works) wait("broadcast", w);
    unstage(staged, tensors);
  }

  /// Leaves `why` in the store for the others' error messages (a process that stops on its own error).
  void abandon(const std::string& why) override {
    try {
      store_->set(fmt::format("abandoned/{}", rank_), detail::store_bytes(why.substr(0, 2000)));
      store_->set(fmt::format("failed/{}", rank_), detail::store_bytes("1"));
    } catch (const std::exception&) {
      // the store may be gone with rank 0; the others will find out by themselves
    }
  }

  std::vector<Timing> timings() const override {
    const std::lock_guard<std::mutex> lock(timing_mutex_);
    std::vector<Timing> out;
    for (const auto& [kind, t] : timings_) out.push_back({kind, t.first, t.second});
    return out;
  }

  c10d::Store& store() { return *store_; }
  const GroupOptions& options() const { return options_; }

 private:
  /// The tensors as the backend takes them: contiguous, on the group's device for NCCL.
  std::vector<at::Tensor> stage(const std::vector<at::Tensor>& tensors) const {
    std::vector<at::Tensor> out;
    for (const auto& t : tensors) out.push_back(on_device(t));
    return out;
  }
  at::Tensor on_device(const at::Tensor& t) const {
    return (name_ == "nccl" && t.device() != device_ ? t.to(device_) : t).contiguous();
  }
  static void unstage(const std::vector<at::Tensor>& staged, std::vector<at::Tensor>& tensors) {
    for (size_t i = 0; i < tensors.size(); ++i)
      if (!staged[i].is_same(tensors[i])) tensors[i].copy_(staged[i]);
  }

  template <class Start>
  c10::intrusive_ptr<c10d::Work> run(const char* what, Start&& start) {
    try {
      return start();
    } catch (const std::exception& e) {
      failed(what, e);
    }
  }
  void wait(const char* what, const c10::intrusive_ptr<c10d::Work>& work) {
    const auto start = std::chrono::steady_clock::now();
    try {
      work->wait(options_.timeout);
    } catch (const std::exception& e) {
      failed(what, e);
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const std::lock_guard<std::mutex> lock(timing_mutex_);
    auto& t = timings_[what];
    t.first += 1;
    t.second += seconds;
  }

  /// Meets the other survivors in the store and throws an error naming the processes that did not come.
  [[noreturn]] void failed(const char* what, const std::exception& cause) {
    std::string cause_text = cause.what();
    if (const auto line = cause_text.find('\n'); line != std::string::npos) cause_text.resize(line);
    std::string finding;
    try {
      store_->set(fmt::format("failed/{}", rank_), detail::store_bytes("1"));
      const auto deadline = std::chrono::steady_clock::now() + options_.grace;
      std::vector<int> missing;
      for (;;) {
        missing.clear();
        for (int r = 0; r < size_; ++r)
          if (r != rank_ && !store_->check({fmt::format("failed/{}", r)})) missing.push_back(r);
        if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
      for (int r = 0; r < size_; ++r) {
        const auto key = fmt::format("abandoned/{}", r);
        if (r != rank_ && store_->check({key}))
          finding += fmt::format("; rank {} stopped: {}", r, detail::store_text(store_->get(key)));
      }
      if (!missing.empty()) {
        std::string ranks;
        for (const int r : missing) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
        finding += fmt::format("; rank{} {} did not answer within {} ms (died or hung)", missing.size() > 1 ? "s" : "",
                               ranks, options_.grace.count());
      }
    } catch (const std::exception&) {
      finding = "; rank 0, which hosts the rendezvous store, is unreachable (it died or hung)";
    }
    fail("{}: the {} failed{}: {}", describe(), what, finding, cause_text);
  }

  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<detail::Backend> backend_;
  std::string name_;
  int rank_, size_;
  c10::Device device_;
  GroupOptions options_;
  mutable std::mutex timing_mutex_;
  std::map<std::string, std::pair<int64_t, double>> timings_;  ///< per kind: waits, seconds waited
};

/// Whether this build can make a group for `backend` ("gloo" or "nccl").
inline bool backend_available(std::string_view backend) {
  return (TRIDENT_WITH_GLOO && backend == "gloo") || (TRIDENT_WITH_NCCL && backend == "nccl");
}

/// Joins the group of the launch `env` (every process calls it; rank 0 hosts the store). Checks the world size
/// and the ranks through the store first (see the file comment).
inline std::shared_ptr<C10dGroup> join(const LaunchEnvironment& env, GroupOptions options = {}) {
  static constexpr const char* caller = "trident::distributed::join";
  std::string backend = options.backend;
  if (backend == "auto") backend = options.device.is_cuda() ? "nccl" : "gloo";
  TRIDENT_CHECK(backend == "gloo" || backend == "nccl", "{}: the backend must be auto, gloo or nccl, got '{}'", caller,
                backend);
  TRIDENT_CHECK(backend_available(backend),
                "{}: this build has no c10d {} backend ({}; docs/training.md, \"Several processes\")", caller, backend,
                backend == "gloo" ? "Gloo's headers were not found: install libgloo-dev"
                                  : "NCCL needs a CUDA LibTorch and nccl.h");
  TRIDENT_CHECK(backend != "nccl" || options.device.is_cuda(), "{}: NCCL needs a CUDA device, the device is {}",
                caller, options.device.str());
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(env.master_port);
  so.isServer = env.rank == 0 && !env.agent_store;
  so.numWorkers = static_cast<size_t>(env.world_size);
  so.waitWorkers = false;
  so.timeout = options.timeout;
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::PrefixStore>(
        "trident/" + env.attempt, c10::make_intrusive<c10d::TCPStore>(env.master_addr, so));
  } catch (const std::exception& e) {
    fail("{}: rank {}: cannot {} the rendezvous store at {}:{} ({}): {}", caller, env.rank,
         so.isServer ? "open" : "reach", env.master_addr, env.master_port, env.source, e.what());
  }
  // The world size and the ranks, before any collective (a mismatch would otherwise hang in the first one).
  try {
    const auto claims = store->add(fmt::format("rank/{}", env.rank), 1);
    TRIDENT_CHECK(claims == 1, "{}: two processes were started as rank {} (from {})", caller, env.rank, env.source);
    store->set(fmt::format("world/{}", env.rank), detail::store_bytes(std::to_string(env.world_size)));
    const auto root_world = detail::store_text(store->get("world/0"));
    // Rank 0 hosts the store: it must not stop (and take the store with it) before this rank has read rank 0's
    // world size, or this rank would see a broken connection instead of the mismatch.
    if (env.rank != 0) store->set(fmt::format("world-read/{}", env.rank), detail::store_bytes("1"));
    TRIDENT_CHECK(root_world == std::to_string(env.world_size),
                  "{}: rank {} was started with a world of {} processes, rank 0 with {} (from {})", caller, env.rank,
                  env.world_size, root_world, env.source);
    if (env.rank == 0)
      for (int r = 1; r < env.world_size; ++r) {
        const auto world = detail::store_text(store->get(fmt::format("world/{}", r)));
        if (world != std::to_string(env.world_size)) {
          try {  // let rank r read world/0 and name the mismatch itself (bounded: it may be gone)
            store->wait({fmt::format("world-read/{}", r)},
                        std::min(options.timeout, std::chrono::milliseconds(10000)));
          } catch (const std::exception&) {
          }
          fail("{}: rank {} was started with a world of {} processes, rank 0 with {} (from {})", caller, r, world,
               env.world_size, env.source);
        }
      }
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("{}: rank {}: the rendezvous at {}:{} did not complete within {} ms (are all {} processes started?): {}",
         caller, env.rank, env.master_addr, env.master_port, options.timeout.count(), env.world_size, e.what());
  }
  auto prefixed = c10::make_intrusive<c10d::PrefixStore>("c10d", store);
  c10::intrusive_ptr<detail::Backend> pg;
  try {
#if TRIDENT_WITH_GLOO
    if (backend == "gloo") {
      auto o = c10d::ProcessGroupGloo::Options::create();
      o->timeout = options.timeout;
      // The network interface: GLOO_SOCKET_IFNAME as in PyTorch; the loopback when the store is on this machine's
      // loopback (every process is local: --nproc, the tests); else the one the host name resolves to.
      const bool local = env.master_addr == "127.0.0.1" || env.master_addr == "localhost";
      if (const char* iface = std::getenv("GLOO_SOCKET_IFNAME"); iface && *iface)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(iface));
      else if (local)
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, env.rank, env.world_size, o);
    }
#endif
#if TRIDENT_WITH_NCCL
    if (backend == "nccl") {
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = options.timeout;
      pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(prefixed, env.rank, env.world_size, o);
    }
#endif
  } catch (const std::exception& e) {
    fail("{}: rank {}: c10d's {} group did not form: {}", caller, env.rank, backend, e.what());
  }
  TRIDENT_CHECK(pg, "{}: no {} backend in this build", caller, backend);
  return std::make_shared<C10dGroup>(store, pg, backend, env.rank, env.world_size, options.device, options);
}

}  // namespace trident::distributed
