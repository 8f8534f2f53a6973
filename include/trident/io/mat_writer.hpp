#pragma once
/// \file trident/io/mat_writer.hpp
/// Writes MATLAB MAT files (version 5) through matio: build a tree of owned variables (char rows, double
/// matrices given row-major, struct arrays, cell arrays), then write named variables to a file atomically.
///
///   using trident::io::MatVariable;
///   auto boxes = MatVariable::matrix(2, 4, {10, 20, 30, 60,  50, 10, 20, 40});   // rows as you read them
///   auto img = MatVariable::struct_array(1, 1, {"imname", "idlocate"},
///                                        {{MatVariable::string("s1.jpg"), std::move(boxes)}});
///   trident::io::write_mat_file("annotation/Images.mat", {{"Img", std::move(img)}});
///
/// The file is written atomically (core/files.hpp: a temporary file renamed over `<file>` once complete), so a
/// reader never sees half a file. The header text is fixed (no date), so the same variables always give the same bytes. Errors are
/// trident::Error naming the file and the variable. Part of trident::mat (matio).
#include <trident/config.hpp>
#include <trident/core/files.hpp>

#include <matio.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

namespace trident::io {

/// How a char array is stored: one byte per character (ASCII) or UTF-16 code units, as MATLAB saves text.
enum class MatChars { ascii, utf16 };

/// How the numbers of a double matrix are stored on disk; matio (and MATLAB) read them back as doubles.
///   float64: as they are. uint8: as bytes, the way MATLAB saves small whole numbers (each value must be a
///   whole number in 0..255).
enum class MatStorage { float64, uint8 };

/// One MATLAB value and everything under it, owned. Moving is cheap; copying duplicates the whole tree.
/// Struct and cell arrays take ownership of the values they are built from.
class MatVariable {
 public:
  MatVariable() = default;
  /// Takes ownership of a variable made with matio.
  explicit MatVariable(matvar_t* owned) : var_(owned) {}
  MatVariable(const MatVariable& other) : var_(other.var_ ? Mat_VarDuplicate(other.var_, 1) : nullptr) {
    TRIDENT_CHECK(!other.var_ || var_, "trident::io::MatVariable: matio could not copy a variable");
  }
  MatVariable(MatVariable&& other) noexcept : var_(std::exchange(other.var_, nullptr)) {}
  MatVariable& operator=(MatVariable other) noexcept {
    std::swap(var_, other.var_);
    return *this;
  }
  ~MatVariable() {
    if (var_) Mat_VarFree(var_);
  }

