// 02_train — train trident: a configuration by name with its recipe (train/recipe.hpp), any option of which the
// command line can change: the paper's configuration on CUHK-SYSU or PRW, the small CPU configuration and its
// ablation rows on any dataset (the synthetic one of example 01 to begin with).
//
//   ./build/examples/02_train --dataset cuhk-sysu --root data/synthetic --config small --out out/small
//   ./build/examples/02_train --dataset prw --root /data/PRW --config paper --weights resnet50.pt --device cuda --amp
//   ./build/examples/02_train ... --config small-without-part             (an ablation row: --list-configs)
//   ./build/examples/02_train ... --net-option branches.detection_loss.box_weight=10   (any network option)
//   ./build/examples/02_train --config-file train.toml          (any option, as `name = value` lines)
//   ./build/examples/02_train ... --resume                      (continue exactly where the last run stopped)
//   ./build/examples/02_train ... --nproc 2                     (data parallelism: 2 processes on this machine)
//   torchrun --nnodes 2 --nproc-per-node 8 ./build/examples/02_train ... --device cuda   (many machines)
//
// What it does:
//   1. reads the dataset with its own reader (CUHK-SYSU's .mat files, PRW's, or the JSON format of your data);
//   2. builds the network of --config (train/configurations.hpp: `paper` = paper-cuhk-sysu or paper-prw, by
//      --dataset: ResNet-50, conv1 + layer1 frozen, ImageNet weights from --weights; `small` = a quarter-width
//      ResNet trained from scratch; small-without-part, ... the paper's ablation rows on it), with its recipe's
//      network options and those of --net-option;
//   3. trains with train::fit and the recipe (paper: SGD, warm-up to 3e-3, x0.1 after epoch 8, batch 4; small:
//      AdamW, the README's main job), fed by data::Loader's worker threads; checkpoint.pt (which records the
//      configuration, the network options and the picture sizes, so that 03_evaluate and 05_search rebuild the
//      network from it alone), train_log.csv/.jsonl and curves.png go into --out;
//   4. (--evaluate) scores the trained model on the test split with the dataset's protocol.
// Data parallelism (docs/training.md, "Several processes"): under torchrun or SLURM (their variables: RANK,
// WORLD_SIZE, MASTER_ADDR, ...), or with --nproc N (this program starts N processes of itself), every process
// trains on its part of each batch of --batch-size images (the global batch) through a c10d group (Gloo on the
// CPU, NCCL on CUDA, one GPU per process: cuda:LOCAL_RANK); rank 0 writes the checkpoint, the log and the
// curves, and evaluates.
#include <trident/core/threads.hpp>
#include <trident/data/read_dataset.hpp>
#include <trident/distributed/launch.hpp>
#include <trident/distributed/process_group.hpp>
#include <trident/eval/inference.hpp>
#include <trident/eval/protocol.hpp>
#include <trident/backbone/weights.hpp>
#include <trident/model/options_text.hpp>
#include <trident/train/configurations.hpp>
#include <trident/train/loader_source.hpp>
#include <trident/viz/curves.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <map>
#include <thread>

namespace {
using namespace trident;

struct Options {
  std::string dataset = "cuhk-sysu", root, out = "out/train", config = "small", weights, device = "cpu",
              optimizer;
  int gallery_size = 50;
  int64_t epochs = 0, batch_size = 0, min_size = 0, max_size = 0, checkpoint_every = 0, max_iterations = -1;
  int64_t warmup = 0, milestone = 0, rois_per_image = 0;
  int workers = 2, threads = 0, nproc = 1;
  double dist_timeout = 600;
  double lr = 0, clip = 0, flip = 0, momentum = 0, weight_decay = 0;
  int64_t seed = 0;
  bool resume = false, amp = false, evaluate = false, queue_background = true, decay_biases = true;
  std::vector<std::string> net_options;
  std::string amp_dtype = "float16";
  std::map<std::string, CLI::Option*> flags;  ///< the recipe's options by flag: given ones replace its values

