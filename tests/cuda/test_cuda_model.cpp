// The network and the trainer on the device under test: losses, gradients and the re-id memory against the CPU
// with identical weights and sampling, detect() and describe(), mixed-precision training (bfloat16 autocast;
// float16 with loss scaling), checkpoints that move between devices, and the trainer's mixed-precision options.
// Tolerances and their reasons: docs/cuda-tests.md.
#include "cuda_support.hpp"
#include "support/toy_training.hpp"

#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/checkpoint.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/autocast_mode.h>
#include <ATen/ops/zeros.h>
#include <torch/optim/adamw.h>
#include <torch/serialize/input-archive.h>
#include <torch/version.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <numeric>
#include <set>
#include <string>
#include <vector>

using namespace trident;
using cuda_test::check_close;
using cuda_test::check_equal;
using cuda_test::check_on;
using cuda_test::Tolerance;
namespace fs = std::filesystem;

namespace {

using Small = SmallConfig<4, 64>;
using SmallReid = branches::ReidBranch<LutSize<4>, QueueSize<64>, EmbedDim<64>>;

// float64 on both devices: the only differences are the order of summation inside reductions and products
// (~1e-16 relative each, ~1e-13 after a network and its backward pass); 1e-9 relative leaves four orders of
// magnitude, while a wrong index, a lost gradient or a different sample is off by O(1). float64 also keeps
// every selection (top-k, NMS, IoU thresholds, balanced sampling) identical on both devices, which float32
// cannot promise: a 1e-7 difference may swap two proposals and change every loss after it.
constexpr double float64_rtol = 1e-9;

NetOptions small_options() {
  NetOptions o = small_net_options();  // fewer proposals and RoIs: a fast test
  o.rpn.pre_nms_top_n_train = 300;
  o.rpn.post_nms_top_n_train = 64;
  o.rpn.pre_nms_top_n_test = 300;
  o.rpn.post_nms_top_n_test = 64;
  o.sampler.batch_size_per_image = 32;
  return o;
}

/// An empty run folder. Its files are removed one by one, not with fs::remove_all: pip's LibTorch 2.x exports its
/// own std::filesystem::remove_all, which a program binds to and which jumps to a null pointer with a libstdc++
/// older than GCC 13's (Debian 12's: it needs recursive_directory_iterator::__erase). A run folder is flat.
std::string fresh_dir(const std::string& name) {
  const auto dir = fs::path(TRIDENT_TEST_TMP_DIR) / "cuda" / name;
  if (fs::is_directory(dir)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(dir)) files.push_back(entry.path());
    for (const auto& f : files) fs::remove(f);
  }
  fs::create_directories(dir);
  return dir.string();
}

struct Scenes {
  ImageBatch batch;
  std::vector<Target> targets;
};

/// `images` toy scenes of 128 x 192 with two people each (4 identities), in `dtype` on `device`.
Scenes toy_scenes(int images, at::ScalarType dtype, const c10::Device& device, uint64_t seed = 99) {
  at::manual_seed(seed);
  auto s = data::make_toy_scenes(images, 2, 4, 128, 192, 11);
  Scenes out{s.batch, s.targets};
  out.batch.images = out.batch.images.to(device, dtype);
  for (auto& t : out.targets) {
    t.boxes = t.boxes.to(device);
    t.pids = t.pids.to(device);
  }
  return out;
}

/// Two batches of two toy scenes (float32, on the CPU: the trainer moves them), visited in a seeded order.
train::InMemorySource toy_source(at::ScalarType dtype = at::kFloat) {
  const auto s = toy_scenes(4, dtype, c10::kCPU);
  return train::InMemorySource(train::split_into_batches(s.batch, s.targets, 2), /*shuffle=*/true, /*seed=*/3);
}

/// Copies every parameter and buffer of `from` into `to` (any devices and dtypes; the names must match).
void copy_state(torch::nn::Module& from, torch::nn::Module& to) {
  at::NoGradGuard no_grad;
  const auto src_p = from.named_parameters(), src_b = from.named_buffers();
  auto dst_p = to.named_parameters(), dst_b = to.named_buffers();
  REQUIRE(src_p.size() == dst_p.size());
  REQUIRE(src_b.size() == dst_b.size());
  for (auto& item : dst_p) item.value().copy_(src_p[item.key()]);
  for (auto& item : dst_b) item.value().copy_(src_b[item.key()]);
}

