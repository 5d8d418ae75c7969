#include "probes/dns_probe.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probes/probe_test_util.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/toml_reader.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::probes {
namespace {

using test::sample;

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

// The zone every test server serves; the expectations below refer to it.
constexpr const char* kZone = R"(
example.org. 3600 IN SOA ns1.example.org. hostmaster.example.org. 2024051501 7200 3600 1209600 300
example.org. 3600 IN NS ns1.example.org.
ns1.example.org. 3600 IN A 198.51.100.53
example.org. 3600 IN MX 10 mail.example.org.
example.org. 3600 IN MX 20 mail2.example.org.
example.org. 3600 IN TXT "v=spf1 -all"
txt.example.org. 300 IN TXT "two words" "second"
www.example.org. 300 IN A 198.51.100.7
www.example.org. 300 IN AAAA 2001:db8::7
many.example.org. 300 IN A 198.51.100.1
many.example.org. 300 IN A 198.51.100.2
alias.example.org. 300 IN CNAME www.example.org.
_sip._tcp.example.org. 300 IN SRV 10 5 5060 sip.example.org.
7.100.51.198.in-addr.arpa. 300 IN PTR www.example.org.
7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR www.example.org.
)";

// A DNS server from tests/support/dns_server.py, UDP and TCP on one
// kernel-chosen port of 127.0.0.1 (or ::1).
struct Server {
  std::unique_ptr<test::ChildProcess> process;
  int port = 0;
  std::string address;  // for the 'server' key

  // The queries it received, one "query NAME TYPE rd=N tcp=N" line each.
  std::string log() const { return process->stderr_text(); }
};

Server start_server(const std::string& mode = "zone", const std::string& host = "127.0.0.1") {
  std::vector<std::string> argv = {"/usr/bin/python3", test::support_path("dns_server.py"),
                                   "--mode",           mode,
                                   "--host",           host,
                                   "--zone",           kZone};
  Server s;
  s.process = std::make_unique<test::ChildProcess>(argv);
  s.port = std::stoi(s.process->first_line());
  s.address = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
              std::to_string(s.port);
  return s;
}

// A loopback port nothing listens on, over UDP and TCP: a bound but not
// listening TCP socket keeps the port reserved for the test, and with no UDP
// socket on it, a datagram there draws ICMP port unreachable.
class ClosedPort {
 public:
  ClosedPort() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) return;
    socklen_t len = sizeof addr;
    if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
      port_ = ntohs(addr.sin_port);
  }
  ~ClosedPort() {
    if (fd_ >= 0) close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

class Parser : public test::SpecParser {
 public:
  Parser() : SpecParser(dns_probe_type()) {}
};

class DnsProbeTest : public test::LoopTest {
 protected:
  std::unique_ptr<Probe> make(const std::string& target, const std::string& body,
                              std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    Parser parser;
    auto spec = parser.parse(target, body);
    EXPECT_NE(spec, nullptr) << parser.diag.render();
    if (!spec) return nullptr;
    ProbeContext ctx;
    ctx.loop = loop();
    return dns_probe_type().create(ctx, CheckTarget{"test", target, timeout}, *spec);
  }

  std::unique_ptr<Probe> make(const Server& server, const std::string& target,
                              const std::string& body = "") {
    return make(target, "server = \"" + server.address + "\"\n" + body);
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
    // Nothing of the run is left watching or waiting.
    EXPECT_EQ(uv_loop_alive(loop()), 0);
    return result;
  }

  // The errors parsing reports, rendered.
  static std::string parse_errors(const std::string& target, const std::string& body) {
    Parser parser;
    auto spec = parser.parse(target, body);
    EXPECT_EQ(spec, nullptr) << "expected a configuration error";
    return parser.diag.render();
  }
};

// The part of a success summary after "NOERROR in N ms".
std::string answers_of(const ProbeResult& r) {
  size_t at = r.summary.find(" ms");
  return at == std::string::npos ? r.summary : r.summary.substr(at + 3);
}

TEST_F(DnsProbeTest, RightAnswer) {
  Server server = start_server();
  auto probe =
      make(server, "www.example.org", "answers_must_match = [\"^A 198\\\\.51\\\\.100\\\\.7$\"]\n");
  ASSERT_TRUE(probe);
  // Twice: a probe is reused for every run of its check.
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_THAT(r.summary, MatchesRegex("NOERROR in [0-9]+ ms: A 198\\.51\\.100\\.7"));
    EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 1);
    EXPECT_EQ(sample(r, "probe_dns_answer_rrs"), 1);
    EXPECT_EQ(sample(r, "probe_dns_authority_rrs"), 1);   // the NS
    EXPECT_EQ(sample(r, "probe_dns_additional_rrs"), 1);  // its address
    EXPECT_FALSE(sample(r, "probe_dns_serial"));
    auto lookup = sample(r, "probe_dns_lookup_time_seconds");
    ASSERT_TRUE(lookup);
    EXPECT_GT(*lookup, 0);
    EXPECT_LE(*lookup, r.duration_seconds);
  }
  EXPECT_THAT(server.log(), HasSubstr("query www.example.org. A rd=1 tcp=0"));
}