  /// A 1 x n char array.
  static MatVariable string(const std::string& text, MatChars chars = MatChars::ascii) {
    size_t dims[2] = {1, text.size()};
    if (chars == MatChars::utf16) {
      std::vector<uint16_t> units(text.begin(), text.end());
      return created(Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT16, 2, dims, units.data(), 0), "a char array");
    }
    std::string copy = text;
    return created(Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UINT8, 2, dims, copy.data(), 0), "a char array");
  }

  /// A rows x cols double matrix from its values row by row (MATLAB stores it column by column; this does the
  /// transposition). `storage` chooses the on-disk number type.
  static MatVariable matrix(size_t rows, size_t cols, const std::vector<double>& row_major,
                            MatStorage storage = MatStorage::float64) {
    TRIDENT_CHECK(row_major.size() == rows * cols,
                  "trident::io::MatVariable::matrix: a {} x {} matrix needs {} values, got {}", rows, cols,
                  rows * cols, row_major.size());
    size_t dims[2] = {rows, cols};
    if (storage == MatStorage::uint8) {
      std::vector<uint8_t> bytes(rows * cols);
      for (size_t r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) {
          const double v = row_major[r * cols + c];
          TRIDENT_CHECK(v >= 0 && v <= 255 && std::floor(v) == v,
                        "trident::io::MatVariable::matrix: value ({}, {}) = {} cannot be stored as uint8 (whole "
                        "numbers 0..255 only)",
                        r + 1, c + 1, v);
          bytes[c * rows + r] = static_cast<uint8_t>(v);
        }
      return created(Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_UINT8, 2, dims, bytes.data(), 0), "a matrix");
    }
    std::vector<double> column_major(rows * cols);
    for (size_t r = 0; r < rows; ++r)
      for (size_t c = 0; c < cols; ++c) column_major[c * rows + r] = row_major[r * cols + c];
    return created(Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, column_major.data(), 0), "a matrix");
  }

  /// A 1 x n row.
  static MatVariable row(const std::vector<double>& values, MatStorage storage = MatStorage::float64) {
    return matrix(1, values.size(), values, storage);
  }

  /// A 1 x 1 double.
  static MatVariable scalar(double value) { return matrix(1, 1, {value}); }

  /// MATLAB's [] (a 0 x 0 double).
  static MatVariable empty() {
    size_t dims[2] = {0, 0};
    return created(Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, nullptr, 0), "an empty array");
  }

  /// A rows x cols struct array. elements[i] (linear index, column-major as MATLAB counts) gives the value of
  /// each field, in `fields` order.
  static MatVariable struct_array(size_t rows, size_t cols, const std::vector<std::string>& fields,
                                  std::vector<std::vector<MatVariable>> elements) {
    static constexpr const char* caller = "trident::io::MatVariable::struct_array";
    TRIDENT_CHECK(!fields.empty(), "{}: a struct needs at least one field", caller);
    TRIDENT_CHECK(elements.size() == rows * cols, "{}: a {} x {} struct array needs {} elements, got {}", caller,
                  rows, cols, rows * cols, elements.size());
    for (size_t f = 0; f < fields.size(); ++f) {
      TRIDENT_CHECK(valid_name(fields[f]), "{}: '{}' is not a valid MATLAB field name", caller, fields[f]);
      for (size_t g = 0; g < f; ++g)
        TRIDENT_CHECK(fields[g] != fields[f], "{}: the field '{}' is given twice", caller, fields[f]);
    }
    for (size_t i = 0; i < elements.size(); ++i)
      TRIDENT_CHECK(elements[i].size() == fields.size(), "{}: element {} has {} values for {} fields", caller, i + 1,
                    elements[i].size(), fields.size());
    std::vector<const char*> names;
    for (const auto& f : fields) names.push_back(f.c_str());
    names.push_back(nullptr);
    size_t dims[2] = {rows, cols};
    MatVariable result = created(Mat_VarCreateStruct2(nullptr, 2, dims, names.data()), "a struct array");
    for (size_t i = 0; i < elements.size(); ++i)
      for (size_t f = 0; f < fields.size(); ++f) {
        // Every field starts out null, so nothing is replaced (and nothing needs freeing).
        Mat_VarSetStructFieldByName(result.var_, names[f], i, elements[i][f].release());
      }
    return result;
  }

  /// A rows x cols cell array of `cells` (linear index, column-major).
  static MatVariable cell_array(size_t rows, size_t cols, std::vector<MatVariable> cells) {
    TRIDENT_CHECK(cells.size() == rows * cols,
                  "trident::io::MatVariable::cell_array: a {} x {} cell array needs {} cells, got {}", rows, cols,
                  rows * cols, cells.size());
    std::vector<matvar_t*> pointers;
    for (auto& c : cells) {
      TRIDENT_CHECK(c.var_ != nullptr, "trident::io::MatVariable::cell_array: cell {} holds no value",
                    pointers.size() + 1);
      pointers.push_back(c.var_);
    }
    size_t dims[2] = {rows, cols};
    // matio copies the array of pointers; the cell array then owns the cells.
    MatVariable result = created(Mat_VarCreate(nullptr, MAT_C_CELL, MAT_T_CELL, 2, dims, pointers.data(), 0),
                                 "a cell array");
    for (auto& c : cells) c.release();
    return result;
  }

  /// An n x 1 cell array (how CUHK-SYSU stores its lists).
  static MatVariable cell_column(std::vector<MatVariable> cells) {
    const size_t n = cells.size();
    return cell_array(n, 1, std::move(cells));
  }

  /// Whether `name` is a valid MATLAB variable or field name: a letter, then letters, digits or '_', at most 63.
  static bool valid_name(const std::string& name) {
    if (name.empty() || name.size() > 63) return false;
    const auto letter = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    if (!letter(name[0])) return false;
    for (char c : name)
      if (!(letter(c) || (c >= '0' && c <= '9') || c == '_')) return false;
    return true;
  }

  matvar_t* get() const { return var_; }
  /// Gives up ownership.
  matvar_t* release() { return std::exchange(var_, nullptr); }
  explicit operator bool() const { return var_ != nullptr; }

  /// The variable's own name (set when it is written); empty if none.
  std::string name() const { return var_ && var_->name ? std::string(var_->name) : std::string(); }

  /// Sets the name matio writes the variable under.
  void set_name(const std::string& name) {
    TRIDENT_CHECK(var_ != nullptr, "trident::io::MatVariable::set_name: no value to name '{}'", name);
    char* copy = static_cast<char*>(std::malloc(name.size() + 1));  // matio frees it with free()
    TRIDENT_CHECK(copy != nullptr, "trident::io::MatVariable::set_name: out of memory");
    std::memcpy(copy, name.c_str(), name.size() + 1);
    std::free(var_->name);
    var_->name = copy;
  }

 private:
  static MatVariable created(matvar_t* var, const char* what) {
    TRIDENT_CHECK(var != nullptr, "trident::io::MatVariable: matio could not create {}", what);
    return MatVariable(var);
  }

  matvar_t* var_ = nullptr;
};

