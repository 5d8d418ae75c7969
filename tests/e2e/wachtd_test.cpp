// End to end: the real wachtd binary against real servers on loopback.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "e2e/harness.hpp"
#include "support/process.hpp"

namespace wacht::test {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// Escapes regex metacharacters of a literal.
std::string quote_meta(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string_view(".[]{}()*+?^$|\\/").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

std::string check(const std::string& id, const std::string& type, const std::string& target,
                  const std::string& extra = "") {
  return "[[check]]\nid = \"" + id + "\"\ntype = \"" + type + "\"\ntarget = \"" + target +
         "\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n" + extra + "\n";
}

TEST(Wachtd, ProbesRealTargetsAndExportsBlackboxMetrics) {
  auto web = http_target();
  int closed = free_port();
  std::string web_url = "http://127.0.0.1:" + web->first_line() + "/";
  Wachtd d(check("web", "http", web_url, "labels = { site = \"parchim\" }") +
           check("web-port", "tcp", "127.0.0.1:" + web->first_line()) +
           check("closed", "tcp", "127.0.0.1:" + std::to_string(closed)));
  const std::string web_labels =
      "check=\"web\",site=\"parchim\",target=\"" + web_url + "\",tenant=\"lup\",type=\"http\"";
  ASSERT_TRUE(d.wait_for("probe_success\\{" + quote_meta(web_labels) + "\\} 1")) << d.metrics();
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"closed\"[^}]*\\} 0")) << d.metrics();
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"web-port\"[^}]*\\} 1")) << d.metrics();
  EXPECT_EQ(d.value("probe_http_status_code{" + web_labels + "}"), 200);
  EXPECT_GT(d.value("probe_duration_seconds{" + web_labels + "}"), 0);
  EXPECT_EQ(d.value("probe_http_uncompressed_body_length{" + web_labels + "}"), 11);
  EXPECT_EQ(d.value("wacht_checks{tenant=\"lup\",type=\"tcp\"}"), 2);
  EXPECT_EQ(d.value("wacht_config_last_reload_successful"), 1);
  EXPECT_TRUE(d.wait_for("wacht_scheduler_lag_seconds_count [1-9]"));
  EXPECT_EQ(http_get(d.port(), "/-/healthy").status, 200);
  // The closed port is logged once as down, not once per run.
  std::this_thread::sleep_for(600ms);
  std::string log = d.proc().stderr_text();
  size_t first = log.find("check closed");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("check closed", first + 1), std::string::npos) << log;
  EXPECT_EQ(log.find("check web "), std::string::npos) << "successful probes are logged: " << log;
}

TEST(Wachtd, MetricsPassPromtool) {
  auto web = http_target();
  Wachtd d(check("web", "http", "http://127.0.0.1:" + web->first_line() + "/") +
           check("port", "tcp", "127.0.0.1:" + web->first_line()));
  ASSERT_TRUE(d.wait_for("probe_http_status_code"));
  std::string file = d.dir() + "/metrics.txt";
  std::ofstream(file) << d.metrics();
  std::string cmd = "promtool check metrics < " + file + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  EXPECT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(out, "");
}

TEST(Wachtd, ReloadAppliesAGoodConfigAndKeepsTheOldOnAnInvalidOne) {
  auto web = http_target();
  std::string port = web->first_line();
  std::string a = check("a", "tcp", "127.0.0.1:" + port);
  std::string b = check("b", "tcp", "127.0.0.1:" + port);
  Wachtd d(a + b);
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"b\"[^}]*\\} 1"));

  // Good: b removed, c added.
  d.write(a + check("c", "http", "http://127.0.0.1:" + port + "/"));
  kill(d.proc().pid(), SIGHUP);
  ASSERT_TRUE(d.wait_for("probe_success\\{check=\"c\"[^}]*\\} 1")) << d.metrics();
  EXPECT_TRUE(d.wait_for("wacht_config_reloads_total\\{result=\"success\"\\} 2"));
  EXPECT_EQ(d.metrics().find("check=\"b\""), std::string::npos) << "removed check kept its series";

  // Invalid: nothing changes, the failure is visible and logged with its location.
  d.write(a + check("d", "tcp", "127.0.0.1:" + port, "intervall = \"1s\""));
  kill(d.proc().pid(), SIGHUP);
  ASSERT_TRUE(d.wait_for("wacht_config_last_reload_successful 0")) << d.metrics();
  EXPECT_EQ(d.metrics().find("check=\"d\""), std::string::npos);
  double before = d.value("wacht_probes_total{result=\"success\",tenant=\"lup\",type=\"http\"}");
  EXPECT_TRUE(d.wait_for("probe_success\\{check=\"c\"[^}]*\\} 1"));
  std::this_thread::sleep_for(500ms);
  EXPECT_GT(d.value("wacht_probes_total{result=\"success\",tenant=\"lup\",type=\"http\"}"), before)
      << "the old config stopped running";
  std::string log = d.proc().stderr_text();
  EXPECT_NE(log.find("wacht.toml:"), std::string::npos) << log;
  EXPECT_NE(log.find("unknown key 'intervall'; did you mean 'interval'?"), std::string::npos)
      << log;
}

