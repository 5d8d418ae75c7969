// Shared by the end-to-end tests: the real wachtd binary and loopback targets.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace wacht::test {

// A plain HTTP server answering 200 "hello wacht" on 127.0.0.1:`port` (0 = any
// free port); its first stdout line is the port.
std::unique_ptr<ChildProcess> http_target(int port = 0);
// Accepts connections into its backlog and never answers.
std::unique_ptr<ChildProcess> hanging_target();

// wachtd on a temp dir and a free port, with [daemon] written by the harness,
// tenants lup and schwerin, `[defaults] tenant = "lup"`, then `config`.
class Wachtd {
 public:
  explicit Wachtd(const std::string& config, const std::string& extra_daemon = "");
  ~Wachtd();
  void write(const std::string& config, const std::string& extra_daemon = "");
  // Starts (again) on the same dir and port and waits until /-/ready.
  void start();
  void kill9();
  std::string metrics();
  // Polls /metrics until `pattern` matches (regex search) or the time is up.
  bool wait_for(const std::string& pattern,
                std::chrono::milliseconds limit = std::chrono::seconds(10));
  double value(const std::string& series);
  ChildProcess& proc() { return *proc_; }
  int port() const { return port_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<ChildProcess> proc_;
};

// One message the SMTP sink stored: headers (names in lower case, the subject
// decoded from RFC 2047), the body (quoted-printable decoded) and when it
// arrived (the stored file's mtime, seconds since the epoch).
struct Mail {
  std::map<std::string, std::string> headers;
  std::string body;
  double arrived = 0;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
};

// tests/support/smtp_sink.py on 127.0.0.1 (`port` 0: any free port), storing
// into a temp dir; `extra` are its behaviour switches (see its header).
class SmtpSink {
 public:
  explicit SmtpSink(int port = 0, std::vector<std::string> extra = {});
  ~SmtpSink();
  int port() const { return port_; }
  // Every message stored so far, in arrival order.
  std::vector<Mail> mails() const;
  size_t count() const { return mails().size(); }
  // Messages the sink answered at the end of DATA (stored or refused).
  int attempts() const;

 private:
  std::string dir_;
  int port_ = 0;
  std::unique_ptr<ChildProcess> proc_;
};

// How many of `mails` have `subject_part` in their subject.
size_t count_if(const std::vector<Mail>& mails, const std::string& subject_part);

// Polls `done` every 20 ms until it is true or `limit` passes.
bool eventually(const std::function<bool()>& done,
                std::chrono::milliseconds limit = std::chrono::seconds(10));

}  // namespace wacht::test
