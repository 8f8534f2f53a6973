// The greedy pass of NMS on CUDA (include/trident/ops/nms_kernels.inc) run on the host through
// tests/support/cuda_emulation.hpp, against the CPU kernel (which matches torchvision's nms): the logic of what
// ops::detail::nms_each_padded runs on a GPU, tested on machines without one. The plans (packed problems, the
// launches' arguments, the outputs) are the ones the CUDA path launches (ops::detail::nms_greedy_plan); the host's
// NmsKernelArgs are copied into the kernel's, so their layouts must agree.
#include "support/fixtures.hpp"

#include <trident/ops/nms.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/zeros.h>

#include <cstring>
#include <string>
#include <vector>

#include "support/cuda_emulation.hpp"

namespace trident::test::emu {
#define TRIDENT_CUDA_SOURCE(...) __VA_ARGS__
#include <trident/ops/nms_kernels.inc>
#undef TRIDENT_CUDA_SOURCE
}  // namespace trident::test::emu

using namespace trident;

namespace {

static_assert(sizeof(test::emu::NmsKernelArgs) == sizeof(ops::detail::NmsKernelArgs),
              "the host's NmsKernelArgs and the kernel's must have the same layout");
static_assert(sizeof(test::emu::NmsKernelArgs::problem) / sizeof(test::emu::NmsProblemArgs) ==
                  static_cast<size_t>(ops::detail::kNmsProblemsPerLaunch),
              "the host plans as many problems per launch as the kernel's arguments hold");

/// nms_each_padded's device path, with the emulated kernel: the plan's launches, `threads` per block.
ops::detail::KeptPadded emulated_nms(const std::vector<ops::detail::NmsProblem>& problems, unsigned threads) {
  const auto plan = ops::detail::nms_greedy_plan(problems);
  // Where the kernel fails to write, a value no result has.
  plan.index.fill_(-7);
  plan.count.fill_(-7);
  for (size_t l = 0; l < plan.launches.size(); ++l) {
    test::emu::NmsKernelArgs a;
    std::memcpy(&a, &plan.launches[l], sizeof a);
    test::emu::launch(&test::emu::trident_nms_greedy, {plan.blocks[l], 1, 1}, threads, plan.shared_bytes[l],
                      reinterpret_cast<const long long*>(plan.input.data_ptr<int64_t>()),
                      reinterpret_cast<long long*>(plan.index.data_ptr<int64_t>()),
                      reinterpret_cast<long long*>(plan.count.data_ptr<int64_t>()), a);
  }
  return {plan.index, plan.count};
}

ops::detail::NmsProblem random_problem(int64_t n, double iou_threshold) {
  const auto xy = at::rand({n, 2}) * 100;
  const auto wh = at::rand({n, 2}) * 40 + 1;
  ops::detail::NmsProblem p;
  p.boxes = at::cat({xy, xy + wh}, 1);
  p.scores = (at::rand({n}) * 8).round() / 8;  // ties: the stable order decides
  p.iou_threshold = iou_threshold;
  return p;
}

}  // namespace

TEST_CASE("nms greedy kernel (emulated): keeps what the CPU kernel keeps, with masks, groups, caps and padding") {
  at::manual_seed(11);
  std::vector<ops::detail::NmsProblem> problems;
  // Sizes around a word (63, 64, 65), none, one, and 4500 (the bit matrix in two row blocks).
  for (const int64_t n : {0, 1, 63, 64, 65, 70, 300, 4500}) problems.push_back(random_problem(n, n >= 300 ? 0.7 : 0.4));
  problems[5].valid = at::rand({70}) > 0.3;
  problems[5].max_keep = 9;    // the cap binds
  problems[4].max_keep = 0;    // keeps nothing
  problems[6].valid = at::rand({300}) > 0.1;
  problems[6].groups = (at::arange(300) % 4).to(at::kLong);
  problems[7].max_keep = 2000;  // beyond what NMS keeps: changes nothing
  auto degenerate = random_problem(40, 0.5);  // zero-area boxes: IoU 0 / 0 suppresses nothing
  degenerate.boxes.narrow(0, 0, 10).select(1, 2).copy_(degenerate.boxes.narrow(0, 0, 10).select(1, 0));
  problems.push_back(degenerate);
  auto all_masked = random_problem(90, 0.5);
  all_masked.valid = at::zeros({90}, at::kBool);
  problems.push_back(all_masked);
  CHECK(ops::detail::OverlapBlocks(4500).block_rows < 4500);

  const auto expected = ops::detail::nms_each_padded(problems);  // CPU: the CPU kernel's results, padded
  CHECK(expected.index.size(1) == 2000);  // the largest cap (problem 7), wider than the uncapped problems
  CHECK(expected.count[5].item<int64_t>() == 9);
  CHECK(expected.count[4].item<int64_t>() == 0);
  CHECK(expected.count[6].item<int64_t>() > 20);  // not vacuous
  CHECK(expected.count[7].item<int64_t>() > 100);
  CHECK(expected.count[8].item<int64_t>() > 10);  // the zero-area boxes are kept
  CHECK(expected.count[9].item<int64_t>() == 0);
  for (const unsigned threads : {128u, 8u}) {  // 128: what the CUDA launches use; 8: fewer threads than a word
    CAPTURE(threads);
    const auto got = emulated_nms(problems, threads);
    TRIDENT_CHECK_EQUAL(got.count, expected.count);
    TRIDENT_CHECK_EQUAL(got.index, expected.index);
  }
}

