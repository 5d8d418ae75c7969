#include "probes/http_probe.hpp"

#include <curl/curl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "probes/probe_test_util.hpp"
#include "runtime/curl_multi.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/regex.hpp"
#include "runtime/timer.hpp"
#include "runtime/toml_reader.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::probes {
namespace {

using test::sample;

using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;
using namespace std::string_literals;

const std::string kOkBody = "hello from wacht test server\n";

// Keys the config loader declares for every check; the probe reads only its own.
constexpr runtime::KeySpec kCommonKeys[] = {{"target", "string", "", "what to probe"}};

// notAfter of a PEM certificate as told by the openssl command, independent of
// the code under test.
double openssl_not_after(const std::string& pem) {
  std::string cmd = "openssl x509 -noout -enddate -in '" + pem + "'";
  std::FILE* p = popen(cmd.c_str(), "r");
  char line[256] = {};
  if (!p || !std::fgets(line, sizeof line, p)) ADD_FAILURE() << cmd;
  if (p) pclose(p);
  std::tm tm{};  // "notAfter=Nov 26 02:22:36 2027 GMT"
  if (!strptime(line, "notAfter=%b %d %H:%M:%S %Y GMT", &tm)) ADD_FAILURE() << line;
  return static_cast<double>(timegm(&tm));
}

// One check's config, parsed as the config loader would: a [check] table with
// the target and the given keys, read through a TableReader.
struct Parsed {
  runtime::Diagnostics diag;
  std::shared_ptr<const ProbeSpec> spec;
};

std::unique_ptr<Parsed> parse_check(const std::string& target, const std::string& keys) {
  auto out = std::make_unique<Parsed>();
  const std::string text = "[check]\ntarget = \"" + target + "\"\n" + keys + "\n";
  auto file = std::make_shared<const std::string>("checks.toml");
  out->diag.add_source(file, text);
  toml::table doc = toml::parse(text, *file);
  runtime::TableReader reader(out->diag, "check 'web'", runtime::SourceLoc{file, 1, 1, 7});
  reader.add_layer(*doc["check"].as_table());
  reader.declare(kCommonKeys);
  reader.declare(http_probe_type().keys);
  out->spec = http_probe_type().parse(reader, target);
  reader.finish();
  return out;
}

class HttpProbeTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    curl_ = std::make_unique<runtime::CurlMulti>(loop());
    tmp_ = test::make_temp_dir();
  }
  void TearDown() override {
    probe_.reset();
    curl_.reset();
    servers_.clear();
    std::filesystem::remove_all(tmp_);
    LoopTest::TearDown();
  }

  // Certificates from make_certs.sh, shared by all test processes.
  static std::string cert(const std::string& name) { return test::certs_dir() + "/" + name; }

  // Starts tests/support/http_server.py; returns its port.
  std::string serve(std::vector<std::string> args = {}) {
    std::vector<std::string> argv{"/usr/bin/python3", test::support_path("http_server.py")};
    argv.insert(argv.end(), args.begin(), args.end());
    servers_.push_back(std::make_unique<test::ChildProcess>(argv));
    return servers_.back()->first_line();
  }
  std::string serve_tls(const std::string& name) {
    return serve({"--cert", cert(name + ".pem"), "--key", cert(name + ".key")});
  }

  // A server that answers every connection with the same bytes after reading
  // the request headers, writes each request to stderr followed by "--", and
  // closes (or, with keep_open, waits for the client to close first). A NUL in
  // the response is not sent: it splits the response into writes 50 ms apart,
  // each its own TCP segment. Its first line is the port.
  test::ChildProcess& serve_canned(const std::string& response, bool keep_open = false,
                                   const std::string& bind = "127.0.0.1") {
    static const char* script = R"PY(
import socket, sys, threading, time
resp, keep_open, bind = open(sys.argv[1], "rb").read(), sys.argv[2] == "1", sys.argv[3]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind, 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    try:
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(65536)
            if not d:
                break
            data += d
        sys.stderr.write(data.decode("latin-1") + "--\n")
        sys.stderr.flush()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, piece in enumerate(resp.split(b"\0")):
            if i:
                time.sleep(0.05)
            c.sendall(piece)
        if keep_open:
            c.settimeout(10)
            while c.recv(4096):
                pass
    except OSError:
        pass  # the client left early
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)PY";
    const std::string file = write_file("canned" + std::to_string(servers_.size()), response);
    servers_.push_back(std::make_unique<test::ChildProcess>(std::vector<std::string>{
        "/usr/bin/python3", "-c", script, file, keep_open ? "1" : "0", bind}));
    return *servers_.back();
  }

  std::string write_file(const std::string& name, const std::string& content) {
    std::string path = tmp_ + "/" + name;
    std::ofstream(path) << content;
    return path;
  }

  // Parses the check (failing the test on any diagnostic) and creates its probe.
  void make_probe(const std::string& target, const std::string& keys = "",
                  std::chrono::milliseconds timeout = 5s) {
    auto parsed = parse_check(target, keys);
    ASSERT_TRUE(parsed->spec) << parsed->diag.render();
    ASSERT_FALSE(parsed->diag.has_errors()) << parsed->diag.render();
    ProbeContext ctx{loop(), curl_.get()};
    probe_ = http_probe_type().create(ctx, CheckTarget{"web", target, timeout}, *parsed->spec);
  }

  // One run of the current probe; checks that done fires once and not inside start().
  ProbeResult run_probe() {
    int calls = 0;
    ProbeResult result;
    probe_->start([&](ProbeResult r) {
      ++calls;
      result = std::move(r);
    });
    EXPECT_EQ(calls, 0) << "done fired inside start()";
    EXPECT_TRUE(run_until([&] { return calls > 0; }, 20s));
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(probe_->phase(), "idle");
    return result;
  }

  ProbeResult run(const std::string& target, const std::string& keys = "",
                  std::chrono::milliseconds timeout = 5s) {
    make_probe(target, keys, timeout);
    if (!probe_) return {};
    return run_probe();
  }

  void run_for(uint64_t ms) {
    bool elapsed = false;
    runtime::Timer timer(loop(), [&] { elapsed = true; });
    timer.start(ms);
    run_until([&] { return elapsed; });
  }

  std::string tmp_;
  std::vector<std::unique_ptr<test::ChildProcess>> servers_;
  std::unique_ptr<runtime::CurlMulti> curl_;
  std::unique_ptr<Probe> probe_;
};

