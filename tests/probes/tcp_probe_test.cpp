#include "probes/tcp_probe.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "probes/probe_test_util.hpp"
#include "probes/tls_session.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/toml_reader.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::probes {
namespace {

using test::sample;

using ::testing::AnyOf;
using ::testing::Eq;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A TCP server from tests/support/tcp_server.py on a kernel-chosen port.
struct Server {
  std::unique_ptr<test::ChildProcess> process;
  int port = 0;
};

Server start_server(std::vector<std::string> args) {
  std::vector<std::string> argv = {"/usr/bin/python3", test::support_path("tcp_server.py")};
  argv.insert(argv.end(), args.begin(), args.end());
  Server s;
  s.process = std::make_unique<test::ChildProcess>(argv);
  s.port = std::stoi(s.process->first_line());
  return s;
}

// notAfter as `openssl x509` prints it, parsed independently of the code under test.
double openssl_not_after(const std::string& pem) {
  std::string cmd = "openssl x509 -noout -enddate -in '" + pem + "'";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return -1;
  char line[256] = {};
  bool ok = fgets(line, sizeof line, p) != nullptr;
  pclose(p);
  struct tm tm {};
  if (!ok || !strptime(line, "notAfter=%b %d %H:%M:%S %Y GMT", &tm)) return -1;
  return static_cast<double>(timegm(&tm));
}

class Parser : public test::SpecParser {
 public:
  Parser() : SpecParser(tcp_probe_type()) {}
};

class TcpProbeTest : public test::LoopTest {
 protected:
  static std::string cert(const std::string& name) { return test::certs_dir() + "/" + name; }

  Server tls_server(const std::string& name, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        "--mode", "tls", "--cert", cert(name + ".pem"), "--key", cert(name + ".key")};
    args.insert(args.end(), extra.begin(), extra.end());
    return start_server(args);
  }

  std::unique_ptr<Probe> make(const std::string& target, const std::string& body = "") {
    auto spec = parser_.parse(target, body);
    EXPECT_NE(spec, nullptr) << parser_.diag.render();
    if (!spec) return nullptr;
    ProbeContext ctx;
    ctx.loop = loop();
    return tcp_probe_type().create(ctx, CheckTarget{"test", target, std::chrono::seconds(5)},
                                   *spec);
  }

  // One run to completion; done must fire once and never synchronously.
  ProbeResult run(Probe& probe) {
    int calls = 0;
    ProbeResult result;
    probe.start([&](ProbeResult r) {
      ++calls;
      result = std::move(r);
    });
    EXPECT_EQ(calls, 0) << "done fired synchronously from start()";
    EXPECT_TRUE(run_until([&] { return calls > 0; }));
    drain();
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(probe.phase(), "idle");
    return result;
  }

  Parser parser_;
};

TEST_F(TcpProbeTest, OpenPortIpv4) {
  Server server = start_server({"--mode", "hold"});
  std::string target = "127.0.0.1:" + std::to_string(server.port);
  auto probe = make(target);
  ASSERT_TRUE(probe);
  // Twice: a probe is reused for every run of its check.
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_THAT(r.summary, StartsWith("connected to " + target + " in "));
    EXPECT_THAT(r.summary, HasSubstr(" ms"));
    EXPECT_GT(r.duration_seconds, 0);
    EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
    EXPECT_TRUE(sample(r, "probe_dns_lookup_time_seconds"));
    EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "resolve"));
    EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "connect"));
    EXPECT_FALSE(sample(r, "wacht_tcp_duration_seconds", "tls"));
    EXPECT_FALSE(sample(r, "probe_ssl_earliest_cert_expiry"));
  }
}

TEST_F(TcpProbeTest, OpenPortIpv6) {
  Server server = start_server({"--mode", "hold", "--host", "::1"});
  std::string target = "[::1]:" + std::to_string(server.port);
  auto probe = make(target);
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(r.summary.rfind("connected to " + target + " in ", 0), 0u) << r.summary;
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 6);
}

TEST_F(TcpProbeTest, ClosedPortIsRefused) {
  // A bound socket that does not listen: connecting is refused, and the port
  // stays reserved for the test.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto probe = make("127.0.0.1:" + std::to_string(ntohs(addr.sin_port)));
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  close(fd);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "connection refused");
  EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "connect"));
}

TEST_F(TcpProbeTest, ResolvesLocalhost) {
  Server server = start_server({"--mode", "hold"});
  auto probe = make("localhost:" + std::to_string(server.port), "ip_protocol = \"ip4\"\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  ProbeResult r;
  probe->start([&](ProbeResult res) {
    fired = true;
    r = std::move(res);
  });
  EXPECT_EQ(probe->phase(), "resolving");
  ASSERT_TRUE(run_until([&] { return fired; }));
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, StartsWith("connected to 127.0.0.1:" + std::to_string(server.port)));
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
  auto lookup = sample(r, "probe_dns_lookup_time_seconds");
  ASSERT_TRUE(lookup);
  EXPECT_EQ(lookup, sample(r, "wacht_tcp_duration_seconds", "resolve"));
}

