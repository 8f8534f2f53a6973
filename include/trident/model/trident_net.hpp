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

#include <trident/backbone/concepts.hpp>
#include <trident/backbone/resnet.hpp>
#include <trident/branches/concepts.hpp>
#include <trident/branches/detection.hpp>
#include <trident/core/cuda_graphs.hpp>
#include <trident/core/types.hpp>
#include <trident/detector/roi_sampler.hpp>
#include <trident/detector/rpn.hpp>
#include <trident/model/config.hpp>
#include <trident/ops/nms.hpp>
#include <trident/ops/pooling.hpp>

#include <boost/hana/find_if.hpp>
#include <boost/hana/for_each.hpp>
#include <boost/hana/tuple.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/where.h>
#include <ATen/ops/zeros.h>
#include <c10/core/GradMode.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <type_traits>
#include <vector>

namespace trident {

/// Runtime options of the whole network; the paper's values by default, and trident's choices where the paper
/// leaves one open (docs/paper-mapping.md, "Choices the paper leaves open", compares them with SeqNet and NAE).
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
  /// detect() and describe() on a CUDA device without autograd: replay each stage as a CUDA graph
  /// (core/cuda_graphs.hpp; docs/design.md, "CUDA graphs"). A stage whose capture fails runs eagerly.
  bool cuda_graphs = false;
};

namespace detail {

/// B::loss_names, or none for a type without them (check_branch has said why it is not a branch).
template <class B>
constexpr auto loss_names_of() {
  if constexpr (branches::HasLossNames<B>) {
    std::array<std::string_view, std::tuple_size_v<std::remove_cvref_t<decltype(B::loss_names)>>> out{};
    for (size_t i = 0; i < out.size(); ++i) out[i] = B::loss_names[i];
    return out;
  } else {
    return std::array<std::string_view, 0>{};
  }
}

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
  /// Every loss the network adds: the RPN's two, then each branch's loss_names.
  static constexpr size_t loss_count = 2 + (size_t{0} + ... + loss_names_of<Bs>().size());
  static constexpr std::array<std::string_view, loss_count> loss_names = [] {
    std::array<std::string_view, loss_count> all{"rpn_cls", "rpn_reg"};
    size_t i = 2;
    ([&] {
      for (const auto name : loss_names_of<Bs>()) all[i++] = name;
    }(), ...);
    return all;
  }();
  static constexpr bool loss_names_unique() {
    for (size_t i = 0; i < loss_names.size(); ++i)
      for (size_t j = i + 1; j < loss_names.size(); ++j)
        if (loss_names[i] == loss_names[j]) return false;
    return true;
  }
};

/// Whether T is the options_type of exactly one of the branches Bs.
template <class T, class... Bs>
constexpr int options_owners() {
  return (0 + ... + [] {
    if constexpr (branches::HasBranchOptions<Bs>) return std::is_same_v<T, typename Bs::options_type> ? 1 : 0;
    else return 0;
  }());
}

template <class BranchList, class... Os>
struct branch_options_fit;
template <class... Bs, class... Os>
struct branch_options_fit<Branches<Bs...>, Os...> {
  static constexpr bool each_owned_once = ((options_owners<Os, Bs...>() == 1) && ...);
  template <class T>
  static constexpr int given = (0 + ... + (std::is_same_v<T, Os> ? 1 : 0));
  static constexpr bool each_given_once = ((given<Os> == 1) && ...);
};

/// While one is alive on a thread, TridentNet::detect() on that thread takes its fixed layout on any device (the
/// layout of CUDA graphs and of NMS on the device: see detect()): how the tests check that path on the CPU.
class ScopedFixedDetectLayout {
 public:
  ScopedFixedDetectLayout() : previous_(forced()) { forced() = true; }
  ~ScopedFixedDetectLayout() { forced() = previous_; }
  ScopedFixedDetectLayout(const ScopedFixedDetectLayout&) = delete;
  ScopedFixedDetectLayout& operator=(const ScopedFixedDetectLayout&) = delete;
  static bool& forced() {
    thread_local bool on = false;
    return on;
  }

