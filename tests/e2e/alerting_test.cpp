// End to end alerting: wachtd, real targets and a real SMTP sink (aiosmtpd).
#include <gtest/gtest.h>
#include <signal.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "e2e/harness.hpp"

namespace wacht::test {
namespace {

using namespace std::chrono_literals;

// [smtp], one receiver per tenant and a route each; quick timings for tests.
std::string alerting(int smtp_port, const std::string& route_extra = "") {
  return "[alerting]\nretry_backoff = \"200ms\"\nretry_max_backoff = \"400ms\"\n"
         "hostname = \"wacht.test\"\n"
         "[smtp]\nsmarthost = \"127.0.0.1:" +
         std::to_string(smtp_port) +
         "\"\ntls = \"none\"\nfrom = \"wacht <wacht@example.org>\"\ntimeout = \"2s\"\n"
         "[receivers.lup-oncall]\ntype = \"email\"\nto = [\"bereitschaft@lup.example.org\"]\n"
         "language = \"en\"\n"
         "[receivers.sn-oncall]\ntype = \"email\"\nto = [\"bereitschaft@schwerin.example.org\"]\n"
         "[[route]]\ntenants = [\"lup\"]\nreceivers = [\"lup-oncall\"]\ngroup_wait = \"200ms\"\n"
         "group_interval = \"300ms\"\n" +
         route_extra +
         "\n[[route]]\ntenants = [\"schwerin\"]\nreceivers = [\"sn-oncall\"]\n"
         "group_wait = \"200ms\"\ngroup_interval = \"300ms\"\n" +
         route_extra + "\n";
}

std::string check(const std::string& id, const std::string& type, const std::string& target,
                  const std::string& extra = "", int max_attempts = 3) {
  return "[[check]]\nid = \"" + id + "\"\ntype = \"" + type + "\"\ntarget = \"" + target +
         "\"\ninterval = \"500ms\"\ntimeout = \"300ms\"\nretry_interval = \"100ms\"\n"
         "max_attempts = " +
         std::to_string(max_attempts) + "\nflap_detection = false\n" + extra + "\n";
}

TEST(Alerting, AFailingTargetMailsItsTenantOnceAndThreadsTheRecovery) {
  SmtpSink sink;
  int port = free_port();
  auto web = http_target(port);
  auto other = http_target();
  Wachtd d(alerting(sink.port()) +
           check("lup-portal", "http", "http://127.0.0.1:" + std::to_string(port) + "/",
                 "description = \"Bürgerportal des Landkreises\"") +
           check("sn-portal", "http", "http://127.0.0.1:" + other->first_line() + "/",
                 "tenant = \"schwerin\""));
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"lup-portal\"[^}]*\\} 1"));

  web.reset();  // the portal goes down
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1500ms);  // several more failing runs and flush ticks
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 1u) << "expected exactly one email";
  const Mail firing = mails[0];
  EXPECT_EQ(
      firing.header("subject"),
      "[wacht] [LUP] FIRING CRITICAL: lup-portal (http://127.0.0.1:" + std::to_string(port) + "/)");
  EXPECT_EQ(firing.header("x-sink-rcpt"), "bereitschaft@lup.example.org");
  EXPECT_NE(firing.body.find("Bürgerportal des Landkreises"), std::string::npos) << firing.body;
  EXPECT_NE(firing.body.find("Landkreis Ludwigslust-Parchim"), std::string::npos) << firing.body;
  EXPECT_NE(firing.body.find("Output:"), std::string::npos) << firing.body;
  EXPECT_EQ(firing.header("message-id").rfind("<wacht.", 0), 0u) << firing.header("message-id");
  EXPECT_TRUE(d.wait_for("wacht_alerts\\{state=\"firing\"\\} 1"));
  EXPECT_TRUE(
      d.wait_for("wacht_notifications_total\\{receiver=\"lup-oncall\",result=\"delivered\"\\} 1"));

  web = http_target(port);  // back
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);
  mails = sink.mails();
  ASSERT_EQ(mails.size(), 2u);
  const Mail resolved = mails[1];
  EXPECT_EQ(resolved.header("subject").rfind("[wacht] [LUP] RESOLVED: lup-portal", 0), 0u)
      << resolved.header("subject");
  EXPECT_EQ(resolved.header("in-reply-to"), firing.header("message-id"));
  EXPECT_NE(resolved.header("references").find(firing.header("message-id")), std::string::npos);
  EXPECT_EQ(count_if(mails, "sn-portal"), 0u);
}

