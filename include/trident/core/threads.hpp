#pragma once
/// \file trident/core/threads.hpp
/// LibTorch on Debian starts with a single intra-op thread; every trident program and benchmark calls
/// use_all_cores() first so that convolutions, matrix products and trident's own kernels use the machine.

#include <ATen/Parallel.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace trident {

/// Sets LibTorch's intra-op thread count and returns it.
///   requested > 0  -> exactly that many threads;
///   requested == 0 -> TRIDENT_NUM_THREADS from the environment if set, else every hardware thread.
inline int use_all_cores(int requested = 0) {
  int n = requested;
  if (n <= 0) {
    if (const char* env = std::getenv("TRIDENT_NUM_THREADS"); env != nullptr && *env != '\0') {
      try {
        n = std::stoi(env);
      } catch (const std::exception&) {
        n = 0;
      }
    }
  }
  if (n <= 0) n = static_cast<int>(std::thread::hardware_concurrency());
  if (n <= 0) n = 1;
  at::set_num_threads(n);
  return at::get_num_threads();
}

}  // namespace trident
