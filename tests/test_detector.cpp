// Matching, balanced sampling, the RPN and the RoI-head proposal sampler.
#include "support/fixtures.hpp"

#include <trident/detector/matching.hpp>
#include <trident/detector/roi_sampler.hpp>
#include <trident/detector/rpn.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/binary_cross_entropy_with_logits.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/smooth_l1_loss.h>

#include <algorithm>
#include <cmath>
#include <vector>
#include <torch/csrc/autograd/autograd.h>

using namespace trident;

TEST_CASE("match_proposals: thresholds and low-quality matches, hand-computed") {
  const auto iou = at::tensor({0.8f, 0.5f, 0.2f, 0.1f, 0.1f, 0.65f, 0.25f, 0.05f}).view({2, 4});
  TRIDENT_CHECK_EQUAL(detector::match_proposals(iou, 0.7, 0.3, false), at::tensor({0, -2, -1, -1}, at::kLong));
  // gt 1's best proposal (column 1, IoU 0.65) becomes its match although below 0.7.
  TRIDENT_CHECK_EQUAL(detector::match_proposals(iou, 0.7, 0.3, true), at::tensor({0, 1, -1, -1}, at::kLong));
  // Equal thresholds (the RoI head's 0.5 / 0.5): nothing is ignored.
  TRIDENT_CHECK_EQUAL(detector::match_proposals(iou, 0.5, 0.5, false), at::tensor({0, 1, -1, -1}, at::kLong));
  CHECK(detector::match_proposals(at::zeros({0, 3}), 0.7, 0.3, true).eq(-1).all().item<bool>());
  CHECK_THROWS_AS(detector::match_proposals(iou, 0.3, 0.7, false), trident::Error);
}

namespace {

// The sample's entries as sets: (positives, negatives) taken, each as sorted indices.
std::pair<std::vector<int64_t>, std::vector<int64_t>> taken(const detector::BalancedSample& s) {
  std::vector<int64_t> pos, neg;
  for (int64_t j = 0; j < s.index.size(0); ++j) {
    if (!s.valid[j].item<bool>()) continue;
    (s.positive[j].item<bool>() ? pos : neg).push_back(s.index[j].item<int64_t>());
  }
  std::sort(pos.begin(), pos.end());
  std::sort(neg.begin(), neg.end());
  return {pos, neg};
}

bool all_distinct(std::vector<int64_t> v) {
  std::sort(v.begin(), v.end());
  return std::adjacent_find(v.begin(), v.end()) == v.end();
}

}  // namespace

TEST_CASE("sample_balanced: at most the positive fraction, negatives fill, no repeats, fixed size") {
  auto labels = at::zeros({110});
  labels.narrow(0, 0, 10).fill_(1);
  labels.narrow(0, 10, 5).fill_(-1);
  const auto s = detector::sample_balanced(labels, 16, 0.5);
  CHECK(s.index.size(0) == 16);
  CHECK(s.valid.all().item<bool>());
  const auto [pos, neg] = taken(s);
  CHECK(pos.size() == 8);
  CHECK(neg.size() == 8);
  for (auto i : pos) CHECK(labels[i].item<float>() == 1.0f);
  for (auto i : neg) CHECK(labels[i].item<float>() == 0.0f);
  auto both = pos;
  both.insert(both.end(), neg.begin(), neg.end());
  CHECK(all_distinct(both));
  // The positives come first, then the negatives.
  CHECK(s.positive.narrow(0, 0, 8).all().item<bool>());
  CHECK_FALSE(s.positive.narrow(0, 8, 8).any().item<bool>());

  labels.narrow(0, 3, 7).fill_(0);  // only 3 positives left: negatives fill the rest
  const auto [pos3, neg3] = taken(detector::sample_balanced(labels, 16, 0.5));
  CHECK(pos3 == std::vector<int64_t>{0, 1, 2});
  CHECK(neg3.size() == 13);

  // Too few usable labels: the sample keeps its size, the entries beyond the usable ones are marked invalid.
  auto few = at::full({40}, -1.0);
  few.narrow(0, 0, 2).fill_(1);
  few.narrow(0, 2, 3).fill_(0);
  const auto s5 = detector::sample_balanced(few, 16, 0.5);
  CHECK(s5.index.size(0) == 16);
  CHECK(s5.valid.sum().item<int64_t>() == 5);
  CHECK(s5.valid.narrow(0, 0, 5).all().item<bool>());
  const auto [pos5, neg5] = taken(s5);
  CHECK(pos5 == std::vector<int64_t>{0, 1});
  CHECK(neg5 == std::vector<int64_t>{2, 3, 4});
  // Fewer labels than the batch: the size is N.
  CHECK(detector::sample_balanced(at::zeros({5}), 16, 0.5).index.size(0) == 5);
  CHECK(detector::sample_balanced(at::zeros({0}), 16, 0.5).index.size(0) == 0);
  CHECK_THROWS_AS(detector::sample_balanced(labels, 0, 0.5), trident::Error);
}

