// The detection primitives (include/trident/ops) on the device under test against the same calls on the CPU:
// boxes, box coder, anchors, NMS and RoIAlign forward and backward, on the torchvision fixtures and on larger
// inputs of the paper's sizes. Tolerances and their reasons: docs/cuda-tests.md.
#include "cuda_support.hpp"
#include "support/fixtures.hpp"

#include <trident/ops/anchors.hpp>
#include <trident/ops/box_coder.hpp>
#include <trident/ops/boxes.hpp>
#include <trident/ops/nms.hpp>
#include <trident/ops/pooling.hpp>
#include <trident/ops/roi_align.hpp>
#include <trident/core/cuda_jit.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/round.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/autograd.h>

#include <array>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

using namespace trident;
using cuda_test::check_close;
using cuda_test::check_equal;
using cuda_test::check_on;
using cuda_test::Tolerance;
using test::Fixture;

namespace {

// Elementwise box geometry is one chain of IEEE-754 operations (+, -, *, /, min, max, clamp), each correctly
// rounded and evaluated in the same order on both devices: the results must be identical.
// log/exp (box coder) are not correctly rounded: CUDA's and the CPU's differ by an ulp or two; 1e-5 relative
// leaves ~80 ulp of float32 headroom, while a wrong index or formula is off by O(1).
constexpr Tolerance transcendental_float{1e-5, 1e-5};
constexpr Tolerance transcendental_double{1e-12, 1e-12};

/// `count` boxes in clusters (many overlaps) over an image of `extent` pixels; xyxy, float32.
at::Tensor clustered_boxes(int64_t count, double extent, int64_t clusters, uint64_t seed) {
  at::manual_seed(seed);
  const auto centres = at::rand({clusters, 2}) * extent;
  const auto pick = at::randint(0, clusters, {count}, at::kLong);
  const auto xy = centres.index_select(0, pick) + at::randn({count, 2}) * (extent / 40.0);
  const auto wh = at::rand({count, 2}) * (extent / 8.0) + extent / 40.0;
  return at::cat({xy, xy + wh}, 1);
}

/// Scores rounded to two decimals, so that many are tied (ties keep the input order).
at::Tensor tied_scores(int64_t count, uint64_t seed) {
  at::manual_seed(seed);
  return at::round(at::rand({count}) * 100.0) / 100.0;
}

struct RoiCase {
  std::string name;
  at::Tensor input, rois, grad_output;
  ops::RoiAlignParams params;
};

std::vector<RoiCase> fixture_roi_cases() {
  const Fixture f("roi_align.pt");
  const auto chars = f["cases"];
  std::stringstream list(std::string(chars.data_ptr<uint8_t>(), chars.data_ptr<uint8_t>() + chars.numel()));
  std::vector<RoiCase> out;
  for (std::string name; std::getline(list, name, ',');) {
    const auto p = f[name + "_params"].to(at::kDouble);
    const auto v = [&](int i) { return p[i].item<double>(); };
    out.push_back({name, f[name + "_input"], f[name + "_rois"], f[name + "_grad_output"],
                   ops::RoiAlignParams{static_cast<int64_t>(v(0)), static_cast<int64_t>(v(1)), v(2),
                                       static_cast<int64_t>(v(3)), v(4) != 0}});
  }
  return out;
}

/// A paper-sized case: conv4 features of a `height` x `width` picture (stride 16), `count` RoIs of people-like
/// shapes anywhere in the picture, some over its borders.
RoiCase paper_roi_case(int64_t channels, int64_t height, int64_t width, int64_t count, bool aligned, uint64_t seed) {
  at::manual_seed(seed);
  const int64_t fh = (height + 15) / 16, fw = (width + 15) / 16;
  const auto input = at::randn({2, channels, fh, fw});
  const auto w = at::rand({count, 1}) * 300.0 + 4.0;
  const auto h = w * (at::rand({count, 1}) * 2.0 + 1.5);
  const auto x = at::rand({count, 1}) * (static_cast<double>(width) + 100.0) - 50.0 - w / 2;
  const auto y = at::rand({count, 1}) * (static_cast<double>(height) + 100.0) - 50.0 - h / 2;
  const auto batch = at::randint(0, 2, {count, 1}, at::kLong).to(at::kFloat);
  const auto rois = at::cat({batch, x, y, x + w, y + h}, 1);
  ops::RoiAlignParams p{24, 8, 1.0 / 16.0, aligned ? 2 : -1, aligned};
  const auto grad_output = at::randn({count, channels, p.output_h, p.output_w});
  return {fmt::format("paper-sized {}x{} picture, {} RoIs, {}", height, width, count, aligned ? "aligned sr 2" : "adaptive"),
          input, rois, grad_output, p};
}

struct Pooled {
  at::Tensor output, grad_input;
};

/// RoIAlign forward, and the input's gradient for `grad_output`, on the tensors' device.
Pooled pool(const at::Tensor& input, const at::Tensor& rois, const ops::RoiAlignParams& p, const at::Tensor& grad_output) {
  auto x = input.detach().clone().requires_grad_(true);
  const auto y = ops::roi_align(x, rois, {p.output_h, p.output_w}, p.spatial_scale, p.sampling_ratio, p.aligned);
  const auto g = torch::autograd::grad({y}, {x}, {grad_output})[0];
  return {y.detach(), g};
}

/// How far a device's RoIAlign may be from the CPU kernel's, forward and backward, for `input` (the CPU copy)
/// and the CPU's input gradient.
///  - Forward: each output averages grid_h * grid_w * 4 bilinear taps, summed in another order on the device
///    (the kernel's own order with fused multiply-adds, or grid sampling + average pooling) than in the CPU
///    kernel. Backward: every input cell sums the contributions of all RoIs that sample it, on CUDA by atomic
///    adds in no fixed order. The same formulations differ on the CPU by at most 5.1 eps * (1 + max |input|)
///    forward and 5.1 eps * (1 + max |grad|) backward (measured on these cases): 32 and 64 eps leave 6x and
///    12x that.
///  - The sample positions differ too: the device contracts multiply-adds (and the sampled path goes through
///    grid_sampler's normalised coordinates, over the images stacked along the height), so a position may move
///    by a few eps times its coordinate in cells, at most the stacked map's extent. A bilinear value then moves
///    by up to that times the largest difference between adjacent cells, per axis (the first GPU run,
///    2026-11-26, H200: 3.0e-5 in float32 where the term below allows 3.9e-4).
std::pair<Tolerance, Tolerance> roi_align_tolerances(const at::Tensor& input, const at::Tensor& grad_input,
                                                     at::ScalarType dtype) {
  const double eps = dtype == at::kFloat ? 1.1920929e-07 : 2.220446e-16;
  const double extent = static_cast<double>(std::max(input.size(0) * input.size(2), input.size(3)) + 2);
  const double steepest = std::max(cuda_test::max_abs(input.narrow(2, 1, input.size(2) - 1) -
                                                      input.narrow(2, 0, input.size(2) - 1)),
                                   cuda_test::max_abs(input.narrow(3, 1, input.size(3) - 1) -
                                                      input.narrow(3, 0, input.size(3) - 1)));
  const double position = 2 * eps * extent * 2 * steepest;  // 2 eps per coordinate, 2 axes
  return {Tolerance{0, 32 * eps * (1 + cuda_test::max_abs(input)) + position},
          Tolerance{0, 64 * eps * (1 + cuda_test::max_abs(grad_input))}};
}

/// The same RoIAlign on the CPU and on `device` (float32 or float64 as `dtype`), forward and backward.
void compare_roi_align(const RoiCase& c, const c10::Device& device, at::ScalarType dtype, bool channels_last = false) {
  CAPTURE(c.name);
  const auto input = c.input.to(dtype), rois = c.rois.to(dtype), grad_output = c.grad_output.to(dtype);
  const auto cpu = pool(input, rois, c.params, grad_output);
  auto dev_input = input.to(device);
  if (channels_last) dev_input = dev_input.contiguous(at::MemoryFormat::ChannelsLast);
  const auto dev = pool(dev_input, rois.to(device), c.params, grad_output.to(device));
  check_on(dev.output, device, "output");
  check_on(dev.grad_input, device, "grad_input");
  if (channels_last && device.is_cuda())  // the layout follows the input's (the folded head consumes it as is)
    CHECK(dev.output.is_contiguous(at::MemoryFormat::ChannelsLast));
  const auto [forward, backward] = roi_align_tolerances(input, cpu.grad_input, dtype);
  check_close(dev.output, cpu.output, forward, fmt::format("roi_align forward ({})", c10::toString(dtype)));
  check_close(dev.grad_input, cpu.grad_input, backward, fmt::format("roi_align backward ({})", c10::toString(dtype)));
}

}  // namespace

