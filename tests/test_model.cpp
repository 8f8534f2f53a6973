// TridentNet: the paper configuration and its ablations build and take a training step; a small configuration
// learns a handful of generated scenes; inference outputs; compile-time composition.
#include "support/fixtures.hpp"
#include "support/host_reads.hpp"

#include <trident/core/threads.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>
#include <trident/losses/reid.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/search/similarity.hpp>

#include <torch/csrc/autograd/autograd.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/optim/sgd.h>

#include <fmt/ranges.h>

#include <set>

using namespace trident;

namespace {

std::set<std::string> loss_names(const LossMap& losses) {
  std::set<std::string> names;
  for (const auto& [name, value] : losses) {
    names.insert(name);
    CHECK_MESSAGE(std::isfinite(value.item<double>()), name, " = ", value.item<double>());
  }
  return names;
}

NetOptions test_net_options() {
  NetOptions o;
  o.stem.frozen_up_to = backbone::FrozenUpTo::none;  // no pretrained weights for the small backbone:
  o.stem.norm = backbone::BatchNormMode::trainable;   // it trains from scratch, with trained batch norms
  o.rpn.pre_nms_top_n_train = 600;
  o.rpn.post_nms_top_n_train = 128;
  o.rpn.pre_nms_top_n_test = 300;
  o.rpn.post_nms_top_n_test = 50;
  o.sampler.batch_size_per_image = 32;
  return o;
}

}  // namespace

TEST_CASE("the paper configuration (ResNet-50, CUHK-SYSU sizes) runs a training step on the CPU") {
  at::manual_seed(0);
  TridentNet<PaperConfig<CuhkSysu>> net;
  net.train();
  auto scenes = data::make_toy_scenes(1, 2, 3, 160, 96);
  // The re-id memory starts at zero, so the first step cannot give the encoders a gradient (as in OIM); it
  // fills the memory, and the second step is checked.
  net.losses(scenes.batch, scenes.targets);
  const auto losses = net.losses(scenes.batch, scenes.targets);
  CHECK(loss_names(losses) == std::set<std::string>{"rpn_cls", "rpn_reg", "det_cls", "det_reg", "id", "bin", "un", "part"});
  losses.total().backward();
  // Gradients reach the RPN, the head and every branch; conv1/layer1 are frozen.
  for (const auto& item : net.named_parameters()) {
    const auto& name = item.key();
    const auto& p = item.value();
    if (name.rfind("stem.conv1", 0) == 0 || name.rfind("stem.layer1", 0) == 0) {
      CHECK_MESSAGE(!p.requires_grad(), name);
    } else if (name.find("part.") != std::string::npos || name.find("reid.") != std::string::npos ||
               name.find("det.") != std::string::npos || name.find("rpn.") != std::string::npos) {
      const bool has_grad = p.grad().defined() && p.grad().abs().sum().item<double>() > 0;
      CHECK_MESSAGE(has_grad, name);
    }
  }
  auto& reid = net.branch<PaperReidBranch<CuhkSysu>>();
  CHECK(reid.memory().lookup_table->features().size(0) == 5532);
  CHECK(reid.memory().queue->features().size(0) == 5000);
}

TEST_CASE("the host-read probe counts item(), nonzero and boolean indexing, and skips the host-only paths") {
  const auto x = at::arange(6, at::kFloat);
  test::HostReadProbe probe;
  (void)(x > 2).nonzero();
  (void)x.sum().item<float>();
  (void)x.index({x > 3});
  {
    const trident::detail::HostPath host_only;
    (void)x.max().item<float>();
  }
  (void)(x * 2 + 1).sum();  // stays on the device
  const auto ops = probe.by_operator();
  CHECK(probe.count() == 3);
  CHECK(ops.at("aten::nonzero") == 2);
  CHECK(ops.at("aten::_local_scalar_dense") == 1);
}

