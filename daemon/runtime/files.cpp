#include "runtime/files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace wacht::runtime {

std::optional<std::string> read_secret_file(const std::string& path, std::string* reason) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (reason) *reason = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    if (reason) *reason = std::strerror(err);
    return std::nullopt;
  }
  if (text.ends_with('\n')) text.pop_back();
  if (text.ends_with('\r')) text.pop_back();
  return text;
}

bool fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  int saved = errno;  // for the caller's message
  ::close(fd);
  errno = saved;
  return ok;
}

bool write_file_atomically(const std::string& path, const std::string& data, std::string* error) {
  auto fail = [&](const std::string& what) {
    if (error) *error = what + ": " + std::strerror(errno);
    return false;
  };
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return fail("cannot create " + tmp);
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      bool r = fail("cannot write " + tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return r;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fdatasync(fd) != 0) {
    bool r = fail("cannot sync " + tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return r;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    bool r = fail("cannot replace " + path);
    ::unlink(tmp.c_str());
    return r;
  }
  fsync_dir(std::filesystem::path(path).parent_path().string());
  return true;
}

}  // namespace wacht::runtime
