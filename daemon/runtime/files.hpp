#pragma once

#include <optional>
#include <string>

namespace wacht::runtime {

// Reads a secret (a password, a token) from a file, dropping one trailing
// newline (and a CR before it). On failure returns nullopt and sets `reason`
// to the system's reason; callers name the file in their message, never the
// content.
std::optional<std::string> read_secret_file(const std::string& path, std::string* reason);

// Makes a created or renamed entry of `dir` survive a crash.
bool fsync_dir(const std::string& dir);

// Replaces `path` with `data` atomically: a temp file beside it, fdatasync,
// rename, fsync of the directory. After a crash the old or the new content is
// there, whole. On failure returns false and sets `error`.
bool write_file_atomically(const std::string& path, const std::string& data, std::string* error);

}  // namespace wacht::runtime
