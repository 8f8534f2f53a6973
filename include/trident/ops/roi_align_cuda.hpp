#pragma once
/// \file trident/ops/roi_align_cuda.hpp
/// RoIAlign's CUDA kernels, forward and backward, with torchvision's semantics (see roi_align.hpp), compiled at
/// run time by NVRTC (trident::CudaJit) for the GPU in use.
///
/// Forward: one thread per output value, averaging its bin's grid_h x grid_w bilinear samples in torchvision's
/// order (sample rows outer, columns inner); the samples are read straight from the feature map, whatever its
/// strides, and nothing is materialised in between. On a channels-last map the threads of a warp take
/// consecutive channels of one bin (coalesced reads and writes) and the output is channels-last too; otherwise
/// they take consecutive bins of one channel and the output is contiguous.
/// Backward: one thread per output gradient, adding each sample's four bilinear shares into the input's
/// gradient with atomic adds (in float32, or float64 for a float64 input, then cast to the input's dtype).
/// float32, float64, half and bfloat16 features; half and bfloat16 are read and accumulated in float32 with
/// float32 RoIs. RoIs whose batch index is not one of the input's or with a non-finite coordinate pool to 0 and
/// get no gradient (never a read outside the input). Both are asynchronous on the current stream: no
/// host-device synchronisation, CUDA graphs capture them. Summation order and fused multiply-adds make the
/// results differ from the CPU kernel's in the last bits; the backward's atomic adds make it non-deterministic
/// in the last bits, as torchvision's CUDA kernel is.
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

