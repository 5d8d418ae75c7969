#include "e2e/harness.hpp"

#include "runtime/regex.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
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

namespace {

std::string base64_decode(const std::string& in) {
  static const std::string chars =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    size_t p = chars.find(c);
    if (p == std::string::npos) continue;
    val = (val << 6) + static_cast<int>(p);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

std::string quoted_printable_decode(const std::string& in) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '=') {
      out += in[i];
    } else if (i + 1 < in.size() && (in[i + 1] == '\r' || in[i + 1] == '\n')) {
      i += in[i + 1] == '\r' ? 2 : 1;  // soft line break
    } else if (i + 2 < in.size()) {
      out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
      i += 2;
    }
  }
  return out;
}

// Decodes RFC 2047 "=?UTF-8?B?...?=" words (what wacht writes for non-ASCII).
std::string decode_words(const std::string& s) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t start = s.find("=?UTF-8?B?", i);
    if (start == std::string::npos) {
      out += s.substr(i);
      break;
    }
    std::string between = s.substr(i, start - i);
    if (between.find_first_not_of(" \t") != std::string::npos) out += between;
    size_t end = s.find("?=", start + 10);
    out += base64_decode(s.substr(start + 10, end - start - 10));
    i = end + 2;
  }
  return out;
}

}  // namespace

SmtpSink::SmtpSink(int port, std::vector<std::string> extra) : dir_(make_temp_dir()) {
  std::vector<std::string> argv = {"/usr/bin/python3", support_path("smtp_sink.py"), "--dir", dir_,
                                   "--port",           std::to_string(port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  proc_ = std::make_unique<ChildProcess>(argv);
  port_ = std::stoi(proc_->first_line());
}

SmtpSink::~SmtpSink() {
  proc_.reset();
  fs::remove_all(dir_);
}

std::vector<Mail> SmtpSink::mails() const {
  std::vector<fs::path> files;
  if (fs::exists(dir_ + "/new"))
    for (const auto& e : fs::directory_iterator(dir_ + "/new")) files.push_back(e.path());
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return std::stoi(a.stem()) < std::stoi(b.stem());
  });
  std::vector<Mail> out;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    std::string text = ss.str();
    Mail m;
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0)
      m.arrived =
          static_cast<double>(st.st_mtim.tv_sec) + static_cast<double>(st.st_mtim.tv_nsec) / 1e9;
    size_t split = text.find("\r\n\r\n");
    size_t sep = 4;
    if (split == std::string::npos) {
      split = text.find("\n\n");
      sep = 2;
    }
    std::string head = text.substr(0, split);
    m.body = split == std::string::npos ? "" : text.substr(split + sep);
    std::string last;
    std::istringstream lines(head);
    for (std::string line; std::getline(lines, line);) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (!line.empty() && (line[0] == ' ' || line[0] == '\t')) {
        m.headers[last] += line;  // folded
        continue;
      }
      size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      last = line.substr(0, colon);
      for (char& c : last) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      m.headers[last] = line.substr(colon + 1 + (line[colon + 1] == ' '));
    }
    m.headers["subject"] = decode_words(m.header("subject"));
    if (m.header("content-transfer-encoding") == "quoted-printable")
      m.body = quoted_printable_decode(m.body);
    out.push_back(std::move(m));
  }
  return out;
}

int SmtpSink::attempts() const {
  std::ifstream in(dir_ + "/attempts");
  int n = 0;
  in >> n;
  return n;
}

size_t count_if(const std::vector<Mail>& mails, const std::string& subject_part) {
  return static_cast<size_t>(std::count_if(mails.begin(), mails.end(), [&](const Mail& m) {
    return m.header("subject").find(subject_part) != std::string::npos;
  }));
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