TEST_F(DnsProbeTest, WrongAnswerFailsMustMatch) {
  Server server = start_server();
  auto probe =
      make(server, "www.example.org", "answers_must_match = [\"^A 198\\\\.51\\\\.100\\\\.8$\"]\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "answer \"A 198.51.100.7\" does not match \"^A 198\\.51\\.100\\.8$\"");
  // The query itself worked; its content did not satisfy the check.
  EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 1);
}

TEST_F(DnsProbeTest, MustMatchNeedsOneMatchingAnswerPerPattern) {
  Server server = start_server();
  {
    auto probe = make(server, "many.example.org",
                      "answers_must_match = [\"198\\\\.51\\\\.100\\\\.2$\", \"^A \"]\n");
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(answers_of(r), ": A 198.51.100.1, A 198.51.100.2");
  }
  {
    auto probe = make(server, "many.example.org", "answers_must_match = [\"\\\\.3$\"]\n");
    ASSERT_TRUE(probe);
    EXPECT_EQ(run(*probe).summary,
              "none of 2 answers matches \"\\.3$\": A 198.51.100.1, A 198.51.100.2");
  }
  {
    // NOERROR without records of the type asked.
    auto probe = make(server, "www.example.org",
                      "query_type = \"MX\"\n"
                      "answers_must_match = [\"^MX\"]\n");
    ASSERT_TRUE(probe);
    EXPECT_EQ(run(*probe).summary, "no answers; expected one matching \"^MX\"");
  }
}

TEST_F(DnsProbeTest, MustNotMatch) {
  Server server = start_server();
  auto probe =
      make(server, "many.example.org", "answers_must_not_match = [\"^AAAA\", \"\\\\.2$\"]\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "answer \"A 198.51.100.2\" matches \"\\.2$\"");
}

TEST_F(DnsProbeTest, NxdomainFailsByDefault) {
  Server server = start_server();
  auto probe = make(server, "nope.example.org");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "NXDOMAIN for nope.example.org A (expected NOERROR)");
  EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 1);
  EXPECT_EQ(sample(r, "probe_dns_answer_rrs"), 0);
  EXPECT_EQ(sample(r, "probe_dns_authority_rrs"), 1);  // the SOA
  // blackbox reports the serial of an SOA answer only, not of the authority section.
  EXPECT_FALSE(sample(r, "probe_dns_serial"));
}

