#pragma once
// Runs trident's CUDA kernel sources (include/trident/ops/*_kernels.inc) on the host, so that their logic is
// tested where there is no GPU (this project's machine and CI). The source is compiled by the host compiler with
// CUDA's built-ins emulated: threadIdx / blockIdx / blockDim / gridDim, __ldg, __syncthreads, atomicAdd, __ffsll,
// the bit casts, the 16-byte vector types and dynamic shared memory. A launch runs the grid's blocks one after the
// other and each block's threads as real threads (std::thread), with a std::barrier for __syncthreads, so a
// kernel's block-level cooperation (shared memory, barriers) and its atomic adds (std::atomic_ref) behave as on a
// GPU; warp behaviour and the device's rounding (fused multiply-adds) are not emulated.
//
// Include this after every LibTorch header: it defines threadIdx, blockIdx, blockDim, gridDim and the CUDA
// qualifiers as macros. Then include a kernel source inside namespace trident::test::emu with
//   #define TRIDENT_CUDA_SOURCE(...) __VA_ARGS__
// and launch its extern "C" kernels with emu::launch.
#include <c10/util/Half.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

namespace trident::test::emu {

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};
inline thread_local Dim3 thread_index, block_index;
inline Dim3 block_dim, grid_dim;
inline thread_local unsigned char* shared_memory = nullptr;
inline thread_local std::barrier<>* block_barrier = nullptr;

struct float4 {
  float x, y, z, w;
};
struct double2 {
  double x, y;
};
struct uint4 {
  unsigned x, y, z, w;
};
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline double2 make_double2(double x, double y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

template <typename T>
T ldg(const T* p) {
  return *p;
}
inline float uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline unsigned float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
template <typename T>
T atomic_add(T* address, T value) {
  return std::atomic_ref<T>(*address).fetch_add(value);
}
inline void sync_threads() { block_barrier->arrive_and_wait(); }
/// CUDA's __ffsll: the position (from 1) of the lowest set bit, 0 for 0.
inline int ffsll(long long x) {
  return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1;
}
inline float trident_half_to_float(unsigned short h) {
  return static_cast<float>(c10::Half(h, c10::Half::from_bits()));
}
inline unsigned short trident_float_to_half(float v) { return c10::Half(v).x; }
using std::ceil;
using std::isfinite;
using std::min;

/// Runs kernel<<<grid, threads, shared_bytes>>>(args...): blocks in order, each block's threads concurrently.
template <typename... Params, typename... Args>
void launch(void (*kernel)(Params...), Dim3 grid, unsigned threads, size_t shared_bytes, Args&&... args) {
  grid_dim = grid;
  block_dim = Dim3{threads, 1, 1};
  std::vector<unsigned char> memory(shared_bytes + 16);
  auto* aligned = reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(memory.data()) + 15) / 16 * 16);
  for (unsigned by = 0; by < grid.y; ++by)
    for (unsigned bx = 0; bx < grid.x; ++bx) {
      std::fill(memory.begin(), memory.end(), static_cast<unsigned char>(0xA5));  // not zero: kernels clear it
      std::barrier<> barrier(static_cast<std::ptrdiff_t>(threads));
      std::vector<std::thread> block;
      block.reserve(threads);
      for (unsigned t = 0; t < threads; ++t)
        block.emplace_back([&, t, bx, by] {
          thread_index = Dim3{t, 0, 0};
          block_index = Dim3{bx, by, 0};
          shared_memory = aligned;
          block_barrier = &barrier;
          kernel(args...);
        });
      for (auto& th : block) th.join();
    }
}

}  // namespace trident::test::emu

// CUDA's host headers (a CUDA build of LibTorch includes them) define some of these names for nvcc: replace them.
#undef threadIdx
#undef blockIdx
#undef blockDim
#undef gridDim
#undef __device__
#undef __global__
#undef __forceinline__
#undef __launch_bounds__
#undef __ldg
#undef __uint_as_float
#undef __float_as_uint
#undef __syncthreads
#undef atomicAdd
#undef __ffsll
#define threadIdx ::trident::test::emu::thread_index
#define blockIdx ::trident::test::emu::block_index
#define blockDim ::trident::test::emu::block_dim
#define gridDim ::trident::test::emu::grid_dim
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(threads)
#define __ldg(p) ::trident::test::emu::ldg(p)
#define __uint_as_float(u) ::trident::test::emu::uint_as_float(u)
#define __float_as_uint(f) ::trident::test::emu::float_as_uint(f)
#define __syncthreads() ::trident::test::emu::sync_threads()
#define atomicAdd(p, v) ::trident::test::emu::atomic_add(p, v)
#define __ffsll(x) ::trident::test::emu::ffsll(x)
#define TRIDENT_UNROLL
#define TRIDENT_DYNAMIC_SHARED(name) unsigned char* name = ::trident::test::emu::shared_memory