/// Every parameter and buffer of `actual` against `expected`, each within rtol of its tensor's largest value.
void compare_state(torch::nn::Module& actual, torch::nn::Module& expected, double rtol, const std::string& what) {
  const auto ap = actual.named_parameters(), ep = expected.named_parameters();
  const auto ab = actual.named_buffers(), eb = expected.named_buffers();
  REQUIRE(ap.size() == ep.size());
  REQUIRE(ab.size() == eb.size());
  for (const auto& item : ep) {
    const auto& e = item.value();
    check_close(ap[item.key()], e, Tolerance{0, rtol * (1 + cuda_test::max_abs(e))}, what + " " + item.key());
  }
  for (const auto& item : eb) {
    const auto& e = item.value();
    const auto& a = ab[item.key()];
    if (e.is_floating_point())
      check_close(a, e, Tolerance{0, rtol * (1 + cuda_test::max_abs(e))}, what + " buffer " + item.key());
    else
      check_equal(a, e, what + " buffer " + item.key());
  }
}

/// Parameters and floating-point buffers on `device`; the circular queue's head stays an int64 CPU scalar.
void check_module_on(torch::nn::Module& net, const c10::Device& device, const std::string& what) {
  for (const auto& item : net.named_parameters()) check_on(item.value(), device, what + " " + item.key());
  for (const auto& item : net.named_buffers()) {
    if (item.key().size() >= 5 && item.key().substr(item.key().size() - 5) == ".head") {
      check_on(item.value(), c10::kCPU, what + " " + item.key() + " (by design an int64 CPU scalar)");
      continue;
    }
    check_on(item.value(), device, what + " " + item.key());
  }
}

template <class Net>
void check_memory_on(Net& net, const c10::Device& device, const std::string& what) {
  auto& memory = net.template branch<SmallReid>().memory();
  check_on(memory.lookup_table->features(), device, what + ": look-up table");
  check_on(memory.queue->features(), device, what + ": circular queue");
}

bool all_finite(torch::nn::Module& net) {
  for (const auto& p : net.parameters())
    if (!at::isfinite(p).all().item<bool>()) return false;
  return true;
}

using test::dummy_source;
using test::Quadratic;

double checkpoint_loss_scale(const std::string& path) {
  // The checkpoint's archive behind its header (format 2: docs/training.md), checked as load_checkpoint checks it.
  auto ar = train::detail::open_archive(path, "checkpoint_loss_scale", c10::Device(c10::kCPU));
  c10::IValue v;
  REQUIRE(ar.try_read("loss_scale", v));
  return v.toDouble();
}

}  // namespace

TEST_CASE("losses, gradients and the re-id memory of two training steps equal the CPU's (float64, same weights)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  at::manual_seed(0);
  TridentNet<Small> cpu(small_options());
  cpu.to(at::kDouble);
  TridentNet<Small> dev(small_options());
  dev.to(device, at::kDouble);
  copy_state(cpu, dev);
  cpu.train();
  dev.train();
  const auto on_cpu = toy_scenes(2, at::kDouble, c10::kCPU), on_dev = toy_scenes(2, at::kDouble, device);
  // Proposal sampling draws from LibTorch's CPU generator (randperm on the CPU, then moved to the device), so the
  // same seed samples the same proposals on both devices as long as the candidates are the same.
  // The first step fills the empty memory (no re-id gradient yet, as in OIM); the second is checked with it.
  for (int step = 0; step < 2; ++step) {
    CAPTURE(step);
    at::manual_seed(100 + static_cast<uint64_t>(step));
    const auto expected = cpu.losses(on_cpu.batch, on_cpu.targets);
    at::manual_seed(100 + static_cast<uint64_t>(step));
    const auto actual = dev.losses(on_dev.batch, on_dev.targets);
    REQUIRE(actual.size() == expected.size());
    for (const auto& [name, value] : expected) {
      REQUIRE(actual.contains(name));
      check_on(actual[name], device, "loss " + name);
      check_close(actual[name], value, Tolerance{float64_rtol, float64_rtol}, "loss " + name);
    }
    cpu.zero_grad();
    dev.zero_grad();
    expected.total().backward();
    actual.total().backward();
    const auto dev_params = dev.named_parameters();
    int with_gradient = 0;
    for (const auto& item : cpu.named_parameters()) {
      const auto& g = item.value().grad();
      const auto& dg = dev_params[item.key()].grad();
      CHECK_MESSAGE(g.defined() == dg.defined(), item.key(), ": a gradient on one device only");
      if (!g.defined() || !dg.defined()) continue;
      check_on(dg, device, "gradient of " + item.key());
      check_close(dg, g, Tolerance{0, float64_rtol * (1 + cuda_test::max_abs(g))}, "gradient of " + item.key());
      with_gradient += cuda_test::max_abs(g) > 0;
    }
    CHECK(with_gradient > 50);  // the comparison is not vacuous
    // The memory update inside losses(), the batch-norm statistics: every buffer.
    compare_state(dev, cpu, float64_rtol, "after step " + std::to_string(step));
    check_memory_on(dev, device, "after losses()");
  }
  auto& memory = dev.branch<SmallReid>().memory();
  CHECK(cuda_test::max_abs(memory.lookup_table->features()) > 0);  // the look-up table was written
}

