#include "alerts/webhook_notifier.hpp"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "alerts/outbox.hpp"
#include "runtime/curl_multi.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"
#include "version.hpp"

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

// webhook_sink.py on 127.0.0.1 (see its header for the paths).
class Sink {
 public:
  Sink()
      : process_({"/usr/bin/python3", test::support_path("webhook_sink.py")}),
        port_(std::stoi(process_.first_line())) {}
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  json requests() const {
    test::HttpResponse r = test::http_get(port_, "/requests");
    EXPECT_EQ(r.status, 200) << process_.stderr_text();
    return r.status == 200 ? json::parse(r.body) : json::array();
  }

 private:
  test::ChildProcess process_;
  int port_;
};

// Certificates from make_certs.sh: served by http_server.py over HTTPS.
class TlsServer {
 public:
  explicit TlsServer(const std::string& cert)
      : process_({"/usr/bin/python3", test::support_path("http_server.py"), "--cert",
                  test::certs_dir() + "/" + cert + ".pem", "--key",
                  test::certs_dir() + "/" + cert + ".key"}),
        port_(std::stoi(process_.first_line())) {}
  std::string url(const std::string& path) const {
    return "https://127.0.0.1:" + std::to_string(port_) + path;
  }

 private:
  test::ChildProcess process_;
  int port_;
};

Notification make(const std::string& id) {
  Notification n;
  n.seq = 1;
  n.receiver = "hook";
  n.thread_key = "check-" + id;
  n.message_id = "<" + id + "@wacht.test>";
  n.subject = "[lup] CRITICAL: " + id;
  WebhookMessage m;
  m.receiver = "hook";
  m.group_key = "{}:{check=\"" + id + "\"}";
  m.alerts.push_back({{{"check", id}}, {{"summary", "down"}}, 1'764'125'447'000, 0, ""});
  n.body = webhook_payload(m);
  n.kind = "firing";
  return n;
}

struct Result {
  Delivery delivery = Delivery::kRetry;
  std::string detail;
  int calls = 0;
};

class WebhookTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    curl_ = std::make_unique<runtime::CurlMulti>(loop());
  }
  void TearDown() override {
    curl_.reset();
    LoopTest::TearDown();
  }

  static WebhookSettings settings(const std::string& url) {
    WebhookSettings s;
    s.url = url;
    s.timeout = 5s;
    return s;
  }
  std::unique_ptr<Notifier> notifier(WebhookSettings s) {
    return make_webhook_notifier(loop(), curl_.get(), std::move(s));
  }
  // One attempt through the notifier alone.
  Result send(const WebhookSettings& s, const Notification& n) {
    auto hook = notifier(s);
    Result r;
    hook->send(n, [&](Delivery d, std::string detail) {
      r.delivery = d;
      r.detail = std::move(detail);
      ++r.calls;
    });
    EXPECT_EQ(r.calls, 0) << "done must not fire inside send()";
    EXPECT_TRUE(run_until([&] { return r.calls > 0; }));
    EXPECT_EQ(r.calls, 1);
    return r;
  }

  std::unique_ptr<runtime::CurlMulti> curl_;
};

