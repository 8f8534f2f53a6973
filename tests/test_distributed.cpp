// Data-parallel training over c10d (Gloo on the CPU): the batch-wide means, the gathered memory update and the
// gradient buckets against one process's whole batch (threads of one process, each a rank of a real Gloo
// group), then whole training runs in several processes (this executable started again as workers,
// support/workers.hpp): 2 ranks x 2 images against 1 rank x 4, a resume on another world size, a rank killed,
// processes started with different configurations.
#include "support/fixtures.hpp"
#include "support/workers.hpp"

#include <trident/data/toy_scenes.hpp>
#include <trident/distributed/launch.hpp>
#include <trident/distributed/process_group.hpp>
#include <trident/losses/reid.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/equal.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <signal.h>

#include <chrono>
#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

using namespace trident;
namespace fs = std::filesystem;

namespace {

/// Runs fn(rank, group) on `n` threads, each joined to one Gloo group of n ranks over a local TCPStore; returns
/// each rank's exception message ("" when it returned).
template <class Fn>
std::vector<std::string> run_ranks(int n, Fn&& fn, std::vector<int> worlds = {}, bool agent_store = false,
                                   int port = 0) {
  if (port == 0) port = distributed::free_port();
  std::vector<std::string> errors(static_cast<size_t>(n));
  std::vector<std::thread> threads;
  for (int r = 0; r < n; ++r)
    threads.emplace_back([&, r] {
      try {
        distributed::LaunchEnvironment env;
        env.rank = r;
        env.world_size = worlds.empty() ? n : worlds[static_cast<size_t>(r)];
        env.master_port = port;
        env.agent_store = agent_store;
        distributed::GroupOptions o;
        o.timeout = std::chrono::seconds(20);
        auto group = distributed::join(env, o);
        fn(r, *group);
      } catch (const std::exception& e) {
        errors[static_cast<size_t>(r)] = e.what();
        if (errors[static_cast<size_t>(r)].empty()) errors[static_cast<size_t>(r)] = "(empty message)";
      }
    });
  for (auto& t : threads) t.join();
  return errors;
}

std::string distributed_dir(const std::string& name) { return test::fresh_folder("distributed", name).string(); }

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---------------------------------------------------------------------------------------------------------------
// The worker: trains the small configuration on generated scenes as one rank of the launch in its environment.
// ---------------------------------------------------------------------------------------------------------------

using DistNet = TridentNet<SmallConfig<8, 64>>;

/// The small configuration with frozen batch norms (so that a batch split over processes normalises as the
/// whole batch does) and plain re-id embeddings; few proposals: a fast test.
NetOptions dist_options() {
  NetOptions o = small_net_options();
  o.stem.norm = backbone::BatchNormMode::frozen;
  o.branches.reid_embedding_norm = false;
  o.rpn.pre_nms_top_n_train = 300;
  o.rpn.post_nms_top_n_train = 64;
  o.sampler.batch_size_per_image = 32;
  return o;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::stoll(v) : fallback;
}

/// A source that misbehaves when asked for batch `at` (counted in this run) as TRIDENT_TEST_FAULT says: "die"
/// kills its own process (SIGKILL, no goodbye), "hang" sleeps for an hour, "nan" returns pictures of NaN.
struct FaultySource {
  train::InMemorySource inner;
  std::string fault;
  int64_t at = -1;
  int64_t served = 0;
  int64_t batches_per_epoch() const { return inner.batches_per_epoch(); }
  void seek(int64_t e, int64_t b) { inner.seek(e, b); }
  train::Batch next() {
    auto batch = inner.next();
    if (served++ != at) return batch;
    if (fault == "die") ::raise(SIGKILL);
    if (fault == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
    if (fault == "nan") batch.images.images = batch.images.images.clone().fill_(std::nan(""));
    return batch;
  }
};

TRIDENT_TEST_WORKER("train") {
  at::set_num_threads(1);
  const auto env = distributed::LaunchEnvironment::from_environment();
  const std::string out = std::getenv("TRIDENT_TEST_OUT");
  const auto rank_file = [&](const std::string& stem) {
    return (fs::path(out) / fmt::format("{}-rank{}", stem, env.rank)).string();
  };
  try {
    train::TrainerOptions o;
    if (env.world_size > 1) {
      distributed::GroupOptions g;
      g.timeout = std::chrono::milliseconds(env_int("TRIDENT_TEST_TIMEOUT_MS", 60000));
      g.grace = std::chrono::milliseconds(1000);
      o.group = distributed::join(env, g);
    }
    at::manual_seed(99);
    const auto scenes = data::make_toy_scenes(8, 2, 4, 128, 192, 11);
    const char* fault = std::getenv("TRIDENT_TEST_FAULT");
    FaultySource source{train::InMemorySource(train::split_into_batches(scenes.batch, scenes.targets, 4),
                                              /*shuffle=*/true, /*seed=*/3, train::Shard{env.rank, env.world_size}),
                        fault ? fault : "",
                        env_int("TRIDENT_TEST_FAULT_RANK", -1) == env.rank ? env_int("TRIDENT_TEST_FAULT_AT", -1) : -1};
    o.epochs = 2;  // 2 global batches of 4 per epoch: 4 iterations
    o.schedule.warmup_iterations = 2;
    o.schedule.milestones = {1};
    o.clip_grad_norm = 10.0;
    o.seed = env_int("TRIDENT_TEST_SEED", 7);
    if (env.rank == 1) o.seed = env_int("TRIDENT_TEST_SEED_RANK1", o.seed);
    o.print_every = 0;
    o.out_dir = out;
    o.max_iterations = env_int("TRIDENT_TEST_MAX_ITERATIONS", -1);
    o.resume = env_int("TRIDENT_TEST_RESUME", 0) != 0;
    o.bucket_bytes = 256 << 10;  // several buckets even for the small network
    at::manual_seed(static_cast<uint64_t>(o.seed) + static_cast<uint64_t>(env.rank) * 1000);  // rank 0's wins
    DistNet net(dist_options());
    const auto summary = train::fit(net, source, o);
    // What the comparisons read: parameters, buffers (the re-id memory among them) and momentum buffers.
    torch::serialize::OutputArchive ar, model_ar;
    net.save(model_ar);
    ar.write("model", model_ar);
    ar.write("iterations", c10::IValue(summary.iterations));
    ar.save_to(rank_file("state") + ".pt");
    return 0;
  } catch (const std::exception& e) {
    std::ofstream(rank_file("error") + ".txt") << e.what();
    throw;
  }
}

/// Starts the worker as `processes` ranks with `env` added; returns the launch's result.
distributed::LocalLaunchResult launch(int processes, const std::string& out,
                                      std::vector<std::pair<std::string, std::string>> env = {},
                                      std::chrono::milliseconds stop_after = std::chrono::seconds(60)) {
  distributed::LocalLaunchOptions o;
  o.processes = processes;
  o.stop_after = stop_after;
  o.environment = std::move(env);
  o.environment.emplace_back("TRIDENT_TEST_WORKER", "train");
  o.environment.emplace_back("TRIDENT_TEST_OUT", out);
  o.environment.emplace_back("OMP_NUM_THREADS", "1");
  return distributed::launch_local({distributed::this_program()}, o);
}

/// The parameters and buffers a worker saved.
std::map<std::string, at::Tensor> saved_state(const std::string& out, int rank) {
  torch::serialize::InputArchive ar, model_ar;
  ar.load_from((fs::path(out) / fmt::format("state-rank{}.pt", rank)).string());
  REQUIRE(ar.try_read("model", model_ar));
  DistNet net(dist_options());
  net.load(model_ar);
  std::map<std::string, at::Tensor> out_state;
  for (const auto& item : net.named_parameters()) out_state[item.key()] = item.value().detach().clone();
  for (const auto& item : net.named_buffers()) out_state[item.key()] = item.value().clone();
  return out_state;
}

/// The checkpoint's momentum buffers, keyed by parameter name (loaded into a fresh network and optimizer).
std::map<std::string, at::Tensor> saved_momentum(const std::string& out) {
  DistNet net(dist_options());
  const auto params = train::detail::trainable(net);
  train::ForeachSgd sgd(params, torch::optim::SGDOptions(0.1).momentum(0.9));
  train::load_checkpoint((fs::path(out) / "checkpoint.pt").string(), net, sgd);
  std::map<std::string, at::Tensor> m;
  for (const auto& item : net.named_parameters())
    if (item.value().requires_grad()) m[item.key()] = sgd.momentum_buffer(item.value());
  return m;
}

/// The largest absolute difference of two states over their common keys (relative to the largest magnitude in
/// `a` when `relative`).
double largest_difference(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                          std::string* where = nullptr, bool relative = false) {
  double worst = 0;
  for (const auto& [k, v] : a) {
    const auto found = b.find(k);
    REQUIRE_MESSAGE(found != b.end(), k);
    if (!v.defined() && !found->second.defined()) continue;
    REQUIRE_MESSAGE((v.defined() && found->second.defined()), k);
    const double d = test::max_abs_diff(v, found->second);
    if (d > worst) {
      worst = d;
      if (where) *where = k;
    }
  }
  if (relative) {
    double scale = 1e-12;
    for (const auto& [k, v] : a)
      if (v.defined() && v.numel() > 0) scale = std::max(scale, v.abs().max().item<double>());
    worst /= scale;
  }
  return worst;
}

/// The tests that need a Gloo group are skipped where this build has none (pip's LibTorch without Debian's
/// libgloo-dev, e.g. on the GPU machine: docs/toolchains.md).
const auto no_gloo = doctest::skip(!distributed::backend_available("gloo"));

}  // namespace

TEST_CASE("data parallel: batch_mean, batch_sum and gather_rows over 2 Gloo ranks equal one process's whole batch" * no_gloo) {
  // Rank 0 holds 3 rows, rank 1 holds 5; a shared parameter w scores each row as (x . w)^2. The mean over all 8
  // rows is the loss of the whole batch; its gradient in closed form is (2 / 8) sum_i (x_i . w) x_i.
  const auto x = at::randn({8, 4}, at::kDouble);
  const auto w0 = at::randn({4}, at::kDouble), v0 = at::randn({3}, at::kDouble);
  const std::vector<int64_t> first{0, 3}, count{3, 5};
  const auto s = x.matmul(w0);
  const auto expected_grad = (2.0 / 8.0) * (s.unsqueeze(1) * x).sum(0);
  std::vector<at::Tensor> grads(2), grads_v(2), gathered(2), sums(2);
  std::vector<double> losses(2);
  const auto errors = run_ranks(2, [&](int r, DataParallelGroup& group) {
    const auto mine = x.narrow(0, first[r], count[r]);
    auto w = w0.clone().set_requires_grad(true), v = v0.clone().set_requires_grad(true);
    train::GradientBuckets buckets(group, {w, v}, /*bucket_bytes=*/32);  // w and v in two buckets
    CHECK(buckets.bucket_count() == 2);
    const DataParallelScope scope(&group, 0, 0, first[r]);
    // v gets a gradient on rank 1 only: the other rank contributes zeros, so its mean is half of rank 1's.
    const auto loss = batch_mean(mine.matmul(w).pow(2).sum(), at::scalar_tensor(count[r], at::kLong)) +
                      (r == 1 ? v.sum() : (v * 0).sum().detach());
    buckets.arm();
    loss.backward();
    buckets.finish();
    grads[r] = w.grad().clone();
    grads_v[r] = v.grad().clone();
    losses[r] = loss.item<double>();
    gathered[r] = gather_rows(mine);
    sums[r] = batch_sum(at::scalar_tensor(static_cast<double>(r + 1), at::kDouble));
  });
  REQUIRE(errors[0].empty());
  REQUIRE(errors[1].empty());
  for (int r = 0; r < 2; ++r) {
    CHECK(test::max_abs_diff(grads[r], expected_grad) < 1e-12);
    CHECK(test::max_abs_diff(grads_v[r], at::full({3}, 0.5, at::kDouble)) < 1e-12);
    CHECK(at::equal(gathered[r], x));  // both ranks' rows, in rank order
    CHECK(sums[r].item<double>() == 3.0);
  }
  // Each rank's loss is its share of the whole batch's mean: their mean is that mean (v's terms aside).
  CHECK((losses[0] + losses[1] - 0.0 - v0.sum().item<double>()) / 2 ==
        doctest::Approx(s.pow(2).mean().item<double>()).epsilon(1e-12));
}

TEST_CASE("data parallel: the re-id loss of a batch split over 2 ranks is the whole batch's, value and gradient" * no_gloo) {
  // Labeled, unlabeled and background rows on both ranks, more labeled ones on rank 1: every mean of Eq. (6) and
  // S-bar (Eq. 10) must span both ranks. Rank r's gradient of its own rows, divided by the 2 processes (the
  // all-reduce's mean), is the whole batch's gradient of those rows.
  const int64_t lut = 5, queue = 4;
  const auto scores = at::rand({10, lut + queue}, at::kDouble) * 2 - 1;
  const auto labels = at::tensor({0L, -1L, -2L, 3L, 1L, 1L, -1L, 4L, 2L, -1L}, at::kLong);
  const auto alpha = at::rand({10}, at::kDouble);
  const std::vector<int64_t> first{0, 4}, count{4, 6};
  auto whole_scores = scores.clone().set_requires_grad(true);
  const auto whole = losses::reid_loss(whole_scores, labels, alpha, lut);
  whole.total.backward();
  std::vector<losses::ReidLossTerms> terms(2);
  std::vector<at::Tensor> grads(2);
  const auto errors = run_ranks(2, [&](int r, DataParallelGroup& group) {
    const DataParallelScope scope(&group, 0, 0, first[r]);
    auto mine = scores.narrow(0, first[r], count[r]).clone().set_requires_grad(true);
    terms[r] = losses::reid_loss(mine, labels.narrow(0, first[r], count[r]), alpha.narrow(0, first[r], count[r]), lut);
    terms[r].total.backward();
    grads[r] = mine.grad();
  });
  REQUIRE(errors[0].empty());
  REQUIRE(errors[1].empty());
  for (const auto& [name, part] : std::vector<std::pair<std::string, at::Tensor losses::ReidLossTerms::*>>{
           {"id", &losses::ReidLossTerms::id}, {"bin", &losses::ReidLossTerms::bin},
           {"un", &losses::ReidLossTerms::un}, {"total", &losses::ReidLossTerms::total}}) {
    const double mean = ((terms[0].*part).item<double>() + (terms[1].*part).item<double>()) / 2;
    CHECK_MESSAGE(mean == doctest::Approx((whole.*part).item<double>()).epsilon(1e-12), name);
  }
  for (int r = 0; r < 2; ++r)
    CHECK(terms[r].mean_positive.item<double>() == doctest::Approx(whole.mean_positive.item<double>()).epsilon(1e-12));
  const auto split = at::cat({grads[0], grads[1]}) / 2.0;
  CHECK(test::max_abs_diff(split, whole_scores.grad()) < 1e-12);
}

TEST_CASE("data parallel: processes that disagree on the world size are refused before any collective" * no_gloo) {
  const auto errors = run_ranks(2, [](int, DataParallelGroup&) {}, /*worlds=*/{2, 3});
  CHECK(errors[0].find("rank 1 was started with a world of 3 processes, rank 0 with 2") != std::string::npos);
  CHECK(errors[1].find("rank 1 was started with a world of 3 processes, rank 0 with 2") != std::string::npos);
}

TEST_CASE("data parallel: under torchrun's agent store, every rank joins it as a client" * no_gloo) {
  // torchrun's agent hosts a TCPStore at MASTER_ADDR:MASTER_PORT and tells its workers so
  // (TORCHELASTIC_USE_AGENT_STORE=True): rank 0 must not open a second one on the same port.
  const int port = distributed::free_port();
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(port);
  so.isServer = true;
  so.waitWorkers = false;
  const auto agent = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", so);
  std::vector<double> sums(2);
  const auto errors = run_ranks(
      2,
      [&](int r, DataParallelGroup& group) {
        std::vector<at::Tensor> t{at::full({1}, static_cast<double>(r + 1), at::kDouble)};
        group.all_reduce_sum(t);
        sums[static_cast<size_t>(r)] = t[0].item<double>();
      },
      {}, /*agent_store=*/true, port);
  CHECK(errors[0].empty());
  CHECK(errors[1].empty());
  CHECK(sums[0] == 3.0);
  CHECK(sums[1] == 3.0);
  CHECK(agent->check({"trident/0/world/1"}));  // the ranks' keys are in the agent's store, under the attempt
}

TEST_CASE("data parallel: launch variables are read as torchrun and SLURM set them, and bad ones are named") {
  const auto with = [](std::vector<std::pair<const char*, const char*>> vars, auto&& fn) {
    const char* names[] = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS",
                           "SLURM_PROCID", "SLURM_LOCALID", "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RUN_ID",
                           "TORCHELASTIC_RESTART_COUNT"};
    std::vector<std::pair<std::string, std::string>> saved;
    for (const char* n : names) {
      if (const char* v = std::getenv(n)) saved.emplace_back(n, v);
      ::unsetenv(n);
    }
    for (const auto& [n, v] : vars) ::setenv(n, v, 1);
    fn();
    for (const char* n : names) ::unsetenv(n);
    for (const auto& [n, v] : saved) ::setenv(n.c_str(), v.c_str(), 1);
  };
  with({}, [] {
    const auto env = distributed::LaunchEnvironment::from_environment();
    CHECK(env.world_size == 1);
    CHECK(env.rank == 0);
  });
  with({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.2"}, {"MASTER_PORT", "29400"}},
       [] {
         const auto env = distributed::LaunchEnvironment::from_environment();
         CHECK(env.source == "torchrun");
         CHECK(env.rank == 3);
         CHECK(env.world_size == 4);
         CHECK(env.local_rank == 1);
         CHECK(env.master_addr == "10.0.0.2");
         CHECK(env.master_port == 29400);
         CHECK_FALSE(env.agent_store);
       });
  with({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "29500"},
        {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RUN_ID", "job7"}, {"TORCHELASTIC_RESTART_COUNT", "2"}},
       [] {
         const auto env = distributed::LaunchEnvironment::from_environment();
         CHECK(env.agent_store);
         CHECK(env.attempt == "job7/2");
       });
  with({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"}, {"MASTER_ADDR", "node1"},
        {"MASTER_PORT", "12000"}},
       [] {
         const auto env = distributed::LaunchEnvironment::from_environment();
         CHECK(env.source == "SLURM");
         CHECK(env.rank == 5);
         CHECK(env.world_size == 8);
       });
  with({{"RANK", "4"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}, [] {
    CHECK_THROWS_WITH(distributed::LaunchEnvironment::from_environment(),
                      doctest::Contains("rank 4 (from torchrun) lies outside the world of 4 processes"));
  });
  with({{"RANK", "0"}, {"WORLD_SIZE", "two"}}, [] {
    CHECK_THROWS_WITH(distributed::LaunchEnvironment::from_environment(),
                      doctest::Contains("WORLD_SIZE must be an integer in [1, 1048576], got 'two'"));
  });
  with({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "29500"}}, [] {
    CHECK_THROWS_WITH(distributed::LaunchEnvironment::from_environment(), doctest::Contains("need MASTER_ADDR"));
  });
}

TEST_CASE("data parallel: 2 ranks x 2 images train as 1 rank x 4 (weights, momentum, re-id memory); resume on 1 rank" * no_gloo) {
  // The small configuration with frozen batch norms, 4 iterations of SGD with momentum, warm-up, a milestone and
  // clipping. The 1-rank run is the plain single-process trainer. Tolerance: float32 sums in another order (the
  // gradient all-reduce, per-process batches through the convolutions): 1e-4 after 4 steps (measured: 6e-6),
  // where other random samples change the weights by far more (the control run with another seed, below).
  const auto one = distributed_dir("one_rank");
  const auto two = distributed_dir("two_ranks");
  const auto resumed = distributed_dir("two_then_one");
  const auto r1 = launch(1, one);
  REQUIRE_MESSAGE(r1.exit_code() == 0, read_text(fs::path(one) / "error-rank0.txt"));
  const auto r2 = launch(2, two);
  REQUIRE_MESSAGE(r2.exit_code() == 0, read_text(fs::path(two) / "error-rank0.txt"),
                  read_text(fs::path(two) / "error-rank1.txt"));
  const auto a = saved_state(one, 0), b0 = saved_state(two, 0), b1 = saved_state(two, 1);
  // The ranks end bit-identical: the same averaged gradients, the same memory updates.
  std::string where;
  CHECK_MESSAGE(largest_difference(b0, b1, &where) == 0.0, where);
  const double d = largest_difference(a, b0, &where);
  MESSAGE("largest difference of 1 rank x 4 and 2 ranks x 2 after 4 iterations: ", d, " (", where, ")");
  CHECK(d < 1e-4);
  for (const char* key : {"reid.memory.lookup_table.features", "reid.memory.queue.features"}) {
    REQUIRE(a.count(key) == 1);
    CHECK_MESSAGE(a.at(key).abs().sum().item<double>() > 0, key);  // the memory was written
    CHECK_MESSAGE(test::max_abs_diff(a.at(key), b0.at(key)) < 1e-4, key);
  }
  CHECK(at::equal(a.at("reid.memory.queue.head"), b0.at("reid.memory.queue.head")));
  // The momentum buffers (sums of the gradients so far), relative to the largest of them: 2e-7 after one
  // iteration (float32 noise), 1.1e-3 after four (measured): a float-level difference can flip a discrete choice
  // (a proposal at the NMS or top-n boundary) and move a few gradients; tolerance 1e-2, against 0.5 and more
  // for the control below.
  const double dm = largest_difference(saved_momentum(one), saved_momentum(two), &where, /*relative=*/true);
  MESSAGE("momentum buffers: largest relative difference ", dm, " (", where, ")");
  CHECK(dm < 1e-2);
  // The control: the same single-process run with other samples (another seed) ends far outside the tolerance.
  const auto other = distributed_dir("one_rank_other_seed");
  REQUIRE(launch(1, other, {{"TRIDENT_TEST_SEED", "8"}}).exit_code() == 0);
  const double control = largest_difference(a, saved_state(other, 0));
  const double control_momentum = largest_difference(saved_momentum(one), saved_momentum(other), nullptr, true);
  MESSAGE("the control's largest differences: ", control, ", momentum ", control_momentum);
  CHECK(control > 100 * 1e-4);
  CHECK(control_momentum > 10 * 1e-2);
  // Only rank 0 writes the checkpoint and the log.
  CHECK(fs::exists(fs::path(two) / "checkpoint.pt"));
  CHECK(fs::exists(fs::path(two) / "train_log.csv"));

  // 2 ranks for 2 iterations, then 1 rank resumes from their checkpoint and finishes: the same 4 iterations.
  const auto first_half = launch(2, resumed, {{"TRIDENT_TEST_MAX_ITERATIONS", "2"}});
  REQUIRE_MESSAGE(first_half.exit_code() == 0, read_text(fs::path(resumed) / "error-rank0.txt"));
  const auto second_half = launch(1, resumed, {{"TRIDENT_TEST_RESUME", "1"}});
  REQUIRE_MESSAGE(second_half.exit_code() == 0, read_text(fs::path(resumed) / "error-rank0.txt"));
  const double dr = largest_difference(a, saved_state(resumed, 0), &where);
  MESSAGE("largest difference of 1 rank x 4 and (2 ranks, then 1 rank resumed): ", dr, " (", where, ")");
  CHECK(dr < 1e-4);
}

TEST_CASE("data parallel: a rank killed mid-run stops the other within the time limit, naming it; the checkpoint stays" * no_gloo) {
  const auto out = distributed_dir("killed");
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  // Rank 1 dies (SIGKILL) when it asks for its third batch; a checkpoint is written every iteration by rank 0.
  const auto r = launch(2, out, {{"TRIDENT_TEST_FAULT", "die"}, {"TRIDENT_TEST_FAULT_RANK", "1"},
                                 {"TRIDENT_TEST_FAULT_AT", "2"}, {"TRIDENT_TEST_TIMEOUT_MS", "20000"}});
  const double seconds = std::chrono::duration<double>(clock::now() - start).count();
  CHECK(r.exit_codes[1] == 128 + SIGKILL);
  CHECK(r.exit_codes[0] == 1);
  CHECK(seconds < 60);  // the others stop by themselves (the launcher's backstop would start at 60 s)
  const auto message = read_text(fs::path(out) / "error-rank0.txt");
  MESSAGE("rank 0 said: ", message);
  CHECK(message.find("training stopped at iteration 2") != std::string::npos);
  CHECK(message.find("rank 1 did not answer") != std::string::npos);
  // The checkpoint of the first epoch's end (iteration 2) is whole and loads.
  CHECK(test::partial_files(out).empty());
  DistNet net(dist_options());
  train::ForeachSgd sgd(train::detail::trainable(net), torch::optim::SGDOptions(0.1).momentum(0.9));
  CHECK(train::load_checkpoint((fs::path(out) / "checkpoint.pt").string(), net, sgd).iteration == 2);
}

TEST_CASE("data parallel: a rank that hangs stops the other after the collective timeout, naming it" * no_gloo) {
  const auto out = distributed_dir("hung");
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  // Rank 1 sleeps for an hour at its second batch; rank 0's next collective gives up after 5 s (the timeout), it
  // waits 1 s for the others in the store, names rank 1 and exits; the launcher then stops rank 1 (SIGTERM).
  const auto r = launch(2, out, {{"TRIDENT_TEST_FAULT", "hang"}, {"TRIDENT_TEST_FAULT_RANK", "1"},
                                 {"TRIDENT_TEST_FAULT_AT", "1"}, {"TRIDENT_TEST_TIMEOUT_MS", "5000"}},
                        std::chrono::seconds(2));
  const double seconds = std::chrono::duration<double>(clock::now() - start).count();
  CHECK(r.first_failed == 0);
  CHECK(r.exit_codes[0] == 1);
  CHECK(r.exit_codes[1] == 128 + SIGTERM);
  CHECK(seconds < 30);
  const auto message = read_text(fs::path(out) / "error-rank0.txt");
  MESSAGE("rank 0 said: ", message);
  CHECK(message.find("training stopped at iteration 1") != std::string::npos);
  CHECK(message.find("rank 1 did not answer") != std::string::npos);
}

TEST_CASE("data parallel: a loss that diverges on one rank stops every rank, naming it and the iteration" * no_gloo) {
  const auto out = distributed_dir("diverged");
  const auto r = launch(2, out, {{"TRIDENT_TEST_FAULT", "nan"}, {"TRIDENT_TEST_FAULT_RANK", "1"},
                                 {"TRIDENT_TEST_FAULT_AT", "3"}});
  CHECK(r.exit_codes[0] == 1);
  CHECK(r.exit_codes[1] == 1);
  for (int rank = 0; rank < 2; ++rank) {
    const auto message = read_text(fs::path(out) / fmt::format("error-rank{}.txt", rank));
    MESSAGE("rank ", rank, " said: ", message);
    CHECK(message.find("training diverged at iteration 3 (epoch 2)") != std::string::npos);
    // Rank 1's pictures are NaN; the whole batch's statistics carry it to rank 0's losses too.
    CHECK(message.find("nan on rank 1") != std::string::npos);
  }
  // The checkpoint of the first epoch (iteration 2) stays the last one.
  DistNet net(dist_options());
  train::ForeachSgd sgd(train::detail::trainable(net), torch::optim::SGDOptions(0.1).momentum(0.9));
  CHECK(train::load_checkpoint((fs::path(out) / "checkpoint.pt").string(), net, sgd).iteration == 2);
}

TEST_CASE("data parallel: processes started with different configurations are refused with the difference named" * no_gloo) {
  const auto out = distributed_dir("mismatch");
  const auto r = launch(2, out, {{"TRIDENT_TEST_SEED", "7"}, {"TRIDENT_TEST_SEED_RANK1", "8"}});
  CHECK(r.exit_codes[0] == 1);
  CHECK(r.exit_codes[1] == 1);
  for (int rank = 0; rank < 2; ++rank) {
    const auto message = read_text(fs::path(out) / fmt::format("error-rank{}.txt", rank));
    CHECK_MESSAGE(message.find("were started with different configurations") != std::string::npos, message);
    CHECK_MESSAGE(message.find("rank 1 has seed = 8, rank 0 has 7") != std::string::npos, message);
  }
  CHECK_FALSE(fs::exists(fs::path(out) / "checkpoint.pt"));
}