TEST_CASE("boxes: area, IoU, conversions, clipping and small-box removal equal the CPU's exactly") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const Fixture f("boxes.pt");
  std::vector<std::pair<at::Tensor, at::Tensor>> pairs{{f["a"], f["b"]}};
  pairs.emplace_back(clustered_boxes(2000, 1500, 12, 1), clustered_boxes(300, 1500, 12, 2));
  for (const auto dtype : {at::kFloat, at::kDouble}) {
    for (const auto& [a_cpu, b_cpu] : pairs) {
      const auto a = a_cpu.to(dtype), b = b_cpu.to(dtype);
      const auto a_dev = a.to(device), b_dev = b.to(device);
      CAPTURE(c10::toString(dtype));
      CAPTURE(a.size(0));
      const auto iou = ops::box_iou(a_dev, b_dev);
      check_on(iou, device, "box_iou");
      check_equal(iou, ops::box_iou(a, b), "box_iou");
      check_equal(ops::box_area(a_dev), ops::box_area(a), "box_area");
      check_equal(ops::box_xyxy_to_xywh(a_dev), ops::box_xyxy_to_xywh(a), "box_xyxy_to_xywh");
      check_equal(ops::box_xywh_to_xyxy(b_dev), ops::box_xywh_to_xyxy(b), "box_xywh_to_xyxy");
      check_equal(ops::clip_boxes_to_image(a_dev, 900, 1500), ops::clip_boxes_to_image(a, 900, 1500),
                  "clip_boxes_to_image");
    }
    const auto clip_in = f["clip_in"].to(dtype);
    const auto h = f["clip_h"].item<int64_t>(), w = f["clip_w"].item<int64_t>();
    check_equal(ops::clip_boxes_to_image(clip_in.to(device), h, w), ops::clip_boxes_to_image(clip_in, h, w),
                "clip_boxes_to_image (fixture)");
    const auto small = f["small_in"].to(dtype);
    const double min_size = f["small_min_size"].item<double>();
    const auto keep = ops::remove_small_boxes(small.to(device), min_size);
    check_on(keep, device, "remove_small_boxes");
    check_equal(keep, ops::remove_small_boxes(small, min_size), "remove_small_boxes");
  }
}

