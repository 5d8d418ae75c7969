#include "probes/icmp_probe.hpp"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <toml++/toml.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
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
using ::testing::StartsWith;

constexpr int kCapNetRaw = 13;
constexpr int kCapSysAdmin = 21;

// Whether the process holds `cap` in its effective set: with it, a failure to
// set up is a bug to report, not a reason to skip (CI runs as root).
bool has_capability(int cap) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (!line.starts_with("CapEff:")) continue;
    unsigned long long bits = std::stoull(line.substr(7), nullptr, 16);
    return (bits >> cap) & 1;
  }
  return false;
}

std::vector<double> observations(const ProbeResult& r, std::string_view name) {
  std::vector<double> out;
  for (const auto& s : r.samples)
    if (s.def->name == name) out.push_back(s.value);
  return out;
}

// Runs a shell command; returns its exit status and sets `output` to what it printed.
int shell(const std::string& cmd, std::string* output) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return -1;
  char buf[512];
  output->clear();
  while (fgets(buf, sizeof buf, p)) *output += buf;
  return pclose(p);
}

// Creates a socket inside network namespace `ns`: a socket stays in the
// namespace it was created in, so only a short-lived thread has to enter it.
int socket_in_netns(const std::string& ns, int domain, int type, int protocol) {
  int fd = -1, err = 0;
  std::thread t([&] {
    int nsfd = ::open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (nsfd < 0 || setns(nsfd, CLONE_NEWNET) != 0) {
      err = errno;
      if (nsfd >= 0) ::close(nsfd);
      return;
    }
    ::close(nsfd);
    fd = ::socket(domain, type, protocol);
    err = errno;
  });
  t.join();
  errno = err;
  return fd;
}

bool is_dgram(int type) { return (type & 0xf) == SOCK_DGRAM; }

class Parser : public test::SpecParser {
 public:
  Parser() : SpecParser(icmp_probe_type()) {}
};

class IcmpProbeTest : public test::LoopTest {
 protected:
  void TearDown() override {
    service_.reset();
    LoopTest::TearDown();
  }

  // Opens the shared sockets; returns why not (the test then skips), or fails
  // the test when the process has the privilege and it still did not work.
  std::string open_service(const IcmpServiceOptions& options = {}) {
    std::string error;
    service_ = make_icmp_service(loop(), &error, options);
    if (service_) return {};
    if (has_capability(kCapNetRaw)) ADD_FAILURE() << "with CAP_NET_RAW: " << error;
    return "no ICMP socket (neither datagram ICMP nor CAP_NET_RAW): " + error;
  }

  std::unique_ptr<Probe> make(const std::string& target, const std::string& body = "",
                              std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto spec = parser_.parse(target, body);
    EXPECT_NE(spec, nullptr) << parser_.diag.render();
    if (!spec) return nullptr;
    ProbeContext ctx;
    ctx.loop = loop();
    ctx.icmp = service_.get();
    return icmp_probe_type().create(ctx, CheckTarget{"test", target, timeout}, *spec);
  }

  // One run to completion; done must fire once and never synchronously.
  ProbeResult run(Probe& probe, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    int calls = 0;
    ProbeResult result;
    probe.start([&](ProbeResult r) {
      ++calls;
      result = std::move(r);
    });
    EXPECT_EQ(calls, 0) << "done fired synchronously from start()";
    EXPECT_TRUE(run_until([&] { return calls > 0; }, limit));
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(probe.phase(), "idle");
    if (service_) {
      EXPECT_EQ(icmp_in_flight(*service_), 0u) << "sequence numbers left in flight";
    }
    return result;
  }

  // Runs the loop for `ms` to observe that nothing happens (not to wait for something).
  void run_for(int ms) {
    uint64_t until = uv_hrtime() + static_cast<uint64_t>(ms) * 1000000;
    run_until([&] { return uv_hrtime() >= until; }, std::chrono::milliseconds(ms + 1000));
  }