// --- plain HTTP -------------------------------------------------------------
// 127.0.0.1 runs the direct client and localhost, a name, libcurl: the
// plain-HTTP cases run on both.

constexpr const char* kHosts[] = {"127.0.0.1", "localhost"};

std::string url(const std::string& host, const std::string& port, const std::string& path) {
  return "http://" + host + ":" + port + path;
}

TEST_F(HttpProbeTest, OkReportsSuccessAndEverySample) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/ok"));
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.state, State::kOk);
    EXPECT_FALSE(r.timed_out);
    EXPECT_THAT(r.summary, MatchesRegex("HTTP 200 OK in [0-9]+ ms"));
    EXPECT_GT(r.duration_seconds, 0);
    EXPECT_LT(r.duration_seconds, 5);

    EXPECT_EQ(sample(r, "probe_http_status_code"), 200);
    EXPECT_EQ(sample(r, "probe_http_content_length"), kOkBody.size());
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), kOkBody.size());
    EXPECT_EQ(sample(r, "probe_http_redirects"), 0);
    EXPECT_EQ(sample(r, "probe_http_ssl"), 0);
    EXPECT_EQ(sample(r, "probe_http_version"), 1.1);
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
    EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
    ASSERT_TRUE(sample(r, "probe_dns_lookup_time_seconds"));
    EXPECT_EQ(sample(r, "probe_dns_lookup_time_seconds"),
              sample(r, "probe_http_duration_seconds", "resolve"));
    double phases = 0;
    for (const char* phase : {"resolve", "connect", "tls", "processing", "transfer"}) {
      auto v = sample(r, "probe_http_duration_seconds", phase);
      ASSERT_TRUE(v) << phase;
      EXPECT_GE(*v, 0) << phase;
      phases += *v;
    }
    EXPECT_EQ(sample(r, "probe_http_duration_seconds", "tls"), 0);
    EXPECT_GT(*sample(r, "probe_http_duration_seconds", "processing"), 0);
    EXPECT_LE(phases, r.duration_seconds + 0.001);
    EXPECT_FALSE(sample(r, "probe_tls_version_info", "TLS 1.3"));
    EXPECT_FALSE(sample(r, "probe_ssl_earliest_cert_expiry"));
    EXPECT_FALSE(sample(r, "probe_http_last_modified_timestamp_seconds"));
    for (const auto& s : r.samples) EXPECT_FALSE(s.def->help.empty()) << s.def->name;
  }
}

TEST_F(HttpProbeTest, ProcessingPhaseMeasuresServerTime) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/slow/300"));
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_GE(*sample(r, "probe_http_duration_seconds", "processing"), 0.29);
    EXPECT_GE(r.duration_seconds, 0.29);
  }
}

TEST_F(HttpProbeTest, StatusOutside2xxFails) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/status/503"));
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.state, State::kCritical);
    EXPECT_EQ(r.summary, "HTTP 503 Service Unavailable (expected 2xx)");
    EXPECT_EQ(sample(r, "probe_http_status_code"), 503);
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
  }
}

TEST_F(HttpProbeTest, ValidStatusReplaces2xx) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/status/404"), "valid_status = [404, 410]");
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(r.summary.substr(0, 22), "HTTP 404 Not Found in ");

    r = run(url(host, port, "/ok"), "valid_status = [404, 410]");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "HTTP 200 OK (expected 404, 410)");
  }
}

TEST_F(HttpProbeTest, BodyMustMatch) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/ok"), R"(body_must_match = ["wacht test", "^hello"])");
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);

    r = run(url(host, port, "/ok"), R"(body_must_match = ["wacht", "Anmelden"])");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.state, State::kCritical);
    EXPECT_EQ(r.summary, "body does not match \"Anmelden\"");
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
    EXPECT_EQ(sample(r, "probe_http_status_code"), 200);
  }
}

TEST_F(HttpProbeTest, BodyMustNotMatch) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r =
        run(url(host, port, "/ok"), R"(body_must_not_match = ["Fehler", "(?i)maintenance"])");
    EXPECT_TRUE(r.success) << r.summary;

    r = run(url(host, port, "/ok"), R"(body_must_not_match = ["Fehler", "(?i)HELLO"])");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "body matches \"(?i)HELLO\"");
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
  }
}

TEST_F(HttpProbeTest, CatastrophicRegexFailsQuicklyInsteadOfHanging) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    double start = test::now_seconds();
    ProbeResult r = run(url(host, port, "/big/50000"), R"(body_must_match = ["(y+)+[^y]"])");
    EXPECT_FALSE(r.success);
    EXPECT_THAT(r.summary, StartsWith("body check \"(y+)+[^y]\" failed: "));
    EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
    EXPECT_LT(test::now_seconds() - start, 3.0);
  }
}