TEST_CASE("sample_balanced: fill_with_positives and max_size keep the sample full") {
  // 100 candidates, 90 of them positive: torchvision's sampler takes 32 positives and the 10 negatives (42);
  // filling takes 54 positives and the 10 negatives, a full 64.
  auto labels = at::ones({100});
  labels.narrow(0, 90, 10).fill_(0);
  const auto plain = detector::sample_balanced(labels, 64, 0.5);
  CHECK(plain.valid.sum().item<int64_t>() == 42);
  const auto full = detector::sample_balanced(labels, 64, 0.5, /*fill_with_positives=*/true);
  CHECK(full.valid.all().item<bool>());
  const auto [pos, neg] = taken(full);
  CHECK(pos.size() == 54);
  CHECK(neg.size() == 10);
  auto both = pos;
  both.insert(both.end(), neg.begin(), neg.end());
  CHECK(all_distinct(both));
  // With enough negatives, filling changes nothing: at most half are positives.
  auto many = at::zeros({300});
  many.narrow(0, 0, 100).fill_(1);
  const auto [p2, n2] = taken(detector::sample_balanced(many, 64, 0.5, true));
  CHECK(p2.size() == 32);
  CHECK(n2.size() == 32);
  // max_size caps the sample (the RoI sampler's usable count); the positive cap stays batch * fraction.
  const auto capped = detector::sample_balanced(many, 64, 0.5, true, 20);
  CHECK(capped.index.size(0) == 20);
  const auto [p3, n3] = taken(capped);
  CHECK(p3.size() == 20);
  CHECK(n3.empty());
}

TEST_CASE("sample_balanced: every positive and every negative is drawn equally often, reproducibly") {
  // 12 positives, 40 negatives, batch 16 at fraction 0.25: 4 positives (1/3 each) and 12 negatives (3/10 each).
  auto labels = at::zeros({60});
  labels.narrow(0, 0, 12).fill_(1);
  labels.narrow(0, 52, 8).fill_(-1);
  std::vector<int64_t> hits(60, 0);
  const int draws = 3000;
  for (int d = 0; d < draws; ++d) {
    const auto [pos, neg] = taken(detector::sample_balanced(labels, 16, 0.25));
    REQUIRE(pos.size() == 4);
    REQUIRE(neg.size() == 12);
    for (auto i : pos) ++hits[i];
    for (auto i : neg) ++hits[i];
  }
  // Binomial(3000, p): the standard deviation is under 26, so 5 of them bound every count.
  for (int i = 0; i < 12; ++i) CHECK(std::abs(hits[i] - draws / 3.0) < 5 * std::sqrt(draws / 3.0 * 2.0 / 3.0));
  for (int i = 12; i < 52; ++i) CHECK(std::abs(hits[i] - draws * 0.3) < 5 * std::sqrt(draws * 0.3 * 0.7));
  for (int i = 52; i < 60; ++i) CHECK(hits[i] == 0);
  // The same seed draws the same sample.
  at::manual_seed(5);
  const auto a = detector::sample_balanced(labels, 16, 0.25).index;
  at::manual_seed(5);
  TRIDENT_CHECK_EQUAL(detector::sample_balanced(labels, 16, 0.25).index, a);
}

