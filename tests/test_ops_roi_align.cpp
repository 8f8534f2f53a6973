// RoIAlign forward and backward against torchvision, numerical gradients, the any-device tensor path, the
// RoiAlignPooler policy and the documented errors.
#include "support/fixtures.hpp"
#include "support/gradcheck.hpp"

#include <trident/ops/roi_align.hpp>
#include <trident/roi/pooler.hpp>

#include <ATen/ops/empty.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/randn_like.h>
#include <ATen/ops/tensor.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstdlib>
#include <sstream>

using namespace trident;
using trident::test::Fixture;

namespace {

struct Case {
  at::Tensor input, rois, output, grad_output, grad_input;
  ops::RoiAlignParams params;
};

Case load_case(const Fixture& f, const std::string& name) {
  const auto p = f[name + "_params"];
  return {f[name + "_input"], f[name + "_rois"], f[name + "_output"], f[name + "_grad_output"], f[name + "_grad_input"],
          ops::RoiAlignParams{static_cast<int64_t>(p[0].item<double>()), static_cast<int64_t>(p[1].item<double>()),
                              p[2].item<double>(), static_cast<int64_t>(p[3].item<double>()), p[4].item<double>() != 0}};
}

std::vector<std::string> case_names(const Fixture& f) {
  const auto chars = f["cases"];
  std::string all(chars.data_ptr<uint8_t>(), chars.data_ptr<uint8_t>() + chars.numel());
  std::vector<std::string> names;
  std::stringstream ss(all);
  for (std::string n; std::getline(ss, n, ',');) names.push_back(n);
  return names;
}

// Forward through `pool`, backward with the fixture's grad_output; returns (output, grad_input).
template <typename Pool>
std::pair<at::Tensor, at::Tensor> run(const Case& c, Pool&& pool) {
  auto x = c.input.clone().requires_grad_(true);
  const auto y = pool(x, c.rois, c.params);
  const auto g = torch::autograd::grad({y}, {x}, {c.grad_output})[0];
  return {y.detach(), g};
}

at::Tensor cpu_kernel(const at::Tensor& x, const at::Tensor& rois, const ops::RoiAlignParams& p) {
  return ops::roi_align(x, rois, {p.output_h, p.output_w}, p.spatial_scale, p.sampling_ratio, p.aligned);
}
at::Tensor tensor_path(const at::Tensor& x, const at::Tensor& rois, const ops::RoiAlignParams& p) {
  return ops::detail::roi_align_tensor_path(x, rois, p);
}
// The GPU's path for a fixed sampling ratio (grid sampling + average pooling), run here on the CPU.
at::Tensor sampled_path(const at::Tensor& x, const at::Tensor& rois, const ops::RoiAlignParams& p) {
  return ops::detail::roi_align_sampled_path(x, rois.to(x.scalar_type()), p);
}

}  // namespace

TEST_CASE("roi_align forward and backward match torchvision to 1e-5 on both paths") {
  const Fixture f("roi_align.pt");
  const auto names = case_names(f);
  REQUIRE(names.size() == 7);
  for (const auto& name : names) {
    CAPTURE(name);
    const auto c = load_case(f, name);
    const auto [y, g] = run(c, cpu_kernel);
    TRIDENT_CHECK_CLOSE(y, c.output, 1e-5);
    TRIDENT_CHECK_CLOSE(g, c.grad_input, 1e-5);
    const auto [yt, gt] = run(c, tensor_path);
    TRIDENT_CHECK_CLOSE(yt, c.output, 1e-5);
    TRIDENT_CHECK_CLOSE(gt, c.grad_input, 1e-5);
  }
}

