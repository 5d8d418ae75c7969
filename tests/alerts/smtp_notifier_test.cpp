#include "alerts/smtp_notifier.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "alerts/outbox.hpp"
#include "runtime/curl_multi.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using test::read_text;

// The unfolded value of the first header `name` in a message's header block.
std::string header_of(const std::string& message, const std::string& name) {
  const std::string head = message.substr(0, message.find("\r\n\r\n") + 2);
  std::string value;
  bool in = false;
  std::istringstream lines(head);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (in && !line.empty() && (line[0] == ' ' || line[0] == '\t')) {
      value += line;
      continue;
    }
    if (in) break;
    if (line.size() > name.size() && strncasecmp(line.c_str(), name.c_str(), name.size()) == 0 &&
        line[name.size()] == ':') {
      in = true;
      value = line.substr(name.size() + 2);
    }
  }
  return value;
}

// smtp_sink.py on 127.0.0.1 (see its header for the switches).
class Sink {
 public:
  explicit Sink(std::vector<std::string> args, int port = 0) : dir_(test::make_temp_dir()) {
    std::vector<std::string> argv = {
        "/usr/bin/python3",  test::support_path("smtp_sink.py"), "--dir", dir_, "--port",
        std::to_string(port)};
    argv.insert(argv.end(), args.begin(), args.end());
    process_ = std::make_unique<test::ChildProcess>(argv);
    port_ = static_cast<uint16_t>(std::stoi(process_->first_line()));
  }
  ~Sink() {
    process_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  uint16_t port() const { return port_; }
  // Stored messages, in the order they arrived.
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (int i = 1; fs::exists(path(i)); ++i) out.push_back(read_text(path(i)));
    return out;
  }
  // Messages the sink answered at the end of DATA, stored or not.
  int answered() const {
    std::string n = read_text(dir_ + "/attempts");
    return n.empty() ? 0 : std::stoi(n);
  }
  std::string stderr_text() const { return process_->stderr_text(); }

 private:
  std::string path(int i) const { return dir_ + "/new/" + std::to_string(i) + ".eml"; }
  std::string dir_;
  std::unique_ptr<test::ChildProcess> process_;
  uint16_t port_ = 0;
};

// A port nothing listens on (it was free a moment ago).
uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    ADD_FAILURE() << "cannot bind a loopback port";
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// A server that accepts connections (the kernel completes the handshake) and
// never says a word: the SMTP greeting never comes.
class SilentServer {
 public:
  SilentServer() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      ADD_FAILURE() << "cannot bind a loopback port";
    ::listen(fd_, 8);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentServer() { ::close(fd_); }
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_ = 0;
};

// Everything logged through spdlog's default logger while it lives.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "capture", std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

Notification make(const std::string& id) {
  Notification n;
  n.seq = 1;
  n.receiver = "mail";
  n.thread_key = "check-" + id;
  n.message_id = "<" + id + "@wacht.test>";
  n.subject = "[lup] CRITICAL: " + id;
  n.body = "Check " + id + " is CRITICAL.\n";
  n.kind = "firing";
  return n;
}

struct Result {
  Delivery delivery = Delivery::kRetry;
  std::string detail;
  int calls = 0;
};