TEST_F(TcpProbeTest, TlsValidWithCaFile) {
  Server server = tls_server("valid");
  auto probe = make("127.0.0.1:" + std::to_string(server.port),
                    "tls = true\ntls_ca_file = \"" + cert("ca.pem") + "\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(r.state, State::kOk);
  EXPECT_THAT(r.summary, HasSubstr("TLS 1.3, certificate expires in 36"));
  double not_after = openssl_not_after(cert("valid.pem"));
  ASSERT_GT(not_after, 0);
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  // The CA outlives the leaf, so the leaf expires first.
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
  EXPECT_EQ(sample(r, "probe_tls_version_info", "TLS 1.3"), 1);
  EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "tls"));
}

TEST_F(TcpProbeTest, TlsSendsHostNameAsSni) {
  // The server aborts handshakes that do not name "localhost" in SNI.
  Server server = tls_server("valid", {"--require-sni", "localhost"});
  std::string port = std::to_string(server.port);
  std::string ca = "tls = true\ntls_ca_file = \"" + cert("ca.pem") + "\"\n";
  {
    auto probe = make("localhost:" + port, "ip_protocol = \"ip4\"\n" + ca);
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
  }
  {
    auto probe = make("127.0.0.1:" + port, "tls_server_name = \"localhost\"\n" + ca);
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
  }
  {
    // SNI carries no IP addresses, so none is sent for an IP target.
    auto probe = make("127.0.0.1:" + port, ca);
    ASSERT_TRUE(probe);
    EXPECT_EQ(run(*probe).summary, "TLS: tlsv1 unrecognized name");
  }
}