TEST_F(HttpProbeTest, RegexSearchesBytesThatAreNotUtf8) {
  auto re = runtime::Regex::compile("Anmelden");
  ASSERT_TRUE(re);
  std::string error;
  EXPECT_TRUE(re->search("\xff\xfe<b>Anmelden</b>\xc3", &error));
  EXPECT_FALSE(re->search("\xff\xfe<b>Abmelden</b>", &error));
  EXPECT_EQ(error, "");
  EXPECT_FALSE(runtime::Regex::compile("(a", &error));
  EXPECT_EQ(error, "missing closing parenthesis at offset 2");
}

TEST_F(HttpProbeTest, MethodHeadersAndBodyAreSent) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/echo", R"(
method = "PUT"
headers = { X-Probe = "yes", Accept = "text/plain" }
body = "ping"
body_must_match = ["(?m)^method PUT$", "(?m)^header x-probe: yes$", "(?m)^header accept: text/plain$",
                   "(?m)^header user-agent: wacht/", "(?m)^body ping$"]
)");
  EXPECT_TRUE(r.success) << r.summary;
}

TEST_F(HttpProbeTest, HeadReadsNoBody) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/ok"), R"(method = "HEAD")");
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), 0);
    EXPECT_EQ(sample(r, "probe_http_content_length"), kOkBody.size());

    // The declared length of a body that is not sent is no reason to fail.
    r = run(url(host, port, "/big/5000"), "method = \"HEAD\"\nmax_body_bytes = 1000");
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_content_length"), 5000);
  }
}

TEST_F(HttpProbeTest, ReportsLastModified) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/last-modified"));
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_last_modified_timestamp_seconds"), 1445412480);
  }
}

TEST_F(HttpProbeTest, ConnectsOverIpv6) {
  const std::string port = serve({"--bind", "::1"});
  ProbeResult r = run("http://[::1]:" + port + "/ok");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 6);

  r = run("http://[::1]:" + port + "/ok", R"(ip_protocol = "ip4")");
  EXPECT_FALSE(r.success);
}

// --- redirects --------------------------------------------------------------

TEST_F(HttpProbeTest, FollowsRedirects) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/redirect/3"));
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_THAT(r.summary, MatchesRegex("HTTP 200 OK in [0-9]+ ms after 3 redirects"));
    EXPECT_EQ(sample(r, "probe_http_redirects"), 3);
    // Only the final response's body is read.
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), kOkBody.size());
  }
}

TEST_F(HttpProbeTest, RedirectNotFollowedIsTheFinalResponse) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/redirect/1"), "follow_redirects = false");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "HTTP 302 Found (expected 2xx)");
    EXPECT_EQ(sample(r, "probe_http_redirects"), 0);

    r = run(url(host, port, "/redirect/1"), "follow_redirects = false\nvalid_status = [302]");
    EXPECT_TRUE(r.success) << r.summary;
  }
}

TEST_F(HttpProbeTest, RedirectLimit) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/redirect/3"), "max_redirects = 2");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "more than 2 redirects");

    r = run(url(host, port, "/redirect/3"), "max_redirects = 3");
    EXPECT_TRUE(r.success) << r.summary;
  }
}

// --- broken servers ---------------------------------------------------------

TEST_F(HttpProbeTest, ConnectionRefused) {
  ProbeResult r = run("http://127.0.0.1:" + std::to_string(test::free_port()) + "/");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "connection refused");
  EXPECT_EQ(sample(r, "probe_http_status_code"), 0);
  EXPECT_EQ(sample(r, "probe_http_version"), 0);
  EXPECT_EQ(sample(r, "probe_ip_protocol"), 4);
}

TEST_F(HttpProbeTest, ConnectionReset) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/reset"));
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "connection reset by peer");
  }
}

TEST_F(HttpProbeTest, GarbageIsNotHttp) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/garbage"));
    EXPECT_FALSE(r.success);
    EXPECT_THAT(r.summary, StartsWith("not an HTTP response ("));
    EXPECT_EQ(sample(r, "probe_http_status_code"), 0);
  }
}

TEST_F(HttpProbeTest, UnboundedBodyIsCappedWithoutReadingFurther) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    double start = test::now_seconds();
    ProbeResult r = run(url(host, port, "/huge"), "max_body_bytes = 1048576");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "body larger than 1048576 bytes");
    EXPECT_LE(*sample(r, "probe_http_uncompressed_body_length"), 1048576);
    EXPECT_LT(test::now_seconds() - start, 3.0);
  }
}

TEST_F(HttpProbeTest, DeclaredBodyLengthAboveTheLimitFails) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/big/5000"), "max_body_bytes = 1000");
    EXPECT_FALSE(r.success);
    EXPECT_EQ(r.summary, "body larger than 1000 bytes");

    r = run(url(host, port, "/big/1000"), "max_body_bytes = 1000");
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), 1000);
  }
}

TEST_F(HttpProbeTest, CancelStopsAHangingRunWithoutDone) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    make_probe(url(host, port, "/hang"));
    int calls = 0;
    probe_->start([&](const ProbeResult&) { ++calls; });
    ASSERT_TRUE(run_until([&] { return probe_->phase() == "waiting for response"; }));
    probe_->cancel();
    EXPECT_EQ(probe_->phase(), "idle");
    EXPECT_EQ(curl_->running(), 0u);
    run_for(200);
    EXPECT_EQ(calls, 0);
  }
  // TearDown asserts that no uv handle was left open.
}

TEST_F(HttpProbeTest, DestroyingARunningProbeNeverCallsDone) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    make_probe(url(host, port, "/hang"));
    int calls = 0;
    probe_->start([&](const ProbeResult&) { ++calls; });
    ASSERT_TRUE(run_until([&] { return probe_->phase() == "waiting for response"; }));
    probe_.reset();
    EXPECT_EQ(curl_->running(), 0u);
    run_for(200);
    EXPECT_EQ(calls, 0);
  }
}

