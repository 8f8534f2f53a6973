#pragma once
/// \file trident/ops/nms_cuda.hpp
/// The greedy pass of NMS on a CUDA device (nms_kernels.inc), compiled at run time by NVRTC (trident::CudaJit) as
/// RoIAlign's kernels are. ops::detail::nms_each_padded launches it on the problems that pack_nms_problems (nms.hpp)
/// laid out: one block per problem, up to kNmsProblemsPerLaunch problems per launch, asynchronous on the current
/// stream. The kept indices stay on the device, so NMS needs no wait for the device unless the caller reads how
/// many were kept. The kernels' source is nms_kernels.inc, which the tests also compile on the host
/// (tests/support/cuda_emulation.hpp, tests/test_nms_kernels.cpp).
#include <trident/config.hpp>
#include <trident/core/cuda_jit.hpp>

#include <ATen/core/Tensor.h>

#include <fmt/format.h>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace trident::ops::detail {

/// The device definition the kernel's source expects (see nms_kernels.inc).
inline constexpr const char* kNmsCudaPrelude = R"CUDA(
#define TRIDENT_DYNAMIC_SHARED(name) extern __shared__ __align__(16) unsigned char name[]
)CUDA";

/// The kernel (nms_kernels.inc) as text.
#define TRIDENT_CUDA_SOURCE(...) #__VA_ARGS__
inline constexpr const char* kNmsCudaKernels =
#include <trident/ops/nms_kernels.inc>
    ;
#undef TRIDENT_CUDA_SOURCE

/// Problems per launch (the kernel's arguments hold their descriptions), threads per problem, and the most
/// shared memory a problem may use (48 KiB: a removed set of 5,950 words, 380,800 boxes).
inline constexpr int64_t kNmsProblemsPerLaunch = 16;
inline constexpr unsigned kNmsThreads = 128, kNmsMaxSharedBytes = 48 * 1024;

/// The kernel's NmsProblemArgs, field for field.
struct NmsProblemArgs {
  long long bits = 0, order = 0, valid = 0, n = 0, block_rows = 64, cap = 0;
};
/// The kernel's NmsKernelArgs, field for field.
struct NmsKernelArgs {
  long long out_stride = 0;
  long long first = 0;
  std::array<NmsProblemArgs, kNmsProblemsPerLaunch> problem{};
};

/// The shared memory the kernel uses for a problem of n boxes: the removed set and 3 x 64 + 2 words.
inline int64_t nms_shared_bytes(int64_t n) { return ((n + 63) / 64 + 3 * 64 + 2) * 8; }

/// The compiled kernel (one per program).
inline const CudaJit& nms_cuda_jit() {
  static const CudaJit jit("trident::ops::nms", fmt::format("{}{}", kNmsCudaPrelude, kNmsCudaKernels),
                           {"trident_nms_greedy"});
  return jit;
}

/// Whether NMS runs its greedy pass on CUDA devices (NVRTC and the driver found, TRIDENT_CUDA_JIT not 0).
inline bool nms_cuda_kernels_available() {
  static const bool available = CudaJit::available();
  return available;
}

/// One launch: `problems` blocks reading `packed` (int64), writing rows a.first... of `kept` [P, a.out_stride]
/// and `count` [P] (int64, on the same CUDA device).
inline void launch_nms_greedy(const at::Tensor& packed, const at::Tensor& kept, const at::Tensor& count,
                              const NmsKernelArgs& a, unsigned problems, unsigned shared_bytes) {
  void* pp = packed.data_ptr();
  void* pk = kept.data_ptr();
  void* pc = count.data_ptr();
  auto args = a;
  void* params[] = {&pp, &pk, &pc, &args};
  nms_cuda_jit().launch(0, packed.device(), {problems, 1}, kNmsThreads, params, shared_bytes);
}

}  // namespace trident::ops::detail