TEST_F(DnsProbeTest, NxdomainAcceptedWhenValid) {
  Server server = start_server();
  auto probe = make(server, "nope.example.org", "valid_rcodes = [\"NOERROR\", \"nxdomain\"]\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, MatchesRegex("NXDOMAIN in [0-9]+ ms, no answers"));

  // And an existing name then fails when only NXDOMAIN is valid.
  auto strict = make(server, "www.example.org", "valid_rcodes = [\"NXDOMAIN\"]\n");
  ASSERT_TRUE(strict);
  EXPECT_EQ(run(*strict).summary, "NOERROR for www.example.org A (expected NXDOMAIN)");
}

TEST_F(DnsProbeTest, SoaSerial) {
  Server server = start_server();
  auto probe = make(server, "example.org", "query_type = \"SOA\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_dns_serial"), 2024051501);
  EXPECT_EQ(answers_of(r),
            ": SOA ns1.example.org. hostmaster.example.org. 2024051501 7200 3600 1209600 300");
}

// The canonical text of each record type, as documented in the key table.
TEST_F(DnsProbeTest, RecordTypes) {
  Server server = start_server();
  struct Case {
    std::string target, type, answers, query;
  };
  const Case cases[] = {
      {"example.org", "MX", ": MX 10 mail.example.org., MX 20 mail2.example.org.",
       "example.org. MX"},
      {"example.org", "TXT", ": TXT \"v=spf1 -all\"", "example.org. TXT"},
      {"txt.example.org", "TXT", ": TXT \"two words\" \"second\"", "txt.example.org. TXT"},
      {"_sip._tcp.example.org", "SRV", ": SRV 10 5 5060 sip.example.org.",
       "_sip._tcp.example.org. SRV"},
      {"www.example.org", "AAAA", ": AAAA 2001:db8::7", "www.example.org. AAAA"},
      {"example.org", "NS", ": NS ns1.example.org.", "example.org. NS"},
      {"alias.example.org", "CNAME", ": CNAME www.example.org.", "alias.example.org. CNAME"},
      // A CNAME chain answers with the alias and its target.
      {"alias.example.org", "A", ": CNAME www.example.org., A 198.51.100.7",
       "alias.example.org. A"},
      // An address given for PTR is reversed; a name is asked as is.
      {"198.51.100.7", "ptr", ": PTR www.example.org.", "7.100.51.198.in-addr.arpa. PTR"},
      {"2001:db8::7", "PTR", ": PTR www.example.org.",
       "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. PTR"},
      {"7.100.51.198.in-addr.arpa.", "PTR", ": PTR www.example.org.",
       "7.100.51.198.in-addr.arpa. PTR"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.target + " " + c.type);
    auto probe = make(server, c.target, "query_type = \"" + c.type + "\"\n");
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(answers_of(r), c.answers);
    EXPECT_THAT(server.log(), HasSubstr("query " + c.query + " "));
  }
}

TEST_F(DnsProbeTest, TcpTransportAndNoRecursion) {
  Server server = start_server();
  auto probe = make(server, "www.example.org",
                    "transport = \"tcp\"\nrecursion_desired = false\n"
                    "answers_must_match = [\"^A 198\\\\.51\\\\.100\\\\.7$\"]\n");
  ASSERT_TRUE(probe);
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run(*probe);
    EXPECT_TRUE(r.success) << r.summary;
  }
  EXPECT_THAT(server.log(), HasSubstr("query www.example.org. A rd=0 tcp=1"));
  EXPECT_THAT(server.log(), Not(HasSubstr("tcp=0")));
}

