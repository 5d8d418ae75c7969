// End to end on-call layer: the real wachtd with an SMTP sink, a webhook sink
// and a real Alertmanager, all on 127.0.0.1: escalation, acknowledgement
// links, silences and maintenance windows through config and API, API tokens,
// webhook and Alertmanager receivers, the connectivity guard, the storm digest
// and `wachtd --oncall`.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "e2e/harness.hpp"

namespace wacht::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kAlertmanager = "/usr/bin/prometheus-alertmanager";
// A token of the tokens file the API tests write, and its name.
constexpr const char* kToken = "0b7e1c5d9a3f46e2b8d1c4a7";
constexpr const char* kTokenName = "ops-anna";

double now_s() {
  return static_cast<double>(std::chrono::duration_cast<std::chrono::microseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count()) /
         1e6;
}

// `t` (unix seconds) as strftime `format` in UTC.
std::string utc(time_t t, const char* format = "%Y-%m-%dT%H:%M:%SZ") {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

// ---- HTTP -------------------------------------------------------------------

struct Reply {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
  std::string header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  json body_json() const { return json::parse(body, nullptr, false); }
};

// One HTTP/1.0 request to 127.0.0.1:port; `headers` are whole lines without CRLF.
Reply request(int port, const std::string& method, const std::string& path,
              const std::string& body = "", const std::vector<std::string>& headers = {}) {
  Reply r;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval tv{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return r;
  }
  std::string req = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
  for (const auto& h : headers) req += h + "\r\n";
  if (!body.empty() || method == "POST")
    req += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  if (write(fd, req.data(), req.size()) != static_cast<ssize_t>(req.size())) {
    close(fd);
    return r;
  }
  std::string resp;
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) resp.append(buf, static_cast<size_t>(n));
  close(fd);
  // "HTTP/1.1 200 OK"; atoi read past the end of a reply cut off after "HTTP/1.1".
  if (resp.rfind("HTTP/1.", 0) != 0 || resp.size() < 12) return r;
  std::from_chars(resp.data() + 9, resp.data() + resp.size(), r.status);
  size_t end = resp.find("\r\n\r\n");
  std::string head = resp.substr(0, end);
  if (end != std::string::npos) r.body = resp.substr(end + 4);
  size_t at = head.find("\r\n");
  while (at != std::string::npos) {
    size_t next = head.find("\r\n", at + 2);
    std::string line = head.substr(at + 2, next == std::string::npos ? next : next - at - 2);
    size_t colon = line.find(':');
    if (colon != std::string::npos) {
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      size_t v = line.find_first_not_of(' ', colon + 1);
      r.headers[name] = v == std::string::npos ? "" : line.substr(v);
    }
    at = next;
  }
  return r;
}

std::string bearer(const std::string& token = kToken) { return "Authorization: Bearer " + token; }
const std::string kJson = "Content-Type: application/json";

std::string url_encode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      out += static_cast<char>(c);
    else
      out += {'%', "0123456789ABCDEF"[c >> 4], "0123456789ABCDEF"[c & 15]};
  }
  return out;
}

// ---- wachtd's API -------------------------------------------------------------

// GET /api/v1/alerts: the entry of `check`, or an empty object.
json api_alert(const Wachtd& d, const std::string& check) {
  json all = request(d.port(), "GET", "/api/v1/alerts").body_json();
  if (!all.is_array()) return json::object();
  for (const json& a : all)
    if (a.value("check", "") == check) return a;
  return json::object();
}

// How many alerts GET /api/v1/alerts lists as firing.
size_t api_firing(const Wachtd& d) {
  json all = request(d.port(), "GET", "/api/v1/alerts").body_json();
  size_t n = 0;
  if (all.is_array())
    for (const json& a : all) n += a.value("status", "") == "firing";
  return n;
}

json api_silences(const Wachtd& d) {
  return request(d.port(), "GET", "/api/v1/silences").body_json();
}

// An Alertmanager PostableSilence for check=`check`, from now for an hour.
std::string silence_body(const std::string& check, const std::string& comment,
                         const std::string& ends = "") {
  time_t now = time(nullptr);
  return json{{"matchers", {{{"name", "check"}, {"value", check}, {"isRegex", false}}}},
              {"startsAt", utc(now)},
              {"endsAt", ends.empty() ? utc(now + 3600) : ends},
              {"createdBy", "somebody else"},
              {"comment", comment}}
      .dump();
}

// A tokens file "ops-anna:<kToken>" (mode 0600) in a temp dir of its own.
class TokensFile {
 public:
  TokensFile() : dir_(make_temp_dir()) {
    std::ofstream(path()) << "# wacht API tokens\n"
                          << kTokenName << ":" << kToken << "\n"
                          << "ci-bot:ffffeeeeddddccccbbbbaaaa\n";
    chmod(path().c_str(), 0600);
  }
  ~TokensFile() { fs::remove_all(dir_); }
  std::string path() const { return dir_ + "/tokens"; }

 private:
  std::string dir_;
};

// ---- config pieces -----------------------------------------------------------

// Quick delivery retries, fixed Message-ID domain.
const std::string kAlerting =
    "[alerting]\nretry_backoff = \"200ms\"\nretry_max_backoff = \"400ms\"\n"
    "hostname = \"wacht.test\"\n";

std::string smtp(int port) {
  return kAlerting + "[smtp]\nsmarthost = \"127.0.0.1:" + std::to_string(port) +
         "\"\ntls = \"none\"\nfrom = \"wacht <wacht@example.org>\"\ntimeout = \"2s\"\n";
}

// An email receiver with the shipped German templates.
std::string email(const std::string& name, const std::string& to) {
  return "[receivers." + name + "]\ntype = \"email\"\nto = [\"" + to + "\"]\n";
}