TEST_CASE("a training step reads nothing from the device on the host, at any batch size (the CPU proxy)") {
  // With value checks off the CPU takes a GPU's path through the argument checks; the host-read probe then
  // sees every operator whose result the host would wait for on a GPU. What it cannot see (copies between the
  // host and a device) the CUDA suite's sync test covers on the GPU machine.
  for (const int64_t images : {1, 3}) {
    CAPTURE(images);
    at::manual_seed(7);
    auto options = test_net_options();
    TridentNet<PaperConfig<CuhkSysu, backbone::ResNetSmall>> net(options);
    net.train();
    auto scenes = data::make_toy_scenes(images, 2, 3);
    const trident::ValueChecksScope device_like(trident::ValueChecks::none);
    net.losses(scenes.batch, scenes.targets);  // fills the memory
    test::HostReadProbe forward;
    const auto losses = net.losses(scenes.batch, scenes.targets);
    const auto total = losses.total();
    CHECK_MESSAGE(forward.count() == 0, fmt::format("{}", fmt::join(forward.reads(), "; ")));
    test::HostReadProbe backward;
    total.backward();
    CHECK(backward.count() == 0);
  }
  // The default checks read CPU tensors: the probe sees them (it is not blind).
  TridentNet<PaperConfig<CuhkSysu, backbone::ResNetSmall>> net(test_net_options());
  net.train();
  auto scenes = data::make_toy_scenes(1, 2, 3);
  test::HostReadProbe checked;
  net.losses(scenes.batch, scenes.targets);
  CHECK(checked.count() > 0);
}

TEST_CASE("value checks: CPU tensors by default, all or none on request") {
  const auto scores = at::zeros({2, 3});
  const auto bad = at::tensor(std::vector<int64_t>{0, 7});
  CHECK(trident::value_checks() == trident::ValueChecks::host_tensors);
  CHECK_THROWS_WITH_AS(losses::reid_loss<losses::PlainSoftmax>(scores, bad, {}, 2),
                       doctest::Contains("must lie in [-2, 2), got values in [0, 7]"), trident::Error);
  {
    const trident::ValueChecksScope none(trident::ValueChecks::none);
    CHECK_FALSE(trident::checks_values(scores));
    CHECK_NOTHROW((void)ops::BoxCoder({1, 1, 1, 1}).encode(at::ones({1, 4}), at::zeros({1, 4})));
  }
  CHECK_THROWS_WITH_AS((void)ops::BoxCoder({1, 1, 1, 1}).encode(at::ones({1, 4}), at::zeros({1, 4})),
                       doctest::Contains("positive width and height"), trident::Error);
  {
    const trident::ValueChecksScope all(trident::ValueChecks::all_tensors);
    CHECK(trident::checks_values(scores));
    CHECK(trident::checks_values(at::Tensor()));
  }
  CHECK(trident::value_checks() == trident::ValueChecks::host_tensors);
  CHECK_FALSE(trident::checks_values(at::Tensor()));
}

TEST_CASE_TEMPLATE("the ablations of Tables 1 and 2 train with the right losses", Cfg,
                   PaperConfig<CuhkSysu, backbone::ResNetSmall>, WithoutPartConfig<Prw, backbone::ResNetSmall>,
                   WithoutAgwfConfig<Prw, backbone::ResNetSmall>, WithoutAgwfAndPartConfig<Prw, backbone::ResNetSmall>,
                   WithoutBinAndUnConfig<Prw, backbone::ResNetSmall>) {
  at::manual_seed(1);
  TridentNet<Cfg> net(test_net_options());
  net.train();
  auto scenes = data::make_toy_scenes(2, 2, 3);
  const auto losses = net.losses(scenes.batch, scenes.targets);
  const auto names = loss_names(losses);
  using B = typename Cfg::branches;
  constexpr bool has_part = !std::is_same_v<B, Branches<branches::DetectionBranch, PaperReidBranch<Prw>>> &&
                            !std::is_same_v<B, Branches<branches::DetectionBranch, PaperReidBranch<CuhkSysu>>>;
  CHECK(names.count("part") == (has_part ? 1u : 0u));
  constexpr bool full_reid = !std::is_same_v<Cfg, WithoutBinAndUnConfig<Prw, backbone::ResNetSmall>>;
  CHECK(names.count("bin") == (full_reid ? 1u : 0u));
  CHECK(names.count("un") == (full_reid ? 1u : 0u));
  CHECK(names.count("id") == 1);
  losses.total().backward();
}