TEST_F(TcpProbeTest, TlsUsesSystemCasByDefault) {
  // The test CA is not in the system store, so verification is on and fails.
  Server server = tls_server("valid");
  auto probe = make("127.0.0.1:" + std::to_string(server.port), "tls = true\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "TLS: unable to get local issuer certificate");
}

TEST_F(TcpProbeTest, TlsExpiredFailsAndReportsExpiry) {
  Server server = tls_server("expired");
  auto probe = make("127.0.0.1:" + std::to_string(server.port),
                    "tls = true\ntls_ca_file = \"" + cert("ca.pem") + "\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "TLS: certificate has expired");
  double not_after = openssl_not_after(cert("expired.pem"));
  ASSERT_GT(not_after, 0);
  EXPECT_LT(not_after, static_cast<double>(std::time(nullptr)));
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
  EXPECT_FALSE(sample(r, "probe_tls_version_info", "TLS 1.3"));
}

TEST_F(TcpProbeTest, TlsSelfSignedFailsUnlessInsecure) {
  Server server = tls_server("selfsigned");
  std::string target = "127.0.0.1:" + std::to_string(server.port);
  double not_after = openssl_not_after(cert("selfsigned.pem"));
  {
    auto probe = make(target, "tls = true\n");
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "TLS: self-signed certificate");
    EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  }
  {
    auto probe = make(target, "tls = true\ntls_insecure = true\n");
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_THAT(r.summary,
                HasSubstr(", certificate not verified (self-signed certificate), expires in 36"));
    EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  }
}

TEST_F(TcpProbeTest, TlsHostnameMismatchFails) {
  Server server = tls_server("wronghost");
  std::string port = std::to_string(server.port);
  std::string ca = "tls_ca_file = \"" + cert("ca.pem") + "\"\n";
  {
    auto probe = make("localhost:" + port, "ip_protocol = \"ip4\"\ntls = true\n" + ca);
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "TLS: hostname mismatch");
    EXPECT_TRUE(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"));
  }
  {
    auto probe = make("127.0.0.1:" + port, "tls = true\n" + ca);
    ASSERT_TRUE(probe);
    EXPECT_EQ(run(*probe).summary, "TLS: IP address mismatch");
  }
  {
    // The name the certificate was issued for makes it pass.
    auto probe =
        make("127.0.0.1:" + port, "tls = true\ntls_server_name = \"wrong.example.org\"\n" + ca);
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
  }
}

TEST_F(TcpProbeTest, TlsHandshakeResetByServer) {
  Server server = start_server({"--mode", "reset"});
  auto probe = make("127.0.0.1:" + std::to_string(server.port),
                    "tls = true\ntls_ca_file = \"" + cert("ca.pem") + "\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  // The reset may reach the client while it connects or during the handshake.
  EXPECT_THAT(r.summary, AnyOf(Eq("connection reset by peer"), Eq("TLS: connection reset by peer"),
                               Eq("TLS: connection closed by the server during the handshake")));
}

TEST_F(TcpProbeTest, CancelDuringStalledTlsHandshake) {
  Server server = start_server({"--mode", "stall"});
  auto probe = make("127.0.0.1:" + std::to_string(server.port), "tls = true\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until([&] { return probe->phase() == "TLS handshake"; }));
  probe->cancel();
  EXPECT_EQ(probe->phase(), "idle");
  drain();
  EXPECT_FALSE(fired);
  // The probe is usable again after a cancel.
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until([&] { return probe->phase() == "TLS handshake"; }));
  probe->cancel();
  drain();
  EXPECT_FALSE(fired);
  // TearDown asserts that no handle is left open.
}

TEST_F(TcpProbeTest, DestroyDuringHandshake) {
  Server server = start_server({"--mode", "stall"});
  auto probe = make("127.0.0.1:" + std::to_string(server.port), "tls = true\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until([&] { return probe->phase() == "TLS handshake"; }));
  probe.reset();
  drain();
  EXPECT_FALSE(fired);
}

TEST_F(TcpProbeTest, DestroyDuringResolution) {
  Server server = start_server({"--mode", "hold"});
  auto probe = make("localhost:" + std::to_string(server.port), "ip_protocol = \"ip4\"\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_EQ(probe->phase(), "resolving");
  probe.reset();
  // The resolver request may already be running on the thread pool; the
  // run must still free itself once it returns.
  drain();
  EXPECT_FALSE(fired);
}

TEST_F(TcpProbeTest, DestroyFromDoneCallback) {
  Server server = start_server({"--mode", "hold"});
  auto probe = make("127.0.0.1:" + std::to_string(server.port));
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult& r) {
    fired = true;
    EXPECT_TRUE(r.success);
    probe.reset();
  });
  ASSERT_TRUE(run_until([&] { return fired; }));
  EXPECT_EQ(probe, nullptr);
}

// --- configuration ---

struct ParseCase {
  const char* name;
  std::string target;
  std::string body;  // starts on line 2
  unsigned line;
  std::string message;
};

class TcpProbeParseTest : public ::testing::TestWithParam<ParseCase> {
 protected:
  Parser parser_;
};

TEST_P(TcpProbeParseTest, ReportsAtTheRightLine) {
  const ParseCase& c = GetParam();
  EXPECT_EQ(parser_.parse(c.target, c.body), nullptr);
  const runtime::Diagnostics& diag = parser_.diag;
  ASSERT_EQ(diag.error_count(), 1u) << diag.render();
  const runtime::Diagnostic& d = diag.all().front();
  EXPECT_EQ(d.loc.line, c.line) << diag.render();
  EXPECT_THAT(d.message, HasSubstr(c.message));
  EXPECT_THAT(d.message, StartsWith("check 'test': "));
}

INSTANTIATE_TEST_SUITE_P(
    Invalid, TcpProbeParseTest,
    ::testing::Values(
        ParseCase{"PortTooLarge", "localhost:65536", "", 1,
                  "port must be between 1 and 65535, not 65536"},
        ParseCase{"PortZero", "localhost:0", "tls = false\n", 1,
                  "port must be between 1 and 65535, not 0"},
        ParseCase{"PortNotNumber", "localhost:ssh", "", 1, "port 'ssh' is not a number"},
        ParseCase{"MissingPort", "localhost", "", 1, "missing port"},
        ParseCase{"EmptyPort", "localhost:", "", 1, "missing port"},
        ParseCase{"MissingHost", ":22", "", 1, "missing host"},
        ParseCase{"Url", "https://example.org:443", "", 1, "not a URL"},
        ParseCase{"Ipv6WithoutBrackets", "::1:22", "", 1, "in brackets"},
        ParseCase{"BracketsWithoutIpv6", "[localhost]:22", "", 1, "IPv6 address"},
        ParseCase{"BracketsWithoutPort", "[::1]", "", 1, "missing port"},
        ParseCase{"BadIpProtocol", "localhost:22", "tls = false\nip_protocol = \"ip5\"\n", 3,
                  "'ip_protocol' must be \"any\", \"ip4\" or \"ip6\", not \"ip5\""},
        ParseCase{"IpProtocolContradictsTarget", "127.0.0.1:22", "ip_protocol = \"ip6\"\n", 2,
                  "contradicts the target's IPv4 address"},
        ParseCase{"MissingCaFile", "localhost:443",
                  "tls = true\n\ntls_ca_file = \"/nonexistent/ca.pem\"\n", 4,
                  "cannot load CA file '/nonexistent/ca.pem': No such file or directory"},
        ParseCase{"KeyWithoutCert", "localhost:443", "tls = true\ntls_key_file = \"k.pem\"\n", 3,
                  "'tls_key_file' needs 'tls_cert_file'"},
        ParseCase{"EmptyServerName", "localhost:443", "tls = true\ntls_server_name = \"\"\n", 3,
                  "'tls_server_name' must not be empty"},
        ParseCase{"TlsNotBoolean", "localhost:443", "tls = \"yes\"\n", 2,
                  "'tls' must be true or false"}),
    [](const ::testing::TestParamInfo<ParseCase>& info) { return info.param.name; });

TEST(TcpProbeConfigTest, ValidConfigParses) {
  Parser parser;
  EXPECT_NE(parser.parse("[::1]:22", "ip_protocol = \"ip6\"\n"), nullptr);
  EXPECT_NE(parser.parse("db.example.org:5432", "tls = true\ntls_insecure = true\n"), nullptr);
  EXPECT_TRUE(parser.diag.all().empty()) << parser.diag.render();
}

TEST(TcpProbeConfigTest, ReportsEveryProblem) {
  Parser parser;
  EXPECT_EQ(parser.parse("localhost", "ip_protocol = \"ip5\"\n"), nullptr);
  EXPECT_EQ(parser.diag.error_count(), 2u) << parser.diag.render();
}

TEST(TcpProbeConfigTest, WarnsAboutTlsKeysWithoutTls) {
  Parser parser;
  EXPECT_NE(parser.parse("localhost:443", "tls_insecure = true\n"), nullptr);
  EXPECT_FALSE(parser.diag.has_errors());
  ASSERT_EQ(parser.diag.all().size(), 1u);
  EXPECT_EQ(parser.diag.all().front().severity, runtime::Severity::kWarning);
  EXPECT_EQ(parser.diag.all().front().loc.line, 2u);
  EXPECT_THAT(parser.diag.all().front().message, HasSubstr("'tls_insecure' has no effect"));
}

TEST(TcpProbeConfigTest, EveryKeyIsDocumented) {
  for (const runtime::KeySpec& k : tcp_probe_type().keys) {
    EXPECT_FALSE(k.type.empty()) << k.name;
    EXPECT_GT(k.help.size(), 20u) << k.name;
  }
}

TEST_F(TcpProbeTest, RejectsMismatchedClientKey) {
  auto spec =
      parser_.parse("localhost:443", "tls = true\ntls_cert_file = \"" + cert("client.pem") +
                                         "\"\ntls_key_file = \"" + cert("valid.key") + "\"\n");
  EXPECT_EQ(spec, nullptr);
  const runtime::Diagnostics& diag = parser_.diag;
  ASSERT_EQ(diag.error_count(), 1u) << diag.render();
  EXPECT_EQ(diag.all().front().loc.line, 4u);
  EXPECT_THAT(diag.all().front().message, HasSubstr("does not match the client certificate"));
}

// --- TlsSession on its own, driven over a blocking socket as a STARTTLS
// dialogue would drive it over a stream that is already connected ---

class BlockingPeer {
 public:
  explicit BlockingPeer(int port) : fd_(socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~BlockingPeer() { close(fd_); }
  bool connected() const { return connected_; }

  void send(TlsSession& s) {
    std::string out = s.take_output();
    for (size_t off = 0; off < out.size();) {
      ssize_t n = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Feeds what arrives within 5 s to the session; false on EOF or timeout.
  bool receive(TlsSession& s) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, 5000) != 1) return false;
    char buf[16384];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    s.receive({buf, static_cast<size_t>(n)});
    return true;
  }
  TlsSession::Status handshake(TlsSession& s) {
    TlsSession::Status st;
    while ((st = s.handshake()) == TlsSession::Status::kHandshaking) {
      send(s);
      if (!receive(s)) break;
    }
    send(s);
    return st;
  }
  // Reads until `want` bytes of plaintext arrived or the session ends.
  TlsSession::Status read(TlsSession& s, std::string& out, size_t want) {
    TlsSession::Status st = TlsSession::Status::kEstablished;
    while ((st = s.read(out)) == TlsSession::Status::kEstablished && out.size() < want) {
      send(s);
      if (!receive(s)) break;
    }
    return st;
  }

 private:
  int fd_;
  bool connected_ = false;
};

TEST_F(TcpProbeTest, TlsSessionCarriesData) {
  Server server = tls_server("valid");
  TlsContext ctx(true);
  std::string why;
  ASSERT_TRUE(ctx.trust_ca_file(cert("ca.pem"), &why)) << why;
  BlockingPeer peer(server.port);
  ASSERT_TRUE(peer.connected());
  TlsSession s(ctx, "localhost");
  EXPECT_EQ(s.version(), "");
  ASSERT_EQ(peer.handshake(s), TlsSession::Status::kEstablished) << s.error();
  EXPECT_TRUE(s.verified());
  EXPECT_EQ(s.version(), "TLS 1.3");
  EXPECT_EQ(s.expiry().leaf(), openssl_not_after(cert("valid.pem")));
  ASSERT_TRUE(s.write("EHLO wacht\r\n"));
  peer.send(s);
  std::string echoed;
  EXPECT_EQ(peer.read(s, echoed, 12), TlsSession::Status::kEstablished) << s.error();
  EXPECT_EQ(echoed, "EHLO wacht\r\n");
}

TEST_F(TcpProbeTest, TlsSessionPresentsClientCertificate) {
  Server server = tls_server("valid", {"--client-ca", cert("ca.pem")});
  auto echo = [&](bool with_cert) {
    TlsContext ctx(true);
    std::string why;
    EXPECT_TRUE(ctx.trust_ca_file(cert("ca.pem"), &why)) << why;
    if (with_cert) {
      EXPECT_TRUE(ctx.use_client_cert(cert("client.pem"), &why)) << why;
      EXPECT_TRUE(ctx.use_client_key(cert("client.key"), &why)) << why;
    }
    BlockingPeer peer(server.port);
    TlsSession s(ctx, "127.0.0.1");
    // TLS 1.3: the client finishes before the server checks its certificate,
    // so a refusal shows only when reading.
    EXPECT_EQ(peer.handshake(s), TlsSession::Status::kEstablished) << s.error();
    s.write("ping");
    peer.send(s);
    std::string got;
    peer.read(s, got, 4);
    return std::make_pair(got, s.status() == TlsSession::Status::kFailed ? s.error() : "");
  };
  auto [with, with_error] = echo(true);
  EXPECT_EQ(with, "ping") << with_error;
  auto [without, without_error] = echo(false);
  EXPECT_EQ(without, "");
  EXPECT_THAT(without_error, HasSubstr("certificate required"));
}

// --- dialogues ---

class TcpDialogueTest : public TcpProbeTest {
 protected:
  void TearDown() override {
    TcpProbeTest::TearDown();
    if (!sink_dir_.empty()) std::filesystem::remove_all(sink_dir_);
  }

  // A server from tests/support/dialogue_server.py.
  Server dialogue_server(std::vector<std::string> args, const std::string& cert_name = "") {
    std::vector<std::string> argv = {"/usr/bin/python3", test::support_path("dialogue_server.py")};
    argv.insert(argv.end(), args.begin(), args.end());
    if (!cert_name.empty()) {
      for (const std::string& a : {std::string("--cert"), cert(cert_name + ".pem"),
                                   std::string("--key"), cert(cert_name + ".key")})
        argv.push_back(a);
    }
    Server s;
    s.process = std::make_unique<test::ChildProcess>(argv);
    s.port = std::stoi(s.process->first_line());
    return s;
  }

  // The aiosmtpd sink from tests/support/smtp_sink.py; `tls_args` e.g.
  // {"--tls", cert, key}.
  Server smtp_sink(std::vector<std::string> tls_args = {}) {
    sink_dir_ = test::make_temp_dir();
    std::vector<std::string> argv = {"/usr/bin/python3", test::support_path("smtp_sink.py"),
                                     "--dir", sink_dir_};
    argv.insert(argv.end(), tls_args.begin(), tls_args.end());
    Server s;
    s.process = std::make_unique<test::ChildProcess>(argv);
    s.port = std::stoi(s.process->first_line());
    return s;
  }

  std::string ca() { return "tls_ca_file = \"" + cert("ca.pem") + "\"\n"; }
  static std::string local(const Server& s) { return "127.0.0.1:" + std::to_string(s.port); }

  std::string sink_dir_;
};

TEST_F(TcpDialogueTest, SmtpPresetUpgradesWithStartTls) {
  Server sink = smtp_sink({"--tls", cert("valid.pem"), cert("valid.key")});
  auto probe = make(local(sink), "preset = \"smtp\"\n" + ca());
  ASSERT_TRUE(probe);
  // Twice: the probe is reused for every run of its check.
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_THAT(r.summary, StartsWith("connected to " + local(sink) + " in "));
    EXPECT_THAT(r.summary, HasSubstr(" ms, 10 steps passed, TLS 1.3, certificate expires in 36"));
    double not_after = openssl_not_after(cert("valid.pem"));
    ASSERT_GT(not_after, 0);
    EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
    EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
    EXPECT_EQ(sample(r, "probe_tls_version_info", "TLS 1.3"), 1);
    EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 10);
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
    EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "tls"));
    EXPECT_TRUE(sample(r, "wacht_tcp_duration_seconds", "dialogue"));
  }
}