class SmtpTest : public test::LoopTest {
 protected:
  void SetUp() override {
    LoopTest::SetUp();
    curl_ = std::make_unique<runtime::CurlMulti>(loop());
  }
  void TearDown() override {
    curl_.reset();
    LoopTest::TearDown();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  SmtpSettings settings(uint16_t port, SmtpSettings::Tls tls = SmtpSettings::Tls::kNone) {
    SmtpSettings s;
    s.host = "127.0.0.1";
    s.port = port;
    s.tls = tls;
    s.tls_ca_file = test::certs_dir() + "/ca.pem";
    s.from = "wacht <wacht@example.org>";
    s.to = {"oncall@example.org"};
    s.hello_name = "wacht.test";
    s.timeout = 5s;
    return s;
  }
  std::unique_ptr<Notifier> notifier(SmtpSettings s) {
    return make_smtp_notifier(loop(), curl_.get(), std::move(s));
  }
  // One attempt through the notifier alone.
  Result send(const SmtpSettings& s, const Notification& n) {
    auto smtp = notifier(s);
    Result r;
    smtp->send(n, [&](Delivery d, std::string detail) {
      r.delivery = d;
      r.detail = std::move(detail);
      ++r.calls;
    });
    EXPECT_EQ(r.calls, 0) << "done must not fire inside send()";
    EXPECT_TRUE(run_until([&] { return r.calls > 0; }));
    EXPECT_EQ(r.calls, 1);
    return r;
  }
  std::vector<std::string> tls_args(const std::string& option, const std::string& cert) {
    return {option, test::certs_dir() + "/" + cert + ".pem",
            test::certs_dir() + "/" + cert + ".key"};
  }
  OutboxOptions outbox_options() {
    OutboxOptions o;
    o.dir = dir_;
    o.initial_backoff = 50ms;
    o.max_backoff = 200ms;
    return o;
  }
  OutboxObserver observer() {
    return {[this](const std::string&, const std::string& result) { results_.push_back(result); },
            [this](const Notification& n, const std::string& reason) {
              dead_letters_.emplace_back(n.message_id, reason);
            },
            nullptr};
  }
  size_t count(const std::string& result) const {
    return static_cast<size_t>(std::count(results_.begin(), results_.end(), result));
  }

  std::unique_ptr<runtime::CurlMulti> curl_;
  std::string dir_ = test::make_temp_dir();
  std::vector<std::string> results_;
  std::vector<std::pair<std::string, std::string>> dead_letters_;
};

TEST_F(SmtpTest, RendersUmlautSubjectThreadingHeadersAndDate) {
  SmtpSettings s = settings(25);
  s.from = "Überwachung Schwerin <wacht@example.org>";
  s.to = {"oncall@example.org", "Bereitschaft, IT <it@example.org>"};
  s.reply_to = "noc@example.org";
  Notification n = make("web");
  n.subject =
      "[schwerin] KRITISCH: Bürgerportal nicht erreichbar – Zeitüberschreitung bei "
      "der Anmeldung (Größe, Maße)\r\nBcc: evil@example.org";
  n.in_reply_to = "<web-first@wacht.test>";
  n.body = "Prüfung fehlgeschlagen: Zeitüberschreitung nach 10 s.\n=3D is not an escape\n" +
           std::string(120, 'x') + "\ntrailing space \n.\n";
  const std::string m = render_email(s, n, 1'764'125'447'000);

  const std::string head = m.substr(0, m.find("\r\n\r\n"));
  for (size_t at = 0; (at = m.find('\n', at)) != std::string::npos; ++at) {
    ASSERT_TRUE(at > 0 && m[at - 1] == '\r') << "bare LF at " << at;
  }
  std::istringstream lines(m);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_LE(line.size(), 79u) << line;  // 78 + the CR
    for (unsigned char c : line) ASSERT_LT(c, 0x80) << "8-bit byte in: " << line;
    EXPECT_NE(line.rfind("Bcc:", 0), 0u) << "header injection";
  }
  EXPECT_EQ(header_of(m, "Date"), "Wed, 26 Nov 2025 02:50:47 +0000");
  EXPECT_EQ(header_of(m, "Message-ID"), "<web@wacht.test>");
  EXPECT_EQ(header_of(m, "In-Reply-To"), "<web-first@wacht.test>");
  EXPECT_EQ(header_of(m, "References"), "<web-first@wacht.test>");
  EXPECT_EQ(header_of(m, "MIME-Version"), "1.0");
  EXPECT_EQ(header_of(m, "Content-Type"), "text/plain; charset=utf-8");
  EXPECT_EQ(header_of(m, "Content-Transfer-Encoding"), "quoted-printable");
  EXPECT_NE(header_of(m, "Subject").find("=?UTF-8?B?"), std::string::npos) << head;