TEST_CASE("a small configuration learns a handful of scenes: loss halves, training boxes are detected") {
  // Training is deterministic for a given seed *and* thread count (the order of parallel reductions changes the
  // rounding); pin two threads so that every machine follows the same trajectory.
  const int threads_before = at::get_num_threads();
  use_all_cores(2);
  at::manual_seed(2);
  using Small = SmallConfig<4, 64>;
  TridentNet<Small> net(test_net_options());
  auto scenes = data::make_toy_scenes(4, 2, 4);
  torch::optim::SGD sgd(net.parameters(), torch::optim::SGDOptions(0.005).momentum(0.9).weight_decay(5e-4));
  net.train();
  std::vector<double> totals;
  for (int it = 0; it < 100; ++it) {
    const auto losses = net.losses(scenes.batch, scenes.targets);
    const auto total = losses.total();
    sgd.zero_grad();
    total.backward();
    sgd.step();
    totals.push_back(total.item<double>());
    if (std::getenv("TRIDENT_TEST_VERBOSE") && it % 10 == 0) {
      std::string line = "it " + std::to_string(it);
      for (const auto& [name, value] : losses) line += " " + name + "=" + std::to_string(value.item<double>());
      MESSAGE(line);
    }
  }
  const double first = (totals[0] + totals[1] + totals[2]) / 3, last = (totals[97] + totals[98] + totals[99]) / 3;
  MESSAGE("total loss ", first, " -> ", last);
  CHECK(last < 0.5 * first);

  net.eval();
  const auto detections = net.detect(scenes.batch);
  int found = 0, people = 0;
  for (size_t i = 0; i < detections.size(); ++i) {
    const auto& gt = scenes.targets[i].boxes;
    people += static_cast<int>(gt.size(0));
    if (detections[i].boxes.size(0) == 0) continue;
    found += (std::get<0>(ops::box_iou(gt, detections[i].boxes).max(1)) >= 0.5).sum().item<int>();
    CHECK(detections[i].outputs.at("embedding").size(1) == 128);
    CHECK(detections[i].outputs.at("embedding").size(0) == detections[i].boxes.size(0));
  }
  MESSAGE("recall ", found, " / ", people);
  CHECK(found >= people - 1);

  // The folded eval() backbone (the default: batch norms inside the convolutions, channels-last) against the
  // layer-by-layer one on the trained network: the same detections, scores and every branch's outputs.
  backbone::set_batch_norm_folding(net, backbone::Folding::off);
  const auto unfolded = net.detect(scenes.batch);
  REQUIRE(unfolded.size() == detections.size());
  for (size_t i = 0; i < detections.size(); ++i) {
    CAPTURE(i);
    TRIDENT_CHECK_CLOSE(detections[i].boxes, unfolded[i].boxes, 1e-3);
    TRIDENT_CHECK_CLOSE(detections[i].scores, unfolded[i].scores, 1e-4);
    REQUIRE(detections[i].outputs.size() == unfolded[i].outputs.size());
    for (const auto& [name, value] : detections[i].outputs) TRIDENT_CHECK_CLOSE(value, unfolded[i].outputs.at(name), 1e-4);
  }
  backbone::set_batch_norm_folding(net, backbone::Folding::always);

  // detect()'s fixed layout (the GPU's: the proposals padded to the RPN's post-NMS count per image, from NMS
  // results kept as padded index tensors, with the padding masked out of the second NMS): the same detections.
  // The trained weights in a network whose RPN may keep all 300 candidates, so that padding rows occur, and
  // which reports every box of any confidence, so that a padding row that reached the second NMS would show.
  NetOptions wide = test_net_options();
  wide.rpn.post_nms_top_n_test = wide.rpn.pre_nms_top_n_test;
  wide.score_threshold = 0.0;
  TridentNet<Small> padded_net(wide);
  {
    const at::NoGradGuard no_grad;
    auto parameters = padded_net.named_parameters();
    for (const auto& p : net.named_parameters()) parameters[p.key()].copy_(p.value());
    auto buffers = padded_net.named_buffers();
    for (const auto& b : net.named_buffers()) buffers[b.key()].copy_(b.value());
    padded_net.eval();
    const auto features = padded_net.stem()->forward(scenes.batch.images);
    const auto kept = ops::detail::nms_each_padded(padded_net.rpn()->candidates(features, scenes.batch.sizes));
    CHECK(kept.index.size(1) == 300);
    CHECK((kept.count < 300).all().item<bool>());  // padding rows in every image
    CHECK((kept.count > 50).all().item<bool>());
  }
  const auto flexible = padded_net.detect(scenes.batch);
  const trident::detail::ScopedFixedDetectLayout fixed_layout;
  const auto fixed = padded_net.detect(scenes.batch);
  REQUIRE(fixed.size() == flexible.size());
  int64_t compared = 0;
  for (size_t i = 0; i < flexible.size(); ++i) {
    CAPTURE(i);
    REQUIRE(fixed[i].boxes.size(0) == flexible[i].boxes.size(0));
    compared += flexible[i].boxes.size(0);
    TRIDENT_CHECK_CLOSE(fixed[i].boxes, flexible[i].boxes, 1e-3);
    TRIDENT_CHECK_CLOSE(fixed[i].scores, flexible[i].scores, 1e-4);
    REQUIRE(fixed[i].outputs.size() == flexible[i].outputs.size());
    for (const auto& [name, value] : flexible[i].outputs) TRIDENT_CHECK_CLOSE(fixed[i].outputs.at(name), value, 1e-4);
  }
  MESSAGE("fixed layout: ", compared, " detections compared");
  CHECK(compared >= 8);
  use_all_cores(threads_before);
}