TEST_F(TcpDialogueTest, SmtpPresetReportsExpiringCertificate) {
  Server sink = smtp_sink({"--tls", cert("expiring.pem"), cert("expiring.key")});
  auto probe = make(local(sink), "preset = \"smtp\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, AnyOf(HasSubstr("certificate expires in 2 days"),
                               HasSubstr("certificate expires in 3 days")));
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"),
            openssl_not_after(cert("expiring.pem")));
}

TEST_F(TcpDialogueTest, StartTlsVerifiesTheCertificate) {
  Server sink = smtp_sink({"--tls", cert("expired.pem"), cert("expired.key")});
  auto probe = make(local(sink), "preset = \"smtp\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "step 6 (starttls): TLS: certificate has expired");
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"),
            openssl_not_after(cert("expired.pem")));
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 6);
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
}

TEST_F(TcpDialogueTest, SmtpPresetFailsAtOnceWithoutStartTls) {
  Server sink = smtp_sink();
  auto probe = make(local(sink), "preset = \"smtp\"\n" + ca());
  ASSERT_TRUE(probe);
  // No step timeout: only the fail pattern ends this run before the watchdog.
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.summary, StartsWith("step 3 (expect \"^250[- ]STARTTLS\"): got \"250-sink.test"
                                    "\\r\\n"));
  EXPECT_THAT(r.summary, HasSubstr("\\r\\n250 HELP\\r\\n\" (matched fail /^(?:[45]\\d\\d|250) /)"));
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 3);
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
}