/// The kernels' source (CUDA C++ without includes; NVRTC compiles it).
inline constexpr const char* kRoiAlignCudaSource = R"CUDA(
// Element types: T is stored, A is the arithmetic and accumulation type.
// vec: elements per 16-byte access (load_vec / store_vec need 16-byte aligned addresses).
struct F32 {
  typedef float T;
  typedef float A;
  enum { vec = 4 };
  static __device__ __forceinline__ float load(const float* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(float* p, float v) { *p = v; }
  static __device__ __forceinline__ void load_vec(const float* p, float* v) {
    const float4 q = __ldg(reinterpret_cast<const float4*>(p));
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  }
  static __device__ __forceinline__ void store_vec(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};
struct F64 {
  typedef double T;
  typedef double A;
  enum { vec = 2 };
  static __device__ __forceinline__ double load(const double* p) { return __ldg(p); }
  static __device__ __forceinline__ void store(double* p, double v) { *p = v; }
  static __device__ __forceinline__ void load_vec(const double* p, double* v) {
    const double2 q = __ldg(reinterpret_cast<const double2*>(p));
    v[0] = q.x, v[1] = q.y;
  }
  static __device__ __forceinline__ void store_vec(double* p, const double* v) {
    *reinterpret_cast<double2*>(p) = make_double2(v[0], v[1]);
  }
};
// Eight 16-bit values in one 16-byte access, element i in bits 16 (i % 2) of word i / 2 (little-endian).
template <class IO16>
struct Vec16 {
  enum { vec = 8 };
  static __device__ __forceinline__ void load_vec(const unsigned short* p, float* v) {
    const uint4 q = __ldg(reinterpret_cast<const uint4*>(p));
    const unsigned w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const unsigned short lo = static_cast<unsigned short>(w[i] & 0xffffu), hi = static_cast<unsigned short>(w[i] >> 16);
      v[2 * i] = IO16::convert(lo);
      v[2 * i + 1] = IO16::convert(hi);
    }
  }
  static __device__ __forceinline__ void store_vec(unsigned short* p, const float* v) {
    unsigned w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      w[i] = static_cast<unsigned>(IO16::round(v[2 * i])) | (static_cast<unsigned>(IO16::round(v[2 * i + 1])) << 16);
    *reinterpret_cast<uint4*>(p) = make_uint4(w[0], w[1], w[2], w[3]);
  }
};
struct BF16 : Vec16<BF16> {
  typedef unsigned short T;
  typedef float A;
  static __device__ __forceinline__ float convert(unsigned short b) { return __uint_as_float(static_cast<unsigned>(b) << 16); }
  static __device__ __forceinline__ unsigned short round(float v) {  // to nearest even
    unsigned u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<unsigned short>((u >> 16) | 0x40u);  // a quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return static_cast<unsigned short>(u >> 16);
  }
  static __device__ __forceinline__ float load(const unsigned short* p) { return convert(__ldg(p)); }
  static __device__ __forceinline__ void store(unsigned short* p, float v) { *p = round(v); }
};
struct F16 : Vec16<F16> {
  typedef unsigned short T;
  typedef float A;
  static __device__ __forceinline__ float convert(unsigned short h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
  }
  static __device__ __forceinline__ unsigned short round(float v) {
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    return h;
  }
  static __device__ __forceinline__ float load(const unsigned short* p) { return convert(__ldg(p)); }
  static __device__ __forceinline__ void store(unsigned short* p, float v) { *p = round(v); }
};

// The host's RoiAlignKernelArgs, field for field.
struct Args {
  long long total;          // values in the output (forward) or output gradient (backward)
  long long in_stride[4];   // input (forward) or input gradient (backward): n, c, h, w
  long long out_stride[4];  // output (forward) or output gradient (backward): k, c, y, x
  double spatial_scale;
  int batch, channels, height, width, output_h, output_w, sampling_ratio, aligned, channels_fastest, patch_cells;
};

template <class A>
struct Geometry {
  long long batch;
  A start_h, start_w, bin_h, bin_w, count;
  int grid_h, grid_w;
  bool valid;
};

// torchvision's arithmetic, as the CPU kernel's RoiGeometry.
template <class A>
__device__ __forceinline__ Geometry<A> geometry(const A* roi, const Args& a) {
  Geometry<A> g;
  const A b = roi[0];
  g.valid = b >= A(0) && b < A(a.batch) && isfinite(roi[1]) && isfinite(roi[2]) && isfinite(roi[3]) &&
            isfinite(roi[4]);
  g.batch = g.valid ? static_cast<long long>(b) : 0;
  const A offset = a.aligned ? A(0.5) : A(0);
  const A scale = static_cast<A>(a.spatial_scale);
  g.start_w = roi[1] * scale - offset;
  g.start_h = roi[2] * scale - offset;
  A roi_w = roi[3] * scale - offset - g.start_w;
  A roi_h = roi[4] * scale - offset - g.start_h;
  if (!a.aligned) {
    roi_w = roi_w < A(1) ? A(1) : roi_w;
    roi_h = roi_h < A(1) ? A(1) : roi_h;
  }
  g.bin_h = roi_h / static_cast<A>(a.output_h);
  g.bin_w = roi_w / static_cast<A>(a.output_w);
  g.grid_h = a.sampling_ratio > 0 ? a.sampling_ratio : (g.valid ? static_cast<int>(ceil(roi_h / a.output_h)) : 0);
  g.grid_w = a.sampling_ratio > 0 ? a.sampling_ratio : (g.valid ? static_cast<int>(ceil(roi_w / a.output_w)) : 0);
  const int n = g.grid_h * g.grid_w;
  g.count = static_cast<A>(n > 1 ? n : 1);
  return g;
}

// The bilinear neighbours of one sample and their weights; false when the sample lies further than one cell
// outside the map (it contributes 0).
template <class A>
__device__ __forceinline__ bool taps(A y, A x, int height, int width, int& y0, int& x0, int& y1, int& x1, A& ly,
                                     A& lx) {
  if (y < A(-1) || y > A(height) || x < A(-1) || x > A(width)) return false;
  if (y <= A(0)) y = A(0);
  if (x <= A(0)) x = A(0);
  y0 = static_cast<int>(y);
  x0 = static_cast<int>(x);
  if (y0 >= height - 1) {
    y1 = y0 = height - 1;
    y = static_cast<A>(y0);
  } else {
    y1 = y0 + 1;
  }
  if (x0 >= width - 1) {
    x1 = x0 = width - 1;
    x = static_cast<A>(x0);
  } else {
    x1 = x0 + 1;
  }
  ly = y - static_cast<A>(y0);
  lx = x - static_cast<A>(x0);
  return true;
}

// Output element `index` -> (RoI k, channel c, bin row ph, bin column pw).
__device__ __forceinline__ void position(long long index, const Args& a, long long& k, int& c, int& ph, int& pw) {
  if (a.channels_fastest) {
    c = static_cast<int>(index % a.channels);
    index /= a.channels;
    pw = static_cast<int>(index % a.output_w);
    index /= a.output_w;
    ph = static_cast<int>(index % a.output_h);
    k = index / a.output_h;
  } else {
    pw = static_cast<int>(index % a.output_w);
    index /= a.output_w;
    ph = static_cast<int>(index % a.output_h);
    index /= a.output_h;
    c = static_cast<int>(index % a.channels);
    k = index / a.channels;
  }
}

template <class IO>
__device__ void forward(const typename IO::T* __restrict__ input, const typename IO::A* __restrict__ rois,
                        typename IO::T* __restrict__ output, const Args& a) {
  typedef typename IO::A A;
  const long long step = static_cast<long long>(blockDim.x) * gridDim.x;
  for (long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; index < a.total;
       index += step) {
    long long k;
    int c, ph, pw;
    position(index, a, k, c, ph, pw);
    const Geometry<A> g = geometry(rois + 5 * k, a);
    A sum = A(0);
    if (g.valid) {
      const typename IO::T* plane = input + g.batch * a.in_stride[0] + c * a.in_stride[1];
      const long long sy = a.in_stride[2], sx = a.in_stride[3];
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const A y = g.start_h + ph * g.bin_h + static_cast<A>(iy + .5f) * g.bin_h / static_cast<A>(g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const A x = g.start_w + pw * g.bin_w + static_cast<A>(ix + .5f) * g.bin_w / static_cast<A>(g.grid_w);
          int y0, x0, y1, x1;
          A ly, lx;
          if (!taps(y, x, a.height, a.width, y0, x0, y1, x1, ly, lx)) continue;
          const A hy = A(1) - ly, hx = A(1) - lx;
          const A v0 = IO::load(plane + y0 * sy + x0 * sx), v1 = IO::load(plane + y0 * sy + x1 * sx);
          const A v2 = IO::load(plane + y1 * sy + x0 * sx), v3 = IO::load(plane + y1 * sy + x1 * sx);
          sum += hy * hx * v0 + hy * lx * v1 + ly * hx * v2 + ly * lx * v3;
        }
      }
    }
    IO::store(output + k * a.out_stride[0] + c * a.out_stride[1] + ph * a.out_stride[2] + pw * a.out_stride[3],
              sum / g.count);
  }
}