TEST(WebhookPayloadTest, FiringGroupHasAlertmanagersFieldsAndCommonLabels) {
  WebhookMessage m;
  m.receiver = "lup-oncall";
  m.group_key = "{}:{tenant=\"lup\"}";
  m.external_url = "http://wacht.example.org:9915";
  m.group_labels = {{"tenant", "lup"}};
  m.alerts.push_back({{{"alertname", "x"}, {"check", "c1"}, {"tenant", "lup"}},
                      {{"summary", "Portal down"}, {"runbook", "r1"}},
                      1'764'125'447'123,
                      0,
                      "http://wacht.example.org:9915/checks/c1"});
  m.alerts.push_back({{{"alertname", "y"}, {"check", "c2"}, {"tenant", "lup"}},
                      {{"summary", "Portal down"}, {"runbook", "r2"}},
                      1'764'125'400'000,
                      1'764'125'500'100,
                      ""});
  const json p = json::parse(webhook_payload(m));
  EXPECT_EQ(p["version"], "4");
  EXPECT_EQ(p["groupKey"], "{}:{tenant=\"lup\"}");
  EXPECT_EQ(p["truncatedAlerts"], 0);
  EXPECT_EQ(p["status"], "firing") << "one alert still fires";
  EXPECT_EQ(p["receiver"], "lup-oncall");
  EXPECT_EQ(p["externalURL"], "http://wacht.example.org:9915");
  EXPECT_EQ(p["groupLabels"], json({{"tenant", "lup"}}));
  EXPECT_EQ(p["commonLabels"], json({{"tenant", "lup"}}));
  EXPECT_EQ(p["commonAnnotations"], json({{"summary", "Portal down"}}));
  ASSERT_EQ(p["alerts"].size(), 2u);

  const json& firing = p["alerts"][0];
  EXPECT_EQ(firing["status"], "firing");
  EXPECT_EQ(firing["labels"], json({{"alertname", "x"}, {"check", "c1"}, {"tenant", "lup"}}));
  EXPECT_EQ(firing["annotations"], json({{"summary", "Portal down"}, {"runbook", "r1"}}));
  EXPECT_EQ(firing["startsAt"], "2025-11-26T02:50:47.123Z");
  EXPECT_EQ(firing["endsAt"], "0001-01-01T00:00:00Z");
  EXPECT_EQ(firing["generatorURL"], "http://wacht.example.org:9915/checks/c1");
  const std::string fp = firing["fingerprint"];
  EXPECT_EQ(fp.size(), 16u);
  EXPECT_EQ(fp.find_first_not_of("0123456789abcdef"), std::string::npos) << fp;

  const json& resolved = p["alerts"][1];
  EXPECT_EQ(resolved["status"], "resolved");
  EXPECT_EQ(resolved["startsAt"], "2025-11-26T02:50:00Z");
  EXPECT_EQ(resolved["endsAt"], "2025-11-26T02:51:40.1Z");
  EXPECT_EQ(resolved["generatorURL"], "");
  EXPECT_NE(resolved["fingerprint"], fp);
}

TEST(WebhookPayloadTest, GroupIsResolvedOnlyWhenEveryAlertIs) {
  WebhookMessage m;
  m.alerts.push_back({{{"check", "a"}}, {}, 1000, 2000, ""});
  m.alerts.push_back({{{"check", "b"}}, {}, 1000, 3000, ""});
  json p = json::parse(webhook_payload(m));
  EXPECT_EQ(p["status"], "resolved");
  EXPECT_EQ(p["commonLabels"], json::object()) << "same name, different values";
  EXPECT_EQ(p["commonAnnotations"], json::object());
  EXPECT_EQ(p["alerts"][0]["endsAt"], "1970-01-01T00:00:02Z");

  p = json::parse(webhook_payload(WebhookMessage{}));
  EXPECT_EQ(p["status"], "resolved");
  EXPECT_EQ(p["alerts"], json::array());
  EXPECT_EQ(p["commonLabels"], json::object());
}

TEST(WebhookPayloadTest, FingerprintIsAlertmanagers) {
  // Printed by Alertmanager 0.25 (/api/v2/alerts) for these label sets.
  EXPECT_EQ(alert_fingerprint({{"alertname", "x"}, {"check", "c1"}}), "ccdf3c9af6b5a2ac");
  EXPECT_EQ(alert_fingerprint({{"alertname", "y"}}), "d23eefc3896b6f8f");
  EXPECT_EQ(alert_fingerprint({}), "cbf29ce484222325");  // FNV-1a's offset basis
}

TEST(WebhookPayloadTest, InvalidUtf8AndQuotesStayValidJson) {
  WebhookMessage m;
  m.group_key = "{}:{check=\"a\\\"b\"}";
  m.alerts.push_back({{{"check",
                        "Gr\xc3\xb6\xc3\x9f"
                        "e \xff\xfe"}},
                      {{"q", "\"\n\\"}},
                      0,
                      0,
                      ""});
  const json p = json::parse(webhook_payload(m));
  EXPECT_EQ(p["groupKey"], "{}:{check=\"a\\\"b\"}");
  EXPECT_EQ(p["alerts"][0]["labels"]["check"], "Größe \xef\xbf\xbd\xef\xbf\xbd");
  EXPECT_EQ(p["alerts"][0]["annotations"]["q"], "\"\n\\");
  EXPECT_EQ(p["alerts"][0]["startsAt"], "1970-01-01T00:00:00Z");
}

TEST(WebhookPayloadTest, Rfc3339LikeGo) {
  EXPECT_EQ(rfc3339(1'764'125'447'000), "2025-11-26T02:50:47Z");
  EXPECT_EQ(rfc3339(1'764'125'447'120), "2025-11-26T02:50:47.12Z");
  EXPECT_EQ(rfc3339(1'764'125'447'007), "2025-11-26T02:50:47.007Z");
  EXPECT_EQ(rfc3339(-1), "1969-12-31T23:59:59.999Z");
}

