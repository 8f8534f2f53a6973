#pragma once
// The dataset-reader tests' shorthand over trident::io's MAT writer (trident/io/mat_writer.hpp): char rows,
// double matrices, struct arrays and cell arrays as owned trees, written one variable per file. Also a tiny
// picture writer and a fresh temporary folder.
#include "fixtures.hpp"

#include <trident/io/mat_writer.hpp>

#include <doctest/doctest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace trident::test {

/// A variable under construction; it owns its tree, and a parent (struct, cell) takes a copy.
using MatVar = trident::io::MatVariable;

/// Names `var` when `name` is given (the name a file's variable is written under).
inline MatVar mat_named(MatVar var, const char* name) {
  if (name != nullptr) var.set_name(name);
  return var;
}

inline MatVar mat_string(const std::string& s, bool wide = false) {
  return MatVar::string(s, wide ? trident::io::MatChars::utf16 : trident::io::MatChars::ascii);
}

/// A rows x cols double matrix (named `name` when it is a file's variable) from its rows.
inline MatVar mat_matrix(size_t rows, size_t cols, const std::vector<double>& row_major, const char* name = nullptr) {
  return mat_named(MatVar::matrix(rows, cols, row_major), name);
}

/// A 1 x n double row stored as uint8 on disk, as MATLAB saves small whole numbers (matio converts it back).
inline MatVar mat_row_as_uint8(const std::vector<double>& values) {
  return MatVar::row(values, trident::io::MatStorage::uint8);
}

inline MatVar mat_scalar(double v) { return MatVar::scalar(v); }

/// An empty 0 x 0 double array (MATLAB's []).
inline MatVar mat_empty() { return MatVar::empty(); }

/// A rows x cols struct array; elements[i] (linear, column-major) gives each field's value, in `fields` order.
inline MatVar mat_struct(const char* name, size_t rows, size_t cols, const std::vector<const char*>& fields,
                         std::vector<std::vector<MatVar>> elements) {
  return mat_named(MatVar::struct_array(rows, cols, std::vector<std::string>(fields.begin(), fields.end()),
                                        std::move(elements)),
                   name);
}

/// An n x 1 cell array of the given values.
inline MatVar mat_cell(const char* name, std::vector<MatVar> cells) {
  return mat_named(MatVar::cell_column(std::move(cells)), name);
}

/// Writes `var` (named) as the only variable of a new MAT-5 file at `path`.
inline void write_mat(const std::filesystem::path& path, MatVar var) {
  const std::string name = var.name();
  trident::io::write_mat_file(path, name, std::move(var));
}

/// A small grey jpg at `path`.
inline void write_jpg(const std::filesystem::path& path, int width = 16, int height = 12) {
  std::filesystem::create_directories(path.parent_path());
  REQUIRE(cv::imwrite(path.string(), cv::Mat(height, width, CV_8UC3, cv::Scalar(90, 120, 150))));
}

/// A fresh, empty folder under the tests' temporary directory.
inline std::filesystem::path fresh_dir(const std::string& name) { return fresh_folder("datasets", name); }

}  // namespace trident::test