  bool given(const std::string& flag) const { return flags.at(flag)->count() > 0; }
};

/// The recipe with what the command line gives instead.
train::Recipe with_command_line(train::Recipe r, const Options& o) {
  auto& t = r.trainer;
  if (o.given("--epochs")) t.epochs = o.epochs;
  if (o.given("--optimizer")) t.optimizer = o.optimizer == "adamw" ? train::OptimizerKind::adamw : train::OptimizerKind::sgd;
  if (o.given("--lr")) t.schedule.base_lr = o.lr;
  if (o.given("--momentum")) t.momentum = o.momentum;
  if (o.given("--weight-decay")) t.weight_decay = o.weight_decay;
  if (o.given("--decay-biases")) t.decay_biases = o.decay_biases;
  if (o.given("--warmup")) t.schedule.warmup_iterations = o.warmup;
  if (o.given("--milestone")) t.schedule.milestones = {o.milestone};
  if (o.given("--clip")) t.clip_grad_norm = o.clip;
  if (o.given("--batch-size")) r.loader.batch_size = o.batch_size;
  if (o.given("--flip")) r.loader.transform.flip_probability = o.flip;
  if (o.given("--min-size")) r.loader.transform.min_size = o.min_size;
  if (o.given("--max-size")) r.loader.transform.max_size = o.max_size;
  if (o.given("--rois-per-image")) r.net.sampler.batch_size_per_image = o.rois_per_image;
  if (o.given("--queue-background")) r.net.branches.memory.queue_background = o.queue_background;
  for (const auto& assignment : o.net_options) set_net_option(r.net, assignment, "02_train: --net-option");
  return r;
}

/// Trains a TridentNet<Cfg> with `recipe`.
template <class Cfg>
int run(const Options& o, const std::string& name, const distributed::LaunchEnvironment& launch,
        train::Recipe recipe, const data::Dataset& dataset) {
  TRIDENT_CHECK(dataset.num_train_ids <= lut_rows_v<Cfg>,
                "02_train: '{}' has {} training identities, the {} configuration's look-up table has {} rows",
                o.root, dataset.num_train_ids, name, lut_rows_v<Cfg>);
  // Data parallelism: `launch` is the launch this process belongs to (one process when no launcher set its
  // variables).
  const bool leader = launch.rank == 0;
  const c10::Device device = launch.device_for(c10::Device(o.device));  // one GPU per process
  std::shared_ptr<distributed::C10dGroup> group;
  if (launch.world_size > 1) {
    distributed::GroupOptions go;
    go.device = device;
    go.timeout = std::chrono::milliseconds(static_cast<int64_t>(o.dist_timeout * 1000));
    group = distributed::join(launch, go);
    if (leader)
      std::cout << fmt::format("data parallelism: {} processes ({} variables), each with its part of every "
                               "batch of {} images\n", launch.world_size, launch.source, recipe.loader.batch_size);
  }
  // 2. The network. The seed fixes the initialisation here and, inside fit(), the proposal sampling.
  at::manual_seed(static_cast<uint64_t>(o.seed));
  TridentNet<Cfg> net(recipe.net);
  if (!o.weights.empty() && !o.resume) {
    backbone::load_torchvision_weights(o.weights, net.stem(), net.head());
    if (leader) std::cout << fmt::format("ImageNet weights from {}\n", o.weights);
  }

  // 3. Data: worker threads decode, resize, flip and normalise; the order is a function of (seed, epoch).
  data::LoaderOptions lo = recipe.loader;
  lo.workers = o.workers;
  lo.seed = static_cast<uint64_t>(o.seed);
  lo.shard_rank = launch.rank;  // --batch-size is the global batch: this process loads its part of each
  lo.shard_count = launch.world_size;
  data::Loader loader(dataset, dataset.train, lo);
  train::LoaderSource source(loader);

  train::TrainerOptions to = recipe.trainer;
  to.out_dir = o.out;
  to.checkpoint_every = o.checkpoint_every;
  to.resume = o.resume;
  to.seed = o.seed;
  to.device = device;
  to.mixed_precision = o.amp;
  to.amp_dtype = train::amp_dtype_named(o.amp_dtype);  // bfloat16 needs no loss scaling
  to.max_iterations = o.max_iterations;
  to.draw_curves = viz::training_curves_png((std::filesystem::path(o.out) / "curves.png").string());
  to.group = group;
  // Recorded in each checkpoint: --resume refuses a checkpoint of another configuration by name, and 03_evaluate
  // and 05_search rebuild the network from the name, the network options and the picture sizes.
  to.configuration = name;
  to.metadata = train::run_metadata(recipe.net, lo.transform.min_size, lo.transform.max_size, recipe.name);
  if (leader) {
    std::cout << fmt::format("{}: {} training images, {} identities; configuration {}, recipe {}: {} epochs of {} "
                             "iterations (batch {}), {} lr {} (x0.1 from epoch {}) -> {}\n",
                             dataset.name, dataset.train.size(), dataset.num_train_ids, name, recipe.name, to.epochs,
                             loader.batches_per_epoch(), lo.batch_size,
                             to.optimizer == train::OptimizerKind::adamw ? "adamw" : "sgd", to.schedule.base_lr,
                             to.schedule.milestones.at(0), o.out);
    if (to.schedule.milestones.at(0) >= to.epochs)
      std::cerr << fmt::format("warning: the learning rate's milestone (epoch {}) is not before the end ({} epochs): "
                               "it never decays (--milestone)\n", to.schedule.milestones.at(0), to.epochs);
  }
  const auto summary = train::fit(net, source, to);
  if (!leader) return 0;  // rank 0 reports and evaluates
  std::cout << fmt::format("trained {} iterations ({} in this run) in {}, {:.2f} images/s{}; checkpoint {}\n",
                           summary.iterations, summary.iterations_this_run, train::format_duration(summary.seconds),
                           summary.images_per_second,
                           launch.world_size > 1 ? fmt::format(" over {} processes", launch.world_size) : "",
                           summary.checkpoint);

  // 4. Evaluation on the test split, with the dataset's protocol.
  if (o.evaluate) {
    eval::InferenceOptions io;
    io.min_size = lo.transform.min_size;
    io.max_size = lo.transform.max_size;
    io.device = device;
    const auto outputs = eval::compute_search_outputs(net, dataset, io);
    const auto table = eval::score_search_outputs(dataset, outputs);
    std::cout << eval::format_table(table);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 02: train a configuration (the paper's, the small CPU one, an ablation row) with its "
               "recipe"};
  Options o;
  const auto configurations = train::example_configurations();
  auto& f = o.flags;
  app.set_config("--config-file", "", "read options from a file (TOML / INI: `name = value` lines)");
  app.add_option("--dataset", o.dataset, "cuhk-sysu, prw or json")
      ->check(CLI::IsMember({"cuhk-sysu", "prw", "json"}))->capture_default_str();
  app.add_option("--root", o.root, "dataset folder (json: the dataset's .json file)");
  app.add_option("--out", o.out, "run folder: checkpoint.pt, train_log.csv/.jsonl, curves.png")->capture_default_str();
  app.add_option("--config", o.config,
                 fmt::format("the configuration: paper (paper-<dataset>) or one of {}",
                             train::configuration_names(configurations)))->capture_default_str();
  bool list = false;
  app.add_flag("--list-configs", list, "print the configurations, their recipes' values and the network options, "
               "then stop");
  app.add_option("--weights", o.weights, "torchvision ResNet-50 weights for the paper configuration (see README)");
  app.add_option("--gallery-size", o.gallery_size, "CUHK-SYSU protocol used for --evaluate")->capture_default_str();
  // The recipe's values (train/recipe.hpp; --list-configs prints them): each flag given replaces one.
  const auto recipe_option = [&](const std::string& flag, auto& value, const std::string& help) {
    return f[flag] = app.add_option(flag, value, help);
  };
  recipe_option("--epochs", o.epochs, "epochs (recipe: paper 14 CUHK-SYSU, 10 PRW; small 12)");
  recipe_option("--batch-size", o.batch_size, "images per iteration, over all processes (recipes: 4)");
  recipe_option("--lr", o.lr, "learning rate after warm-up (recipe: paper 0.003, small 0.001)");
  recipe_option("--optimizer", o.optimizer, "sgd or adamw (recipe: paper sgd, small adamw)")
      ->check(CLI::IsMember({"sgd", "adamw"}));
  recipe_option("--momentum", o.momentum, "SGD momentum; AdamW's beta1 (recipes: 0.9)");
  recipe_option("--weight-decay", o.weight_decay,
                "SGD: L2 on the gradient; AdamW: decoupled (recipes: 5e-4)");
  recipe_option("--decay-biases", o.decay_biases,
                "whether biases get weight decay too (recipes: true, as SeqNet; NAE: false)");
  recipe_option("--warmup", o.warmup,
                "warm-up iterations, -1: one epoch (recipe: paper one epoch, small 30)");
  recipe_option("--milestone", o.milestone,
                "epoch from which the rate is x0.1 (recipe: paper 8, small 10)");
  recipe_option("--clip", o.clip, "clip the gradient norm to this, 0: off (recipe: paper 0, small 10)");
  recipe_option("--min-size", o.min_size,
                "short side after resizing, 0: the pictures' own (recipe: paper 900, small 0)");
  recipe_option("--max-size", o.max_size,
                "long side limit, 0: the pictures' own (recipe: paper 1500, small 0)");
  recipe_option("--flip", o.flip, "horizontal flip probability (recipes: 0.5)");
  recipe_option("--rois-per-image", o.rois_per_image,
                "RoIs sampled per image for the heads (recipe: paper 128, small 32)");
  recipe_option("--queue-background", o.queue_background,
                "whether background proposals enter the re-id queue (the paper: yes)");
  recipe_option("--net-option", o.net_options,
                "set a network option, name=value (repeatable; --list-configs lists them), e.g. "
                "branches.part_loss.scores=probabilities, branches.detection_loss.box_beta=1, "
                "branches.detection_loss.box_weight=10, stem.frozen_up_to=conv1, "
                "stem.norm=trainable, sampler.bg_iou_threshold=0.1");
  app.add_option("--workers", o.workers, "loader threads (0: load on the training thread)")->capture_default_str();
  app.add_option("--checkpoint-every", o.checkpoint_every, "also checkpoint every N iterations")->capture_default_str();
  app.add_option("--max-iterations", o.max_iterations, "stop after N iterations in total (a checkpoint is written)");
  app.add_flag("--resume", o.resume, "continue from OUT/checkpoint.pt");
  app.add_option("--seed", o.seed, "initialisation, sampling and data order")->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda[:N]")->capture_default_str();
  auto* amp = app.add_flag("--amp", o.amp, "mixed precision: CUDA autocast to --amp-dtype (CUDA only)");
  app.add_option("--amp-dtype", o.amp_dtype, "with --amp: float16 (with dynamic loss scaling) or bfloat16 (fp16, bf16)")
      ->check(CLI::IsMember({"float16", "bfloat16", "fp16", "bf16"}))->needs(amp)->capture_default_str();
  app.add_option("--threads", o.threads, "intra-op threads (0: all cores, shared by the local processes)")
      ->capture_default_str();
  app.add_option("--nproc", o.nproc, "data parallelism: start this many processes on this machine (not under "
                 "torchrun/SLURM, which start them)")->capture_default_str()->check(CLI::Range(1, 1024));
  app.add_option("--dist-timeout", o.dist_timeout, "data parallelism: seconds any collective may take before "
                 "the processes stop (a rank that died or hangs)")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_flag("--evaluate", o.evaluate, "score the trained model on the test split");
  CLI11_PARSE(app, argc, argv);
  try {
    if (list) {
      boost::hana::for_each(configurations, [](const auto& entry) {
        const auto r = entry.recipe();
        const auto& t = r.trainer;
        std::cout << fmt::format("{:<28} {}\n{:<28} recipe {}: {} epochs, batch {}, {} lr {} (warm-up {}, x0.1 from "
                                 "epoch {}), momentum {}, weight decay {}, clip {}, pictures {}/{}\n",
                                 entry.name, entry.summary, "", r.name, t.epochs, r.loader.batch_size,
                                 t.optimizer == train::OptimizerKind::adamw ? "adamw" : "sgd", t.schedule.base_lr,
                                 t.schedule.warmup_iterations, t.schedule.milestones.at(0), t.momentum,
                                 t.weight_decay, t.clip_grad_norm, r.loader.transform.min_size,
                                 r.loader.transform.max_size);
      });
      std::cout << "\nnetwork options (--net-option name=value; the defaults, which the recipes change in part):\n"
                << net_options_text(NetOptions{});
      return 0;
    }
    TRIDENT_CHECK(!o.root.empty(), "02_train: --root is required (the dataset's folder or .json file)");
    const auto launch = distributed::LaunchEnvironment::from_environment();
    if (o.nproc > 1 && launch.source == "defaults") {
      // This program again, as o.nproc processes with torchrun's variables, without --nproc.
      std::vector<std::string> args{distributed::this_program()};
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--nproc") {
          ++i;
          continue;
        }
        if (a.rfind("--nproc=", 0) == 0) continue;
        args.push_back(a);
      }
      distributed::LocalLaunchOptions lo;
      lo.processes = o.nproc;
      std::cout << fmt::format("trident example 02: starting {} processes\n", o.nproc) << std::flush;
      const auto result = distributed::launch_local(args, lo);
      if (result.first_failed >= 0)
        std::cerr << fmt::format("error: rank {} failed (exit status {})\n", result.first_failed, result.exit_code());
      return result.exit_code();
    }
    if (o.threads == 0)  // processes of one machine share its cores
      o.threads = launch.threads_from(static_cast<int>(std::thread::hardware_concurrency()));
    const int threads = use_all_cores(o.threads);
    if (launch.rank == 0) std::cout << fmt::format("trident example 02, {} threads\n", threads);
    // 1. The dataset, through its own reader.
    data::ReadOptions read_options;
    read_options.gallery_size = o.gallery_size;
    const data::Dataset dataset = data::read_dataset(o.dataset, o.root, read_options);
    TRIDENT_CHECK(!dataset.train.empty(), "02_train: the {} dataset '{}' has no training image (its split 'train' is "
                  "empty)", o.dataset, o.root);
    if (dataset.num_train_ids == 0 && launch.rank == 0)
      std::cerr << fmt::format("warning: the {} dataset '{}' has no labeled training identity: the look-up table is "
                               "empty, so the re-identification losses id, bin and un stay 0\n",
                               o.dataset, o.root);
    const std::string name = train::configuration_name(o.config, o.dataset);
    return train::with_configuration(configurations, name, [&](const auto& entry) {
      using Cfg = typename std::decay_t<decltype(entry)>::config;
      auto recipe = with_command_line(entry.recipe(), o);
      // A recipe's picture size 0: the pictures at their own size (the synthetic ones are 192 x 320).
      auto& t = recipe.loader.transform;
      if (t.min_size == 0 || t.max_size == 0) {
        const auto& first = dataset.images.at(static_cast<size_t>(dataset.train.at(0)));
        const auto [short_side, long_side] = data::picture_sides(first.path);
        if (t.min_size == 0) t.min_size = short_side;
        if (t.max_size == 0) t.max_size = long_side;
      }
      if (!std::is_same_v<typename Cfg::backbone, backbone::ResNetSmall> && o.weights.empty() && !o.resume &&
          launch.rank == 0)
        std::cerr << "warning: a ResNet-50 configuration without --weights trains from random weights\n";
      return run<Cfg>(o, std::string(entry.name), launch, std::move(recipe), dataset);
    });
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