TEST_F(WebhookTest, PostsTheBodyWithJsonTypeAgentIdempotencyKeyAndBearer) {
  Sink sink;
  WebhookSettings s = settings(sink.url("/hook"));
  s.bearer_token = "tok-3f9a7c1e";
  const Notification n = make("web");
  Result r = send(s, n);
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  EXPECT_NE(r.detail.find(": HTTP 200"), std::string::npos) << r.detail;
  EXPECT_EQ(r.detail.find("tok-3f9a7c1e"), std::string::npos) << r.detail;

  const json requests = sink.requests();
  ASSERT_EQ(requests.size(), 1u);
  const json& q = requests[0];
  EXPECT_EQ(q["method"], "POST");
  EXPECT_EQ(q["path"], "/hook");
  EXPECT_EQ(q["body"], n.body);
  EXPECT_EQ(q["headers"]["content-type"], "application/json");
  EXPECT_EQ(q["headers"]["user-agent"], std::string("wacht/") + kVersion);
  EXPECT_EQ(q["headers"]["idempotency-key"], "<web@wacht.test>");
  EXPECT_EQ(q["headers"]["authorization"], "Bearer tok-3f9a7c1e");
  EXPECT_FALSE(q["headers"].contains("expect"));
  EXPECT_EQ(json::parse(q["body"].get<std::string>())["alerts"][0]["labels"]["check"], "web");

  // Without a token there is no Authorization header.
  r = send(settings(sink.url("/hook")), make("anon"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  ASSERT_EQ(sink.requests().size(), 2u);
  EXPECT_FALSE(sink.requests()[1]["headers"].contains("authorization"));
}

TEST_F(WebhookTest, StatusDecidesDeliveredRetryOrRejected) {
  Sink sink;
  const std::vector<std::pair<int, Delivery>> cases = {
      {200, Delivery::kDelivered}, {204, Delivery::kDelivered}, {500, Delivery::kRetry},
      {503, Delivery::kRetry},     {429, Delivery::kRetry},     {408, Delivery::kRetry},
      {400, Delivery::kRejected},  {404, Delivery::kRejected},  {302, Delivery::kRetry},
  };
  for (const auto& [status, expected] : cases) {
    const std::string code = std::to_string(status);
    Result r = send(settings(sink.url("/status/" + code)), make("s" + code));
    EXPECT_EQ(r.delivery, expected) << status << ": " << r.detail;
    const std::string server = sink.url("");
    EXPECT_EQ(r.detail.rfind(server + ": HTTP " + code, 0), 0u) << r.detail;
    if (status != 204) {
      EXPECT_NE(r.detail.find("HTTP " + code + ": status " + code), std::string::npos) << r.detail;
    }
    EXPECT_EQ(r.detail.find("/status"), std::string::npos) << "the URL path stays out";
  }
}

TEST_F(WebhookTest, HangingReceiverIsRetriedAfterTheTimeout) {
  Sink sink;
  WebhookSettings s = settings(sink.url("/hang"));
  s.timeout = 300ms;
  const double start = test::now_seconds();
  Result r = send(s, make("hang"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("imed out"), std::string::npos) << r.detail;
  EXPECT_GE(test::now_seconds() - start, 0.29);
  EXPECT_LT(test::now_seconds() - start, 3.0);
}

TEST_F(WebhookTest, ConnectionRefusedIsRetried) {
  const int port = test::free_port();
  Result r = send(settings("http://127.0.0.1:" + std::to_string(port) + "/hook"), make("down"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("http://127.0.0.1:" + std::to_string(port) + ": "), std::string::npos)
      << r.detail;
  EXPECT_NE(r.detail.find("onnect"), std::string::npos) << r.detail;
}

TEST_F(WebhookTest, TokenEchoedByTheReceiverNeverReachesTheDetail) {
  Sink sink;
  // A short token, and one so long that the 200 quoted bytes end inside it.
  for (const std::string& token : {std::string("s3cr3t-T0KEN"), std::string(300, 'k') + "END"}) {
    for (const char* path : {"/echo/400", "/echo/500", "/echo/200"}) {
      WebhookSettings s = settings(sink.url(path));
      s.bearer_token = token;
      Result r = send(s, make("echo"));
      EXPECT_NE(r.detail.find("HTTP "), std::string::npos) << r.detail;
      EXPECT_EQ(r.detail.find(token.substr(0, 8)), std::string::npos) << r.detail;
      EXPECT_LE(r.detail.size(), sink.url("").size() + 12 + 200) << r.detail;
    }
    const json last = sink.requests().back();
    EXPECT_EQ(last["headers"]["authorization"], "Bearer " + token);
  }
  // The short token's echo fits the quote: it is there, redacted.
  WebhookSettings s = settings(sink.url("/echo/400"));
  s.bearer_token = "s3cr3t-T0KEN";
  Result r = send(s, make("echo"));
  EXPECT_EQ(r.delivery, Delivery::kRejected);
  EXPECT_NE(r.detail.find("Authorization: Bearer ***"), std::string::npos) << r.detail;
}

TEST_F(WebhookTest, ResponseIsQuotedAsOneSafeLineAndCutAtTheLimit) {
  Sink sink;
  WebhookSettings s = settings(sink.url("/ugly/500"));
  Result r = send(s, make("ugly"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  const std::string prefix = sink.url("") + ": HTTP 500: ";
  ASSERT_EQ(r.detail.rfind(prefix, 0), 0u) << r.detail;
  const std::string quoted = r.detail.substr(prefix.size());
  EXPECT_EQ(quoted.rfind("line one  line two", 0), 0u) << quoted;
  EXPECT_NE(quoted.find("?? café zzz"), std::string::npos) << quoted;
  EXPECT_LE(quoted.size(), 200u);
  EXPECT_GE(quoted.size(), 190u);
  for (unsigned char c : quoted) EXPECT_GE(c, 0x20) << "control character in " << quoted;

  // 10 KiB over a 1 KiB limit: reading stops, the status still counts.
  s.max_body_bytes = 1024;
  r = send(s, make("ugly-cut"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_EQ(r.detail.rfind(prefix, 0), 0u) << r.detail;
  s.url = sink.url("/ugly/200");
  r = send(s, make("ugly-ok"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
}

TEST_F(WebhookTest, HttpsIsVerifiedAgainstTheConfiguredCa) {
  TlsServer valid("valid");
  WebhookSettings s = settings(valid.url("/ok"));
  s.tls_ca_file = test::certs_dir() + "/ca.pem";
  Result r = send(s, make("tls"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;

  TlsServer selfsigned("selfsigned");
  s.url = selfsigned.url("/ok");
  r = send(s, make("untrusted"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("certificate"), std::string::npos) << r.detail;
  s.tls_insecure = true;
  r = send(s, make("insecure"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
}

TEST_F(WebhookTest, CancelEndsTheRequestWithoutAResult) {
  Sink sink;
  auto hook = notifier(settings(sink.url("/hang")));
  int calls = 0;
  hook->send(make("cancelled"), [&](Delivery, const std::string&) { ++calls; });
  ASSERT_TRUE(run_until([&] { return sink.requests().size() == 1; }));
  hook->cancel();
  EXPECT_EQ(curl_->running(), 0u);
  // The cancelled send never reports, also while another one runs.
  Result r;
  hook = notifier(settings(sink.url("/ok")));
  hook->send(make("after"), [&](Delivery d, std::string detail) {
    r.delivery = d;
    r.detail = std::move(detail);
    ++r.calls;
  });
  ASSERT_TRUE(run_until([&] { return r.calls == 1; }));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  EXPECT_EQ(calls, 0);
  // Destroying a notifier mid-send cancels too.
  hook->send(make("destroyed"), [&](Delivery, const std::string&) { ++calls; });
  hook.reset();
  EXPECT_EQ(curl_->running(), 0u);
  EXPECT_EQ(calls, 0);
}

TEST_F(WebhookTest, OutboxRetriesWithTheSameBodyAndIdempotencyKey) {
  Sink sink;
  const std::string dir = test::make_temp_dir();
  std::vector<std::string> results;
  {
    OutboxOptions o;
    o.dir = dir;
    o.initial_backoff = 50ms;
    o.max_backoff = 200ms;
    Outbox box(loop(), o,
               {[&](const std::string&, const std::string& result) { results.push_back(result); },
                nullptr, nullptr});
    std::string error;
    ASSERT_TRUE(box.open(&error)) << error;
    box.add_receiver("hook", notifier(settings(sink.url("/flaky/2"))));
    box.enqueue(make("flaky"));
    ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  }
  std::filesystem::remove_all(dir);
  EXPECT_EQ(results, (std::vector<std::string>{"retry", "retry", "delivered"}));
  const json requests = sink.requests();
  ASSERT_EQ(requests.size(), 3u);
  for (const json& q : requests) {
    EXPECT_EQ(q["headers"]["idempotency-key"], "<flaky@wacht.test>");
    EXPECT_EQ(q["body"], requests[0]["body"]);
  }
}

}  // namespace
}  // namespace wacht::alerts
