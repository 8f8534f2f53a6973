#pragma once
// Access to the reference fixtures written by tests/fixtures/make_fixtures.py (torchvision's outputs).
#include <trident/core/files.hpp>
#include <trident/io/tensor_file.hpp>

#include <doctest/doctest.h>

#include <ATen/ops/allclose.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/tensor.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace trident::test {

inline std::string fixture_path(const std::string& name) {
  return (std::filesystem::path(TRIDENT_FIXTURE_DIR) / name).string();
}

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

/// A fresh, empty folder `<tests' temporary directory>/<group>/<name>` (removed first if it is there).
inline std::filesystem::path fresh_folder(const std::string& group, const std::string& name) {
  const auto dir = std::filesystem::path(TRIDENT_TEST_TMP_DIR) / group / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

/// Runs `f` and checks that it throws a trident::Error whose message holds every one of `parts`.
template <typename F>
void check_error(F&& f, const std::vector<std::string>& parts) {
  try {
    f();
    FAIL("no error was raised");
  } catch (const trident::Error& e) {
    const std::string message = e.what();
    for (const auto& part : parts) CHECK_MESSAGE(message.find(part) != std::string::npos, message, " lacks ", part);
  }
}

/// Largest absolute difference, as a double (0 for two empty tensors).
inline double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  if (a.numel() == 0 && b.numel() == 0) return 0.0;
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

/// A matrix of `cols` columns from row-major values (an empty {0, cols} one from none).
inline at::Tensor floats(std::vector<float> v, int64_t cols) {
  const auto rows = static_cast<int64_t>(v.size()) / cols;
  if (rows == 0) return at::empty({0, cols}, at::kFloat);
  return at::tensor(v, at::kFloat).view({rows, cols});
}

/// A file's whole content as bytes; a file that cannot be read fails the test (trident::read_whole_file).
inline std::string file_bytes(const std::string& path) { return read_whole_file(path, "test"); }

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