TEST_F(HttpProbeTest, CurlTimeoutIsASafetyNet) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/hang"), "", 300ms);
    EXPECT_FALSE(r.success);
    EXPECT_TRUE(r.timed_out);
    EXPECT_EQ(r.summary, "timed out after 300 ms while waiting for response");
  }
}

TEST_F(HttpProbeTest, ProbeMayBeDestroyedInsideItsDoneCallback) {
  const std::string port = serve();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    make_probe(url(host, port, "/ok"));
    bool done = false;
    probe_->start([&](const ProbeResult& r) {
      EXPECT_TRUE(r.success) << r.summary;
      probe_.reset();
      done = true;
    });
    ASSERT_TRUE(run_until([&] { return done; }));
  }
}

TEST_F(HttpProbeTest, EveryRunUsesAFreshConnectionAndFreshState) {
  const std::string port = serve();
  int connections = 0;
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    make_probe(url(host, port, "/redirect/1"));
    for (int i = 0; i < 3; ++i) {
      ProbeResult r = run_probe();
      EXPECT_TRUE(r.success) << r.summary;
      EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), kOkBody.size());
      EXPECT_EQ(sample(r, "probe_http_redirects"), 1);
    }
    // 3 runs of 2 requests each, each on its own connection, plus this request.
    connections += 7;
    test::HttpResponse stats = test::http_get(std::stoi(port), "/stats");
    EXPECT_EQ(stats.body, "connections " + std::to_string(connections) + "\n");
  }
}

// --- HTTPS ------------------------------------------------------------------

TEST_F(HttpProbeTest, HttpsWithCaFileReportsCertificateExpiry) {
  const std::string port = serve_tls("valid");
  make_probe("https://127.0.0.1:" + port + "/ok", "tls_ca_file = \"" + cert("ca.pem") + "\"");
  const double not_after = openssl_not_after(cert("valid.pem"));
  // Twice: without a TLS session cache, the second run sees the certificate too.
  for (int i = 0; i < 2; ++i) {
    ProbeResult r = run_probe();
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_THAT(r.summary, MatchesRegex("HTTP 200 OK in [0-9]+ ms"));
    EXPECT_EQ(sample(r, "probe_http_ssl"), 1);
    EXPECT_EQ(sample(r, "probe_tls_version_info", "TLS 1.3"), 1);
    EXPECT_GT(*sample(r, "probe_http_duration_seconds", "tls"), 0);
    EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
    EXPECT_EQ(sample(r, "probe_ssl_last_chain_expiry_timestamp_seconds"), not_after);
    EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  }
}

TEST_F(HttpProbeTest, HttpsExpiredCertificateFailsButReportsExpiry) {
  const std::string port = serve_tls("expired");
  ProbeResult r =
      run("https://127.0.0.1:" + port + "/ok", "tls_ca_file = \"" + cert("ca.pem") + "\"");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "TLS: certificate has expired");
  const double not_after = openssl_not_after(cert("expired.pem"));
  EXPECT_LT(not_after, static_cast<double>(std::time(nullptr)));
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"), not_after);
  EXPECT_EQ(sample(r, "probe_http_ssl"), 0);
}

TEST_F(HttpProbeTest, HttpsSelfSignedFailsUnlessInsecure) {
  const std::string port = serve_tls("selfsigned");
  const std::string url = "https://127.0.0.1:" + port + "/ok";
  ProbeResult r = run(url, "tls_ca_file = \"" + cert("ca.pem") + "\"");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "TLS: self-signed certificate");
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), openssl_not_after(cert("selfsigned.pem")));

  r = run(url, "tls_insecure = true");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), openssl_not_after(cert("selfsigned.pem")));
}

TEST_F(HttpProbeTest, HttpsWrongHostFailsUnlessServerNameMatches) {
  const std::string port = serve_tls("wronghost");
  const std::string url = "https://127.0.0.1:" + port + "/echo";
  const std::string ca = "tls_ca_file = \"" + cert("ca.pem") + "\"\n";
  ProbeResult r = run(url, ca);
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.summary, StartsWith("TLS: "));
  EXPECT_THAT(r.summary, HasSubstr("127.0.0.1"));
  EXPECT_EQ(sample(r, "wacht_ssl_leaf_cert_expiry_timestamp_seconds"),
            openssl_not_after(cert("wronghost.pem")));

  // The certificate is right for another name: verify against that name,
  // connect to the target, and keep the target in the Host header.
  r = run(url, ca + "tls_server_name = \"wrong.example.org\"\n" +
                   "body_must_match = [\"(?m)^header host: 127.0.0.1:" + port + "$\"]");
  EXPECT_TRUE(r.success) << r.summary;
}

TEST_F(HttpProbeTest, HttpsExpiringSoonSucceedsAndReportsExpiry) {
  const std::string port = serve_tls("expiring");
  ProbeResult r =
      run("https://localhost:" + port + "/ok", "tls_ca_file = \"" + cert("ca.pem") + "\"");
  EXPECT_TRUE(r.success) << r.summary;
  const double not_after = openssl_not_after(cert("expiring.pem"));
  EXPECT_EQ(sample(r, "probe_ssl_earliest_cert_expiry"), not_after);
  // The shared certificates are up to a day old.
  const double now = static_cast<double>(std::time(nullptr));
  EXPECT_GT(not_after, now + 2 * 86400 - 3600);
  EXPECT_LT(not_after, now + 3 * 86400 + 3600);
}