std::string route(const std::string& receivers, const std::string& extra = "") {
  return "[[route]]\nreceivers = [" + receivers +
         "]\ngroup_wait = \"1s\"\ngroup_interval = \"1s\"\nrepeat_interval = \"1h\"\n" + extra +
         "\n";
}

std::string check(const std::string& id, const std::string& type, const std::string& target,
                  int max_attempts = 1, const std::string& extra = "") {
  return "[[check]]\nid = \"" + id + "\"\ntype = \"" + type + "\"\ntarget = \"" + target +
         "\"\ninterval = \"1s\"\ntimeout = \"500ms\"\nretry_interval = \"200ms\"\n"
         "max_attempts = " +
         std::to_string(max_attempts) + "\nflap_detection = false\n" + extra + "\n";
}

std::string tcp(int port) { return "127.0.0.1:" + std::to_string(port); }

std::string rcpt(const Mail& m) { return m.header("x-sink-rcpt"); }

std::string subjects(const std::vector<Mail>& mails) {
  std::string out;
  for (const auto& m : mails) out += "  " + rcpt(m) + ": " + m.header("subject") + "\n";
  return out;
}

// The value of `key` in `body` up to the end of its line ("" if absent).
std::string line_after(const std::string& body, const std::string& key) {
  size_t at = body.find(key);
  if (at == std::string::npos) return "";
  at += key.size();
  size_t end = body.find_first_of("\r\n", at);
  return body.substr(at, end == std::string::npos ? end : end - at);
}

// ---- webhook sink and Alertmanager --------------------------------------------

// tests/support/webhook_sink.py (see its header for the paths).
class WebhookSink {
 public:
  WebhookSink()
      : process_({"/usr/bin/python3", support_path("webhook_sink.py")}),
        port_(std::stoi(process_.first_line())) {}
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  // The requests so far to paths starting with `prefix`.
  std::vector<json> requests(const std::string& prefix = "/") const {
    HttpResponse r = http_get(port_, "/requests");
    std::vector<json> out;
    if (r.status != 200) return out;
    for (const json& q : json::parse(r.body))
      if (q["path"].get<std::string>().rfind(prefix, 0) == 0) out.push_back(q);
    return out;
  }

 private:
  ChildProcess process_;
  int port_;
};

// The real Alertmanager on a free loopback port, clustering off, in a temp dir,
// with one receiver posting to `webhook_url` (resolved notices too).
class Alertmanager {
 public:
  explicit Alertmanager(const std::string& webhook_url)
      : dir_(make_temp_dir()), port_(free_port()) {
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
    process_ = std::make_unique<ChildProcess>(
        std::vector<std::string>{kAlertmanager, "--config.file=" + dir_ + "/alertmanager.yml",
                                 "--storage.path=" + dir_ + "/data",
                                 "--web.listen-address=" + address, "--cluster.listen-address=",
                                 "--web.external-url=http://" + address, "--log.level=warn"},
        false);
    if (!eventually([&] { return http_get(port_, "/-/ready", 1000).status == 200; }, 15s))
      ADD_FAILURE() << "alertmanager did not get ready: " << process_->stderr_text();
  }
  ~Alertmanager() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // GET /api/v2/alerts: the alert with label check=`check`, or null. (0.25
  // leaves resolved alerts out whatever the filter.)
  json alert(const std::string& check) const {
    HttpResponse r = http_get(port_, "/api/v2/alerts");
    if (r.status != 200) return nullptr;
    for (const json& a : json::parse(r.body))
      if (a["labels"].value("check", "") == check) return a;
    return nullptr;
  }

 private:
  std::string dir_;
  int port_;
  std::unique_ptr<ChildProcess> process_;
};

// ---- 1. escalation -----------------------------------------------------------

TEST(OnCall, AnUnacknowledgedAlertReachesLevelTwoAfterItsDelayAndNotBefore) {
  SmtpSink sink;
  int port = free_port();  // nothing listens: the check fails from the start
  // Anna's week began yesterday: the on-call receiver mails her as well.
  const std::string start = utc(time(nullptr) - 86400, "%Y-%m-%dT%H:%M");
  Wachtd d(smtp(sink.port()) +
           "[people.anna]\nname = \"Anna Schmidt\"\nemail = \"anna.schmidt@lup.example.org\"\n"
           "[people.bernd]\nemail = \"bernd.meier@lup.example.org\"\n"
           "[rotations.lup]\npeople = [\"anna\", \"bernd\"]\nstart = \"" +
           start + "\"\nshift = \"1w\"\n" + email("oncall", "bereitschaft@lup.example.org") +
           "rotation = \"lup\"\n" + email("lead", "leitung@lup.example.org") +
           "[escalations.lup]\n[[escalations.lup.level]]\nafter = \"4s\"\n"
           "receivers = [\"lead\"]\n" +
           route("\"oncall\"", "escalation = \"lup\"") + check("lup-dns", "tcp", tcp(port)));
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; }, 8s))
      << "no escalation:\n"
      << subjects(sink.mails()) << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);  // no third level, no repeat
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 2u) << subjects(mails);
  const Mail first = mails[0];
  const Mail lead = mails[1];
  EXPECT_EQ(rcpt(first), "bereitschaft@lup.example.org, anna.schmidt@lup.example.org");
  EXPECT_EQ(first.header("subject"), "[wacht] [LUP] ALARM KRITISCH: lup-dns (" + tcp(port) + ")");
  EXPECT_EQ(rcpt(lead), "leitung@lup.example.org");
  EXPECT_EQ(lead.header("subject"),
            "[wacht] [LUP] ESKALATION Stufe 2: ALARM KRITISCH: lup-dns (" + tcp(port) + ")");
  EXPECT_NE(lead.body.find("ESKALATION Stufe 2: ALARM KRITISCH"), std::string::npos) << lead.body;
  const double delay = lead.arrived - first.arrived;
  EXPECT_GE(delay, 3.6) << "escalated before its 4 s";
  EXPECT_LE(delay, 6.0) << "escalated long after its 4 s";
  // The escalation belongs to the group's thread (its token in Message-IDs),
  // and the lead's later messages reply to the same root.
  const std::string id = first.header("message-id");
  ASSERT_EQ(id.rfind("<wacht.", 0), 0u) << id;
  const std::string token = id.substr(7, id.find(".0.oncall@") - 7);
  ASSERT_EQ(id, "<wacht." + token + ".0.oncall@wacht.test>");
  EXPECT_NE(lead.header("in-reply-to").find("<wacht." + token + ".0."), std::string::npos)
      << lead.header("in-reply-to");
  EXPECT_NE(lead.header("references").find(lead.header("in-reply-to")), std::string::npos);
  EXPECT_TRUE(d.wait_for("wacht_escalations_total\\{route=\"route 1\"\\} 1"));

  // The recovery goes to everybody who was told, each in their thread.
  auto up = http_target(port);
  ASSERT_TRUE(eventually([&] { return sink.count() >= 4; })) << subjects(sink.mails());
  std::this_thread::sleep_for(700ms);
  mails = sink.mails();
  ASSERT_EQ(mails.size(), 4u) << subjects(mails);
  for (size_t i : {2u, 3u}) {
    EXPECT_EQ(mails[i].header("subject").rfind("[wacht] [LUP] ENTWARNUNG: lup-dns", 0), 0u)
        << mails[i].header("subject");
    if (rcpt(mails[i]) == "leitung@lup.example.org")
      EXPECT_EQ(mails[i].header("in-reply-to"), lead.header("in-reply-to"));
    else
      EXPECT_EQ(mails[i].header("in-reply-to"), id);
  }
  EXPECT_NE(rcpt(mails[2]), rcpt(mails[3]));
}