  // Checks what every answered round reports.
  static void expect_answered(const ProbeResult& r, int count) {
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_THAT(r.summary,
                MatchesRegex(std::to_string(count) + "/" + std::to_string(count) +
                             " replies, rtt min/median/max [0-9.]+/[0-9.]+/[0-9.]+ ms, 0% loss"));
    EXPECT_EQ(sample(r, "wacht_icmp_packets_sent"), count);
    EXPECT_EQ(sample(r, "wacht_icmp_packets_received"), count);
    EXPECT_EQ(sample(r, "wacht_icmp_packet_loss_ratio"), 0);
    auto rtts = observations(r, "wacht_icmp_round_trip_seconds");
    ASSERT_EQ(rtts.size(), static_cast<size_t>(count)) << "one histogram observation per reply";
    auto min = sample(r, "wacht_icmp_rtt_seconds", "min");
    auto median = sample(r, "wacht_icmp_rtt_seconds", "median");
    auto max = sample(r, "wacht_icmp_rtt_seconds", "max");
    auto mean = sample(r, "wacht_icmp_rtt_seconds", "mean");
    auto stddev = sample(r, "wacht_icmp_rtt_seconds", "stddev");
    ASSERT_TRUE(min && median && max && mean && stddev);
    EXPECT_GT(*min, 0);
    EXPECT_LE(*min, *median);
    EXPECT_LE(*median, *max);
    EXPECT_LE(*min, *mean);
    EXPECT_LE(*mean, *max);
    EXPECT_GE(*stddev, 0);
    EXPECT_LE(*stddev, *max - *min);
    EXPECT_LT(*max, 1.0);
    EXPECT_EQ(sample(r, "probe_icmp_duration_seconds", "rtt"), median);
    EXPECT_TRUE(sample(r, "probe_icmp_duration_seconds", "resolve"));
  }

  IcmpServicePtr service_{nullptr, nullptr};
  Parser parser_;
};

TEST_F(IcmpProbeTest, Loopback4) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  auto probe = make("127.0.0.1", "packet_gap = \"10ms\"\n");
  ASSERT_TRUE(probe);
  // Twice: a probe is reused for every run of its check.
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run(*probe);
    expect_answered(r, 5);
    EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
    // Five packets 10 ms apart take about 40 ms; libuv's millisecond loop
    // clock may shorten each gap by up to 1 ms.
    EXPECT_GE(r.duration_seconds, 0.035);
    EXPECT_LT(r.duration_seconds, 1.0);
  }
}

TEST_F(IcmpProbeTest, Loopback6) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  if (icmp_socket_kind(*service_, AF_INET6) == IcmpSocketKind::kNone)
    GTEST_SKIP() << "no IPv6 in this kernel";
  auto probe = make("::1", "count = 3\npacket_gap = \"10ms\"\npayload_size = 100\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  expect_answered(r, 3);
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 6);
}

TEST_F(IcmpProbeTest, ResolvesAName) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  auto probe = make("localhost", "count = 2\npacket_gap = \"10ms\"\nip_protocol = \"ip4\"\n");
  ASSERT_TRUE(probe);
  bool fired = false;
  ProbeResult r;
  probe->start([&](ProbeResult res) {
    fired = true;
    r = std::move(res);
  });
  EXPECT_EQ(probe->phase(), "resolving");
  ASSERT_TRUE(run_until([&] { return fired; }));
  expect_answered(r, 2);
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
  auto resolve = sample(r, "probe_icmp_duration_seconds", "resolve");
  ASSERT_TRUE(resolve);
  EXPECT_GT(*resolve, 0);
  EXPECT_EQ(sample(r, "probe_dns_lookup_time_seconds"), resolve);
}

