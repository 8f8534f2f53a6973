#pragma once
/// \file trident/model/trident_net.hpp
/// TridentNet<Config>: the person-search network of the paper (Figure 2), composed from a configuration.
///
///   image -> stem (conv1..conv4) -> RPN -> proposals -> [training: sample 128 per image]
///         -> RoIAlign (Pooler) -> head (conv5) -> g-hat, g -> detection branch (alpha) -> the other branches
///
/// Training: losses(batch, targets) returns the named losses (rpn_cls, rpn_reg, then each branch's: det_cls,
/// det_reg, id, bin, un, part, ...) whose total() the trainer back-propagates; the re-id memory is updated
/// inside the call. Inference: detect(batch) returns per image the detected boxes, their scores (the
/// detection confidence) and every branch's per-box outputs (the re-id "embedding"); describe(batch, boxes)
/// gives the same outputs for given boxes (the query's ground-truth box).

#include <trident/backbone/resnet.hpp>
#include <trident/branches/concepts.hpp>
#include <trident/branches/detection.hpp>
#include <trident/core/types.hpp>
#include <trident/detector/roi_sampler.hpp>
#include <trident/detector/rpn.hpp>
#include <trident/model/config.hpp>
#include <trident/ops/nms.hpp>

#include <boost/hana/find_if.hpp>
#include <boost/hana/for_each.hpp>
#include <boost/hana/tuple.hpp>

#include <ATen/ops/adaptive_max_pool2d.h>
#include <ATen/ops/cat.h>

#include <array>
#include <memory>
#include <string_view>
#include <type_traits>
#include <vector>

namespace trident {

/// Runtime options of the whole network; the paper's (and its reference codebases') values by default.
struct NetOptions {
  backbone::StemOptions stem{};
  detector::RpnOptions rpn{};
  detector::RoiSamplerOptions sampler{};
  roi::RoiAlignPoolerOptions pooler{};
  branches::BranchSetup branches{};  ///< loss scalars; the channel widths are filled from the backbone
  double score_threshold = 0.5;      ///< detections below this confidence are dropped (inference)
  double nms_threshold = 0.4;        ///< NMS of the detections (inference)
  int64_t detections_per_image = 300;
  double min_box_size = 1e-2;
};

namespace detail {

template <class BranchList>
struct branch_tuple;
template <class... Bs>
struct branch_tuple<Branches<Bs...>> {
  static_assert((branches::check_branch<Bs>() && ...));
  using type = boost::hana::tuple<std::shared_ptr<Bs>...>;
  static constexpr std::array<std::string_view, sizeof...(Bs)> names{Bs::name...};
  static constexpr int detection_count = (0 + ... + (branches::DetectionBranchLike<Bs> ? 1 : 0));
  template <class B>
  static constexpr bool contains = (std::is_same_v<B, Bs> || ...);
  static constexpr bool names_unique() {
    for (size_t i = 0; i < names.size(); ++i)
      for (size_t j = i + 1; j < names.size(); ++j)
        if (names[i] == names[j]) return false;
    return true;
  }
};

}  // namespace detail

template <class Cfg>
class TridentNet : public torch::nn::Module {
  using Traits = detail::branch_tuple<typename Cfg::branches>;
  static_assert(Traits::detection_count == 1,
                "TridentNet<Config>: the configuration needs exactly one detection branch (a branch with "
                "`DetectionOutputs detect(const RoiContext&)`, e.g. trident::branches::DetectionBranch): it provides "
                "the confidence alpha that AGWF weights the other branches' losses with");
  static_assert(Traits::names_unique(),
                "TridentNet<Config>: two branches have the same `name`; names are module names and loss prefixes, "
                "so they must be unique");

 public:
  using config = Cfg;
  using Backbone = typename Cfg::backbone;
  using Pooler = typename Cfg::pooler;
  using Weighting = typename Cfg::weighting;
  static constexpr losses::ConfidenceGradient confidence = Cfg::confidence;