TEST_CASE("roi_align: the sampled path (fixed sampling ratio) matches torchvision to 1e-5, forward and backward") {
  const Fixture f("roi_align.pt");
  int checked = 0;
  for (const auto& name : case_names(f)) {
    const auto c = load_case(f, name);
    if (c.params.sampling_ratio <= 0) continue;  // the adaptive grid is not this path's
    CAPTURE(name);
    for (const bool channels_last : {false, true}) {
      CAPTURE(channels_last);
      Case cc = c;
      if (channels_last) cc.input = c.input.contiguous(at::MemoryFormat::ChannelsLast);
      const auto [y, g] = run(cc, sampled_path);
      TRIDENT_CHECK_CLOSE(y, c.output, 1e-5);
      TRIDENT_CHECK_CLOSE(g, c.grad_input, 1e-5);
      const bool layouts_differ = y.size(1) > 1 && y.size(2) * y.size(3) > 1;
      if (layouts_differ) CHECK(y.is_contiguous(channels_last ? at::MemoryFormat::ChannelsLast
                                                              : at::MemoryFormat::Contiguous));
    }
    ++checked;
  }
  CHECK(checked == 3);  // half_scale_sr2, half_scale_sr2_aligned (batches of 2), stride16_24x8_sr2_aligned
}

TEST_CASE("roi_align: the sampled path equals the CPU kernel on random RoIs (ratios 1-3, batches 1-3, borders)") {
  at::manual_seed(11);
  for (const int64_t batch : {1, 3}) {
    for (const int64_t ratio : {1, 2, 3}) {
      for (const bool aligned : {false, true}) {
        CAPTURE(batch);
        CAPTURE(ratio);
        CAPTURE(aligned);
        const int64_t height = 9, width = 14, k = 40;
        const auto x = at::randn({batch, 6, height, width}, at::kDouble);
        // Boxes in image coordinates (scale 1/4) from well outside the map to well inside, some tiny.
        const auto corner = at::rand({k, 2}, at::kDouble) * (4.0 * (width + 6)) - 12.0;
        const auto size = at::rand({k, 2}, at::kDouble) * 40.0;
        auto boxes = at::cat({corner, corner + size}, 1);
        boxes[0] = at::tensor({-20.0, -20.0, -6.0, -5.0}, at::kDouble);             // entirely outside
        boxes[1] = at::tensor({40.0, 20.0, 40.1, 20.1}, at::kDouble);               // smaller than a cell
        boxes[2] = at::tensor({0.0, 0.0, 4.0 * width, 4.0 * height}, at::kDouble);  // the whole map
        const auto image = at::randint(0, batch, {k, 1}, at::kDouble);
        const auto rois = at::cat({image, boxes}, 1);
        const ops::RoiAlignParams p{5, 3, 0.25, ratio, aligned};
        const auto ref_in = x.clone().requires_grad_(true);
        const auto ref = cpu_kernel(ref_in, rois, p);
        const auto grad_out = at::randn_like(ref);
        const auto ref_grad = torch::autograd::grad({ref}, {ref_in}, {grad_out})[0];
        const auto in = x.clone().requires_grad_(true);
        const auto y = sampled_path(in, rois, p);
        const auto g = torch::autograd::grad({y}, {in}, {grad_out})[0];
        TRIDENT_CHECK_CLOSE(y, ref, 1e-10);
        TRIDENT_CHECK_CLOSE(g, ref_grad, 1e-10);
        CHECK(ref.abs().max().item<double>() > 0.5);  // not vacuous: the RoIs do see the features
      }
    }
  }
}

