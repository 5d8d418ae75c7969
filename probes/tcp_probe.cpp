#include "probes/tcp_probe.hpp"

#include "probes/common_metrics.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>
#include <unistd.h>
#include <uv.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probes/ip_protocol.hpp"
#include "probes/tls.hpp"
#include "probes/tls_session.hpp"
#include "runtime/regex.hpp"

namespace wacht::probes {

// The reference documentation is generated from this table.
static constexpr runtime::KeySpec kTcpKeys[] = {
    {"ip_protocol", "string", "any",
     "Address family to connect with: \"ip4\", \"ip6\", or \"any\" for the first address the "
     "resolver returns. With \"ip4\" or \"ip6\" only addresses of that family are used, and a "
     "name without one fails to resolve."},
    {"tls", "boolean", "false",
     "Run a TLS handshake once connected. The check then succeeds only if the handshake and "
     "certificate verification succeed, and reports the certificate's expiry."},
    {"tls_ca_file", "path", "",
     "PEM file of the CA certificates to trust instead of the system's CA store."},
    {"tls_server_name", "string", "",
     "Name the server certificate must match, also sent as SNI. Default: the target's host "
     "(an IP address is matched against the certificate's IP addresses)."},
    {"tls_insecure", "boolean", "false",
     "Accept any certificate: do not fail on an untrusted, expired or mismatched certificate. "
     "Expiry is still reported and the summary says why verification failed."},
    {"tls_cert_file", "path", "",
     "PEM client certificate (and chain) to present to servers that require mutual TLS."},
    {"tls_key_file", "path", "",
     "PEM private key of tls_cert_file, unencrypted. Default: read from tls_cert_file."},
    {"steps", "array of tables", "",
     "A dialogue run once connected (after the TLS handshake with tls = true), one inline "
     "table per step, each with exactly one of: send = \"text\" (bytes to send; TOML escapes "
     "such as \\r\\n and \\u0000 apply), send_hex = \"30 05 02\" (binary bytes as hex), "
     "expect = \"regex\" (waits until the PCRE2 pattern matches what arrived after the line of "
     "the previous match, at most the last 64 KiB; ^ and $ match at line breaks), starttls = true "
     "(a TLS handshake on the connection, verified and reported like tls = true). An expect "
     "step may add fail = \"regex\", which fails the step as soon as it matches while expect "
     "does not (an error reply). An expect or starttls step may set timeout = \"2s\"; "
     "otherwise it may take the rest of the check's timeout."},
    {"preset", "string", "",
     "A ready dialogue instead of steps: \"smtp\" (banner, EHLO, STARTTLS, EHLO over TLS, QUIT), "
     "\"smtp-plain\", \"smtps\", \"imap\" (banner, STARTTLS, CAPABILITY, LOGOUT), "
     "\"imap-plain\", \"imaps\", \"pop3\" (banner, STLS, CAPA, QUIT), \"pop3-plain\", "
     "\"pop3s\", \"ssh\" (SSH-2.0 banner), \"ldap\" (StartTLS extended operation) and "
     "\"ldaps\". The -plain presets skip TLS; smtps, imaps, pop3s and ldaps speak TLS from "
     "the first byte. The tls_* keys apply to every preset that uses TLS."},
};

namespace {

const MetricDef kPhaseDuration{"wacht_tcp_duration_seconds",
                               "Duration of each phase of a TCP check in seconds.", "phase"};
const MetricDef kDialogueStep{"wacht_tcp_dialogue_step",
                              "Dialogue step a TCP check reached: the number of the step that "
                              "failed, or the number of steps if all passed (0: not started)."};

constexpr std::string_view kIdle = "idle";
// Received bytes kept for expect steps: enough for any banner or capability
// list, bounded against a server that streams without end.
constexpr size_t kMaxBuffered = 64 * 1024;
// Length of received text quoted in a summary.
constexpr size_t kMaxQuoted = 200;
// What one read takes from the socket.
constexpr size_t kReadBufferBytes = 16 * 1024;

struct Step {
  enum class Kind { kSend, kExpect, kStartTls };
  Kind kind = Kind::kSend;
  std::string data;                      // kSend: the bytes
  std::optional<runtime::Regex> expect;  // kExpect
  std::optional<runtime::Regex> fail;    // kExpect: fails the step when it matches first
  std::string pattern;                   // kExpect: expect and fail as written
  std::string fail_pattern;
  uint64_t timeout_ms = 0;  // kExpect, kStartTls; 0: the check's timeout
};

// Everything a run needs, shared by the probe and its runs so that a run
// never reaches back into a probe that may be gone.
struct TcpSettings {
  std::string host;  // without brackets
  uint16_t port = 0;
  int literal_family = 0;  // AF_INET or AF_INET6 if host is an IP address (no resolution)
  // A literal address parsed once, and how summaries name it (empty for names
  // and IPv6 zones, whose interface index is looked up per run).
  sockaddr_storage literal_addr{};
  std::string literal_peer;
  IpProtocol ip_protocol = IpProtocol::kAny;
  bool tls = false;                               // TLS from the first byte
  std::string tls_server_name;                    // what the certificate must match
  std::shared_ptr<const TlsContext> tls_context;  // with tls or a starttls step
  std::vector<Step> steps;
  bool has_expect = false;  // some step is an expect step
};

struct TcpSpec final : ProbeSpec {
  std::shared_ptr<const TcpSettings> settings;
};

std::string address_text(const sockaddr* addr) {
  char ip[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET6) {
    const auto* a6 = reinterpret_cast<const sockaddr_in6*>(addr);
    uv_ip6_name(a6, ip, sizeof ip);
    return fmt::format("[{}]:{}", ip, ntohs(a6->sin6_port));
  }
  const auto* a4 = reinterpret_cast<const sockaddr_in*>(addr);
  uv_ip4_name(a4, ip, sizeof ip);
  return fmt::format("{}:{}", ip, ntohs(a4->sin_port));
}

double seconds_between(uint64_t from_ns, uint64_t to_ns) {
  return static_cast<double>(to_ns - from_ns) / 1e9;
}

// `bytes` as a double-quoted C-style literal cut to about kMaxQuoted
// characters, so that what a server sent (binary, control characters) stays
// one readable line in a summary or a mail. A `pattern` keeps its backslashes
// and quotes as the regex reads them.
std::string quoted(std::string_view bytes, bool pattern = false) {
  std::string out = "\"";
  for (unsigned char c : bytes) {
    if (out.size() > kMaxQuoted) {
      out += "...";
      break;
    }
    switch (c) {
      case '\r': out += "\\r"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '"': out += pattern ? "\"" : "\\\""; break;
      case '\\': out += pattern ? "\\" : "\\\\"; break;
      default:
        if (c < 0x20 || c >= 0x7f)
          out += fmt::format("\\x{:02x}", c);
        else
          out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

class Connection;

class TcpProbe final : public Probe {
 public:
  TcpProbe(uv_loop_t* loop, std::shared_ptr<const TcpSettings> settings)
      : loop_(loop), settings_(std::move(settings)) {}
  ~TcpProbe() override { cancel(); }

  void start(DoneCallback done) override;
  void cancel() override;
  std::string_view phase() const override { return phase_; }

 private:
  friend class Connection;

  uv_loop_t* loop_;
  std::shared_ptr<const TcpSettings> settings_;
  Connection* run_ = nullptr;  // owned by its own close path, see Connection
  // A string, not a constant: dialogue phases name the step and what arrived.
  std::string phase_{kIdle};
};

// One run: resolve, connect, optionally a TLS handshake and a dialogue. It is
// not owned by the probe, because libuv calls back into it after the probe may
// be gone (close callbacks, a resolver request that could not be cancelled):
// it deletes itself once its handles are closed and no resolver request is
// outstanding. While the probe wants the result, probe_ points to it.
class Connection {
 public:
  Connection(TcpProbe* probe, DoneCallback done)
      : probe_(probe), done_(std::move(done)), settings_(probe->settings_) {}
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void begin();
  // The probe no longer wants the result: abort, never call done, free later.
  void abandon();

 private:
  void resolved(int status, addrinfo* res);
  void connect_to(const sockaddr* addr, const std::string* peer = nullptr);
  void connected(int status);
  void received(ssize_t nread, const char* data);
  void start_tls();
  void advance_tls();
  // Runs steps from step_ on until one has to wait for the peer.
  void run_steps();
  // Whether the current expect step matched; fails the run if it cannot.
  bool check_expect(const Step& step);
  void expired();
  void dialogue_done();
  // `step`: the send step whose bytes these are, for the summary if they fail.
  void send(std::string data, size_t step = kNoStep);
  // Sends a send step's bytes, through TLS once it is established.
  void send_step(const Step& step);
  void sent(int status, size_t step);
  // Fails the run at steps[index]; `regex`: an expect step failed to match.
  void fail_step(size_t index, const std::string& why, bool regex = false);
  // All steps passed: close TLS, then succeed once the last writes went out.
  void complete();
  void succeed_once_sent();
  void finish(bool success, std::string summary);
  void close_handles();
  void closed();

  bool dialogue() const { return !settings_->steps.empty(); }
  bool handshaking() const { return tls_ && tls_->status() == TlsSession::Status::kHandshaking; }
  void set_phase(std::string phase);
  // Adds the duration of the phase that just ended and starts the next.
  double end_phase(std::string_view name);
  std::string tls_success_summary() const;
  // "TLS 1.3, certificate expires in 90 days", with why it was not verified.
  std::string certificate_text() const;
  void fail_internal(const char* what) noexcept;
  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  // Trampolines: run `f` on the Connection in `data`; no exception crosses into libuv.
  template <typename F>
  static void guarded(void* data, F&& f) noexcept;
  static void on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept;
  static void on_connected(uv_connect_t* req, int status) noexcept;
  static void on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) noexcept;
  static void on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) noexcept;
  static void on_written(uv_write_t* req, int status) noexcept;
  static void on_timer(uv_timer_t* timer) noexcept;
  static void on_closed(uv_handle_t* handle) noexcept;

  // A write in flight; freed by its callback, which libuv runs (with
  // UV_ECANCELED if need be) before the handle's close callback.
  struct WriteRequest {
    uv_write_t req;
    std::string data;
    size_t step;
  };
  static constexpr size_t kNoStep = SIZE_MAX;

  TcpProbe* probe_;
  DoneCallback done_;
  std::shared_ptr<const TcpSettings> settings_;
  uv_tcp_t tcp_{};
  uv_timer_t step_timer_{};  // the timeout of the step waiting (dialogues only)
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  std::unique_ptr<TlsSession> tls_;
  ProbeResult result_;
  std::string peer_;  // the address connected to, for the summary
  uint64_t start_ns_ = 0;
  uint64_t phase_start_ns_ = 0;
  uint64_t dialogue_start_ns_ = 0;
  std::string received_;           // plaintext since the last matched expect step
  size_t step_ = 0;                // index of the current dialogue step
  size_t entered_step_ = kNoStep;  // the waiting step whose timer was set up
  size_t failed_step_ = 0;         // 1-based number of the step that failed, 0 if none
  bool failed_regex_ = false;      // an expect step failed
  int read_error_ = 0;             // UV_EOF or the error that ended reading
  int writes_ = 0;                 // writes in flight
  bool in_starttls_ = false;       // a starttls step's handshake is running
  bool steps_done_ = false;        // all steps passed; waiting for the writes to go out
  bool resolving_ = false;         // resolve_req_ is with the resolver
  bool closing_ = false;           // the result is settled and the handles are closing
  int open_handles_ = 0;           // handles whose close callback has not run
};

void TcpProbe::start(DoneCallback done) {
  // A new run supersedes one still in progress.
  cancel();
  run_ = new Connection(this, std::move(done));
  run_->begin();
}

void TcpProbe::cancel() {
  if (run_) run_->abandon();
  run_ = nullptr;
  phase_ = kIdle;
}

void Connection::begin() {
  result_.samples.reserve(8);
  // Neither can fail: without a family no socket is created yet.
  uv_tcp_init(probe_->loop_, &tcp_);
  tcp_.data = this;
  open_handles_ = 1;
  if (dialogue()) {
    uv_timer_init(probe_->loop_, &step_timer_);
    step_timer_.data = this;
    open_handles_ = 2;
  }
  start_ns_ = phase_start_ns_ = uv_hrtime();
  const TcpSettings& s = *settings_;
  if (!s.literal_peer.empty()) {
    result_.add(metrics::kDnsLookupTime, end_phase("resolve"));
    connect_to(reinterpret_cast<const sockaddr*>(&s.literal_addr), &s.literal_peer);
  } else if (s.literal_family == AF_INET6) {
    sockaddr_in6 addr{};
    uv_ip6_addr(s.host.c_str(), s.port, &addr);
    result_.add(metrics::kDnsLookupTime, end_phase("resolve"));
    connect_to(reinterpret_cast<const sockaddr*>(&addr));
  } else if (s.literal_family == AF_INET) {
    sockaddr_in addr{};
    uv_ip4_addr(s.host.c_str(), s.port, &addr);
    result_.add(metrics::kDnsLookupTime, end_phase("resolve"));
    connect_to(reinterpret_cast<const sockaddr*>(&addr));
  } else {
    set_phase("resolving");
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = address_family(s.ip_protocol);
    // With either family allowed, skip a family this host has no address in,
    // rather than connecting to an address it cannot reach.
    if (s.ip_protocol == IpProtocol::kAny) hints.ai_flags = AI_ADDRCONFIG;
    resolve_req_.data = this;
    int rc =
        uv_getaddrinfo(probe_->loop_, &resolve_req_, &on_resolved, s.host.c_str(), nullptr, &hints);
    if (rc < 0) {
      result_.add(metrics::kDnsLookupTime, end_phase("resolve"));
      finish(false, "resolve: " + resolve_error(rc));
      return;
    }
    resolving_ = true;
  }
}

void Connection::abandon() {
  probe_ = nullptr;
  done_ = nullptr;
  // If the request is already running, its callback comes anyway and frees us.
  if (resolving_) uv_cancel(reinterpret_cast<uv_req_t*>(&resolve_req_));
  if (!closing_) close_handles();
}

void Connection::resolved(int status, addrinfo* res) {
  resolving_ = false;
  if (closing_) {
    uv_freeaddrinfo(res);
    if (open_handles_ == 0) delete this;
    return;
  }
  result_.add(metrics::kDnsLookupTime, end_phase("resolve"));
  if (status < 0) {
    uv_freeaddrinfo(res);
    finish(false, "resolve: " + resolve_error(status));
    return;
  }
  // The resolver's order already reflects address selection (RFC 6724), and
  // the hints restricted the family, so the first address is the one to use.
  const addrinfo* chosen = nullptr;
  for (const addrinfo* ai = res; ai && !chosen; ai = ai->ai_next)
    if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6) chosen = ai;
  if (!chosen) {
    uv_freeaddrinfo(res);
    finish(false, "resolve: no IP address for " + settings_->host);
    return;
  }
  sockaddr_storage addr{};
  std::memcpy(&addr, chosen->ai_addr, chosen->ai_addrlen);
  uv_freeaddrinfo(res);
  if (addr.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(settings_->port);
  else
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(settings_->port);
  connect_to(reinterpret_cast<const sockaddr*>(&addr));
}

void Connection::connect_to(const sockaddr* addr, const std::string* peer) {
  result_.add(metrics::kIpProtocol, addr->sa_family == AF_INET6 ? 6 : 4);
  peer_ = peer ? *peer : address_text(addr);
  set_phase("connecting");
  connect_req_.data = this;
  int rc = uv_tcp_connect(&connect_req_, &tcp_, addr, &on_connected);
  if (rc < 0) {
    end_phase("connect");
    finish(false, uv_strerror(rc));
  }
}

void Connection::connected(int status) {
  if (closing_) return;  // UV_ECANCELED from closing the handle
  end_phase("connect");
  if (status < 0) {
    finish(false, uv_strerror(status));
    return;
  }
  if (!settings_->tls && !dialogue()) {
    // The most frequent summary, built without fmt's float formatting ({:.1f}).
    std::string summary;
    summary.reserve(48);
    summary.append("connected to ").append(peer_).append(" in ");
    const double ms = seconds_between(start_ns_, uv_hrtime()) * 1e3;
    if (ms >= 0 && ms < 1e12) {
      auto tenths = static_cast<uint64_t>(std::llround(ms * 10));
      summary.append(std::to_string(tenths / 10)).push_back('.');
      summary.push_back(static_cast<char>('0' + tenths % 10));
    } else {
      summary.append(fmt::format("{:.1f}", ms));
    }
    summary.append(" ms");
    finish(true, std::move(summary));
    return;
  }
  dialogue_start_ns_ = uv_hrtime();
  int rc = uv_read_start(stream(), &on_alloc, &on_read);
  if (rc < 0) {
    finish(false, std::string("reading: ") + uv_strerror(rc));
    return;
  }
  if (settings_->tls)
    start_tls();
  else
    run_steps();
}

void Connection::received(ssize_t nread, const char* data) {
  // Once every step passed, whatever else arrives does not matter.
  if (closing_ || steps_done_ || nread == 0) return;
  if (nread < 0) {
    uv_read_stop(stream());
    read_error_ = static_cast<int>(nread);
    if (handshaking()) {
      end_phase("tls");
      std::string why = nread == UV_EOF
                            ? "TLS: connection closed by the server during the handshake"
                            : std::string("TLS: ") + uv_strerror(read_error_);
      if (in_starttls_)
        fail_step(step_, why);
      else
        finish(false, std::move(why));
      return;
    }
    run_steps();
    return;
  }
  std::string_view bytes(data, static_cast<size_t>(nread));
  if (!tls_) {
    received_.append(bytes);
  } else {
    tls_->receive(bytes);
    if (handshaking()) {
      advance_tls();
      return;
    }
    TlsSession::Status status = tls_->read(received_);
    // Answers to what the server sent after the handshake (TLS 1.3 key updates).
    send(tls_->take_output());
    if (status == TlsSession::Status::kFailed) {
      fail_step(step_, "TLS: " + tls_->error());
      return;
    }
    if (status == TlsSession::Status::kClosed) read_error_ = UV_EOF;
  }
  // Keep the newest bytes: a match is searched for near what arrived last.
  if (received_.size() > kMaxBuffered) received_.erase(0, received_.size() - kMaxBuffered);
  run_steps();
}

void Connection::start_tls() {
  set_phase(in_starttls_ ? fmt::format("step {}: TLS handshake", step_ + 1)
                         : std::string("TLS handshake"));
  phase_start_ns_ = uv_hrtime();
  tls_ = std::make_unique<TlsSession>(*settings_->tls_context, settings_->tls_server_name);
  advance_tls();
}

void Connection::advance_tls() {
  TlsSession::Status status = tls_->handshake();
  // Without a dialogue the handshake is all there is to check.
  if (status == TlsSession::Status::kEstablished && !dialogue()) tls_->shutdown();
  // Also sends the alert that tells the server why a handshake failed.
  send(tls_->take_output());
  if (closing_ || status == TlsSession::Status::kHandshaking) return;
  end_phase("tls");
  if (status != TlsSession::Status::kEstablished) {
    if (in_starttls_)
      fail_step(step_, "TLS: " + tls_->error());
    else
      finish(false, "TLS: " + tls_->error());
    return;
  }
  result_.add(metrics::kTlsVersion, 1, tls_->version());
  if (!dialogue()) {
    finish(true, tls_success_summary());
    return;
  }
  if (in_starttls_) {
    in_starttls_ = false;
    uv_timer_stop(&step_timer_);
    ++step_;
  }
  // Plaintext that came with the last handshake records.
  if (tls_->read(received_) == TlsSession::Status::kFailed) {
    fail_step(step_, "TLS: " + tls_->error());
    return;
  }
  run_steps();
}

// How summaries name a step: expect "^220 ", send "QUIT\r\n", starttls.
std::string step_label(const Step& step) {
  switch (step.kind) {
    case Step::Kind::kSend: return "send " + quoted(step.data);
    case Step::Kind::kExpect: return "expect " + quoted(step.pattern, true);
    case Step::Kind::kStartTls: return "starttls";
  }
  return {};
}

// How many bytes of `subject` an expect step that matched it consumes: through
// the end of the line in which the earliest match ends (or the match itself
// while the line is incomplete), so that the following lines of a reply are
// left to the next step, as with blackbox_exporter's line-wise expect.
// Regex::search reports no offsets, so a binary search over prefixes finds the
// match end, in ~16 searches of a full buffer. `re` must match `subject`.
size_t consumed_by_match(const runtime::Regex& re, std::string_view subject) {
  size_t lo = 0;
  size_t hi = subject.size();
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (re.search(subject.substr(0, mid)))
      hi = mid;
    else
      lo = mid + 1;
  }
  if (hi > 0 && subject[hi - 1] == '\n') return hi;
  size_t eol = subject.find('\n', hi);
  return eol == std::string_view::npos ? hi : eol + 1;
}

void Connection::run_steps() {
  const std::vector<Step>& steps = settings_->steps;
  while (!closing_ && !in_starttls_ && step_ < steps.size()) {
    const Step& step = steps[step_];
    if (step.kind == Step::Kind::kSend) {
      send_step(step);
      ++step_;
      continue;
    }
    if (entered_step_ != step_) {
      entered_step_ = step_;
      uv_timer_stop(&step_timer_);
      if (step.timeout_ms > 0) uv_timer_start(&step_timer_, &on_timer, step.timeout_ms, 0);
      set_phase(step.kind == Step::Kind::kExpect
                    ? fmt::format("step {}: waiting for /{}/", step_ + 1, step.pattern)
                    : fmt::format("step {}: TLS handshake", step_ + 1));
    }
    if (step.kind == Step::Kind::kStartTls) {
      // Plaintext that arrived before the handshake must not pass for an
      // answer received over TLS (response injection, cf. CVE-2011-0411).
      received_.clear();
      in_starttls_ = true;
      start_tls();
      return;
    }
    if (!check_expect(step)) return;
    uv_timer_stop(&step_timer_);
    ++step_;
  }
  if (!closing_ && !in_starttls_ && !steps_done_) complete();
}

bool Connection::check_expect(const Step& step) {
  std::string error;
  if (step.expect->search(received_, &error)) {
    received_.erase(0, consumed_by_match(*step.expect, received_));
    return true;
  }
  if (!error.empty()) {
    fail_step(step_, "expect gave up: " + error, true);
  } else if (step.fail && step.fail->search(received_)) {
    fail_step(step_, fmt::format("matched fail /{}/", step.fail_pattern), true);
  } else if (read_error_ != 0) {
    fail_step(step_, read_error_ == UV_EOF ? "connection closed" : uv_strerror(read_error_), true);
  } else if (!received_.empty()) {
    // The scheduler's timeout summary quotes the phase.
    set_phase(fmt::format("step {}: waiting for /{}/, got {}", step_ + 1, step.pattern,
                          quoted(received_)));
  }
  return false;
}

void Connection::expired() {
  if (closing_ || step_ >= settings_->steps.size()) return;
  const Step& step = settings_->steps[step_];
  if (in_starttls_) end_phase("tls");
  fail_step(step_,
            "timeout after " + runtime::format_duration(std::chrono::milliseconds(step.timeout_ms)),
            step.kind == Step::Kind::kExpect);
}

void Connection::complete() {
  steps_done_ = true;
  uv_timer_stop(&step_timer_);
  if (tls_) {
    tls_->shutdown();
    send(tls_->take_output());
  }
  succeed_once_sent();
}

void Connection::succeed_once_sent() {
  // The last send steps (QUIT) go out before the connection closes.
  if (writes_ > 0 || closing_) return;
  std::string summary =
      fmt::format("connected to {} in {:.1f} ms, {} step{} passed", peer_,
                  seconds_between(start_ns_, uv_hrtime()) * 1e3, settings_->steps.size(),
                  settings_->steps.size() == 1 ? "" : "s");
  if (tls_) summary += ", " + certificate_text();
  finish(true, std::move(summary));
}

void Connection::fail_step(size_t index, const std::string& why, bool regex) {
  if (closing_) return;
  const Step& step = settings_->steps[index];
  failed_step_ = index + 1;
  failed_regex_ = regex;
  std::string summary = fmt::format("step {} ({}): ", index + 1, step_label(step));
  if (step.kind == Step::Kind::kExpect)
    summary += fmt::format("got {} ({})", received_.empty() ? "nothing" : quoted(received_), why);
  else
    summary += why;
  finish(false, std::move(summary));
}

std::string Connection::tls_success_summary() const {
  return fmt::format("connected to {} in {:.1f} ms, {}", peer_,
                     seconds_between(start_ns_, uv_hrtime()) * 1e3, certificate_text());
}

std::string Connection::certificate_text() const {
  std::string out = tls_->version() + ", certificate ";
  // Reached only with tls_insecure: say what an operator would otherwise miss.
  if (!tls_->verified()) out += fmt::format("not verified ({}), ", tls_->verify_error());
  if (double leaf = tls_->expiry().leaf(); leaf > 0) {
    auto days =
        static_cast<long>(std::floor((leaf - static_cast<double>(std::time(nullptr))) / 86400));
    out += days >= 0 ? fmt::format("expires in {} days", days)
                     : fmt::format("expired {} days ago", -days);
  } else {
    out += "expiry unknown";
  }
  return out;
}

void Connection::send_step(const Step& step) {
  if (!tls_) {
    send(step.data, step_);
    return;
  }
  if (!tls_->write(step.data)) {
    fail_step(step_, "TLS: " + tls_->error());
    return;
  }
  send(tls_->take_output(), step_);
}

void Connection::send(std::string data, size_t step) {
  if (data.empty() || closing_) return;
  auto* w = new WriteRequest{{}, std::move(data), step};
  w->req.data = this;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  ++writes_;
  int rc = uv_write(&w->req, stream(), &buf, 1, &on_written);
  if (rc < 0) {
    delete w;
    sent(rc, step);
  }
}

void Connection::sent(int status, size_t step) {
  --writes_;
  if (closing_) return;
  if (status >= 0 || steps_done_) {
    // Once every step passed, a server that hung up after its last answer
    // (221 to QUIT) does not fail the check by refusing our close_notify.
    if (steps_done_) succeed_once_sent();
    return;
  }
  std::string why = uv_strerror(status);
  // The first and third branches are alike on purpose: the order is the precedence.
  if (!dialogue()) {  // NOLINT(bugprone-branch-clone)
    end_phase("tls");
    finish(false, "TLS: " + why);
  } else if (step != kNoStep) {
    fail_step(step, why);
  } else if (handshaking() && !in_starttls_) {
    end_phase("tls");
    finish(false, "TLS: " + why);
  } else {
    fail_step(std::min(step_, settings_->steps.size() - 1), "TLS: " + why);
  }
}

void Connection::finish(bool success, std::string summary) {
  if (closing_) return;
  result_.success = success;
  result_.state = success ? State::kOk : State::kCritical;
  result_.summary = std::move(summary);
  uint64_t now = uv_hrtime();
  result_.duration_seconds = seconds_between(start_ns_, now);
  if (tls_) tls_->expiry().add_samples(result_);
  if (dialogue()) {
    if (dialogue_start_ns_ != 0)
      result_.add(kPhaseDuration, seconds_between(dialogue_start_ns_, now), "dialogue");
    result_.add(kDialogueStep,
                static_cast<double>(success ? settings_->steps.size() : failed_step_));
    if (settings_->has_expect) result_.add(metrics::kFailedDueToRegex, failed_regex_ ? 1 : 0);
  }
  // done fires from the close callback: always asynchronously, and with the
  // handles already gone, so a caller may start the next run or tear down.
  close_handles();
}

void Connection::close_handles() {
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &on_closed);
  if (dialogue()) uv_close(reinterpret_cast<uv_handle_t*>(&step_timer_), &on_closed);
}

void Connection::closed() {
  TcpProbe* probe = probe_;
  DoneCallback done = std::move(done_);
  ProbeResult result = std::move(result_);
  if (probe) {
    probe->run_ = nullptr;
    probe->phase_ = kIdle;
  }
  if (!resolving_) delete this;
  // Last: done may destroy the probe or start the next run.
  if (probe) done(std::move(result));
}

void Connection::set_phase(std::string phase) {
  if (probe_) probe_->phase_ = std::move(phase);
}

double Connection::end_phase(std::string_view name) {
  uint64_t now = uv_hrtime();
  double seconds = seconds_between(phase_start_ns_, now);
  phase_start_ns_ = now;
  result_.add(kPhaseDuration, seconds, std::string(name));
  return seconds;
}

void Connection::fail_internal(const char* what) noexcept {
  try {
    spdlog::error("tcp probe: {}", what);
    finish(false, fmt::format("internal error: {}", what));
  } catch (...) {
    // Out of memory while reporting: close without a summary rather than hang.
    if (!closing_) close_handles();
  }
}

template <typename F>
void Connection::guarded(void* data, F&& f) noexcept {
  auto* self = static_cast<Connection*>(data);
  try {
    f(self);
  } catch (const std::exception& e) {
    self->fail_internal(e.what());
  } catch (...) {
    self->fail_internal("unknown exception");
  }
}

void Connection::on_resolved(uv_getaddrinfo_t* req, int status, addrinfo* res) noexcept {
  guarded(req->data, [&](Connection* c) { c->resolved(status, res); });
}

void Connection::on_connected(uv_connect_t* req, int status) noexcept {
  guarded(req->data, [&](Connection* c) { c->connected(status); });
}

void Connection::on_alloc(uv_handle_t* handle, size_t, uv_buf_t* buf) noexcept {
  auto* c = static_cast<Connection*>(handle->data);
  (void)c;
  // Consumed by the read callback at once: one buffer serves every connection.
  // Failing to allocate 64 KiB once per thread may terminate.
  // NOLINTNEXTLINE(bugprone-unhandled-exception-at-new)
  thread_local std::unique_ptr<char[]> shared(new char[kReadBufferBytes]);
  *buf = uv_buf_init(shared.get(), kReadBufferBytes);
}

void Connection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) noexcept {
  guarded(stream->data, [&](Connection* c) { c->received(nread, buf ? buf->base : nullptr); });
}