TEST_CASE("detect() on the device equals the CPU's (float64, same weights): boxes, scores, embeddings") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  auto options = small_options();
  options.score_threshold = 0.0;  // random weights give confidences near 0.5: keep every box for NMS
  at::manual_seed(1);
  TridentNet<Small> cpu(options);
  cpu.to(at::kDouble);
  TridentNet<Small> dev(options);
  dev.to(device, at::kDouble);
  copy_state(cpu, dev);
  cpu.eval();
  dev.eval();
  const auto expected = cpu.detect(toy_scenes(2, at::kDouble, c10::kCPU).batch);
  const auto actual = dev.detect(toy_scenes(2, at::kDouble, device).batch);
  REQUIRE(actual.size() == expected.size());
  size_t total = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    total += static_cast<size_t>(expected[i].boxes.size(0));
    check_on(actual[i].boxes, device, "boxes");
    check_close(actual[i].boxes, expected[i].boxes, Tolerance{float64_rtol, float64_rtol}, "boxes");
    check_close(actual[i].scores, expected[i].scores, Tolerance{float64_rtol, float64_rtol}, "scores");
    REQUIRE(actual[i].outputs.size() == expected[i].outputs.size());
    for (const auto& [name, value] : expected[i].outputs) {
      REQUIRE(actual[i].outputs.count(name) == 1);
      check_on(actual[i].outputs.at(name), device, name);
      check_close(actual[i].outputs.at(name), value, Tolerance{float64_rtol, float64_rtol}, name);
    }
  }
  CHECK(total > 10);  // not vacuous
}

TEST_CASE("describe() in float32 (TF32 off) on the device matches the CPU within float32 tolerances") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  at::manual_seed(2);
  TridentNet<Small> cpu(small_options());
  TridentNet<Small> dev(small_options());
  dev.to(device);
  copy_state(cpu, dev);
  cpu.eval();
  dev.eval();
  const auto on_cpu = toy_scenes(2, at::kFloat, c10::kCPU), on_dev = toy_scenes(2, at::kFloat, device);
  std::vector<at::Tensor> boxes_cpu, boxes_dev;
  for (const auto& t : on_cpu.targets) boxes_cpu.push_back(t.boxes);
  for (const auto& t : on_dev.targets) boxes_dev.push_back(t.boxes);
  // No selection on given boxes: a continuous function of the weights. cuDNN's and the CPU's float32
  // convolutions sum in different orders (~1e-7 relative each); through the 30 layers of backbone, pooler, head
  // and embedding that grows to ~1e-5; 1e-4 of each output's largest value leaves 10x.
  const auto features = dev.stem()->forward(on_dev.batch.images);
  const auto features_cpu = cpu.stem()->forward(on_cpu.batch.images);
  check_on(features, device, "conv4 features");
  check_close(features, features_cpu, Tolerance{0, 1e-4 * cuda_test::max_abs(features_cpu)}, "conv4 features");
  const auto expected = cpu.describe(on_cpu.batch, boxes_cpu);
  const auto actual = dev.describe(on_dev.batch, boxes_dev);
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    REQUIRE(actual[i].size() == expected[i].size());
    for (const auto& [name, value] : expected[i]) {
      check_on(actual[i].at(name), device, name);
      check_close(actual[i].at(name), value, Tolerance{0, 1e-4 * cuda_test::max_abs(value)}, name);
    }
  }
}

