#include "probes/tcp_probe.hpp"

#include <fmt/format.h>
#include <netdb.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <exception>
#include <memory>
#include <string>

#include "probes/tls.hpp"
#include "probes/tls_session.hpp"

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
};

namespace {

// Help texts of the probe_* families are blackbox_exporter's, so the families
// match when the exporter merges them with the other probes'.
const MetricDef kDnsLookupTime{"probe_dns_lookup_time_seconds",
                               "Returns the time taken for probe dns lookup in seconds"};
const MetricDef kIpProtocol{"probe_ip_protocol",
                            "Specifies whether probe ip protocol is IP4 or IP6"};
const MetricDef kTlsVersion{"probe_tls_version_info",
                            "Returns the TLS version used or NaN when unknown", "version"};
const MetricDef kPhaseDuration{"wacht_tcp_duration_seconds",
                               "Duration of each phase of a TCP check in seconds.", "phase"};

constexpr std::string_view kIdle = "idle";

enum class IpProtocol { kAny, kIp4, kIp6 };

// Everything a run needs, shared by the probe and its runs so that a run
// never reaches back into a probe that may be gone.
struct TcpSettings {
  std::string host;  // without brackets
  uint16_t port = 0;
  int literal_family = 0;  // AF_INET or AF_INET6 if host is an IP address (no resolution)
  IpProtocol ip_protocol = IpProtocol::kAny;
  bool tls = false;
  std::string tls_server_name;  // what the certificate must match
  std::shared_ptr<const TlsContext> tls_context;
};

struct TcpSpec final : ProbeSpec {
  std::shared_ptr<const TcpSettings> settings;
};

// glibc's wording, which operators know from ping and curl, over libuv's.
std::string resolve_error(int status) {
  switch (status) {
    case UV_EAI_NONAME: return gai_strerror(EAI_NONAME);
    case UV_EAI_AGAIN: return gai_strerror(EAI_AGAIN);
    case UV_EAI_FAIL: return gai_strerror(EAI_FAIL);
    case UV_EAI_NODATA: return gai_strerror(EAI_NODATA);
    case UV_EAI_ADDRFAMILY: return gai_strerror(EAI_ADDRFAMILY);
    default: return uv_strerror(status);
  }
}

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
  std::string_view phase_ = kIdle;
};

// One run: resolve, connect, optionally a TLS handshake. It is not owned by
// the probe, because libuv calls back into it after the probe may be gone
// (the close callback, a resolver request that could not be cancelled): it
// deletes itself once its TCP handle is closed and no resolver request is
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
  void connect_to(const sockaddr* addr);
  void connected(int status);
  void received(ssize_t nread);
  void advance_tls();
  void send(std::string data);
  void sent(int status);
  void finish(bool success, std::string summary);
  void closed();

  void set_phase(std::string_view phase);
  // Adds the duration of the phase that just ended and starts the next.
  double end_phase(std::string_view name);
  std::string tls_success_summary() const;
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
  static void on_closed(uv_handle_t* handle) noexcept;

  // A write in flight; freed by its callback, which libuv runs (with
  // UV_ECANCELED if need be) before the handle's close callback.
  struct WriteRequest {
    uv_write_t req;
    std::string data;
  };

  TcpProbe* probe_;
  DoneCallback done_;
  std::shared_ptr<const TcpSettings> settings_;
  uv_tcp_t tcp_{};
  uv_getaddrinfo_t resolve_req_{};
  uv_connect_t connect_req_{};
  char read_buf_[16 * 1024];
  std::unique_ptr<TlsSession> tls_;
  ProbeResult result_;
  std::string peer_;  // the address connected to, for the summary
  uint64_t start_ns_ = 0;
  uint64_t phase_start_ns_ = 0;
  bool resolving_ = false;  // resolve_req_ is with the resolver
  bool closing_ = false;    // the result is settled and tcp_ is closing
  bool closed_ = false;     // tcp_'s close callback has run
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
  // Cannot fail: without a family no socket is created yet.
  uv_tcp_init(probe_->loop_, &tcp_);
  tcp_.data = this;
  start_ns_ = phase_start_ns_ = uv_hrtime();
  const TcpSettings& s = *settings_;
  if (s.literal_family == AF_INET6) {
    sockaddr_in6 addr{};
    uv_ip6_addr(s.host.c_str(), s.port, &addr);
    result_.add(kDnsLookupTime, end_phase("resolve"));
    connect_to(reinterpret_cast<const sockaddr*>(&addr));
  } else if (s.literal_family == AF_INET) {
    sockaddr_in addr{};
    uv_ip4_addr(s.host.c_str(), s.port, &addr);
    result_.add(kDnsLookupTime, end_phase("resolve"));
    connect_to(reinterpret_cast<const sockaddr*>(&addr));
  } else {
    set_phase("resolving");
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_family = s.ip_protocol == IpProtocol::kIp4   ? AF_INET
                      : s.ip_protocol == IpProtocol::kIp6 ? AF_INET6
                                                          : AF_UNSPEC;
    // With either family allowed, skip a family this host has no address in,
    // rather than connecting to an address it cannot reach.
    if (s.ip_protocol == IpProtocol::kAny) hints.ai_flags = AI_ADDRCONFIG;
    resolve_req_.data = this;
    int rc =
        uv_getaddrinfo(probe_->loop_, &resolve_req_, &on_resolved, s.host.c_str(), nullptr, &hints);
    if (rc < 0) {
      result_.add(kDnsLookupTime, end_phase("resolve"));
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
  if (!closing_) {
    closing_ = true;
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &on_closed);
  }
}

