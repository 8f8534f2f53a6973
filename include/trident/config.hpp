#pragma once
/// \file trident/config.hpp
/// Version, the error type and the argument-checking macro every trident function uses.
///
/// Errors name the caller, the argument and the offending value or shape, e.g.
///   trident::ops::roi_align: rois must be a [K, 5] tensor (batch index, x1, y1, x2, y2), got [3, 4]

#include <fmt/format.h>

#include <ATen/core/Tensor.h>
#include <ATen/TensorOperators.h>

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

}  // namespace trident

/// TRIDENT_CHECK(condition, "fmt string {}", args...): throws trident::Error when the condition is false.
/// The message is only formatted on failure.
#define TRIDENT_CHECK(cond, ...)        \
  do {                                  \
    if (!(cond)) ::trident::fail(__VA_ARGS__); \
  } while (false)
