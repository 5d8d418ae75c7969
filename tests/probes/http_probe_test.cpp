#include "probes/http_probe.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <toml++/toml.h>
#include <cstdio>
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

TEST_F(HttpProbeTest, OkReportsSuccessAndEverySample) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/ok");
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

TEST_F(HttpProbeTest, ProcessingPhaseMeasuresServerTime) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/slow/300");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_GE(*sample(r, "probe_http_duration_seconds", "processing"), 0.29);
  EXPECT_GE(r.duration_seconds, 0.29);
}

TEST_F(HttpProbeTest, StatusOutside2xxFails) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/status/503");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "HTTP 503 Service Unavailable (expected 2xx)");
  EXPECT_EQ(sample(r, "probe_http_status_code"), 503);
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);
}

TEST_F(HttpProbeTest, ValidStatusReplaces2xx) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/status/404", "valid_status = [404, 410]");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(r.summary.substr(0, 22), "HTTP 404 Not Found in ");

  r = run("http://127.0.0.1:" + port + "/ok", "valid_status = [404, 410]");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "HTTP 200 OK (expected 404, 410)");
}

TEST_F(HttpProbeTest, BodyMustMatch) {
  const std::string port = serve();
  const std::string url = "http://127.0.0.1:" + port + "/ok";
  ProbeResult r = run(url, R"(body_must_match = ["wacht test", "^hello"])");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 0);

  r = run(url, R"(body_must_match = ["wacht", "Anmelden"])");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_EQ(r.summary, "body does not match \"Anmelden\"");
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
  EXPECT_EQ(sample(r, "probe_http_status_code"), 200);
}

TEST_F(HttpProbeTest, BodyMustNotMatch) {
  const std::string port = serve();
  const std::string url = "http://127.0.0.1:" + port + "/ok";
  ProbeResult r = run(url, R"(body_must_not_match = ["Fehler", "(?i)maintenance"])");
  EXPECT_TRUE(r.success) << r.summary;

  r = run(url, R"(body_must_not_match = ["Fehler", "(?i)HELLO"])");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "body matches \"(?i)HELLO\"");
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
}

TEST_F(HttpProbeTest, CatastrophicRegexFailsQuicklyInsteadOfHanging) {
  const std::string port = serve();
  double start = test::now_seconds();
  ProbeResult r =
      run("http://127.0.0.1:" + port + "/big/50000", R"(body_must_match = ["(y+)+[^y]"])");
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.summary, StartsWith("body check \"(y+)+[^y]\" failed: "));
  EXPECT_EQ(sample(r, "probe_failed_due_to_regex"), 1);
  EXPECT_LT(test::now_seconds() - start, 3.0);
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
  ProbeResult r = run("http://127.0.0.1:" + port + "/ok", R"(method = "HEAD")");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), 0);
  EXPECT_EQ(sample(r, "probe_http_content_length"), kOkBody.size());

  // The declared length of a body that is not sent is no reason to fail.
  r = run("http://127.0.0.1:" + port + "/big/5000", "method = \"HEAD\"\nmax_body_bytes = 1000");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_http_content_length"), 5000);
}

TEST_F(HttpProbeTest, ReportsLastModified) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/last-modified");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_http_last_modified_timestamp_seconds"), 1445412480);
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
  ProbeResult r = run("http://127.0.0.1:" + port + "/redirect/3");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, MatchesRegex("HTTP 200 OK in [0-9]+ ms after 3 redirects"));
  EXPECT_EQ(sample(r, "probe_http_redirects"), 3);
  // Only the final response's body is read.
  EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), kOkBody.size());
}

TEST_F(HttpProbeTest, RedirectNotFollowedIsTheFinalResponse) {
  const std::string port = serve();
  const std::string url = "http://127.0.0.1:" + port + "/redirect/1";
  ProbeResult r = run(url, "follow_redirects = false");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "HTTP 302 Found (expected 2xx)");
  EXPECT_EQ(sample(r, "probe_http_redirects"), 0);

  r = run(url, "follow_redirects = false\nvalid_status = [302]");
  EXPECT_TRUE(r.success) << r.summary;
}

TEST_F(HttpProbeTest, RedirectLimit) {
  const std::string port = serve();
  const std::string url = "http://127.0.0.1:" + port + "/redirect/3";
  ProbeResult r = run(url, "max_redirects = 2");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "more than 2 redirects");

  r = run(url, "max_redirects = 3");
  EXPECT_TRUE(r.success) << r.summary;
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
  ProbeResult r = run("http://127.0.0.1:" + port + "/reset");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "connection reset by peer");
}