TEST_CASE("describe() embeds given boxes as unit vectors") {
  at::manual_seed(3);
  TridentNet<SmallConfig<4, 64>> net(test_net_options());
  net.eval();
  auto scenes = data::make_toy_scenes(2, 2, 4);
  const auto out = net.describe(scenes.batch, {scenes.targets[0].boxes, scenes.targets[1].boxes});
  REQUIRE(out.size() == 2);
  const auto e = out[0].at("embedding");
  CHECK(e.sizes() == at::IntArrayRef({2, 128}));
  TRIDENT_CHECK_CLOSE(e.norm(2, {1}), at::ones({2}), 1e-5);
  CHECK_THROWS_WITH_AS(net.losses(scenes.batch, scenes.targets), doctest::Contains("call train() first"),
                       trident::Error);
}

TEST_CASE_TEMPLATE("the part branch cuts g into N_p strips and scores N_p + 1 classes", Np, Parts<1>, Parts<3>, Parts<6>) {
  branches::BranchSetup setup;
  setup.head_channels = 16;
  branches::PartBranch<Np> part(setup);
  const auto g_map = at::randn({5, 16, 12, 4});
  const auto h = branches::PartBranch<Np>::strips(g_map);
  CHECK(h.sizes() == at::IntArrayRef({5, Np::value, 16}));
  // Strip j is the max over rows [j * 12 / N_p, (j + 1) * 12 / N_p) and all columns.
  const int64_t rows = 12 / Np::value;
  for (int64_t j = 0; j < Np::value; ++j) {
    const auto expected = std::get<0>(g_map.narrow(2, j * rows, rows).flatten(2).max(2));
    TRIDENT_CHECK_CLOSE(h.select(1, j), expected, 0.0);
  }
  branches::RoiContext ctx;
  ctx.g_map = g_map;
  CHECK(part.scores(ctx).sizes() == at::IntArrayRef({5, Np::value, Np::value + 1}));
}