void Connection::resolved(int status, addrinfo* res) {
  resolving_ = false;
  if (closing_) {
    uv_freeaddrinfo(res);
    if (closed_) delete this;
    return;
  }
  result_.add(kDnsLookupTime, end_phase("resolve"));
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

void Connection::connect_to(const sockaddr* addr) {
  result_.add(kIpProtocol, addr->sa_family == AF_INET6 ? 6 : 4);
  peer_ = address_text(addr);
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
  if (!settings_->tls) {
    finish(true, fmt::format("connected to {} in {:.1f} ms", peer_,
                             seconds_between(start_ns_, uv_hrtime()) * 1e3));
    return;
  }
  set_phase("TLS handshake");
  tls_ = std::make_unique<TlsSession>(*settings_->tls_context, settings_->tls_server_name);
  int rc = uv_read_start(stream(), &on_alloc, &on_read);
  if (rc < 0) {
    end_phase("tls");
    finish(false, std::string("TLS: ") + uv_strerror(rc));
    return;
  }
  advance_tls();
}

void Connection::received(ssize_t nread) {
  if (closing_ || nread == 0) return;
  if (nread > 0) {
    tls_->receive({read_buf_, static_cast<size_t>(nread)});
    advance_tls();
    return;
  }
  end_phase("tls");
  finish(false, nread == UV_EOF ? "TLS: connection closed by the server during the handshake"
                                : std::string("TLS: ") + uv_strerror(static_cast<int>(nread)));
}

void Connection::advance_tls() {
  TlsSession::Status status = tls_->handshake();
  if (status == TlsSession::Status::kEstablished) tls_->shutdown();
  // Also sends the alert that tells the server why a handshake failed.
  send(tls_->take_output());
  if (closing_ || status == TlsSession::Status::kHandshaking) return;
  end_phase("tls");
  if (status != TlsSession::Status::kEstablished) {
    finish(false, "TLS: " + tls_->error());
    return;
  }
  result_.add(kTlsVersion, 1, tls_->version());
  finish(true, tls_success_summary());
}

std::string Connection::tls_success_summary() const {
  std::string out = fmt::format("connected to {} in {:.1f} ms, {}, certificate ", peer_,
                                seconds_between(start_ns_, uv_hrtime()) * 1e3, tls_->version());
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

void Connection::send(std::string data) {
  if (data.empty() || closing_) return;
  auto* w = new WriteRequest{{}, std::move(data)};
  w->req.data = this;
  uv_buf_t buf = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  int rc = uv_write(&w->req, stream(), &buf, 1, &on_written);
  if (rc < 0) {
    delete w;
    sent(rc);
  }
}

void Connection::sent(int status) {
  if (closing_ || status >= 0) return;
  end_phase("tls");
  finish(false, std::string("TLS: ") + uv_strerror(status));
}

void Connection::finish(bool success, std::string summary) {
  if (closing_) return;
  result_.success = success;
  result_.state = success ? State::kOk : State::kCritical;
  result_.summary = std::move(summary);
  result_.duration_seconds = seconds_between(start_ns_, uv_hrtime());
  if (tls_) tls_->expiry().add_samples(result_);
  // done fires from the close callback: always asynchronously, and with the
  // handle already gone, so a caller may start the next run or tear down.
  closing_ = true;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &on_closed);
}

void Connection::closed() {
  closed_ = true;
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

void Connection::set_phase(std::string_view phase) {
  if (probe_) probe_->phase_ = phase;
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
    if (!closing_) {
      closing_ = true;
      uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), &on_closed);
    }
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
  *buf = uv_buf_init(c->read_buf_, sizeof c->read_buf_);
}

