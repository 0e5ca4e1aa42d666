// File-system helpers. The rule everywhere in t4g: nothing half-written is left behind.
// Writers produce `<path>.tmp-<pid>-<n>` in the same folder and rename it over `path` when
// complete (rename is atomic within a file system); a failure removes the temporary.
#pragma once

#include <functional>
#include <string>

namespace t4g {

// A temporary sibling name for `path`, unique within this process.
std::string temp_path_for(const std::string& path);

// Calls write(tmp) with a temporary path next to `path`, then renames tmp to `path`.
// If write throws, the temporary is removed and the exception propagates.
void write_atomically(const std::string& path, const std::function<void(const std::string& tmp)>& write);

// Writes `bytes` to `path` atomically.
void write_file_atomically(const std::string& path, const std::string& bytes);

// Whole file as bytes; throws t4g::Error naming the file when it cannot be read.
std::string read_file(const std::string& path);

// Creates the folder and its parents; throws t4g::Error naming it on failure.
void make_dirs(const std::string& path);

// Removes a file or a folder with everything in it (symlinks are removed, not followed); a missing
// path is fine. Returns false when something could not be removed. Use this instead of
// std::filesystem::remove_all: the copy that libtorch.so exports (and that wins at link time)
// crashes on non-empty folders (torch 2.11 wheel, verified).
bool remove_tree(const std::string& path) noexcept;

}  // namespace t4g