TEST_F(IcmpProbeTest, RawSocketWhenDatagramIsRefused) {
  IcmpServiceOptions options;
  options.open_socket = [](int domain, int type, int protocol) {
    if (is_dgram(type)) {
      errno = EACCES;
      return -1;
    }
    return ::socket(domain, type, protocol);
  };
  if (auto why = open_service(options); !why.empty()) GTEST_SKIP() << why;
  EXPECT_EQ(icmp_socket_kind(*service_, AF_INET), IcmpSocketKind::kRaw);
  for (std::string target : {"127.0.0.1", "::1"}) {
    SCOPED_TRACE(target);
    auto probe = make(target, "count = 4\npacket_gap = \"5ms\"\n");
    ASSERT_TRUE(probe);
    expect_answered(run(*probe), 4);
  }
}

TEST_F(IcmpProbeTest, NeitherSocketPermittedNamesBothFixes) {
  IcmpServiceOptions options;
  options.open_socket = [](int, int type, int) {
    errno = is_dgram(type) ? EACCES : EPERM;
    return -1;
  };
  std::string error;
  auto service = make_icmp_service(loop(), &error, options);
  EXPECT_EQ(service, nullptr);
  EXPECT_THAT(error, HasSubstr("net.ipv4.ping_group_range=\"0 2147483647\"")) << error;
  EXPECT_THAT(error, HasSubstr("CAP_NET_RAW")) << error;
  EXPECT_THAT(error, HasSubstr("AmbientCapabilities=CAP_NET_RAW")) << error;
  EXPECT_THAT(error, HasSubstr(std::strerror(EACCES))) << error;
  EXPECT_THAT(error, HasSubstr(std::strerror(EPERM))) << error;
}

TEST_F(IcmpProbeTest, TwoProbesToOneTargetGetTheirOwnReplies) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  // Different counts: a reply handed to the wrong probe shows in the totals.
  auto a = make("127.0.0.1", "count = 3\npacket_gap = \"5ms\"\n");
  auto b = make("127.0.0.1", "count = 7\npacket_gap = \"3ms\"\n");
  ASSERT_TRUE(a && b);
  std::optional<ProbeResult> ra, rb;
  a->start([&](ProbeResult r) { ra = std::move(r); });
  b->start([&](ProbeResult r) { rb = std::move(r); });
  ASSERT_TRUE(run_until([&] { return ra && rb; }));
  expect_answered(*ra, 3);
  expect_answered(*rb, 7);
  EXPECT_EQ(icmp_in_flight(*service_), 0u);
}

TEST_F(IcmpProbeTest, CancelMidRoundReleasesSequenceNumbers) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  auto probe = make("127.0.0.1", "count = 200\npacket_gap = \"5ms\"\n");
  ASSERT_TRUE(probe);
  int calls = 0;
  probe->start([&](const ProbeResult&) { ++calls; });
  EXPECT_EQ(probe->phase(), "sending echo requests");
  // Mid-round: some echoes sent, most still to go.
  uint64_t until = uv_hrtime() + 50'000'000;
  ASSERT_TRUE(run_until([&] { return uv_hrtime() >= until; }));
  probe->cancel();
  EXPECT_EQ(probe->phase(), "idle");
  EXPECT_EQ(icmp_in_flight(*service_), 0u);
  run_for(100);
  EXPECT_EQ(calls, 0) << "done fired after cancel()";
  // The probe runs again normally, with none of the old round's replies.
  auto again = make("127.0.0.1", "count = 3\npacket_gap = \"5ms\"\n");
  ASSERT_TRUE(again);
  expect_answered(run(*again), 3);
}