// ---- 2. acknowledgement link -------------------------------------------------

TEST(OnCall, AnAckLinkShowsAFormAndOnlyItsPostStopsRepeatsAndEscalation) {
  SmtpSink sink;
  int closed = free_port();
  int b_port = free_port();
  auto b_target = http_target(b_port);
  Wachtd d("");
  const std::string base = "http://127.0.0.1:" + std::to_string(d.port());
  d.write(smtp(sink.port()) + "[api]\nexternal_url = \"" + base + "/\"\n" +
          email("oncall", "bereitschaft@lup.example.org") +
          email("lead", "leitung@lup.example.org") +
          "[escalations.lup]\n[[escalations.lup.level]]\nafter = \"3s\"\n"
          "receivers = [\"lead\"]\n" +
          "[[route]]\nreceivers = [\"oncall\"]\ngroup_by = [\"tenant\"]\ngroup_wait = \"1s\"\n"
          "group_interval = \"1s\"\nrepeat_interval = \"2s\"\nescalation = \"lup\"\n" +
          check("lup-dns", "tcp", tcp(closed)) +
          check("lup-portal", "http", "http://127.0.0.1:" + std::to_string(b_port) + "/"));
  d.start();
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  const Mail first = sink.mails()[0];
  const std::string link = line_after(first.body, "Bestätigen: ");
  ASSERT_EQ(link.rfind(base + "/ack?t=", 0), 0u) << first.body;
  const std::string path = link.substr(base.size());
  const std::string token = path.substr(std::string("/ack?t=").size());

  // Opening the link (what a mail scanner does) only shows the form.
  Reply form = request(d.port(), "GET", path);
  EXPECT_EQ(form.status, 200) << form.body;
  EXPECT_NE(form.body.find("<form method=\"post\""), std::string::npos) << form.body;
  EXPECT_NE(form.body.find("value=\"" + token + "\""), std::string::npos) << form.body;
  json alert = api_alert(d, "lup-dns");
  ASSERT_FALSE(alert.empty());
  EXPECT_EQ(alert["status"], "firing");
  EXPECT_FALSE(alert.contains("acknowledged")) << alert.dump();
  EXPECT_EQ(request(d.port(), "GET", "/ack?t=" + token.substr(0, token.size() - 2) + "xx").status,
            400)
      << "a tampered token";

  // Submitting the form acknowledges.
  Reply done = request(d.port(), "POST", "/ack",
                       "t=" + url_encode(token) + "&name=" + url_encode("Anna Schmidt") +
                           "&comment=" + url_encode("schaue ich mir an"),
                       {"Content-Type: application/x-www-form-urlencoded"});
  EXPECT_EQ(done.status, 200) << done.body;
  EXPECT_NE(done.body.find("acknowledged by Anna Schmidt"), std::string::npos) << done.body;
  alert = api_alert(d, "lup-dns");
  ASSERT_TRUE(alert.contains("acknowledged")) << alert.dump();
  EXPECT_EQ(alert["acknowledged"]["by"], "Anna Schmidt");
  EXPECT_EQ(alert["acknowledged"]["comment"], "schaue ich mir an");
  EXPECT_NE(request(d.port(), "GET", path).body.find("Already acknowledged by Anna Schmidt"),
            std::string::npos);
  // The acknowledgement is kept across a restart.
  d.start();
  EXPECT_EQ(api_alert(d, "lup-dns").value("acknowledged", json::object()).value("by", ""),
            "Anna Schmidt");

  // Without the acknowledgement a repeat would come at +2 s and the lead at +3 s.
  const double wait = first.arrived + 4.5 - now_s();
  ASSERT_GT(wait, 2.5) << "the acknowledgement took too long to test the window";
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int>(wait * 1000)));
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 1u) << "an acknowledged alert was repeated or escalated:\n"
                              << subjects(mails);

  // A later message of the group names who acknowledged it and why.
  b_target.reset();
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; })) << d.proc().stderr_text();
  const Mail update = sink.mails()[1];
  EXPECT_EQ(update.header("in-reply-to"), first.header("message-id"));
  EXPECT_NE(update.body.find("Bestätigt:  Anna Schmidt: schaue ich mir an"), std::string::npos)
      << update.body;
  EXPECT_NE(update.body.find("Bestätigen: " + base + "/ack?t="), std::string::npos)
      << "the new alert lup-portal has its own link:\n"
      << update.body;
}