TEST_F(DnsProbeTest, Ipv6Server) {
  Server server = start_server("zone", "::1");
  auto probe = make(server, "www.example.org", "query_type = \"AAAA\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(answers_of(r), ": AAAA 2001:db8::7");
}

TEST_F(DnsProbeTest, SilentServerCancelHonoured) {
  Server server = start_server("silent");
  for (std::string transport : {"udp", "tcp"}) {
    SCOPED_TRACE(transport);
    auto probe = make(server, "www.example.org", "transport = \"" + transport + "\"\n");
    ASSERT_TRUE(probe);
    bool fired = false;
    probe->start([&](const ProbeResult&) { fired = true; });
    EXPECT_EQ(probe->phase(), "waiting for an answer from " + server.address);
    const std::string asked =
        "query www.example.org. A rd=1 tcp=" + std::string(transport == "tcp" ? "1" : "0");
    ASSERT_TRUE(run_until([&] { return server.log().find(asked) != std::string::npos; }));
    probe->cancel();
    EXPECT_EQ(probe->phase(), "idle");
    drain();
    // Cancelled: no socket, poll or timer is left active, so done can never fire.
    EXPECT_EQ(uv_loop_alive(loop()), 0);
    EXPECT_FALSE(fired);
  }
}

TEST_F(DnsProbeTest, DestroyedMidQuery) {
  Server server = start_server("silent");
  for (std::string transport : {"udp", "tcp"}) {
    SCOPED_TRACE(transport);
    auto probe = make(server, "www.example.org", "transport = \"" + transport + "\"\n");
    ASSERT_TRUE(probe);
    bool fired = false;
    probe->start([&](const ProbeResult&) { fired = true; });
    const std::string asked = "tcp=" + std::string(transport == "tcp" ? "1" : "0");
    ASSERT_TRUE(run_until([&] { return server.log().find(asked) != std::string::npos; }));
    probe.reset();
    drain();
    EXPECT_EQ(uv_loop_alive(loop()), 0);
    EXPECT_FALSE(fired);
  }
  // TearDown checks that every handle was closed.
}

TEST_F(DnsProbeTest, DestroyedFromDone) {
  Server server = start_server();
  auto probe = make(server, "www.example.org");
  ASSERT_TRUE(probe);
  bool fired = false;
  probe->start([&](const ProbeResult& r) {
    fired = true;
    EXPECT_TRUE(r.success) << r.summary;
    probe.reset();
  });
  ASSERT_TRUE(run_until([&] { return fired; }));
  EXPECT_FALSE(probe);
}

TEST_F(DnsProbeTest, SilentServerTimesOutWithinCheckTimeout) {
  Server server = start_server("silent");
  auto probe = make("www.example.org", "server = \"" + server.address + "\"\n",
                    std::chrono::milliseconds(400));
  ASSERT_TRUE(probe);
  const double started = test::now_seconds();
  ProbeResult r = run(*probe);
  const double took = test::now_seconds() - started;
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.timed_out);
  EXPECT_THAT(r.summary, MatchesRegex("no answer from 127\\.0\\.0\\.1:[0-9]+ within [0-9]+ ms"));
  EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 0);
  EXPECT_FALSE(sample(r, "probe_dns_answer_rrs"));
  // Before the scheduler's timeout, so the probe's own summary is the one reported.
  EXPECT_LT(took, 0.4);
  EXPECT_GT(took, 0.2);
}

TEST_F(DnsProbeTest, ClosedPortIsRefused) {
  ClosedPort closed;
  ASSERT_GT(closed.port(), 0);
  const std::string address = "127.0.0.1:" + std::to_string(closed.port());
  for (std::string transport : {"udp", "tcp"}) {
    SCOPED_TRACE(transport);
    auto probe = make("www.example.org",
                      "server = \"" + address + "\"\ntransport = \"" + transport + "\"\n");
    ASSERT_TRUE(probe);
    ProbeResult r = run(*probe);
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.state, State::kCritical);
    EXPECT_EQ(r.summary, "connection refused by " + address);
    EXPECT_FALSE(r.timed_out);
    EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 0);
  }
}

