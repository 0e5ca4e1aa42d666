// The project's one error type. Libraries throw t4g::Error; only main() catches it,
// prints what() as one line and exits non-zero. The context fields (file, key, tensor,
// expected vs got) are what a user needs to find the mistake without a stack trace.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace t4g {

// Where an error happened and what was expected. Every field is optional.
struct ErrorContext {
  std::string file;      // file being read or written
  std::string key;       // config key path, JSON key, tensor name in a checkpoint, HDF5 path
  std::string tensor;    // tensor being checked (when not the same as key)
  std::string expected;  // what was expected ("[B,F,C,H,W]", "float32", "a positive integer")
  std::string got;       // what was found
};

class Error : public std::runtime_error {
 public:
  Error(const std::string& message, ErrorContext context = {});

  const std::string& message() const { return message_; }
  const ErrorContext& context() const { return context_; }

 private:
  std::string message_;
  ErrorContext context_;
};

// Formats "file: key: message (tensor T; expected E, got G)" on one line.
std::string format_error(const std::string& message, const ErrorContext& context);

namespace detail {
inline void append_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void append_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  append_all(os, rest...);
}
}  // namespace detail

// Joins the arguments with operator<< into one string: t4g::str("got ", n, " frames").
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream os;
  detail::append_all(os, args...);
  return os.str();
}

}  // namespace t4g

// T4G_CHECK(cond, parts...): throws t4g::Error with the message built from parts.
// T4G_CHECK_CTX(cond, ctx, parts...): the same with an ErrorContext.
#define T4G_CHECK(cond, ...)                        \
  do {                                              \
    if (!(cond)) {                                  \
      throw ::t4g::Error(::t4g::str(__VA_ARGS__));  \
    }                                               \
  } while (0)

#define T4G_CHECK_CTX(cond, ctx, ...)                     \
  do {                                                    \
    if (!(cond)) {                                        \
      throw ::t4g::Error(::t4g::str(__VA_ARGS__), (ctx)); \
    }                                                     \
  } while (0)