// Forward, IO::vec consecutive channels per thread with 16-byte loads and stores: channels-last input and
// output, channels a multiple of IO::vec, 16-byte aligned (the host checks). Per channel the same arithmetic in
// the same order as forward().
template <class IO>
__device__ void forward_vec(const typename IO::T* __restrict__ input, const typename IO::A* __restrict__ rois,
                            typename IO::T* __restrict__ output, const Args& a) {
  typedef typename IO::A A;
  enum { V = IO::vec };
  const int groups = a.channels / V;
  const long long total = a.total / V;
  const long long step = static_cast<long long>(blockDim.x) * gridDim.x;
  for (long long index = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; index < total;
       index += step) {
    long long rest = index;
    const int c = static_cast<int>(rest % groups) * V;
    rest /= groups;
    const int pw = static_cast<int>(rest % a.output_w);
    rest /= a.output_w;
    const int ph = static_cast<int>(rest % a.output_h);
    const long long k = rest / a.output_h;
    const Geometry<A> g = geometry(rois + 5 * k, a);
    A sum[V];
#pragma unroll
    for (int i = 0; i < V; ++i) sum[i] = A(0);
    if (g.valid) {
      const typename IO::T* plane = input + g.batch * a.in_stride[0] + c;
      const long long sy = a.in_stride[2], sx = a.in_stride[3];
      for (int iy = 0; iy < g.grid_h; ++iy) {
        const A y = g.start_h + ph * g.bin_h + static_cast<A>(iy + .5f) * g.bin_h / static_cast<A>(g.grid_h);
        for (int ix = 0; ix < g.grid_w; ++ix) {
          const A x = g.start_w + pw * g.bin_w + static_cast<A>(ix + .5f) * g.bin_w / static_cast<A>(g.grid_w);
          int y0, x0, y1, x1;
          A ly, lx;
          if (!taps(y, x, a.height, a.width, y0, x0, y1, x1, ly, lx)) continue;
          const A hy = A(1) - ly, hx = A(1) - lx;
          A v0[V], v1[V], v2[V], v3[V];
          IO::load_vec(plane + y0 * sy + x0 * sx, v0);
          IO::load_vec(plane + y0 * sy + x1 * sx, v1);
          IO::load_vec(plane + y1 * sy + x0 * sx, v2);
          IO::load_vec(plane + y1 * sy + x1 * sx, v3);
#pragma unroll
          for (int i = 0; i < V; ++i) sum[i] += hy * hx * v0[i] + hy * lx * v1[i] + ly * hx * v2[i] + ly * lx * v3[i];
        }
      }
    }
#pragma unroll
    for (int i = 0; i < V; ++i) sum[i] = sum[i] / g.count;
    IO::store_vec(output + k * a.out_stride[0] + c + ph * a.out_stride[2] + pw * a.out_stride[3], sum);
  }
}