TEST_F(DnsProbeTest, MalformedRepliesFailWithoutCrashing) {
  struct Case {
    std::string mode, summary;
  };
  const Case cases[] = {
      {"truncated", "answer record 1 of 1"},
      {"loop", "bad owner name of answer record 1 of 1"},
      {"badrdata", "malformed A data of answer record 1 of 1"},
  };
  for (const auto& c : cases) {
    Server server = start_server(c.mode);
    for (std::string transport : {"udp", "tcp"}) {
      SCOPED_TRACE(c.mode + " over " + transport);
      auto probe = make(server, "www.example.org", "transport = \"" + transport + "\"\n");
      ASSERT_TRUE(probe);
      ProbeResult r = run(*probe);
      EXPECT_FALSE(r.success);
      EXPECT_THAT(r.summary, HasSubstr("malformed reply from " + server.address + ": "));
      EXPECT_THAT(r.summary, HasSubstr(c.summary));
      EXPECT_EQ(sample(r, "probe_dns_query_succeeded"), 0);
    }
  }
}

TEST_F(DnsProbeTest, GarbageIsNoAnswer) {
  // c-ares drops datagrams whose id and question are not the query's, as a
  // defence against spoofed replies, so garbage counts as no answer.
  Server server = start_server("garbage");
  auto probe = make("www.example.org", "server = \"" + server.address + "\"\n",
                    std::chrono::milliseconds(400));
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.timed_out);
  EXPECT_THAT(r.summary, HasSubstr("no answer from " + server.address));
}

TEST_F(DnsProbeTest, SystemResolverIsSetUpWithoutQuerying) {
  // Tests never query the system resolver; this only reads /etc/resolv.conf
  // and closes everything again.
  auto probe = make("www.example.org", "");
  ASSERT_TRUE(probe);
  EXPECT_EQ(probe->phase(), "idle");
  probe.reset();
  drain();
  EXPECT_EQ(uv_loop_alive(loop()), 0);
}

TEST_F(DnsProbeTest, ConfigErrors) {
  EXPECT_THAT(parse_errors("www example.org", ""),
              HasSubstr("'www example.org' is not a valid DNS name: ' ' is not allowed"));
  EXPECT_THAT(parse_errors("www..example.org", ""), HasSubstr("empty label"));
  EXPECT_THAT(parse_errors(std::string(64, 'a') + ".org", ""),
              HasSubstr("is longer than 63 characters"));
  EXPECT_THAT(parse_errors("http://example.org/", ""), HasSubstr("is not a valid DNS name"));
  EXPECT_THAT(parse_errors("example.org", "query_type = \"AXFR\"\n"),
              HasSubstr("'query_type' must be one of A, AAAA"));
  EXPECT_THAT(parse_errors("example.org", "server = \"ns1.example.org\"\n"),
              HasSubstr("invalid server 'ns1.example.org': must be an IP address"));
  EXPECT_THAT(parse_errors("example.org", "server = \"127.0.0.1:0\"\n"),
              HasSubstr("port must be a number between 1 and 65535, not '0'"));
  EXPECT_THAT(parse_errors("example.org", "server = \"[::1\"\n"), HasSubstr("missing ']'"));
  EXPECT_THAT(parse_errors("example.org", "transport = \"tls\"\n"),
              HasSubstr("'transport' must be \"udp\" or \"tcp\", not \"tls\""));
  EXPECT_THAT(parse_errors("example.org", "valid_rcodes = [\"NOERR\"]\n"),
              HasSubstr("unknown response code \"NOERR\""));
  EXPECT_THAT(parse_errors("example.org", "valid_rcodes = []\n"),
              HasSubstr("'valid_rcodes' must not be empty"));
  EXPECT_THAT(parse_errors("example.org", "answers_must_match = [\"(\"]\n"),
              HasSubstr("invalid regular expression \"(\" in 'answers_must_match'"));
  // An address is only reversed for PTR; as a name to ask for A it is plausible.
  Parser parser;
  EXPECT_NE(parser.parse("198.51.100.7", "server = \"[::1]\"\n"), nullptr) << parser.diag.render();
  EXPECT_NE(parser.parse(".", "query_type = \"NS\"\nserver = \"::1\"\n"), nullptr)
      << parser.diag.render();
}

}  // namespace
}  // namespace wacht::probes
