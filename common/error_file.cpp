// torchelastic error-file JSON: see common/error_file.h for the two accepted forms.
#include "common/error_file.h"

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/error.h"
#include "common/fs.h"

namespace t4g {
namespace {

// torchrun stores timestamps as strings of integer seconds; accept numbers too.
int64_t parse_timestamp(const nlohmann::json& value) {
  if (value.is_number_integer()) return value.get<int64_t>();
  if (value.is_number()) return static_cast<int64_t>(value.get<double>());
  if (value.is_string()) {
    try {
      return static_cast<int64_t>(std::stod(value.get<std::string>()));
    } catch (const std::exception&) {
      return 0;
    }
  }
  return 0;
}

std::string as_text(const nlohmann::json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

}  // namespace

void write_error_file(const std::string& path, const std::string& message, const std::string& details) {
  if (path.empty()) return;
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const int64_t seconds = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  nlohmann::json record = {
      {"message",
       {{"message", message}, {"extraInfo", {{"py_callstack", details}, {"timestamp", std::to_string(seconds)}}}}}};
  make_dirs(parent_path(path));
  write_file_atomically(path, record.dump(2) + "\n");
}

std::optional<ErrorFileRecord> read_error_file(const std::string& path) {
  if (path.empty() || !path_exists(path)) return std::nullopt;
  ErrorFileRecord record;
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error& e) {
    record.message = std::string("unreadable error file: ") + e.what();
    return record;
  }
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("message")) {
    record.message = "error file is not torchelastic JSON: " + path;
    return record;
  }
  const nlohmann::json& message = doc["message"];
  if (message.is_object()) {
    if (message.contains("message")) record.message = as_text(message["message"]);
    if (message.contains("extraInfo") && message["extraInfo"].is_object()) {
      const nlohmann::json& extra = message["extraInfo"];
      if (extra.contains("py_callstack")) record.details = as_text(extra["py_callstack"]);
      if (extra.contains("timestamp")) record.timestamp = parse_timestamp(extra["timestamp"]);
    }
  } else {
    record.message = as_text(message);
  }
  if (record.timestamp == 0 && doc.contains("timestamp")) record.timestamp = parse_timestamp(doc["timestamp"]);
  return record;
}

}  // namespace t4g
