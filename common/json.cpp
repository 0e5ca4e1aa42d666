#include "common/json.h"

#include <cmath>

#include "common/fs.h"

namespace t4g {
namespace {

// A short rendering of a JSON value for "got ..." in errors.
std::string describe(const nlohmann::json& v) {
  std::string text = v.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return text;
}

}  // namespace


Json parse_json(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    ErrorContext ctx;
    ctx.file = source;
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep the useful part.
    std::string what = e.what();
    const auto pos = what.find("] ");
    throw Error("not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)), ctx);
  }
}

Json read_json(const std::string& path) { return parse_json(read_file(path), path); }

void write_json(const std::string& path, const Json& value, int indent) {
  write_file_atomically(path, value.dump(indent) + "\n");
}

JsonObject::JsonObject(nlohmann::json value, std::string file, std::string path)
    : value_(std::move(value)), file_(std::move(file)), path_(std::move(path)) {
  if (!value_.is_object()) {
    ErrorContext ctx;
    ctx.file = file_;
    ctx.key = path_;
    ctx.expected = "a JSON object";
    ctx.got = describe(value_);
    throw Error("wrong type", ctx);
  }
}

JsonObject JsonObject::from_file(const std::string& path) { return JsonObject(read_json(path), path); }

bool JsonObject::has(const std::string& key) const {
  const auto it = value_.find(key);
  return it != value_.end() && !it->is_null();
}

std::vector<std::string> JsonObject::keys() const {
  std::vector<std::string> out;
  for (auto it = value_.begin(); it != value_.end(); ++it) out.push_back(it.key());
  return out;
}

std::string JsonObject::key_path(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

const nlohmann::json& JsonObject::require(const std::string& key) const {
  if (!has(key)) {
    ErrorContext ctx;
    ctx.file = file_;
    ctx.key = key_path(key);
    throw Error("required key is missing", ctx);
  }
  return value_.at(key);
}

void JsonObject::wrong_type(const std::string& key, const std::string& expected) const {
  ErrorContext ctx;
  ctx.file = file_;
  ctx.key = key_path(key);
  ctx.expected = expected;
  ctx.got = describe(value_.at(key));
  throw Error("wrong type", ctx);
}

int64_t JsonObject::get_int(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) wrong_type(key, "an integer that fits in 64 bits");
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  // Python's json writes 2.0 for a float that a config meant as 2; accept integral values.
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && std::floor(d) == d && std::fabs(d) < 9.0e15) return static_cast<int64_t>(d);
  }
  wrong_type(key, "an integer");
}

int64_t JsonObject::get_int(const std::string& key, int64_t fallback) const {
  return has(key) ? get_int(key) : fallback;
}

double JsonObject::get_double(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_number()) wrong_type(key, "a number");
  return v.get<double>();
}

double JsonObject::get_double(const std::string& key, double fallback) const {
  return has(key) ? get_double(key) : fallback;
}

bool JsonObject::get_bool(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_boolean()) wrong_type(key, "true or false");
  return v.get<bool>();
}

bool JsonObject::get_bool(const std::string& key, bool fallback) const {
  return has(key) ? get_bool(key) : fallback;
}

std::string JsonObject::get_string(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_string()) wrong_type(key, "a string");
  return v.get<std::string>();
}

std::string JsonObject::get_string(const std::string& key, const std::string& fallback) const {
  return has(key) ? get_string(key) : fallback;
}

std::vector<int64_t> JsonObject::get_int_list(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_array()) wrong_type(key, "a list of integers");
  std::vector<int64_t> out;
  for (const auto& item : v) {
    if (item.is_number_integer() && !(item.is_number_unsigned() && item.get<uint64_t>() > INT64_MAX)) {
      out.push_back(item.get<int64_t>());
    } else {
      wrong_type(key, "a list of integers");
    }
  }
  return out;
}

std::vector<int64_t> JsonObject::get_int_list(const std::string& key, const std::vector<int64_t>& fallback) const {
  return has(key) ? get_int_list(key) : fallback;
}

JsonObject JsonObject::get_object(const std::string& key) const {
  const nlohmann::json& v = require(key);
  if (!v.is_object()) wrong_type(key, "a JSON object");
  return JsonObject(v, file_, key_path(key));
}

}  // namespace t4g
