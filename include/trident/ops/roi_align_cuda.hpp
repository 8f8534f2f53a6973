#pragma once
/// \file trident/ops/roi_align_cuda.hpp
/// RoIAlign's CUDA kernels, forward and backward, with torchvision's semantics (see roi_align.hpp), compiled at
/// run time by NVRTC (trident::CudaJit) for the GPU in use.
///
/// Forward: one thread per output value, averaging its bin's grid_h x grid_w bilinear samples in torchvision's
/// order (sample rows outer, columns inner), read straight from the feature map whatever its strides; nothing is
/// materialised in between. On a channels-last map the threads of a warp take consecutive channels of one bin
/// (coalesced reads and writes), 16 bytes of channels per thread where the layout allows it
/// (roi_align_vectorizable), and the output is channels-last too; otherwise they take consecutive bins of one
/// channel and the output is contiguous.
/// Backward: one block per RoI and 16 channels sums the RoI's gradient in shared memory over the cells it samples,
/// then adds each cell to the input's gradient once (atomic adds in float32, or float64 for a float64 input, then
/// a cast to the input's dtype); footprints larger than the shared memory add straight to global memory.
/// float32, float64, half and bfloat16 features; half and bfloat16 are read and accumulated in float32 with
/// float32 RoIs. RoIs whose batch index is not one of the input's or with a non-finite coordinate pool to 0 and
/// get no gradient (never a read outside the input). Both are asynchronous on the current stream: no
/// host-device synchronisation, CUDA graphs capture them. Summation order and fused multiply-adds make the
/// results differ from the CPU kernel's in the last bits; the backward's atomic adds make it non-deterministic
/// in the last bits, as torchvision's CUDA kernel is. The kernels' source is roi_align_kernels.inc, which the
/// tests also compile on the host (tests/support/cuda_emulation.hpp).
#include <trident/config.hpp>
#include <trident/core/cuda_jit.hpp>
#include <trident/ops/roi_align_params.hpp>

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace trident::ops::detail {

/// The device definitions the kernels' source expects (see roi_align_kernels.inc).
inline constexpr const char* kRoiAlignCudaPrelude = R"CUDA(
#define TRIDENT_UNROLL _Pragma("unroll")
#define TRIDENT_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
__device__ __forceinline__ float trident_half_to_float(unsigned short h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ unsigned short trident_float_to_half(float v) {
  unsigned short h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
  return h;
}
)CUDA";

/// The kernels (roi_align_kernels.inc) as text.
#define TRIDENT_CUDA_SOURCE(...) #__VA_ARGS__
inline constexpr const char* kRoiAlignCudaKernels =
#include <trident/ops/roi_align_kernels.inc>
    ;
#undef TRIDENT_CUDA_SOURCE

/// The kernels' `Args`, field for field (the same layout on the host and the device).
struct RoiAlignKernelArgs {
  long long total = 0;
  long long in_stride[4] = {0, 0, 0, 0};
  long long out_stride[4] = {0, 0, 0, 0};
  double spatial_scale = 1.0;
  int batch = 0, channels = 0, height = 0, width = 0, output_h = 0, output_w = 0, sampling_ratio = 0, aligned = 0,
      channels_fastest = 0, patch_cells = 0;
};

/// The kernels' kinds and dtypes, in the order of their entry points' names (trident_roi_align_<kind>_<dtype>).
enum class RoiAlignKernel : size_t { forward, forward_vec, backward };
inline constexpr std::array<const char*, 3> kRoiAlignKinds{"forward", "forward_vec", "backward"};
inline constexpr std::array<at::ScalarType, 4> kRoiAlignDtypes{at::kFloat, at::kDouble, at::kHalf, at::kBFloat16};
inline constexpr std::array<const char*, 4> kRoiAlignSuffixes{"f32", "f64", "f16", "bf16"};

/// The position of `dtype` in kRoiAlignDtypes; an error for a dtype without kernels.
inline size_t roi_align_dtype_slot(at::ScalarType dtype) {
  for (size_t i = 0; i < kRoiAlignDtypes.size(); ++i)
    if (kRoiAlignDtypes[i] == dtype) return i;
  trident::fail("trident::ops::roi_align: no CUDA kernel for {} tensors", std::string(c10::toString(dtype)));
}

/// The kernel's suffix for a dtype: f32, f64, f16 or bf16.
inline const char* roi_align_dtype_suffix(at::ScalarType dtype) {
  return kRoiAlignSuffixes[roi_align_dtype_slot(dtype)];
}

/// The compiled kernels (one per program): per dtype, forward (one value per thread), forward_vec (16 bytes of
/// channels per thread) and backward (one block per RoI and 16 channels).
inline const CudaJit& roi_align_cuda_jit() {
  static const CudaJit jit = [] {
    std::vector<std::string> names;
    for (const char* kind : kRoiAlignKinds)
      for (const char* dtype : kRoiAlignSuffixes) names.push_back(fmt::format("trident_roi_align_{}_{}", kind, dtype));
    return CudaJit("trident::ops::roi_align", std::string(kRoiAlignCudaPrelude) + kRoiAlignCudaKernels,
                   std::move(names));
  }();
  return jit;
}

/// CudaJit's index of the kernel of `kind` for `dtype` (the order of roi_align_cuda_jit's names).
inline size_t roi_align_kernel(RoiAlignKernel kind, at::ScalarType dtype) {
  return static_cast<size_t>(kind) * kRoiAlignDtypes.size() + roi_align_dtype_slot(dtype);
}

/// Whether roi_align runs these kernels for CUDA tensors (NVRTC and the driver found, TRIDENT_CUDA_JIT not 0).
inline bool roi_align_cuda_kernels_available() {
  static const bool available = CudaJit::available();
  return available;
}

inline RoiAlignKernelArgs roi_align_kernel_args(const RoiAlignParams& p, at::IntArrayRef input_sizes,
                                                at::IntArrayRef input_strides, const at::Tensor& per_roi) {
  RoiAlignKernelArgs a;
  a.total = per_roi.numel();
  for (int d = 0; d < 4; ++d) {
    a.in_stride[d] = input_strides[d];
    a.out_stride[d] = per_roi.stride(d);
  }
  a.spatial_scale = p.spatial_scale;
  a.batch = static_cast<int>(input_sizes[0]);
  a.channels = static_cast<int>(input_sizes[1]);
  a.height = static_cast<int>(input_sizes[2]);
  a.width = static_cast<int>(input_sizes[3]);
  a.output_h = static_cast<int>(p.output_h);
  a.output_w = static_cast<int>(p.output_w);
  a.sampling_ratio = static_cast<int>(p.sampling_ratio);
  a.aligned = p.aligned ? 1 : 0;
  // Consecutive threads take consecutive channels where the per-RoI tensor keeps channels innermost.
  a.channels_fastest = per_roi.size(1) > 1 && per_roi.stride(1) == 1 ? 1 : 0;
  return a;
}

/// Whether forward_vec applies: channels innermost in both tensors, whole 16-byte groups of channels, and every
/// address it reads or writes 16-byte aligned.
inline bool roi_align_vectorizable(const at::Tensor& input, const at::Tensor& output) {
  const int64_t vec = 16 / static_cast<int64_t>(input.element_size());
  const auto aligned = [&](const at::Tensor& t) {
    return reinterpret_cast<uintptr_t>(t.data_ptr()) % 16 == 0 && t.stride(1) == 1 && t.stride(0) % vec == 0 &&
           t.stride(2) % vec == 0 && t.stride(3) % vec == 0;
  };
  return input.size(1) % vec == 0 && aligned(input) && aligned(output);
}

/// One launch of a RoIAlign kernel, planned on the host: the tensor it writes (the output, or the float32 /
/// float64 gradient buffer), the kernel's arguments, which kernel and its grid. roi_align_forward_cuda and
/// roi_align_backward_cuda launch these plans; the tests run the same plans through the emulated kernels.
struct RoiAlignLaunch {
  at::Tensor out;
  RoiAlignKernelArgs args;
  RoiAlignKernel kind = RoiAlignKernel::forward;
  std::array<unsigned, 2> blocks{1, 1};
  unsigned shared_bytes = 0;
};
/// Threads per block, shared memory per backward block, and channels per backward block (the kernels' own
/// kPatchChannels: tests/test_roi_align_kernels.cpp asserts they agree).
inline constexpr unsigned kRoiAlignThreads = 256, kRoiAlignSharedBytes = 48 * 1024, kRoiAlignPatchChannels = 16;

inline unsigned roi_align_grid(long long threads_needed) {
  return static_cast<unsigned>(std::min<long long>((threads_needed + kRoiAlignThreads - 1) / kRoiAlignThreads,
                                                   static_cast<long long>(1) << 22));
}

/// Forward: [K, C, PH, PW] in the input's dtype, channels-last when the input is (out.numel() == 0: no launch).
inline RoiAlignLaunch roi_align_forward_launch(const at::Tensor& input, const at::Tensor& rois,
                                              const RoiAlignParams& p) {
  const auto format = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous()
                          ? at::MemoryFormat::ChannelsLast
                          : at::MemoryFormat::Contiguous;
  RoiAlignLaunch l;
  l.out = at::empty({rois.size(0), input.size(1), p.output_h, p.output_w}, input.options().memory_format(format));
  l.args = roi_align_kernel_args(p, input.sizes(), input.strides(), l.out);
  const bool vectorised = roi_align_vectorizable(input, l.out);
  l.kind = vectorised ? RoiAlignKernel::forward_vec : RoiAlignKernel::forward;
  l.blocks = {roi_align_grid(vectorised ? l.args.total / (16 / input.element_size()) : l.args.total), 1};
  return l;
}

/// Backward: the zeroed gradient buffer (sizes `input_sizes`, layout `format`, the RoIs' dtype) and one block
/// per RoI and kRoiAlignPatchChannels channels with kRoiAlignSharedBytes of shared memory (768 float32 or 384
/// float64 cells of the RoI's footprint).
inline RoiAlignLaunch roi_align_backward_launch(const at::Tensor& grad_output, const at::Tensor& rois,
                                               const RoiAlignParams& p, at::IntArrayRef input_sizes,
                                               at::MemoryFormat format) {
  RoiAlignLaunch l;
  l.out = at::zeros(input_sizes, rois.options().memory_format(format));
  l.args = roi_align_kernel_args(p, input_sizes, l.out.strides(), grad_output);
  l.args.patch_cells = static_cast<int>(kRoiAlignSharedBytes / (kRoiAlignPatchChannels * l.out.element_size()));
  l.kind = RoiAlignKernel::backward;
  const auto groups = static_cast<unsigned>((input_sizes[1] + kRoiAlignPatchChannels - 1) / kRoiAlignPatchChannels);
  TRIDENT_CHECK(rois.size(0) < (int64_t{1} << 31) && groups < 65536u,
                "trident::ops::roi_align: {} RoIs of {} channels exceed the CUDA backward's grid", rois.size(0),
                input_sizes[1]);
  l.blocks = {static_cast<unsigned>(rois.size(0)), groups};
  l.shared_bytes = kRoiAlignSharedBytes;
  return l;
}

/// Runs `l` for kernels of `dtype` reading `in` (the input, or the output's gradient) and the RoIs.
inline void launch_roi_align(const RoiAlignLaunch& l, at::ScalarType dtype, const at::Tensor& in,
                             const at::Tensor& rois) {
  void* pa = in.data_ptr();
  void* pr = rois.data_ptr();
  void* pb = l.out.data_ptr();
  auto args = l.args;
  void* params[] = {&pa, &pr, &pb, &args};
  roi_align_cuda_jit().launch(roi_align_kernel(l.kind, dtype), in.device(), l.blocks, kRoiAlignThreads, params,
                              l.shared_bytes);
}

inline at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
  const auto l = roi_align_forward_launch(input, rois, p);
  if (l.out.numel() > 0) launch_roi_align(l, input.scalar_type(), input, rois);
  return l.out;
}