namespace {

/// Trains `Cfg` for `iterations` on toy scenes under autocast to `dtype` on the device (CPU: float32, no
/// autocast, which only checks the test itself); checks that the run stays finite and lowers the loss by a fifth.
template <class Cfg>
void mixed_precision_training(const c10::Device& device, at::ScalarType dtype, NetOptions net_options,
                              int64_t iterations, const std::string& name) {
  const bool amp = device.is_cuda();
  if (!amp) MESSAGE("TRIDENT_TEST_DEVICE=cpu: trained in float32 without autocast (autocast is CUDA-only here)");
  at::manual_seed(4);
  TridentNet<Cfg> net(net_options);
  if (amp) {
    // Autocast really runs the convolutions in the requested type.
    net.to(device);
    const auto images = toy_scenes(1, at::kFloat, device).batch.images;
    at::NoGradGuard no_grad;
    train::detail::AutocastScope scope(true, dtype);
    CHECK((net.stem()->forward(images).scalar_type() == dtype));
  }
  train::TrainerOptions o;
  o.device = device;
  o.mixed_precision = amp;
  o.amp_dtype = dtype;
  o.epochs = iterations / 2;  // two batches per epoch
  o.optimizer = train::OptimizerKind::adamw;
  o.schedule.base_lr = 1e-3;
  o.schedule.warmup_iterations = 4;
  o.schedule.milestones = {1000};
  o.weight_decay = 1e-4;
  o.clip_grad_norm = 10.0;
  o.print_every = 0;
  o.seed = 5;
  o.out_dir = fresh_dir(name);
  auto source = toy_source();
  train::TrainSummary summary;
  REQUIRE_NOTHROW(summary = train::fit(net, source, o));  // TrainingDiverged on any NaN / Inf loss
  CHECK(summary.iterations == iterations);
  CHECK(all_finite(net));
  check_module_on(net, device, "after mixed-precision training");
  train::TrainingLog log(o.out_dir, iterations + 1);
  REQUIRE(static_cast<int64_t>(log.rows().size()) == iterations);
  // The loss of a few toy scenes is noisy from one iteration to the next (sampling, the memory filling up):
  // compare the means of the first and the last 10 iterations. float32 on the CPU (this recipe): small
  // configuration 7.6 -> 4.3 over 40 iterations, paper configuration 17.9 -> ~9.5 over 30.
  const auto mean_total = [&](size_t from) {
    double sum = 0;
    for (size_t i = from; i < from + 10; ++i) sum += log.rows()[i].total;
    return sum / 10;
  };
  const double first = mean_total(0), last = mean_total(log.rows().size() - 10);
  MESSAGE(name, ": mean total loss of the first 10 iterations ", first, ", of the last 10 ", last);
  CHECK(std::isfinite(log.rows().back().total));
  CHECK(last < 0.8 * first);
  // float16 scales the loss (dynamically, from 65536); bfloat16 has float32's range and does not.
  const double scale = checkpoint_loss_scale(summary.checkpoint);
  if (amp && dtype == at::kHalf) {
    CHECK(std::isfinite(scale));
    CHECK(scale >= 1.0);
    CHECK(scale <= 65536.0);
  } else {
    CHECK(scale == 1.0);
  }
}

}  // namespace

TEST_CASE("mixed precision, bfloat16 autocast: the small configuration trains 40 steps, finite, loss down") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  mixed_precision_training<Small>(device, at::kBFloat16, small_options(), 40, "amp_bf16_small");
}

TEST_CASE("mixed precision, float16 autocast with loss scaling: the small configuration trains 40 steps") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (!device.is_cuda()) {
    cuda_test::report_skip("float16 autocast needs CUDA (the bfloat16 case runs its float32 stand-in on the CPU)");
    return;
  }
  mixed_precision_training<Small>(device, at::kHalf, small_options(), 40, "amp_fp16_small");
}

namespace {

/// The paper's network (ResNet-50, 24 x 8 RoIs, CUHK-SYSU's memory sizes) from random weights: its batch
/// norms train (frozen identity batch norms leave a deep random network without normalisation) and nothing is
/// frozen; fewer proposals for the 128 x 192 toy scenes.
NetOptions paper_from_scratch() {
  NetOptions o;
  o.stem.frozen_up_to = backbone::FrozenUpTo::none;
  o.stem.norm = backbone::BatchNormMode::trainable;
  o.rpn.pre_nms_top_n_train = 600;
  o.rpn.post_nms_top_n_train = 128;
  o.sampler.batch_size_per_image = 64;
  return o;
}

}  // namespace

