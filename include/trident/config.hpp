#pragma once
/// \file trident/config.hpp
/// Version, the error type and the argument-checking macro every trident function uses.
///
/// Errors name the caller, the argument and the offending value or shape, e.g.
///   trident::ops::roi_align: rois must be a [K, 5] tensor (batch index, x1, y1, x2, y2), got [3, 4]

#include <fmt/format.h>

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>

#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <string_view>

// The version's one home: CMakeLists.txt reads these three lines (project(trident VERSION ...)), and the package
// version file, trident::version and the docs' figures all come from here.
#define TRIDENT_VERSION_MAJOR 0
#define TRIDENT_VERSION_MINOR 1
#define TRIDENT_VERSION_PATCH 0

#define TRIDENT_DETAIL_STRINGIFY(x) #x
#define TRIDENT_DETAIL_VERSION_STRING(a, b, c) TRIDENT_DETAIL_STRINGIFY(a) "." TRIDENT_DETAIL_STRINGIFY(b) "." TRIDENT_DETAIL_STRINGIFY(c)

namespace trident {

/// "major.minor.patch", e.g. "0.1.0".
inline constexpr std::string_view version =
    TRIDENT_DETAIL_VERSION_STRING(TRIDENT_VERSION_MAJOR, TRIDENT_VERSION_MINOR, TRIDENT_VERSION_PATCH);

/// Every error trident raises for bad input. It derives from std::invalid_argument, so code that already
/// catches standard exceptions keeps working.
class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

/// "[2, 3, 4]" for a tensor's sizes, "undefined" for an undefined tensor.
inline std::string shape_of(const at::Tensor& t) {
  if (!t.defined()) return "undefined";
  std::string s = "[";
  const auto sizes = t.sizes();
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

/// Throws trident::Error with a message built by fmt::format(fmt_str, args...).
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> fmt_str, Args&&... args) {
  throw Error(fmt::format(fmt_str, std::forward<Args>(args)...));
}

/// Which tensors trident's argument checks read the values of (finite boxes, labels in range, ...). Reading a
/// value on the host waits for the device that holds it, so by default only CPU tensors are read: on a GPU the
/// library's own intermediate values are valid by construction, and the inputs from outside were checked on
/// the host when they were read. `all_tensors` reads device tensors too (debugging a GPU run); `none` reads
/// none, so the CPU takes a GPU's path through the checks (the tests use it to prove a path never reads the
/// device). Safety checks that guard a CPU kernel's memory accesses (RoIs' batch indices) always run. The
/// environment variable TRIDENT_VALUE_CHECKS (host, all, none) sets the starting value.
enum class ValueChecks { host_tensors, all_tensors, none };

namespace detail {
inline std::atomic<ValueChecks>& value_checks_setting() {
  static std::atomic<ValueChecks> setting = [] {
    const char* text = std::getenv("TRIDENT_VALUE_CHECKS");
    const std::string_view value = text == nullptr ? "host" : text;
    if (value == "host" || value.empty()) return ValueChecks::host_tensors;
    if (value == "all") return ValueChecks::all_tensors;
    if (value == "none") return ValueChecks::none;
    throw Error(fmt::format("TRIDENT_VALUE_CHECKS must be host, all or none, got '{}'", value));
  }();
  return setting;
}

/// Depth of the host-only code paths on this thread (CPU kernels reading their own inputs): a host read there
/// is not a wait for a device. HostPath marks them for tests/support/host_reads.hpp.
inline int& host_path_depth() {
  thread_local int depth = 0;
  return depth;
}
struct HostPath {
  HostPath() { ++host_path_depth(); }
  ~HostPath() { --host_path_depth(); }
  HostPath(const HostPath&) = delete;
  HostPath& operator=(const HostPath&) = delete;
};
}  // namespace detail

inline ValueChecks value_checks() { return detail::value_checks_setting().load(); }
inline void set_value_checks(ValueChecks checks) { detail::value_checks_setting().store(checks); }

/// Sets value_checks() for its lifetime.
class ValueChecksScope {
 public:
  explicit ValueChecksScope(ValueChecks checks) : previous_(value_checks()) { set_value_checks(checks); }
  ~ValueChecksScope() { set_value_checks(previous_); }
  ValueChecksScope(const ValueChecksScope&) = delete;
  ValueChecksScope& operator=(const ValueChecksScope&) = delete;

 private:
  ValueChecks previous_;
};

/// Whether an argument check reads the values of `t` (see ValueChecks).
inline bool checks_values(const at::Tensor& t) {
  switch (value_checks()) {
    case ValueChecks::all_tensors: return true;
    case ValueChecks::none: return false;
    case ValueChecks::host_tensors: break;
  }
  return t.defined() && t.device().is_cpu();
}

}  // namespace trident

/// TRIDENT_CHECK(condition, "fmt string {}", args...): throws trident::Error when the condition is false.
/// The message is only formatted on failure.
#define TRIDENT_CHECK(cond, ...)        \
  do {                                  \
    if (!(cond)) ::trident::fail(__VA_ARGS__); \
  } while (false)
