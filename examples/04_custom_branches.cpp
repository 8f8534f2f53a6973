// 04_custom_branches — compose your own trident: add a branch of your own, remove one of the paper's.
//
//   ./build/examples/04_custom_branches [--iterations 30] [--threads 0]
//
// A branch is any torch::nn::Module with a `name`, the `loss_names` it adds, a constructor from BranchSetup (and
// from options of its own, if it has any), templated `add_losses` and `infer` (trident/branches/concepts.hpp).
// The network runs the detection branch first, so every branch can read the detection confidence alpha — and
// weight its own loss with it as the configuration says (losses::confidence_weights). Here we:
//   1. write ShapeBranch, which learns the aspect ratio log(h / w) of the person a proposal belongs to from g
//      (a self-supervised task: the boxes are the labels), weights its loss by the confidence, and has an option
//      of its own (the loss's weight);
//   2. build a configuration with detection + re-id + ShapeBranch, without the part branch;
//   3. train it for a few iterations on generated scenes and print every loss;
//   4. run inference and read ShapeBranch's per-detection output next to the re-id embedding.
// A type that is not a branch fails to compile with a sentence saying what is missing (try deleting `infer`), and
// so does a configuration whose branches declare the same loss name (try naming ShapeBranch's loss "id").

#include <trident/core/threads.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/train/foreach_sgd.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <ATen/ops/log.h>
#include <ATen/ops/smooth_l1_loss.h>
#include <torch/nn/init.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/sgd.h>

#include <iostream>

namespace {

using namespace trident;

// --- 1. A branch of our own ------------------------------------------------------------------------------------
class ShapeBranch : public torch::nn::Module {
 public:
  static constexpr std::string_view name = "shape";                          // its module name
  static constexpr std::array<std::string_view, 1> loss_names{"shape"};       // every loss it adds

  // Options of its own: given to the network's constructor beside NetOptions (options_type{} when not given).
  struct Options {
    double weight = 1.0;  // the loss's weight in the total
  };
  using options_type = Options;

  ShapeBranch(const branches::BranchSetup& setup, const Options& options) : options_(options) {
    // The widths come from the backbone policy, so the branch works on ResNet-50 and on the small backbone.
    regressor_ = register_module("regressor", torch::nn::Linear(setup.head_channels, 1));
    torch::nn::init::normal_(regressor_->weight, 0.0, 0.01);  // as the paper initialises its branch layers
    torch::nn::init::zeros_(regressor_->bias);
  }

  // Training: log aspect ratio of the matched person's box, on foreground RoIs only.
  template <class Weighting, losses::ConfidenceGradient C>
  void add_losses(const branches::RoiContext& ctx, LossMap& out) {
    const auto fg = ctx.sampled->is_foreground().nonzero().select(1, 0);
    const auto boxes = ctx.sampled->matched_boxes.index_select(0, fg);
    const auto target = at::log((boxes.select(1, 3) - boxes.select(1, 1)) / (boxes.select(1, 2) - boxes.select(1, 0)));
    const auto predicted = regressor_->forward(ctx.g.index_select(0, fg)).squeeze(1);
    auto per_roi = at::smooth_l1_loss(predicted, target, at::Reduction::None, 1.0);
    // Follow the configuration's gradient weighting: with AGWF, trust confident detections more (alpha, detached
    // unless the configuration propagates it); without AGWF, every RoI alike (ones).
    per_roi = per_roi * losses::confidence_weights<Weighting, C>(ctx.detection.alpha.index_select(0, fg));
    out.add("shape", options_.weight * (fg.numel() ? per_roi.mean() : predicted.sum() * 0));
  }

  // Inference: the predicted aspect ratio h / w of every detection.
  void infer(const branches::RoiContext& ctx, branches::RoiOutputs& outputs) {
    outputs["aspect"] = regressor_->forward(ctx.g).squeeze(1).exp();
  }

 private:
  torch::nn::Linear regressor_{nullptr};
  Options options_;
};

// --- 2. A configuration: the small backbone, detection + re-id + ShapeBranch, no part branch ----------------
using Mine = Config<backbone::ResNetSmall, roi::RoiAlignPooler<24, 8>,
                    Branches<branches::DetectionBranch,
                             branches::ReidBranch<LutSize<4>, QueueSize<64>, EmbedDim<64>>,
                             ShapeBranch>,
                    losses::Agwf>;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"trident example 04: a custom branch added, the part branch removed, trained a few iterations"};
  int iterations = 30, threads = 0;
  app.add_option("--iterations", iterations, "training iterations")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "intra-op threads (0: all cores)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    std::cout << fmt::format("trident example 04, {} threads\n", use_all_cores(threads));
    at::manual_seed(0);
    NetOptions options;
    options.stem.frozen_up_to = backbone::FrozenUpTo::none;  // the small backbone trains from scratch
    options.stem.norm = backbone::BatchNormMode::trainable;
    options.rpn.post_nms_top_n_train = 128;
    options.rpn.post_nms_top_n_test = 50;
    options.sampler.batch_size_per_image = 32;
    ShapeBranch::Options shape;  // ShapeBranch's own options, beside the network's
    shape.weight = 0.5;
    TridentNet<Mine> net(options, shape);

    // --- 3. Train on four generated scenes --------------------------------------------------------------------
    auto scenes = data::make_toy_scenes(4, 2, 4);
    const double base_lr = 0.003;  // the paper's learning rate
    // train::ForeachSgd is torch::optim::SGD (same arithmetic and state) with multi-tensor updates that write the
    // parameters in place, so the inference below folds the trained weights (LibTorch's own optimizers write
    // through .data(): after them call train::mark_parameters_updated before an inference forward).
    train::ForeachSgd sgd(net.parameters(), torch::optim::SGDOptions(base_lr).momentum(0.9).weight_decay(5e-4));
    net.train();
    const int warmup = std::max(1, iterations / 3);
    for (int it = 0; it < iterations; ++it) {
      // Linear warm-up of the learning rate, as the paper's schedule: a detector's first steps are fragile.
      const double lr = base_lr * std::min(1.0, (it + 1.0) / warmup);
      for (auto& group : sgd.param_groups()) static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr);
      const auto losses = net.losses(scenes.batch, scenes.targets);
      std::string line = fmt::format("iter {:3d}  total {:.3f} ", it, losses.total().item<double>());
      for (const auto& [name, value] : losses) line += fmt::format(" {} {:.3f}", name, value.item<double>());
      if (it % 5 == 0 || it + 1 == iterations) std::cout << line << "\n";
      sgd.zero_grad();
      losses.total().backward();
      torch::nn::utils::clip_grad_norm_(net.parameters(), 10.0);  // a from-scratch backbone's early steps are rough
      sgd.step();
    }

    // --- 4. Inference: detections with both branches' outputs -------------------------------------------------
    net.eval();
    const auto detections = net.detect(scenes.batch);
    for (size_t i = 0; i < detections.size(); ++i) {
      const auto& d = detections[i];
      std::cout << fmt::format("image {}: {} detections", i, d.boxes.size(0));
      for (int64_t k = 0; k < std::min<int64_t>(d.boxes.size(0), 2); ++k)
        std::cout << fmt::format("  [score {:.2f}, aspect {:.2f}, embedding {}]", d.scores[k].item<double>(),
                                 d.outputs.at("aspect")[k].item<double>(),
                                 trident::shape_of(d.outputs.at("embedding")[k]));
      std::cout << "\n";
    }
    std::cout << "(the people drawn are 2.5 times as tall as wide)\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
