// CUDA graphs of the inference stages (NetOptions::cuda_graphs, core/cuda_graphs.hpp): detect() and describe()
// replayed from graphs give what the eager run of the same network gives, the graphs are captured and replayed
// (not silently eager), and replacing a weight is never answered from a stale graph. On the CPU (or a build
// without CUDA graphs) the graphs are off by construction and the tests say so and skip.
#include "cuda_support.hpp"

#include <trident/core/cuda_graphs.hpp>
#include <trident/data/toy_scenes.hpp>
#include <trident/model/configs.hpp>
#include <trident/model/trident_net.hpp>

#include <ATen/ops/arange.h>
#include <ATen/ops/ones.h>
#include <ATen/ops/tensor.h>
#include <c10/core/GradMode.h>

#include <algorithm>
#include <string>
#include <vector>

using namespace trident;
using cuda_test::check_close;
using cuda_test::Tolerance;

namespace {

using Small = SmallConfig<4, 64>;

/// The small configuration with few proposals: fast, and its RoI passes still pad (64 proposals, 32 rows).
NetOptions graph_options(bool graphs) {
  NetOptions o = small_net_options();
  o.rpn.pre_nms_top_n_test = 300;
  o.rpn.post_nms_top_n_test = 64;
  o.score_threshold = 0.0;  // random weights give confidences near 0.5: keep every box for NMS
  o.cuda_graphs = graphs;
  return o;
}

ImageBatch scenes(int images, const c10::Device& device, uint64_t seed) {
  at::manual_seed(seed);
  auto s = data::make_toy_scenes(images, 2, 4, 128, 192, 11);
  s.batch.images = s.batch.images.to(device);
  return s.batch;
}

/// Why CUDA graphs cannot be tested on `device` in this build; empty when they can.
std::string graphs_unavailable(const c10::Device& device) {
  if (!device.is_cuda()) return "CUDA graphs need a CUDA device (TRIDENT_TEST_DEVICE is " + device.str() + ")";
  if (!CudaGraphs::available()) return "this build has no CUDA graphs (TRIDENT_WITH_CUDA unset or no CUDA headers)";
  return {};
}

#define TRIDENT_GRAPHS_UNDER_TEST(device)                                      \
  TRIDENT_DEVICE_UNDER_TEST(device);                                           \
  if (const std::string why_ = graphs_unavailable(device); !why_.empty()) {     \
    ::trident::cuda_test::report_skip(why_);                                   \
    return;                                                                    \
  }

// Same weights, float32, TF32 off (main()). The graphs run the same kernels on the same values, except that the
// RoI passes see padded RoI counts, for which cuDNN and cuBLAS may pick other algorithms: float32 rounding.
constexpr Tolerance graph_tol{1e-4, 1e-5};

void check_same_detections(const std::vector<Detections>& actual, const std::vector<Detections>& expected) {
  REQUIRE(actual.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    CAPTURE(i);
    REQUIRE_MESSAGE(actual[i].boxes.size(0) == expected[i].boxes.size(0), "detections of image ", i);
    check_close(actual[i].boxes, expected[i].boxes, graph_tol, "boxes");
    check_close(actual[i].scores, expected[i].scores, graph_tol, "scores");
    for (const auto& [name, value] : expected[i].outputs) {
      REQUIRE(actual[i].outputs.count(name) == 1);
      check_close(actual[i].outputs.at(name), value, graph_tol, name);
    }
  }
}

}  // namespace

TEST_CASE("cuda graphs: detect() and describe() replayed from graphs equal the eager run (same weights)") {
  TRIDENT_GRAPHS_UNDER_TEST(device);
  const c10::NoGradGuard no_grad;
  at::manual_seed(5);
  TridentNet<Small> eager(graph_options(false));
  TridentNet<Small> graphed(graph_options(true));
  {
    auto from = eager.named_parameters();
    for (auto& p : graphed.named_parameters()) p.value().copy_(from[p.key()]);
    auto from_b = eager.named_buffers();
    for (auto& b : graphed.named_buffers()) b.value().copy_(from_b[b.key()]);
  }
  eager.to(device);
  graphed.to(device);
  eager.eval();
  graphed.eval();
  for (const uint64_t seed : {1, 2, 3}) {  // capture, then replays with other images of the same shape
    CAPTURE(seed);
    const auto batch = scenes(2, device, seed);
    const auto expected = eager.detect(batch);
    const auto actual = graphed.detect(batch);
    check_same_detections(actual, expected);
    // The query path: a ground-truth-like box per image.
    const auto first = [&](size_t i, int64_t n) {
      return expected[i].boxes.narrow(0, 0, std::min<int64_t>(n, expected[i].boxes.size(0)));
    };
    const std::vector<at::Tensor> boxes{first(0, 3), first(1, 1)};
    const auto want = eager.describe(batch, boxes);
    const auto got = graphed.describe(batch, boxes);
    for (size_t i = 0; i < want.size(); ++i)
      for (const auto& [name, value] : want[i]) check_close(got[i].at(name), value, graph_tol, name);
  }
  const auto& g = graphed.cuda_graphs();
  for (const auto& [key, error] : g.failures()) MESSAGE("capture failed for ", key, ": ", error);
  CHECK(g.failures().empty());
  CHECK(g.size() >= 4);      // detect's three stages, describe's stem (describe.roi shares detect's stage 3 key)
  CHECK(g.replays() >= 6);   // seeds 2 and 3 replay stages 1 and 2 and describe's stem (stage 3: by detections)
  CHECK(eager.cuda_graphs().size() == 0);
}

TEST_CASE("cuda graphs: a changed weight is never answered from a stale graph") {
  TRIDENT_GRAPHS_UNDER_TEST(device);
  const c10::NoGradGuard no_grad;
  at::manual_seed(6);
  TridentNet<Small> net(graph_options(true));
  net.to(device);
  net.eval();
  const auto batch = scenes(1, device, 4);
  const auto on_device = at::TensorOptions().device(device);
  const std::vector<at::Tensor> box{at::tensor({20.f, 10.f, 80.f, 120.f}, on_device).view({1, 4})};
  (void)net.describe(batch, box);
  const auto before = net.describe(batch, box)[0];  // replayed
  // An in-place change (as an optimizer step or a loaded checkpoint makes) and a replaced tensor.
  for (auto& p : net.named_parameters())
    if (p.key().find("head") != std::string::npos) p.value().mul_(1.5);
  const auto after = net.describe(batch, box)[0];
  TridentNet<Small> reference(graph_options(false));
  {
    auto from = net.named_parameters();
    for (auto& p : reference.named_parameters()) p.value().copy_(from[p.key()].cpu());
    auto from_b = net.named_buffers();
    for (auto& b : reference.named_buffers()) b.value().copy_(from_b[b.key()].cpu());
  }
  reference.to(device);
  reference.eval();
  const auto expected = reference.describe(batch, box)[0];
  for (const auto& [name, value] : expected) {
    check_close(after.at(name), value, graph_tol, name + " after the change");
    CHECK_MESSAGE((after.at(name) - before.at(name)).abs().max().item<double>() > 1e-4, name, " did not change");
  }
}