void Connection::on_written(uv_write_t* req, int status) noexcept {
  auto* w = reinterpret_cast<WriteRequest*>(req);
  void* data = req->data;
  size_t step = w->step;
  delete w;
  guarded(data, [&](Connection* c) { c->sent(status, step); });
}

void Connection::on_timer(uv_timer_t* timer) noexcept {
  guarded(timer->data, [](Connection* c) { c->expired(); });
}

void Connection::on_closed(uv_handle_t* handle) noexcept {
  auto* c = static_cast<Connection*>(handle->data);
  // The run ends when its last handle is closed.
  if (--c->open_handles_ > 0) return;
  try {
    c->closed();
  } catch (const std::exception& e) {
    // From done: the connection is gone, there is nothing left to clean up.
    spdlog::error("tcp probe: exception from the done callback: {}", e.what());
  } catch (...) {
    spdlog::error("tcp probe: unknown exception from the done callback");
  }
}
// Splits `target` into host and port; reports a problem at the target's
// location and returns false.
bool parse_target(runtime::TableReader& reader, const std::string& target, TcpSettings& out) {
  auto bad = [&](std::string_view why) {
    reader.error("target", fmt::format("invalid target '{}': {}", target, why));
    return false;
  };
  std::string_view port_text;
  if (target.starts_with('[')) {
    size_t close = target.find(']');
    if (close == std::string::npos) return bad("missing ']' after the IPv6 address");
    out.host = target.substr(1, close - 1);
    sockaddr_in6 a6{};
    if (out.host.empty() || uv_ip6_addr(out.host.c_str(), 0, &a6) != 0)
      return bad("brackets must enclose an IPv6 address, e.g. [::1]:22");
    if (close + 1 == target.size() || target[close + 1] != ':')
      return bad("missing port; write [address]:port, e.g. [::1]:22");
    port_text = std::string_view(target).substr(close + 2);
    out.literal_family = AF_INET6;
  } else {
    size_t colon = target.rfind(':');
    if (colon == std::string::npos) return bad("missing port; write host:port");
    out.host = target.substr(0, colon);
    port_text = std::string_view(target).substr(colon + 1);
    if (out.host.empty()) return bad("missing host; write host:port");
    if (out.host.find_first_of("/ \t") != std::string::npos)
      return bad("write host:port, not a URL or path");
    if (out.host.find(':') != std::string::npos)
      return bad("write IPv6 addresses in brackets, e.g. [::1]:22");
    sockaddr_in a4{};
    if (uv_ip4_addr(out.host.c_str(), 0, &a4) == 0) out.literal_family = AF_INET;
  }
  if (port_text.empty()) return bad("missing port after ':'");
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec == std::errc::invalid_argument || end != port_text.data() + port_text.size())
    return bad(fmt::format("port '{}' is not a number", port_text));
  if (ec == std::errc::result_out_of_range || port < 1 || port > 65535)
    return bad(fmt::format("port must be between 1 and 65535, not {}", port_text));
  out.port = static_cast<uint16_t>(port);
  if (out.literal_family == AF_INET) {
    uv_ip4_addr(out.host.c_str(), out.port, reinterpret_cast<sockaddr_in*>(&out.literal_addr));
    out.literal_peer = address_text(reinterpret_cast<const sockaddr*>(&out.literal_addr));
  } else if (out.literal_family == AF_INET6 && out.host.find('%') == std::string::npos) {
    uv_ip6_addr(out.host.c_str(), out.port, reinterpret_cast<sockaddr_in6*>(&out.literal_addr));
    out.literal_peer = address_text(reinterpret_cast<const sockaddr*>(&out.literal_addr));
  }
  return true;
}