TEST_F(HttpProbeTest, HttpsRedirectToHttpReportsTheFinalHop) {
  const std::string plain = serve();
  const std::string port = serve_tls("valid");
  ProbeResult r =
      run("https://127.0.0.1:" + port + "/redirect-to?url=http://127.0.0.1:" + plain + "/ok",
          "tls_ca_file = \"" + cert("ca.pem") + "\"");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_http_redirects"), 1);
  EXPECT_EQ(sample(r, "probe_http_ssl"), 0);
  EXPECT_FALSE(sample(r, "probe_ssl_earliest_cert_expiry"));
  EXPECT_FALSE(sample(r, "probe_tls_version_info", "TLS 1.3"));
}

TEST_F(HttpProbeTest, HttpsClientCertificate) {
  const std::string port = serve(
      {"--cert", cert("valid.pem"), "--key", cert("valid.key"), "--client-ca", cert("ca.pem")});
  const std::string url = "https://localhost:" + port + "/ok";
  const std::string ca = "tls_ca_file = \"" + cert("ca.pem") + "\"\n";
  ProbeResult r = run(url, ca);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "TLS: tlsv13 alert certificate required");

  r = run(url, ca + "tls_cert_file = \"" + cert("client.pem") + "\"\ntls_key_file = \"" +
                   cert("client.key") + "\"");
  EXPECT_TRUE(r.success) << r.summary;
}

// --- basic auth -------------------------------------------------------------

TEST_F(HttpProbeTest, BasicAuthReadsPasswordFromFileAndNeverShowsIt) {
  const std::string password = "s3cret-Pa55w0rd";
  const std::string port = serve({"--auth", "admin:" + password});
  const std::string url = "http://127.0.0.1:" + port + "/auth";
  const std::string good = write_file("good", password + "\n");
  ProbeResult r =
      run(url, "basic_auth_user = \"admin\"\nbasic_auth_password_file = \"" + good + "\"");
  EXPECT_TRUE(r.success) << r.summary;

  const std::string bad = write_file("bad", "not-" + password + "\n");
  r = run(url, "basic_auth_user = \"admin\"\nbasic_auth_password_file = \"" + bad + "\"");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "HTTP 401 Unauthorized (expected 2xx)");
  EXPECT_THAT(r.summary, Not(HasSubstr(password)));
  for (const auto& s : r.samples) EXPECT_THAT(s.label_value, Not(HasSubstr(password)));

  r = run(url);
  EXPECT_EQ(r.summary, "HTTP 401 Unauthorized (expected 2xx)");
}

// --- the direct client ------------------------------------------------------
// http:// to an IP address runs on wacht's own client, not libcurl. Each case
// below gets one canned response and is run both ways: to 127.0.0.1 (direct)
// and to localhost (a name, so libcurl); the two must agree.

// A 200 response with the body "ok" whose header lines, status line and blank
// line included, add up to `bytes`, in lines of about 100 bytes.
std::string padded(size_t bytes) {
  std::string head = "HTTP/1.1 200 OK\r\n";
  const std::string tail = "Content-Length: 2\r\n\r\n";
  size_t left = bytes - head.size() - tail.size();
  for (size_t n = 100 + left % 100; left > 0; left -= n, n = 100)
    head += "X-Pad: " + std::string(n - 9, 'a') + "\r\n";
  return head + tail + "ok";
}

// A 200 response with the body "ok" and one header line of `bytes`, CRLF included.
std::string long_line(size_t bytes) {
  return "HTTP/1.1 200 OK\r\nX-Big: " + std::string(bytes - 9, 'a') +
         "\r\nContent-Length: 2\r\n\r\nok";
}

const std::string kChunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

struct CannedCase {
  const char* name;
  std::string response;  // a NUL splits it into writes 50 ms apart
  bool keep_open;
  bool success;
  std::string summary;  // exact, or a prefix ending in '*'
  double body_length;
  double content_length;
  double http_version;
  std::string keys = "";
};

void PrintTo(const CannedCase& c, std::ostream* os) { *os << c.name; }

class HttpDirectTest : public HttpProbeTest, public ::testing::WithParamInterface<CannedCase> {};