  // Decoded by an independent parser: Python's email package.
  const std::string file = dir_ + "/message.eml";
  std::ofstream(file, std::ios::binary) << m;
  test::ChildProcess parser({"/usr/bin/python3", "-c", R"(
import email, email.policy, json, sys
m = email.message_from_binary_file(open(sys.argv[1], 'rb'), policy=email.policy.default)
print(json.dumps({'subject': str(m['subject']), 'from': str(m['from']), 'to': str(m['to']),
  'reply_to': str(m['reply-to']), 'date': m['date'].datetime.isoformat(),
  'body': m.get_content(), 'defects': sum(len(p.defects) for p in m.walk())}))
)",
                             file});
  auto parsed = nlohmann::json::parse(parser.first_line());
  EXPECT_EQ(parsed["subject"],
            "[schwerin] KRITISCH: Bürgerportal nicht erreichbar – Zeitüberschreitung bei der "
            "Anmeldung (Größe, Maße)  Bcc: evil@example.org");
  EXPECT_EQ(parsed["from"], "Überwachung Schwerin <wacht@example.org>");
  EXPECT_EQ(parsed["to"], "oncall@example.org, \"Bereitschaft, IT\" <it@example.org>");
  EXPECT_EQ(parsed["reply_to"], "noc@example.org");
  EXPECT_EQ(parsed["date"], "2025-11-26T02:50:47+00:00");
  EXPECT_EQ(parsed["body"], n.body);
  EXPECT_EQ(parsed["defects"], 0);
}

