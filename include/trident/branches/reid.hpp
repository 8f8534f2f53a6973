#pragma once
/// \file trident/branches/reid.hpp
/// The re-identification branch (Section 4.2, Figure 2, blue). Two encoders, one fully connected layer each,
/// map g-hat (C4) and g (C5) to EmbedDim features; their concatenation, L2-normalised, is the embedding x_i.
/// Scores S_i are cosine similarities to the look-up table of identities and to the circular queue; the loss
/// is L_re-id of Eq. (6) (losses/reid.hpp), AGWF-weighted by the detection confidence. After the loss, the
/// batch updates the memory: labeled proposals their identity's row (OIM momentum), unlabeled and background
/// proposals the queue. Logged losses: "id", "bin" and "un" (the latter already multiplied by lambda, so that the
/// sum of the logged losses is Eq. (6)).

#include <trident/branches/concepts.hpp>
#include <trident/core/data_parallel.hpp>
#include <trident/core/policies.hpp>
#include <trident/losses/reid.hpp>
#include <trident/memory/reid_memory.hpp>

#include <ATen/ops/cat.h>
#include <torch/nn/init.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/linear.h>

#include <memory>

namespace trident::branches {

/// Which terms of Eq. (6) the branch trains with: all of them (the paper), or L_id alone (the "w/o L_bin &
/// L_un" row of Table 2).
struct FullReidLoss {};
struct IdLossOnly {};

template <class Lut, class Queue, class Embed = EmbedDim<128>, class Terms = FullReidLoss>
class ReidBranch : public torch::nn::Module {
  static_assert(std::is_same_v<Terms, FullReidLoss> || std::is_same_v<Terms, IdLossOnly>,
                "ReidBranch<Lut, Queue, Embed, Terms>: Terms must be FullReidLoss or IdLossOnly");
  static_assert(is_size_tag_v<Lut, LutSize>, "ReidBranch<Lut, Queue, Embed>: Lut must be LutSize<N>");
  static_assert(is_size_tag_v<Queue, QueueSize>, "ReidBranch<Lut, Queue, Embed>: Queue must be QueueSize<N>");
  static_assert(is_size_tag_v<Embed, EmbedDim>, "ReidBranch<Lut, Queue, Embed>: Embed must be EmbedDim<N>");

 public:
  static constexpr std::string_view name = "reid";
  /// "un" is logged already multiplied by lambda (the sum of the logged losses is Eq. (6)).
  static constexpr auto loss_names = [] {
    if constexpr (std::is_same_v<Terms, FullReidLoss>) return std::array<std::string_view, 3>{"id", "bin", "un"};
    else return std::array<std::string_view, 1>{"id"};
  }();
  static constexpr int64_t lut_size = Lut::value;
  static constexpr int64_t queue_size = Queue::value;
  static constexpr int64_t encoder_dim = Embed::value;
  static constexpr int64_t embedding_dim = 2 * Embed::value;
  using Memory = memory::ReidMemory<lut_size, queue_size, embedding_dim>;

  explicit ReidBranch(const BranchSetup& setup) : options_(setup.reid_loss) {
    encoder_hat_ = register_module("encoder_hat", torch::nn::Linear(setup.stem_channels, encoder_dim));
    encoder_ = register_module("encoder", torch::nn::Linear(setup.head_channels, encoder_dim));
    for (auto* l : {&encoder_hat_, &encoder_}) {
      torch::nn::init::normal_((*l)->weight, 0.0, 0.01);
      torch::nn::init::zeros_((*l)->bias);
    }
    if (setup.reid_embedding_norm) {
      norm_hat_ = register_module("norm_hat", torch::nn::BatchNorm1d(encoder_dim));
      norm_ = register_module("norm", torch::nn::BatchNorm1d(encoder_dim));
    }
    memory_ = register_module("memory", std::make_shared<Memory>(setup.memory));
  }

  /// The embedding x_i: [K, 2 * EmbedDim], unit L2 norm.
  at::Tensor embed(const RoiContext& ctx) {
    auto a = encoder_hat_->forward(ctx.g_hat), b = encoder_->forward(ctx.g);
    if (norm_) {
      a = norm_hat_->forward(a);
      b = norm_->forward(b);
    }
    const auto x = at::cat({a, b}, 1);
    return x / x.norm(2, {1}, /*keepdim=*/true).clamp_min(1e-12);
  }

  template <class Weighting, losses::ConfidenceGradient C>
  void add_losses(const RoiContext& ctx, LossMap& out) {
    TRIDENT_CHECK(ctx.sampled != nullptr, "trident::branches::ReidBranch: training needs sampled proposals");
    const auto x = embed(ctx);
    const auto& labels = ctx.sampled->pids;
    const auto terms = losses::reid_loss<Weighting, C>(memory_->scores(x), labels, ctx.detection.alpha, lut_size,
                                                       options_);
    out.add("id", terms.id);
    if constexpr (std::is_same_v<Terms, FullReidLoss>) {
      out.add("bin", terms.bin);
      out.add("un", options_.lambda_unlabeled * terms.un);
    }
    // Safe before backward(): scores() used a copy of the memory. The labels are read on the host from the
    // sampler's early copy, so the update does not wait for the device to finish the forward pass. When the batch
    // is split over processes, every process applies the rows of all of them in rank order (gather_rows,
    // core/data_parallel.hpp), so the memories stay identical and equal to one process's with the whole batch.
    const auto& own_labels = ctx.sampled->pids_on_host.defined() ? ctx.sampled->pids_on_host.get() : labels;
    const auto rows = gather_rows({x.detach(), own_labels});
    memory_->update(rows[0], rows[1]);
  }

  void infer(const RoiContext& ctx, RoiOutputs& outputs) { outputs["embedding"] = embed(ctx); }

  Memory& memory() { return *memory_; }
  const losses::ReidLossOptions& options() const { return options_; }

 private:
  losses::ReidLossOptions options_;
  torch::nn::Linear encoder_hat_{nullptr}, encoder_{nullptr};
  torch::nn::BatchNorm1d norm_hat_{nullptr}, norm_{nullptr};
  std::shared_ptr<Memory> memory_;
};

}  // namespace trident::branches