// The dialogue of one preset, written as a check's steps would be.
struct PresetStep {
  Step::Kind kind;
  std::string_view text = {};  // kSend: the bytes ({host}: this machine's name); kExpect: expect
  std::string_view fail = {};  // kExpect: fail
  bool hex = false;            // kSend: text is hex
};

struct Preset {
  std::string_view name;
  bool tls;  // TLS from the first byte
  std::span<const PresetStep> steps;
};

using K = Step::Kind;

// SMTP replies end with a line "NNN text"; an error reply fails a step at once
// instead of at its timeout.
constexpr std::string_view kSmtpError = "^[45]\\d\\d ";
constexpr PresetStep kSmtpStartTls[] = {
    {K::kExpect, "^220 ", kSmtpError},
    {K::kSend, "EHLO {host}\r\n"},
    // The last line of the EHLO reply arrived without STARTTLS: not offered.
    {K::kExpect, "^250[- ]STARTTLS", "^(?:[45]\\d\\d|250) "},
    {K::kSend, "STARTTLS\r\n"},
    {K::kExpect, "^220 ", kSmtpError},
    {K::kStartTls},
    // Proves the session works over TLS (RFC 3207 resets the state).
    {K::kSend, "EHLO {host}\r\n"},
    {K::kExpect, "^250 ", kSmtpError},
    {K::kSend, "QUIT\r\n"},
    {K::kExpect, "^221 ", kSmtpError},
};
constexpr PresetStep kSmtpPlain[] = {
    {K::kExpect, "^220 ", kSmtpError}, {K::kSend, "EHLO {host}\r\n"},
    {K::kExpect, "^250 ", kSmtpError}, {K::kSend, "QUIT\r\n"},
    {K::kExpect, "^221 ", kSmtpError},
};
constexpr PresetStep kImapStartTls[] = {
    {K::kExpect, "^\\* (?:OK|PREAUTH)", "^\\* BYE"},
    {K::kSend, "a1 STARTTLS\r\n"},
    {K::kExpect, "^a1 OK", "^a1 (?:NO|BAD)"},
    {K::kStartTls},
    {K::kSend, "a2 CAPABILITY\r\n"},
    {K::kExpect, "^a2 OK", "^a2 (?:NO|BAD)"},
    {K::kSend, "a3 LOGOUT\r\n"},
};
constexpr PresetStep kImapPlain[] = {
    {K::kExpect, "^\\* (?:OK|PREAUTH)", "^\\* BYE"},
    {K::kSend, "a1 LOGOUT\r\n"},
};
constexpr PresetStep kPop3StartTls[] = {
    {K::kExpect, "^\\+OK", "^-ERR"}, {K::kSend, "STLS\r\n"},
    {K::kExpect, "^\\+OK", "^-ERR"}, {K::kStartTls},
    {K::kSend, "CAPA\r\n"},          {K::kExpect, "^\\+OK", "^-ERR"},
    {K::kSend, "QUIT\r\n"},
};
constexpr PresetStep kPop3Plain[] = {
    {K::kExpect, "^\\+OK", "^-ERR"},
    {K::kSend, "QUIT\r\n"},
};
// SSH-1.99 announces a server that also speaks 2.0 (RFC 4253 section 5.1).
constexpr PresetStep kSsh[] = {{K::kExpect, "^SSH-(?:2\\.0|1\\.99)-"}};
// LDAPv3 StartTLS (RFC 4511 section 4.14): an ExtendedRequest, messageID 1,
// requestName 1.3.6.1.4.1.1466.20037, in BER; the ExtendedResponse must carry
// resultCode success (ENUMERATED 0). Then an UnbindRequest over TLS.
constexpr PresetStep kLdapStartTls[] = {
    {K::kSend, "30 1d 02 01 01 77 18 80 16 312e332e362e312e342e312e313436362e3230303337", {}, true},
    {K::kExpect, "\\x30[\\x00-\\x7f]\\x02\\x01\\x01\\x78[\\x00-\\x7f]\\x0a\\x01\\x00",
     "\\x78[\\x00-\\x7f]\\x0a\\x01[\\x01-\\x7f]"},
    {K::kStartTls},
    {K::kSend, "30 05 02 01 02 42 00", {}, true},
};