TEST(Alerting, AWanLinkDownSendsOneMailNamingItsChildrenAndNoneAfterItRecovers) {
  SmtpSink sink;
  int port = free_port();
  auto site = http_target(port);
  const std::string p = std::to_string(port);
  std::string config = alerting(sink.port()) + check("wan-hagenow", "tcp", "127.0.0.1:" + p);
  for (int i = 0; i < 20; ++i) {
    config += check("hagenow-" + std::to_string(i), "http",
                    "http://127.0.0.1:" + p + "/s" + std::to_string(i),
                    "depends_on = [\"wan-hagenow\"]", 1);
  }
  Wachtd d(config);
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"hagenow-19\"[^}]*\\} 1"));
  site.reset();  // the link (and everything behind it) goes down
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(2000ms);
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 1u) << "children notified: " << mails.back().header("subject");
  EXPECT_NE(mails[0].header("subject").find("wan-hagenow"), std::string::npos);
  EXPECT_NE(mails[0].body.find("20 dependent check(s) unreachable: hagenow-0, hagenow-1,"),
            std::string::npos)
      << mails[0].body;
  EXPECT_TRUE(d.wait_for("wacht_alerts\\{state=\"unreachable\"\\} 20"));

  site = http_target(port);
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(2000ms);
  mails = sink.mails();
  std::string subjects;
  for (const auto& m : mails) subjects += m.header("subject") + "\n";
  ASSERT_EQ(mails.size(), 2u) << "recovery storm:\n" << subjects << d.proc().stderr_text();
  EXPECT_NE(mails[1].header("subject").find("RESOLVED: wan-hagenow"), std::string::npos);
}

TEST(Alerting, MailQueuedWhileTheSmtpServerIsDownIsDeliveredOnceItReturns) {
  int smtp_port = free_port();
  std::string config = alerting(smtp_port, "group_by = [\"check\"]");
  for (int i = 0; i < 5; ++i)
    config += check("closed-" + std::to_string(i), "tcp",
                    "127.0.0.1:" + std::to_string(free_port()), "", 1);
  Wachtd d(config);
  ASSERT_TRUE(d.wait_for("wacht_outbox_pending 5", 10s)) << d.metrics();
  ASSERT_TRUE(
      d.wait_for("wacht_notifications_total\\{receiver=\"lup-oncall\",result=\"retry\"\\} [1-9]"));
  SmtpSink sink(smtp_port);
  ASSERT_TRUE(eventually([&] { return sink.count() >= 5; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);
  auto mails = sink.mails();
  std::set<std::string> ids;
  for (const auto& m : mails) ids.insert(m.header("message-id"));
  EXPECT_EQ(mails.size(), 5u);
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_TRUE(d.wait_for("wacht_outbox_pending 0"));
}

TEST(Alerting, ATemporaryFailureIsRetriedAndDeliveredOnce) {
  SmtpSink sink(0, {"--tempfail", "1"});
  Wachtd d(alerting(sink.port()) +
           check("closed", "tcp", "127.0.0.1:" + std::to_string(free_port()), "", 1));
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(sink.count(), 1u);
  EXPECT_EQ(sink.attempts(), 2);
  EXPECT_TRUE(
      d.wait_for("wacht_notifications_total\\{receiver=\"lup-oncall\",result=\"retry\"\\} 1"));
}

TEST(Alerting, KillNineWithMailPendingDeliversEachExactlyOnceAfterRestart) {
  int smtp_port = free_port();
  std::string config = alerting(smtp_port, "group_by = [\"check\"]");
  for (int i = 0; i < 5; ++i)
    config += check("closed-" + std::to_string(i), "tcp",
                    "127.0.0.1:" + std::to_string(free_port()), "", 1);
  Wachtd d(config);
  ASSERT_TRUE(d.wait_for("wacht_outbox_pending 5", 10s)) << d.metrics();
  d.kill9();
  SmtpSink sink(smtp_port);
  d.start();
  ASSERT_TRUE(eventually([&] { return sink.count() >= 5; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(2000ms);  // the checks keep failing: no new alerts
  auto mails = sink.mails();
  std::set<std::string> ids;
  for (const auto& m : mails) ids.insert(m.header("message-id"));
  EXPECT_EQ(mails.size(), 5u);
  EXPECT_EQ(ids.size(), 5u) << "a Message-ID arrived twice";
}

TEST(Alerting, ARecoveryWhileWachtdWasDownIsStillAnnouncedAfterRestart) {
  SmtpSink sink;
  int port = free_port();
  Wachtd d(alerting(sink.port()) +
           check("lup-dns", "tcp", "127.0.0.1:" + std::to_string(port), "", 1));
  ASSERT_TRUE(eventually([&] { return sink.count() >= 1; })) << d.proc().stderr_text();
  ASSERT_EQ(d.proc().signal_and_wait(SIGTERM, 3000), 0);
  auto dns = http_target(port);  // recovers while wachtd is down
  d.start();
  ASSERT_TRUE(eventually([&] { return sink.count() >= 2; })) << d.proc().stderr_text();
  std::this_thread::sleep_for(1000ms);
  auto mails = sink.mails();
  ASSERT_EQ(mails.size(), 2u);
  EXPECT_NE(mails[1].header("subject").find("RESOLVED: lup-dns"), std::string::npos);
  EXPECT_EQ(mails[1].header("in-reply-to"), mails[0].header("message-id"));
}

}  // namespace
}  // namespace wacht::test