TEST_F(TcpDialogueTest, SmtpPlainPreset) {
  Server sink = smtp_sink();
  auto probe = make(local(sink), "preset = \"smtp-plain\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr(" ms, 5 steps passed"));
  EXPECT_FALSE(sample(r, "probe_ssl_earliest_cert_expiry"));
}

TEST_F(TcpDialogueTest, StepsFromTheIssueAgainstTheSink) {
  Server sink = smtp_sink({"--tls", cert("valid.pem"), cert("valid.key")});
  auto probe = make(local(sink),
                    R"(steps = [ { expect = "^220 " }, { send = "EHLO wacht.example.org\r\n" }, )"
                    R"({ expect = "250[- ]STARTTLS" }, { send = "STARTTLS\r\n" }, )"
                    R"({ expect = "^220" }, { starttls = true }, { send = "QUIT\r\n" } ])"
                    "\n" +
                        ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("7 steps passed, TLS 1.3, certificate expires in"));
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 7);
}

TEST_F(TcpDialogueTest, ImplicitTlsWithSteps) {
  Server sink = smtp_sink({"--smtps", cert("valid.pem"), cert("valid.key")});
  auto probe = make(local(sink), "preset = \"smtps\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("5 steps passed, TLS 1.3, certificate expires in 36"));
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"),
            openssl_not_after(cert("valid.pem")));
}