TEST_CASE("det_reg: smooth L1 with beta 1/9 by default, or BranchSetup::detection_loss.box_beta, over foreground RoIs, weighted by box_weight") {
  branches::BranchSetup setup;
  setup.stem_channels = 8;
  setup.head_channels = 8;
  at::manual_seed(3);
  branches::RoiContext ctx;
  ctx.boxes = {at::rand({3, 4}), at::rand({2, 4})};
  ctx.g_hat = at::randn({5, 8});
  ctx.g = at::randn({5, 8});
  detector::SampledProposals sampled;
  sampled.pids = at::tensor(std::vector<int64_t>{3, background_identity, 5, unlabeled_identity, background_identity});
  sampled.regression_targets = at::randn({5, 4}) * 0.3;
  ctx.sampled = &sampled;
  for (const double beta : {-1.0, 1.0 / 9.0, 0.5, 1.0}) {
    CAPTURE(beta);
    if (beta > 0) setup.detection_loss.box_beta = beta;
    at::manual_seed(4);
    branches::DetectionBranch det(setup);
    ctx.detection = det.detect(ctx);
    LossMap losses;
    det.add_losses<losses::Agwf, losses::ConfidenceGradient::detached>(ctx, losses);
    // By hand: 0.5 d^2 / beta below beta, |d| - beta / 2 above, summed over the foreground rows (0, 2, 3: every
    // row that is not background), divided by the 5 sampled RoIs.
    const double b = beta > 0 ? beta : 1.0 / 9.0;
    double expected = 0;
    for (const int64_t row : {0, 2, 3})
      for (int64_t k = 0; k < 4; ++k) {
        const double d = std::abs(ctx.detection.deltas[row][k].item<double>() - sampled.regression_targets[row][k].item<double>());
        expected += d < b ? 0.5 * d * d / b : d - 0.5 * b;
      }
    CHECK(losses["det_reg"].item<double>() == doctest::Approx(expected / 5).epsilon(1e-5));
    // detection_loss.box_weight scales it (SeqNet's and NAE's 10), and 0 switches it off.
    for (const double weight : {10.0, 0.0}) {
      auto weighted = setup;
      weighted.detection_loss.box_weight = weight;
      at::manual_seed(4);
      branches::DetectionBranch det_weighted(weighted);
      LossMap weighted_losses;
      det_weighted.add_losses<losses::Agwf, losses::ConfidenceGradient::detached>(ctx, weighted_losses);
      CHECK(weighted_losses["det_reg"].item<double>() == doctest::Approx(weight * expected / 5).epsilon(1e-5));
      CHECK(weighted_losses["det_cls"].item<double>() == doctest::Approx(losses["det_cls"].item<double>()));
    }
  }
  setup.detection_loss.box_weight = -1;
  CHECK_THROWS_WITH_AS(branches::DetectionBranch{setup},
                       "trident::branches::DetectionBranch: detection_loss.box_weight must be a number >= 0, got -1",
                       trident::Error);
  setup.detection_loss.box_weight = 1;
  setup.detection_loss.box_beta = 0;
  CHECK_THROWS_WITH_AS(branches::DetectionBranch{setup},
                       "trident::branches::DetectionBranch: detection_loss.box_beta must be a positive number, got 0",
                       trident::Error);
}