TEST_CASE("roi_align: the sampled path gives the same values and gradients in chunks of RoIs") {
  at::manual_seed(12);
  const auto x = at::randn({2, 4, 10, 12}, at::kDouble);
  const auto corner = at::rand({9, 2}, at::kDouble) * 40.0;
  const auto size = 5.0 + at::rand({9, 2}, at::kDouble) * 20.0;
  const auto rois = at::cat({at::randint(0, 2, {9, 1}, at::kDouble), corner, corner + size}, 1);
  const ops::RoiAlignParams p{3, 2, 0.25, 2, false};
  const int64_t per_roi = 3 * 2 * 2 * 2 * 4;  // sampled values of one RoI: PH * g * PW * g * C
  at::Tensor reference_value, reference_grad;
  for (const int64_t budget : {int64_t{1} << 28, per_roi, 7 * per_roi, per_roi / 2}) {  // 1, 9, 2 chunks; 9
    CAPTURE(budget);
    const auto in = x.clone().requires_grad_(true);
    const auto y = ops::detail::roi_align_sampled_path(in, rois, p, budget);
    const auto g = torch::autograd::grad({(y * y).sum()}, {in})[0];
    if (!reference_value.defined()) {
      reference_value = y.detach();
      reference_grad = g;
      TRIDENT_CHECK_CLOSE(reference_value, cpu_kernel(x, rois, p), 1e-12);
      continue;
    }
    TRIDENT_CHECK_CLOSE(y, reference_value, 0.0);
    TRIDENT_CHECK_CLOSE(g, reference_grad, 1e-12);  // the chunks' gradients are summed in another order
  }
}

TEST_CASE("roi_align: the sampled path pools out-of-range batch indices and non-finite RoIs to 0, reads nothing else") {
  const auto x = at::randn({2, 3, 6, 7}).requires_grad_(true);
  const ops::RoiAlignParams p{2, 2, 1.0, 2, false};
  const auto rois = at::tensor({0.f, 1.f, 1.f, 5.f, 4.f,                 // a good RoI
                                2.f, 1.f, 1.f, 5.f, 4.f,                 // batch index 2 of 2
                                -1.f, 1.f, 1.f, 5.f, 4.f,                // negative batch index
                                1.f, std::nanf(""), 1.f, 5.f, 4.f,       // NaN coordinate
                                1.f, 1.f, 1.f, INFINITY, 4.f})           // infinite coordinate
                        .view({5, 5});
  const auto y = sampled_path(x, rois, p);
  TRIDENT_CHECK_CLOSE(y[0], cpu_kernel(x, rois.narrow(0, 0, 1), p)[0], 1e-6);
  CHECK(y.narrow(0, 1, 4).abs().max().item<float>() == 0.f);
  const auto g = torch::autograd::grad({y.narrow(0, 1, 4).sum()}, {x})[0];
  CHECK(g.abs().max().item<float>() == 0.f);
}

TEST_CASE("roi_align: a channels-last input gives the same values, channels-last, on both paths") {
  const Fixture f("roi_align.pt");
  for (const auto& name : case_names(f)) {
    CAPTURE(name);
    const auto c = load_case(f, name);
    const auto cl = c.input.contiguous(at::MemoryFormat::ChannelsLast);
    for (auto pool : {&cpu_kernel, &tensor_path}) {
      const auto y = pool(cl, c.rois, c.params);
      TRIDENT_CHECK_CLOSE(y, c.output, 1e-5);
      const bool layouts_differ = y.size(1) > 1 && y.size(2) * y.size(3) > 1 && y.numel() > 0;
      if (pool == &cpu_kernel && layouts_differ) CHECK(y.is_contiguous(at::MemoryFormat::ChannelsLast));
      // and the gradient, from the fixture's NCHW grad_output
      auto x = cl.clone().requires_grad_(true);
      const auto g = torch::autograd::grad({pool(x, c.rois, c.params)}, {x}, {c.grad_output})[0];
      TRIDENT_CHECK_CLOSE(g, c.grad_input, 1e-5);
    }
  }
}

TEST_CASE("roi_align gradient equals central differences (double)") {
  const Fixture f("roi_align.pt");
  for (const std::string name : {"adaptive", "half_scale_sr2_aligned", "stride16_24x8"}) {
    CAPTURE(name);
    const auto c = load_case(f, name);
    const auto x = c.input.to(at::kDouble);
    const auto rois = c.rois.to(at::kDouble);
    for (auto pool : {&cpu_kernel, &tensor_path, &sampled_path}) {
      if (pool == &sampled_path && c.params.sampling_ratio <= 0) continue;
      const auto r = test::gradcheck([&](const at::Tensor& v) { return pool(v, rois, c.params); }, x, 1e-6, 300);
      CHECK(r.max_abs_grad > 0.1);  // the check is not vacuous
      CHECK(r.max_abs_error < 1e-7);
    }
  }
}