// ---- 3. silences through the API ------------------------------------------------

TEST(OnCall, ASilenceFromTheApiHoldsTheAlertBackUntilItIsExpired) {
  TokensFile tokens;
  SmtpSink sink;
  int port = free_port();
  auto web = http_target(port);
  Wachtd d(smtp(sink.port()) + "[api]\ntokens_file = \"" + tokens.path() + "\"\n" +
           email("oncall", "bereitschaft@lup.example.org") + route("\"oncall\"") +
           check("lup-portal", "http", "http://127.0.0.1:" + std::to_string(port) + "/"));
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"lup-portal\"[^}]*\\} 1"));

  Reply made = request(d.port(), "POST", "/api/v1/silences",
                       silence_body("lup-portal", "Umzug des Portals"), {bearer(), kJson});
  ASSERT_EQ(made.status, 200) << made.body;
  const std::string id = made.body_json().value("silenceID", "");
  ASSERT_FALSE(id.empty()) << made.body;
  json list = api_silences(d);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], id);
  EXPECT_EQ(list[0]["status"]["state"], "active");
  EXPECT_EQ(list[0]["createdBy"], kTokenName) << "the token says who, not the body";
  EXPECT_EQ(list[0]["comment"], "Umzug des Portals");
  EXPECT_TRUE(d.wait_for("wacht_silences\\{state=\"active\"\\} 1"));
  d.start();  // kept across a restart
  ASSERT_EQ(api_silences(d).size(), 1u);
  EXPECT_EQ(api_silences(d)[0]["id"], id);

  web.reset();  // the portal fails while silenced
  ASSERT_TRUE(eventually([&] {
    return api_alert(d, "lup-portal").value("status", "") == "firing";
  })) << d.proc().stderr_text();
  EXPECT_EQ(api_alert(d, "lup-portal").value("silenced_by", ""), id);
  std::this_thread::sleep_for(2500ms);  // well past group_wait
  ASSERT_EQ(sink.count(), 0u) << "a silenced alert was sent:\n" << subjects(sink.mails());

  // Expired, the still-firing alert is news.
  Reply expired = request(d.port(), "DELETE", "/api/v1/silences/" + id, "", {bearer()});
  EXPECT_EQ(expired.status, 204) << expired.body;
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; }, 5s)) << d.proc().stderr_text();
  auto mails = sink.mails();
  EXPECT_EQ(mails[0].header("subject").rfind("[wacht] [LUP] ALARM KRITISCH: lup-portal", 0), 0u)
      << mails[0].header("subject");
  list = api_silences(d);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["status"]["state"], "expired");
  EXPECT_FALSE(api_alert(d, "lup-portal").contains("silenced_by"));
  EXPECT_NE(d.proc().stderr_text().find("expired by " + std::string(kTokenName)),
            std::string::npos);
}

TEST(OnCall, AnAlertMailedBeforeItWasSilencedStillGetsItsResolvedMailInItsThread) {
  TokensFile tokens;
  SmtpSink sink;
  int port = free_port();
  Wachtd d(smtp(sink.port()) + "[api]\ntokens_file = \"" + tokens.path() + "\"\n" +
           email("oncall", "bereitschaft@lup.example.org") + route("\"oncall\"") +
           check("lup-dns", "tcp", tcp(port)));
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  Reply made = request(d.port(), "POST", "/api/v1/silences",
                       silence_body("lup-dns", "wird neu aufgesetzt"), {bearer(), kJson});
  ASSERT_EQ(made.status, 200) << made.body;
  ASSERT_TRUE(eventually([&] {
    return api_alert(d, "lup-dns").value("silenced_by", "") == made.body_json()["silenceID"];
  }));

  auto up = http_target(port);  // recovers while silenced
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; }, 6s))
      << "no resolved notice for an alert that was announced\n"
      << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 2u) << subjects(mails);
  EXPECT_EQ(mails[1].header("subject").rfind("[wacht] [LUP] ENTWARNUNG: lup-dns", 0), 0u)
      << mails[1].header("subject");
  EXPECT_EQ(mails[1].header("in-reply-to"), mails[0].header("message-id"));
}

// ---- 4. API authentication ------------------------------------------------------

