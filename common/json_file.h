// Reading JSON files (diffusers config.json, model_index.json, safetensors index files) with
// errors that name the file and the key path, so a user can fix a bad config without a stack
// trace. Parsing is nlohmann::json; this adds the file/key context and typed getters.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace t4g {

// Parses the whole file as JSON. Throws t4g::Error naming the file (and the parser's line and
// column) when it cannot be read or is not valid JSON.
nlohmann::json read_json_file(const std::string& path);

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