TEST_F(IcmpProbeTest, DestroyMidRound) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  auto probe = make("localhost", "count = 50\npacket_gap = \"5ms\"\n");
  ASSERT_TRUE(probe);
  int calls = 0;
  // While resolving: the resolver's callback comes after the probe is gone.
  probe->start([&](const ProbeResult&) { ++calls; });
  probe.reset();
  probe = make("127.0.0.1", "count = 50\npacket_gap = \"5ms\"\n");
  probe->start([&](const ProbeResult&) { ++calls; });
  uint64_t until = uv_hrtime() + 30'000'000;
  ASSERT_TRUE(run_until([&] { return uv_hrtime() >= until; }));
  probe.reset();
  EXPECT_EQ(icmp_in_flight(*service_), 0u);
  run_for(50);
  EXPECT_EQ(calls, 0);
  // TearDown asserts that every handle was closed.
}

TEST_F(IcmpProbeTest, ProbeOutlivingTheServiceFailsItsRuns) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  auto probe = make("127.0.0.1", "count = 50\npacket_gap = \"5ms\"\n");
  ASSERT_TRUE(probe);
  int calls = 0;
  probe->start([&](const ProbeResult&) { ++calls; });
  uint64_t until = uv_hrtime() + 20'000'000;
  ASSERT_TRUE(run_until([&] { return uv_hrtime() >= until; }));
  service_.reset();  // as at shutdown, before the scheduler's probes
  EXPECT_EQ(probe->phase(), "idle");
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "no ICMP socket: the ICMP service is not running");
  EXPECT_EQ(calls, 0);
}

TEST_F(IcmpProbeTest, RoundEndsBeforeTheCheckTimeout) {
  if (auto why = open_service(); !why.empty()) GTEST_SKIP() << why;
  // Twenty packets 100 ms apart do not fit in a 1 s timeout (900 ms round).
  auto probe = make("127.0.0.1", "count = 20\npacket_gap = \"100ms\"\n", std::chrono::seconds(1));
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_LT(r.duration_seconds, 1.0);
  EXPECT_GE(r.duration_seconds, 0.85);
  EXPECT_THAT(r.summary, HasSubstr("/20 replies"));
  EXPECT_THAT(r.summary, HasSubstr("not sent before the round's deadline"));
  auto loss = sample(r, "wacht_icmp_packet_loss_ratio");
  ASSERT_TRUE(loss);
  EXPECT_GE(*loss, 0.45);  // about ten of twenty were never sent
}

struct ParseCase {
  std::string name;
  std::string target;
  std::string body;
  std::string error;  // empty: valid

  friend void PrintTo(const ParseCase& c, std::ostream* os) { *os << c.name; }
};

class IcmpParseTest : public ::testing::TestWithParam<ParseCase> {};