TEST_CASE("box coder: encode and decode (RoI head and RPN weights, clamped codes) equal the CPU's") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const Fixture f("box_coder.pt");
  for (const std::string tag : {"roi", "rpn"}) {
    const auto w = f["weights_" + tag].to(at::kDouble);
    const ops::BoxCoder coder({w[0].item<double>(), w[1].item<double>(), w[2].item<double>(), w[3].item<double>()});
    for (const auto dtype : {at::kFloat, at::kDouble}) {
      CAPTURE(tag);
      CAPTURE(c10::toString(dtype));
      const auto tol = dtype == at::kFloat ? transcendental_float : transcendental_double;
      const auto matched = f["matched"].to(dtype), proposals = f["proposals"].to(dtype);
      const auto codes = f["codes_" + tag].to(dtype);  // two of them beyond the clamp
      const auto encoded = coder.encode(matched.to(device), proposals.to(device));
      check_on(encoded, device, "encode");
      check_close(encoded, coder.encode(matched, proposals), tol, "encode");
      const auto decoded = coder.decode(codes.to(device), proposals.to(device));
      check_on(decoded, device, "decode");
      check_close(decoded, coder.decode(codes, proposals), tol, "decode");
      // The RPN decodes 4 codes per anchor, the RoI head one box per class: [N, 4K] with K = 2 here.
      const auto many = at::cat({codes, codes.flip({0})}, 1);
      check_close(coder.decode(many.to(device), proposals.to(device)), coder.decode(many, proposals), tol,
                  "decode [N, 8]");
    }
  }
}