constexpr Preset kPresets[] = {
    {"smtp", false, kSmtpStartTls}, {"smtp-plain", false, kSmtpPlain}, {"smtps", true, kSmtpPlain},
    {"imap", false, kImapStartTls}, {"imap-plain", false, kImapPlain}, {"imaps", true, kImapPlain},
    {"pop3", false, kPop3StartTls}, {"pop3-plain", false, kPop3Plain}, {"pop3s", true, kPop3Plain},
    {"ssh", false, kSsh},           {"ldap", false, kLdapStartTls},    {"ldaps", true, {}},
};

// Compiles an expect or fail pattern so that ^ and $ match at line breaks:
// replies are lines, and an expect step sees every line since the last match.
std::optional<runtime::Regex> compile_pattern(const std::string& pattern, std::string* error) {
  auto re = runtime::Regex::compile("(?m)" + pattern, error);
  // Report offsets in the pattern as written.
  if (!re) runtime::Regex::compile(pattern, error);
  return re;
}

// "30 0c 02" (or "300c02") as bytes; false on anything but hex digit pairs.
bool decode_hex(std::string_view text, std::string& out) {
  int high = -1;
  for (char c : text) {
    if (c == ' ' || c == ':') {
      if (high >= 0) return false;
      continue;
    }
    int v = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : -1;
    if (v < 0) return false;
    if (high < 0) {
      high = v;
    } else {
      out += static_cast<char>(high * 16 + v);
      high = -1;
    }
  }
  return high < 0 && !out.empty();
}

