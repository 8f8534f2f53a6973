// Data parallelism on the device under test (docs/cuda-tests.md, "Data parallelism"): a c10d group of one
// process — NCCL on CUDA, Gloo on the CPU stand-in — forms, sums, gathers and broadcasts device tensors, and
// train::fit trains the small configuration through it (the collectives on the training path: batch-wide means,
// the gathered memory update, the gradient buckets) exactly as without it. The multi-process tests are CPU ones
// (tests/test_distributed.cpp, Gloo); a machine with one GPU runs NCCL at world size 1.
#include "cuda_support.hpp"

#include <trident/data/toy_scenes.hpp>
#include <trident/distributed/launch.hpp>
#include <trident/distributed/process_group.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/ones.h>

#include <filesystem>

using namespace trident;

namespace {

/// A group of this one process on `device`: NCCL for CUDA, Gloo for the CPU; empty (the test reported as
/// skipped) when this build has no such backend.
std::shared_ptr<distributed::C10dGroup> group_of_one(const c10::Device& device) {
  const std::string backend = device.is_cuda() ? "nccl" : "gloo";
  if (!distributed::backend_available(backend)) {
    cuda_test::report_skip(fmt::format("this build has no c10d backend for {}", device.str()));
    return nullptr;
  }
  distributed::LaunchEnvironment env;
  env.master_port = distributed::free_port();
  distributed::GroupOptions o;
  o.device = device;
  o.timeout = std::chrono::seconds(60);
  return distributed::join(env, o);
}

}  // namespace

TEST_CASE("data parallelism: a c10d group of one process on the device sums, gathers and broadcasts") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const auto group = group_of_one(device);
  if (!group) return;
  MESSAGE(group->describe());
  std::vector<at::Tensor> t{at::arange(6, at::TensorOptions().dtype(at::kFloat).device(device))};
  group->all_reduce_sum(t);
  cuda_test::check_equal(t[0], at::arange(6, at::TensorOptions().dtype(at::kFloat).device(device)), "all-reduce");
  const auto gathered = group->all_gather(t[0]);
  REQUIRE(gathered.size() == 1);
  cuda_test::check_equal(gathered[0], t[0], "all-gather");
  std::vector<at::Tensor> host{at::ones({3}, at::kLong)};  // a host tensor goes through the device and back
  group->broadcast(host, 0);
  CHECK(host[0].device().is_cpu());
  CHECK(host[0].sum().item<int64_t>() == 3);
}

TEST_CASE("data parallelism: train::fit through a group of one process equals training without it") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const auto group = group_of_one(device);
  if (!group) return;
  using Net = TridentNet<SmallConfig<4, 64>>;
  NetOptions net_options = small_net_options();
  net_options.stem.norm = backbone::BatchNormMode::frozen;
  net_options.rpn.pre_nms_top_n_train = 300;
  net_options.rpn.post_nms_top_n_train = 64;
  net_options.sampler.batch_size_per_image = 32;
  at::manual_seed(99);
  const auto scenes = data::make_toy_scenes(4, 2, 4, 128, 192, 11);
  const auto root = std::filesystem::path(TRIDENT_TEST_TMP_DIR) / "cuda" / "distributed_of_one";
  const auto train_once = [&](std::shared_ptr<DataParallelGroup> g, const std::string& name) {
    train::InMemorySource source(train::split_into_batches(scenes.batch, scenes.targets, 2), true, 3);
    train::TrainerOptions o;
    o.epochs = 2;
    o.seed = 7;
    o.print_every = 0;
    o.device = device;
    o.group = std::move(g);
    o.out_dir = (root / name).string();
    std::filesystem::remove_all(o.out_dir);
    at::manual_seed(7);
    auto net = std::make_shared<Net>(net_options);
    train::fit(*net, source, o);
    return net;
  };
  const auto plain = train_once(nullptr, "plain");
  const auto grouped = train_once(group, "grouped");
  const auto a = plain->named_parameters(), b = grouped->named_parameters();
  for (const auto& item : a)
    cuda_test::check_close(b[item.key()], item.value(), {1e-5, 1e-5}, "parameter " + item.key());
  const auto ma = plain->named_buffers(), mb = grouped->named_buffers();
  for (const auto& item : ma)
    if (item.value().is_floating_point())
      cuda_test::check_close(mb[item.key()], item.value(), {1e-5, 1e-5}, "buffer " + item.key());
}
