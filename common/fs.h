// File-system helpers, on POSIX calls rather than std::filesystem: the torch wheel exports its
// own (newer, statically linked) std::filesystem symbols from libtorch.so, which interpose on the
// system's and crash (remove_all jumps to a null address, seen on Debian 12 and Ubuntu 24.04).
// `.ci/check_sources` keeps std::filesystem out of the code base.
//
// The rule everywhere in t4g: nothing half-written is left behind. Writers produce
// `<path>.tmp-<pid>-<n>` in the same folder and rename it over `path` when complete (rename is
// atomic within a file system); a failure removes the temporary.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace t4g {

// A temporary sibling name for `path`, unique within this process.
std::string temp_path_for(const std::string& path);

// Calls write(tmp) with a temporary path next to `path`, then renames tmp to `path` (tmp may be a
// file or a folder). If write throws, the temporary is removed and the exception propagates.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);

// Writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Whole file as bytes; throws t4g::Error naming the file when it cannot be read.
std::string read_file(const std::string& path);

bool path_exists(const std::string& path);
bool is_directory(const std::string& path);
bool is_regular_file(const std::string& path);
// Size in bytes; throws t4g::Error naming the file when it cannot be stat'ed.
uint64_t file_size(const std::string& path);

// Creates the folder and its parents; throws t4g::Error naming it on failure.
void make_dirs(const std::string& path);
// Removes a file or a whole folder tree (links are removed, not followed). True when the path is
// gone afterwards (a missing path counts), false when something could not be removed.
bool remove_all(const std::string& path) noexcept;
// Renames (atomically replacing a file, or an empty folder, at `to`).
void rename_path(const std::string& from, const std::string& to);
// Entry names in a folder (no "." or ".."), sorted.
std::vector<std::string> list_dir(const std::string& path);
// A new, empty folder under $TMPDIR (or /tmp) named <prefix>XXXXXX.
std::string make_temp_dir(const std::string& prefix);

// Path text helpers (no file-system access).
std::string path_join(const std::string& a, const std::string& b);
std::string parent_path(const std::string& path);  // "a/b/c.txt" -> "a/b"; "c.txt" -> "."
std::string file_name(const std::string& path);    // "a/b/c.txt" -> "c.txt"
std::string file_stem(const std::string& path);    // "a/b/c.tar.gz" -> "c.tar"; "a/.x" -> ".x"

}  // namespace t4g
