// Box utilities, the box coder and the anchor generator against torchvision's outputs (tests/fixtures).
#include "support/fixtures.hpp"

#include <trident/ops/anchors.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/ops/pooling.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <torch/csrc/autograd/autograd.h>

using namespace trident;
using trident::test::Fixture;

TEST_CASE("box utilities match torchvision") {
  const Fixture f("boxes.pt");
  TRIDENT_CHECK_CLOSE(ops::box_iou(f["a"], f["b"]), f["iou"], 1e-6);
  TRIDENT_CHECK_CLOSE(ops::box_area(f["a"]), f["area_a"], 1e-4);
  TRIDENT_CHECK_CLOSE(ops::box_xyxy_to_xywh(f["a"]), f["xyxy_to_xywh"], 1e-5);
  TRIDENT_CHECK_CLOSE(ops::box_xywh_to_xyxy(f["b"]), f["xywh_to_xyxy"], 1e-5);
  TRIDENT_CHECK_CLOSE(ops::clip_boxes_to_image(f["clip_in"], f["clip_h"].item<int64_t>(), f["clip_w"].item<int64_t>()),
                      f["clip_out"], 0.0);
  TRIDENT_CHECK_EQUAL(ops::remove_small_boxes(f["small_in"], f["small_min_size"].item<double>()), f["small_keep"]);
}

TEST_CASE("box_iou: hand-computed values and defined edge cases") {
  const auto a = at::tensor({0.f, 0.f, 10.f, 10.f, 5.f, 5.f, 5.f, 5.f}).view({2, 4});
  const auto b = at::tensor({5.f, 0.f, 15.f, 10.f, 5.f, 5.f, 5.f, 5.f}).view({2, 4});
  const auto iou = ops::box_iou(a, b);
  CHECK(iou[0][0].item<float>() == doctest::Approx(50.0 / 150.0));
  CHECK(iou[1][1].item<float>() == 0.0f);  // two degenerate boxes: union 0 -> IoU 0 (torchvision: NaN)
  CHECK(ops::box_iou(at::empty({0, 4}), b).sizes() == at::IntArrayRef({0, 2}));
  CHECK(ops::remove_small_boxes(at::empty({0, 4}), 1.0).numel() == 0);
}

TEST_CASE("box utilities reject malformed boxes with a message naming the function and shape") {
  CHECK_THROWS_WITH_AS(ops::box_area(at::zeros({3, 5})),
                       "trident::ops::box_area: boxes must be a [N, 4] tensor, got [3, 5]", trident::Error);
  const auto nan_box = at::tensor({0.f, 0.f, 1.f, 1.f, 0.f, std::nanf(""), 1.f, 1.f}).view({2, 4});
  CHECK_THROWS_WITH_AS(ops::validate_boxes(nan_box, "caller", "boxes"), doctest::Contains("boxes[1]"),
                       trident::Error);
  const auto inverted = at::tensor({4.f, 0.f, 1.f, 1.f}).view({1, 4});
  CHECK_THROWS_WITH_AS(ops::validate_boxes(inverted, "caller", "boxes"), doctest::Contains("x2 < x1"),
                       trident::Error);
  CHECK_THROWS_AS(ops::clip_boxes_to_image(inverted, 0, 10), trident::Error);
}

TEST_CASE("box coder encode/decode match torchvision, and decode inverts encode") {
  const Fixture f("box_coder.pt");
  for (const std::string tag : {"roi", "rpn"}) {
    CAPTURE(tag);
    const auto w = f["weights_" + tag].to(at::kDouble);
    const ops::BoxCoder coder({w[0].item<double>(), w[1].item<double>(), w[2].item<double>(), w[3].item<double>()});
    const auto codes = coder.encode(f["matched"], f["proposals"]);
    TRIDENT_CHECK_CLOSE(codes, f["encode_" + tag], 1e-5);
    TRIDENT_CHECK_CLOSE(coder.decode(f["codes_" + tag], f["proposals"]), f["decode_" + tag], 1e-3);
    TRIDENT_CHECK_CLOSE(coder.decode(codes, f["proposals"]), f["matched"], 1e-3);
  }
  CHECK_THROWS_AS(ops::BoxCoder().encode(at::zeros({2, 4}), at::zeros({3, 4})), trident::Error);
  CHECK_THROWS_WITH_AS(ops::BoxCoder().encode(at::zeros({1, 4}), at::zeros({1, 4})),
                       doctest::Contains("positive width and height"), trident::Error);
  CHECK(ops::BoxCoder().decode(at::empty({0, 8}), at::empty({0, 4})).sizes() == at::IntArrayRef({0, 8}));
}