void Connection::on_read(uv_stream_t* stream, ssize_t nread, const uv_buf_t*) noexcept {
  guarded(stream->data, [&](Connection* c) { c->received(nread); });
}

void Connection::on_written(uv_write_t* req, int status) noexcept {
  auto* w = reinterpret_cast<WriteRequest*>(req);
  void* data = req->data;
  delete w;
  guarded(data, [&](Connection* c) { c->sent(status); });
}

void Connection::on_closed(uv_handle_t* handle) noexcept {
  auto* c = static_cast<Connection*>(handle->data);
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
  return true;
}

// `target_ok`: whether out.literal_family can be checked against the protocol.
void parse_ip_protocol(runtime::TableReader& reader, bool target_ok, TcpSettings& out) {
  auto value = reader.get_string("ip_protocol");
  if (!value) return;
  if (*value == "any") {
    out.ip_protocol = IpProtocol::kAny;
  } else if (*value == "ip4") {
    out.ip_protocol = IpProtocol::kIp4;
  } else if (*value == "ip6") {
    out.ip_protocol = IpProtocol::kIp6;
  } else {
    reader.error(
        "ip_protocol",
        fmt::format("'ip_protocol' must be \"any\", \"ip4\" or \"ip6\", not \"{}\"", *value));
    return;
  }
  int wanted = out.ip_protocol == IpProtocol::kIp4   ? AF_INET
               : out.ip_protocol == IpProtocol::kIp6 ? AF_INET6
                                                     : 0;
  if (target_ok && out.literal_family && wanted && wanted != out.literal_family) {
    reader.error("ip_protocol",
                 fmt::format("ip_protocol = \"{}\" contradicts the target's {} address", *value,
                             out.literal_family == AF_INET ? "IPv4" : "IPv6"));
  }
}

// Reads the tls_* keys and builds the SSL_CTX the check's runs share, so that
// an unreadable CA file or key is reported at load time at its line.
void parse_tls(runtime::TableReader& reader, TcpSettings& out) {
  out.tls = reader.get_bool("tls").value_or(false);
  auto ca_file = reader.get_string("tls_ca_file");
  auto server_name = reader.get_string("tls_server_name");
  bool insecure = reader.get_bool("tls_insecure").value_or(false);
  auto cert_file = reader.get_string("tls_cert_file");
  auto key_file = reader.get_string("tls_key_file");
  if (!out.tls) {
    // Most likely a forgotten `tls = true`, with an operator believing the
    // certificate is checked.
    for (std::string_view key :
         {"tls_ca_file", "tls_server_name", "tls_insecure", "tls_cert_file", "tls_key_file"}) {
      if (reader.has(key))
        reader.diagnostics().warning(
            reader.loc(key),
            fmt::format("{}: '{}' has no effect without tls = true", reader.context(), key));
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
  parse_ip_protocol(reader, target_ok, settings);
  parse_tls(reader, settings);
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
  return ProbeType{"tcp", "Connects to host:port, optionally with a TLS handshake", kTcpKeys,
                   &parse, &create};
}

}  // namespace wacht::probes