TEST_F(TcpDialogueTest, StepTimeoutNamesTheStepAndWhatArrived) {
  Server server = dialogue_server({"--mode", "smtp-stall"});
  auto probe = make(local(server),
                    R"(steps = [ { expect = "^220 " }, { send = "EHLO wacht.example.org\r\n" }, )"
                    R"({ expect = "250[- ]STARTTLS", timeout = "300ms" } ])"
                    "\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  ProbeResult r;
  probe->start([&](ProbeResult res) {
    fired = true;
    r = std::move(res);
  });
  // What the scheduler would quote if the check's timeout came first.
  ASSERT_TRUE(run_until([&] { return probe->phase().find("got") != std::string_view::npos; }));
  EXPECT_EQ(probe->phase(),
            "step 3: waiting for /250[- ]STARTTLS/, got \"250-mail.example.org\\r\\n250 "
            "8BITMIME\\r\\n\"");
  ASSERT_TRUE(run_until([&] { return fired; }));
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary,
            "step 3 (expect \"250[- ]STARTTLS\"): got \"250-mail.example.org\\r\\n250 "
            "8BITMIME\\r\\n\" (timeout after 300ms)");
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 3);
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
}

TEST_F(TcpDialogueTest, GarbageIsQuotedPrintableAndShort) {
  Server server = dialogue_server({"--mode", "garbage"});
  auto probe = make(local(server), "preset = \"smtp-plain\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  // The server sends 1000 bytes and closes.
  EXPECT_THAT(r.summary, StartsWith("step 1 (expect \"^220 \"): got \"\\x0b0U"));
  EXPECT_THAT(r.summary, HasSubstr("...\" (connection closed)"));
  EXPECT_LT(r.summary.size(), 300u);
  for (char c : r.summary) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << r.summary;
}

TEST_F(TcpDialogueTest, SshPreset) {
  Server server = dialogue_server({"--mode", "ssh"});
  auto probe = make(local(server), "preset = \"ssh\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr(" ms, 1 step passed"));
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 1);
}

TEST_F(TcpDialogueTest, SshPresetRejectsProtocolOne) {
  Server server = dialogue_server({"--mode", "banner", "--banner", "SSH-1.5-ancient\\r\\n"});
  auto probe = make(local(server), "preset = \"ssh\"\n");
  ASSERT_TRUE(probe);
  EXPECT_EQ(run(*probe).summary,
            "step 1 (expect \"^SSH-(?:2\\.0|1\\.99)-\"): got \"SSH-1.5-ancient\\r\\n\" "
            "(connection closed)");
}

TEST_F(TcpDialogueTest, Pop3Presets) {
  Server server = dialogue_server({"--mode", "pop3"}, "valid");
  for (std::string preset : {"pop3", "pop3-plain"}) {
    auto probe = make(local(server), "preset = \"" + preset + "\"\n" + ca());
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << preset << ": " << r.summary;
    EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry").has_value(), preset == "pop3") << preset;
  }
}

TEST_F(TcpDialogueTest, ImapPresets) {
  Server server = dialogue_server({"--mode", "imap"}, "valid");
  for (std::string preset : {"imap", "imap-plain"}) {
    auto probe = make(local(server), "preset = \"" + preset + "\"\n" + ca());
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << preset << ": " << r.summary;
    EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry").has_value(), preset == "imap") << preset;
  }
}

TEST_F(TcpDialogueTest, Pop3BannerMismatch) {
  Server server = dialogue_server({"--mode", "banner", "--banner", "-ERR go away\\r\\n"});
  auto probe = make(local(server), "preset = \"pop3-plain\"\n");
  ASSERT_TRUE(probe);
  EXPECT_EQ(run(*probe).summary,
            "step 1 (expect \"^\\+OK\"): got \"-ERR go away\\r\\n\" (matched fail /^-ERR/)");
}

TEST_F(TcpDialogueTest, LdapStartTls) {
  Server server = dialogue_server({"--mode", "ldap"}, "valid");
  auto probe = make(local(server), "preset = \"ldap\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("4 steps passed, TLS 1.3, certificate expires in 36"));
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"),
            openssl_not_after(cert("valid.pem")));
}

TEST_F(TcpDialogueTest, LdapStartTlsRefused) {
  Server server = dialogue_server({"--mode", "ldap", "--refuse"}, "valid");
  auto probe = make(local(server), "preset = \"ldap\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.summary, StartsWith("step 2 (expect \"\\x30[\\x00-\\x7f]\\x02"));
  // protocolError (2) in the resultCode.
  EXPECT_THAT(r.summary,
              HasSubstr("got \"0\\x0c\\x02\\x01\\x01x\\x07\\n\\x01\\x02\\x04\\x00\\x04\\x00\" "
                        "(matched fail"));
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
}

TEST_F(TcpDialogueTest, LdapsPreset) {
  Server server = tls_server("valid");
  auto probe = make(local(server), "preset = \"ldaps\"\n" + ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("TLS 1.3, certificate expires in 36"));
}

TEST_F(TcpDialogueTest, CancelWhileWaitingForAnExpect) {
  Server server = dialogue_server({"--mode", "smtp-stall"});
  // The stall server answers EHLO without STARTTLS, which the smtp preset's
  // fail pattern catches at once: a dialogue that waits instead.
  auto probe = make(local(server), R"(steps = [ { expect = "^220 " }, { send = "EHLO x\r\n" }, )"
                                   R"({ expect = "STARTTLS" } ])"
                                   "\n");
  ASSERT_TRUE(probe);
  auto stalled = [&] { return probe->phase().starts_with("step 3: waiting for"); };
  bool fired = false;
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until(stalled));
  probe->cancel();
  EXPECT_EQ(probe->phase(), "idle");
  drain();
  EXPECT_FALSE(fired);
  // Usable again, then destroyed mid-dialogue.
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until(stalled));
  probe.reset();
  drain();
  EXPECT_FALSE(fired);
}