// Where the name of this machine goes in a greeting (EHLO); like
// check_smtp's default.
std::string local_host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "localhost";
  return name;
}

std::vector<Step> preset_steps(const Preset& preset) {
  std::vector<Step> steps;
  std::string host = local_host_name();
  for (const PresetStep& p : preset.steps) {
    Step step;
    step.kind = p.kind;
    if (p.kind == K::kSend && p.hex) {
      decode_hex(p.text, step.data);
    } else if (p.kind == K::kSend) {
      step.data = fmt::format(fmt::runtime(p.text), fmt::arg("host", host));
    } else if (p.kind == K::kExpect) {
      step.pattern = p.text;
      step.expect = compile_pattern(step.pattern, nullptr);
      if (!p.fail.empty()) {
        step.fail_pattern = p.fail;
        step.fail = compile_pattern(step.fail_pattern, nullptr);
      }
    }
    steps.push_back(std::move(step));
  }
  return steps;
}

// TableReader offers typed getters, not the raw node an array of tables needs.
// Until it does, the array is recovered from the reader's fingerprint, whose
// "key=<TOML value>" lines carry the values exactly; locations inside the
// array are lost, so problems in a step are reported at the array's start
// with the step's number. nullopt: `steps` is not an array.
std::optional<toml::array> steps_array(const runtime::TableReader& reader) {
  const std::string text = reader.fingerprint();
  constexpr std::string_view kKey = "steps=";
  size_t start = text.starts_with(kKey) ? 0 : text.find("\nsteps=");
  if (start == std::string::npos) return std::nullopt;
  if (start > 0) ++start;
  auto key_line_at = [&](size_t pos) {
    size_t eq = text.find('=', pos);
    return eq != std::string::npos && eq > pos &&
           text.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789_", pos) == eq;
  };
  // The value ends before the next "key=" line; a string in it may contain
  // such a line, so each candidate end is tried.
  for (size_t end = text.find('\n', start); end != std::string::npos;
       end = text.find('\n', end + 1)) {
    if (end + 1 < text.size() && !key_line_at(end + 1)) continue;
    try {
      toml::table table = toml::parse(std::string_view(text).substr(start, end - start));
      if (toml::array* steps = table["steps"].as_array()) return std::move(*steps);
      return std::nullopt;
    } catch (const toml::parse_error&) {
    }
  }
  return std::nullopt;
}

