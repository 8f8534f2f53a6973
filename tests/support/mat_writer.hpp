#pragma once
// Writes MAT files (version 5) with matio, for the dataset-reader tests: char rows, double matrices, struct
// arrays and cell arrays, built as trees of owned variables.
#include <matio.h>

#include <doctest/doctest.h>

#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>

#include <filesystem>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

namespace trident::test {

/// A variable under construction; ownership passes to the parent (field / cell) or to MatWriter::write.
using MatVar = matvar_t*;

inline MatVar mat_string(const std::string& s, bool wide = false) {
  size_t dims[2] = {1, s.size()};
  if (wide) {
    std::vector<uint16_t> chars(s.begin(), s.end());
    return Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT16, 2, dims, chars.data(), 0);
  }
  std::string copy = s;
  return Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT8, 2, dims, copy.data(), 0);
}

/// A rows x cols double matrix (named `name` when it is a file's variable) from its rows (row-major here, stored column-major as MATLAB does).
inline MatVar mat_matrix(size_t rows, size_t cols, const std::vector<double>& row_major,
                         const char* name = nullptr) {
  REQUIRE(row_major.size() == rows * cols);
  std::vector<double> col_major(rows * cols);
  for (size_t r = 0; r < rows; ++r)
    for (size_t c = 0; c < cols; ++c) col_major[c * rows + r] = row_major[r * cols + c];
  size_t dims[2] = {rows, cols};
  return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, col_major.data(), 0);
}

/// A 1 x n double row stored as uint8 on disk, as MATLAB saves small whole numbers (matio converts it back).
inline MatVar mat_row_as_uint8(const std::vector<double>& values) {
  std::vector<uint8_t> bytes(values.begin(), values.end());
  size_t dims[2] = {1, values.size()};
  return Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_UINT8, 2, dims, bytes.data(), 0);
}

inline MatVar mat_scalar(double v) { return mat_matrix(1, 1, {v}); }

/// An empty 0 x 0 double array (MATLAB's []).
inline MatVar mat_empty() {
  size_t dims[2] = {0, 0};
  return Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, nullptr, 0);
}

/// A rows x cols struct array; elements[i] (linear, column-major) gives each field's value, in `fields` order.
inline MatVar mat_struct(const char* name, size_t rows, size_t cols, const std::vector<const char*>& fields,
                         const std::vector<std::vector<MatVar>>& elements) {
  REQUIRE(elements.size() == rows * cols);
  std::vector<const char*> names = fields;
  names.push_back(nullptr);
  size_t dims[2] = {rows, cols};
  MatVar s = Mat_VarCreateStruct2(name, 2, dims, names.data());
  REQUIRE(s != nullptr);
  for (size_t i = 0; i < elements.size(); ++i) {
    REQUIRE(elements[i].size() == fields.size());
    for (size_t f = 0; f < fields.size(); ++f) Mat_VarSetStructFieldByName(s, fields[f], i, elements[i][f]);
  }
  return s;
}

/// An n x 1 cell array of the given values.
inline MatVar mat_cell(const char* name, const std::vector<MatVar>& cells) {
  size_t dims[2] = {cells.size(), 1};
  std::vector<MatVar> copy = cells;
  MatVar c = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, copy.data(), 0);
  REQUIRE(c != nullptr);
  return c;
}

/// Writes `var` (named) as the only variable of a new MAT-5 file at `path`, and frees it.
inline void write_mat(const std::filesystem::path& path, MatVar var) {
  std::filesystem::create_directories(path.parent_path());
  mat_t* file = Mat_CreateVer(path.string().c_str(), nullptr, MAT_FT_MAT5);
  REQUIRE_MESSAGE(file != nullptr, "cannot create ", path.string());
  CHECK(Mat_VarWrite(file, var, MAT_COMPRESSION_NONE) == 0);
  Mat_VarFree(var);
  Mat_Close(file);
}

/// A small grey jpg at `path`.
inline void write_jpg(const std::filesystem::path& path, int width = 16, int height = 12) {
  std::filesystem::create_directories(path.parent_path());
  REQUIRE(cv::imwrite(path.string(), cv::Mat(height, width, CV_8UC3, cv::Scalar(90, 120, 150))));
}

/// A fresh, empty folder under the tests' temporary directory.
inline std::filesystem::path fresh_dir(const std::string& name) {
  const auto dir = std::filesystem::path(TRIDENT_TEST_TMP_DIR) / "datasets" / name;
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace trident::test