TEST_P(HttpDirectTest, AgreesWithLibcurl) {
  const CannedCase& c = GetParam();
  const std::string port = serve_canned(c.response, c.keep_open).first_line();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    double start = test::now_seconds();
    ProbeResult r = run(url(host, port, "/x"), c.keys, 3s);
    EXPECT_LT(test::now_seconds() - start, 2.0) << "waited for the server to close";
    EXPECT_EQ(r.success, c.success) << r.summary;
    if (c.summary.ends_with('*')) {
      EXPECT_THAT(r.summary, StartsWith(c.summary.substr(0, c.summary.size() - 1)));
    } else if (c.success) {
      EXPECT_THAT(r.summary, StartsWith(c.summary));
    } else {
      EXPECT_EQ(r.summary, c.summary);
    }
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), c.body_length);
    EXPECT_EQ(sample(r, "probe_http_content_length"), c.content_length);
    EXPECT_EQ(sample(r, "probe_http_version"), c.http_version);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Http, HttpDirectTest,
    ::testing::Values(
        CannedCase{"ContentLengthOnKeptOpenConnection",
                   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, true,
                   "HTTP 200 OK in ", 5, 5, 1.1},
        CannedCase{"Chunked",
                   kChunked + "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n", true,
                   true, "HTTP 200 OK in ", 11, -1, 1.1},
        CannedCase{"Http10UntilClose", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nabc", false, true,
                   "HTTP 200 OK in ", 3, -1, 1.0},
        CannedCase{"InterimResponseSkipped",
                   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", true, true,
                   "HTTP 204 No Content in ", 0, 0, 1.1},
        CannedCase{"BareLineFeeds", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, true,
                   "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"MixedLineEnds", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\n\r\nok", true,
                   true, "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"NoReasonPhrase", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true, true,
                   "HTTP 200 in ", 0, 0, 1.1},
        CannedCase{"TruncatedBody", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false,
                   false, "transfer closed with 7 bytes remaining to read", 3, 10, 1.1},
        CannedCase{"EmptyReply", "", false, false, "empty reply from server", 0, 0, 0},
        CannedCase{"StatusLineCutShort", "HTTP/1.1 200 O", false, false, "empty reply from server",
                   0, 0, 0},
        // libcurl takes the complete lines for the response.
        CannedCase{"HeadersCutShort", "HTTP/1.1 200 OK\r\nContent-Len", false, true,
                   "HTTP 200 OK in ", 0, -1, 1.1},
        CannedCase{"HeadersCutShortAfterContentLength", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",
                   false, false, "transfer closed with 2 bytes remaining to read", 0, -1, 1.1},
        CannedCase{"NotHttp", "SSH-2.0-OpenSSH_9.2\r\n", false, false, "not an HTTP response (*", 0,
                   0, 0},
        CannedCase{"ServerError", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                   false, false, "HTTP 500 Internal Server Error (expected 2xx)", 0, 0, 1.1},
        // Reads split anywhere.
        CannedCase{"SplitStatusLine", "HT\0TP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"s, true,
                   true, "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"SplitHeaderEnd", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\0\r\0\no\0k"s, true,
                   true, "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"SplitChunks",
                   kChunked + "\0"
                              "5\0 ;e\0xt\r\0\nhel\0lo\r\0\n0\r\n\0\r\n"s,
                   true, true, "HTTP 200 OK in ", 5, -1, 1.1},
        CannedCase{"ClosedInAChunk", kChunked + "5\r\nhel", false, false,
                   "transfer closed with outstanding read data remaining", 3, -1, 1.1},
        // Chunk-size lines as libcurl reads them.
        CannedCase{"ChunkExtensionAfterSpace", kChunked + "5 ;ext=1\r\nhello\r\n0\r\n\r\n", true,
                   true, "HTTP 200 OK in ", 5, -1, 1.1},
        CannedCase{"ChunkSizeAfterSpace", kChunked + " 5\r\nhello\r\n0\r\n\r\n", true, false,
                   "illegal or missing hexadecimal sequence in chunked-encoding", 0, -1, 1.1},
        // Transfer-Encoding and Content-Length.
        CannedCase{"ChunkedOverridesContentLength",
                   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\n0\r\n\r\n",
                   true, true, "HTTP 200 OK in ", 5, -1, 1.1},
        CannedCase{
            "ChunkedOnAnEarlierLine",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
            "Content-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            true, true, "HTTP 200 OK in ", 5, -1, 1.1},
        CannedCase{
            "OtherCodingReadsUntilClose",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 3\r\n\r\nhello",
            false, true, "HTTP 200 OK in ", 5, -1, 1.1},
        // libcurl decodes gzip, and fails here on bytes that are not gzip.
        CannedCase{
            "ChunkedThenGzip",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            false, false, "error while processing content unencoding: incorrect header check", 0,
            -1, 1.1},
        CannedCase{"LastContentLengthCounts",
                   "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 5\r\n\r\nhello world",
                   false, true, "HTTP 200 OK in ", 5, 5, 1.1},
        CannedCase{"ContentLengthReadAsANumberPrefix",
                   "HTTP/1.1 200 OK\r\nContent-Length: +5 bytes\r\n\r\nhello world", false, true,
                   "HTTP 200 OK in ", 5, 5, 1.1},
        CannedCase{"InvalidContentLength", "HTTP/1.1 200\r\nContent-Length: abc\r\n\r\nhello",
                   false, false, "invalid Content-Length: value", 0, -1, 1.1},
        CannedCase{"OverflowingContentLength",
                   "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nhello", false,
                   false, "body larger than 10485760 bytes", 0, -1, 1.1},
        CannedCase{"NoContentIgnoresContentLength",
                   "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", true, true,
                   "HTTP 204 No Content in ", 0, 0, 1.1},
        CannedCase{"NotModifiedIgnoresInvalidContentLength",
                   "HTTP/1.1 304 Not Modified\r\nContent-Length: abc\r\n\r\n", true, true,
                   "HTTP 304 Not Modified in ", 0, 0, 1.1, "valid_status = [304]"},
        CannedCase{"HeadWithHugeContentLength",
                   "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", true, true,
                   "HTTP 200 OK in ", 0, 99999999999, 1.1, "method = \"HEAD\""},
        CannedCase{"HeadWithOverflowingContentLength",
                   "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", true, true,
                   "HTTP 200 OK in ", 0, -1, 1.1, "method = \"HEAD\""},
        // libcurl's limits: 100 KiB a line with its NUL, 300 KiB in all.
        CannedCase{"ManyShortHeaderLines", padded(120 * 1024), false, true, "HTTP 200 OK in ", 2, 2,
                   1.1},
        CannedCase{"HeadersOf300KiB", padded(300 * 1024), false, true, "HTTP 200 OK in ", 2, 2,
                   1.1},
        CannedCase{"HeadersOver300KiB", padded(300 * 1024 + 1), false, false,
                   "response headers larger than 300 KiB", 0, 2, 1.1},
        CannedCase{"HeaderLineUnder100KiB", long_line(100 * 1024 - 1), false, true,
                   "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"HeaderLineOf100KiB", long_line(100 * 1024), false, false,
                   "response header line of 100 KiB or more", 0, -1, 1.1}),
    [](const auto& info) { return std::string(info.param.name); });