TEST_F(HttpProbeTest, GarbageIsNotHttp) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/garbage");
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.summary, StartsWith("not an HTTP response ("));
  EXPECT_EQ(sample(r, "probe_http_status_code"), 0);
}

TEST_F(HttpProbeTest, UnboundedBodyIsCappedWithoutReadingFurther) {
  const std::string port = serve();
  double start = test::now_seconds();
  ProbeResult r = run("http://127.0.0.1:" + port + "/huge", "max_body_bytes = 1048576");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "body larger than 1048576 bytes");
  EXPECT_LE(*sample(r, "probe_http_uncompressed_body_length"), 1048576);
  EXPECT_LT(test::now_seconds() - start, 3.0);
}

TEST_F(HttpProbeTest, DeclaredBodyLengthAboveTheLimitFails) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/big/5000", "max_body_bytes = 1000");
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "body larger than 1000 bytes");

  r = run("http://127.0.0.1:" + port + "/big/1000", "max_body_bytes = 1000");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), 1000);
}

TEST_F(HttpProbeTest, CancelStopsAHangingRunWithoutDone) {
  const std::string port = serve();
  make_probe("http://127.0.0.1:" + port + "/hang");
  int calls = 0;
  probe_->start([&](const ProbeResult&) { ++calls; });
  ASSERT_TRUE(run_until([&] { return probe_->phase() == "waiting for response"; }));
  probe_->cancel();
  EXPECT_EQ(probe_->phase(), "idle");
  EXPECT_EQ(curl_->running(), 0u);
  run_for(200);
  EXPECT_EQ(calls, 0);
  // TearDown asserts that no uv handle was left open.
}

TEST_F(HttpProbeTest, DestroyingARunningProbeNeverCallsDone) {
  const std::string port = serve();
  make_probe("http://127.0.0.1:" + port + "/hang");
  int calls = 0;
  probe_->start([&](const ProbeResult&) { ++calls; });
  ASSERT_TRUE(run_until([&] { return probe_->phase() == "waiting for response"; }));
  probe_.reset();
  EXPECT_EQ(curl_->running(), 0u);
  run_for(200);
  EXPECT_EQ(calls, 0);
}

TEST_F(HttpProbeTest, CurlTimeoutIsASafetyNet) {
  const std::string port = serve();
  ProbeResult r = run("http://127.0.0.1:" + port + "/hang", "", 300ms);
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.summary, "timed out after 300 ms while waiting for response");
}

TEST_F(HttpProbeTest, ProbeMayBeDestroyedInsideItsDoneCallback) {
  const std::string port = serve();
  make_probe("http://127.0.0.1:" + port + "/ok");
  bool done = false;
  probe_->start([&](const ProbeResult& r) {
    EXPECT_TRUE(r.success) << r.summary;
    probe_.reset();
    done = true;
  });
  ASSERT_TRUE(run_until([&] { return done; }));
}

TEST_F(HttpProbeTest, EveryRunUsesAFreshConnectionAndFreshState) {
  const std::string port = serve();
  make_probe("http://127.0.0.1:" + port + "/redirect/1");
  for (int i = 0; i < 3; ++i) {
    ProbeResult r = run_probe();
    EXPECT_TRUE(r.success) << r.summary;
    EXPECT_EQ(sample(r, "probe_http_uncompressed_body_length"), kOkBody.size());
    EXPECT_EQ(sample(r, "probe_http_redirects"), 1);
  }
  // 3 runs of 2 requests each, each on its own connection, plus this request.
  test::HttpResponse stats = test::http_get(std::stoi(port), "/stats");
  EXPECT_EQ(stats.body, "connections 7\n");
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

// A server that answers every connection with the same bytes after reading the
// request headers, writes each request to stderr, and closes (or, with
// keep_open, waits for the client to close first).
std::vector<std::string> canned_server(const std::string& response, bool keep_open = false) {
  std::string hex;
  for (unsigned char c : response) {
    static const char* digits = "0123456789abcdef";
    hex += digits[c >> 4];
    hex += digits[c & 15];
  }
  static const char* script = R"PY(
import socket, sys, threading
resp, keep_open = bytes.fromhex(sys.argv[1]), sys.argv[2] == "1"
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0))
s.listen(16)
print(s.getsockname()[1], flush=True)
def serve(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(65536)
        if not d:
            break
        data += d
    sys.stderr.write(data.decode("latin-1") + "--\n")
    sys.stderr.flush()
    c.sendall(resp)
    if keep_open:
        c.settimeout(10)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)PY";
  return {"/usr/bin/python3", "-c", script, hex, keep_open ? "1" : "0"};
}

