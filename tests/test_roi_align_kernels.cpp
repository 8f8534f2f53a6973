// RoIAlign's CUDA kernels (include/trident/ops/roi_align_kernels.inc) run on the host through
// tests/support/cuda_emulation.hpp, against the CPU kernel (bit-identical to torchvision's): the logic of what
// ops::roi_align runs on a GPU, tested on machines without one. Covered: the per-value forward, the 16-byte
// channel-group forward (roi_align_vectorizable decides), the backward's per-RoI shared-memory sums and its
// global fallback (footprints larger than the patch), every dtype, fixed and adaptive sampling, aligned boxes,
// RoIs over the borders, and RoIs that name no image or have non-finite coordinates (pooled to 0, no gradient).
// The host launch helpers' arguments (RoiAlignKernelArgs) are copied into the kernels' Args here, so their
// layouts must agree.
#include "support/fixtures.hpp"

#include <trident/ops/roi_align.hpp>

#include <ATen/ops/cat.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/randint.h>
#include <ATen/ops/randn.h>
#include <ATen/ops/tensor.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/autograd.h>

#include <cstring>
#include <limits>
#include <string>

#include "support/cuda_emulation.hpp"

namespace trident::test::emu {
#define TRIDENT_CUDA_SOURCE(...) __VA_ARGS__
#include <trident/ops/roi_align_kernels.inc>
#undef TRIDENT_CUDA_SOURCE
}  // namespace trident::test::emu

using namespace trident;
using trident::test::max_abs_diff;