TEST_CASE("branch layers start from normal(0, 0.01) weights and zero biases") {
  at::manual_seed(4);
  branches::BranchSetup setup;  // 1024 / 2048 channels: enough samples for the statistics
  branches::DetectionBranch det(setup);
  branches::PartBranch<Parts<6>> part(setup);
  PaperReidBranch<Prw> reid(setup);
  for (const torch::nn::Module* m : std::initializer_list<const torch::nn::Module*>{&det, &part, &reid}) {
    for (const auto& item : m->named_parameters()) {
      const auto& p = item.value();
      CAPTURE(item.key());
      if (p.dim() == 2) {
        CHECK(std::abs(p.mean().item<double>()) < 1e-3);
        CHECK(p.std().item<double>() == doctest::Approx(0.01).epsilon(0.05));
      } else {
        CHECK(p.abs().max().item<double>() == 0.0);
      }
    }
  }
}

TEST_CASE("search similarity is the confidence-weighted cosine") {
  const auto q = at::tensor({1.f, 0.f}).view({1, 2});
  const auto g = at::tensor({1.f, 0.f, 0.6f, 0.8f, 0.f, 1.f}).view({3, 2});
  const auto scores = at::tensor({0.5f, 1.0f, 0.9f});
  TRIDENT_CHECK_CLOSE(search::similarity(q, g, scores), at::tensor({0.5f, 0.6f, 0.f}).view({1, 3}), 1e-6);
  TRIDENT_CHECK_CLOSE(search::similarity(q, g, scores, search::SimilarityWeighting::none),
                      at::tensor({1.f, 0.6f, 0.f}).view({1, 3}), 1e-6);
  CHECK_THROWS_AS(search::similarity(q, g, at::ones({2})), trident::Error);
}

// ---- The open contract: ablations of any configuration, backbone and pooler policies, branch options ---------

namespace {

using SmallFull = SmallConfig<16, 32, 3, roi::RoiAlignPooler<12, 4>>;
using SmallReid = branches::ReidBranch<LutSize<16>, QueueSize<32>, EmbedDim<64>>;

}  // namespace

// Each row of Ablated<> against the configuration written out by hand.
static_assert(std::is_same_v<Ablated<SmallFull, ablation::WithoutPart>,
                             Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>,
                                    Branches<branches::DetectionBranch, SmallReid>, losses::Agwf>>);
static_assert(std::is_same_v<Ablated<SmallFull, ablation::WithoutAgwf>,
                             Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>,
                                    Branches<branches::DetectionBranch, SmallReid, branches::PartBranch<Parts<3>>>,
                                    losses::PlainSoftmax>>);
static_assert(std::is_same_v<Ablated<SmallFull, ablation::WithoutAgwf, ablation::WithoutPart>,
                             Ablated<SmallFull, ablation::WithoutPart, ablation::WithoutAgwf>>);
static_assert(std::is_same_v<
              Ablated<SmallFull, ablation::WithoutBinAndUn>,
              Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>,
                     Branches<branches::DetectionBranch,
                              branches::ReidBranch<LutSize<16>, QueueSize<32>, EmbedDim<64>, branches::IdLossOnly>,
                              branches::PartBranch<Parts<3>>>,
                     losses::Agwf>>);
static_assert(std::is_same_v<WithoutAgwfAndPartConfig<Prw>,
                             Config<backbone::ResNet50, roi::RoiAlignPooler<24, 8>,
                                    Branches<branches::DetectionBranch, PaperReidBranch<Prw>>, losses::PlainSoftmax>>);
static_assert(std::is_same_v<Ablated<SmallFull, ablation::WithoutAgwf>::backbone, backbone::ResNetSmall>);
static_assert(lut_rows_v<SmallFull> == 16 && lut_rows_v<PaperConfig<Prw>> == 482 &&
              lut_rows_v<Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>, Branches<branches::DetectionBranch>>> == 0);
static_assert(backbone::BackbonePolicy<backbone::ResNet18> && !backbone::BackbonePolicy<int>);
static_assert(roi::PoolerPolicy<roi::RoiAlignPooler<7, 7>> && !roi::PoolerPolicy<backbone::ResNetSmall>);