constexpr std::string_view kStepKeys[] = {"send", "send_hex", "expect",
                                          "fail", "starttls", "timeout"};

// One step of `steps`; reports problems through `error` and returns nullopt.
template <typename Error>
std::optional<Step> parse_step(const toml::node& node, Error&& error) {
  const toml::table* table = node.as_table();
  if (!table) {
    error("must be a table such as { expect = \"^220 \" }");
    return std::nullopt;
  }
  bool ok = true;
  std::vector<std::string_view> actions;
  for (const auto& [key, value] : *table) {
    std::string_view k = key.str();
    if (std::find(std::begin(kStepKeys), std::end(kStepKeys), k) == std::end(kStepKeys)) {
      std::string hint = runtime::closest_match(
          k, std::vector<std::string_view>(std::begin(kStepKeys), std::end(kStepKeys)));
      error(hint.empty() ? fmt::format("unknown key '{}'", k)
                         : fmt::format("unknown key '{}'; did you mean '{}'?", k, hint));
      ok = false;
    } else if (k != "fail" && k != "timeout") {
      actions.push_back(k);
    }
  }
  if (!ok) return std::nullopt;
  if (actions.size() != 1) {
    error(actions.empty() ? "needs one of send, send_hex, expect or starttls"
                          : fmt::format("has both '{}' and '{}'; write one action per step",
                                        actions[0], actions[1]));
    return std::nullopt;
  }
  auto string_of = [&](std::string_view key) -> std::optional<std::string> {
    const toml::node* n = table->get(key);
    if (n && n->is_string() && !n->value<std::string>()->empty()) return *n->value<std::string>();
    error(fmt::format("'{}' must be a non-empty string", key));
    return std::nullopt;
  };
  Step step;
  std::string_view action = actions[0];
  std::string why;
  if (action == "send") {
    auto text = string_of("send");
    if (!text) return std::nullopt;
    step.data = std::move(*text);
  } else if (action == "send_hex") {
    auto text = string_of("send_hex");
    if (!text) return std::nullopt;
    if (!decode_hex(*text, step.data)) {
      error("'send_hex' must be pairs of hex digits such as \"30 05 02 01\"");
      return std::nullopt;
    }
  } else if (action == "expect") {
    step.kind = K::kExpect;
    auto pattern = string_of("expect");
    if (!pattern) return std::nullopt;
    step.pattern = std::move(*pattern);
    step.expect = compile_pattern(step.pattern, &why);
    if (!step.expect) {
      error(fmt::format("invalid expect pattern: {}", why));
      return std::nullopt;
    }
  } else {
    step.kind = K::kStartTls;
    const toml::node* n = table->get("starttls");
    if (!n->is_boolean() || !*n->value<bool>()) {
      error("'starttls' must be true");
      return std::nullopt;
    }
  }
  if (table->contains("fail")) {
    if (step.kind != K::kExpect) {
      error("'fail' belongs to an expect step");
      return std::nullopt;
    }
    auto pattern = string_of("fail");
    if (!pattern) return std::nullopt;
    step.fail_pattern = std::move(*pattern);
    step.fail = compile_pattern(step.fail_pattern, &why);
    if (!step.fail) {
      error(fmt::format("invalid fail pattern: {}", why));
      return std::nullopt;
    }
  }
  if (const toml::node* n = table->get("timeout")) {
    if (step.kind == K::kSend) {
      error("'timeout' applies to expect and starttls steps; a send step does not wait");
      return std::nullopt;
    }
    std::optional<runtime::Millis> timeout;
    if (n->is_string()) timeout = runtime::parse_duration(*n->value<std::string_view>(), &why);
    if (!timeout || timeout->count() <= 0) {
      error(n->is_string() && !timeout
                ? fmt::format("'timeout' is not a valid duration: {}", why)
                : std::string("'timeout' must be a positive duration such as \"5s\""));
      return std::nullopt;
    }
    step.timeout_ms = static_cast<uint64_t>(timeout->count());
  }
  return step;
}