TEST_F(TcpDialogueTest, DestroyDuringStartTlsHandshake) {
  Server server = dialogue_server({"--mode", "starttls-stall"});
  auto probe = make(local(server), "preset = \"smtp\"\n" + ca());
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult&) { fired = true; });
  ASSERT_TRUE(run_until([&] { return probe->phase() == "step 6: TLS handshake"; }));
  probe.reset();
  drain();
  EXPECT_FALSE(fired);
}

TEST_F(TcpDialogueTest, StartTlsStepTimeout) {
  Server server = dialogue_server({"--mode", "starttls-stall"});
  auto probe =
      make(local(server), R"(steps = [ { expect = "^220 " }, { send = "EHLO x\r\n" }, )"
                          R"({ expect = "STARTTLS" }, { send = "STARTTLS\r\n" }, )"
                          R"({ expect = "go ahead" }, { starttls = true, timeout = "200ms" } ])"
                          "\n" +
                              ca());
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "step 6 (starttls): timeout after 200ms");
  EXPECT_EQ(sample(r, "wacht_tcp_dialogue_step"), 6);
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
}

struct DialogueParseCase {
  const char* name;
  std::string body;  // starts on line 2
  unsigned line;
  std::string message;
};

class TcpDialogueParseTest : public ::testing::TestWithParam<DialogueParseCase> {
 protected:
  Parser parser_;
};

TEST_P(TcpDialogueParseTest, ReportsAtTheRightLine) {
  const DialogueParseCase& c = GetParam();
  EXPECT_EQ(parser_.parse("mail.example.org:25", c.body), nullptr);
  const runtime::Diagnostics& diag = parser_.diag;
  ASSERT_EQ(diag.error_count(), 1u) << diag.render();
  const runtime::Diagnostic& d = diag.all().front();
  EXPECT_EQ(d.loc.line, c.line) << diag.render();
  EXPECT_THAT(d.message, HasSubstr(c.message));
  EXPECT_THAT(d.message, StartsWith("check 'test': "));
}