// The requests a canned server received, in order.
std::vector<std::string> requests(const test::ChildProcess& server) {
  std::vector<std::string> out;
  const std::string log = server.stderr_text();
  for (size_t at = 0, end; (end = log.find("--\n", at)) != std::string::npos; at = end + 3)
    out.push_back(log.substr(at, end - at));
  return out;
}

TEST_F(HttpProbeTest, DirectRequestCarriesTheHeadersLibcurlWouldSend) {
  test::ChildProcess& server = serve_canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const std::string port = server.first_line();
  const std::string keys = R"(method = "OPTIONS"
headers = { X-Probe = "yes", Accept = "text/plain", X-Empty = "" })";
  for (const std::string host : kHosts) {
    ProbeResult r = run(url(host, port, "/a/../p?q=1#frag"), keys);
    EXPECT_TRUE(r.success) << r.summary;
  }
  // Two requests, the direct one first; after normalising the Host header they are equal.
  std::vector<std::string> got = requests(server);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[0], StartsWith("OPTIONS /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n"));
  got[1].replace(got[1].find("localhost"), 9, "127.0.0.1");
  EXPECT_EQ(got[0], got[1]);
  EXPECT_THAT(got[0], HasSubstr("\r\nX-Empty:\r\n"));
  EXPECT_THAT(got[0], HasSubstr("\r\nAccept: text/plain\r\n"));
  EXPECT_THAT(got[0], Not(HasSubstr("*/*")));
}

// After a direct hop, libcurl starts at the redirect as if it were the first
// request; it must still send what it sends when it follows a redirect itself.
TEST_F(HttpProbeTest, DirectRedirectHandsOverWhatLibcurlWouldSend) {
  const std::string keys =
      R"(headers = { Authorization = "Bearer s3cret", Cookie = "id=s3cret", Host = "example.org", X-Probe = "yes" }
max_redirects = 1)";
  auto redirect_to = [](const std::string& location) {
    return "HTTP/1.1 302 Found\r\nLocation: " + location + "\r\nContent-Length: 0\r\n\r\n";
  };
  const std::string ok = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

  // Another host: no custom Host, Authorization or Cookie there.
  test::ChildProcess& other = serve_canned(ok, false, "127.0.0.2");
  const std::string to_other = "http://127.0.0.2:" + other.first_line() + "/b";
  const std::string port = serve_canned(redirect_to(to_other)).first_line();
  for (const std::string host : kHosts) {
    ProbeResult r = run(url(host, port, "/a"), keys);
    EXPECT_TRUE(r.success) << host << ": " << r.summary;
  }
  std::vector<std::string> got = requests(other);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], got[1]);
  EXPECT_THAT(got[0], HasSubstr("\r\nHost: 127.0.0.2:" + other.first_line() + "\r\n"));
  EXPECT_THAT(got[0], HasSubstr("\r\nX-Probe: yes\r\n"));
  EXPECT_THAT(got[0], Not(HasSubstr("s3cret")));
  EXPECT_THAT(got[0], Not(HasSubstr("example.org")));

  // The same host on another port: the custom Host stays, the credentials do not.
  test::ChildProcess& same_host = serve_canned(ok);
  for (const std::string host : kHosts) {
    const std::string from =
        serve_canned(redirect_to(url(host, same_host.first_line(), "/b"))).first_line();
    ProbeResult r = run(url(host, from, "/a"), keys);
    EXPECT_TRUE(r.success) << host << ": " << r.summary;
  }
  got = requests(same_host);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], got[1]);
  EXPECT_THAT(got[0], HasSubstr("\r\nHost: example.org\r\n"));
  EXPECT_THAT(got[0], Not(HasSubstr("s3cret")));

  // The same origin: everything stays (and the second redirect is one too many).
  test::ChildProcess& same = serve_canned(redirect_to("/b"));
  for (const std::string host : kHosts) {
    EXPECT_EQ(run(url(host, same.first_line(), "/a"), keys).summary, "more than 1 redirects")
        << host;
  }
  got = requests(same);
  ASSERT_EQ(got.size(), 4u);
  EXPECT_EQ(got[1], got[3]);
  EXPECT_THAT(got[1], StartsWith("GET /b HTTP/1.1\r\nHost: example.org\r\n"));
  EXPECT_THAT(got[1], HasSubstr("\r\nAuthorization: Bearer s3cret\r\n"));
  EXPECT_THAT(got[1], HasSubstr("\r\nCookie: id=s3cret\r\n"));
}