TEST_P(IcmpParseTest, Validates) {
  const ParseCase& c = GetParam();
  Parser parser;
  auto spec = parser.parse(c.target, c.body);
  std::string text = parser.diag.render();
  if (c.error.empty()) {
    EXPECT_NE(spec, nullptr) << text;
    EXPECT_EQ(parser.diag.error_count(), 0u) << text;
  } else {
    // An unknown key is reported by finish(), after parse() returned.
    EXPECT_GT(parser.diag.error_count(), 0u);
    EXPECT_THAT(text, HasSubstr(c.error));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Keys, IcmpParseTest,
    ::testing::Values(
        ParseCase{"Ip4", "198.51.100.2", "", ""}, ParseCase{"Ip6", "2001:db8::1", "", ""},
        ParseCase{"BracketedIp6", "[::1]", "", ""}, ParseCase{"Name", "gw.example.net", "", ""},
        ParseCase{"AllKeys", "localhost",
                  "count = 20\npacket_gap = \"1s\"\npacket_timeout = \"2s\"\n"
                  "payload_size = 1400\ndont_fragment = true\nip_protocol = \"ip6\"\n",
                  ""},
        ParseCase{"Port", "198.51.100.2:80", "", "ICMP has no ports"},
        ParseCase{"Url", "http://example.net/", "", "not a URL"},
        ParseCase{"Empty", "", "", "write a host name or an IP address"},
        ParseCase{"CountZero", "localhost", "count = 0\n", "'count' must be between 1 and 1000"},
        ParseCase{"PayloadTooSmall", "localhost", "payload_size = 8\n",
                  "'payload_size' must be between 16 and 65507"},
        ParseCase{"GapZero", "localhost", "packet_gap = \"0ms\"\n", "packet_gap"},
        ParseCase{"BadProtocol", "localhost", "ip_protocol = \"ipx\"\n", "must be \"any\""},
        ParseCase{"ContradictingProtocol", "::1", "ip_protocol = \"ip4\"\n",
                  "contradicts the target's IPv6 address"},
        ParseCase{"UnknownKey", "localhost", "interval_ms = 5\n", "interval_ms"}),
    [](const auto& info) { return info.param.name; });

// --- Through a link between two network namespaces (see tests/support/netns.sh).

class Topology {
 public:
  Topology() : tag_("icmp" + std::to_string(getpid())) {
    std::string out;
    int rc = shell(script() + " up " + tag_, &out);
    if (rc != 0) error_ = "netns.sh up failed (" + std::to_string(rc) + "): " + out;
  }
  ~Topology() {
    std::string out;
    if (shell(script() + " down " + tag_, &out) != 0) ADD_FAILURE() << "netns.sh down: " << out;
  }
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  const std::string& error() const { return error_; }
  std::string monitor_ns() const { return "wacht-mon-" + tag_; }
  bool set_loss(int percent, std::string* out) {
    return shell(script() + " loss " + tag_ + " " + std::to_string(percent), out) == 0;
  }

 private:
  static std::string script() { return "sh '" + test::support_path("netns.sh") + "'"; }
  std::string tag_;
  std::string error_;
};

class IcmpNetnsTest : public IcmpProbeTest {
 protected:
  // Builds the topology and opens the service's sockets in the monitoring
  // namespace; returns why not.
  std::string set_up(bool force_raw) {
    if (geteuid() != 0 && !has_capability(kCapSysAdmin))
      return "ip netns needs root (CAP_SYS_ADMIN)";
    topology_ = std::make_unique<Topology>();
    if (!topology_->error().empty()) {
      ADD_FAILURE() << topology_->error();
      return topology_->error();
    }
    IcmpServiceOptions options;
    options.open_socket = [ns = topology_->monitor_ns(), force_raw](int domain, int type,
                                                                    int protocol) {
      if (force_raw && is_dgram(type)) {
        errno = EACCES;
        return -1;
      }
      return socket_in_netns(ns, domain, type, protocol);
    };
    return open_service(options);
  }

  void TearDown() override {
    IcmpProbeTest::TearDown();
    topology_.reset();
  }

  std::unique_ptr<Topology> topology_;
};

TEST_F(IcmpNetnsTest, DatagramSocketThroughTheLink) {
  if (auto why = set_up(false); !why.empty()) GTEST_SKIP() << why;
  // netns.sh opened ping_group_range in the monitoring namespace.
  EXPECT_EQ(icmp_socket_kind(*service_, AF_INET), IcmpSocketKind::kDatagram);
  auto probe = make("198.51.100.2", "packet_gap = \"10ms\"\n");
  ASSERT_TRUE(probe);
  expect_answered(run(*probe), 5);
}

TEST_F(IcmpNetnsTest, RawSocketThroughTheLink) {
  if (auto why = set_up(true); !why.empty()) GTEST_SKIP() << why;
  EXPECT_EQ(icmp_socket_kind(*service_, AF_INET), IcmpSocketKind::kRaw);
  auto probe = make("198.51.100.2", "packet_gap = \"10ms\"\n");
  ASSERT_TRUE(probe);
  expect_answered(run(*probe), 5);
}

TEST_F(IcmpNetnsTest, SilentHostIsTotalLossAfterPacketTimeout) {
  if (auto why = set_up(false); !why.empty()) GTEST_SKIP() << why;
  // On the link, but nobody answers ARP for it.
  auto probe =
      make("198.51.100.3", "count = 3\npacket_gap = \"10ms\"\npacket_timeout = \"300ms\"\n");
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_THAT(r.summary, StartsWith("100% loss (0/3 replies) from 198.51.100.3")) << r.summary;
  EXPECT_EQ(sample(r, "wacht_icmp_packet_loss_ratio"), 1);
  EXPECT_EQ(sample(r, "wacht_icmp_packets_received"), 0);
  EXPECT_FALSE(sample(r, "probe_icmp_duration_seconds", "rtt"));
  EXPECT_TRUE(observations(r, "wacht_icmp_round_trip_seconds").empty());
  // packet_timeout ends the round, not the 5 s check timeout.
  EXPECT_GE(r.duration_seconds, 0.3);
  EXPECT_LT(r.duration_seconds, 1.5);
}

TEST_F(IcmpNetnsTest, RandomLossIsMeasured) {
  if (auto why = set_up(false); !why.empty()) GTEST_SKIP() << why;
  std::string out;
  ASSERT_TRUE(topology_->set_loss(30, &out)) << out;
  constexpr int kCount = 400;
  auto probe = make("198.51.100.2", "count = 400\npacket_gap = \"1ms\"\npacket_timeout = \"1s\"\n",
                    std::chrono::seconds(10));
  ASSERT_TRUE(probe);
  ProbeResult r = run(*probe, std::chrono::seconds(15));
  auto loss = sample(r, "wacht_icmp_packet_loss_ratio");
  ASSERT_TRUE(loss);
  // Binomial(400, 0.3): sigma = sqrt(400 * 0.3 * 0.7) / 400 = 0.023; five
  // sigmas either side fail a correct probe about once in 1.7 million runs.
  const double sigma = std::sqrt(kCount * 0.3 * 0.7) / kCount;
  std::printf("configured loss 30%%, measured %.1f%% over %d packets (%s)\n", *loss * 100, kCount,
              r.summary.c_str());
  EXPECT_NEAR(*loss, 0.30, 5 * sigma) << r.summary;
  EXPECT_TRUE(r.success);
  EXPECT_EQ(sample(r, "wacht_icmp_packets_sent"), kCount);
  auto received = sample(r, "wacht_icmp_packets_received");
  ASSERT_TRUE(received);
  EXPECT_DOUBLE_EQ(*loss, 1 - *received / kCount);
  EXPECT_EQ(observations(r, "wacht_icmp_round_trip_seconds").size(),
            static_cast<size_t>(*received));
  EXPECT_THAT(r.summary, MatchesRegex("[0-9]+/400 replies, rtt .* ms, [0-9.]+% loss"));
}

TEST_F(IcmpNetnsTest, DontFragmentRefusesWhatExceedsTheMtu) {
  if (auto why = set_up(false); !why.empty()) GTEST_SKIP() << why;
  // 2000 bytes do not fit the veth's 1500-byte MTU: fragmented by default...
  auto fragmented = make("198.51.100.2", "count = 3\npacket_gap = \"5ms\"\npayload_size = 2000\n");
  ASSERT_TRUE(fragmented);
  expect_answered(run(*fragmented), 3);
  // ...and refused with DF set, on the same shared socket.
  auto df = make("198.51.100.2",
                 "count = 3\npacket_gap = \"5ms\"\npayload_size = 2000\ndont_fragment = true\n");
  ASSERT_TRUE(df);
  ProbeResult r = run(*df);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "100% loss (0/3 replies) from 198.51.100.2; 3 not sent: sendto: " +
                           std::string(std::strerror(EMSGSIZE)));
  EXPECT_EQ(sample(r, "wacht_icmp_packets_sent"), 0);
  // The socket is back to fragmenting for the next check.
  expect_answered(run(*fragmented), 3);
}

}  // namespace
}  // namespace wacht::probes