TEST(Wachtd, SigtermDuringAFloodOfInFlightProbesExitsCleanlyWithinTwoSeconds) {
  auto hang = hanging_target();
  std::string checks;
  for (int i = 0; i < 300; ++i) {
    std::string type = i % 2 ? "http" : "tcp";
    std::string target =
        (i % 2 ? "http://127.0.0.1:" : "127.0.0.1:") + hang->first_line() + (i % 2 ? "/" : "");
    checks += "[[check]]\nid = \"hang-" + std::to_string(i) + "\"\ntype = \"" + type +
              "\"\ntarget = \"" + target + "\"\ninterval = \"1s\"\ntimeout = \"900ms\"\n";
  }
  Wachtd d(checks);
  ASSERT_TRUE(d.wait_for("wacht_scheduler_probes\\{state=\"running\"\\} [1-9][0-9]+"))
      << d.metrics();
  auto start = std::chrono::steady_clock::now();
  int status = d.proc().signal_and_wait(SIGTERM, 2000);
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_NE(status, -1) << "wachtd did not exit within 2 s";
  EXPECT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0) << d.proc().stderr_text();
  EXPECT_LT(took, 2s);
  EXPECT_EQ(d.proc().stderr_text().find("handles left open"), std::string::npos)
      << d.proc().stderr_text();
}

TEST(Wachtd, CheckConfigPrintsEveryErrorAndExitsOne) {
  std::string dir = make_temp_dir();
  std::ofstream(dir + "/bad.toml") << "[daemon]\nlisten = \"x\"\n[[check]]\nid = \"a\"\n";
  ChildProcess p({WACHTD_PATH, "--check-config", "--config", dir + "/bad.toml"}, false);
  int status = p.signal_and_wait(0, 5000);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
  std::string err = p.stderr_text();
  EXPECT_NE(err.find(dir + "/bad.toml:2:10: error: [daemon]: 'listen' must be host:port"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("missing 'tenant'"), std::string::npos) << err;
  EXPECT_NE(err.find("missing 'target'"), std::string::npos) << err;
  fs::remove_all(dir);
}

TEST(Wachtd, UsageAndVersion) {
  ChildProcess version({WACHTD_PATH, "--version"}, true);
  EXPECT_EQ(version.first_line().rfind("wachtd ", 0), 0u) << version.first_line();
  ChildProcess bad({WACHTD_PATH, "--frobnicate"}, false);
  int status = bad.signal_and_wait(0, 5000);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 2);
}

TEST(Wachtd, ABusyListenPortFailsStartupWithExitThree) {
  auto web = http_target();
  std::string dir = make_temp_dir();
  std::ofstream(dir + "/w.toml") << "[daemon]\nlisten = \"127.0.0.1:" << web->first_line()
                                 << "\"\nstate_dir = \"" << dir << "/state\"\n";
  ChildProcess p({WACHTD_PATH, "--config", dir + "/w.toml"}, false);
  int status = p.signal_and_wait(0, 5000);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 3);
  EXPECT_NE(p.stderr_text().find("cannot listen on 127.0.0.1:" + web->first_line()),
            std::string::npos)
      << p.stderr_text();
  fs::remove_all(dir);
}

}  // namespace
}  // namespace wacht::test
