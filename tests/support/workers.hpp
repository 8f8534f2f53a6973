#pragma once
// Programs inside the test executable. A test that needs several processes (data-parallel training) starts this
// executable again with TRIDENT_TEST_WORKER=<name> in the environment (trident::distributed::launch_local), and
// test_main.cpp runs the worker of that name instead of the suite. Workers register themselves from their test
// file with TRIDENT_TEST_WORKER(name) { ... return exit_code; }.
#include <functional>
#include <map>
#include <string>

namespace trident::test {

using Worker = std::function<int()>;

inline std::map<std::string, Worker>& workers() {
  static std::map<std::string, Worker> registry;
  return registry;
}

struct RegisterWorker {
  RegisterWorker(const std::string& name, Worker fn) { workers()[name] = std::move(fn); }
};

}  // namespace trident::test

#define TRIDENT_TEST_WORKER_CAT2(a, b) a##b
#define TRIDENT_TEST_WORKER_CAT(a, b) TRIDENT_TEST_WORKER_CAT2(a, b)
#define TRIDENT_TEST_WORKER(name)                                                                       \
  static int TRIDENT_TEST_WORKER_CAT(trident_test_worker_, __LINE__)();                                 \
  static const ::trident::test::RegisterWorker TRIDENT_TEST_WORKER_CAT(trident_test_worker_reg_, __LINE__)( \
      name, &TRIDENT_TEST_WORKER_CAT(trident_test_worker_, __LINE__));                                  \
  static int TRIDENT_TEST_WORKER_CAT(trident_test_worker_, __LINE__)()