/// The input's gradient in `dtype`, accumulated in the RoIs' dtype (float32, or float64) with atomic adds.
inline at::Tensor roi_align_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                          const RoiAlignParams& p, at::IntArrayRef input_sizes, at::ScalarType dtype,
                                          at::MemoryFormat format) {
  const auto l = roi_align_backward_launch(grad_output, rois, p, input_sizes, format);
  if (grad_output.numel() > 0 && l.out.numel() > 0) launch_roi_align(l, grad_output.scalar_type(), grad_output, rois);
  return dtype == l.out.scalar_type() ? l.out : l.out.to(dtype);
}

/// The CUDA kernels as a RoIAlignFunction implementation (autograd: RoiAlignCudaFunction::apply).
struct RoiAlignCuda {
  static at::Tensor forward(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
    return roi_align_forward_cuda(input, rois, p);
  }
  static at::Tensor backward(const at::Tensor& grad_output, const RoiAlignContext& c) {
    const auto grad = grad_output.scalar_type() == c.dtype ? grad_output : grad_output.to(c.dtype);
    return roi_align_backward_cuda(grad, c.rois, c.params, c.input_sizes, c.dtype, c.format);
  }
};
using RoiAlignCudaFunction = RoiAlignFunction<RoiAlignCuda>;

}  // namespace trident::ops::detail
