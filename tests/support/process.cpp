#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace wacht::test {

ChildProcess::ChildProcess(std::vector<std::string> argv, bool wait_for_line, int timeout_ms) {
  int out[2];
  if (pipe(out) != 0) throw std::runtime_error("pipe failed");
  char tmpl[] = "/tmp/wacht-test-stderr-XXXXXX";
  int err_fd = mkstemp(tmpl);
  stderr_path_ = tmpl;
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    dup2(out[1], 1);
    dup2(err_fd, 2);
    close(out[0]);
    close(out[1]);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out[1]);
  close(err_fd);
  stdout_fd_ = out[0];
  if (!wait_for_line) return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string buf;
  while (buf.find('\n') == std::string::npos) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    deadline - std::chrono::steady_clock::now())
                                    .count());
    if (left <= 0) throw std::runtime_error("child did not print a line: " + argv[0]);
    pollfd p{stdout_fd_, POLLIN, 0};
    if (poll(&p, 1, left) <= 0) continue;
    char c[256];
    ssize_t n = read(stdout_fd_, c, sizeof c);
    if (n <= 0) throw std::runtime_error("child exited early: " + argv[0] + ": " + stderr_text());
    buf.append(c, static_cast<size_t>(n));
  }
  first_line_ = buf.substr(0, buf.find('\n'));
}

ChildProcess::~ChildProcess() {
  if (running()) signal_and_wait(SIGTERM, 3000);
  if (running()) {
    kill(-pid_, SIGKILL);
    kill(pid_, SIGKILL);
    signal_and_wait(SIGKILL, 3000);
  }
  if (stdout_fd_ >= 0) close(stdout_fd_);
  unlink(stderr_path_.c_str());
}

bool ChildProcess::running() {
  if (reaped_ || pid_ <= 0) return false;
  int status;
  if (waitpid(pid_, &status, WNOHANG) == pid_) {
    reaped_ = true;
    return false;
  }
  return true;
}

int ChildProcess::signal_and_wait(int sig, int timeout_ms) {
  if (reaped_) return -1;
  kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      reaped_ = true;
      kill(-pid_, SIGKILL);  // helpers of the child, if any
      return status;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

std::string ChildProcess::stderr_text() const { return read_text(stderr_path_); }

std::string support_path(const std::string& name) {
  return std::string(WACHT_TEST_SUPPORT_DIR) + "/" + name;
}

std::string certs_dir() {
  static const std::string dir = [] {
    std::string d = WACHT_TEST_CERTS_DIR;
    std::filesystem::create_directories(d);
    // One generator at a time; the others wait and then find the files.
    int lock = open((d + "/.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    flock(lock, LOCK_EX);
    struct stat st {};
    bool fresh = stat((d + "/client.pem").c_str(), &st) == 0 && time(nullptr) - st.st_mtime < 86400;
    if (!fresh) {
      std::string cmd = "sh '" + support_path("make_certs.sh") + "' '" + d + "' >/dev/null";
      if (std::system(cmd.c_str()) != 0) throw std::runtime_error("make_certs.sh failed");
    }
    flock(lock, LOCK_UN);
    close(lock);
    return d;
  }();
  return dir;
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(std::string("free_port: bind: ") + std::strerror(errno));
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string make_temp_dir() {
  char tmpl[] = "/tmp/wacht-test-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

HttpResponse http_get(int port, const std::string& path, int timeout_ms) {
  HttpResponse r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return r;
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) {
    close(fd);
    return r;
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  // "HTTP/1.1 200 OK"; atoi read past the end of a reply cut off after "HTTP/1.1".
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return r;
  std::from_chars(resp.data() + 9, resp.data() + resp.size(), r.status);
  size_t body = resp.find("\r\n\r\n");
  if (body != std::string::npos) r.body = resp.substr(body + 4);
  return r;
}

}  // namespace wacht::test