TEST_CASE("anchors: the device's grid anchors equal the CPU's exactly") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // Integer corners plus integer multiples of the stride: exact in float32 on any device.
  const Fixture f("anchors.pt");
  for (const std::string name : {"paper", "custom"}) {
    CAPTURE(name);
    const auto sizes = f[name + "_sizes"], ratios = f[name + "_ratios"], feature = f[name + "_feature"];
    const ops::AnchorGenerator gen(std::vector<double>(sizes.data_ptr<double>(), sizes.data_ptr<double>() + sizes.numel()),
                                   std::vector<double>(ratios.data_ptr<double>(), ratios.data_ptr<double>() + ratios.numel()),
                                   static_cast<double>(f[name + "_stride"].item<int64_t>()));
    const int64_t h = feature[0].item<int64_t>(), w = feature[1].item<int64_t>();
    const auto anchors = gen.grid_anchors(h, w, at::TensorOptions().device(device));
    check_on(anchors, device, "grid_anchors");
    check_equal(anchors, gen.grid_anchors(h, w), "grid_anchors");
  }
  // The paper's generator over the conv4 map of a 900 x 1500 picture, from a feature map on the device.
  const ops::AnchorGenerator paper;
  const auto features = at::zeros({1, 4, 57, 94});
  check_equal(paper(features.to(device)), paper(features), "AnchorGenerator(feature map)");
}

TEST_CASE("nms and batched_nms: the device keeps exactly the CPU's boxes, in the same order") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const auto same_keep = [&](const at::Tensor& boxes, const at::Tensor& scores, const at::Tensor& groups, double t,
                             const std::string& what) {
    CAPTURE(what);
    CAPTURE(t);
    const auto expected = groups.defined() ? ops::batched_nms(boxes, scores, groups, t) : ops::nms(boxes, scores, t);
    const auto keep = groups.defined() ? ops::batched_nms(boxes.to(device), scores.to(device), groups.to(device), t)
                                       : ops::nms(boxes.to(device), scores.to(device), t);
    check_on(keep, device, "keep");
    check_equal(keep, expected, what);
    return keep;
  };
  // The torchvision fixture: clustered boxes, tied scores, thresholds 0.3 / 0.5 / 0.7, an IoU exactly at the
  // threshold, large coordinates in float64.
  const Fixture f("nms.pt");
  for (const double t : {0.3, 0.5, 0.7}) {
    same_keep(f["boxes"], f["scores"], at::Tensor(), t, "fixture nms");
    same_keep(f["boxes"], f["scores"], f["classes"], t, "fixture batched_nms");
  }
  same_keep(f["edge_boxes"], f["edge_scores"], at::Tensor(), 0.5, "IoU == threshold");
  same_keep(f["big_boxes"], f["scores"].to(at::kDouble), f["classes"], 0.5, "large coordinates, float64");
  // Larger: 4000 clustered boxes with tied scores in 5 groups, float32 and float64; and the RPN's 12000
  // training candidates of one picture at its threshold 0.7.
  const auto boxes = clustered_boxes(4000, 1500, 40, 3);
  const auto scores = tied_scores(4000, 4);
  at::manual_seed(5);
  const auto groups = at::randint(0, 5, {4000}, at::kLong);
  for (const auto dtype : {at::kFloat, at::kDouble})
    for (const double t : {0.3, 0.5, 0.7, 0.9}) {
      const auto keep = same_keep(boxes.to(dtype), scores.to(dtype), at::Tensor(), t, "4000 boxes");
      CHECK(keep.size(0) > 10);  // not vacuous
      same_keep(boxes.to(dtype), scores.to(dtype), groups, t, "4000 boxes in 5 groups");
    }
  same_keep(clustered_boxes(12000, 1500, 200, 6), tied_scores(12000, 7), at::Tensor(), 0.7, "12000 RPN candidates");
  // Empty input: an empty int64 result on the device.
  const auto none = ops::nms(at::empty({0, 4}).to(device), at::empty({0}).to(device), 0.5);
  CHECK(none.numel() == 0);
  CHECK((none.scalar_type() == at::kLong));
  check_on(none, device, "empty keep");
}

