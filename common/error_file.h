// The torchelastic error file (TORCHELASTIC_ERROR_FILE): a worker that fails writes one JSON
// record there, and the launcher (t4grun, or PyTorch's torchrun) reads it to name the root cause
// of a failed run. Writer and reader live together so the format is defined in one place
// (research/distributed_and_style.md A.1.6; torch/distributed/elastic/multiprocessing/errors).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace t4g {

// One failure as recorded in an error file.
struct ErrorFileRecord {
  std::string message;    // one-line error text ("t4g::Error: file: key: ...")
  std::string details;    // free text shown as the "traceback" (extraInfo.py_callstack)
  int64_t timestamp = 0;  // unix seconds when the failure was recorded (0 = not recorded)
};

// Writes the torchelastic dict form
//   {"message": {"message": M, "extraInfo": {"py_callstack": D, "timestamp": "<unix seconds>"}}}
// atomically to `path`. The timestamp is written as whole seconds because torchrun parses it with
// int(). An empty path (no TORCHELASTIC_ERROR_FILE) does nothing. Throws t4g::Error naming the file
// when it cannot be written.
void write_error_file(const std::string& path, const std::string& message, const std::string& details);

// Reads an error file in either torchelastic form (the dict form above, or a plain-string
// "message" with a top-level "timestamp"). Returns nullopt when the file does not exist; a file
// that exists but cannot be parsed gives a record whose message says so (a supervisor reporting a
// failure must not fail itself).
std::optional<ErrorFileRecord> read_error_file(const std::string& path);

}  // namespace t4g