  explicit TridentNet(NetOptions options = {}) : options_(std::move(options)) {
    stem_ = register_module("stem", Backbone::make_stem(options_.stem));
    rpn_ = register_module("rpn", detector::RegionProposalNetwork(Backbone::stem_channels, options_.rpn));
    head_ = register_module("head", Backbone::make_head(options_.stem.norm));
    pooler_ = Pooler(options_.pooler);
    auto setup = options_.branches;
    setup.stem_channels = Backbone::stem_channels;
    setup.head_channels = Backbone::head_channels;
    branches_ = make_branches(setup, static_cast<typename Traits::type*>(nullptr));
  }

  /// Training step's forward: every loss, by name. `targets` holds one Target per image.
  LossMap losses(const ImageBatch& batch, const std::vector<Target>& targets) {
    TRIDENT_CHECK(is_training(), "trident::TridentNet::losses: call train() first (the model is in eval mode)");
    check_batch(batch, "trident::TridentNet::losses");
    TRIDENT_CHECK(targets.size() == batch.sizes.size(), "trident::TridentNet::losses: {} targets for {} images",
                  targets.size(), batch.sizes.size());
    const auto features = stem_->forward(batch.images);
    auto rpn = rpn_->forward(features, batch.sizes, &targets);
    LossMap out;
    out.add("rpn_cls", rpn.loss_objectness);
    out.add("rpn_reg", rpn.loss_box);
    const auto sampled = detector::sample_proposals(rpn.proposals, targets, options_.sampler);
    auto ctx = roi_context(features, sampled.boxes);
    ctx.sampled = &sampled;
    ctx.detection = detection_branch().detect(ctx);
    boost::hana::for_each(branches_, [&](auto& branch) {
      branch->template add_losses<Weighting, confidence>(ctx, out);
    });
    return out;
  }

  /// Inference: per image, detections with scores and every branch's outputs for the detected boxes.
  std::vector<Detections> detect(const ImageBatch& batch) {
    check_batch(batch, "trident::TridentNet::detect");
    const auto features = stem_->forward(batch.images);
    const auto rpn = rpn_->forward(features, batch.sizes);
    // First pass on the proposals: confidence and refined boxes.
    auto ctx = roi_context(features, rpn.proposals);
    ctx.detection = detection_branch().detect(ctx);
    const auto refined = ops::BoxCoder(options_.sampler.box_coder_weights).decode(ctx.detection.deltas,
                                                                                 at::cat(rpn.proposals));
    std::vector<at::Tensor> kept_boxes, kept_scores;
    int64_t offset = 0;
    for (size_t i = 0; i < rpn.proposals.size(); ++i) {
      const int64_t n = rpn.proposals[i].size(0);
      auto boxes = ops::clip_boxes_to_image(refined.narrow(0, offset, n), batch.sizes[i][0], batch.sizes[i][1]);
      auto scores = ctx.detection.alpha.narrow(0, offset, n);
      offset += n;
      auto keep = (scores >= options_.score_threshold).nonzero().select(1, 0);
      boxes = boxes.index_select(0, keep);
      scores = scores.index_select(0, keep);
      keep = ops::remove_small_boxes(boxes, options_.min_box_size);
      boxes = boxes.index_select(0, keep);
      scores = scores.index_select(0, keep);
      keep = ops::nms(boxes, scores, options_.nms_threshold);
      keep = keep.narrow(0, 0, std::min(options_.detections_per_image, keep.size(0)));
      kept_boxes.push_back(boxes.index_select(0, keep));
      kept_scores.push_back(scores.index_select(0, keep));
    }
    // Second pass on the detected boxes: every branch's outputs describe exactly the reported box.
    auto outputs = describe_features(features, kept_boxes);
    std::vector<Detections> out(kept_boxes.size());
    for (size_t i = 0; i < out.size(); ++i) {
      out[i].boxes = kept_boxes[i];
      out[i].scores = kept_scores[i];
      out[i].outputs = std::move(outputs[i]);
    }
    return out;
  }

  /// Every branch's outputs for given boxes (e.g. a query's ground-truth box), per image.
  std::vector<RoiOutputs> describe(const ImageBatch& batch, const std::vector<at::Tensor>& boxes) {
    check_batch(batch, "trident::TridentNet::describe");
    TRIDENT_CHECK(boxes.size() == batch.sizes.size(), "trident::TridentNet::describe: {} box sets for {} images",
                  boxes.size(), batch.sizes.size());
    return describe_features(stem_->forward(batch.images), boxes);
  }

