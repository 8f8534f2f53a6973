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

/// The compiled kernels (one per program): per dtype, forward (one value per thread), forward_vec (16 bytes of
/// channels per thread) and backward (one block per RoI and 16 channels).
inline const CudaJit& roi_align_cuda_jit() {
  static const CudaJit jit = [] {
    std::vector<std::string> names;
    for (const char* kind : {"forward", "forward_vec", "backward"})
      for (const char* dtype : {"f32", "f64", "f16", "bf16"})
        names.push_back(fmt::format("trident_roi_align_{}_{}", kind, dtype));
    return CudaJit("trident::ops::roi_align", std::string(kRoiAlignCudaPrelude) + kRoiAlignCudaKernels,
                   std::move(names));
  }();
  return jit;
}

/// Whether roi_align runs these kernels for CUDA tensors (NVRTC and the driver found, TRIDENT_CUDA_JIT not 0).
inline bool roi_align_cuda_kernels_available() {
  static const bool available = CudaJit::available();
  return available;
}

/// The kernel's suffix for a dtype: f32, f64, f16 or bf16.
inline const char* roi_align_dtype_suffix(at::ScalarType dtype) {
  const char* suffix = dtype == at::kFloat      ? "f32"
                       : dtype == at::kDouble   ? "f64"
                       : dtype == at::kHalf     ? "f16"
                       : dtype == at::kBFloat16 ? "bf16"
                                                : nullptr;
  TRIDENT_CHECK(suffix != nullptr, "trident::ops::roi_align: no CUDA kernel for {} tensors",
                std::string(c10::toString(dtype)));
  return suffix;
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

inline void launch_roi_align(const std::string& kernel, const at::Tensor& a, const at::Tensor& rois,
                             const at::Tensor& b, RoiAlignKernelArgs args, std::array<unsigned, 2> blocks,
                             unsigned shared_bytes = 0) {
  void* pa = a.data_ptr();
  void* pr = rois.data_ptr();
  void* pb = b.data_ptr();
  void* params[] = {&pa, &pr, &pb, &args};
  roi_align_cuda_jit().launch(kernel, a.device(), blocks, 256, params, shared_bytes);
}

inline unsigned roi_align_grid(long long threads_needed) {
  return static_cast<unsigned>(std::min<long long>((threads_needed + 255) / 256, static_cast<long long>(1) << 22));
}

/// Forward: [K, C, PH, PW] in the input's dtype, channels-last when the input is.
inline at::Tensor roi_align_forward_cuda(const at::Tensor& input, const at::Tensor& rois, const RoiAlignParams& p) {
  const auto format = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous()
                          ? at::MemoryFormat::ChannelsLast
                          : at::MemoryFormat::Contiguous;
  auto output = at::empty({rois.size(0), input.size(1), p.output_h, p.output_w}, input.options().memory_format(format));
  if (output.numel() == 0) return output;
  const auto args = roi_align_kernel_args(p, input.sizes(), input.strides(), output);
  const char* suffix = roi_align_dtype_suffix(input.scalar_type());
  if (roi_align_vectorizable(input, output)) {
    const long long vec = 16 / static_cast<long long>(input.element_size());
    launch_roi_align(fmt::format("trident_roi_align_forward_vec_{}", suffix), input, rois, output, args,
                     {roi_align_grid(args.total / vec), 1});
  } else {
    launch_roi_align(fmt::format("trident_roi_align_forward_{}", suffix), input, rois, output, args,
                     {roi_align_grid(args.total), 1});
  }
  return output;
}

/// Backward: the input's gradient (sizes `input_sizes`, layout `format`, dtype `dtype`), accumulated in the RoIs'
/// dtype (float32, or float64) with atomic adds, through 48 KiB of shared memory per block (kPatchChannels = 16
/// channels of up to 768 float32 or 384 float64 cells).
inline at::Tensor roi_align_backward_cuda(const at::Tensor& grad_output, const at::Tensor& rois,
                                          const RoiAlignParams& p, at::IntArrayRef input_sizes, at::ScalarType dtype,
                                          at::MemoryFormat format) {
  auto accumulated = at::zeros(input_sizes, rois.options().memory_format(format));
  if (grad_output.numel() == 0 || accumulated.numel() == 0) return accumulated.to(dtype);
  constexpr unsigned shared_bytes = 48 * 1024, channels_per_block = 16;
  auto args = roi_align_kernel_args(p, input_sizes, accumulated.strides(), grad_output);
  args.patch_cells = static_cast<int>(shared_bytes / (channels_per_block * accumulated.element_size()));
  const auto groups = static_cast<unsigned>((input_sizes[1] + channels_per_block - 1) / channels_per_block);
  TRIDENT_CHECK(rois.size(0) < (int64_t{1} << 31) && groups < 65536u,
                "trident::ops::roi_align: {} RoIs of {} channels exceed the CUDA backward's grid", rois.size(0),
                input_sizes[1]);
  launch_roi_align(fmt::format("trident_roi_align_backward_{}", roi_align_dtype_suffix(grad_output.scalar_type())),
                   grad_output, rois, accumulated, args, {static_cast<unsigned>(rois.size(0)), groups}, shared_bytes);
  return dtype == accumulated.scalar_type() ? accumulated : accumulated.to(dtype);
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