INSTANTIATE_TEST_SUITE_P(
    Invalid, TcpDialogueParseTest,
    ::testing::Values(
        DialogueParseCase{"BadRegex", "tls = false\nsteps = [ { expect = \"^(220\" } ]\n", 3,
                          "step 1: invalid expect pattern: missing closing parenthesis"},
        DialogueParseCase{"BadFailRegex",
                          "steps = [ { send = \"x\" }, { expect = \"a\", fail = \"[\" } ]\n", 2,
                          "step 2: invalid fail pattern: missing terminating ]"},
        DialogueParseCase{"SendAndExpect",
                          "\nsteps = [ { expect = \"^220\" }, { send = \"EHLO\", expect = \"x\" "
                          "} ]\n",
                          3, "step 2: has both 'expect' and 'send'; write one action per step"},
        DialogueParseCase{"NoAction", "steps = [ { timeout = \"1s\" } ]\n", 2,
                          "step 1: needs one of send, send_hex, expect or starttls"},
        DialogueParseCase{"UnknownStepKey", "steps = [ { exepct = \"220\" } ]\n", 2,
                          "step 1: unknown key 'exepct'; did you mean 'expect'?"},
        DialogueParseCase{"NotATable", "steps = [ \"EHLO\" ]\n", 2, "step 1: must be a table"},
        DialogueParseCase{"NotAnArray", "steps = \"EHLO\"\n", 2,
                          "'steps' must be a non-empty array of tables"},
        DialogueParseCase{"Empty", "steps = []\n", 2,
                          "'steps' must be a non-empty array of tables"},
        DialogueParseCase{"StartTlsFalse", "steps = [ { starttls = false } ]\n", 2,
                          "step 1: 'starttls' must be true"},
        DialogueParseCase{"TimeoutOnSend", "steps = [ { send = \"x\", timeout = \"1s\" } ]\n", 2,
                          "step 1: 'timeout' applies to expect and starttls steps"},
        DialogueParseCase{"BadTimeout", "steps = [ { expect = \"x\", timeout = \"soon\" } ]\n", 2,
                          "step 1: 'timeout' is not a valid duration"},
        DialogueParseCase{"FailWithoutExpect", "steps = [ { send = \"x\", fail = \"y\" } ]\n", 2,
                          "step 1: 'fail' belongs to an expect step"},
        DialogueParseCase{"BadHex", "steps = [ { send_hex = \"30 0\" } ]\n", 2,
                          "step 1: 'send_hex' must be pairs of hex digits"},
        DialogueParseCase{"PresetTypo", "\npreset = \"imapp\"\n", 3,
                          "unknown preset 'imapp'; did you mean 'imap'?"},
        DialogueParseCase{"UnknownPreset", "preset = \"http\"\n", 2,
                          "unknown preset 'http'; known: smtp, smtp-plain, smtps, imap"},
        DialogueParseCase{"PresetAndSteps", "steps = [ { expect = \"x\" } ]\npreset = \"ssh\"\n", 3,
                          "write either 'preset' or 'steps', not both"},
        DialogueParseCase{"StartTlsUnderTls",
                          "tls = true\ntls_insecure = true\npreset = \"smtp\"\n", 2,
                          "preset 'smtp' upgrades the connection with STARTTLS; remove tls = "
                          "true or use the preset 'smtps'"},
        DialogueParseCase{"TwoStartTls",
                          "tls_insecure = true\nsteps = [ { starttls = true }, { starttls = true "
                          "} ]\n",
                          3, "only one starttls step"},
        DialogueParseCase{"ImplicitPresetWithoutTls", "tls = false\npreset = \"ldaps\"\n", 2,
                          "preset 'ldaps' speaks TLS from the first byte; remove tls = false"}),
    [](const ::testing::TestParamInfo<DialogueParseCase>& info) { return info.param.name; });

TEST(TcpDialogueConfigTest, EveryPresetParses) {
  for (std::string preset : {"smtp", "smtp-plain", "smtps", "imap", "imap-plain", "imaps", "pop3",
                             "pop3-plain", "pop3s", "ssh", "ldap", "ldaps"}) {
    Parser parser;
    EXPECT_NE(parser.parse("mail.example.org:25", "preset = \"" + preset + "\"\n"), nullptr)
        << preset << ": " << parser.diag.render();
    EXPECT_TRUE(parser.diag.all().empty()) << parser.diag.render();
  }
}

TEST(TcpDialogueConfigTest, TlsKeysApplyToStartTls) {
  Parser parser;
  EXPECT_NE(parser.parse("mail.example.org:25",
                         "tls_insecure = true\nsteps = [ { send_hex = \"30 05\" }, "
                         "{ starttls = true, timeout = \"2s\" } ]\n"),
            nullptr)
      << parser.diag.render();
  // No "has no effect without tls = true" warning.
  EXPECT_TRUE(parser.diag.all().empty()) << parser.diag.render();
}

}  // namespace
}  // namespace wacht::probes