TEST_CASE("nms_each_padded: the device's greedy pass (NVRTC kernel) keeps exactly the CPU's boxes, padded") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // Problems as the network poses them: the RPN's 12000 training and 6000 test candidates of a picture at 0.7
  // with a mask and the post-NMS cap, detections at 0.4 capped at 100, groups, none, one, and more problems than
  // one launch holds (16).
  std::vector<ops::detail::NmsProblem> problems;
  const auto add = [&](int64_t n, double t, int64_t cap, uint64_t seed) {
    ops::detail::NmsProblem p;
    p.boxes = clustered_boxes(n, 1500, std::max<int64_t>(1, n / 60), seed);
    p.scores = tied_scores(n, seed + 1);
    at::manual_seed(seed + 2);
    p.valid = at::rand({n}) > 0.05;
    p.iou_threshold = t;
    p.max_keep = cap;
    problems.push_back(p);
  };
  add(12000, 0.7, 2000, 41);
  add(6000, 0.7, 300, 42);
  add(300, 0.4, 100, 43);
  add(0, 0.5, 100, 44);
  add(1, 0.5, 100, 45);
  add(4000, 0.5, -1, 46);
  at::manual_seed(47);
  problems.back().groups = at::randint(0, 5, {4000}, at::kLong);
  for (int k = 0; k < 14; ++k) add(50 + 40 * k, 0.5, 20, 50 + 3 * static_cast<uint64_t>(k));
  const auto expected = ops::detail::nms_each_padded(problems);  // the CPU kernel's results, padded
  std::vector<ops::detail::NmsProblem> on_device = problems;
  for (auto& p : on_device) {
    p.boxes = p.boxes.to(device);
    p.scores = p.scores.to(device);
    p.valid = p.valid.to(device);
    if (p.groups.defined()) p.groups = p.groups.to(device);
  }
  if (device.is_cuda()) {  // a GPU machine must find NVRTC (else NMS silently waits for the host's pass)
    std::string why;
    REQUIRE_MESSAGE(CudaJit::available(&why), why);
    CHECK(ops::detail::nms_greedy_on_device(on_device));
  }
  const auto got = ops::detail::nms_each_padded(on_device);
  check_on(got.index, device, "index");
  check_on(got.count, device, "count");
  check_equal(got.count, expected.count, "kept counts");
  check_equal(got.index, expected.index, "kept indices, padded with -1");
  CHECK(expected.count[0].item<int64_t>() > 100);  // not vacuous
  // nms_each on the device: the same lists (the greedy pass on the device, one read of the counts).
  const auto lists = ops::detail::nms_each(on_device);
  for (size_t k = 0; k < problems.size(); ++k) {
    CAPTURE(k);
    const auto row = static_cast<int64_t>(k);
    check_equal(lists[k], expected.index[row].narrow(0, 0, expected.count[row].item<int64_t>()), "nms_each");
  }
}

TEST_CASE("roi_align forward and backward on the device equal the CPU kernel's (torchvision fixture cases)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  const auto cases = fixture_roi_cases();
  REQUIRE(cases.size() == 7);
  for (const auto& c : cases) {
    compare_roi_align(c, device, at::kFloat);
    compare_roi_align(c, device, at::kDouble);
    compare_roi_align(c, device, at::kFloat, /*channels_last=*/true);
  }
}

