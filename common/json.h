// JSON through nlohmann-json (diffusers config.json, model_index.json, safetensors indexes, our
// own metadata) with errors that name the file and the key path, so a user can fix a bad file
// without a stack trace.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/error.h"

namespace t4g {

using Json = nlohmann::json;

// Parses a JSON file; a missing file or a syntax error is a t4g::Error naming the file.
Json read_json(const std::string& path);
// Parses JSON text; `source` names it in errors.
Json parse_json(const std::string& text, const std::string& source);
// Writes `value` (indented) atomically.
void write_json(const std::string& path, const Json& value, int indent = 2);

// obj[key] converted to T; a missing key or a wrong type is a t4g::Error naming `source` and key.
template <typename T>
T json_get(const Json& obj, const std::string& key, const std::string& source) {
  ErrorContext ctx;
  ctx.file = source;
  ctx.key = key;
  T4G_CHECK_CTX(obj.is_object() && obj.contains(key), ctx, "missing key");
  try {
    return obj.at(key).get<T>();
  } catch (const nlohmann::json::exception&) {
    ctx.got = obj.at(key).dump();
    throw Error("wrong type", ctx);
  }
}

// Like json_get, with a default when the key is absent (a present key of the wrong type is still an error).
template <typename T>
T json_get_or(const Json& obj, const std::string& key, const T& fallback, const std::string& source) {
  if (!obj.is_object() || !obj.contains(key) || obj.at(key).is_null()) return fallback;
  return json_get<T>(obj, key, source);
}

// Typed, read-only access to one JSON object. Every error names the file and the key path
// ("transformer/config.json: num_layers: expected an integer, got \"30\"").
// A key whose value is null counts as absent (diffusers writes `"patch_size_t": null`).
class JsonObject {
 public:
  // `value` must be an object; `file` and `path` (the key path of `value` inside the file,
  // empty for the root) are only used in error messages.
  JsonObject(nlohmann::json value, std::string file, std::string path = "");

  // Reads and parses `path`; its root must be an object.
  static JsonObject from_file(const std::string& path);

  // Present and not null.
  bool has(const std::string& key) const;
  // Keys in sorted order (nlohmann::json keeps objects sorted).
  std::vector<std::string> keys() const;

  // Required getters throw when the key is absent or has the wrong type; the fallback forms
  // return `fallback` when absent and still throw on a wrong type.
  int64_t get_int(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t fallback) const;
  double get_double(const std::string& key) const;
  double get_double(const std::string& key, double fallback) const;
  bool get_bool(const std::string& key) const;
  bool get_bool(const std::string& key, bool fallback) const;
  std::string get_string(const std::string& key) const;
  std::string get_string(const std::string& key, const std::string& fallback) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key, const std::vector<int64_t>& fallback) const;
  JsonObject get_object(const std::string& key) const;

  const nlohmann::json& json() const { return value_; }
  const std::string& file() const { return file_; }
  // Key path of `key` inside the file ("metadata.total_size").
  std::string key_path(const std::string& key) const;

 private:
  const nlohmann::json& require(const std::string& key) const;
  [[noreturn]] void wrong_type(const std::string& key, const std::string& expected) const;

  nlohmann::json value_;
  std::string file_;
  std::string path_;
};

}  // namespace t4g
