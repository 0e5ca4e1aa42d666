// JSON files through nlohmann-json, with errors that name the file and the key.
#pragma once

#include <nlohmann/json.hpp>

#include <string>

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

}  // namespace t4g
