#pragma once
/// \file trident/io/json_reader.hpp
/// Checked access to a JSON file (nlohmann_json; Part of trident::json): every error names the reading function,
/// the file and the JSON path of the entry ("'my.json': images[3] has no field 'file'"). Shared by the readers of
/// results files (eval/results_file.hpp) and of user datasets (data/custom_json.hpp), which add their own typed
/// accessors on top.

#include <trident/config.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <optional>
#include <string>

namespace trident::io {

class JsonReader {
 public:
  JsonReader(const char* caller, std::string path) : fn(caller), path(std::move(path)) {}

  /// The whole file, parsed.
  nlohmann::json parse() const {
    std::ifstream file(path);
    TRIDENT_CHECK(file.good(), "{}: cannot open '{}'", fn, path);
    try {
      return nlohmann::json::parse(file);
    } catch (const nlohmann::json::exception& e) {
      trident::fail("{}: '{}' is not valid JSON ({})", fn, path, e.what());
    }
  }

  /// object[key], or nullptr when it is absent or null.
  const nlohmann::json* find(const nlohmann::json& object, const std::string& key, const std::string& where) const {
    TRIDENT_CHECK(object.is_object(), "{}: '{}': {} must be an object, got {}", fn, path, where, object.type_name());
    const auto it = object.find(key);
    return it == object.end() || it->is_null() ? nullptr : &*it;
  }

  /// object[key], which must be present.
  const nlohmann::json& field(const nlohmann::json& object, const std::string& key, const std::string& where) const {
    TRIDENT_CHECK(object.is_object(), "{}: '{}': {} must be an object, got {}", fn, path, where, object.type_name());
    const auto it = object.find(key);
    TRIDENT_CHECK(it != object.end(), "{}: '{}': {} has no field '{}'", fn, path, where, key);
    return *it;
  }

  const nlohmann::json& array(const nlohmann::json& object, const std::string& key, const std::string& where) const {
    return checked_array(field(object, key, where), key, where);
  }
  const nlohmann::json* optional_array(const nlohmann::json& object, const std::string& key,
                                       const std::string& where) const {
    const auto* v = find(object, key, where);
    return v ? &checked_array(*v, key, where) : nullptr;
  }

  std::string string(const nlohmann::json& object, const std::string& key, const std::string& where) const {
    return checked_string(field(object, key, where), key, where);
  }
  std::optional<std::string> optional_string(const nlohmann::json& object, const std::string& key,
                                             const std::string& where) const {
    const auto* v = find(object, key, where);
    return v ? std::optional<std::string>(checked_string(*v, key, where)) : std::nullopt;
  }

  double number(const nlohmann::json& object, const std::string& key, const std::string& where) const {
    const auto& v = field(object, key, where);
    TRIDENT_CHECK(v.is_number(), "{}: '{}': {}.{} must be a number, got {}", fn, path, where, key, v.type_name());
    return v.get<double>();
  }

  const char* fn;    ///< the reading function, first word of every message
  std::string path;  ///< the file

 private:
  const nlohmann::json& checked_array(const nlohmann::json& v, const std::string& key, const std::string& where) const {
    TRIDENT_CHECK(v.is_array(), "{}: '{}': {}.{} must be an array, got {}", fn, path, where, key, v.type_name());
    return v;
  }
  std::string checked_string(const nlohmann::json& v, const std::string& key, const std::string& where) const {
    TRIDENT_CHECK(v.is_string(), "{}: '{}': {}.{} must be a string, got {}", fn, path, where, key, v.type_name());
    return v.get<std::string>();
  }
};

}  // namespace trident::io
