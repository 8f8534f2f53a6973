#pragma once
// Access to the reference fixtures written by tests/fixtures/make_fixtures.py (torchvision's outputs).
#include <trident/io/tensor_file.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/allclose.h>

#include <filesystem>
#include <string>
#include <vector>

namespace trident::test {

inline std::string fixture_path(const std::string& name) { return std::string(TRIDENT_FIXTURE_DIR) + "/" + name; }

/// A fixture file's tensors, with lookups that fail the test with the missing name.
struct Fixture {
  std::string path;
  io::TensorDict tensors;

  explicit Fixture(const std::string& name) : path(fixture_path(name)), tensors(io::load_tensor_dict(path)) {}
  const at::Tensor& operator[](const std::string& key) const { return io::get(tensors, key, path); }
};

/// The temporary files of interrupted or failed atomic writes (core/files.hpp) left in `folder`.
inline std::vector<std::string> partial_files(const std::string& folder) {
  std::vector<std::string> out;
  if (!std::filesystem::is_directory(folder)) return out;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    if (entry.path().extension() == ".partial") out.push_back(entry.path().string());
  return out;
}

/// Largest absolute difference, as a double (0 for two empty tensors).
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

}  // namespace trident::test

/// Checks shape equality and max |a - b| <= tol, printing both on failure.
#define TRIDENT_CHECK_CLOSE(a, b, tol)                                                              \
  do {                                                                                              \
    const auto& trident_a_ = (a);                                                                   \
    const auto& trident_b_ = (b);                                                                   \
    REQUIRE_MESSAGE(trident_a_.sizes() == trident_b_.sizes(), "shapes ", ::trident::shape_of(trident_a_), \
                    " vs ", ::trident::shape_of(trident_b_));                                       \
    CHECK_MESSAGE(::trident::test::max_abs_diff(trident_a_, trident_b_) <= (tol),                   \
                  "max |diff| = ", ::trident::test::max_abs_diff(trident_a_, trident_b_));          \
  } while (false)

/// Checks two integer tensors for equality element by element.
#define TRIDENT_CHECK_EQUAL(a, b)                                                                   \
  do {                                                                                              \
    const auto trident_a_ = (a).to(at::kLong).cpu();                                                \
    const auto trident_b_ = (b).to(at::kLong).cpu();                                                \
    REQUIRE_MESSAGE(trident_a_.sizes() == trident_b_.sizes(), "shapes ", ::trident::shape_of(trident_a_), \
                    " vs ", ::trident::shape_of(trident_b_));                                       \
    CHECK_MESSAGE(trident_a_.equal(trident_b_), "got ", trident_a_, "\nexpected ", trident_b_);     \
  } while (false)