TEST_F(SmtpTest, DeliversOverStartTlsVerifiedAgainstTheTestCa) {
  Sink sink(tls_args("--tls", "valid"));
  Result r = send(settings(sink.port(), SmtpSettings::Tls::kStartTls), make("tls"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u) << sink.stderr_text();
  EXPECT_EQ(header_of(messages[0], "X-Sink-TLS"), "yes");
  EXPECT_EQ(header_of(messages[0], "X-Sink-Rcpt"), "oncall@example.org");
  EXPECT_EQ(header_of(messages[0], "Message-ID"), "<tls@wacht.test>");
}

TEST_F(SmtpTest, DeliversOverImplicitTls) {
  Sink sink(tls_args("--smtps", "valid"));
  Result r = send(settings(sink.port(), SmtpSettings::Tls::kImplicit), make("smtps"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u) << sink.stderr_text();
  EXPECT_EQ(header_of(messages[0], "X-Sink-TLS"), "yes");
}

TEST_F(SmtpTest, UntrustedCertificateIsRetriedUnlessVerificationIsOff) {
  Sink sink(tls_args("--tls", "selfsigned"));
  SmtpSettings s = settings(sink.port(), SmtpSettings::Tls::kStartTls);
  Result r = send(s, make("untrusted"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("certificate"), std::string::npos) << r.detail;
  EXPECT_EQ(sink.answered(), 0);

  s.tls_insecure = true;
  r = send(s, make("insecure"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  EXPECT_EQ(sink.messages().size(), 1u);
}

TEST_F(SmtpTest, ServerWithoutStartTlsIsRetriedAndNeverSentInPlaintext) {
  Sink sink({});
  Result r = send(settings(sink.port(), SmtpSettings::Tls::kStartTls), make("plain"));
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("STARTTLS is required but the server does not offer it"),
            std::string::npos)
      << r.detail;
  EXPECT_EQ(sink.answered(), 0);
  EXPECT_TRUE(sink.messages().empty());
}

TEST_F(SmtpTest, AuthenticatesAndNeverReportsThePassword) {
  const std::string password = "Geheim-Passwort-42";
  const std::string wrong = "Falsches-Passwort-17";
  Sink sink([&] {
    auto args = tls_args("--tls", "valid");
    args.insert(args.end(), {"--auth", "wacht:" + password});
    return args;
  }());
  SmtpSettings s = settings(sink.port(), SmtpSettings::Tls::kStartTls);
  s.username = "wacht";
  s.password = wrong;
  Result direct = send(s, make("direct"));
  EXPECT_EQ(direct.delivery, Delivery::kRetry) << "a wrong password must not drop alerts";
  EXPECT_NE(direct.detail.find("authentication as wacht failed: 535"), std::string::npos)
      << direct.detail;
  EXPECT_EQ(direct.detail.find(wrong), std::string::npos) << direct.detail;

  // Through the outbox: the wrong password is retried, then the corrected
  // receiver (a config reload) delivers; no log line holds either password.
  LogCapture logs;
  Outbox box(loop(), outbox_options(), observer());
  std::string error;
  ASSERT_TRUE(box.open(&error)) << error;
  box.add_receiver("mail", notifier(s));
  box.enqueue(make("auth"));
  ASSERT_TRUE(run_until([&] { return count("retry") >= 2; }));
  s.password = password;
  box.add_receiver("mail", notifier(s));
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  EXPECT_EQ(count("delivered"), 1u);
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(header_of(messages[0], "X-Sink-Auth"), "wacht");
  EXPECT_EQ(header_of(messages[0], "X-Sink-TLS"), "yes");
  const std::string text = logs.text();
  EXPECT_NE(text.find("authentication as wacht failed"), std::string::npos) << text;
  EXPECT_EQ(text.find(wrong), std::string::npos) << text;
  EXPECT_EQ(text.find(password), std::string::npos) << text;
}

TEST_F(SmtpTest, TemporaryFailureIsRetriedAndDeliveredOnce) {
  LogCapture logs;
  Sink sink({"--tempfail", "1"});
  Outbox box(loop(), outbox_options(), observer());
  std::string error;
  ASSERT_TRUE(box.open(&error)) << error;
  box.add_receiver("mail", notifier(settings(sink.port())));
  box.enqueue(make("greylisted"));
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  EXPECT_EQ(results_, (std::vector<std::string>{"retry", "delivered"}));
  EXPECT_EQ(sink.answered(), 2);
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(header_of(messages[0], "Message-ID"), "<greylisted@wacht.test>");
  EXPECT_NE(logs.text().find("451 4.3.0 temporary failure"), std::string::npos) << logs.text();
}

TEST_F(SmtpTest, PermanentRejectionIsDeadLetteredAndNotRetried) {
  Sink sink({"--reject"});
  Outbox box(loop(), outbox_options(), observer());
  std::string error;
  ASSERT_TRUE(box.open(&error)) << error;
  box.add_receiver("mail", notifier(settings(sink.port())));
  box.enqueue(make("first"));
  ASSERT_TRUE(run_until([&] { return dead_letters_.size() == 1; }));
  EXPECT_EQ(box.pending(), 0u);
  EXPECT_EQ(dead_letters_[0].first, "<first@wacht.test>");
  EXPECT_NE(dead_letters_[0].second.find("550 5.7.1 message refused by policy"), std::string::npos)
      << dead_letters_[0].second;
  // A second notification goes through the same receiver; had the first
  // been retried, the sink would have answered more than twice.
  box.enqueue(make("second"));
  ASSERT_TRUE(run_until([&] { return dead_letters_.size() == 2; }));
  EXPECT_EQ(sink.answered(), 2);
  EXPECT_EQ(results_, (std::vector<std::string>{"rejected", "rejected"}));
  EXPECT_TRUE(sink.messages().empty());
}

TEST_F(SmtpTest, RefusedRecipientFailsTheMailOnlyWhenNobodyIsLeft) {
  Sink sink({});
  SmtpSettings s = settings(sink.port());
  s.to = {"nobody@example.org"};
  Result r = send(s, make("unknown"));
  EXPECT_EQ(r.delivery, Delivery::kRejected) << r.detail;
  EXPECT_NE(r.detail.find("550 5.1.1 <nobody@example.org>: user unknown"), std::string::npos)
      << r.detail;

  s.to = {"nobody@example.org", "oncall@example.org"};
  r = send(s, make("partly"));
  EXPECT_EQ(r.delivery, Delivery::kDelivered) << r.detail;
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(header_of(messages[0], "X-Sink-Rcpt"), "oncall@example.org");
}

TEST_F(SmtpTest, ServerDownThenUpDeliversOnce) {
  const uint16_t port = free_port();
  Outbox box(loop(), outbox_options(), observer());
  std::string error;
  ASSERT_TRUE(box.open(&error)) << error;
  box.add_receiver("mail", notifier(settings(port)));
  box.enqueue(make("outage"));
  ASSERT_TRUE(run_until([&] { return count("retry") >= 2; }));
  EXPECT_EQ(box.pending(), 1u);
  Sink sink({}, port);
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  EXPECT_EQ(count("delivered"), 1u);
  auto messages = sink.messages();
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(header_of(messages[0], "Message-ID"), "<outage@wacht.test>");
}

TEST_F(SmtpTest, RestartSendsPendingMailOnceWithTheSameMessageId) {
  const uint16_t dead = free_port();
  {
    Outbox box(loop(), outbox_options(), observer());
    std::string error;
    ASSERT_TRUE(box.open(&error)) << error;
    box.add_receiver("mail", notifier(settings(dead)));
    for (const char* id : {"r1", "r2", "r3"}) {
      Notification n = make(id);
      n.thread_key = id;
      box.enqueue(n);
    }
    ASSERT_TRUE(run_until([&] { return count("retry") >= 3; }));
  }
  Sink sink({});
  {
    Outbox box(loop(), outbox_options(), observer());
    std::string error;
    ASSERT_TRUE(box.open(&error)) << error;
    EXPECT_EQ(box.pending(), 3u);
    box.add_receiver("mail", notifier(settings(sink.port())));
    ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  }
  Outbox box(loop(), outbox_options(), observer());
  std::string error;
  ASSERT_TRUE(box.open(&error)) << error;
  EXPECT_EQ(box.pending(), 0u);
  box.add_receiver("mail", notifier(settings(sink.port())));
  box.enqueue(make("after"));
  ASSERT_TRUE(run_until([&] { return box.pending() == 0; }));
  std::vector<std::string> ids;
  for (const auto& m : sink.messages()) ids.push_back(header_of(m, "Message-ID"));
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"<after@wacht.test>", "<r1@wacht.test>",
                                           "<r2@wacht.test>", "<r3@wacht.test>"}));
}

TEST_F(SmtpTest, SilentServerTimesOutAndCancelStopsATransfer) {
  SilentServer server;
  SmtpSettings s = settings(server.port());
  s.timeout = 300ms;
  auto smtp = notifier(s);
  int calls = 0;
  Result r;
  smtp->send(make("cancelled"), [&](Delivery, const std::string&) { ++calls; });
  smtp->cancel();
  EXPECT_EQ(curl_->running(), 0u);
  const double start = test::now_seconds();
  smtp->send(make("timeout"), [&](Delivery d, std::string detail) {
    ++calls;
    r.delivery = d;
    r.detail = std::move(detail);
  });
  ASSERT_TRUE(run_until([&] { return calls > 0; }));
  EXPECT_EQ(calls, 1) << "the cancelled send reported a result";
  EXPECT_EQ(r.delivery, Delivery::kRetry);
  EXPECT_NE(r.detail.find("imed out"), std::string::npos) << r.detail;
  EXPECT_GE(test::now_seconds() - start, 0.29);
}

TEST_F(SmtpTest, LogNotifierLogsOneLineAndDeliversOnALaterIteration) {
  LogCapture logs;
  auto log = make_log_notifier(loop());
  Notification n = make("logged");
  n.body = "line one\nline two\n";
  Result r;
  log->send(n, [&](Delivery d, const std::string&) {
    r.delivery = d;
    ++r.calls;
  });
  EXPECT_EQ(r.calls, 0);
  ASSERT_TRUE(run_until([&] { return r.calls == 1; }));
  EXPECT_EQ(r.delivery, Delivery::kDelivered);
  const std::string text = logs.text();
  EXPECT_NE(text.find("[lup] CRITICAL: logged"), std::string::npos) << text;
  EXPECT_NE(text.find("line one | line two"), std::string::npos) << text;
  EXPECT_NE(text.find("<logged@wacht.test>"), std::string::npos) << text;
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1) << text;
}

}  // namespace
}  // namespace wacht::alerts