namespace {

// A backbone that is not a ResNet: two strided convolutions (stride 16) as the stem, one as the head; its modules
// are torch::nn::Sequential.
struct TinyBackbone {
  static constexpr int64_t stem_channels = 24;
  static constexpr int64_t head_channels = 40;
  static torch::nn::Sequential make_stem(const backbone::StemOptions&) {
    return torch::nn::Sequential(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 16, 5).stride(4).padding(2)),
                                 torch::nn::ReLU(),
                                 torch::nn::Conv2d(torch::nn::Conv2dOptions(16, stem_channels, 5).stride(4).padding(2)),
                                 torch::nn::ReLU());
  }
  static torch::nn::Sequential make_head(backbone::BatchNormMode) {
    return torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(stem_channels, head_channels, 3).stride(2).padding(1)),
        torch::nn::ReLU());
  }
};

// A pooler that is not RoiAlignPooler, built without options: RoIAlign with aligned = true and 1 sample per bin,
// counting its calls.
struct CountingPooler {
  static constexpr int64_t output_height = 8;
  static constexpr int64_t output_width = 4;
  inline static int calls = 0;
  at::Tensor operator()(const at::Tensor& f, const std::vector<at::Tensor>& boxes) const {
    ++calls;
    return ops::roi_align(f, boxes, {8, 4}, 1.0 / 16, 1, true);
  }
  at::Tensor operator()(const at::Tensor& f, const at::Tensor& rois) const {
    ++calls;
    return ops::roi_align(f, rois, {8, 4}, 1.0 / 16, 1, true);
  }
};

// A branch with options of its own: a constant loss of options.value, and an output of its options.
struct OptionsBranch : torch::nn::Module {
  static constexpr std::string_view name = "with_options";
  static constexpr std::array<std::string_view, 1> loss_names{"constant"};
  struct Options {
    double value = 0.25;
  };
  using options_type = Options;
  OptionsBranch(const branches::BranchSetup&, const Options& o) : options(o) {}
  template <class W, losses::ConfidenceGradient C>
  void add_losses(const branches::RoiContext& ctx, LossMap& out) {
    out.add("constant", at::scalar_tensor(options.value, ctx.g.options()));
  }
  void infer(const branches::RoiContext& ctx, RoiOutputs& outputs) {
    outputs["value"] = at::full({ctx.size()}, options.value, ctx.g.options());
  }
  Options options;
};

// A branch that adds a loss its loss_names do not declare.
struct UndeclaredLossBranch : torch::nn::Module {
  static constexpr std::string_view name = "undeclared";
  static constexpr std::array<std::string_view, 1> loss_names{"declared"};
  explicit UndeclaredLossBranch(const branches::BranchSetup&) {}
  template <class W, losses::ConfidenceGradient C>
  void add_losses(const branches::RoiContext& ctx, LossMap& out) {
    out.add("declared", ctx.g.sum() * 0);
    out.add("surprise", ctx.g.sum() * 0);
  }
  void infer(const branches::RoiContext&, RoiOutputs&) {}
};

}  // namespace