TEST_CASE("nms greedy kernel (emulated): more problems than one launch holds, each written to its own row") {
  at::manual_seed(12);
  std::vector<ops::detail::NmsProblem> problems;
  for (int64_t k = 0; k < ops::detail::kNmsProblemsPerLaunch + 3; ++k) {
    problems.push_back(random_problem(20 + 13 * k, 0.5));
    problems.back().max_keep = 30;
  }
  const auto plan = ops::detail::nms_greedy_plan(problems);
  REQUIRE(plan.launches.size() == 2);
  CHECK(plan.blocks[1] == 3);
  CHECK(plan.launches[1].first == ops::detail::kNmsProblemsPerLaunch);
  const auto expected = ops::detail::nms_each_padded(problems);
  CHECK(expected.index.size(1) == 30);
  const auto got = emulated_nms(problems, 32);
  TRIDENT_CHECK_EQUAL(got.count, expected.count);
  TRIDENT_CHECK_EQUAL(got.index, expected.index);
  // And the lists of nms_each are the padded rows' kept parts.
  const auto lists = ops::detail::nms_each(problems);
  for (size_t k = 0; k < problems.size(); ++k) {
    CAPTURE(k);
    TRIDENT_CHECK_EQUAL(got.index[static_cast<int64_t>(k)].narrow(0, 0, lists[k].size(0)), lists[k]);
  }
}

TEST_CASE("nms greedy kernel: the shared memory a problem needs, and the problems the device path takes") {
  CHECK(ops::detail::nms_shared_bytes(1) == (1 + 3 * 64 + 2) * 8);
  CHECK(ops::detail::nms_shared_bytes(12000) == (188 + 3 * 64 + 2) * 8);  // the RPN in training: 3 KiB
  // The largest problem that fits 48 KiB: (words + 194) * 8 <= 49152 -> 5950 words.
  CHECK(ops::detail::nms_shared_bytes(5950 * 64) <= ops::detail::kNmsMaxSharedBytes);
  CHECK(ops::detail::nms_shared_bytes(5950 * 64 + 1) > ops::detail::kNmsMaxSharedBytes);
  // CPU tensors never take it (the CPU kernel is faster there, and nothing waits).
  CHECK_FALSE(ops::detail::nms_greedy_on_device({random_problem(10, 0.5)}));
}

#if TRIDENT_HAS_CUDA_JIT
// A CUDA build of LibTorch (pip's wheel in CI's second leg): the kernel must compile with the NVRTC that comes with
// LibTorch's CUDA runtime. Compiling needs no GPU; running it is tests/cuda's (test_cuda_ops.cpp).
TEST_CASE("nms greedy kernel: compiles with NVRTC for sm_80 and sm_90, its entry point present") {
  std::string why;
  REQUIRE_MESSAGE(CudaJit::can_compile(&why), why);
  const auto& jit = ops::detail::nms_cuda_jit();
  const auto cubin = jit.compile("sm_90");
  REQUIRE(cubin.size() > 4);
  CHECK(cubin.compare(0, 4, "\x7f" "ELF") == 0);
  const auto ptx = jit.compile("compute_80");
  CHECK(ptx.find(".entry trident_nms_greedy(") != std::string::npos);
  CHECK(jit.kernel_index("trident_nms_greedy") == 0);  // launch_nms_greedy launches kernel 0
}
#endif