 private:
  bool previous_;
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
                "TridentNet<Config>: two branches have the same `name`; names are module names, so they must be "
                "unique");
  static_assert(Traits::loss_names_unique(),
                "TridentNet<Config>: two branches declare the same loss name in `loss_names` (or one of the RPN's, "
                "rpn_cls and rpn_reg): losses are logged and summed by name, so every name must be unique");
  static_assert(backbone::check_backbone<typename Cfg::backbone>());
  static_assert(roi::check_pooler<typename Cfg::pooler>());

 public:
  using config = Cfg;
  using Backbone = typename Cfg::backbone;
  using Pooler = typename Cfg::pooler;
  using Weighting = typename Cfg::weighting;
  static constexpr losses::ConfidenceGradient confidence = Cfg::confidence;

  /// The stem's and the head's module holders, as the backbone policy makes them (backbone::ResNetStem and
  /// ResNetHead for backbone::ResNet<...>).
  using Stem = decltype(Backbone::make_stem(std::declval<const backbone::StemOptions&>()));
  using Head = decltype(Backbone::make_head(backbone::BatchNormMode::frozen));

  explicit TridentNet(NetOptions options = {}) : options_(std::move(options)) { build(); }

  /// With options of the branches that have their own (branches/concepts.hpp: options_type), one value per
  /// such branch at most, in any order; a branch whose options are not given gets options_type{}.
  template <class O, class... Os>
  TridentNet(NetOptions options, const O& first, const Os&... rest) : options_(std::move(options)) {
    using Fit = detail::branch_options_fit<typename Cfg::branches, O, Os...>;
    static_assert(Fit::each_owned_once,
                  "TridentNet<Config>(options, branch_options...): each branch option must be the `options_type` of "
                  "exactly one of the configuration's branches");
    static_assert(Fit::each_given_once, "TridentNet<Config>(options, branch_options...): a branch's options are given "
                                        "twice");
    build(first, rest...);
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
      using B = typename std::decay_t<decltype(branch)>::element_type;
      const auto before = static_cast<std::ptrdiff_t>(out.size());
      branch->template add_losses<Weighting, confidence>(ctx, out);
      for (auto it = out.begin() + before; it != out.end(); ++it)
        TRIDENT_CHECK(std::find(B::loss_names.begin(), B::loss_names.end(), it->first) != B::loss_names.end(),
                      "trident::TridentNet::losses: branch '{}' added a loss '{}' that its loss_names do not declare "
                      "({})", B::name, it->first, fmt::join(B::loss_names, ", "));
    });
    return out;
  }

  /// Inference: per image, detections with scores and every branch's outputs for the detected boxes.
  ///
  /// Three stages, each with shapes that depend only on the input sizes, around the two NMS: (1) the stem, the
  /// RPN's head and its pre-NMS candidates; (2) the RoI pass on the proposals: confidence and refined boxes; (3)
  /// the describe pass on the detected boxes: every branch's outputs describe exactly the reported box.
  /// On a CUDA device, where NMS runs on the device (ops::detail::nms_greedy_on_device) or CUDA graphs are on,
  /// detect() takes its fixed layout: the proposals stay on the device, padded to the RPN's post-NMS count per
  /// image (ops::detail::nms_each_padded), so the only wait for the device is the second NMS's count of the
  /// detections, the size of the output; elsewhere each NMS waits once for the whole batch (on the CPU: nothing to
  /// wait for). With NetOptions::cuda_graphs on a CUDA device (no autograd), each stage is replayed as a CUDA graph
  /// (core/cuda_graphs.hpp): stage 2 on the fixed layout, stage 3 on the detections padded to a multiple of 32 per
  /// image.
  std::vector<Detections> detect(const ImageBatch& batch) {
    check_batch(batch, "trident::TridentNet::detect");
    const bool graphed = graphs_enabled(batch.images);
    const auto images = static_cast<size_t>(batch.images.size(0));
    // Stage 1.
    const auto stage1 = [&](const std::vector<at::Tensor>& in) {
      std::vector<at::Tensor> out{stem_->forward(in[0])};
      for (const auto& p : rpn_->candidates(out[0], batch.sizes)) {
        out.push_back(p.boxes);
        out.push_back(p.scores);
        out.push_back(p.valid);
      }
      return out;
    };
    const auto s1 = graphed ? graphs_->run("detect.stem+rpn" + sizes_key(batch), {batch.images}, stage1)
                            : stage1({batch.images});
    const auto& features = s1[0];
    std::vector<ops::detail::NmsProblem> candidates(images);
    for (size_t i = 0; i < images; ++i) {
      candidates[i] = {s1[3 * i + 1], s1[3 * i + 2], s1[3 * i + 3], at::Tensor(), rpn_->options().nms_threshold,
                       rpn_->post_nms_top_n()};
    }
    const bool fixed = graphed || detail::ScopedFixedDetectLayout::forced() ||
                       ops::detail::nms_greedy_on_device(candidates);
    // The proposals as rois [K, 5] and how many of them each image has; in the fixed layout `rows` per image
    // (the post-NMS count, or every candidate when it is not capped), of which those in `proposal_valid`
    // [images, rows] are proposals and the rest padding_boxes.
    int64_t rows = -1;
    at::Tensor rois, proposal_valid;
    std::vector<int64_t> proposal_counts;
    if (fixed) {
      auto kept = ops::detail::nms_each_padded(candidates).index;  // [images, the cap]: no wait
      rows = std::max<int64_t>(kept.size(1), 1);  // a row per image at least: a graph's tensors are never empty
      if (kept.size(1) < rows) kept = at::full({kept.size(0), rows}, -1, kept.options());
      proposal_valid = kept >= 0;
      const auto pad = images > 0 ? padding_boxes(1, candidates[0].boxes.options()) : at::Tensor();
      std::vector<at::Tensor> proposals;
      for (size_t i = 0; i < images; ++i) {
        const auto& boxes = candidates[i].boxes;
        const auto index = kept.select(0, static_cast<int64_t>(i));
        proposals.push_back(at::where(proposal_valid.select(0, static_cast<int64_t>(i)).unsqueeze(1),
                                      boxes.index_select(0, index.clamp_min(0)), pad));
        proposal_counts.push_back(rows);
      }
      rois = ops::boxes_to_rois(proposals);
    } else {
      detector::RpnOutput rpn;
      detector::RegionProposalNetworkImpl::select_proposals(candidates, rpn);
      rois = rois_of(rpn.proposals, rows);
      for (const auto& p : rpn.proposals) proposal_counts.push_back(p.size(0));
    }

    // Stage 2.
    const auto stage2 = [&](const std::vector<at::Tensor>& in) {
      auto ctx = roi_context(in[0], in[1], rows, &proposal_counts);
      const auto d = detection_branch().detect(ctx);
      const auto refined = ops::BoxCoder(options_.sampler.box_coder_weights).decode(d.deltas, in[1].narrow(1, 1, 4));
      return std::vector<at::Tensor>{d.alpha, refined};
    };
    const auto s2 = graphed ? graphs_->run("detect.roi", {features, rois}, stage2) : stage2({features, rois});
    // Per image: clipped, masked (confidence >= score_threshold, size >= min_box_size; in the fixed layout the
    // proposals only) and suppressed.
    std::vector<ops::detail::NmsProblem> problems(images);
    int64_t offset = 0;
    for (size_t i = 0; i < images; ++i) {
      const int64_t n = proposal_counts[i];
      auto& p = problems[i];
      p.boxes = ops::clip_boxes_to_image(s2[1].narrow(0, offset, n), batch.sizes[i][0], batch.sizes[i][1]);
      p.scores = s2[0].narrow(0, offset, n);
      p.valid = (p.scores >= options_.score_threshold) & ops::box_size_at_least(p.boxes, options_.min_box_size);
      if (fixed) p.valid &= proposal_valid.select(0, static_cast<int64_t>(i));
      p.iou_threshold = options_.nms_threshold;
      p.max_keep = options_.detections_per_image;
      offset += n;
    }
    const auto keep = ops::detail::nms_each(problems);  // the wait: how many boxes each image keeps
    std::vector<at::Tensor> kept_boxes, kept_scores;
    for (size_t i = 0; i < images; ++i) {
      kept_boxes.push_back(problems[i].boxes.index_select(0, keep[i]));
      kept_scores.push_back(problems[i].scores.index_select(0, keep[i]));
    }
    // Stage 3.
    auto outputs = describe_features(features, kept_boxes, graphed);
    std::vector<Detections> out(images);
    for (size_t i = 0; i < images; ++i) {
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
    for (size_t i = 0; i < boxes.size(); ++i) {
      ops::check_box_shape(boxes[i], "trident::TridentNet::describe", fmt::format("boxes[{}]", i));
      TRIDENT_CHECK(boxes[i].device() == batch.images.device(),
                    "trident::TridentNet::describe: boxes[{}] is on {}, the images on {}", i, boxes[i].device().str(),
                    batch.images.device().str());
      if (checks_values(boxes[i])) ops::validate_boxes(boxes[i], "trident::TridentNet::describe",
                                                          fmt::format("boxes[{}]", i));
    }
    const bool graphed = graphs_enabled(batch.images);
    const auto stem = [&](const std::vector<at::Tensor>& in) { return std::vector<at::Tensor>{stem_->forward(in[0])}; };
    const auto features = graphed ? graphs_->run("describe.stem", {batch.images}, stem)[0] : stem({batch.images})[0];
    return describe_features(features, boxes, graphed);
  }

  /// The CUDA graphs of detect() and describe() (NetOptions::cuda_graphs): how many are held, replayed, failed.
  const CudaGraphs& cuda_graphs() const { return *graphs_; }

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

  Stem& stem() { return stem_; }
  Head& head() { return head_; }
  detector::RegionProposalNetwork& rpn() { return rpn_; }
  const NetOptions& options() const { return options_; }

 private:
  template <class... Os>
  void build(const Os&... branch_options) {
    stem_ = register_module("stem", Backbone::make_stem(options_.stem));
    rpn_ = register_module("rpn", detector::RegionProposalNetwork(Backbone::stem_channels, options_.rpn));
    head_ = register_module("head", Backbone::make_head(options_.stem.norm));
    if constexpr (std::constructible_from<Pooler, const roi::RoiAlignPoolerOptions&>) pooler_.emplace(options_.pooler);
    else pooler_.emplace();
    auto setup = options_.branches;
    setup.stem_channels = Backbone::stem_channels;
    setup.head_channels = Backbone::head_channels;
    branches_ = make_branches(setup, static_cast<typename Traits::type*>(nullptr), branch_options...);
  }

  template <class... Ptrs, class... Os>
  boost::hana::tuple<Ptrs...> make_branches(const branches::BranchSetup& setup, boost::hana::tuple<Ptrs...>*,
                                            const Os&... branch_options) {
    return boost::hana::tuple<Ptrs...>{register_module(
        std::string(Ptrs::element_type::name), make_branch<typename Ptrs::element_type>(setup, branch_options...))...};
  }

  /// Branch B, with its options from `branch_options` when it has options of its own (options_type{} when none of
  /// them is of that type).
  template <class B, class... Os>
  static std::shared_ptr<B> make_branch(const branches::BranchSetup& setup, const Os&... branch_options) {
    if constexpr (branches::HasBranchOptions<B>) {
      using O = typename B::options_type;
      const O* given = nullptr;
      ([&] {
        if constexpr (std::is_same_v<O, Os>) given = &branch_options;
      }(), ...);
      return given != nullptr ? std::make_shared<B>(setup, *given) : std::make_shared<B>(setup, O{});
    } else {
      return std::make_shared<B>(setup);
    }
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
    ctx.pooled = (*pooler_)(features, boxes);
    fill_heads(ctx);
    return ctx;
  }

  /// The context of rois [K, 5] laid out by rois_of(): per image `rows` rows (rows > 0), else the images' boxes
  /// one after the other, `counts` of them per image (ctx.boxes: per image, padding rows included).
  branches::RoiContext roi_context(const at::Tensor& features, const at::Tensor& rois, int64_t rows,
                                   const std::vector<int64_t>* counts = nullptr) {
    branches::RoiContext ctx;
    const auto boxes = rois.narrow(1, 1, 4);
    if (rows > 0) {
      for (int64_t i = 0; i * rows < rois.size(0); ++i) ctx.boxes.push_back(boxes.narrow(0, i * rows, rows));
    } else if (counts != nullptr) {
      int64_t first = 0;
      for (const int64_t n : *counts) {
        ctx.boxes.push_back(boxes.narrow(0, first, n));
        first += n;
      }
    } else {
      ctx.boxes.push_back(boxes);
    }
    ctx.pooled = (*pooler_)(features, rois);
    fill_heads(ctx);
    return ctx;
  }

  void fill_heads(branches::RoiContext& ctx) {
    ctx.g_map = head_->forward(ctx.pooled);
    ctx.g_hat = ops::max_pool_strips(ctx.pooled, 1).flatten(1);
    ctx.g = ops::max_pool_strips(ctx.g_map, 1).flatten(1);
  }

  /// `rows` boxes that fill a fixed layout's unused rows: 16 x 16 at the origin (valid for every picture and
  /// pooler; their outputs are computed and dropped).
  static at::Tensor padding_boxes(int64_t rows, const at::TensorOptions& options) {
    auto pad = at::zeros({rows, 4}, options);
    pad.narrow(1, 2, 2).fill_(16.0);
    return pad;
  }

  /// Per-image boxes -> rois [K, 5] (image index, x1, y1, x2, y2): the boxes one image after the other
  /// (rows < 0), or each image's boxes padded to `rows` rows with padding_boxes (rows > 0: the fixed layout of a
  /// CUDA graph).
  static at::Tensor rois_of(const std::vector<at::Tensor>& boxes, int64_t rows) {
    if (rows < 0) return ops::boxes_to_rois(boxes);
    std::vector<at::Tensor> padded;
    for (const auto& b : boxes) {
      TRIDENT_CHECK(b.size(0) <= rows, "trident::TridentNet: {} boxes for a layout of {} per image", b.size(0), rows);
      padded.push_back(at::cat({b, padding_boxes(rows - b.size(0), b.options())}, 0));
    }
    return ops::boxes_to_rois(padded);
  }

  /// Every branch's outputs for per-image boxes, per image (stage 3 of detect, and describe).
  std::vector<RoiOutputs> describe_features(const at::Tensor& features, const std::vector<at::Tensor>& boxes,
                                            bool graphed) {
    std::vector<int64_t> counts;
    int64_t most = 0;
    for (const auto& b : boxes) {
      counts.push_back(b.size(0));
      most = std::max(most, b.size(0));
    }
    const int64_t rows = graphed ? std::max<int64_t>(32, (most + 31) / 32 * 32) : -1;
    const auto rois = rois_of(boxes, rows);
    const auto stage3 = [&](const std::vector<at::Tensor>& in) {
      auto ctx = roi_context(in[0], in[1], rows, &counts);
      ctx.detection = detection_branch().detect(ctx);
      RoiOutputs all;
      boost::hana::for_each(branches_, [&](auto& branch) { branch->infer(ctx, all); });
      std::vector<at::Tensor> values;
      output_names_.clear();
      for (const auto& [name, value] : all) {
        output_names_.push_back(name);
        values.push_back(value);
      }
      return values;
    };
    const auto values = graphed ? graphs_->run("describe.roi", {features, rois}, stage3) : stage3({features, rois});
    std::vector<RoiOutputs> per_image(boxes.size());
    int64_t offset = 0;
    for (size_t i = 0; i < boxes.size(); ++i) {
      const int64_t first = graphed ? static_cast<int64_t>(i) * rows : offset;
      for (size_t k = 0; k < values.size(); ++k) {
        const auto rows_of_image = values[k].narrow(0, first, counts[i]);
        // A graph's outputs are its static tensors, overwritten by the next replay: the caller gets a copy.
        per_image[i][output_names_[k]] = graphed ? rows_of_image.clone() : rows_of_image;
      }
      offset += counts[i];
    }
    return per_image;
  }

  /// Whether detect() / describe() replay CUDA graphs for these images; forgets the graphs when any parameter
  /// or buffer changed (storage or version) since they were captured.
  bool graphs_enabled(const at::Tensor& images) {
    if (!options_.cuda_graphs || !CudaGraphs::available() || !images.is_cuda() || c10::GradMode::is_enabled())
      return false;
    std::vector<std::pair<const void*, uint32_t>> stamp;
    for (const auto& t : parameters()) stamp.emplace_back(t.data_ptr(), t._version());
    for (const auto& t : buffers()) stamp.emplace_back(t.data_ptr(), t._version());
    if (stamp != weights_stamp_) {
      graphs_->clear();
      weights_stamp_ = std::move(stamp);
    }
    return true;
  }

  /// The image sizes of a batch as part of a graph's key (stage 1 clips to them).
  static std::string sizes_key(const ImageBatch& batch) {
    std::string key;
    for (const auto& s : batch.sizes) key += fmt::format("|{}x{}", s[0], s[1]);
    return key;
  }

  NetOptions options_;
  Stem stem_{nullptr};
  detector::RegionProposalNetwork rpn_{nullptr};
  Head head_{nullptr};
  std::optional<Pooler> pooler_;  ///< set in build() (a pooler policy may not be default-constructible)
  typename Traits::type branches_;
  std::shared_ptr<CudaGraphs> graphs_ = std::make_shared<CudaGraphs>();
  std::vector<std::pair<const void*, uint32_t>> weights_stamp_;
  std::vector<std::string> output_names_;  ///< stage 3's outputs, in the order its function returns them
};

}  // namespace trident