TEST(OnCall, WritesWithoutAValidTokenGet401AndChangeNothing) {
  TokensFile tokens;
  Wachtd d("[api]\ntokens_file = \"" + tokens.path() + "\"\n" +
           check("lup-dns", "tcp", tcp(free_port())));
  ASSERT_TRUE(eventually([&] { return api_alert(d, "lup-dns").value("status", "") == "firing"; }))
      << d.proc().stderr_text();

  const std::string body = silence_body("lup-dns", "Wartung");
  for (const auto& auth :
       std::vector<std::vector<std::string>>{{bearer("not-the-token-0123456789"), kJson},
                                             {kJson},
                                             {"Authorization: Basic b3BzLWFubmE6c2VjcmV0", kJson},
                                             {bearer(std::string(kToken) + "x"), kJson}}) {
    Reply r = request(d.port(), "POST", "/api/v1/silences", body, auth);
    EXPECT_EQ(r.status, 401) << auth[0] << ": " << r.body;
    EXPECT_EQ(r.header("www-authenticate").rfind("Bearer", 0), 0u) << r.header("www-authenticate");
  }
  EXPECT_EQ(api_silences(d), json::array());

  Reply ack = request(d.port(), "POST", "/api/v1/alerts/lup-dns/ack", "{\"comment\":\"meins\"}",
                      {bearer("not-the-token-0123456789"), kJson});
  EXPECT_EQ(ack.status, 401) << ack.body;
  EXPECT_EQ(ack.header("www-authenticate").rfind("Bearer", 0), 0u);
  EXPECT_FALSE(api_alert(d, "lup-dns").contains("acknowledged"));

  // A silence made with the token cannot be expired without it.
  Reply made = request(d.port(), "POST", "/api/v1/silences", silence_body("other", "Test"),
                       {bearer(), kJson});
  ASSERT_EQ(made.status, 200) << made.body;
  const std::string id = made.body_json()["silenceID"];
  Reply expire = request(d.port(), "DELETE", "/api/v1/silences/" + id, "",
                         {bearer("not-the-token-0123456789")});
  EXPECT_EQ(expire.status, 401);
  json list = api_silences(d);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["status"]["state"], "active");

  // Bodies are size-limited.
  Reply big = request(d.port(), "POST", "/api/v1/silences",
                      silence_body("lup-dns", std::string(70 * 1024, 'x')), {bearer(), kJson});
  EXPECT_EQ(big.status, 413) << big.body;
  EXPECT_EQ(api_silences(d).size(), 1u);

  // Validation errors name the field.
  Reply bad = request(d.port(), "POST", "/api/v1/silences",
                      silence_body("lup-dns", "Wartung", "tomorrow"), {bearer(), kJson});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body_json(), json({{"error", "endsAt: not an RFC 3339 time: \"tomorrow\""}}))
      << bad.body;
  bad = request(d.port(), "POST", "/api/v1/alerts/lup-dns/ack", "{\"coment\":\"typo\"}",
                {bearer(), kJson});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body_json(), json({{"error", "coment: unknown field"}})) << bad.body;
  EXPECT_EQ(api_silences(d).size(), 1u);
  EXPECT_FALSE(api_alert(d, "lup-dns").contains("acknowledged"));

  // The right token does it, and the log says who.
  ack = request(d.port(), "POST", "/api/v1/alerts/lup-dns/ack", "{\"comment\":\"meins\"}",
                {bearer(), kJson});
  EXPECT_EQ(ack.status, 200) << ack.body;
  json alert = api_alert(d, "lup-dns");
  EXPECT_EQ(alert["acknowledged"]["by"], kTokenName) << alert.dump();
  EXPECT_EQ(alert["acknowledged"]["comment"], "meins");
  EXPECT_NE(d.proc().stderr_text().find("acknowledged by " + std::string(kTokenName)),
            std::string::npos)
      << d.proc().stderr_text();
}

// ---- 5. Alertmanager ------------------------------------------------------------

TEST(OnCall, AlertsPushedToAlertmanagerAppearInItsApiAndResolveThere) {
  if (!fs::exists(kAlertmanager))
    GTEST_SKIP() << kAlertmanager << " is not installed (Debian: prometheus-alertmanager)";
  WebhookSink hook;
  Alertmanager am(hook.url("/am"));
  int port = free_port();
  Wachtd d("[receivers.am]\ntype = \"alertmanager\"\nurls = [\"" + am.url() +
           "\"]\nresend_interval = \"2s\"\n" + route("\"am\"") +
           check("lup-dns", "tcp", tcp(port)) +
           check("lup-portal", "http", "http://127.0.0.1:" + std::to_string(free_port()) + "/", 1,
                 "tenant = \"schwerin\"\n[check.labels]\nsite = \"rathaus\""));
  json alert;
  ASSERT_TRUE(eventually(
      [&] {
        alert = am.alert("lup-dns");
        return alert.is_object() && am.alert("lup-portal").is_object();
      },
      10s))
      << d.proc().stderr_text();
  EXPECT_EQ(alert["status"]["state"], "active");
  EXPECT_EQ(alert["labels"]["check"], "lup-dns");
  EXPECT_EQ(alert["labels"]["tenant"], "lup");
  EXPECT_EQ(alert["labels"]["severity"], "critical");
  EXPECT_EQ(alert["labels"]["target"], tcp(port));
  EXPECT_FALSE(alert["annotations"].value("summary", "").empty()) << alert.dump();
  json other = am.alert("lup-portal");
  EXPECT_EQ(other["labels"]["tenant"], "schwerin");
  EXPECT_EQ(other["labels"]["site"], "rathaus");

  auto up = http_target(port);
  ASSERT_TRUE(eventually([&] { return api_alert(d, "lup-dns").empty(); }));
  const double resolved = now_s();
  ASSERT_TRUE(eventually([&] { return am.alert("lup-dns").is_null(); }, 10s));
  // Not Alertmanager timing it out at endsAt (4 × 2 s after the last resend).
  EXPECT_LT(now_s() - resolved, 4.0);
  EXPECT_TRUE(am.alert("lup-portal").is_object()) << "the other alert still fires";
  // Alertmanager's own notification says so too.
  ASSERT_TRUE(eventually(
      [&] {
        for (const json& q : hook.requests("/am")) {
          json b = json::parse(q["body"].get<std::string>());
          for (const json& a : b["alerts"])
            if (a["status"] == "resolved" && a["labels"]["check"] == "lup-dns") return true;
        }
        return false;
      },
      8s));
  EXPECT_TRUE(d.wait_for(
      "wacht_alertmanager_pushes_total\\{receiver=\"am\",result=\"ok\",url=\"[^\"]+\"\\} [1-9]"))
      << d.metrics();
}

// ---- 6. connectivity guard ---------------------------------------------------------

