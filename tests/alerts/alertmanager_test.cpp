#include "alerts/alertmanager.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "runtime/curl_multi.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kAlertmanager = "/usr/bin/prometheus-alertmanager";

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-26T05:00:41.12Z" (as Go writes it) to unix ms; -1 if malformed.
int64_t parse_time(const std::string& text) {
  std::tm tm{};
  int consumed = 0;
  // The field widths keep every number in range; the count catches the rest.
  // NOLINTNEXTLINE(cert-err34-c)
  if (sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
             &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return -1;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  size_t at = static_cast<size_t>(consumed);
  if (at < text.size() && text[at] == '.') {
    int64_t scale = 100;
    for (++at; at < text.size() && isdigit(static_cast<unsigned char>(text[at])); ++at) {
      ms += (text[at] - '0') * scale;
      scale /= 10;
    }
  }
  return text.substr(at) == "Z" ? ms : -1;
}

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
  // The bodies posted to paths starting with `prefix`, parsed.
  std::vector<json> posts(const std::string& prefix = "/") const {
    std::vector<json> out;
    for (const json& q : requests()) {
      if (q["method"] == "POST" && q["path"].get<std::string>().rfind(prefix, 0) == 0) {
        out.push_back(json::parse(q["body"].get<std::string>()));
      }
    }
    return out;
  }
  // The last body posted, or null.
  json last_post() const {
    std::vector<json> all = posts();
    return all.empty() ? json() : all.back();
  }

 private:
  test::ChildProcess process_;
  int port_;
};

