// Matching, balanced sampling, the RPN and the RoI-head proposal sampler.
#include "support/fixtures.hpp"

#include <trident/detector/matching.hpp>
#include <trident/detector/roi_sampler.hpp>
#include <trident/detector/rpn.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/unique_dim.h>
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

TEST_CASE("sample_balanced: at most the positive fraction, negatives fill, no repeats") {
  at::manual_seed(3);
  auto labels = at::zeros({110});
  labels.narrow(0, 0, 10).fill_(1);
  labels.narrow(0, 10, 5).fill_(-1);
  const auto [pos, neg] = detector::sample_balanced(labels, 16, 0.5);
  CHECK(pos.size(0) == 8);
  CHECK(neg.size(0) == 8);
  CHECK(labels.index_select(0, pos).eq(1).all().item<bool>());
  CHECK(labels.index_select(0, neg).eq(0).all().item<bool>());
  CHECK(std::get<0>(at::unique_dim(at::cat({pos, neg}), 0)).size(0) == 16);
  labels.narrow(0, 3, 7).fill_(0);  // only 3 positives left
  const auto [pos3, neg3] = detector::sample_balanced(labels, 16, 0.5);
  CHECK(pos3.size(0) == 3);
  CHECK(neg3.size(0) == 13);
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
