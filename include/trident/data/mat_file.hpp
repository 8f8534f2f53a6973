#pragma once
/// \file trident/data/mat_file.hpp
/// A thin, checked layer over matio for the dataset readers: a MAT file that closes itself, variables that free
/// themselves, and accessors (struct field, cell, string, numeric matrix) whose errors name the caller, the file
/// and the entry ("Img(3).idlocate"). Part of trident::mat (matio).
#include <trident/config.hpp>

#include <matio.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

namespace trident::data {

/// A numeric MATLAB array read into doubles, kept column-major as MATLAB stores it.
struct MatMatrix {
  size_t rows = 0;
  size_t cols = 0;
  std::vector<double> values;  ///< column-major: (r, c) is values[c * rows + r]

  double at(size_t r, size_t c) const { return values[c * rows + r]; }
  bool empty() const { return values.empty(); }
};

/// An open MAT file (read-only). `caller` is the function named in every error.
class MatFile {
 public:
  MatFile(std::string path, std::string caller) : path_(std::move(path)), caller_(std::move(caller)) {
    TRIDENT_CHECK(std::filesystem::is_regular_file(path_), "{}: the file '{}' does not exist", caller_, path_);
    file_.reset(Mat_Open(path_.c_str(), MAT_ACC_RDONLY));
    TRIDENT_CHECK(file_ != nullptr, "{}: '{}' is not a MAT file matio can read", caller_, path_);
    std::error_code ec;
    const auto bytes = std::filesystem::file_size(path_, ec);
    // Every element takes at least one byte of the variable's data, and zlib (a compressed MAT file) inflates
    // at most 1032 times: a count above this is a corrupt header, whatever matio made of it.
    max_elements_ = ec ? 0 : static_cast<size_t>(bytes) * 1032 + 1024;
  }

  const std::string& path() const { return path_; }
  const std::string& caller() const { return caller_; }

  /// Whether the file holds a variable named `name`.
  bool has(const std::string& name) {
    Mat_Rewind(file_.get());
    std::unique_ptr<matvar_t, VarDeleter> info(Mat_VarReadInfo(file_.get(), name.c_str()));
    return info != nullptr;
  }

  /// Reads the variable `name` (whole); an error names the file and the missing variable.
  std::unique_ptr<matvar_t, void (*)(matvar_t*)> read(const std::string& name) {
    Mat_Rewind(file_.get());
    matvar_t* var = Mat_VarRead(file_.get(), name.c_str());
    TRIDENT_CHECK(var != nullptr, "{}: '{}' has no variable '{}'", caller_, path_, name);
    return {var, &Mat_VarFree};
  }

  /// Number of elements of an array (product of its dimensions); 0 for a missing (null) field. A product past
  /// size_t's range (a corrupt header) gives SIZE_MAX, which no check below accepts.
  static size_t numel(const matvar_t* var) {
    if (var == nullptr || var->rank <= 0 || var->dims == nullptr) return 0;
    size_t n = 1;
    for (int d = 0; d < var->rank; ++d) {
      if (var->dims[d] != 0 && n > SIZE_MAX / var->dims[d]) return SIZE_MAX;
      n *= var->dims[d];
    }
    return n;
  }

  /// Throws unless the `numel(var)` elements of `element_bytes` bytes each can come from this file and are all
  /// in the data matio holds (a corrupt header declares more: found by fuzz/prw.cpp, whose input made matrix()
  /// fill gigabytes). `what` names the variable.
  void check_elements(const matvar_t* var, size_t element_bytes, const std::string& what) const {
    const size_t n = numel(var);
    TRIDENT_CHECK(n <= max_elements_, "{}: '{}': {} declares {} ({} elements), more than the file can hold",
                  caller_, path_, what, dims_of(var), n);
    TRIDENT_CHECK(element_bytes == 0 || var->data == nullptr || var->nbytes / element_bytes >= n,
                  "{}: '{}': {} declares {} ({} elements of {} bytes) but holds {} bytes", caller_, path_, what,
                  dims_of(var), n, element_bytes, var->nbytes);
  }