TEST_CASE("mixed precision, bfloat16 and float16: the paper configuration trains 30 steps, finite, loss down") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (!device.is_cuda()) {
    cuda_test::report_skip("the paper configuration's 30 steps only run on CUDA (minutes on a CPU)");
    return;
  }
  using Paper = PaperConfig<CuhkSysu>;
  SUBCASE("bfloat16") { mixed_precision_training<Paper>(device, at::kBFloat16, paper_from_scratch(), 30, "amp_bf16_paper"); }
  SUBCASE("float16") { mixed_precision_training<Paper>(device, at::kHalf, paper_from_scratch(), 30, "amp_fp16_paper"); }
}

namespace {

/// 6 training iterations (SGD, float64): 3 on `first`, a checkpoint, then a resume on `second` for 3 more,
/// against 6 uninterrupted iterations on the CPU.
void resume_across_devices(const c10::Device& first, const c10::Device& second, const std::string& name) {
  train::TrainerOptions o;
  o.epochs = 3;  // 2 batches per epoch: 6 iterations, a stop in the middle of epoch 2
  o.optimizer = train::OptimizerKind::sgd;
  o.schedule.base_lr = 0.01;
  o.schedule.warmup_iterations = 2;
  o.schedule.milestones = {2};
  o.clip_grad_norm = 10.0;
  o.seed = 7;
  o.print_every = 0;

  o.device = c10::kCPU;
  o.out_dir = fresh_dir(name + "_uninterrupted");
  auto source_u = toy_source(at::kDouble);
  at::manual_seed(7);  // the initialisation is the caller's; fit() seeds the sampling
  TridentNet<Small> uninterrupted(small_options());
  uninterrupted.to(at::kDouble);
  train::fit(uninterrupted, source_u, o);

  o.device = first;
  o.out_dir = fresh_dir(name);
  o.max_iterations = 3;
  at::manual_seed(7);
  TridentNet<Small> a(small_options());
  a.to(at::kDouble);
  {
    auto source = toy_source(at::kDouble);
    const auto summary = train::fit(a, source, o);
    REQUIRE(summary.iterations == 3);
  }
  const std::string checkpoint = (fs::path(o.out_dir) / "checkpoint.pt").string();

  // Loading the checkpoint into a network on the other device keeps the network there, with the saved values.
  {
    TridentNet<Small> b(small_options());
    b.to(second, at::kDouble);
    train::load_model(checkpoint, b);
    check_module_on(b, second, "after load_model");
    check_memory_on(b, second, "after load_model");
    compare_state(b, a, 0.0, "loaded");
  }

  // Resuming on the other device continues the run; after 6 iterations it agrees with the uninterrupted one.
  o.device = second;
  o.max_iterations = -1;
  o.resume = true;
  at::manual_seed(12345);  // resuming restores the generator
  TridentNet<Small> b(small_options());
  b.to(at::kDouble);
  auto source_b = toy_source(at::kDouble);
  train::TrainSummary rest;
  REQUIRE_NOTHROW(rest = train::fit(b, source_b, o));
  CHECK(rest.resumed_from == 3);
  CHECK(rest.iterations == 6);
  check_module_on(b, second, "after the resumed run");
  check_memory_on(b, second, "after the resumed run");
  compare_state(b, uninterrupted, float64_rtol, "resumed vs uninterrupted");
}

}  // namespace

TEST_CASE("a checkpoint written on the device resumes on the CPU (float64: the same parameters as on one device)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  resume_across_devices(device, c10::kCPU, "device_to_cpu");
}

TEST_CASE("a checkpoint written on the CPU resumes on the device (float64: the same parameters as on one device)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  resume_across_devices(c10::kCPU, device, "cpu_to_device");
}