// Backward, one block per (RoI, group of 16 channels): the RoI's gradient is first summed in shared memory over
// the cells it samples (its footprint), then added to the input's gradient once per cell and channel. RoIs
// overlap heavily (proposals cluster on the people), so this takes most atomic adds off the global memory. A
// footprint larger than `a.patch_cells` cells (and any sample outside the footprint, which rounding could in
// principle produce) adds straight to global memory.
enum { kPatchChannels = 16 };
template <class IO>
__device__ void backward_patch(const typename IO::T* __restrict__ grad_output,
                               const typename IO::A* __restrict__ rois, typename IO::A* __restrict__ grad_input,
                               const Args& a) {
  typedef typename IO::A A;
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  A* patch = reinterpret_cast<A*>(shared_bytes);
  const long long k = blockIdx.x;
  const int c0 = blockIdx.y * kPatchChannels;
  const Geometry<A> g = geometry(rois + 5 * k, a);
  if (!g.valid || g.grid_h <= 0 || g.grid_w <= 0) return;
  // The rows and columns the samples can touch (taps() clamps into the map).
  const A y_a = g.start_h + static_cast<A>(.5f) * g.bin_h / static_cast<A>(g.grid_h);
  const A y_b = g.start_h + (a.output_h - 1) * g.bin_h +
                static_cast<A>(g.grid_h - .5f) * g.bin_h / static_cast<A>(g.grid_h);
  const A x_a = g.start_w + static_cast<A>(.5f) * g.bin_w / static_cast<A>(g.grid_w);
  const A x_b = g.start_w + (a.output_w - 1) * g.bin_w +
                static_cast<A>(g.grid_w - .5f) * g.bin_w / static_cast<A>(g.grid_w);
  const A y_lo = y_a < y_b ? y_a : y_b, y_hi = y_a < y_b ? y_b : y_a;
  const A x_lo = x_a < x_b ? x_a : x_b, x_hi = x_a < x_b ? x_b : x_a;
  if (y_hi < A(-1) || y_lo > A(a.height) || x_hi < A(-1) || x_lo > A(a.width)) return;  // nothing inside
  const int row0 = min(static_cast<int>(y_lo > A(0) ? y_lo : A(0)), a.height - 1);
  const int row1 = min(static_cast<int>(y_hi > A(0) ? (y_hi < A(a.height) ? y_hi : A(a.height)) : A(0)) + 1,
                       a.height - 1);
  const int col0 = min(static_cast<int>(x_lo > A(0) ? x_lo : A(0)), a.width - 1);
  const int col1 = min(static_cast<int>(x_hi > A(0) ? (x_hi < A(a.width) ? x_hi : A(a.width)) : A(0)) + 1,
                       a.width - 1);
  const int rows = row1 - row0 + 1, cols = col1 - col0 + 1;
  const bool local = static_cast<long long>(rows) * cols <= a.patch_cells;
  const int cells = local ? rows * cols : 0;
  for (int e = threadIdx.x; e < cells * kPatchChannels; e += blockDim.x) patch[e] = A(0);
  if (local) __syncthreads();
  A* global_plane = grad_input + g.batch * a.in_stride[0];
  const long long sy = a.in_stride[2], sx = a.in_stride[3];
  const int items = a.output_h * a.output_w * kPatchChannels;
  for (int item = threadIdx.x; item < items; item += blockDim.x) {
    const int j = item % kPatchChannels, bin = item / kPatchChannels;
    const int c = c0 + j;
    if (c >= a.channels) continue;
    const int ph = bin / a.output_w, pw = bin % a.output_w;
    const A grad = IO::load(grad_output + k * a.out_stride[0] + c * a.out_stride[1] + ph * a.out_stride[2] +
                            pw * a.out_stride[3]);
    A* plane = global_plane + c * a.in_stride[1];
    for (int iy = 0; iy < g.grid_h; ++iy) {
      const A y = g.start_h + ph * g.bin_h + static_cast<A>(iy + .5f) * g.bin_h / static_cast<A>(g.grid_h);
      for (int ix = 0; ix < g.grid_w; ++ix) {
        const A x = g.start_w + pw * g.bin_w + static_cast<A>(ix + .5f) * g.bin_w / static_cast<A>(g.grid_w);
        int y0, x0, y1, x1;
        A ly, lx;
        if (!taps(y, x, a.height, a.width, y0, x0, y1, x1, ly, lx)) continue;
        const A hy = A(1) - ly, hx = A(1) - lx;
        if (local && y0 >= row0 && y1 <= row1 && x0 >= col0 && x1 <= col1) {
          A* p = patch + j;
          atomicAdd(p + ((y0 - row0) * cols + (x0 - col0)) * kPatchChannels, grad * (hy * hx) / g.count);
          atomicAdd(p + ((y0 - row0) * cols + (x1 - col0)) * kPatchChannels, grad * (hy * lx) / g.count);
          atomicAdd(p + ((y1 - row0) * cols + (x0 - col0)) * kPatchChannels, grad * (ly * hx) / g.count);
          atomicAdd(p + ((y1 - row0) * cols + (x1 - col0)) * kPatchChannels, grad * (ly * lx) / g.count);
        } else {
          atomicAdd(plane + y0 * sy + x0 * sx, grad * (hy * hx) / g.count);
          atomicAdd(plane + y0 * sy + x1 * sx, grad * (hy * lx) / g.count);
          atomicAdd(plane + y1 * sy + x0 * sx, grad * (ly * hx) / g.count);
          atomicAdd(plane + y1 * sy + x1 * sx, grad * (ly * lx) / g.count);
        }
      }
    }
  }
  if (!local) return;
  __syncthreads();
  for (int e = threadIdx.x; e < cells * kPatchChannels; e += blockDim.x) {
    const int j = e % kPatchChannels, cell = e / kPatchChannels;
    const A v = patch[e];
    if (v == A(0) || c0 + j >= a.channels) continue;  // adding 0 changes nothing
    atomicAdd(global_plane + (c0 + j) * a.in_stride[1] + (row0 + cell / cols) * sy + (col0 + cell % cols) * sx, v);
  }
}

