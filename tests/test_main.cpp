// The doctest runner of trident's suite. Uses every core, as the library's programs do, and seeds LibTorch's
// generators at the start of each test case (support/seeded_tests.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <trident/core/threads.hpp>
#include "support/seeded_tests.hpp"

int main(int argc, char** argv) {
  trident::use_all_cores();
  doctest::Context context(argc, argv);
  return context.run();
}
