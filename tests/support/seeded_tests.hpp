#pragma once
// Every test case starts from the same state of LibTorch's default generators. LibTorch seeds them from a
// nondeterministic source at start-up, so a test that draws its inputs or its weights from them would see new
// numbers on every run; a check that holds for most draws and not for all would pass locally and fail in CI
// now and then. A doctest listener seeds them (at::manual_seed: the CPU generator and every CUDA device's) when
// a test case starts and each time doctest re-enters it for a subcase. TRIDENT_TEST_SEED=<n> picks another
// seed, to see whether a test depends on its draw. Included by the runners (test_main.cpp, test_cuda_main.cpp)
// after DOCTEST_CONFIG_IMPLEMENT.
#include <doctest/doctest.h>

#include <ATen/Context.h>

#include <cstdint>
#include <cstdlib>
#include <string>

namespace trident::test {

/// The seed of every test case: TRIDENT_TEST_SEED when set (a decimal number), 20211010 otherwise.
inline uint64_t test_seed() {
  if (const char* text = std::getenv("TRIDENT_TEST_SEED"); text != nullptr && *text != '\0') {
    char* end = nullptr;
    const auto value = std::strtoull(text, &end, 10);
    if (end != nullptr && *end == '\0') return value;
    throw std::invalid_argument("TRIDENT_TEST_SEED must be a decimal number, got '" + std::string(text) + "'");
  }
  return 20211010;
}

struct SeedingListener : doctest::IReporter {
  explicit SeedingListener(const doctest::ContextOptions& /*unused*/) : seed_(test_seed()) {}
  void test_case_start(const doctest::TestCaseData& /*unused*/) override { at::manual_seed(seed_); }
  void test_case_reenter(const doctest::TestCaseData& /*unused*/) override { at::manual_seed(seed_); }
  void report_query(const doctest::QueryData& /*unused*/) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats& /*unused*/) override {}
  void test_case_end(const doctest::CurrentTestCaseStats& /*unused*/) override {}
  void test_case_exception(const doctest::TestCaseException& /*unused*/) override {}
  void subcase_start(const doctest::SubcaseSignature& /*unused*/) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData& /*unused*/) override {}
  void log_message(const doctest::MessageData& /*unused*/) override {}
  void test_case_skipped(const doctest::TestCaseData& /*unused*/) override {}

 private:
  uint64_t seed_;
};

}  // namespace trident::test

DOCTEST_REGISTER_LISTENER("trident-seed", 0, trident::test::SeedingListener);
