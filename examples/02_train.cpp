// 02_train — train trident: the paper's configuration on CUHK-SYSU or PRW, or the small CPU configuration on
// any dataset (the synthetic one of example 01 to begin with).
//
//   ./build/examples/02_train --dataset cuhk-sysu --root data/synthetic --config small --out out/small
//   ./build/examples/02_train --dataset prw --root /data/PRW --config paper --weights resnet50.pt --device cuda --amp
//   ./build/examples/02_train --config-file train.toml          (any option, as `name = value` lines)
//   ./build/examples/02_train ... --resume                      (continue exactly where the last run stopped)
//   ./build/examples/02_train ... --nproc 2                     (data parallelism: 2 processes on this machine)
//   torchrun --nnodes 2 --nproc-per-node 8 ./build/examples/02_train ... --device cuda   (many machines)
//
// What it does:
//   1. reads the dataset with its own reader (CUHK-SYSU's .mat files, PRW's, or the JSON format of your data);
//   2. builds the network: `paper` = PaperConfig<CuhkSysu|Prw> (ResNet-50, conv1 + layer1 frozen, ImageNet
//      weights from --weights); `small` = SmallConfig (a quarter-width ResNet trained from scratch);
//   3. trains with train::fit: SGD (paper) or AdamW (small), warm-up to --lr, x0.1 at --milestone, fed by
//      data::Loader's worker threads; checkpoint.pt, train_log.csv/.jsonl and curves.png go into --out;
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
#include <trident/model/configs.hpp>
#include <trident/backbone/weights.hpp>
#include <trident/train/loader_source.hpp>
#include <trident/viz/curves.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <cstdlib>
#include <iostream>
#include <thread>

