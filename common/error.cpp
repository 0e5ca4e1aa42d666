#include "common/error.h"

namespace t4g {

std::string format_error(const std::string& message, const ErrorContext& c) {
  std::string out;
  if (!c.file.empty()) out += c.file + ": ";
  if (!c.key.empty()) out += c.key + ": ";
  out += message;
  std::string detail;
  if (!c.tensor.empty()) detail += "tensor " + c.tensor;
  // Only what is known: "expected X, got Y", "expected X" or "got Y" (never a "?" placeholder).
  if (!c.expected.empty() || !c.got.empty()) {
    if (!detail.empty()) detail += "; ";
    if (!c.expected.empty()) detail += "expected " + c.expected;
    if (!c.expected.empty() && !c.got.empty()) detail += ", ";
    if (!c.got.empty()) detail += "got " + c.got;
  }
  if (!detail.empty()) out += " (" + detail + ")";
  // One line, always: a multi-line message would break log parsing and the CLI contract.
  for (char& ch : out) {
    if (ch == '\n' || ch == '\r') ch = ' ';
  }
  return out;
}

Error::Error(const std::string& message, ErrorContext context)
    : std::runtime_error(format_error(message, context)),
      message_(message),
      context_(std::move(context)) {}

}  // namespace t4g