TEST_CASE("roi_align: hand-computed bilinear value, list-of-boxes form and RoiAlignPooler<24, 8>") {
  // A 1x1x2x2 ramp; one sample (sampling_ratio 1) at the centre of the box [0.5, 0.5, 1.5, 1.5] -> (1, 1),
  // which is the corner shared by the four pixels clamped to the last row/column: value of pixel (1, 1).
  const auto x = at::tensor({0.f, 1.f, 2.f, 3.f}).view({1, 1, 2, 2});
  const auto y = ops::roi_align(x, at::tensor({0.f, 0.25f, 0.25f, 0.75f, 0.75f}).view({1, 5}), {1, 1}, 1.0, 1, false);
  // Unaligned, a 0.5-wide box is widened to 1 cell: sample at (0.25 + 0.5, 0.25 + 0.5) = (0.75, 0.75).
  CHECK(y.item<float>() == doctest::Approx(0.75 * 2 + 0.75 * 1));

  const auto features = at::randn({2, 16, 20, 12});
  const std::vector<at::Tensor> boxes{at::tensor({10.f, 20.f, 90.f, 300.f}).view({1, 4}),
                                      at::tensor({0.f, 0.f, 150.f, 310.f, 30.f, 40.f, 60.f, 100.f}).view({2, 4})};
  const roi::RoiAlignPooler<24, 8> pooler;
  const auto pooled = pooler(features, boxes);
  CHECK(pooled.sizes() == at::IntArrayRef({3, 16, 24, 8}));
  const auto rois = ops::boxes_to_rois(boxes);
  TRIDENT_CHECK_CLOSE(rois.select(1, 0), at::tensor({0.f, 1.f, 1.f}), 0.0);
  TRIDENT_CHECK_CLOSE(pooled, ops::roi_align(features, rois, {24, 8}, 1.0 / 16, 2, false), 0.0);
  static_assert(roi::RoiAlignPooler<24, 8>::output_height == 24 && roi::RoiAlignPooler<24, 8>::output_width == 8);
}

TEST_CASE("roi_align: reduced precision, empty input and errors") {
  const auto x = at::randn({1, 3, 8, 8});
  const auto rois = at::tensor({0.f, 1.f, 1.f, 6.f, 5.f}).view({1, 5});
  const auto ref = ops::roi_align(x, rois, {2, 2});
  const auto half = ops::roi_align(x.to(at::kBFloat16), rois, {2, 2});
  CHECK((half.scalar_type() == at::kBFloat16));  // ScalarType is compared undecomposed
  CHECK(test::max_abs_diff(half, ref) < 0.05);
  CHECK(ops::roi_align(x, at::empty({0, 5}), {4, 2}).sizes() == at::IntArrayRef({0, 3, 4, 2}));

  CHECK_THROWS_WITH_AS(ops::roi_align(x, at::zeros({2, 4}), {2, 2}),
                       "trident::ops::roi_align: rois must be a [K, 5] tensor (batch index, x1, y1, x2, y2), got [2, 4]",
                       trident::Error);
  CHECK_THROWS_WITH_AS(ops::roi_align(x, at::tensor({1.f, 1.f, 1.f, 6.f, 5.f}).view({1, 5}), {2, 2}),
                       doctest::Contains("rois[0, 0] = 1 is not a batch index"), trident::Error);
  CHECK_THROWS_WITH_AS(ops::roi_align(x, at::tensor({0.f, 1.f, std::nanf(""), 6.f, 5.f}).view({1, 5}), {2, 2}),
                       doctest::Contains("is not finite"), trident::Error);
  CHECK_THROWS_WITH_AS(ops::roi_align(x, at::tensor({0.f, 7.f, 1.f, 6.f, 5.f}).view({1, 5}), {2, 2}),
                       doctest::Contains("x2 < x1"), trident::Error);
  CHECK_THROWS_WITH_AS(ops::roi_align(x, rois, {0, 2}), doctest::Contains("output size must be positive"),
                       trident::Error);
  CHECK_THROWS_WITH_AS(ops::roi_align(x[0], rois, {2, 2}), doctest::Contains("input must be a [N, C, H, W] tensor"),
                       trident::Error);
}