  /// "2 x 3" for an array's dimensions.
  static std::string dims_of(const matvar_t* var) {
    if (var == nullptr || var->rank <= 0 || var->dims == nullptr) return "empty";
    std::string s;
    for (int d = 0; d < var->rank; ++d) s += (d ? " x " : "") + std::to_string(var->dims[d]);
    return s;
  }

  /// Checks that `var` is a struct array; `what` names it in the error.
  void expect_struct(const matvar_t* var, const std::string& what) const {
    TRIDENT_CHECK(var != nullptr && var->class_type == MAT_C_STRUCT, "{}: '{}': {} must be a struct (array), got {}",
                  caller_, path_, what, class_name(var));
    check_elements(var, 0, what);
  }

  /// Checks that `var` is a cell array; `what` names it in the error.
  void expect_cell(const matvar_t* var, const std::string& what) const {
    TRIDENT_CHECK(var != nullptr && var->class_type == MAT_C_CELL, "{}: '{}': {} must be a cell array, got {}",
                  caller_, path_, what, class_name(var));
    check_elements(var, 0, what);
  }

  /// The field `field` of element `index` (0-based, linear) of the struct array `var`, which may be an empty
  /// array (or null, for a field never set). An error names the entry when the struct has no such field.
  matvar_t* field(matvar_t* var, const std::string& field, size_t index, const std::string& what) const {
    expect_struct(var, what);
    TRIDENT_CHECK(index < numel(var), "{}: '{}': {} has {} elements, element {} asked for", caller_, path_, what,
                  numel(var), index + 1);
    bool found = false;
    char* const* names = Mat_VarGetStructFieldnames(var);
    const unsigned count = Mat_VarGetNumberOfFields(var);
    for (unsigned i = 0; names != nullptr && i < count; ++i) found = found || field == names[i];
    TRIDENT_CHECK(found, "{}: '{}': {} has no field '{}'", caller_, path_, what, field);
    return Mat_VarGetStructFieldByName(var, field.c_str(), index);
  }

  /// Whether the struct `var` has a field named `field`.
  static bool has_field(matvar_t* var, const std::string& field) {
    if (var == nullptr || var->class_type != MAT_C_STRUCT) return false;
    char* const* names = Mat_VarGetStructFieldnames(var);
    const unsigned count = Mat_VarGetNumberOfFields(var);
    for (unsigned i = 0; names != nullptr && i < count; ++i)
      if (field == names[i]) return true;
    return false;
  }

  /// Cell `index` (0-based, linear) of the cell array `var`.
  matvar_t* cell(matvar_t* var, size_t index, const std::string& what) const {
    expect_cell(var, what);
    TRIDENT_CHECK(index < numel(var), "{}: '{}': {} has {} cells, cell {} asked for", caller_, path_, what, numel(var),
                  index + 1);
    matvar_t* c = Mat_VarGetCell(var, static_cast<int>(index));
    TRIDENT_CHECK(c != nullptr, "{}: '{}': {}{{{}}} is missing", caller_, path_, what, index + 1);
    return c;
  }

  /// A char array (a row, or a cell holding one) as a std::string.
  std::string string(matvar_t* var, const std::string& what) const {
    if (var != nullptr && var->class_type == MAT_C_CELL && numel(var) == 1) var = cell(var, 0, what);
    TRIDENT_CHECK(var != nullptr && var->class_type == MAT_C_CHAR, "{}: '{}': {} must be a char array, got {}",
                  caller_, path_, what, class_name(var));
    const size_t n = numel(var);
    const bool wide = var->data_size == 2 || var->data_type == MAT_T_UINT16 || var->data_type == MAT_T_UTF16;
    check_elements(var, wide ? 2 : 1, what);
    std::string s;
    s.reserve(n);
    if (n == 0 || var->data == nullptr) return s;
    if (wide) {
      const auto* c16 = static_cast<const uint16_t*>(var->data);
      for (size_t i = 0; i < n; ++i) {
        TRIDENT_CHECK(c16[i] < 128, "{}: '{}': {} has a non-ASCII character (code {})", caller_, path_, what,
                      c16[i]);
        s.push_back(static_cast<char>(c16[i]));
      }
    } else {
      TRIDENT_CHECK(var->data_size <= 1, "{}: '{}': {} has {}-byte characters, expected 1 or 2", caller_, path_, what,
                    var->data_size);
      s.assign(static_cast<const char*>(var->data), n);
    }
    return s;
  }

