// The doctest runner of trident's suite. Uses every core, as the library's programs do, and seeds LibTorch's
// generators at the start of each test case (support/seeded_tests.hpp). Started with TRIDENT_TEST_WORKER=<name>,
// it runs that worker instead (support/workers.hpp: the processes of the data-parallel tests).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <trident/core/threads.hpp>
#include "support/seeded_tests.hpp"
#include "support/workers.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>

int main(int argc, char** argv) {
  if (const char* name = std::getenv("TRIDENT_TEST_WORKER"); name != nullptr && *name != '\0') {
    const auto found = trident::test::workers().find(name);
    if (found == trident::test::workers().end()) {
      std::fprintf(stderr, "trident_tests: no worker named '%s'\n", name);
      return 2;
    }
    try {
      return found->second();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "trident_tests: worker '%s': %s\n", name, e.what());
      return 1;
    }
  }
  trident::use_all_cores();
  doctest::Context context(argc, argv);
  return context.run();
}