#if TRIDENT_HAS_CUDA_JIT
// A CUDA build of LibTorch (pip's wheel in CI's second leg): the kernels that roi_align runs on CUDA devices
// (roi_align_cuda.hpp) must compile with the NVRTC that comes with LibTorch's CUDA runtime. Compiling needs no
// GPU; running them is tests/cuda's (test_cuda_ops.cpp) on a GPU machine.
TEST_CASE("roi_align: the CUDA kernels compile with NVRTC for sm_80 and sm_90, every entry point present") {
  std::string why;
  REQUIRE_MESSAGE(CudaJit::can_compile(&why), why);
  CHECK(CudaJit::nvrtc_version() >= 11000);
  const auto& jit = ops::detail::roi_align_cuda_jit();
  const auto cubin = jit.compile("sm_90");
  REQUIRE(cubin.size() > 4);
  CHECK(cubin.compare(0, 4, "\x7f" "ELF") == 0);  // machine code: an ELF image
  const auto ptx = jit.compile("compute_80");
  using Kind = ops::detail::RoiAlignKernel;
  const std::pair<Kind, const char*> kinds[] = {
      {Kind::forward, "forward"}, {Kind::forward_vec, "forward_vec"}, {Kind::backward, "backward"}};
  for (const auto& [kind, kind_name] : kinds)
    for (const auto dtype : {at::kFloat, at::kDouble, at::kHalf, at::kBFloat16}) {
      const auto name = fmt::format("trident_roi_align_{}_{}", kind_name, ops::detail::roi_align_dtype_suffix(dtype));
      CHECK_MESSAGE(ptx.find(".entry " + name + "(") != std::string::npos, name);
      // roi_align launches by index: the index of (kind, dtype) must be that name's.
      CHECK_MESSAGE(ops::detail::roi_align_kernel(kind, dtype) == jit.kernel_index(name), name);
    }
  CHECK_THROWS_WITH_AS(jit.kernel_index("trident_roi_align_sideways_f32"),
                       "trident::ops::roi_align: no kernel named trident_roi_align_sideways_f32", trident::Error);
  CHECK(std::string(ops::detail::roi_align_dtype_suffix(at::kBFloat16)) == "bf16");
  CHECK(CudaJit::architecture_for(9, 0) == "sm_90");
  CHECK(CudaJit::architecture_for(99, 0).rfind("compute_", 0) == 0);  // newer than NVRTC knows: PTX
  CHECK_THROWS_WITH_AS(ops::detail::roi_align_dtype_suffix(at::kInt),
                       "trident::ops::roi_align: no CUDA kernel for Int tensors", trident::Error);
  // TRIDENT_CUDA_JIT=0 turns the kernels off (roi_align then takes the sampled path), and says so.
  ::setenv("TRIDENT_CUDA_JIT", "0", 1);
  std::string off;
  CHECK_FALSE(CudaJit::available(&off));
  CHECK(off == "TRIDENT_CUDA_JIT=0 in the environment");
  ::unsetenv("TRIDENT_CUDA_JIT");
  // A source that does not compile: the error carries NVRTC's log.
  const CudaJit broken("broken", "extern \"C\" __global__ void k() { undeclared_name = 1; }", {"k"});
  CHECK_THROWS_WITH_AS(broken.compile("sm_90"), doctest::Contains("undeclared_name"), trident::Error);
}
#endif