TEST_CASE("RegionProposalNetwork: shapes, bounds, losses and gradients") {
  at::manual_seed(0);
  detector::RpnOptions options;
  options.post_nms_top_n_train = 50;
  options.post_nms_top_n_test = 20;
  detector::RegionProposalNetwork rpn(8, options);
  const auto features = at::randn({2, 8, 6, 9}).requires_grad_(true);
  const std::vector<ImageSize> sizes{{96, 144}, {80, 130}};
  const std::vector<Target> targets{{at::tensor({10.f, 10.f, 40.f, 90.f}).view({1, 4}), at::tensor({3}, at::kLong)},
                                    {at::empty({0, 4}), at::empty({0}, at::kLong)}};
  rpn->train();
  const auto out = rpn->forward(features, sizes, &targets);
  REQUIRE(out.proposals.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    CHECK(out.proposals[i].size(0) <= 50);
    CHECK(out.proposals[i].size(0) == out.scores[i].size(0));
    CHECK(out.proposals[i].select(1, 2).le(sizes[i][1]).all().item<bool>());
    CHECK(out.proposals[i].select(1, 3).le(sizes[i][0]).all().item<bool>());
    CHECK(out.proposals[i].ge(0).all().item<bool>());
    CHECK_FALSE(out.proposals[i].requires_grad());
  }
  // Untrained objectness logits are ~0: the BCE is ~log 2; the box loss is positive.
  CHECK(out.loss_objectness.item<double>() == doctest::Approx(std::log(2.0)).epsilon(0.05));
  CHECK(out.loss_box.item<double>() > 0);
  const auto grads = torch::autograd::grad({out.loss_objectness + out.loss_box}, {features});
  CHECK(grads[0].abs().sum().item<double>() > 0);

  rpn->eval();
  const auto test = rpn->forward(features, sizes);
  CHECK(test.proposals[0].size(0) <= 20);
  CHECK_FALSE(test.loss_objectness.defined());
  CHECK_THROWS_WITH_AS((rpn->train(), rpn->forward(features, sizes)), doctest::Contains("training needs one Target"),
                       trident::Error);
}

TEST_CASE("RegionProposalNetwork: the weighted losses equal torchvision's on the sampled anchors, by index") {
  at::manual_seed(4);
  detector::RpnOptions options;
  options.batch_size_per_image = 64;
  detector::RegionProposalNetwork rpn(8, options);
  rpn->train();
  const auto features = at::randn({2, 8, 5, 7});
  const std::vector<ImageSize> sizes{{80, 112}, {72, 100}};
  const std::vector<Target> targets{
      {at::tensor({10.f, 10.f, 40.f, 70.f, 50.f, 8.f, 90.f, 60.f}).view({2, 4}), at::tensor({3, 4}, at::kLong)},
      {at::tensor({20.f, 5.f, 60.f, 66.f}).view({1, 4}), at::tensor({1}, at::kLong)}};
  at::manual_seed(9);
  const auto out = rpn->forward(features, sizes, &targets);
  // The same draws again: the sampler is the only user of the generator after the heads.
  detector::RpnHeads heads;
  (void)rpn->candidates(features, sizes, &heads);
  at::manual_seed(9);
  const ops::BoxCoder coder({1.0, 1.0, 1.0, 1.0});
  const auto per_image = heads.anchors.size(0);
  std::vector<at::Tensor> pos_rows, all_rows, labels_all, targets_all;
  for (int64_t i = 0; i < 2; ++i) {
    const auto& gt = targets[i].boxes;
    const auto matches = detector::match_proposals(ops::box_iou(gt, heads.anchors), options.fg_iou_threshold,
                                                   options.bg_iou_threshold, true);
    auto labels = (matches >= 0).to(at::kFloat);
    labels.masked_fill_(matches == detector::between_thresholds, -1.0);
    const auto s = detector::sample_balanced(labels, options.batch_size_per_image, options.positive_fraction);
    std::vector<int64_t> pos, all;
    for (int64_t j = 0; j < s.index.size(0); ++j) {
      if (!s.valid[j].item<bool>()) continue;
      const auto row = s.index[j].item<int64_t>() + i * per_image;
      all.push_back(row);
      if (s.positive[j].item<bool>()) pos.push_back(row);
    }
    pos_rows.push_back(at::tensor(pos, at::kLong));
    all_rows.push_back(at::tensor(all, at::kLong));
    labels_all.push_back(labels);
    targets_all.push_back(coder.encode(gt.index_select(0, matches.clamp_min(0)), heads.anchors));
  }
  const auto pos = at::cat(pos_rows), all = at::cat(all_rows);
  const auto deltas = heads.deltas.reshape({-1, 4}), obj = heads.objectness.reshape({-1});
  const auto box = at::smooth_l1_loss(deltas.index_select(0, pos), at::cat(targets_all).index_select(0, pos),
                                      at::Reduction::Sum, 1.0 / 9.0) / static_cast<double>(all.size(0));
  const auto objectness = at::binary_cross_entropy_with_logits(obj.index_select(0, all),
                                                               at::cat(labels_all).index_select(0, all));
  CHECK(pos.size(0) > 0);
  CHECK(out.loss_box.item<double>() == doctest::Approx(box.item<double>()).epsilon(1e-6));
  CHECK(out.loss_objectness.item<double>() == doctest::Approx(objectness.item<double>()).epsilon(1e-6));
}