TEST(OnCall, CuttingTheVantagePointOffSendsOneBlindMailAndHoldsAlertsUntilItSeesAgain) {
  SmtpSink sink;
  int port = free_port();
  auto target = http_target(port);
  int fs_port = free_port();
  auto fileserver = http_target(fs_port);
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  std::string config = smtp(sink.port()) + email("oncall", "bereitschaft@lup.example.org") +
                       email("ops", "betrieb@ksm.example.org") +
                       "[guard]\nchecks = [\"uplink\"]\nreceivers = [\"ops\"]\n" +
                       route("\"oncall\"", "group_by = [\"check\"]") +
                       "[[check]]\nid = \"uplink\"\ntype = \"tcp\"\ntarget = \"" + tcp(port) +
                       "\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\nmax_attempts = 1\n";
  for (int i = 0; i < 10; ++i)
    config += check("site-" + std::to_string(i), "http", url + "/s" + std::to_string(i), 3);
  // Behind another path: its outage while wacht is blind is real.
  config += check("lup-fileserver", "tcp", tcp(fs_port), 3);
  Wachtd d(config);
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"site-9\"[^}]*\\} 1"));
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"uplink\"[^}]*\\} 1"));

  target.reset();  // the vantage point is cut off
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  fileserver.reset();
  // Longer than interval + max_attempts × retry_interval + group_wait.
  std::this_thread::sleep_for(3000ms);
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 1u) << subjects(mails);
  EXPECT_EQ(mails[0].header("subject"),
            "[wacht] ÜBERWACHUNG BLIND: Standort von wacht abgeschnitten");
  EXPECT_EQ(rcpt(mails[0]), "betrieb@ksm.example.org");
  EXPECT_NE(mails[0].body.find("guard checks uplink fail"), std::string::npos) << mails[0].body;
  EXPECT_EQ(d.value("wacht_blind"), 1);
  EXPECT_EQ(api_firing(d), 12u) << "held back, not lost";

  // Back: the all-clear, then only what still fails after a fresh look.
  target = http_target(port);
  ASSERT_TRUE(eventually([&] { return sink.count() >= 3; })) << subjects(sink.mails());
  std::this_thread::sleep_for(2000ms);
  mails = sink.mails();
  ASSERT_EQ(mails.size(), 3u) << "alerts sent after the all-clear:\n" << subjects(mails);
  EXPECT_EQ(mails[1].header("subject"), "[wacht] ÜBERWACHUNG SIEHT WIEDER");
  EXPECT_EQ(rcpt(mails[1]), "betrieb@ksm.example.org");
  EXPECT_EQ(mails[1].header("in-reply-to"), mails[0].header("message-id"));
  EXPECT_EQ(mails[2].header("subject"),
            "[wacht] [LUP] ALARM KRITISCH: lup-fileserver (" + tcp(fs_port) + ")");
  EXPECT_EQ(rcpt(mails[2]), "bereitschaft@lup.example.org");
  EXPECT_EQ(d.value("wacht_blind"), 0);
}

// ---- 7. webhook receiver ---------------------------------------------------------

TEST(OnCall, AWebhookGetsAlertmanagerJsonRetriedThroughTheOutboxAndDeliveredOnce) {
  WebhookSink hook;
  int port = free_port();
  const std::string path = "/flaky/1/wacht";  // 503 once, then 200
  Wachtd d(kAlerting + "[receivers.hook]\ntype = \"webhook\"\nurl = \"" + hook.url(path) + "\"\n" +
           route("\"hook\"") + check("lup-dns", "tcp", tcp(port)));
  ASSERT_TRUE(eventually([&] { return hook.requests(path).size() >= 2; }))
      << d.proc().stderr_text();
  std::this_thread::sleep_for(1500ms);
  auto requests = hook.requests(path);
  ASSERT_EQ(requests.size(), 2u) << "the 503 retried once, then nothing more";
  for (const json& q : requests) {
    EXPECT_EQ(q["method"], "POST");
    EXPECT_EQ(q["headers"].value("content-type", ""), "application/json");
  }
  const std::string key = requests[0]["headers"].value("idempotency-key", "");
  EXPECT_EQ(key.rfind("<wacht.", 0), 0u) << key;
  EXPECT_EQ(requests[1]["headers"].value("idempotency-key", ""), key) << "a retry, not a new one";
  json body = json::parse(requests[1]["body"].get<std::string>());
  EXPECT_EQ(body["version"], "4");
  EXPECT_EQ(body["status"], "firing");
  EXPECT_EQ(body["receiver"], "hook");
  ASSERT_EQ(body["alerts"].size(), 1u) << body.dump();
  EXPECT_EQ(body["alerts"][0]["status"], "firing");
  EXPECT_EQ(body["alerts"][0]["labels"]["check"], "lup-dns");
  EXPECT_EQ(body["alerts"][0]["labels"]["tenant"], "lup");
  EXPECT_EQ(body["alerts"][0]["labels"]["severity"], "critical");
  EXPECT_EQ(body["commonLabels"]["check"], "lup-dns");
  EXPECT_TRUE(d.wait_for("wacht_notifications_total\\{receiver=\"hook\",result=\"retry\"\\} 1"));
  EXPECT_TRUE(
      d.wait_for("wacht_notifications_total\\{receiver=\"hook\",result=\"delivered\"\\} 1"));

  auto up = http_target(port);
  ASSERT_TRUE(eventually([&] { return hook.requests(path).size() >= 3; }));
  json resolved = json::parse(hook.requests(path)[2]["body"].get<std::string>());
  EXPECT_EQ(resolved["status"], "resolved");
  EXPECT_EQ(resolved["alerts"][0]["status"], "resolved");
  EXPECT_EQ(resolved["alerts"][0]["labels"]["check"], "lup-dns");
  EXPECT_NE(hook.requests(path)[2]["headers"].value("idempotency-key", ""), key);
}