#define TRIDENT_ROI_ALIGN_KERNELS(IO, SUFFIX)                                                                    \
  extern "C" __global__ void __launch_bounds__(256)                                                            \
      trident_roi_align_forward_##SUFFIX(const IO::T* input, const IO::A* rois, IO::T* output, Args a) {       \
    forward<IO>(input, rois, output, a);                                                                       \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(256)                                                            \
      trident_roi_align_forward_vec_##SUFFIX(const IO::T* input, const IO::A* rois, IO::T* output, Args a) {   \
    forward_vec<IO>(input, rois, output, a);                                                                   \
  }                                                                                                            \
  extern "C" __global__ void __launch_bounds__(256)                                                            \
      trident_roi_align_backward_##SUFFIX(const IO::T* grad_output, const IO::A* rois, IO::A* grad_input,      \
                                          Args a) {                                                            \
    backward_patch<IO>(grad_output, rois, grad_input, a);                                                      \
  }

TRIDENT_ROI_ALIGN_KERNELS(F32, f32)
TRIDENT_ROI_ALIGN_KERNELS(F64, f64)
TRIDENT_ROI_ALIGN_KERNELS(F16, f16)
TRIDENT_ROI_ALIGN_KERNELS(BF16, bf16)
)CUDA";

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
    return CudaJit("trident::ops::roi_align", kRoiAlignCudaSource, std::move(names));
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

/// Autograd wrapper of the CUDA kernels (gradients to the input only, as torchvision).
struct RoiAlignCudaFunction : public torch::autograd::Function<RoiAlignCudaFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, const at::Tensor& rois,
                            int64_t output_h, int64_t output_w, double spatial_scale, int64_t sampling_ratio,
                            bool aligned) {
    const RoiAlignParams p{output_h, output_w, spatial_scale, sampling_ratio, aligned};
    ctx->saved_data["output_h"] = output_h;
    ctx->saved_data["output_w"] = output_w;
    ctx->saved_data["spatial_scale"] = spatial_scale;
    ctx->saved_data["sampling_ratio"] = sampling_ratio;
    ctx->saved_data["aligned"] = aligned;
    ctx->saved_data["input_sizes"] = input.sizes();
    ctx->saved_data["dtype"] = input.scalar_type();
    ctx->saved_data["channels_last"] = input.is_contiguous(at::MemoryFormat::ChannelsLast) && !input.is_contiguous();
    ctx->save_for_backward({rois});
    return roi_align_forward_cuda(input, rois, p);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_outputs) {
    const RoiAlignParams p{ctx->saved_data["output_h"].toInt(), ctx->saved_data["output_w"].toInt(),
                           ctx->saved_data["spatial_scale"].toDouble(), ctx->saved_data["sampling_ratio"].toInt(),
                           ctx->saved_data["aligned"].toBool()};
    const auto rois = ctx->get_saved_variables()[0];
    const auto sizes = ctx->saved_data["input_sizes"].toIntVector();
    const auto dtype = ctx->saved_data["dtype"].toScalarType();
    const auto format =
        ctx->saved_data["channels_last"].toBool() ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    auto grad_output = grad_outputs[0];
    if (grad_output.scalar_type() != dtype) grad_output = grad_output.to(dtype);
    auto grad_input = roi_align_backward_cuda(grad_output, rois, p, sizes, dtype, format);
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace trident::ops::detail