namespace {

static_assert(sizeof(test::emu::Args) == sizeof(ops::detail::RoiAlignKernelArgs),
              "the host's RoiAlignKernelArgs and the kernels' Args must have the same layout");

test::emu::Args device_args(const ops::detail::RoiAlignKernelArgs& host) {
  test::emu::Args a;
  std::memcpy(&a, &host, sizeof a);
  return a;
}

/// Which kernels to run, by the kernels' type names.
template <class IO>
struct Kernels;
#define TRIDENT_EMULATED_KERNELS(IO, SUFFIX)                                              \
  template <>                                                                             \
  struct Kernels<test::emu::IO> {                                                         \
    static constexpr auto forward = &test::emu::trident_roi_align_forward_##SUFFIX;         \
    static constexpr auto forward_vec = &test::emu::trident_roi_align_forward_vec_##SUFFIX; \
    static constexpr auto backward = &test::emu::trident_roi_align_backward_##SUFFIX;       \
  };
TRIDENT_EMULATED_KERNELS(F32, f32)
TRIDENT_EMULATED_KERNELS(F64, f64)
TRIDENT_EMULATED_KERNELS(BF16, bf16)
TRIDENT_EMULATED_KERNELS(F16, f16)
#undef TRIDENT_EMULATED_KERNELS

static_assert(test::emu::kPatchChannels == ops::detail::kRoiAlignPatchChannels,
              "the host plans the backward's grid for the kernels' channels per block");

constexpr unsigned kThreads = 8;  // any block size works (grid- and block-stride loops); small keeps it quick

/// The forward as roi_align_forward_cuda plans it (per-value or vectorised, the host's grid).
template <class IO>
at::Tensor emulated_forward(const at::Tensor& input, const at::Tensor& rois, const ops::RoiAlignParams& p,
                            bool& vectorised) {
  const auto l = ops::detail::roi_align_forward_launch(input, rois, p);
  using T = typename IO::T;
  using A = typename IO::A;
  vectorised = l.kind == ops::detail::RoiAlignKernel::forward_vec;
  test::emu::launch(vectorised ? Kernels<IO>::forward_vec : Kernels<IO>::forward, {l.blocks[0], l.blocks[1], 1},
                    kThreads, l.shared_bytes, static_cast<const T*>(input.data_ptr()),
                    static_cast<const A*>(rois.data_ptr()), static_cast<T*>(l.out.data_ptr()), device_args(l.args));
  return l.out;
}

/// The backward as roi_align_backward_cuda plans it, with `patch_cells` of shared memory per block instead of
/// the host's 48 KiB (small patches exercise the global fallback).
template <class IO>
at::Tensor emulated_backward(const at::Tensor& grad_output, const at::Tensor& rois, const ops::RoiAlignParams& p,
                             at::IntArrayRef input_sizes, at::MemoryFormat format, int patch_cells) {
  auto l = ops::detail::roi_align_backward_launch(grad_output, rois, p, input_sizes, format);
  using T = typename IO::T;
  using A = typename IO::A;
  CHECK(l.args.patch_cells * ops::detail::kRoiAlignPatchChannels * sizeof(A) == l.shared_bytes);
  l.args.patch_cells = patch_cells;
  test::emu::launch(Kernels<IO>::backward, {l.blocks[0], l.blocks[1], 1}, kThreads,
                    static_cast<size_t>(patch_cells) * ops::detail::kRoiAlignPatchChannels * sizeof(A),
                    static_cast<const T*>(grad_output.data_ptr()), static_cast<const A*>(rois.data_ptr()),
                    static_cast<A*>(l.out.data_ptr()), device_args(l.args));
  return l.out;
}

/// The CPU kernel's output and input gradient (float32 or float64).
std::pair<at::Tensor, at::Tensor> cpu_reference(const at::Tensor& input, const at::Tensor& rois,
                                                const ops::RoiAlignParams& p, const at::Tensor& grad_output) {
  auto x = input.detach().clone().requires_grad_(true);
  const auto y = ops::roi_align(x, rois, {p.output_h, p.output_w}, p.spatial_scale, p.sampling_ratio, p.aligned);
  const auto g = torch::autograd::grad({y}, {x}, {grad_output})[0];
  return {y.detach(), g};
}

/// Person-shaped RoIs over a `height` x `width` picture (some over its borders, a few tiny), on `batch` images.
at::Tensor person_rois(int64_t count, int64_t batch, double height, double width, uint64_t seed) {
  at::manual_seed(seed);
  const auto w = at::rand({count, 1}, at::kDouble) * (width / 3) + 1.0;
  const auto h = w * (at::rand({count, 1}, at::kDouble) * 2.0 + 1.0);
  const auto x = at::rand({count, 1}, at::kDouble) * (width + 40.0) - 20.0 - w / 2;
  const auto y = at::rand({count, 1}, at::kDouble) * (height + 40.0) - 20.0 - h / 2;
  const auto b = at::randint(0, batch, {count, 1}, at::kLong).to(at::kDouble);
  return at::cat({b, x, y, x + w, y + h}, 1);
}

struct Setting {
  int64_t batch, channels, height, width, rois;
  ops::RoiAlignParams params;
};

/// Forward and backward of kernel type IO against the CPU kernel on the same (rounded) data: forward within
/// `forward_tol`, the gradient within `backward_tol` times (1 + its largest magnitude).
template <class IO>
void check_against_cpu(const Setting& s, at::ScalarType dtype, bool channels_last, int patch_cells,
                       bool expect_vectorised, double forward_tol, double backward_tol, uint64_t seed) {
  CAPTURE(channels_last);
  CAPTURE(patch_cells);
  const auto& p = s.params;
  at::manual_seed(seed);
  auto input = at::randn({s.batch, s.channels, s.height, s.width}).to(dtype);
  if (channels_last) input = input.contiguous(at::MemoryFormat::ChannelsLast);
  const auto work = dtype == at::kDouble ? at::kDouble : at::kFloat;
  const auto rois = person_rois(s.rois, s.batch, s.height / p.spatial_scale, s.width / p.spatial_scale, seed + 1)
                        .to(work)
                        .contiguous();
  const auto grad_output = at::randn({s.rois, s.channels, p.output_h, p.output_w}).to(dtype);
  const auto [cpu_out, cpu_grad] = cpu_reference(input.to(work), rois, p, grad_output.to(work));

  bool vectorised = false;
  const auto out = emulated_forward<IO>(input, rois, p, vectorised);
  CHECK(vectorised == expect_vectorised);
  CHECK(out.is_contiguous(channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous));
  CHECK(max_abs_diff(out.to(work), cpu_out) <= forward_tol);
  const auto format = channels_last ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  const auto grad = emulated_backward<IO>(grad_output, rois, p, input.sizes(), format, patch_cells);
  CHECK((grad.scalar_type() == work));
  // Relative to the gradient's largest magnitude: each cell sums the shares of many RoIs, in another order.
  CHECK(max_abs_diff(grad, cpu_grad) <= backward_tol * (1 + cpu_grad.abs().max().item<double>()));
}

}  // namespace

TEST_CASE("roi_align CUDA kernels (emulated on the host): float64 equals the CPU kernel to rounding") {
  // Paper-like geometry at a small size: stride 16, 24 x 8 bins, sampling ratio 2, RoIs over the borders.
  const Setting paper{2, 8, 12, 20, 24, ops::RoiAlignParams{24, 8, 1.0 / 16.0, 2, false}};
  // float64, contiguous: the per-value forward; the backward through the shared-memory patch (768 cells hold
  // every footprint here) and with a patch of 4 cells (every RoI larger: the global fallback).
  for (const int patch : {768, 4})
    check_against_cpu<test::emu::F64>(paper, at::kDouble, false, patch, false, 1e-12, 1e-12, 1);
  // Channels-last float64: two channels per 16-byte access.
  check_against_cpu<test::emu::F64>(paper, at::kDouble, true, 768, true, 1e-12, 1e-12, 2);
  // Adaptive sampling (the grid follows each RoI's size) and aligned boxes, both layouts.
  const Setting adaptive{2, 4, 9, 13, 16, ops::RoiAlignParams{5, 3, 0.25, -1, false}};
  const Setting aligned{1, 6, 10, 10, 16, ops::RoiAlignParams{4, 4, 0.5, 2, true}};
  for (const bool cl : {false, true}) {
    check_against_cpu<test::emu::F64>(adaptive, at::kDouble, cl, 768, cl, 1e-12, 1e-12, 3);
    check_against_cpu<test::emu::F64>(aligned, at::kDouble, cl, 768, cl, 1e-12, 1e-12, 4);
    check_against_cpu<test::emu::F64>(aligned, at::kDouble, cl, 9, cl, 1e-12, 1e-12, 5);  // some RoIs fit, some not
  }
}