// ---- 8. maintenance window in the config ----------------------------------------------

TEST(OnCall, AConfigMaintenanceWindowCoveringNowHoldsItsAlertsBack) {
  SmtpSink sink;
  time_t now = time(nullptr);
  Wachtd d(smtp(sink.port()) + email("oncall", "bereitschaft@lup.example.org") +
           route("\"oncall\"", "group_by = [\"check\"]") +
           "[[maintenance]]\nname = \"patchnacht\"\nmatchers = ['check=~\"lup-dns|lup-ldap\"']\n"
           "timezone = \"UTC\"\nfrom = \"" +
           utc(now - 3600, "%Y-%m-%dT%H:%M") + "\"\nuntil = \"" +
           utc(now + 3600, "%Y-%m-%dT%H:%M") + "\"\ncomment = \"Patchnacht DNS\"\n" +
           check("lup-dns", "tcp", tcp(free_port())) + check("lup-mail", "tcp", tcp(free_port())));
  // The check outside the window is mailed; the one inside is not.
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  ASSERT_TRUE(eventually([&] { return api_alert(d, "lup-dns").value("status", "") == "firing"; }));
  std::this_thread::sleep_for(2500ms);
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 1u) << subjects(mails);
  EXPECT_NE(mails[0].header("subject").find("lup-mail"), std::string::npos);
  EXPECT_EQ(api_alert(d, "lup-dns").value("silenced_by", ""), "config:patchnacht");
  EXPECT_FALSE(api_alert(d, "lup-mail").contains("silenced_by"));
  json list = api_silences(d);
  ASSERT_EQ(list.size(), 1u) << list.dump();
  EXPECT_EQ(list[0]["id"], "config:patchnacht");
  EXPECT_EQ(list[0]["status"]["state"], "active");
  EXPECT_EQ(list[0]["comment"], "Patchnacht DNS");
  EXPECT_EQ(list[0]["startsAt"], utc(now - 3600, "%Y-%m-%dT%H:%M:00.000Z"));
}

// ---- 9. wachtd --oncall ---------------------------------------------------------------

struct RunResult {
  int status = -1;
  std::string out, err;
};

RunResult run_wachtd(const std::vector<std::string>& args) {
  std::string dir = make_temp_dir();
  std::string cmd = WACHTD_PATH;
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>" + dir + "/err";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.err = read_text(dir + "/err");
  fs::remove_all(dir);
  return r;
}

