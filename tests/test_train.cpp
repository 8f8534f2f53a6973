// The trainer: the paper's learning-rate schedule, loss scaling, the training log, exact resume, the stop on a
// diverging loss, and the files a run writes. The trainer needs only trident::trident; the one check of the
// curves picture needs trident::vision (OpenCV).
#include "support/fixtures.hpp"
#include "support/toy_training.hpp"

#include <trident/backbone/resnet.hpp>
#include <trident/core/threads.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/trainer.hpp>

#include <ATen/ops/equal.h>
#include <ATen/ops/full.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/randn.h>
#include <torch/nn/modules/linear.h>
#include <torch/optim/sgd.h>
#include <torch/serialize.h>

#if TRIDENT_TESTS_WITH_VISION
#include <trident/viz/curves.hpp>

#include <opencv2/imgcodecs.hpp>
#endif

#include <cmath>
#include <filesystem>
#include <limits>

using namespace trident;
namespace fs = std::filesystem;

namespace {

std::string train_dir(const std::string& name) { return test::fresh_folder("train", name).string(); }

using test::dummy_source;
using test::Quadratic;

}  // namespace

TEST_CASE("learning rate: linear warm-up over the first epoch, x0.1 from epoch 8") {
  train::LrSchedule s;  // the paper's: base 3e-3, warm-up one epoch from 0, milestone 8, gamma 0.1
  const int64_t per_epoch = 100;
  CHECK(train::learning_rate(s, 0, per_epoch) == doctest::Approx(3e-3 * 1 / 100.0));
  CHECK(train::learning_rate(s, 49, per_epoch) == doctest::Approx(3e-3 * 50 / 100.0));
  CHECK(train::learning_rate(s, 99, per_epoch) == doctest::Approx(3e-3));
  CHECK(train::learning_rate(s, 100, per_epoch) == doctest::Approx(3e-3));
  CHECK(train::learning_rate(s, 799, per_epoch) == doctest::Approx(3e-3));
  CHECK(train::learning_rate(s, 800, per_epoch) == doctest::Approx(3e-4));
  CHECK(train::learning_rate(s, 1399, per_epoch) == doctest::Approx(3e-4));
  s.warmup_iterations = 10;
  s.warmup_start_factor = 0.1;
  CHECK(train::learning_rate(s, 0, per_epoch) == doctest::Approx(3e-3 * (0.1 + 0.9 * 0.1)));
  CHECK(train::learning_rate(s, 10, per_epoch) == doctest::Approx(3e-3));
  s.milestones = {2, 3};
  CHECK(train::learning_rate(s, 350, per_epoch) == doctest::Approx(3e-5));
  CHECK_THROWS_WITH(train::learning_rate(s, 0, 0), doctest::Contains("iterations_per_epoch must be positive, got 0"));
}

TEST_CASE("grad scaler: unscales, skips a step with Inf gradients and backs off, grows after good steps") {
  train::GradScaler scaler({.initial_scale = 8.0, .growth_factor = 2.0, .backoff_factor = 0.5, .growth_interval = 2});
  auto p = at::ones({2}).set_requires_grad(true);
  scaler.scale_loss((p * 3).sum()).backward();  // d/dp = 3, scaled by 8
  CHECK(p.grad()[0].item<double>() == 24.0);
  CHECK(scaler.unscale({p}));
  CHECK(p.grad()[0].item<double>() == 3.0);
  scaler.update(true);
  CHECK(scaler.scale() == 8.0);
  scaler.update(true);
  CHECK(scaler.scale() == 16.0);  // two good steps in a row
  p.mutable_grad() = at::full({2}, std::numeric_limits<double>::infinity(), at::kFloat);
  CHECK_FALSE(scaler.unscale({p}));
  scaler.update(false);
  CHECK(scaler.scale() == 8.0);
  train::GradScaler off({}, false);
  CHECK(off.scale() == 1.0);
  CHECK(off.scale_loss(at::ones({})).item<double>() == 1.0);
}