TEST_CASE("a backbone and a pooler of one's own: TridentNet trains and detects with them") {
  using Tiny = Config<TinyBackbone, CountingPooler,
                      Branches<branches::DetectionBranch, branches::ReidBranch<LutSize<8>, QueueSize<16>, EmbedDim<8>>,
                               branches::PartBranch<Parts<2>>>>;
  at::manual_seed(5);
  TridentNet<Tiny> net(test_net_options());
  static_assert(std::is_same_v<TridentNet<Tiny>::Stem, torch::nn::Sequential>);
  auto scenes = data::make_toy_scenes(2, 2, 3);
  net.train();
  CountingPooler::calls = 0;
  const auto losses = net.losses(scenes.batch, scenes.targets);
  CHECK(CountingPooler::calls == 1);
  CHECK(loss_names(losses) == std::set<std::string>{"rpn_cls", "rpn_reg", "det_cls", "det_reg", "id", "bin", "un", "part"});
  losses.total().backward();
  // The gradient reaches the backbone's first layer through the RoI features and the RPN.
  const auto first = net.stem()->named_parameters()["0.weight"];
  CHECK(first.grad().defined());
  CHECK(first.grad().abs().sum().item<double>() > 0);
  // Inference: every detection carries an embedding of 2 x 8 values.
  net.eval();
  torch::NoGradGuard no_grad;
  const auto detections = net.detect(scenes.batch);
  REQUIRE(detections.size() == 2);
  const auto described = net.describe(scenes.batch, {scenes.targets[0].boxes, scenes.targets[1].boxes});
  CHECK(described[0].at("embedding").size(0) == scenes.targets[0].boxes.size(0));
  CHECK(described[0].at("embedding").size(1) == 16);
}

TEST_CASE("a branch's own options: given to the network's constructor, or options_type{} by default") {
  using WithOptions = Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>,
                             Branches<branches::DetectionBranch, OptionsBranch>>;
  auto scenes = data::make_toy_scenes(1, 2, 3);
  for (const double value : {-1.0, 3.5}) {
    CAPTURE(value);
    at::manual_seed(6);
    OptionsBranch::Options given;
    given.value = value;
    auto net = value < 0 ? TridentNet<WithOptions>(test_net_options()) : TridentNet<WithOptions>(test_net_options(), given);
    const double expected = value < 0 ? 0.25 : 3.5;
    CHECK(net.branch<OptionsBranch>().options.value == expected);
    net.train();
    const auto losses = net.losses(scenes.batch, scenes.targets);
    CHECK(losses["constant"].item<double>() == expected);
    net.eval();
    torch::NoGradGuard no_grad;
    const auto described = net.describe(scenes.batch, {scenes.targets[0].boxes});
    CHECK(at::all(described[0].at("value") == expected).item<bool>());
  }
}

TEST_CASE("a branch that adds a loss it does not declare is refused by name") {
  using Undeclared = Config<backbone::ResNetSmall, roi::RoiAlignPooler<12, 4>,
                            Branches<branches::DetectionBranch, UndeclaredLossBranch>>;
  at::manual_seed(7);
  TridentNet<Undeclared> net(test_net_options());
  net.train();
  auto scenes = data::make_toy_scenes(1, 2, 3);
  CHECK_THROWS_WITH_AS(net.losses(scenes.batch, scenes.targets),
                       "trident::TridentNet::losses: branch 'undeclared' added a loss 'surprise' that its loss_names do "
                       "not declare (declared)",
                       trident::Error);
}

TEST_CASE("confidence_weights: alpha (detached or in the graph) with AGWF, ones without") {
  const auto alpha = at::tensor(std::vector<double>{0.9, 0.2, 0.55}).requires_grad_(true);
  const auto detached = losses::confidence_weights<losses::Agwf>(alpha);
  CHECK(at::equal(detached, alpha.detach()));
  CHECK(!detached.requires_grad());
  const auto propagated = losses::confidence_weights<losses::Agwf, losses::ConfidenceGradient::propagated>(alpha);
  CHECK(propagated.requires_grad());
  // d/d alpha of sum(3 * weights) is 3 for every row when the confidence is propagated.
  (propagated * 3).sum().backward();
  CHECK(at::allclose(alpha.grad(), at::full({3}, 3.0, alpha.options().requires_grad(false))));
  const auto plain = losses::confidence_weights<losses::PlainSoftmax>(alpha);
  CHECK(at::equal(plain, at::ones({3}, at::kDouble)));
  CHECK_THROWS_WITH_AS(losses::confidence_weights<losses::Agwf>(at::ones({2, 2})),
                       "trident::losses::confidence_weights: alpha must be a floating-point [N] tensor (one confidence "
                       "per row), got [2, 2]",
                       trident::Error);
}

