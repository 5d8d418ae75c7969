#include "e2e/harness.hpp"

#include "runtime/regex.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

namespace wacht::test {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// A plain HTTP server on a free loopback port (prints the port, then serves).
std::unique_ptr<ChildProcess> http_target(int port) {
  return std::make_unique<ChildProcess>(std::vector<std::string>{
      "python3", "-c",
      "import http.server,sys\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "  def do_GET(self):\n"
      "    b=b'hello wacht'\n"
      "    self.send_response(200); self.send_header('Content-Length',str(len(b)));"
      " self.end_headers(); self.wfile.write(b)\n"
      "  def log_message(self,*a): pass\n"
      "http.server.ThreadingHTTPServer.allow_reuse_address=True\n"
      "http.server.ThreadingHTTPServer.request_queue_size=256\n"
      "s=http.server.ThreadingHTTPServer(('127.0.0.1'," +
          std::to_string(port) +
          "),H)\n"
          "print(s.server_address[1],flush=True)\n"
          "s.serve_forever()\n"});
}

// Accepts connections into its backlog and never answers.
std::unique_ptr<ChildProcess> hanging_target() {
  return std::make_unique<ChildProcess>(
      std::vector<std::string>{"python3", "-c",
                               "import socket,time\n"
                               "s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(4096)\n"
                               "print(s.getsockname()[1],flush=True)\n"
                               "time.sleep(3600)\n"});
}

Wachtd::Wachtd(const std::string& config, const std::string& extra_daemon)
    : dir_(make_temp_dir()), port_(free_port()) {
  write(config, extra_daemon);
  start();
}

Wachtd::~Wachtd() {
  proc_.reset();
  fs::remove_all(dir_);
}

void Wachtd::start() {
  proc_.reset();
  proc_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{WACHTD_PATH, "--config", dir_ + "/wacht.toml"}, false);
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (http_get(port_, "/-/ready", 500).status != 200) {
    if (std::chrono::steady_clock::now() > deadline || !proc_->running())
      throw std::runtime_error("wachtd did not become ready: " + proc_->stderr_text());
    std::this_thread::sleep_for(20ms);
  }
}

void Wachtd::kill9() { proc_->signal_and_wait(SIGKILL, 5000); }

void Wachtd::write(const std::string& config, const std::string& extra_daemon) {
  std::ofstream(dir_ + "/wacht.toml.tmp")
      << "[daemon]\nlisten = \"127.0.0.1:" << port_ << "\"\nstate_dir = \"" << dir_
      << "/state\"\nlog_level = \"info\"\n"
      << extra_daemon
      << "\n[defaults]\ntenant = \"lup\"\n[tenants.lup]\nname = \"Landkreis "
         "Ludwigslust-Parchim\"\n[tenants.schwerin]\nname = \"Landeshauptstadt Schwerin\"\n"
      << config;
  fs::rename(dir_ + "/wacht.toml.tmp", dir_ + "/wacht.toml");
}

std::string Wachtd::metrics() { return http_get(port_, "/metrics").body; }

bool Wachtd::wait_for(const std::string& pattern, std::chrono::milliseconds limit) {
  // PCRE2 rather than std::regex: GCC 12 warns inside <regex> at -O2 with sanitizers.
  auto re = runtime::Regex::compile(pattern);
  if (!re) throw std::invalid_argument("bad pattern: " + pattern);
  return eventually([&] { return re->search(metrics()); }, limit);
}

double Wachtd::value(const std::string& series) {
  std::string text = "\n" + metrics();
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(text.substr(at + series.size() + 2));
}

bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

}  // namespace wacht::test