TEST_CASE("roi_align forward and backward on the device equal the CPU kernel's (paper-sized: 24 x 8, stride 16)") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // A 900 x 1500 picture (CUHK-SYSU's test size after resizing), 256 RoIs, 64 channels (the CPU side's time
  // stays small; the device path's arithmetic does not depend on the channel count).
  for (const bool aligned : {false, true}) {
    const auto c = paper_roi_case(64, 900, 1500, 256, aligned, aligned ? 11 : 12);
    compare_roi_align(c, device, at::kFloat);
    compare_roi_align(c, device, at::kDouble);
  }
  // Channels-last conv4 features, as the folded eval() backbone gives them.
  compare_roi_align(paper_roi_case(64, 608, 800, 128, false, 13), device, at::kFloat, /*channels_last=*/true);
}

TEST_CASE("roi_align on float16 / bfloat16 features (autocast) agrees with the CPU, which pools in float32") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // Under autocast the conv4 features reach the pooler in float16 or bfloat16 while the RoIs are image
  // coordinates up to ~1500 px. The CPU pools such inputs in float32 and rounds the result once. A device result
  // may differ by the rounding of its samples and sums in the reduced type: 16 ulp of max |input| (float16:
  // 2^-10, bfloat16: 2^-7 relative). Sample positions are coordinates / 16 and must not be rounded to the
  // reduced type: bfloat16 spaces 1024..2048 px 8 px apart, half a feature cell.
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    CAPTURE(c10::toString(dtype));
    const double ulp = dtype == at::kHalf ? 1.0 / 1024 : 1.0 / 128;
    const auto c = paper_roi_case(16, 900, 1500, 128, false, 21);
    const auto input = c.input.to(dtype);
    const auto& p = c.params;
    const auto cpu = ops::roi_align(input, c.rois, {p.output_h, p.output_w}, p.spatial_scale, p.sampling_ratio);
    for (const bool channels_last : {false, true}) {  // channels-last: 16-byte accesses of 8 channels on CUDA
      CAPTURE(channels_last);
      auto dev_input = input.to(device);
      if (channels_last) dev_input = dev_input.contiguous(at::MemoryFormat::ChannelsLast);
      const auto dev = ops::roi_align(dev_input, c.rois.to(device), {p.output_h, p.output_w}, p.spatial_scale,
                                      p.sampling_ratio);
      check_on(dev, device, "output");
      check_close(dev, cpu, Tolerance{0, 16 * ulp * cuda_test::max_abs(input)},
                  "roi_align forward (reduced precision)");
    }
  }
}

