#pragma once
// Shared by the CUDA tests (tests/cuda, described in docs/cuda-tests.md): the device under test, the marker a test
// prints when it cannot run (CTest's SKIP_REGULAR_EXPRESSION reports it as skipped), and comparisons that say
// what they compared, with which tolerance, and where the largest difference is.
#include <trident/config.hpp>

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <ATen/Context.h>
#include <ATen/ops/abs.h>
#include <ATen/ops/cat.h>
#include <ATen/ops/full.h>
#include <ATen/ops/full_like.h>
#include <ATen/ops/isfinite.h>
#include <ATen/ops/rand.h>
#include <ATen/ops/where.h>
#include <c10/core/Device.h>
#include <torch/cuda.h>

#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace trident::cuda_test {

/// Printed by a test that cannot run here; tests/cuda/CMakeLists.txt gives CTest the same text.
inline constexpr std::string_view skip_marker = "trident-cuda-test skipped:";

/// The device under test: TRIDENT_TEST_DEVICE ("cuda", "cuda:1", "cpu"), "cuda" when unset or empty.
inline c10::Device device_under_test() {
  const char* env = std::getenv("TRIDENT_TEST_DEVICE");
  const std::string name = env != nullptr && *env != '\0' ? env : "cuda";
  try {
    const c10::Device device(name);
    TRIDENT_CHECK(device.is_cpu() || device.is_cuda(), "TRIDENT_TEST_DEVICE must be cpu or cuda[:N], got '{}'",
                  name);
    return device;
  } catch (const c10::Error&) {
    fail("TRIDENT_TEST_DEVICE must be cpu or cuda[:N], got '{}'", name);
  }
}

/// Why `device` cannot run here; empty when it can.
inline std::string unavailable(const c10::Device& device) {
  if (device.is_cpu()) return {};
  if (!torch::cuda::is_available()) return "no CUDA device";
  const auto count = static_cast<int64_t>(torch::cuda::device_count());
  if (device.has_index() && device.index() >= count)
    return fmt::format("{} does not exist ({} CUDA devices)", device.str(), count);
  return {};
}

inline void report_skip(std::string_view reason) {
  std::cout << skip_marker << " " << reason << std::endl;
}

/// Comparisons on CUDA use IEEE float32 products: TF32 off for cuBLAS and cuDNN (main() calls this once).
inline void disable_tf32() {
  at::globalContext().setAllowTF32CuBLAS(false);
  at::globalContext().setAllowTF32CuDNN(false);
}

/// A tolerance: |actual - expected| <= atol + rtol * |expected|, element by element.
struct Tolerance {
  double rtol = 0;
  double atol = 0;
};
inline constexpr Tolerance exact{0, 0};

/// `actual` (any device) against `expected` (any device): same shape and dtype, every element within `tol`
/// (NaN never matches). `what` names the comparison in the failure message.
inline void check_close(const at::Tensor& actual, const at::Tensor& expected, Tolerance tol, const std::string& what) {
  REQUIRE_MESSAGE(actual.defined() == expected.defined(), what, ": one tensor is undefined");
  if (!actual.defined()) return;
  REQUIRE_MESSAGE(actual.sizes() == expected.sizes(), what, ": shapes ", shape_of(actual), " vs ", shape_of(expected));
  CHECK_MESSAGE((actual.scalar_type() == expected.scalar_type()), what, ": dtypes ",
                c10::toString(actual.scalar_type()), " vs ", c10::toString(expected.scalar_type()));
  if (actual.numel() == 0) return;
  const auto a = actual.detach().cpu().to(at::kDouble);
  const auto e = expected.detach().cpu().to(at::kDouble);
  const auto diff = (a - e).abs();
  const auto allowed = e.abs() * tol.rtol + tol.atol;
  const auto bad = (diff > allowed) | ~at::isfinite(diff);
  const int64_t count = bad.sum().item<int64_t>();
  if (count == 0) return;
  const auto excess = at::where(at::isfinite(diff), diff - allowed, at::full_like(diff, 1e300));
  const int64_t worst = excess.reshape({-1}).argmax().item<int64_t>();
  FAIL_CHECK(fmt::format("{}: {} of {} elements outside rtol {:g} atol {:g}; worst at flat index {}: {} vs {} "
                         "(|diff| {:g}); max |diff| {:g}",
                         what, count, a.numel(), tol.rtol, tol.atol, worst, a.reshape({-1})[worst].item<double>(),
                         e.reshape({-1})[worst].item<double>(), diff.reshape({-1})[worst].item<double>(),
                         diff.max().item<double>()));
}