TEST_CASE("training log: CSV and JSONL rows, and a resume drops the rows it will redo") {
  const auto dir = train_dir("log");
  {
    train::TrainingLog log(dir);
    for (int64_t i = 0; i < 5; ++i) log.add({"a", "b"}, {i, i / 3, 0.1, {1.0 * i, 2.0}, 1.0 * i + 2, 4.0, 0.5 * i});
  }
  train::TrainingLog resumed(dir, 3);
  REQUIRE(resumed.rows().size() == 3);
  CHECK(resumed.loss_names() == std::vector<std::string>{"a", "b"});
  CHECK(resumed.rows()[2].losses[0] == 2.0);
  resumed.add({"a", "b"}, {3, 1, 0.1, {7.0, 2.0}, 9.0, 4.0, 1.5});
  std::ifstream csv(resumed.csv_path());
  std::string header, line, last;
  std::getline(csv, header);
  CHECK(header == "iteration,epoch,lr,a,b,total,images_per_second,seconds");
  int lines = 0;
  while (std::getline(csv, line)) ++lines, last = line;
  CHECK(lines == 4);
  CHECK(last == "3,1,0.1,7,2,9,4,1.50");
  std::ifstream jsonl((fs::path(dir) / "train_log.jsonl").string());
  lines = 0;
  while (std::getline(jsonl, line)) ++lines, last = line;
  CHECK(lines == 4);
  CHECK(last.find("\"a\": 7") != std::string::npos);
}

TEST_CASE("resume is exact: 3 iterations, stop, resume to 6 equals 6 uninterrupted iterations") {
  const int threads_before = at::get_num_threads();
  use_all_cores(2);
  using Small = SmallConfig<4, 64>;
  train::TrainerOptions o;
  o.epochs = 3;  // 2 batches per epoch: 6 iterations, a stop in the middle of epoch 2
  o.schedule.warmup_iterations = 2;
  o.schedule.milestones = {2};
  o.clip_grad_norm = 10.0;
  o.seed = 7;
  o.print_every = 0;

  o.out_dir = train_dir("uninterrupted");
  auto source_a = test::toy_training_source();
  at::manual_seed(7);  // the initialisation is the caller's; fit() seeds the sampling
  TridentNet<Small> a(test::toy_training_options());
  const auto full = train::fit(a, source_a, o);
  CHECK(full.iterations == 6);

  o.out_dir = train_dir("interrupted");
  o.max_iterations = 3;
  {
    auto source = test::toy_training_source();
    at::manual_seed(7);
    TridentNet<Small> b(test::toy_training_options());
    const auto first = train::fit(b, source, o);
    CHECK(first.iterations == 3);
  }
  auto source_b = test::toy_training_source();
  at::manual_seed(12345);  // whatever happened in between, resuming restores the generator
  o.max_iterations = -1;
  o.resume = true;
#if TRIDENT_TESTS_WITH_VISION
  o.draw_curves = viz::training_curves_png((fs::path(o.out_dir) / "curves.png").string());
#endif
  TridentNet<Small> b(test::toy_training_options());
  const auto rest = train::fit(b, source_b, o);
  CHECK(rest.resumed_from == 3);
  CHECK(rest.iterations_this_run == 3);

  const auto pa = a.named_parameters(), pb = b.named_parameters();
  for (const auto& item : pa) CHECK_MESSAGE(at::equal(item.value(), pb[item.key()]), item.key());
  const auto ba = a.named_buffers(), bb = b.named_buffers();
  for (const auto& item : ba) CHECK_MESSAGE(at::equal(item.value(), bb[item.key()]), item.key());
  CHECK(ba.size() == bb.size());
  // The log describes one run of 6 iterations; the curves were drawn at the last epoch end.
  train::TrainingLog log(o.out_dir, 100);
  CHECK(log.rows().size() == 6);
#if TRIDENT_TESTS_WITH_VISION
  const cv::Mat curves = cv::imread((fs::path(o.out_dir) / "curves.png").string());
  CHECK(curves.cols == 1200);
#endif
  at::set_num_threads(threads_before);
}