TEST_CASE("roi_align CUDA kernels (emulated): float32, bfloat16 and float16 agree with the CPU within rounding") {
  const Setting paper{2, 16, 12, 20, 24, ops::RoiAlignParams{24, 8, 1.0 / 16.0, 2, false}};
  // float32: the forward is the CPU kernel's arithmetic in the same order; the backward sums each cell's shares
  // in another order (per RoI in the patch, then atomic adds in thread order): 64 float32 eps, relative.
  constexpr double f32_eps = 1.1920929e-07;
  for (const bool cl : {false, true})
    check_against_cpu<test::emu::F32>(paper, at::kFloat, cl, 768, cl, 1e-5, 64 * f32_eps, 6);
  // bfloat16 / float16 features: read exactly, accumulated in float32, the output rounded once (half an ulp of
  // the reduced type, relative; |values| < 5 here), the gradient accumulated in float32.
  for (const bool cl : {false, true}) {
    check_against_cpu<test::emu::BF16>(paper, at::kBFloat16, cl, 768, cl, 5.0 / 256, 64 * f32_eps, 7);
    check_against_cpu<test::emu::F16>(paper, at::kHalf, cl, 768, cl, 5.0 / 1024, 64 * f32_eps, 8);
  }
}

TEST_CASE("roi_align CUDA kernels (emulated): bad RoIs pool to 0 and take no gradient; the rest is unaffected") {
  const ops::RoiAlignParams p{4, 2, 1.0 / 16.0, 2, false};
  at::manual_seed(9);
  // The input is the first two images of three: a kernel that took batch index 2 as valid would read the third
  // image's (non-zero) values instead of pooling to 0.
  const auto storage = at::randn({3, 8, 12, 20}, at::kDouble).contiguous(at::MemoryFormat::ChannelsLast);
  const auto input = storage.narrow(0, 0, 2);
  const auto good = person_rois(3, 2, 192, 320, 10);
  const auto inside = at::tensor({0.0, 40.0, 30.0, 120.0, 150.0}, at::kDouble).view({1, 5});  // in the picture
  auto rois = at::cat({good, inside.repeat({4, 1})}, 0);  // rows 3..6 are made bad below
  rois[3][0] = 2.0;                                        // batch 2 of 2
  rois[4][0] = -1.0;                                       // negative batch
  rois[5][2] = std::numeric_limits<double>::quiet_NaN();   // y1
  rois[6][3] = std::numeric_limits<double>::infinity();    // x2
  rois = rois.contiguous();
  const auto grad_output = at::randn({rois.size(0), 8, p.output_h, p.output_w}, at::kDouble);
  bool vectorised = false;
  const auto out = emulated_forward<test::emu::F64>(input, rois, p, vectorised);
  CHECK(vectorised);
  const auto [cpu_out, cpu_grad] = cpu_reference(input, good, p, grad_output.narrow(0, 0, 3));
  CHECK(max_abs_diff(out.narrow(0, 0, 3), cpu_out) <= 1e-12);
  CHECK(out.narrow(0, 3, 4).abs().max().item<double>() == 0.0);
  const auto grad = emulated_backward<test::emu::F64>(grad_output, rois, p, input.sizes(),
                                                      at::MemoryFormat::ChannelsLast, 384);
  CHECK(max_abs_diff(grad, cpu_grad) <= 1e-12);
}

TEST_CASE("roi_align CUDA launch helpers: 16-byte vectorisation only where every access is aligned") {
  const auto output_cl = [](const at::Tensor& input) {
    return at::empty({3, input.size(1), 4, 2}, input.options().memory_format(at::MemoryFormat::ChannelsLast));
  };
  const auto cl = at::zeros({1, 16, 5, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  CHECK(ops::detail::roi_align_vectorizable(cl, output_cl(cl)));                          // 4 floats per access
  CHECK_FALSE(ops::detail::roi_align_vectorizable(at::zeros({1, 16, 5, 5}), output_cl(cl)));  // NCHW input
  const auto odd = at::zeros({1, 6, 5, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  CHECK_FALSE(ops::detail::roi_align_vectorizable(odd, output_cl(odd)));                   // 6 % 4 != 0
  const auto half = at::zeros({1, 8, 5, 5}, at::kHalf).contiguous(at::MemoryFormat::ChannelsLast);
  CHECK(ops::detail::roi_align_vectorizable(half, output_cl(half)));                       // 8 halves per access
  // A view that starts 4 bytes into its storage: not 16-byte aligned.
  const auto big = at::zeros({1, 20, 5, 5}).contiguous(at::MemoryFormat::ChannelsLast);
  const auto shifted = big.narrow(1, 1, 16);
  CHECK_FALSE(ops::detail::roi_align_vectorizable(shifted, output_cl(shifted)));
}