// The real Alertmanager on a free loopback port, clustering off, in a temp
// dir. Its one receiver posts to `webhook_url` (resolved notifications too)
// a moment after each change.
class Alertmanager {
 public:
  explicit Alertmanager(const std::string& webhook_url)
      : dir_(test::make_temp_dir()), port_(test::free_port()) {
    std::ofstream(dir_ + "/alertmanager.yml") << "route:\n"
                                                 "  receiver: sink\n"
                                                 "  group_wait: 100ms\n"
                                                 "  group_interval: 1s\n"
                                                 "  repeat_interval: 1h\n"
                                                 "receivers:\n"
                                                 "  - name: sink\n"
                                                 "    webhook_configs:\n"
                                                 "      - url: "
                                              << webhook_url
                                              << "\n"
                                                 "        send_resolved: true\n";
    const std::string address = "127.0.0.1:" + std::to_string(port_);
    process_ = std::make_unique<test::ChildProcess>(
        std::vector<std::string>{kAlertmanager, "--config.file=" + dir_ + "/alertmanager.yml",
                                 "--storage.path=" + dir_ + "/data",
                                 "--web.listen-address=" + address, "--cluster.listen-address=",
                                 "--web.external-url=http://" + address, "--log.level=warn"},
        false);
    const double deadline = test::now_seconds() + 15;
    while (test::http_get(port_, "/-/ready", 1000).status != 200) {
      if (!process_->running() || test::now_seconds() > deadline) {
        ADD_FAILURE() << "alertmanager did not get ready: " << process_->stderr_text();
        return;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  ~Alertmanager() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // GET /api/v2/alerts with its defaults: active, silenced, inhibited and
  // unprocessed alerts. 0.25 leaves out resolved alerts whatever the filter.
  json alerts() const {
    test::HttpResponse r = test::http_get(port_, "/api/v2/alerts");
    return r.status == 200 ? json::parse(r.body) : json::array();
  }
  // The alert with label check=`check`, or null.
  json alert(const std::string& check) const {
    for (const json& a : alerts()) {
      if (a["labels"].value("check", "") == check) return a;
    }
    return nullptr;
  }

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<test::ChildProcess> process_;
};

struct Report {
  std::string url;
  bool ok;
  std::string detail;
};

class AlertmanagerTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    curl_ = std::make_unique<runtime::CurlMulti>(loop());
  }
  void TearDown() override {
    pusher_.reset();
    curl_.reset();
    LoopTest::TearDown();
  }

  static AlertmanagerSettings settings(std::vector<std::string> urls) {
    AlertmanagerSettings s;
    s.urls = std::move(urls);
    s.timeout = 5s;
    s.debounce = 20ms;
    return s;
  }
  AlertmanagerPusher& pusher(AlertmanagerSettings s) {
    pusher_ = std::make_unique<AlertmanagerPusher>(
        loop(), curl_.get(), std::move(s),
        [this](const std::string& url, bool ok, const std::string& detail) {
          reports_.push_back({url, ok, detail});
        });
    return *pusher_;
  }
  // Runs the loop until `check`, which asks a server, holds; it is asked
  // every 50 ms, not every iteration.
  bool poll_until(const std::function<bool()>& check, std::chrono::milliseconds limit = 10s) {
    double next = 0;
    bool ok = false;
    return run_until(
        [&] {
          if (!ok && test::now_seconds() >= next) {
            next = test::now_seconds() + 0.05;
            ok = check();
          }
          return ok;
        },
        limit);
  }
  // Runs the loop for `d` (timers and transfers go on meanwhile).
  void run_for(std::chrono::milliseconds d) {
    const double until = test::now_seconds() + static_cast<double>(d.count()) / 1000;
    run_until([&] { return test::now_seconds() >= until; }, d + 1s);
  }
  size_t reports(const std::string& url, bool ok) const {
    return static_cast<size_t>(
        std::count_if(reports_.begin(), reports_.end(),
                      [&](const Report& r) { return r.url == url && r.ok == ok; }));
  }

  std::unique_ptr<runtime::CurlMulti> curl_;
  std::unique_ptr<AlertmanagerPusher> pusher_;
  std::vector<Report> reports_;
};

const Labels kLabels = {{"alertname", "WachtCheckFailed"},
                        {"check", "lup-portal"},
                        {"severity", "critical"},
                        {"tenant", "lup"}};
const Labels kAnnotations = {{"summary", "Bürgerportal nicht erreichbar"},
                             {"description", "HTTP 503 nach 120 ms"}};

constexpr const char* kMissing =
    "/usr/bin/prometheus-alertmanager is not installed (Debian: prometheus-alertmanager)";

TEST_F(AlertmanagerTest, FiringAlertIsActiveThereAndResolvedAlertEnds) {
  if (!fs::exists(kAlertmanager)) GTEST_SKIP() << kMissing;
  Sink sink;
  Alertmanager am(sink.url("/am"));
  AlertmanagerSettings s = settings({am.url()});
  s.resend_interval = 10s;
  auto& p = pusher(s);
  const int64_t starts = now_ms() / 1000 * 1000 - 60'000 + 120;
  const std::string generator = "http://127.0.0.1:9915/checks/lup-portal";
  const int64_t pushed = now_ms();
  p.firing("lup-portal", kLabels, kAnnotations, starts, generator);
  EXPECT_EQ(p.size(), 1u);

  json alert;
  ASSERT_TRUE(poll_until([&] {
    alert = am.alert("lup-portal");
    return alert.is_object() && alert["status"]["state"] == "active";
  })) << alert.dump();
  EXPECT_EQ(alert["labels"], json(kLabels));
  EXPECT_EQ(alert["annotations"], json(kAnnotations));
  EXPECT_EQ(alert["generatorURL"], generator);
  // The API writes milliseconds always, the webhook as Go's RFC3339Nano.
  EXPECT_EQ(parse_time(alert["startsAt"]), starts) << alert["startsAt"];
  EXPECT_EQ(alert["fingerprint"], alert_fingerprint(kLabels));
  // Four resend intervals ahead, so Alertmanager ends it by itself should
  // wachtd die.
  const int64_t ends = parse_time(alert["endsAt"]);
  EXPECT_GE(ends, pushed + 40'000) << alert["endsAt"];
  EXPECT_LE(ends, now_ms() + 40'000) << alert["endsAt"];
  ASSERT_GE(reports(am.url(), true), 1u);
  EXPECT_EQ(reports_[0].detail, am.url() + ": HTTP 200");

  // Alertmanager's own webhook for the alert is what webhook_payload() makes.
  json theirs;
  ASSERT_TRUE(poll_until([&] {
    theirs = sink.last_post();
    return theirs.is_object();
  }));
  WebhookMessage m;
  m.receiver = "sink";
  m.group_key = theirs.value("groupKey", "");  // Alertmanager's own route notation
  m.external_url = am.url();
  m.alerts.push_back({kLabels, kAnnotations, starts, 0, generator});
  EXPECT_EQ(theirs, json::parse(webhook_payload(m)));

  const int64_t resolved_at = now_ms();
  p.resolved("lup-portal", resolved_at);
  json notice;
  ASSERT_TRUE(poll_until([&] {
    notice = sink.last_post();
    return notice["status"] == "resolved";
  })) << notice.dump();
  ASSERT_EQ(notice["alerts"].size(), 1u);
  EXPECT_EQ(notice["alerts"][0]["status"], "resolved");
  EXPECT_EQ(notice["alerts"][0]["endsAt"], rfc3339(resolved_at));
  m.alerts[0].ends_at_ms = resolved_at;
  EXPECT_EQ(notice, json::parse(webhook_payload(m)));
  // Once ended, 0.25's API leaves the alert out whatever the filter (only
  // receivers see resolved alerts).
  EXPECT_TRUE(am.alert("lup-portal").is_null());
  EXPECT_EQ(p.size(), 1u) << "a resolved alert is sent on for the retention";
  EXPECT_EQ(reports(am.url(), false), 0u);
}

TEST_F(AlertmanagerTest, EveryMemberGetsTheAlertAndDeadOnesDoNotDelayTheOthers) {
  if (!fs::exists(kAlertmanager)) GTEST_SKIP() << kMissing;
  Sink sink;
  Alertmanager am1(sink.url("/am1"));
  Alertmanager am2(sink.url("/am2"));
  const std::string refused = "http://127.0.0.1:" + std::to_string(test::free_port());
  const std::string hanging = sink.url("/hang");
  auto& p = pusher(settings({hanging, refused, am1.url(), am2.url()}));
  const double start = test::now_seconds();
  p.firing("lup-portal", kLabels, kAnnotations, now_ms(), "");
  ASSERT_TRUE(poll_until(
      [&] { return am1.alert("lup-portal").is_object() && am2.alert("lup-portal").is_object(); }));
  EXPECT_LT(test::now_seconds() - start, 4.0) << "waited for the 5 s timeout of the hanging one";
  ASSERT_TRUE(run_until([&] { return reports(refused, false) == 1; }));
  EXPECT_EQ(reports(am1.url(), true), 1u);
  EXPECT_EQ(reports(am2.url(), true), 1u);
  EXPECT_EQ(reports(hanging, false) + reports(hanging, true), 0u) << "still in flight";
  const auto it = std::find_if(reports_.begin(), reports_.end(),
                               [&](const Report& r) { return r.url == refused; });
  EXPECT_EQ(it->detail.rfind(refused + ": ", 0), 0u) << it->detail;
  EXPECT_NE(it->detail.find("onnect"), std::string::npos) << it->detail;
  EXPECT_EQ(sink.posts("/hang").size(), 1u) << "one request to the hanging member";
  p.stop();
  EXPECT_EQ(curl_->running(), 0u);
}

TEST_F(AlertmanagerTest, AlertEndsInAlertmanagerWhenResendsStop) {
  if (!fs::exists(kAlertmanager)) GTEST_SKIP() << kMissing;
  Sink sink;
  Alertmanager am(sink.url("/am"));
  AlertmanagerSettings s = settings({am.url()});
  s.resend_interval = 500ms;  // endsAt = now + 2 s
  auto& p = pusher(s);
  p.firing("lup-portal", kLabels, kAnnotations, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return am.alert("lup-portal").is_object(); }));
  // wachtd "dies": no resolved is ever sent, and Alertmanager resolves it.
  p.stop();
  const double stopped = test::now_seconds();
  ASSERT_TRUE(poll_until([&] { return am.alert("lup-portal").is_null(); }));
  EXPECT_LT(test::now_seconds() - stopped, 4.0) << "not at its own resolve_timeout (5 min)";
  json notice;
  ASSERT_TRUE(poll_until([&] {
    notice = sink.last_post();
    return notice.is_object() && notice["status"] == "resolved";
  })) << notice.dump();
}

TEST_F(AlertmanagerTest, ResendsWhileFiringWithEndsAtFourIntervalsAhead) {
  Sink sink;
  AlertmanagerSettings s = settings({sink.url("/prefix/")});
  s.resend_interval = 300ms;
  auto& p = pusher(s);
  const int64_t starts = now_ms();
  const double start = test::now_seconds();
  p.firing("lup-portal", kLabels, kAnnotations, starts, "http://127.0.0.1:9915/");
  ASSERT_TRUE(poll_until([&] { return sink.requests().size() >= 4; }));
  const double elapsed = test::now_seconds() - start;
  EXPECT_GE(elapsed, 0.85) << "4 POSTs: the first, then one per 300 ms";
  const int64_t done = now_ms();
  const json requests = sink.requests();
  EXPECT_LE(requests.size(), 5u);
  for (const json& q : requests) {
    EXPECT_EQ(q["method"], "POST");
    EXPECT_EQ(q["path"], "/prefix/api/v2/alerts");
    EXPECT_EQ(q["headers"]["content-type"], "application/json");
    EXPECT_EQ(q["in_flight"], 1);
    const json body = json::parse(q["body"].get<std::string>());
    ASSERT_EQ(body.size(), 1u);
    EXPECT_EQ(body[0]["labels"], json(kLabels));
    EXPECT_EQ(body[0]["annotations"], json(kAnnotations));
    EXPECT_EQ(body[0]["startsAt"], rfc3339(starts));
    EXPECT_EQ(body[0]["generatorURL"], "http://127.0.0.1:9915/");
    const int64_t ends = parse_time(body[0]["endsAt"]);
    EXPECT_GE(ends, starts + 1200);
    EXPECT_LE(ends, done + 1200);
  }
  // Each resend's endsAt moves on.
  EXPECT_LT(parse_time(json::parse(requests[0]["body"].get<std::string>())[0]["endsAt"]),
            parse_time(json::parse(requests[3]["body"].get<std::string>())[0]["endsAt"]));
}

TEST_F(AlertmanagerTest, ResolvedAlertIsSentForTheRetentionThenDropped) {
  Sink sink;
  AlertmanagerSettings s = settings({sink.url("/")});
  s.resend_interval = 200ms;
  s.resolved_retention = 700ms;
  auto& p = pusher(s);
  const int64_t starts = now_ms() - 5000;
  p.firing("a", {{"check", "a"}}, {}, starts, "");
  p.firing("b", {{"check", "b"}}, {}, starts, "");
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 1; }));
  const int64_t ends = now_ms() - 1000;
  p.resolved("a", ends);
  p.resolved("a", ends + 5);    // resolved already: nothing changes
  p.resolved("unknown", ends);  // never fired: nothing either
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() >= 3; }));
  for (const json& body : sink.posts()) ASSERT_EQ(body.size(), 2u) << body.dump();
  const json resolved = sink.posts()[1][0];
  EXPECT_EQ(resolved["labels"], json({{"check", "a"}}));
  EXPECT_EQ(resolved["endsAt"], rfc3339(ends));
  EXPECT_EQ(resolved["startsAt"], rfc3339(starts));
  EXPECT_FALSE(resolved.contains("generatorURL")) << "empty: left out";

  // After the retention only "b" is sent.
  ASSERT_TRUE(poll_until([&] { return p.size() == 1 && sink.posts().back().size() == 1; }));
  EXPECT_EQ(sink.posts().back()[0]["labels"], json({{"check", "b"}}));

  // Once "b" resolved and dropped too, the POSTs stop.
  p.resolved("b", now_ms());
  ASSERT_TRUE(poll_until([&] { return p.size() == 0; }));
  const size_t posts = sink.posts().size();
  run_for(600ms);
  EXPECT_EQ(sink.posts().size(), posts);
}