TEST_CASE("the re-id memory stays on the device after training steps and after loading a checkpoint") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  train::TrainerOptions o;
  o.epochs = 2;
  o.optimizer = train::OptimizerKind::adamw;
  o.schedule.base_lr = 1e-3;
  o.schedule.warmup_iterations = 0;
  o.print_every = 0;
  o.device = device;
  o.out_dir = fresh_dir("memory");
  at::manual_seed(8);
  TridentNet<Small> net(small_options());
  auto source = toy_source();
  const auto summary = train::fit(net, source, o);
  REQUIRE(summary.iterations == 4);
  check_memory_on(net, device, "after 4 training steps");
  check_module_on(net, device, "after 4 training steps");
  auto& memory = net.branch<SmallReid>().memory();
  const auto table = memory.lookup_table->features();
  CHECK(cuda_test::max_abs(table) > 0);  // identities were written
  CHECK(memory.queue->head() > 0);       // and the queue advanced

  // load_model and load_checkpoint into networks already on the device.
  TridentNet<Small> loaded(small_options());
  loaded.to(device);
  train::load_model(summary.checkpoint, loaded);
  check_memory_on(loaded, device, "after load_model");
  auto& loaded_memory = loaded.branch<SmallReid>().memory();
  check_equal(loaded_memory.lookup_table->features(), table, "look-up table after load_model");
  check_equal(loaded_memory.queue->features(), memory.queue->features(), "queue after load_model");
  CHECK(loaded_memory.queue->head() == memory.queue->head());

  TridentNet<Small> resumed(small_options());
  resumed.to(device);
  std::vector<at::Tensor> params;
  for (const auto& p : resumed.parameters()) params.push_back(p);
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(1e-3));
  const auto state = train::load_checkpoint(summary.checkpoint, resumed, optimizer);
  CHECK(state.iteration == 4);
  check_memory_on(resumed, device, "after load_checkpoint");
  check_module_on(resumed, device, "after load_checkpoint");
}

TEST_CASE("trainer options: amp_dtype float16 / bfloat16, refused on the CPU and for other types (runs anywhere)") {
  // No device needed: these are the trainer's checks, before any work, and autocast's thread-local flags.
  Quadratic q;
  auto source = dummy_source();
  train::TrainerOptions o;
  o.epochs = 1;
  o.print_every = 0;
  o.out_dir = fresh_dir("amp_options");
  o.device = c10::kCPU;

  o.mixed_precision = true;
  o.amp_dtype = at::kBFloat16;
  CHECK_THROWS_WITH_AS(train::fit(q, source, o),
                       doctest::Contains("mixed_precision needs a CUDA device (autocast to bfloat16), the device is cpu"),
                       trident::Error);
  o.amp_dtype = at::kHalf;
  CHECK_THROWS_WITH_AS(train::fit(q, source, o), doctest::Contains("(autocast to float16)"), trident::Error);
  o.amp_dtype = at::kFloat;
  CHECK_THROWS_WITH_AS(train::fit(q, source, o),
                       doctest::Contains("amp_dtype must be at::kHalf (float16, with loss scaling) or at::kBFloat16"),
                       trident::Error);
  o.mixed_precision = false;  // without mixed precision a float16 / bfloat16 amp_dtype changes nothing
  o.amp_dtype = at::kBFloat16;
  const auto summary = train::fit(q, source, o);
  CHECK(summary.iterations == 1);
  CHECK(checkpoint_loss_scale(summary.checkpoint) == 1.0);

  // AutocastScope sets CUDA autocast and its dtype for its scope and restores both (thread-local flags only).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
  const auto enabled = [] { return at::autocast::is_autocast_enabled(at::kCUDA); };
  const auto dtype = [] { return at::autocast::get_autocast_dtype(at::kCUDA); };
#else
  const auto enabled = [] { return at::autocast::is_enabled(); };
  const auto dtype = [] { return at::autocast::get_autocast_gpu_dtype(); };
#endif
  const bool enabled_before = enabled();
  const auto dtype_before = dtype();
  {
    train::detail::AutocastScope scope(true, at::kBFloat16);
    CHECK(enabled());
    CHECK((dtype() == at::kBFloat16));
    {
      train::detail::AutocastScope inner(true, at::kHalf);
      CHECK((dtype() == at::kHalf));
    }
    CHECK(enabled());
    CHECK((dtype() == at::kBFloat16));
  }
  CHECK(enabled() == enabled_before);
  CHECK((dtype() == dtype_before));
  {
    train::detail::AutocastScope off(false, at::kBFloat16);  // off: touches nothing
    CHECK(enabled() == enabled_before);
    CHECK((dtype() == dtype_before));
  }
}