// Reads `steps` or `preset` into out.steps. Returns the preset, if one was
// chosen.
const Preset* parse_dialogue(runtime::TableReader& reader, TcpSettings& out) {
  auto preset_name = reader.get_string("preset");
  if (reader.has("steps") && preset_name) {
    reader.error("preset", "write either 'preset' or 'steps', not both");
    return nullptr;
  }
  if (preset_name) {
    for (const Preset& preset : kPresets) {
      if (preset.name != *preset_name) continue;
      out.steps = preset_steps(preset);
      return &preset;
    }
    std::vector<std::string_view> names;
    for (const Preset& preset : kPresets) names.push_back(preset.name);
    std::string hint = runtime::closest_match(*preset_name, names);
    reader.error("preset", hint.empty() ? fmt::format("unknown preset '{}'; known: {}",
                                                      *preset_name, fmt::join(names, ", "))
                                        : fmt::format("unknown preset '{}'; did you mean '{}'?",
                                                      *preset_name, hint));
    return nullptr;
  }
  if (!reader.has("steps")) return nullptr;
  auto steps = steps_array(reader);
  if (!steps || steps->empty()) {
    reader.error("steps",
                 "'steps' must be a non-empty array of tables such as "
                 "[ { expect = \"^220 \" }, { send = \"QUIT\\r\\n\" } ]");
    return nullptr;
  }
  bool ok = true;
  for (size_t i = 0; i < steps->size(); ++i) {
    auto step = parse_step(*steps->get(i), [&](const std::string& message) {
      reader.error("steps", fmt::format("step {}: {}", i + 1, message));
    });
    if (!step) {
      ok = false;
      continue;
    }
    out.steps.push_back(std::move(*step));
  }
  if (!ok) out.steps.clear();
  return nullptr;
}