  /// A real numeric array (any class) as a column-major matrix of doubles; dimensions past the second fold into
  /// the columns. An empty or null array gives an empty matrix.
  MatMatrix matrix(const matvar_t* var, const std::string& what) const {
    MatMatrix m;
    if (var == nullptr || numel(var) == 0 || var->class_type == MAT_C_EMPTY) return m;
    TRIDENT_CHECK(!var->isComplex && var->data != nullptr, "{}: '{}': {} must be a real numeric array", caller_, path_,
                  what);
    size_t element_bytes = 0;
    switch (var->class_type) {
      case MAT_C_DOUBLE: case MAT_C_INT64: case MAT_C_UINT64: element_bytes = 8; break;
      case MAT_C_SINGLE: case MAT_C_INT32: case MAT_C_UINT32: element_bytes = 4; break;
      case MAT_C_INT16: case MAT_C_UINT16: element_bytes = 2; break;
      case MAT_C_INT8: case MAT_C_UINT8: element_bytes = 1; break;
      default: trident::fail("{}: '{}': {} must be a numeric array, got {}", caller_, path_, what, class_name(var));
    }
    check_elements(var, element_bytes, what);
    m.rows = var->dims[0];
    m.cols = numel(var) / m.rows;
    m.values.resize(numel(var));
    const void* d = var->data;
    for (size_t i = 0; i < m.values.size(); ++i) {
      switch (var->class_type) {
        case MAT_C_DOUBLE: m.values[i] = static_cast<const double*>(d)[i]; break;
        case MAT_C_SINGLE: m.values[i] = static_cast<const float*>(d)[i]; break;
        case MAT_C_INT8: m.values[i] = static_cast<const int8_t*>(d)[i]; break;
        case MAT_C_UINT8: m.values[i] = static_cast<const uint8_t*>(d)[i]; break;
        case MAT_C_INT16: m.values[i] = static_cast<const int16_t*>(d)[i]; break;
        case MAT_C_UINT16: m.values[i] = static_cast<const uint16_t*>(d)[i]; break;
        case MAT_C_INT32: m.values[i] = static_cast<const int32_t*>(d)[i]; break;
        case MAT_C_UINT32: m.values[i] = static_cast<const uint32_t*>(d)[i]; break;
        case MAT_C_INT64: m.values[i] = static_cast<double>(static_cast<const int64_t*>(d)[i]); break;
        case MAT_C_UINT64: m.values[i] = static_cast<double>(static_cast<const uint64_t*>(d)[i]); break;
        default:
          trident::fail("{}: '{}': {} must be a numeric array, got {}", caller_, path_, what, class_name(var));
      }
    }
    return m;
  }

  static std::string class_name(const matvar_t* var) {
    if (var == nullptr) return "nothing";
    switch (var->class_type) {
      case MAT_C_EMPTY: return "an empty array";
      case MAT_C_CELL: return "a cell array";
      case MAT_C_STRUCT: return "a struct";
      case MAT_C_CHAR: return "a char array";
      case MAT_C_SPARSE: return "a sparse array";
      case MAT_C_FUNCTION: return "a function handle";
      case MAT_C_OBJECT:
      case MAT_C_OPAQUE: return "an object";
      default: return "a numeric array";
    }
  }

 private:
  struct FileCloser {
    void operator()(mat_t* f) const { Mat_Close(f); }
  };
  struct VarDeleter {
    void operator()(matvar_t* v) const { Mat_VarFree(v); }
  };
  std::string path_;
  std::string caller_;
  size_t max_elements_ = 0;
  std::unique_ptr<mat_t, FileCloser> file_;
};

}  // namespace trident::data