struct CannedCase {
  const char* name;
  std::string response;
  bool keep_open;
  bool success;
  std::string summary;  // exact, or a prefix ending in '*'
  double body_length;
  double content_length;
  double http_version;
};

class HttpDirectTest : public HttpProbeTest, public ::testing::WithParamInterface<CannedCase> {};

TEST_P(HttpDirectTest, AgreesWithLibcurl) {
  const CannedCase& c = GetParam();
  servers_.push_back(std::make_unique<test::ChildProcess>(canned_server(c.response, c.keep_open)));
  const std::string port = servers_.back()->first_line();
  for (const char* host : {"127.0.0.1", "localhost"}) {
    SCOPED_TRACE(host);
    double start = test::now_seconds();
    ProbeResult r = run(std::string("http://") + host + ":" + port + "/x", "", 3s);
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
    Responses, HttpDirectTest,
    ::testing::Values(
        CannedCase{"ContentLengthOnKeptOpenConnection",
                   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", true, true,
                   "HTTP 200 OK in ", 5, 5, 1.1},
        CannedCase{"Chunked",
                   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                   "6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
                   true, true, "HTTP 200 OK in ", 11, -1, 1.1},
        CannedCase{"Http10UntilClose", "HTTP/1.0 200 OK\r\nServer: old\r\n\r\nabc", false, true,
                   "HTTP 200 OK in ", 3, -1, 1.0},
        CannedCase{"InterimResponseSkipped",
                   "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n", true, true,
                   "HTTP 204 No Content in ", 0, 0, 1.1},
        CannedCase{"BareLineFeeds", "HTTP/1.1 200 OK\nContent-Length: 2\n\nok", false, true,
                   "HTTP 200 OK in ", 2, 2, 1.1},
        CannedCase{"TruncatedBody", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false,
                   false, "transfer closed with 7 bytes remaining to read", 3, 10, 1.1},
        CannedCase{"EmptyReply", "", false, false, "empty reply from server", 0, 0, 0},
        CannedCase{"NotHttp", "SSH-2.0-OpenSSH_9.2\r\n", false, false, "not an HTTP response (*", 0,
                   0, 0},
        CannedCase{"ServerError", "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                   false, false, "HTTP 500 Internal Server Error (expected 2xx)", 0, 0, 1.1}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(HttpProbeTest, DirectRequestCarriesTheHeadersLibcurlWouldSend) {
  servers_.push_back(std::make_unique<test::ChildProcess>(
      canned_server("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")));
  const std::string port = servers_.back()->first_line();
  const std::string keys = R"(method = "OPTIONS"
headers = { X-Probe = "yes", Accept = "text/plain", X-Empty = "" })";
  for (const char* host : {"127.0.0.1", "localhost"}) {
    ProbeResult r = run(std::string("http://") + host + ":" + port + "/a/../p?q=1#frag", keys);
    EXPECT_TRUE(r.success) << r.summary;
  }
  std::string log = servers_.back()->stderr_text();
  // Two requests, the direct one first; after normalising the Host header they are equal.
  size_t mid = log.find("--\n");
  ASSERT_NE(mid, std::string::npos) << log;
  std::string direct = log.substr(0, mid);
  std::string curl = log.substr(mid + 3, log.find("--\n", mid + 3) - mid - 3);
  EXPECT_THAT(direct, StartsWith("OPTIONS /p?q=1 HTTP/1.1\r\nHost: 127.0.0.1:" + port + "\r\n"));
  curl.replace(curl.find("localhost"), 9, "127.0.0.1");
  EXPECT_EQ(direct, curl);
  EXPECT_THAT(direct, HasSubstr("\r\nX-Empty:\r\n"));
  EXPECT_THAT(direct, HasSubstr("\r\nAccept: text/plain\r\n"));
  EXPECT_THAT(direct, Not(HasSubstr("*/*")));
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