  /// The branch of type B (a compile error if the configuration has none).
  template <class B>
  B& branch() {
    static_assert(Traits::template contains<B>, "TridentNet::branch<B>(): the configuration has no branch of type B");
    B* found = nullptr;
    boost::hana::for_each(branches_, [&](auto& b) {
      if constexpr (std::is_same_v<typename std::decay_t<decltype(b)>::element_type, B>) found = b.get();
    });
    return *found;
  }

  backbone::ResNetStem& stem() { return stem_; }
  backbone::ResNetHead& head() { return head_; }
  detector::RegionProposalNetwork& rpn() { return rpn_; }
  const NetOptions& options() const { return options_; }

 private:
  template <class... Ptrs>
  boost::hana::tuple<Ptrs...> make_branches(const branches::BranchSetup& setup, boost::hana::tuple<Ptrs...>*) {
    return boost::hana::tuple<Ptrs...>{
        register_module(std::string(Ptrs::element_type::name), std::make_shared<typename Ptrs::element_type>(setup))...};
  }

  auto& detection_branch() {
    auto found = boost::hana::find_if(branches_, [](const auto& b) {
      return boost::hana::bool_c<branches::DetectionBranchLike<typename std::decay_t<decltype(b)>::element_type>>;
    });
    return **found;
  }

  void check_batch(const ImageBatch& batch, std::string_view caller) const {
    TRIDENT_CHECK(batch.images.defined() && batch.images.dim() == 4 && batch.images.size(1) == 3,
                  "{}: images must be [B, 3, H, W], got {}", caller, shape_of(batch.images));
    TRIDENT_CHECK(static_cast<int64_t>(batch.sizes.size()) == batch.images.size(0),
                  "{}: {} image sizes for a batch of {}", caller, batch.sizes.size(), batch.images.size(0));
    for (size_t i = 0; i < batch.sizes.size(); ++i)
      TRIDENT_CHECK(batch.sizes[i][0] > 0 && batch.sizes[i][1] > 0 && batch.sizes[i][0] <= batch.images.size(2) &&
                        batch.sizes[i][1] <= batch.images.size(3),
                    "{}: image {} has size {}x{}, outside the padded batch {}", caller, i, batch.sizes[i][0],
                    batch.sizes[i][1], shape_of(batch.images));
  }

  branches::RoiContext roi_context(const at::Tensor& features, const std::vector<at::Tensor>& boxes) {
    branches::RoiContext ctx;
    ctx.boxes = boxes;
    ctx.pooled = pooler_(features, boxes);
    ctx.g_map = head_->forward(ctx.pooled);
    ctx.g_hat = std::get<0>(at::adaptive_max_pool2d(ctx.pooled, {1, 1})).flatten(1);
    ctx.g = std::get<0>(at::adaptive_max_pool2d(ctx.g_map, {1, 1})).flatten(1);
    return ctx;
  }

  std::vector<RoiOutputs> describe_features(const at::Tensor& features, const std::vector<at::Tensor>& boxes) {
    auto ctx = roi_context(features, boxes);
    ctx.detection = detection_branch().detect(ctx);
    RoiOutputs all;
    boost::hana::for_each(branches_, [&](auto& branch) { branch->infer(ctx, all); });
    std::vector<RoiOutputs> per_image(boxes.size());
    int64_t offset = 0;
    for (size_t i = 0; i < boxes.size(); ++i) {
      const int64_t n = boxes[i].size(0);
      for (const auto& [name, value] : all) per_image[i][name] = value.narrow(0, offset, n);
      offset += n;
    }
    return per_image;
  }

  NetOptions options_;
  backbone::ResNetStem stem_{nullptr};
  detector::RegionProposalNetwork rpn_{nullptr};
  backbone::ResNetHead head_{nullptr};
  Pooler pooler_;
  typename Traits::type branches_;
};

}  // namespace trident