TEST_CASE("anchor generator matches torchvision's AnchorGenerator") {
  const Fixture f("anchors.pt");
  for (const std::string name : {"paper", "custom"}) {
    CAPTURE(name);
    const auto sizes = f[name + "_sizes"], ratios = f[name + "_ratios"];
    const ops::AnchorGenerator gen(std::vector<double>(sizes.data_ptr<double>(), sizes.data_ptr<double>() + sizes.numel()),
                                   std::vector<double>(ratios.data_ptr<double>(), ratios.data_ptr<double>() + ratios.numel()),
                                   f[name + "_stride"].item<double>());
    const auto feature = f[name + "_feature"];
    const auto anchors = gen.grid_anchors(feature[0].item<int64_t>(), feature[1].item<int64_t>());
    TRIDENT_CHECK_CLOSE(anchors, f[name + "_anchors"], 0.0);
    CHECK(anchors.size(0) == feature[0].item<int64_t>() * feature[1].item<int64_t>() * gen.num_anchors_per_location());
  }
  const ops::AnchorGenerator paper;  // defaults: the paper's sizes, ratios and stride 16
  CHECK(paper.num_anchors_per_location() == 15);
  CHECK(paper(at::zeros({2, 8, 3, 4})).size(0) == 3 * 4 * 15);
  CHECK_THROWS_WITH_AS(ops::AnchorGenerator({32}, {0.0}, 16), doctest::Contains("aspect_ratios must be positive"),
                       trident::Error);
}

TEST_CASE("max_pool_strips: the reduction form equals adaptive_max_pool2d, values and gradients") {
  // What other devices run (a max over a [K, C, strips, H / strips * W] view) against what the CPU runs
  // (at::adaptive_max_pool2d with output {strips, 1}), on contiguous and channels-last maps of the RoI head's
  // shapes. Random values: no ties, so both route each strip's gradient to the same single element.
  at::manual_seed(7);
  for (const int64_t strips : {1, 3, 4})
    for (const bool channels_last : {false, true}) {
      CAPTURE(strips);
      CAPTURE(channels_last);
      auto x = at::randn({5, 6, 12, 4}, at::kDouble);
      if (channels_last) x = x.contiguous(at::MemoryFormat::ChannelsLast);
      const auto a = x.clone().requires_grad_(true), b = x.clone().requires_grad_(true);
      const auto reference = std::get<0>(at::adaptive_max_pool2d(a, {strips, 1}));
      const auto reduced = ops::detail::max_pool_strips_by_reduction(b, strips);
      REQUIRE(reduced.sizes() == reference.sizes());
      CHECK(at::equal(reduced, reference));
      const auto grad = at::randn(reference.sizes(), at::kDouble);
      const auto ga = torch::autograd::grad({reference}, {a}, {grad})[0];
      const auto gb = torch::autograd::grad({reduced}, {b}, {grad})[0];
      CHECK(at::equal(ga, gb));
      CHECK(at::equal(ops::max_pool_strips(x, strips), reference));  // the CPU's dispatch
    }
  // A strip count that does not divide the height: adaptive pooling's overlapping strips, on every device.
  const auto x = at::randn({2, 3, 12, 4});
  CHECK(at::equal(ops::max_pool_strips(x, 5), std::get<0>(at::adaptive_max_pool2d(x, {5, 1}))));
}