TEST_F(HttpProbeTest, DirectRedirectTakesTheFirstLocationAsLibcurl) {
  test::ChildProcess& target = serve_canned("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
  const std::string to = "http://127.0.0.1:" + target.first_line();
  // An empty Location does not count; a space is sent percent-encoded.
  const std::string port =
      serve_canned("HTTP/1.1 302 Found\r\nLocation:\r\nLocation: " + to +
                   "/a b\r\nLocation: " + to + "/second\r\nContent-Length: 0\r\n\r\n")
          .first_line();
  for (const std::string host : kHosts) {
    SCOPED_TRACE(host);
    ProbeResult r = run(url(host, port, "/"));
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_redirects"), 1);
  }
  std::vector<std::string> got = requests(target);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_THAT(got[0], StartsWith("GET /a%20b HTTP/1.1\r\n"));
  EXPECT_EQ(got[0], got[1]);
}

// --- configuration ----------------------------------------------------------

TEST(HttpProbeConfig, DefaultsParse) {
  auto p = parse_check("https://example.org/", "");
  EXPECT_TRUE(p->spec);
  EXPECT_FALSE(p->diag.has_errors()) << p->diag.render();
}

TEST(HttpProbeConfig, TargetMustBeAnHttpUrlWithHost) {
  struct Case {
    std::string target;
    std::string message;
  } cases[] = {
      {"example.org", "'example.org' is not a URL; write it as 'https://example.org'"},
      {"ftp://example.org/", "must be an http:// or https:// URL"},
      {"http://", "is not a valid URL: No host part in the URL"},
      {"http://exa mple.org/", "is not a valid URL"},
      {"https://admin:hunter2@example.org/", "credentials in the URL"},
  };
  for (const auto& c : cases) {
    auto p = parse_check(c.target, "method = \"GET\"");
    EXPECT_FALSE(p->spec) << c.target;
    ASSERT_EQ(p->diag.all().size(), 1u) << p->diag.render();
    const auto& d = p->diag.all()[0];
    EXPECT_EQ(d.loc.line, 2u) << c.target;
    EXPECT_EQ(d.loc.column, 10u) << c.target;
    EXPECT_THAT(d.message, HasSubstr(c.message));
    EXPECT_THAT(d.message, StartsWith("check 'web': "));
    EXPECT_THAT(d.message, Not(HasSubstr("hunter2")));
  }
}

TEST(HttpProbeConfig, InvalidRegexIsReportedAtItsKey) {
  auto p = parse_check("http://127.0.0.1/",
                       "method = \"GET\"\nbody_must_match = [\"ok\", \"(unclosed\"]");
  EXPECT_FALSE(p->spec);
  ASSERT_EQ(p->diag.all().size(), 1u) << p->diag.render();
  const auto& d = p->diag.all()[0];
  EXPECT_EQ(d.loc.line, 4u);
  EXPECT_EQ(d.loc.column, 19u);
  EXPECT_THAT(d.message, HasSubstr("invalid regular expression \"(unclosed\" in 'body_must_match': "
                                   "missing closing parenthesis"));
  EXPECT_THAT(p->diag.render(), HasSubstr("checks.toml:4:19: error:"));
}

TEST(HttpProbeConfig, UnreadablePasswordFileNamesTheFileOnly) {
  const std::string dir = test::make_temp_dir();
  auto p = parse_check("http://127.0.0.1/",
                       "basic_auth_user = \"admin\"\n"
                       "basic_auth_password_file = \"" +
                           dir + "/missing\"");
  EXPECT_FALSE(p->spec);
  ASSERT_EQ(p->diag.all().size(), 1u) << p->diag.render();
  EXPECT_EQ(p->diag.all()[0].loc.line, 4u);
  EXPECT_THAT(p->diag.all()[0].message, HasSubstr("cannot read password file '" + dir +
                                                  "/missing': No such file or directory"));

  // A directory opens but cannot be read.
  p = parse_check("http://127.0.0.1/",
                  "basic_auth_user = \"admin\"\n"
                  "basic_auth_password_file = \"" +
                      dir + "\"");
  EXPECT_FALSE(p->spec);
  ASSERT_EQ(p->diag.all().size(), 1u) << p->diag.render();
  EXPECT_THAT(p->diag.all()[0].message, HasSubstr("cannot read password file '" + dir + "'"));

  // Problems other than reading must not quote the file either.
  const std::string file = dir + "/password";
  std::ofstream(file) << "topsecret\n";
  p = parse_check("http://127.0.0.1/", "basic_auth_password_file = \"" + file + "\"");
  EXPECT_FALSE(p->spec);
  EXPECT_THAT(p->diag.render(), HasSubstr("'basic_auth_password_file' needs 'basic_auth_user'"));
  EXPECT_THAT(p->diag.render(), Not(HasSubstr("topsecret")));
  std::filesystem::remove_all(dir);
}

TEST(HttpProbeConfig, ReportsEveryProblemAtItsLine) {
  auto p = parse_check("http://127.0.0.1/", R"(method = "GET ME"
ip_protocol = "ipv4"
valid_status = [200, 99]
max_redirects = -1
headers = { "Bad Name" = "x" }
tls_ca_file = "/nonexistent/ca.pem"
follow_redirects = "yes"
max_body_bytes = 0)");
  EXPECT_FALSE(p->spec);
  std::vector<std::pair<unsigned, std::string>> got;
  for (const auto& d : p->diag.all()) got.emplace_back(d.loc.line, d.message);
  ASSERT_EQ(got.size(), 8u) << p->diag.render();
  auto expect = [&](unsigned line, const std::string& text) {
    bool found = false;
    for (const auto& [l, m] : got) found |= l == line && m.find(text) != std::string::npos;
    EXPECT_TRUE(found) << "line " << line << ": " << text << "\n" << p->diag.render();
  };
  expect(3, "'GET ME' is not an HTTP method");
  expect(4, "'ip_protocol' must be \"any\", \"ip4\" or \"ip6\", not \"ipv4\"");
  expect(5, "must be between 100 and 599, not 99");
  expect(6, "'max_redirects' must be between 0 and 100");
  expect(7, "'Bad Name' is not a valid header name");
  expect(8, "cannot read '/nonexistent/ca.pem' (tls_ca_file): No such file or directory");
  expect(9, "'follow_redirects' must be true or false");
  expect(10, "'max_body_bytes' must be between 1 and");
}

TEST(HttpProbeConfig, EveryKeyIsDocumented) {
  for (const auto& k : http_probe_type().keys) {
    EXPECT_FALSE(k.type.empty()) << k.name;
    EXPECT_GT(k.help.size(), 20u) << k.name;
  }
}

}  // namespace
}  // namespace wacht::probes