TEST_F(AlertmanagerTest, AlertResolvedBeforeItStartedEndsAtItsStart) {
  // A clock step between the two calls; Alertmanager refuses endsAt < startsAt.
  Sink sink;
  auto& p = pusher(settings({sink.url("/")}));
  const int64_t starts = now_ms();
  p.firing("a", {{"check", "a"}}, {}, starts, "");
  p.resolved("a", starts - 10'000);
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 1; }));
  const json alert = sink.posts()[0][0];
  EXPECT_EQ(alert["endsAt"], rfc3339(starts));
  EXPECT_EQ(alert["startsAt"], rfc3339(starts));
}

TEST_F(AlertmanagerTest, BurstOfChangesIsOnePost) {
  Sink sink;
  AlertmanagerSettings s = settings({sink.url("/")});
  s.debounce = 300ms;
  auto& p = pusher(s);
  for (int i = 0; i < 20; ++i) {
    const std::string key = "c" + std::to_string(i);
    p.firing(key, {{"check", key}}, {}, now_ms(), "");
  }
  for (int i = 0; i < 5; ++i) p.resolved("c" + std::to_string(i), now_ms());
  EXPECT_EQ(p.size(), 20u);
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 1; }));
  run_for(400ms);  // nothing is queued behind it either
  const std::vector<json> posts = sink.posts();
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(posts[0].size(), 20u);
  size_t resolved = 0;
  for (const json& a : posts[0]) resolved += parse_time(a["endsAt"]) <= now_ms() ? 1 : 0;
  EXPECT_EQ(resolved, 5u);
}