TEST_CASE("roi_align on CUDA: the NVRTC kernels run; the sampled fallback, bad RoIs and reduced-precision gradients") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  if (device.is_cuda()) {  // a GPU machine must find NVRTC (else roi_align silently takes the slower fallback)
    std::string why;
    REQUIRE_MESSAGE(CudaJit::available(&why), why);
    CHECK(ops::detail::roi_align_cuda_kernels_available());
  }
  // 1. The fallback for devices without the kernels (grid sampling + average pooling), called directly, against
  //    the CPU kernel: it must stay correct on this device although roi_align() no longer takes it here.
  for (const bool aligned : {false, true}) {
    auto c = paper_roi_case(64, 900, 1500, 256, aligned, 31);
    c.params.sampling_ratio = 2;
    const auto cpu = pool(c.input, c.rois, c.params, c.grad_output);
    auto x = c.input.to(device).requires_grad_(true);
    const auto y = ops::detail::roi_align_sampled_path(x, c.rois.to(device), c.params);
    const auto g = torch::autograd::grad({y}, {x}, {c.grad_output.to(device)})[0];
    const auto [forward, backward] = roi_align_tolerances(c.input, cpu.grad_input, at::kFloat);
    check_close(y.detach(), cpu.output, forward, "sampled path forward");
    check_close(g, cpu.grad_input, backward, "sampled path backward");
  }
  // 2. RoIs that name no image of the batch or have a non-finite coordinate pool to 0 and take no gradient; the
  //    valid RoIs around them are unaffected (the CPU refuses such RoIs, so it pools the valid ones only).
  {
    const auto c = paper_roi_case(8, 300, 400, 6, false, 32);
    auto bad = c.rois.clone();
    bad[1][0] = 2.0;                                             // batch 2 of 2
    bad[2][0] = -1.0;                                            // negative batch
    bad[3][1] = std::numeric_limits<float>::quiet_NaN();         // x1
    bad[4][4] = std::numeric_limits<float>::infinity();          // y2
    const auto valid = at::tensor(std::vector<int64_t>{0, 5});
    const auto dev = pool(c.input.to(device), bad.to(device), c.params, c.grad_output.to(device));
    const auto cpu = pool(c.input, c.rois.index_select(0, valid), c.params, c.grad_output.index_select(0, valid));
    const auto [forward, backward] = roi_align_tolerances(c.input, cpu.grad_input, at::kFloat);
    check_close(dev.output.index_select(0, valid.to(device)), cpu.output, forward, "valid RoIs beside bad ones");
    CHECK(cuda_test::max_abs(dev.output.narrow(0, 1, 4)) == 0.0);
    check_close(dev.grad_input, cpu.grad_input, backward, "gradient: the bad RoIs add nothing");
  }
  // 3. Reduced precision, backward: the gradient of float16 / bfloat16 features is accumulated in float32 and
  //    rounded once, so it is within one rounding (ulp / 2 relative, taken as ulp of the largest magnitude) plus
  //    float32's summation error of the CPU's float32 gradient for the same (rounded) output gradient.
  for (const auto dtype : {at::kHalf, at::kBFloat16}) {
    CAPTURE(c10::toString(dtype));
    const double ulp = dtype == at::kHalf ? 1.0 / 1024 : 1.0 / 128;
    const auto c = paper_roi_case(16, 900, 1500, 128, false, 33);
    const auto input = c.input.to(dtype), grad_output = c.grad_output.to(dtype);
    const auto cpu = pool(input.to(at::kFloat), c.rois, c.params, grad_output.to(at::kFloat));
    const auto dev = pool(input.to(device), c.rois.to(device), c.params, grad_output.to(device));
    CHECK((dev.grad_input.scalar_type() == dtype));
    const double largest = cuda_test::max_abs(cpu.grad_input);
    check_close(dev.grad_input, cpu.grad_input, Tolerance{0, ulp * largest + 64 * 1.1920929e-07 * (1 + largest)},
                "roi_align backward (reduced precision)");
  }
}

TEST_CASE("max_pool_strips on the device equals the CPU's adaptive max pooling, values and gradients") {
  TRIDENT_DEVICE_UNDER_TEST(device);
  // g-hat, g and the part strips of the RoI head, bfloat16 channels-last as under autocast and float32.
  at::manual_seed(41);
  for (const auto dtype : {at::kFloat, at::kBFloat16})
    for (const int64_t strips : {1, 3}) {
      CAPTURE(c10::toString(dtype));
      CAPTURE(strips);
      const auto x = at::randn({64, 32, 12, 4}).to(dtype);
      const auto grad = at::randn({64, 32, strips, 1}).to(dtype);
      const auto cpu_x = x.clone().requires_grad_(true);
      const auto cpu = ops::max_pool_strips(cpu_x, strips);
      const auto cpu_grad = torch::autograd::grad({cpu}, {cpu_x}, {grad})[0];
      const auto dev_x = x.to(device).contiguous(at::MemoryFormat::ChannelsLast).requires_grad_(true);
      const auto dev = ops::max_pool_strips(dev_x, strips);
      const auto dev_grad = torch::autograd::grad({dev}, {dev_x}, {grad.to(device)})[0];
      check_on(dev, device, "max_pool_strips");
      check_equal(dev, cpu, "max_pool_strips values");
      // bfloat16 has ties among 48 values per strip: the gradient goes to one maximal element on both devices,
      // perhaps another one. So for bfloat16 the per-channel sums are compared, in float64 (the sum of `strips`
      // values of 8 significant bits is exact there, in any order; the first GPU run summed float32 in its own
      // order, which differs from the CPU's by an ulp), and for float32 (distinct values) the gradients.
      if (dtype == at::kFloat) check_equal(dev_grad, cpu_grad, "max_pool_strips gradient");
      check_equal(dev_grad.to(at::kDouble).sum({2, 3}), cpu_grad.to(at::kDouble).sum({2, 3}),
                  "max_pool_strips gradient per channel");
    }
}
