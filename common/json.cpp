#include "common/json.h"

#include "common/fs.h"

namespace t4g {

Json parse_json(const std::string& text, const std::string& source) {
  try {
    return Json::parse(text);
  } catch (const nlohmann::json::parse_error& e) {
    ErrorContext ctx;
    ctx.file = source;
    // nlohmann's message starts with "[json.exception.parse_error.101] "; keep the useful part.
    std::string what = e.what();
    const auto pos = what.find("] ");
    throw Error("invalid JSON: " + (pos == std::string::npos ? what : what.substr(pos + 2)), ctx);
  }
}

Json read_json(const std::string& path) { return parse_json(read_file(path), path); }

void write_json(const std::string& path, const Json& value, int indent) {
  write_file_atomically(path, value.dump(indent) + "\n");
}

}  // namespace t4g
