// bench_data_parallel: images/s of data-parallel training (train::fit over c10d, Gloo on the CPU) for several
// process counts on this machine, and what the collectives cost per iteration: the gradient all-reduce's exposed
// wait (after the backward pass, what the overlap did not hide), the waits of every all-reduce (gradient buckets
// and the batch-wide loss counts), of the all-gathers (the re-id memory's rows, the loss values) and broadcasts.
//
//   bench_data_parallel [--processes 1,2] [--iterations 30] [--warmup 5] [--batch 4] [--threads 0]
//                       [--height 192] [--width 320] [--device cpu]
//
// The small configuration (SmallCpuConfig, small_net_options(): trainable batch norms) on generated scenes held in
// memory (3 people each), global batch --batch split over the processes; the cores (--threads, 0: all) are
// shared out among the processes. Images/s count the iterations after --warmup, from rank 0's training log.
// Prints a markdown table.
#include <trident/core/threads.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/distributed/launch.hpp>
#include <trident/distributed/process_group.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/trainer.hpp>

#include <fmt/format.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Args {
  std::vector<int> processes = {1, 2};
  int64_t iterations = 30, warmup = 5, batch = 4, height = 192, width = 320;
  int threads = 0;
  std::string device = "cpu";
};

[[noreturn]] void usage(const std::string& message) {
  std::fprintf(stderr,
               "bench_data_parallel: %s\nusage: bench_data_parallel [--processes 1,2] [--iterations 30] "
               "[--warmup 5] [--batch 4] [--threads 0] [--height 192] [--width 320] [--device cpu]\n",
               message.c_str());
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    if (i + 1 >= argc) usage("missing value after " + k);
    const std::string v = argv[++i];
    try {
      if (k == "--processes") {
        a.processes.clear();
        std::stringstream s(v);
        for (std::string item; std::getline(s, item, ',');) a.processes.push_back(std::stoi(item));
      } else if (k == "--iterations") {
        a.iterations = std::stoll(v);
      } else if (k == "--warmup") {
        a.warmup = std::stoll(v);
      } else if (k == "--batch") {
        a.batch = std::stoll(v);
      } else if (k == "--threads") {
        a.threads = std::stoi(v);
      } else if (k == "--height") {
        a.height = std::stoll(v);
      } else if (k == "--width") {
        a.width = std::stoll(v);
      } else if (k == "--device") {
        a.device = v;
      } else {
        usage("unknown option " + k);
      }
    } catch (const std::logic_error&) {
      usage("bad value '" + v + "' for " + k);
    }
  }
  if (a.processes.empty() || a.iterations <= a.warmup || a.warmup < 1 || a.batch < 1) usage("bad sizes");
  return a;
}