namespace {
using namespace trident;

using Small = SmallCpuConfig;  // room for 512 training identities (a compile-time size), RoIs of 12 x 4

struct Options {
  std::string dataset = "cuhk-sysu", root, out = "out/train", config = "small", weights, device = "cpu",
              optimizer;
  int gallery_size = 50;
  int64_t epochs = 0, batch_size = 4, min_size = 0, max_size = 0, checkpoint_every = 0, max_iterations = -1;
  int64_t warmup = -1, milestone = 0, rois_per_image = 0;
  int workers = 2, threads = 0, nproc = 1;
  double dist_timeout = 600;
  double lr = 0, clip = 0, flip = 0.5, momentum = 0.9, weight_decay = 5e-4;
  int64_t seed = 0;
  bool resume = false, amp = false, evaluate = false, queue_background = true;
  std::string amp_dtype = "float16";
};

/// The network options the command line changes, on top of a configuration's own.
NetOptions with_command_line(NetOptions net_options, const Options& o) {
  if (o.rois_per_image > 0) net_options.sampler.batch_size_per_image = o.rois_per_image;
  net_options.branches.memory.queue_background = o.queue_background;
  return net_options;
}

/// Trains a TridentNet<Cfg> whose look-up table has `lut_rows` rows.
template <class Cfg>
int run(const Options& o, const distributed::LaunchEnvironment& launch, NetOptions net_options,
        const data::Dataset& dataset, int64_t lut_rows) {
  TRIDENT_CHECK(dataset.num_train_ids <= lut_rows,
                "02_train: '{}' has {} training identities, the {} configuration's look-up table has {} rows",
                o.root, dataset.num_train_ids, o.config, lut_rows);
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
                               "batch of {} images\n", launch.world_size, launch.source, o.batch_size);
  }
  // 2. The network. The seed fixes the initialisation here and, inside fit(), the proposal sampling.
  at::manual_seed(static_cast<uint64_t>(o.seed));
  TridentNet<Cfg> net(net_options);
  if (!o.weights.empty() && !o.resume) {
    backbone::load_torchvision_weights(o.weights, net.stem(), net.head());
    if (leader) std::cout << fmt::format("ImageNet weights from {}\n", o.weights);
  }

  // 3. Data: worker threads decode, resize, flip and normalise; the order is a function of (seed, epoch).
  data::LoaderOptions lo;
  lo.batch_size = o.batch_size;
  lo.workers = o.workers;
  lo.seed = static_cast<uint64_t>(o.seed);
  lo.shard_rank = launch.rank;  // --batch-size is the global batch: this process loads its part of each
  lo.shard_count = launch.world_size;
  lo.transform.flip_probability = o.flip;
  if (o.min_size > 0) lo.transform.min_size = o.min_size;
  if (o.max_size > 0) lo.transform.max_size = o.max_size;
  data::Loader loader(dataset, dataset.train, lo);
  train::LoaderSource source(loader);

  train::TrainerOptions to;
  to.epochs = o.epochs;
  to.optimizer = o.optimizer == "adamw" ? train::OptimizerKind::adamw : train::OptimizerKind::sgd;
  to.momentum = o.momentum;
  to.weight_decay = o.weight_decay;
  to.schedule.base_lr = o.lr;
  to.schedule.warmup_iterations = o.warmup;
  to.schedule.milestones = {o.milestone};
  to.clip_grad_norm = o.clip;
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
  // Recorded in each checkpoint; --resume refuses a checkpoint of another configuration by name.
  to.configuration = o.config == "small" ? std::string("small") : "paper-" + o.dataset;
  if (leader)
    std::cout << fmt::format("{}: {} training images, {} identities; {} config, {} epochs of {} iterations (batch {}), "
                           "{} lr {} -> {}\n",
                           dataset.name, dataset.train.size(), dataset.num_train_ids, o.config, o.epochs,
                           loader.batches_per_epoch(), o.batch_size, o.optimizer, o.lr, o.out);
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
  CLI::App app{"trident example 02: train the paper's configuration or the small CPU configuration"};
  Options o;
  app.set_config("--config-file", "", "read options from a file (TOML / INI: `name = value` lines)");
  app.add_option("--dataset", o.dataset, "cuhk-sysu, prw or json")
      ->check(CLI::IsMember({"cuhk-sysu", "prw", "json"}))->capture_default_str();
  app.add_option("--root", o.root, "dataset folder (json: the dataset's .json file)")->required();
  app.add_option("--out", o.out, "run folder: checkpoint.pt, train_log.csv/.jsonl, curves.png")->capture_default_str();
  app.add_option("--config", o.config, "small (CPU, from scratch) or paper (ResNet-50)")
      ->check(CLI::IsMember({"small", "paper"}))->capture_default_str();
  app.add_option("--weights", o.weights, "torchvision ResNet-50 weights for the paper configuration (see README)");
  app.add_option("--gallery-size", o.gallery_size, "CUHK-SYSU protocol used for --evaluate")->capture_default_str();
  app.add_option("--epochs", o.epochs, "epochs (default: CUHK-SYSU 14, PRW 10; small: 12)");
  app.add_option("--batch-size", o.batch_size, "images per iteration (with several processes: all of theirs)")->capture_default_str();
  app.add_option("--lr", o.lr, "learning rate after warm-up (default: paper 0.003; small: adamw 0.001, sgd 0.01)");
  app.add_option("--optimizer", o.optimizer, "sgd or adamw (default: paper sgd, small adamw)")
      ->check(CLI::IsMember({"sgd", "adamw"}));
  app.add_option("--momentum", o.momentum, "SGD momentum; AdamW's beta1")->capture_default_str();
  app.add_option("--weight-decay", o.weight_decay, "SGD: L2 on the gradient; AdamW: decoupled")->capture_default_str();
  app.add_option("--warmup", o.warmup, "warm-up iterations (-1: one epoch, the paper's)")->capture_default_str();
  app.add_option("--milestone", o.milestone, "epoch from which the rate is x0.1 (default: paper 8, small: the last 2 epochs)");
  app.add_option("--clip", o.clip, "clip the gradient norm to this (0: off; small default 10)");
  app.add_option("--min-size", o.min_size, "short side after resizing (default: paper 900, small: the picture's)");
  app.add_option("--max-size", o.max_size, "long side limit (default: paper 1500, small: the picture's)");
  app.add_option("--rois-per-image", o.rois_per_image, "RoIs sampled per image for the heads (default: paper 128, small 64)");
  app.add_option("--queue-background", o.queue_background,
                 "whether background proposals enter the re-id queue (the paper: yes)")->capture_default_str();
  app.add_option("--flip", o.flip, "horizontal flip probability")->capture_default_str();
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
    const bool small = o.config == "small";
    if (o.optimizer.empty()) o.optimizer = small ? "adamw" : "sgd";
    if (o.epochs == 0) o.epochs = small ? 12 : o.dataset == "prw" ? 10 : 14;
    if (o.lr == 0) o.lr = small ? (o.optimizer == "adamw" ? 1e-3 : 0.01) : 3e-3;
    if (o.milestone == 0) o.milestone = small ? std::max<int64_t>(1, o.epochs - 2) : 8;
    if (small && o.clip == 0) o.clip = 10.0;
    if (small) {
      // The small configuration keeps the pictures at their own size (the synthetic ones are 192 x 320).
      const auto& first = dataset.images.at(static_cast<size_t>(dataset.train.at(0)));
      const auto [short_side, long_side] = data::picture_sides(first.path);
      if (o.min_size == 0) o.min_size = short_side;
      if (o.max_size == 0) o.max_size = long_side;
      return run<Small>(o, launch, with_command_line(small_net_options(), o), dataset, 512);
    }
    if (o.weights.empty() && !o.resume)
      std::cerr << "warning: the paper configuration without --weights trains ResNet-50 from random weights\n";
    const NetOptions net_options = with_command_line({}, o);
    if (o.dataset == "prw") return run<PaperConfig<Prw>>(o, launch, net_options, dataset, Prw::identities);
    return run<PaperConfig<CuhkSysu>>(o, launch, net_options, dataset, CuhkSysu::identities);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