/// A variable of a MAT file and the name it is saved under.
struct NamedMatVariable {
  std::string name;
  MatVariable value;
};

/// Whether the variables are compressed (zlib) in the file. Uncompressed files are larger but written faster.
enum class MatCompression { none, zlib };

/// Writes `variables` to the MAT-5 file `path` (creating its folder), atomically (core/files.hpp): `path` is
/// replaced only when every variable is written. On failure the temporary file is removed and a trident::Error
/// names the file and the variable. Names must be valid MATLAB names and distinct.
inline void write_mat_file(const std::filesystem::path& path, std::vector<NamedMatVariable> variables,
                           MatCompression compression = MatCompression::none) {
  static constexpr const char* caller = "trident::io::write_mat_file";
  const std::string file = path.string();
  TRIDENT_CHECK(!variables.empty(), "{}: '{}': no variables to write", caller, file);
  for (size_t i = 0; i < variables.size(); ++i) {
    const auto& name = variables[i].name;
    TRIDENT_CHECK(MatVariable::valid_name(name), "{}: '{}': '{}' is not a valid MATLAB variable name", caller, file,
                  name);
    TRIDENT_CHECK(variables[i].value, "{}: '{}': the variable '{}' holds no value", caller, file, name);
    for (size_t j = 0; j < i; ++j)
      TRIDENT_CHECK(variables[j].name != name, "{}: '{}': the variable '{}' is given twice", caller, file, name);
  }
  // A fixed header (matio's default one holds the date): the same variables give the same bytes.
  static constexpr const char* header = "MATLAB 5.0 MAT-file, written by trident::io::write_mat_file";
  write_file_atomically(file, caller, [&](const std::string& temporary) {
    mat_t* mat = Mat_CreateVer(temporary.c_str(), header, MAT_FT_MAT5);
    TRIDENT_CHECK(mat != nullptr, "{}: '{}': cannot create the file '{}'", caller, file, temporary);
    for (auto& [name, value] : variables) {
      try {
        value.set_name(name);
      } catch (...) {
        Mat_Close(mat);
        throw;
      }
      if (Mat_VarWrite(mat, value.get(), compression == MatCompression::zlib ? MAT_COMPRESSION_ZLIB
                                                                              : MAT_COMPRESSION_NONE) != 0) {
        Mat_Close(mat);
        trident::fail("{}: '{}': matio could not write the variable '{}'", caller, file, name);
      }
    }
    TRIDENT_CHECK(Mat_Close(mat) == 0, "{}: '{}': matio could not finish the file (disk full?)", caller, file);
  });
}

/// Writes one variable, named `name`, as the only variable of `path`.
inline void write_mat_file(const std::filesystem::path& path, const std::string& name, MatVariable value,
                           MatCompression compression = MatCompression::none) {
  std::vector<NamedMatVariable> variables;
  variables.push_back({name, std::move(value)});
  write_mat_file(path, std::move(variables), compression);
}

}  // namespace trident::io
