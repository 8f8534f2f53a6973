// NMS and batched NMS against torchvision, on the CPU kernel and on the any-device tensor path.
#include "support/fixtures.hpp"

#include <trident/ops/nms.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/tensor.h>

using namespace trident;
using trident::test::Fixture;

namespace {
// The path other devices take, forced on the CPU so that CI checks it.
at::Tensor nms_tensor_path(const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& groups, double t) {
  return ops::detail::nms_impl(boxes, scores, groups, t, /*force_tensor_path=*/true);
}
}  // namespace

TEST_CASE("nms and batched_nms match torchvision, including tied scores") {
  const Fixture f("nms.pt");
  for (const std::string key : {"03", "05", "07"}) {
    const double t = std::stod("0." + key.substr(1));
    CAPTURE(t);
    TRIDENT_CHECK_EQUAL(ops::nms(f["boxes"], f["scores"], t), f["keep_" + key]);
    TRIDENT_CHECK_EQUAL(ops::batched_nms(f["boxes"], f["scores"], f["classes"], t), f["batched_keep_" + key]);
    TRIDENT_CHECK_EQUAL(nms_tensor_path(f["boxes"], f["scores"], at::Tensor(), t), f["keep_" + key]);
    TRIDENT_CHECK_EQUAL(nms_tensor_path(f["boxes"], f["scores"], f["classes"], t), f["batched_keep_" + key]);
  }
  // IoU exactly equal to the threshold survives; equal scores keep their input order.
  TRIDENT_CHECK_EQUAL(ops::nms(f["edge_boxes"], f["edge_scores"], 0.5), f["edge_keep"]);
  TRIDENT_CHECK_EQUAL(nms_tensor_path(f["edge_boxes"], f["edge_scores"], at::Tensor(), 0.5), f["edge_keep"]);
  // Large coordinates in double.
  TRIDENT_CHECK_EQUAL(ops::batched_nms(f["big_boxes"], f["scores"].to(at::kDouble), f["classes"], 0.5), f["big_keep"]);
}

TEST_CASE("nms: hand-made cases") {
  // Box 1 overlaps box 0 with IoU 0.81 (suppressed at 0.5); box 2 is disjoint.
  const auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 0.f, 0.f, 9.f, 9.f, 20.f, 20.f, 30.f, 30.f}).view({3, 4});
  const auto scores = at::tensor({0.5f, 0.9f, 0.1f});
  TRIDENT_CHECK_EQUAL(ops::nms(boxes, scores, 0.5), at::tensor({1, 2}, at::kLong));
  TRIDENT_CHECK_EQUAL(ops::nms(boxes, scores, 0.9), at::tensor({1, 0, 2}, at::kLong));
  // Different classes never suppress each other.
  TRIDENT_CHECK_EQUAL(ops::batched_nms(boxes, scores, at::tensor({0, 1, 0}, at::kLong), 0.5),
                      at::tensor({1, 0, 2}, at::kLong));
  // The threshold is compared as a double, as torchvision does: this pair's float IoU is 0.30000001 > 0.3, so
  // box 1 goes (torchvision 0.14: [0]); in double the IoU is exactly 0.3 and box 1 stays ([0, 1]).
  const auto pair = at::tensor({9.f, 36.f, 18.f, 56.f, 8.f, 39.f, 35.f, 54.f}).view({2, 4});
  const auto pair_scores = at::tensor({0.9f, 0.8f});
  TRIDENT_CHECK_EQUAL(ops::nms(pair, pair_scores, 0.3), at::tensor({0}, at::kLong));
  TRIDENT_CHECK_EQUAL(nms_tensor_path(pair, pair_scores, at::Tensor(), 0.3), at::tensor({0}, at::kLong));
  TRIDENT_CHECK_EQUAL(ops::nms(pair.to(at::kDouble), pair_scores.to(at::kDouble), 0.3), at::tensor({0, 1}, at::kLong));
  // Empty input: empty int64 result.
  const auto none = ops::nms(at::empty({0, 4}), at::empty({0}), 0.5);
  CHECK(none.numel() == 0);
  CHECK((none.scalar_type() == at::kLong));  // ScalarType is compared undecomposed
}