TEST_CASE("an evaluation between epochs sees that epoch's weights (optimizer steps re-fold the batch norms)") {
  // LibTorch's optimizers write parameters through .data(), which does not advance their version counters; the
  // folded weights of eval() forwards are cached by those counters. fit() marks the parameters updated after
  // every step, so an on_epoch_end evaluation folds the current weights, not the first evaluation's.
  using Small = SmallConfig<4, 64>;  // trainable batch norms: eval() folds them, train() does not
  train::TrainerOptions o;
  o.epochs = 2;
  o.seed = 5;
  o.print_every = 0;
  o.out_dir = train_dir("evaluate_between_epochs");
  auto source = test::toy_training_source();
  at::manual_seed(5);
  TridentNet<Small> net(test::toy_training_options());
  const auto images = at::randn({1, 3, 64, 96});
  std::vector<at::Tensor> folded_outputs;
  o.on_epoch_end = [&](int64_t) {
    net.eval();
    at::NoGradGuard no_grad;
    backbone::set_batch_norm_folding(net, backbone::Folding::always);
    const auto folded = net.stem()->forward(images);
    backbone::set_batch_norm_folding(net, backbone::Folding::off);
    const auto layer_by_layer = net.stem()->forward(images);
    backbone::set_batch_norm_folding(net, backbone::Folding::always);
    CHECK(test::max_abs_diff(folded, layer_by_layer) < 1e-4);  // epoch 2: the stale epoch-1 weights without the mark
    folded_outputs.push_back(folded);
  };
  train::fit(net, source, o);
  REQUIRE(folded_outputs.size() == 2);
  CHECK(test::max_abs_diff(folded_outputs[0], folded_outputs[1]) > 1e-3);  // the second epoch did change them
  CHECK(net.is_training());  // fit() switched the network back after each evaluation

  // The mark itself: a parameter's version advances, its values stay.
  auto w = at::ones({3}).requires_grad_(true);
  const auto before = w._version();
  train::mark_parameters_updated({w, at::Tensor()});
  CHECK(w._version() == before + 1);
  CHECK(at::equal(w, at::ones({3})));
}

TEST_CASE("ForeachSgd: bit-identical to torch::optim::SGD, the same checkpoints, and parameter versions advance") {
  // Every option combination SGD has, over 4 steps with new gradients each step, on three parameters of different
  // shapes (one without a gradient in the second step: skipped, as SGD skips it).
  struct Setting {
    double weight_decay, momentum, dampening;
    bool nesterov;
  };
  for (const Setting s : {Setting{0, 0, 0, false}, Setting{5e-4, 0, 0, false}, Setting{5e-4, 0.9, 0, false},
                          Setting{1e-3, 0.9, 0.1, false}, Setting{1e-3, 0.8, 0, true}}) {
    CAPTURE(s.weight_decay);
    CAPTURE(s.momentum);
    CAPTURE(s.dampening);
    CAPTURE(s.nesterov);
    at::manual_seed(21);
    std::vector<at::Tensor> a, b;
    for (const auto& shape :
         {std::vector<int64_t>{8, 3, 3, 3}, std::vector<int64_t>{17}, std::vector<int64_t>{5, 4}}) {
      a.push_back(at::randn(shape).requires_grad_(true));
      b.push_back(a.back().detach().clone().requires_grad_(true));
    }
    const auto options = torch::optim::SGDOptions(0.05)
                             .weight_decay(s.weight_decay)
                             .momentum(s.momentum)
                             .dampening(s.dampening)
                             .nesterov(s.nesterov);
    torch::optim::SGD reference(a, options);
    train::ForeachSgd foreach(b, options);
    for (int step = 0; step < 4; ++step) {
      for (size_t i = 0; i < a.size(); ++i) {
        const bool skip = step == 1 && i == 2;
        const auto g = at::randn(a[i].sizes());
        a[i].mutable_grad() = skip ? at::Tensor() : g.clone();
        b[i].mutable_grad() = skip ? at::Tensor() : g.clone();
      }
      const auto version = b[0]._version();
      reference.step();
      foreach.step();
      CHECK(b[0]._version() > version);  // written in place, not through .data()
      for (size_t i = 0; i < a.size(); ++i) CHECK_MESSAGE(at::equal(a[i], b[i]), "step ", step, ", parameter ", i);
    }
    // The momentum buffers, through a checkpoint of the other kind: continuing either way stays identical.
    if (s.momentum != 0) {
      const auto path = (fs::path(train_dir("foreach_sgd")) / "sgd.pt").string();
      fs::create_directories(fs::path(path).parent_path());
      torch::save(foreach, path);
      torch::optim::SGD restored(a, options);
      torch::load(restored, path);
      for (size_t i = 0; i < a.size(); ++i) {
        const auto g = at::randn(a[i].sizes());
        a[i].mutable_grad() = g.clone();
        b[i].mutable_grad() = g.clone();
      }
      restored.step();
      foreach.step();
      for (size_t i = 0; i < a.size(); ++i) CHECK(at::equal(a[i], b[i]));
    }
  }
}