TEST_CASE("sample_proposals: ground truth added, pids inherited, background marked, targets encoded") {
  at::manual_seed(1);
  const auto gt = at::tensor({10.f, 10.f, 50.f, 110.f, 100.f, 20.f, 130.f, 90.f}).view({2, 4});
  const std::vector<Target> targets{{gt, at::tensor(std::vector<int64_t>{7, unlabeled_identity})}};
  // 300 random proposals: most are background.
  const auto xy = at::rand({300, 2}) * 150;
  const auto proposals = at::cat({xy, xy + 5 + at::rand({300, 2}) * 60}, 1);
  detector::RoiSamplerOptions options;
  const auto s = detector::sample_proposals({proposals}, targets, options);
  const auto k = s.boxes[0].size(0);
  CHECK(k == 128);
  const auto fg = s.is_foreground();
  CHECK(fg.sum().item<int64_t>() >= 2);   // at least the two ground-truth boxes
  CHECK(fg.sum().item<int64_t>() <= 64);
  const auto iou = std::get<0>(ops::box_iou(s.boxes[0], gt).max(1));
  TRIDENT_CHECK_EQUAL(fg, iou >= 0.5);
  // Foreground pids come from the matched person; an unlabeled person's proposals keep unlabeled_identity.
  const auto fg_pids = s.pids.index_select(0, fg.nonzero().select(1, 0));
  CHECK((fg_pids.eq(7) | fg_pids.eq(unlabeled_identity)).all().item<bool>());
  CHECK(s.pids.index_select(0, (~fg).nonzero().select(1, 0)).eq(background_identity).all().item<bool>());
  // A ground-truth box sampled as its own proposal has zero regression targets.
  const auto own = (s.boxes[0] - s.matched_boxes).abs().sum(1).eq(0) & fg;
  CHECK(own.any().item<bool>());
  CHECK(s.regression_targets.index_select(0, own.nonzero().select(1, 0)).abs().max().item<double>() == 0.0);
}

TEST_CASE("sample_proposals: a full sample where the negatives run out; an ignored band samples the usable ones") {
  // 20 proposals around one person and 3 away from it: 21 candidates with the ground truth, 18+ positive.
  const auto gt = at::tensor({20.f, 20.f, 60.f, 120.f}).view({1, 4});
  const auto jitter = at::rand({20, 4}) * 4 - 2;
  const auto near = gt.expand({20, 4}) + jitter;
  const auto far = at::tensor({200.f, 200.f, 240.f, 300.f, 300.f, 10.f, 340.f, 90.f, 150.f, 150.f, 180.f, 200.f})
                       .view({3, 4});
  const std::vector<Target> targets{{gt, at::tensor({5}, at::kLong)}};
  detector::RoiSamplerOptions options;
  options.batch_size_per_image = 16;
  const auto s = detector::sample_proposals({at::cat({near, far})}, targets, options);
  // torchvision would take 8 positives and the 3 negatives; the sample is full instead.
  CHECK(s.boxes[0].size(0) == 16);
  CHECK(s.is_foreground().sum().item<int64_t>() == 13);
  CHECK(s.pids_on_host.get().equal(s.pids));
  // An ignored band (IoU in [0.3, 0.7) ignored): only the usable candidates are sampled, the sample is full.
  options.fg_iou_threshold = 0.7;
  options.bg_iou_threshold = 0.3;
  const auto mid = at::tensor({20.f, 50.f, 60.f, 150.f}).view({1, 4});  // IoU 0.54 with the person
  const auto candidates = at::cat({near, far, mid});
  const auto best = std::get<0>(ops::box_iou(at::cat({candidates, gt}), gt).max(1));
  const auto usable = ((best >= 0.7) | (best < 0.3)).sum().item<int64_t>();
  options.batch_size_per_image = 64;
  const auto t = detector::sample_proposals({candidates}, targets, options);
  CHECK(t.boxes[0].size(0) == usable);
  const auto iou = std::get<0>(ops::box_iou(t.boxes[0], gt).max(1));
  CHECK(((iou >= 0.7) | (iou < 0.3)).all().item<bool>());
}