TEST_CASE("nms rejects malformed input with a clear message") {
  const auto boxes = at::tensor({0.f, 0.f, 10.f, 10.f, 0.f, 0.f, 9.f, 9.f}).view({2, 4});
  CHECK_THROWS_WITH_AS(ops::nms(boxes, at::tensor({0.5f}), 0.5), doctest::Contains("scores must be a [N] tensor"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(ops::nms(boxes, at::tensor({0.5f, std::nanf("")}), 0.5), doctest::Contains("NaN"),
                       trident::Error);
  const auto inverted = at::tensor({0.f, 0.f, 10.f, 10.f, 5.f, 0.f, 1.f, 9.f}).view({2, 4});
  CHECK_THROWS_WITH_AS(ops::nms(inverted, at::tensor({0.5f, 0.4f}), 0.5), doctest::Contains("boxes[1]"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(ops::batched_nms(boxes, at::tensor({0.5f, 0.4f}), at::tensor({0.f, 1.f}), 0.5),
                       doctest::Contains("idxs must be an integer tensor"), trident::Error);
}

TEST_CASE("nms of half and bfloat16 boxes (autocast) keeps what float32 NMS of the same values keeps") {
  // Overlapping boxes whose IoUs straddle the threshold; the reduced-precision copies are compared with float32
  // NMS over exactly their values (so rounding of the inputs is not what is tested, the IoU arithmetic is).
  at::manual_seed(3);
  const auto xy = at::rand({60, 2}) * 80;
  const auto wh = at::rand({60, 2}) * 30 + 5;
  const auto boxes = at::cat({xy, xy + wh}, 1);
  const auto scores = at::rand({60});
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    const auto b = boxes.to(dtype), s = scores.to(dtype);
    const auto expected = ops::nms(b.to(at::kFloat), s.to(at::kFloat), 0.5);
    TRIDENT_CHECK_EQUAL(ops::nms(b, s, 0.5), expected);
    const auto groups = (at::arange(60) % 3).to(at::kLong);
    TRIDENT_CHECK_EQUAL(ops::batched_nms(b, s, groups, 0.5),
                        ops::batched_nms(b.to(at::kFloat), s.to(at::kFloat), groups, 0.5));
  }
}

TEST_CASE("nms_each: several problems with masks and caps keep what filter + nms + truncate keeps, on both paths") {
  at::manual_seed(4);
  std::vector<ops::detail::NmsProblem> problems;
  for (const int64_t n : {0, 1, 70, 300, 4500}) {  // 4500: the device path's bit matrix in two row blocks
    const auto xy = at::rand({n, 2}) * 100;
    const auto wh = at::rand({n, 2}) * 40 + 1;
    ops::detail::NmsProblem p;
    p.boxes = at::cat({xy, xy + wh}, 1);
    p.scores = (at::rand({n}) * 8).round() / 8;  // ties: the stable order decides
    p.iou_threshold = n >= 300 ? 0.7 : 0.4;
    problems.push_back(p);
  }
  problems[2].valid = at::rand({70}) > 0.3;
  problems[2].max_keep = 9;
  problems[3].valid = at::rand({300}) > 0.1;
  problems[3].groups = (at::arange(300) % 4).to(at::kLong);
  ops::detail::NmsProblem capped = problems[3];  // a cap beyond what NMS keeps changes nothing
  capped.groups = at::Tensor();
  capped.max_keep = 100000;
  problems.push_back(capped);
  CHECK(ops::detail::OverlapBlocks(4500).block_rows < 4500);  // the layout really has two blocks there

  std::vector<at::Tensor> expected;
  for (const auto& p : problems) {
    const auto index = p.valid.defined() ? p.valid.nonzero().select(1, 0) : at::arange(p.boxes.size(0));
    const auto b = p.boxes.index_select(0, index), s = p.scores.index_select(0, index);
    auto keep = p.groups.defined() ? ops::batched_nms(b, s, p.groups.index_select(0, index), p.iou_threshold)
                                   : ops::nms(b, s, p.iou_threshold);
    if (p.max_keep >= 0 && keep.size(0) > p.max_keep) keep = keep.narrow(0, 0, p.max_keep);
    expected.push_back(index.index_select(0, keep));
  }
  CHECK(expected[2].size(0) == 9);       // the cap binds
  CHECK(expected[3].size(0) > 20);       // not vacuous
  CHECK(expected[4].size(0) > 100);
  for (const bool force : {false, true}) {
    CAPTURE(force);
    const auto got = ops::detail::nms_each(problems, force);
    REQUIRE(got.size() == expected.size());
    for (size_t k = 0; k < got.size(); ++k) {
      CAPTURE(k);
      TRIDENT_CHECK_EQUAL(got[k], expected[k]);
    }
  }
}