/// One rank of a measured run: trains, and rank 0 writes "key value" lines to $BENCH_OUT/result.txt.
int worker(const Args& a) {
  const auto env = trident::distributed::LaunchEnvironment::from_environment();
  const std::string out = std::getenv("BENCH_OUT");
  trident::use_all_cores(
      env.threads_from(a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency())));
  trident::train::TrainerOptions o;
  o.device = env.device_for(c10::Device(a.device));  // one GPU per process
  if (env.world_size > 1) {
    trident::distributed::GroupOptions g;
    g.device = o.device;
    o.group = trident::distributed::join(env, g);
  }
  at::manual_seed(3);
  const auto scenes = trident::data::make_toy_scenes(static_cast<int>(a.batch * 8), 3, 32, a.height, a.width, 17);
  trident::train::InMemorySource source(trident::train::split_into_batches(scenes.batch, scenes.targets, a.batch),
                                        /*shuffle=*/true, /*seed=*/5,
                                        trident::train::Shard{env.rank, env.world_size});
  at::manual_seed(1);
  trident::TridentNet<trident::SmallCpuConfig> net(trident::small_net_options());
  o.optimizer = trident::train::OptimizerKind::adamw;
  o.schedule.base_lr = 1e-3;
  o.epochs = 1 + a.iterations / source.batches_per_epoch();
  o.max_iterations = a.iterations;
  o.clip_grad_norm = 10;
  o.print_every = 0;
  o.out_dir = out;
  const auto summary = trident::train::fit(net, source, o);
  if (env.rank != 0) return 0;
  trident::train::TrainingLog log(out, a.iterations + 1);
  const auto& rows = log.rows();
  const double measured = rows.back().seconds - rows[static_cast<size_t>(a.warmup - 1)].seconds;
  const double iterations = static_cast<double>(a.iterations - a.warmup);
  std::ofstream r((std::filesystem::path(out) / "result.txt").string());
  r << "images_per_second " << iterations * static_cast<double>(a.batch) / measured << "\n";
  r << "ms_per_iteration " << 1000 * measured / iterations << "\n";
  double parameters = 0;
  for (const auto& p : net.parameters())
    if (p.requires_grad()) parameters += static_cast<double>(p.numel());
  r << "parameters " << parameters << "\n";
  r << "gradient_wait_ms " << 1000 * summary.gradient_wait_seconds / static_cast<double>(a.iterations) << "\n";
  if (o.group)
    for (const auto& t : o.group->timings()) {
      std::string kind = t.kind;
      for (auto& c : kind)
        if (c == '-') c = '_';
      r << kind << "_ms " << 1000 * t.seconds / static_cast<double>(a.iterations) << "\n";
      r << kind << "_calls " << static_cast<double>(t.calls) / static_cast<double>(a.iterations) << "\n";
    }
  return r ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    if (std::getenv("BENCH_OUT") != nullptr) return worker(a);
    const auto root = std::filesystem::temp_directory_path() / "trident_bench_data_parallel";
    const int cores = a.threads > 0 ? a.threads : static_cast<int>(std::thread::hardware_concurrency());
    fmt::print("small configuration, global batch {} of {} x {} scenes, {} iterations after {} warm-up, {} cores, "
               "device {}\n\n",
               a.batch, a.height, a.width, a.iterations - a.warmup, a.warmup, cores, a.device);
    fmt::print("| processes | threads each | images/s | ms/iteration | gradient all-reduce, exposed ms/it | "
               "all-reduce waits ms/it (calls) | all-gather waits ms/it (calls) | broadcast waits ms/it |\n");
    fmt::print("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    double parameters = 0;
    for (const int n : a.processes) {
      const auto out = root / std::to_string(n);
      std::filesystem::remove_all(out);
      std::filesystem::create_directories(out);
      std::vector<std::string> args{trident::distributed::this_program()};
      for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
      trident::distributed::LocalLaunchOptions lo;
      lo.processes = n;
      lo.environment = {{"BENCH_OUT", out.string()}, {"OMP_WAIT_POLICY", "PASSIVE"}};
      const auto result = trident::distributed::launch_local(args, lo);
      if (result.exit_code() != 0) {
        std::fprintf(stderr, "bench_data_parallel: rank %d of the %d-process run failed\n", result.first_failed, n);
        return 1;
      }
      std::map<std::string, double> v;
      std::ifstream in((out / "result.txt").string());
      for (std::string key; in >> key;) in >> v[key];
      const auto get = [&](const std::string& k) { return v.count(k) ? v[k] : 0.0; };
      parameters = get("parameters");
      fmt::print("| {} | {} | {:.2f} | {:.0f} | {:.1f} | {:.1f} ({:.0f}) | {:.1f} ({:.0f}) | {:.2f} |\n", n,
                 std::max(1, cores / n), get("images_per_second"), get("ms_per_iteration"), get("gradient_wait_ms"),
                 get("all_reduce_ms"), get("all_reduce_calls"), get("all_gather_ms"), get("all_gather_calls"),
                 get("broadcast_ms"));
    }
    fmt::print("\ntrainable parameters: {:.2f} M ({:.1f} MB of float32 gradients to all-reduce per iteration)\n",
               parameters / 1e6, parameters * 4 / 1e6);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data_parallel: %s\n", e.what());
    return 1;
  }
}
