// The doctest runner of the CUDA tests (docs/cuda-tests.md). Uses every core for the CPU side of each
// comparison, switches TF32 off so that float32 products on CUDA are IEEE float32 products, and seeds
// LibTorch's generators at the start of each test case (support/seeded_tests.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include "cuda_support.hpp"

#include <trident/core/threads.hpp>
#include "support/seeded_tests.hpp"

int main(int argc, char** argv) {
  trident::use_all_cores();
  trident::cuda_test::disable_tf32();
  doctest::Context context(argc, argv);
  return context.run();
}