TEST_F(AlertmanagerTest, OneRequestInFlightPerUrlAndTheNewestSetFollows) {
  Sink sink;
  AlertmanagerSettings s = settings({sink.url("/slow/1000")});
  s.debounce = 10ms;
  auto& p = pusher(s);
  p.firing("a", {{"check", "a"}}, {}, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return sink.requests().size() == 1; }));
  // Three changes, each flushed while the first request is in flight.
  for (const char* key : {"b", "c", "d"}) {
    p.firing(key, {{"check", key}}, {}, now_ms(), "");
    run_for(50ms);
  }
  ASSERT_TRUE(run_until([&] { return reports_.size() == 2; }, 5s));
  const json requests = sink.requests();
  ASSERT_EQ(requests.size(), 2u);
  for (const json& q : requests) EXPECT_EQ(q["in_flight"], 1);
  EXPECT_EQ(json::parse(requests[0]["body"].get<std::string>()).size(), 1u);
  EXPECT_EQ(json::parse(requests[1]["body"].get<std::string>()).size(), 4u);
  EXPECT_TRUE(reports_[0].ok && reports_[1].ok);
}

TEST_F(AlertmanagerTest, FailuresAreReportedAndRetriedWithoutTheToken) {
  Sink sink;
  const std::string token = "am-token-8c1d2e";
  const std::string flaky = sink.url("/flaky/1");
  const std::string refusing = sink.url("/echo/400");
  AlertmanagerSettings s = settings({flaky, refusing});
  s.resend_interval = 300ms;
  s.bearer_token = token;
  auto& p = pusher(s);
  p.firing("a", {{"check", "a"}}, {}, now_ms(), "");
  ASSERT_TRUE(
      run_until([&] { return reports(flaky, true) >= 1 && reports(refusing, false) >= 2; }));
  EXPECT_EQ(reports(refusing, true), 0u);
  for (const Report& r : reports_) {
    EXPECT_EQ(r.detail.find(token), std::string::npos) << r.detail;
    if (r.url == refusing) {
      EXPECT_EQ(r.detail.rfind(sink.url("") + ": HTTP 400: ", 0), 0u) << r.detail;
      EXPECT_NE(r.detail.find("Authorization: Bearer ***"), std::string::npos) << r.detail;
    }
  }
  const auto first = std::find_if(reports_.begin(), reports_.end(),
                                  [&](const Report& r) { return r.url == flaky; });
  EXPECT_FALSE(first->ok);
  EXPECT_EQ(first->detail, sink.url("") + ": HTTP 503: try again later");
  for (const json& q : sink.requests()) {
    EXPECT_EQ(q["headers"]["authorization"], "Bearer " + token);
  }
}

