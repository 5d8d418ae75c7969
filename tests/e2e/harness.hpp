// Shared by the end-to-end tests: the real wachtd binary and loopback targets.
#pragma once

#include <chrono>
#include <functional>
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

// Polls `done` every 20 ms until it is true or `limit` passes.
bool eventually(const std::function<bool()>& done,
                std::chrono::milliseconds limit = std::chrono::seconds(10));

}  // namespace wacht::test