TEST(OnCall, WachtdOncallPrintsWhoIsPagedAndTheShiftsAcrossDst) {
  std::string dir = make_temp_dir();
  const std::string config = dir + "/wacht.toml";
  std::ofstream(config)
      << "[daemon]\nlisten = \"127.0.0.1:" << free_port() << "\"\nstate_dir = \"" << dir
      << "/state\"\n"
         "[alerting]\ntimezone = \"Europe/Berlin\"\n"
         "[smtp]\nsmarthost = \"127.0.0.1:25\"\ntls = \"none\"\nfrom = \"wacht@example.org\"\n"
         "[tenants.lup]\nname = \"Landkreis Ludwigslust-Parchim\"\n"
         "[people.anna]\nname = \"Anna Schmidt\"\nemail = \"anna.schmidt@lup.example.org\"\n"
         "[people.bernd]\nname = \"Bernd Meier\"\nemail = \"bernd.meier@lup.example.org\"\n"
         "[people.clara]\nname = \"Clara Wolf\"\nemail = \"clara.wolf@lup.example.org\"\n"
         "[rotations.lup-bereitschaft]\ntimezone = \"Europe/Berlin\"\n"
         "people = [\"anna\", \"bernd\", \"clara\"]\nstart = \"2026-03-02T09:00\"\nshift = \"1w\"\n"
         "[receivers.lup-oncall]\ntype = \"email\"\nto = [\"bereitschaft@lup.example.org\"]\n"
         "rotation = \"lup-bereitschaft\"\n"
         "[receivers.lup-lead]\ntype = \"email\"\nto = [\"leitung@lup.example.org\"]\n"
         "[receivers.ksm-head]\ntype = \"email\"\nto = [\"it-leitung@ksm.example.org\"]\n"
         "[escalations.lup]\n[[escalations.lup.level]]\nafter = \"15m\"\n"
         "receivers = [\"lup-lead\"]\n[[escalations.lup.level]]\nafter = \"45m\"\n"
         "receivers = [\"ksm-head\"]\n"
         "[[route]]\ntenants = [\"lup\"]\nreceivers = [\"lup-oncall\"]\nescalation = \"lup\"\n";

  // Sunday night of the spring change: 02:30 CEST does not exist, the instant
  // is 01:30 CET. Anna's week (from 23 March) runs until Monday 09:00 CEST.
  RunResult r =
      run_wachtd({"--config", config, "--oncall", "lup", "--at", "2026-03-29T02:30:00+02:00"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Tenant lup at Sun 2026-03-29 01:30 CET:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("critical alerts, route 1, at once: lup-oncall (email) -> "
                       "bereitschaft@lup.example.org, anna.schmidt@lup.example.org"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("on call: Anna Schmidt <anna.schmidt@lup.example.org> until Mon "
                       "2026-03-30 09:00 CEST"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("level 2 after 15m unacknowledged: lup-lead (email) -> "
                       "leitung@lup.example.org"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("level 3 after 45m unacknowledged: ksm-head (email) -> "
                       "it-leitung@ksm.example.org"),
            std::string::npos)
      << r.out;

  // The rotation's shifts across the change, clipped to the 14 days from --at:
  // the handover stays 09:00 local, CET before and CEST after.
  r = run_wachtd({"--config", config, "--oncall", "lup-bereitschaft", "--at",
                  "2026-03-23T12:00:00+01:00", "--days", "14"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("Mon 2026-03-23 12:00 CET – Mon 2026-03-30 09:00 CEST  Anna Schmidt"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Mon 2026-03-30 09:00 CEST – Mon 2026-04-06 09:00 CEST  Bernd Meier"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("Mon 2026-04-06 09:00 CEST – Mon 2026-04-06 13:00 CEST  Clara Wolf"),
            std::string::npos)
      << r.out;

  r = run_wachtd({"--config", config, "--oncall", "nobody-knows"});
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.err.find("'nobody-knows' is neither a tenant nor a rotation"), std::string::npos)
      << r.err;
  fs::remove_all(dir);
}

// ---- 10. storm digest -----------------------------------------------------------------

// What a storm of `n` alerts "dienst-<i>" on a route with storm_limit = 3
// should come to: at most 3 single mails and one digest naming the rest.
void expect_storm(const std::vector<Mail>& mails, int n) {
  size_t singles = 0;
  std::set<std::string> covered;
  for (const auto& m : mails) {
    const std::string& s = m.header("subject");
    if (s.find("SAMMELMELDUNG") != std::string::npos) continue;
    ++singles;
    for (int i = 0; i < n; ++i)
      if (s.find("dienst-" + std::to_string(i) + " ") != std::string::npos)
        covered.insert("dienst-" + std::to_string(i));
  }
  EXPECT_LE(singles, 3u) << subjects(mails);
  ASSERT_EQ(count_if(mails, "SAMMELMELDUNG"), 1u) << subjects(mails);
  EXPECT_EQ(mails.size(), singles + 1) << subjects(mails);
  const Mail& digest = *std::find_if(mails.begin(), mails.end(), [](const Mail& m) {
    return m.header("subject").find("SAMMELMELDUNG") != std::string::npos;
  });
  EXPECT_EQ(digest.header("subject").rfind("[wacht] [LUP] SAMMELMELDUNG: ALARM KRITISCH: " +
                                               std::to_string(n - singles) + " Prüfungen (",
                                           0),
            0u)
      << digest.header("subject");
  for (int i = 0; i < n; ++i) {
    const std::string id = "dienst-" + std::to_string(i);
    if (covered.contains(id)) continue;
    EXPECT_NE(digest.body.find("KRITISCH: " + id + "\r\n"), std::string::npos)
        << id << " is in no message:\n"
        << subjects(mails) << digest.body;
  }
}

std::string storm_config(int smtp_port, const std::string& target_url, int n) {
  std::string config = smtp(smtp_port) + email("oncall", "bereitschaft@lup.example.org") +
                       route("\"oncall\"", "group_by = [\"check\"]\nstorm_limit = 3");
  for (int i = 0; i < n; ++i) {
    std::string id = "dienst-" + std::to_string(i);
    config += target_url.empty() ? check(id, "tcp", tcp(free_port()))
                                 : check(id, "http", target_url + "/" + id);
  }
  return config;
}

// Ten alerts released in the same moment (a silence over them expires).
TEST(OnCall, AStormOfAlertsReleasedTogetherIsThreeMailsAndOneDigest) {
  TokensFile tokens;
  SmtpSink sink;
  int port = free_port();
  auto web = http_target(port);
  Wachtd d("[api]\ntokens_file = \"" + tokens.path() + "\"\n" +
           storm_config(sink.port(), "http://127.0.0.1:" + std::to_string(port), 10));
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"dienst-9\"[^}]*\\} 1"));
  time_t now = time(nullptr);
  Reply made =
      request(d.port(), "POST", "/api/v1/silences",
              json{{"matchers", {{{"name", "check"}, {"value", "dienst-.*"}, {"isRegex", true}}}},
                   {"startsAt", utc(now)},
                   {"endsAt", utc(now + 3600)},
                   {"comment", "Umbau Rechenzentrum"}}
                  .dump(),
              {bearer(), kJson});
  ASSERT_EQ(made.status, 200) << made.body;
  web.reset();
  ASSERT_TRUE(eventually([&] { return api_firing(d) == 10; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1500ms);  // every group past its group_wait, held back
  ASSERT_EQ(sink.count(), 0u) << subjects(sink.mails());

  Reply expired = request(d.port(), "DELETE",
                          "/api/v1/silences/" + made.body_json()["silenceID"].get<std::string>(),
                          "", {bearer()});
  ASSERT_EQ(expired.status, 204) << expired.body;
  ASSERT_TRUE(eventually([&] { return count_if(sink.mails(), "SAMMELMELDUNG") >= 1; }, 5s))
      << subjects(sink.mails()) << d.proc().stderr_text();
  std::this_thread::sleep_for(1500ms);
  auto mails = sink.mails();
  expect_storm(mails, 10);
  EXPECT_EQ(count_if(mails, "SAMMELMELDUNG"), 1u);
  EXPECT_EQ(mails.size(), 4u) << subjects(mails);
  EXPECT_TRUE(d.wait_for("wacht_storm_digests_total\\{route=\"route 1\"\\} 1"));
}

// Ten checks that fail at once, as they are found failing: at their phases,
// spread over one check interval. The digest collects the overflow for
// group_wait, so the whole storm is three mails and one digest.
TEST(OnCall, AStormSpreadOverOneCheckIntervalIsThreeMailsAndOneDigest) {
  SmtpSink sink;
  Wachtd d(storm_config(sink.port(), "", 10));
  ASSERT_TRUE(eventually([&] { return count_if(sink.mails(), "SAMMELMELDUNG") >= 1; }))
      << subjects(sink.mails()) << d.proc().stderr_text();
  std::this_thread::sleep_for(3000ms);
  expect_storm(sink.mails(), 10);
}

}  // namespace
}  // namespace wacht::test