TEST_F(AlertmanagerTest, NewLabelsForAKeyEndTheOldLabelSet) {
  Sink sink;
  auto& p = pusher(settings({sink.url("/")}));
  p.firing("a", {{"check", "a"}, {"severity", "warning"}}, {{"summary", "slow"}}, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 1; }));
  // The same labels again: nothing to send. New annotations: sent.
  p.firing("a", {{"check", "a"}, {"severity", "warning"}}, {{"summary", "slow"}}, now_ms(), "");
  p.firing("a", {{"check", "a"}, {"severity", "warning"}}, {{"summary", "slower"}}, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 2; }));
  EXPECT_EQ(sink.posts()[1][0]["annotations"], json({{"summary", "slower"}}));

  const int64_t before = now_ms();
  p.firing("a", {{"check", "a"}, {"severity", "critical"}}, {{"summary", "down"}}, now_ms(), "");
  EXPECT_EQ(p.size(), 2u);
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 3; }));
  const json body = sink.posts()[2];
  ASSERT_EQ(body.size(), 2u);
  EXPECT_EQ(body[0]["labels"]["severity"], "warning");
  EXPECT_GE(parse_time(body[0]["endsAt"]), before);
  EXPECT_LE(parse_time(body[0]["endsAt"]), now_ms());
  EXPECT_EQ(body[1]["labels"]["severity"], "critical");
  EXPECT_GT(parse_time(body[1]["endsAt"]), now_ms() + 200'000);

  // Back to the first labels within the retention: it fires again, once.
  p.firing("a", {{"check", "a"}, {"severity", "warning"}}, {{"summary", "slow"}}, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return sink.posts().size() == 4; }));
  const json last = sink.posts()[3];
  ASSERT_EQ(last.size(), 2u) << last.dump();
  EXPECT_EQ(last[0]["labels"]["severity"], "critical");
  EXPECT_LE(parse_time(last[0]["endsAt"]), now_ms());
  EXPECT_EQ(last[1]["labels"]["severity"], "warning");
  EXPECT_GT(parse_time(last[1]["endsAt"]), now_ms());
}

TEST_F(AlertmanagerTest, StopCancelsAndSendsNothingMore) {
  Sink sink;
  AlertmanagerSettings s = settings({sink.url("/hang")});
  s.resend_interval = 100ms;
  auto& p = pusher(s);
  p.firing("a", {{"check", "a"}}, {}, now_ms(), "");
  ASSERT_TRUE(poll_until([&] { return sink.requests().size() == 1; }));
  p.stop();
  EXPECT_EQ(curl_->running(), 0u);
  p.firing("b", {{"check", "b"}}, {}, now_ms(), "");
  run_for(400ms);
  EXPECT_EQ(sink.requests().size(), 1u);
  EXPECT_TRUE(reports_.empty());
}

}  // namespace
}  // namespace wacht::alerts