TEST_CASE("split_into_batches: consecutive batches, the last one shorter, and mismatched inputs refused") {
  const auto scenes = data::make_toy_scenes(5, 1, 3, 96, 64, 2);
  const auto batches = train::split_into_batches(scenes.batch, scenes.targets, 2);
  REQUIRE(batches.size() == 3);
  CHECK(batches[2].targets.size() == 1);
  CHECK(batches[2].images.sizes.size() == 1);
  CHECK(at::equal(batches[1].images.images, scenes.batch.images.narrow(0, 2, 2)));
  CHECK(at::equal(batches[2].targets[0].boxes, scenes.targets[4].boxes));
  CHECK(at::equal(batches[1].targets[1].pids, scenes.targets[3].pids));
  auto short_targets = scenes.targets;
  short_targets.pop_back();
  CHECK_THROWS_WITH_AS(train::split_into_batches(scenes.batch, short_targets, 2),
                       doctest::Contains("5 images need 5 sizes and 5 targets, got 5 and 4"), trident::Error);
  CHECK_THROWS_WITH_AS(train::split_into_batches(scenes.batch, scenes.targets, 0),
                       doctest::Contains("batch_size must be positive, got 0"), trident::Error);
}

TEST_CASE("a loss that turns NaN stops training with its name and iteration, and the checkpoint stays good") {
  train::TrainerOptions o;
  o.epochs = 1;
  o.schedule.base_lr = 0.1;
  o.schedule.warmup_iterations = 0;
  o.checkpoint_every = 1;
  o.print_every = 0;
  o.out_dir = train_dir("diverge");
  Quadratic q(/*nan_at=*/3);
  auto source = dummy_source(5);
  CHECK_THROWS_WITH_AS(train::fit(q, source, o),
                       doctest::Contains("training diverged at iteration 3 (epoch 1): loss 'square' is nan"),
                       train::TrainingDiverged);
  // The checkpoint of iteration 3 loads, and w is where three SGD steps on (w - 1)^2 took it.
  Quadratic fresh(100);
  torch::optim::SGD sgd(fresh.parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  const auto state = train::load_checkpoint((fs::path(o.out_dir) / "checkpoint.pt").string(), fresh, sgd);
  CHECK(state.iteration == 3);
  // Hand-computed heavy-ball SGD (weight decay 5e-4): v = 0.9 v + g + 5e-4 w, w -= 0.1 v.
  double w = 0, v = 0;
  for (int i = 0; i < 3; ++i) {
    const double g = 2 * (w - 1) + 5e-4 * w;
    v = i == 0 ? g : 0.9 * v + g;
    w -= 0.1 * v;
  }
  CHECK(fresh.w.item<double>() == doctest::Approx(w).epsilon(1e-6));
}

TEST_CASE("AdamW: hand-computed decoupled steps, and a resume restores its moments exactly") {
  train::TrainerOptions o;
  o.optimizer = train::OptimizerKind::adamw;
  o.epochs = 5;
  o.momentum = 0.8;  // beta1
  o.weight_decay = 0.1;
  o.schedule.base_lr = 0.05;
  o.schedule.warmup_iterations = 0;
  o.schedule.milestones = {100};
  o.print_every = 0;
  o.out_dir = train_dir("adamw");
  Quadratic full(100);
  auto source = dummy_source(1);
  train::fit(full, source, o);
  // AdamW (Loshchilov & Hutter) on (w - 1)^2: decay w by lr * wd, then the bias-corrected Adam step.
  double w = 0, m = 0, v = 0;
  const double lr = 0.05, b1 = 0.8, b2 = 0.999, wd = 0.1, eps = 1e-8;
  for (int t = 1; t <= 5; ++t) {
    const double g = 2 * (w - 1);
    w *= 1 - lr * wd;
    m = b1 * m + (1 - b1) * g;
    v = b2 * v + (1 - b2) * g * g;
    w -= lr / (1 - std::pow(b1, t)) * m / (std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + eps);
  }
  CHECK(full.w.item<double>() == doctest::Approx(w).epsilon(1e-6));
  CHECK(w > 0.2);  // five steps of about lr each: the check is not vacuous

  o.out_dir = train_dir("adamw_resumed");
  o.max_iterations = 2;
  {
    Quadratic first(100);
    train::fit(first, source, o);
  }
  o.max_iterations = -1;
  o.resume = true;
  Quadratic resumed(100);
  train::fit(resumed, source, o);
  CHECK(at::equal(resumed.w, full.w));
  o.optimizer = train::OptimizerKind::sgd;  // a checkpoint of AdamW's moments does not load into SGD
  CHECK_THROWS_WITH(train::fit(resumed, source, o), doctest::Contains("the optimizer state does not match"));
}

TEST_CASE("decay_biases: true decays every parameter (SeqNet), false exempts the biases (NAE), for SGD and AdamW") {
  torch::nn::Linear layer(3, 2);
  const auto weight = layer->weight.detach().clone(), bias = layer->bias.detach().clone();
  for (const auto kind : {train::OptimizerKind::sgd, train::OptimizerKind::adamw}) {
    for (const bool decay_biases : {true, false}) {
      CAPTURE(static_cast<int>(kind));
      CAPTURE(decay_biases);
      {
        const at::NoGradGuard no_grad;
        layer->weight.copy_(weight);
        layer->bias.copy_(bias);
      }
      train::TrainerOptions o;
      o.optimizer = kind;
      o.decay_biases = decay_biases;
      o.weight_decay = 0.1;
      o.momentum = 0.9;
      o.schedule.base_lr = 0.5;
      const auto params = train::detail::trainable(*layer);
      const auto optimizer = train::detail::make_optimizer(*layer, params, o);
      REQUIRE(optimizer->param_groups().size() == (decay_biases ? 1u : 2u));
      for (const auto& p : params) p.mutable_grad() = at::zeros_like(p);
      optimizer->step();
      // With zero gradients one step is the decay alone: SGD's first step moves p by lr * (wd * p) (its momentum
      // buffer starts as that), AdamW multiplies p by 1 - lr * wd and its Adam step is 0.
      const double kept = 1 - 0.5 * 0.1;
      CHECK(layer->weight.sub(weight * kept).abs().max().item<double>() < 1e-7);
      CHECK(layer->bias.sub(decay_biases ? bias * kept : bias).abs().max().item<double>() < 1e-7);
    }
  }
  // A checkpoint of the one-group optimizer does not resume into the two-group one: refused, by trident's message.
  train::TrainerOptions one, two;
  two.decay_biases = false;
  const auto params = train::detail::trainable(*layer);
  const auto decaying = train::detail::make_optimizer(*layer, params, one);
  const auto exempting = train::detail::make_optimizer(*layer, params, two);
  for (const auto& p : params) p.mutable_grad() = at::ones_like(p);
  decaying->step();
  const std::string path = train_dir("decay_biases") + "/checkpoint.pt";
  train::save_checkpoint(path, *layer, *decaying, {});
  CHECK_THROWS_WITH(train::load_checkpoint(path, *layer, *exempting),
                    doctest::Contains("the optimizer state does not match"));
  CHECK(train::detail::is_bias("bias"));
  CHECK(train::detail::is_bias("det.bbox_pred.bias"));
  CHECK_FALSE(train::detail::is_bias("rpn.conv.weight"));
  CHECK_FALSE(train::detail::is_bias("layer.biasx"));
}

TEST_CASE("checkpoints: a missing file, a file that is not a checkpoint, another model") {
  const auto dir = train_dir("bad");
  Quadratic q(100);
  torch::optim::SGD sgd(q.parameters(), torch::optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(train::load_checkpoint(dir + "/none.pt", q, sgd), doctest::Contains("none.pt' does not exist"));
  fs::create_directories(dir);
  { std::ofstream(dir + "/junk.pt") << "not an archive"; }
  CHECK_THROWS_WITH(train::load_checkpoint(dir + "/junk.pt", q, sgd),
                    doctest::Contains("junk.pt' is not a trident checkpoint"));
  train::save_checkpoint(dir + "/q.pt", q, sgd, {});
  CHECK(test::partial_files(dir).empty());
  torch::nn::Linear other(2, 2);
  torch::optim::SGD sgd2(other->parameters(), torch::optim::SGDOptions(0.1));
  CHECK_THROWS_WITH(train::load_checkpoint(dir + "/q.pt", *other, sgd2),
                    doctest::Contains("the model does not match the checkpoint"));
  train::TrainerOptions o;
  o.out_dir = dir + "/empty";
  o.resume = true;
  auto source = dummy_source(1);
  CHECK_THROWS_WITH(train::fit(q, source, o), doctest::Contains("resume asked for, but"));
}

TEST_CASE("amp_dtype_named: the command-line names of the mixed-precision types") {
  CHECK((train::amp_dtype_named("float16") == at::kHalf));  // ScalarType is compared undecomposed
  CHECK((train::amp_dtype_named("fp16") == at::kHalf));
  CHECK((train::amp_dtype_named("bfloat16") == at::kBFloat16));
  CHECK((train::amp_dtype_named("bf16") == at::kBFloat16));
  CHECK_THROWS_WITH_AS(train::amp_dtype_named("float32"),
                       doctest::Contains("must be float16 (fp16) or bfloat16 (bf16), got 'float32'"), trident::Error);
}