/// Element-wise equality of values (and shape and dtype): exact ops, indices.
inline void check_equal(const at::Tensor& actual, const at::Tensor& expected, const std::string& what) {
  check_close(actual, expected, exact, what);
}

/// A tensor lives on `device` (a device without an index matches every index of its type).
inline void check_on(const at::Tensor& t, const c10::Device& device, const std::string& what) {
  const bool same = t.device().type() == device.type() && (!device.has_index() || t.device() == device);
  CHECK_MESSAGE(same, what, " is on ", t.device().str(), ", expected ", device.str());
}

/// max |t| as a double (0 for an empty tensor).
inline double max_abs(const at::Tensor& t) {
  return t.numel() == 0 ? 0.0 : t.detach().abs().max().to(at::kDouble).cpu().item<double>();
}

/// TF32 off for cuBLAS and cuDNN for the guard's lifetime, then the previous settings again: a float32 baseline
/// that does not depend on what main() or another test set (test_cuda_amp.cpp).
class Tf32Off {
 public:
  Tf32Off() : cublas_(at::globalContext().allowTF32CuBLAS()), cudnn_(at::globalContext().allowTF32CuDNN()) {
    disable_tf32();
  }
  ~Tf32Off() {
    at::globalContext().setAllowTF32CuBLAS(cublas_);
    at::globalContext().setAllowTF32CuDNN(cudnn_);
  }
  Tf32Off(const Tf32Off&) = delete;
  Tf32Off& operator=(const Tf32Off&) = delete;

 private:
  bool cublas_, cudnn_;
};

/// `count` RoIs per image for `images` images of height x width pixels, people's shapes (1.5 to 3 times as tall as
/// wide, 8 to 258 px wide), some over the borders: [images * count, 5] (image index, x1, y1, x2, y2), float32 on
/// the CPU, drawn from `seed` (test_cuda_sync.cpp, test_cuda_amp.cpp).
inline at::Tensor person_rois(int64_t images, int64_t count, double height, double width, uint64_t seed) {
  at::manual_seed(seed);
  std::vector<at::Tensor> per_image;
  for (int64_t i = 0; i < images; ++i) {
    const auto w = at::rand({count, 1}) * 250.0 + 8.0;
    const auto h = w * (at::rand({count, 1}) * 1.5 + 1.5);
    const auto x = at::rand({count, 1}) * (width + 60.0) - 30.0 - w / 2;
    const auto y = at::rand({count, 1}) * (height + 60.0) - 30.0 - h / 2;
    per_image.push_back(at::cat({at::full({count, 1}, static_cast<double>(i)), x, y, x + w, y + h}, 1));
  }
  return at::cat(per_image, 0);
}

/// ||actual - expected||_2 / ||expected||_2 over all elements, in float64 on the CPU (any devices and dtypes):
/// 0 for two zero tensors, +inf for a zero `expected` and a non-zero `actual`, NaN when either holds a NaN.
inline double relative_l2(const at::Tensor& actual, const at::Tensor& expected) {
  const auto a = actual.detach().to(at::kDouble).cpu(), e = expected.detach().to(at::kDouble).cpu();
  const double diff = (a - e).norm().item<double>(), scale = e.norm().item<double>();
  if (scale == 0.0) return diff == 0.0 ? 0.0 : (diff == diff ? std::numeric_limits<double>::infinity() : diff);
  return diff / scale;
}

}  // namespace trident::cuda_test

/// Starts a test that runs on the device under test: declares `device`, or prints the skip marker and returns
/// when that device is missing here.
#define TRIDENT_DEVICE_UNDER_TEST(device)                                                        \
  const c10::Device device = ::trident::cuda_test::device_under_test();                          \
  if (const std::string trident_why_ = ::trident::cuda_test::unavailable(device);                \
      !trident_why_.empty()) {                                                                    \
    ::trident::cuda_test::report_skip(trident_why_);                                             \
    return;                                                                                      \
  }
