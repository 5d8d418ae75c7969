#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace wacht::test {

// A helper process (a Python server, wachtd itself) owned by a test. The
// constructor waits for the first line the child prints on stdout (servers
// print their port), the destructor terminates it (SIGTERM, then SIGKILL).
class ChildProcess {
 public:
  explicit ChildProcess(std::vector<std::string> argv, bool wait_for_line = true,
                        int timeout_ms = 10000);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  const std::string& first_line() const { return first_line_; }
  pid_t pid() const { return pid_; }
  // Sends `sig`; returns the exit status from waitpid if the child ends within
  // `timeout_ms`, else -1.
  int signal_and_wait(int sig, int timeout_ms);
  bool running();
  // Everything the child wrote to stderr so far (kept in a temp file).
  std::string stderr_text() const;

 private:
  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  std::string first_line_;
  std::string stderr_path_;
  bool reaped_ = false;
};

// Path of a file under tests/support.
std::string support_path(const std::string& name);
// The directory of the test certificates from make_certs.sh (see its header),
// shared by every test process of a build and remade when older than a day so
// that "expires in 3 days" stays true. Safe to call from parallel processes.
std::string certs_dir();
// A loopback TCP port nothing listens on: bound once to get it from the kernel,
// then closed (a server may take it next, or a test may expect it refused).
int free_port();
// The whole content of a file ("" if it cannot be read).
std::string read_text(const std::string& path);
// A fresh empty directory under $TMPDIR, removed by the caller (or left for debugging).
std::string make_temp_dir();
// A one-shot HTTP GET to 127.0.0.1:port; returns status code and body ("" on failure).
struct HttpResponse {
  int status = 0;
  std::string body;
};
HttpResponse http_get(int port, const std::string& path, int timeout_ms = 5000);

}  // namespace wacht::test