// Reads the tls_* keys and builds the SSL_CTX the check's runs share, so that
// an unreadable CA file or key is reported at load time at its line.
void parse_tls(runtime::TableReader& reader, const Preset* preset, TcpSettings& out) {
  auto tls = reader.get_bool("tls");
  bool preset_tls = preset && preset->tls;
  out.tls = tls.value_or(preset_tls);
  auto ca_file = reader.get_string("tls_ca_file");
  auto server_name = reader.get_string("tls_server_name");
  bool insecure = reader.get_bool("tls_insecure").value_or(false);
  auto cert_file = reader.get_string("tls_cert_file");
  auto key_file = reader.get_string("tls_key_file");
  bool starttls = false;
  for (const Step& step : out.steps) {
    out.has_expect |= step.kind == K::kExpect;
    if (step.kind != K::kStartTls) continue;
    if (starttls) reader.error("steps", "only one starttls step");
    starttls = true;
  }
  if (preset_tls && tls == false) {
    reader.error("tls",
                 fmt::format("preset '{}' speaks TLS from the first byte; remove tls = false",
                             preset->name));
  }
  if (out.tls && starttls) {
    reader.error("tls", preset ? fmt::format("preset '{}' upgrades the connection with STARTTLS; "
                                             "remove tls = true or use the preset '{}s'",
                                             preset->name, preset->name)
                               : std::string("a starttls step upgrades a plaintext connection; "
                                             "remove tls = true or the starttls step"));
  }
  if (!out.tls && !starttls) {
    // Most likely a forgotten `tls = true`, with an operator believing the
    // certificate is checked.
    for (std::string_view key :
         {"tls_ca_file", "tls_server_name", "tls_insecure", "tls_cert_file", "tls_key_file"}) {
      if (reader.has(key))
        reader.diagnostics().warning(reader.loc(key),
                                     fmt::format("{}: '{}' has no effect without tls = true or a "
                                                 "starttls step",
                                                 reader.context(), key));
    }
    return;
  }
  if (server_name && server_name->empty())
    reader.error("tls_server_name", "'tls_server_name' must not be empty");
  out.tls_server_name = server_name.value_or(out.host);
  if (key_file && !cert_file) reader.error("tls_key_file", "'tls_key_file' needs 'tls_cert_file'");

  auto context = std::make_shared<TlsContext>(!insecure);
  std::string why;
  if (ca_file ? !context->trust_ca_file(*ca_file, &why) : !context->trust_system_cas(&why))
    reader.error(ca_file ? "tls_ca_file" : "tls", why);
  if (cert_file) {
    if (!context->use_client_cert(*cert_file, &why))
      reader.error("tls_cert_file", why);
    else if (!context->use_client_key(key_file.value_or(*cert_file), &why))
      reader.error(key_file ? "tls_key_file" : "tls_cert_file", why);
  }
  out.tls_context = std::move(context);
}

std::shared_ptr<const ProbeSpec> parse(runtime::TableReader& reader, const std::string& target) {
  size_t errors_before = reader.diagnostics().error_count();
  TcpSettings settings;
  // Keys are read even after a bad target, so that every problem is reported at once.
  bool target_ok = parse_target(reader, target, settings);
  settings.ip_protocol = read_ip_protocol(reader, settings.literal_family, target_ok);
  const Preset* preset = parse_dialogue(reader, settings);
  parse_tls(reader, preset, settings);
  if (reader.diagnostics().error_count() > errors_before) return nullptr;
  auto spec = std::make_shared<TcpSpec>();
  spec->settings = std::make_shared<const TcpSettings>(std::move(settings));
  return spec;
}

std::unique_ptr<Probe> create(const ProbeContext& ctx, const CheckTarget&, const ProbeSpec& spec) {
  // The registry hands back the spec this type's parse() made.
  return std::make_unique<TcpProbe>(ctx.loop, static_cast<const TcpSpec&>(spec).settings);
}

}  // namespace

ProbeType tcp_probe_type() {
  return ProbeType{"tcp",
                   "Connects to host:port, optionally with TLS, STARTTLS and a send/expect "
                   "dialogue",
                   kTcpKeys, &parse, &create};
}

}  // namespace wacht::probes
