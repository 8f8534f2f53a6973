#pragma once
/// \file trident/train/recipe.hpp
/// Training recipes: every number a training run takes besides its configuration's types, in one place — the
/// optimisation (train::TrainerOptions), the data (data::LoaderOptions: batch size, picture sizes, flips) and
/// the network's runtime options (NetOptions). Two recipes ship:
///
///   paper_recipe("cuhk-sysu")  Section 5.2: batch 4, SGD (momentum 0.9, weight decay 5e-4), lr 3e-3 with a
///                              linear warm-up over the first epoch, x0.1 after epoch 8, 14 epochs (PRW: 10),
///                              pictures resized to 900 / 1500, flips; the network's options at their defaults
///                              (docs/paper-mapping.md lists each value and where it comes from);
///   small_recipe()             the recipe of the README's main job for SmallCpuConfig on the synthetic
///                              benchmark (docs/training.md has the runs that chose it).
///
///   auto recipe = train::paper_recipe("prw");
///   recipe.trainer.out_dir = "out/prw";                     // a recipe is plain data: change what you like
///   TridentNet<PaperConfig<Prw>> net(recipe.net);
///   data::Loader loader(dataset, dataset.train, recipe.loader);
///   train::fit(net, source, recipe.trainer);

#include <trident/data/loader_options.hpp>
#include <trident/model/configs.hpp>
#include <trident/train/trainer.hpp>

#include <string>
#include <string_view>

namespace trident::train {

struct Recipe {
  std::string name;           ///< "paper-cuhk-sysu", "paper-prw", "small"
  TrainerOptions trainer{};   ///< epochs, optimizer, learning-rate schedule, momentum, weight decay, clipping
  /// Batch size (images per iteration, over all processes), flips, picture sizes: transform.min_size and
  /// max_size 0 mean "each picture at its own size" (a program resolves them from the dataset's pictures).
  data::LoaderOptions loader{};
  NetOptions net{};           ///< the network's runtime options
};

/// The paper's recipe (Section 5.2) for "cuhk-sysu" or "prw" (their epoch counts differ: 14 and 10); any other
/// name is an error naming it.
inline Recipe paper_recipe(std::string_view dataset) {
  TRIDENT_CHECK(dataset == "cuhk-sysu" || dataset == "prw",
                "trident::train::paper_recipe: the paper trains on 'cuhk-sysu' or 'prw', got '{}'", dataset);
  Recipe r;
  r.name = fmt::format("paper-{}", dataset);
  r.trainer.epochs = dataset == "prw" ? 10 : 14;
  r.trainer.optimizer = OptimizerKind::sgd;
  r.trainer.momentum = 0.9;
  r.trainer.weight_decay = 5e-4;
  r.trainer.schedule.base_lr = 3e-3;
  r.trainer.schedule.warmup_iterations = -1;  // one epoch
  r.trainer.schedule.milestones = {8};
  r.trainer.clip_grad_norm = 0.0;             // the paper clips nothing (SeqNet and NAE clip at 10)
  r.loader.batch_size = 4;
  r.loader.transform.min_size = 900;
  r.loader.transform.max_size = 1500;
  r.loader.transform.flip_probability = 0.5;
  return r;
}

/// The small configuration's recipe, the README's main job (cmake/run-main.sh): 12 epochs of batch 4, AdamW at
/// 1e-3 (weight decay 5e-4, decoupled) after a warm-up of 30 iterations, x0.1 for the last 2 epochs, gradients
/// clipped at 10, 32 RoIs per image, the pictures at their own size (the synthetic benchmark's are 192 x 320).
inline Recipe small_recipe() {
  Recipe r;
  r.name = "small";
  r.trainer.epochs = 12;
  r.trainer.optimizer = OptimizerKind::adamw;
  r.trainer.momentum = 0.9;
  r.trainer.weight_decay = 5e-4;
  r.trainer.schedule.base_lr = 1e-3;
  r.trainer.schedule.warmup_iterations = 30;
  r.trainer.schedule.milestones = {10};
  r.trainer.clip_grad_norm = 10.0;
  r.loader.batch_size = 4;
  r.loader.transform.min_size = 0;  // the pictures' own size
  r.loader.transform.max_size = 0;
  r.loader.transform.flip_probability = 0.5;
  r.net = small_net_options();  // model/configs.hpp
  r.net.sampler.batch_size_per_image = 32;
  return r;
}

}  // namespace trident::train
