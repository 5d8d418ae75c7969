#include "probes/exec_probe.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <toml++/toml.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <string>

#include "probes/probe_test_util.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/toml_reader.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

namespace wacht::probes {

// For gtest's messages; found by ADL, so outside the anonymous namespace.
void PrintTo(const PerfData& p, std::ostream* os) {
  auto opt = [](const std::optional<double>& v) { return v ? std::to_string(*v) : "-"; };
  *os << "'" << p.label << "'=" << p.value << p.unit << ";" << opt(p.warning) << ";"
      << opt(p.critical) << ";" << opt(p.min) << ";" << opt(p.max);
}

namespace {

using test::sample;

using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::HasSubstr;
using ::testing::StartsWith;

const std::string kPlugins = "/usr/lib/nagios/plugins/";

std::string plugin(const std::string& name) { return test::support_path("plugins/" + name); }

// A TOML array of strings.
std::string toml_array(const std::vector<std::string>& items) {
  std::string out = "[";
  for (const auto& i : items) {
    if (out.size() > 1) out += ", ";
    out += "'" + i + "'";
  }
  return out + "]";
}

// ---- perfdata: pure, table-driven ----

struct PerfCase {
  std::string_view text;
  std::vector<PerfData> items;
  size_t errors;
};

using Limit = std::optional<double>;
PerfData P(std::string label, double value, std::string unit, Limit warning = {},
           Limit critical = {}, Limit min = {}, Limit max = {}) {
  return PerfData{std::move(label), value, std::move(unit), warning, critical, min, max};
}

TEST(PerfDataParse, Table) {
  const Limit no;
  const PerfCase cases[] = {
      {"", {}, 0},
      {"   \n ", {}, 0},
      {"time=0.001234s;;;0.000000;10.000000", {P("time", 0.001234, "s", no, no, 0.0, 10.0)}, 0},
      {"users=0;5;10;0", {P("users", 0, "", 5.0, 10.0, 0.0, no)}, 0},
      {"procs=119;;;0;", {P("procs", 119, "", no, no, 0.0, no)}, 0},
      // check_disk of monitoring-plugins 2.3
      {"/=19303235584B;267847005634;267847005634;0;270552530944",
       {P("/", 19303235584.0, "B", 267847005634.0, 267847005634.0, 0.0, 270552530944.0)},
       0},
      {"'disk used'=50%;80;90", {P("disk used", 50, "%", 80.0, 90.0, no, no)}, 0},
      {"'it''s'=3c", {P("it's", 3, "c", no, no, no, no)}, 0},
      {"''''=1", {P("'", 1, "", no, no, no, no)}, 0},
      {"a=1 b=2\tc=-3.5e2ms", {P("a", 1, ""), P("b", 2, ""), P("c", -350, "ms")}, 0},
      // Ranges are valid thresholds but only plain numbers are kept.
      {"x=1;@1:2;~:3", {P("x", 1, "", no, no, no, no)}, 0},
      {"x=1;10:;:20", {P("x", 1, "")}, 0},
      // Undetermined value: skipped, not an error.
      {"u=U;1;2 v=1", {P("v", 1, "")}, 0},
      // Malformed items are skipped and counted; the others stay.
      {"broken=;; ok=1", {P("ok", 1, "")}, 1},
      {"garbage ok=1", {P("ok", 1, "")}, 1},
      {"=5", {}, 1},
      {"x=abc", {}, 1},
      {"x=1;abc", {}, 1},
      {"x=1;1;2;low", {}, 1},
      {"x=0,5", {}, 1},  // decimal comma
      {"x=nan y=inf z=1e999", {}, 3},
      {"'unterminated=1", {}, 1},
      {"'quoted'x=1 ok=2", {P("ok", 2, "")}, 1},
      {"'a b'=1 'c d'=2", {P("a b", 1, ""), P("c d", 2, "")}, 0},
      {"dup=1 dup=2", {P("dup", 1, "")}, 1},
      {"'bad\x01label'=1", {}, 1},
      {"'\xff\xfe'=1", {}, 1},  // not UTF-8: cannot be a label value
      {"'\xc3\xa4rger'=1", {P("\xc3\xa4rger", 1, "")}, 0},
      {"x=1;2;3;4;5;6", {P("x", 1, "", 2.0, 3.0, 4.0, 5.0)}, 0},
  };
  for (const auto& c : cases) {
    PerfDataList got = parse_perfdata(c.text);
    EXPECT_EQ(got.items, c.items) << "input: " << c.text;
    EXPECT_EQ(got.errors, c.errors) << "input: " << c.text;
  }
}

TEST(PerfDataParse, LabelsAreBounded) {
  std::string many;
  for (size_t i = 0; i < kMaxPerfDataItems + 5; ++i) many += "l" + std::to_string(i) + "=1 ";
  PerfDataList got = parse_perfdata(many);
  EXPECT_EQ(got.items.size(), kMaxPerfDataItems);
  EXPECT_EQ(got.errors, 5u);

  std::string long_label(kMaxPerfDataLabelBytes + 1, 'a');
  EXPECT_EQ(parse_perfdata(long_label + "=1").errors, 1u);
  EXPECT_EQ(parse_perfdata(long_label.substr(1) + "=1").items.size(), 1u);
}

TEST(PerfDataParse, SurvivesEveryPrefixOfItsInput) {
  // A cheap stand-in for fuzzing until the fuzzer exists: no prefix may crash
  // (the sanitizer build checks memory) or produce a label that is not valid.
  const std::string text = "'a''b c'=1.5ms;1:2;@~:3;0;10 d=U e=2KB;;;; 'f'=3% \xc3\xa4=1 g=1e5c h=";
  for (size_t n = 0; n <= text.size(); ++n) {
    PerfDataList got = parse_perfdata(std::string_view(text).substr(0, n));
    for (const auto& p : got.items) EXPECT_FALSE(p.label.empty());
  }
}

TEST(PerfDataUnits, BaseUnits) {
  struct Case {
    std::string_view unit;
    PerfKind kind;
    double factor;
  } cases[] = {
      {"s", PerfKind::kSeconds, 1},
      {"ms", PerfKind::kSeconds, 1e-3},
      {"us", PerfKind::kSeconds, 1e-6},
      {"%", PerfKind::kRatio, 0.01},
      {"B", PerfKind::kBytes, 1},
      {"KB", PerfKind::kBytes, 1024},
      {"MB", PerfKind::kBytes, 1048576},
      {"GB", PerfKind::kBytes, 1073741824},
      {"TB", PerfKind::kBytes, 1099511627776},
      {"KiB", PerfKind::kBytes, 1024},
      {"MiB", PerfKind::kBytes, 1048576},
      {"c", PerfKind::kPlain, 1},
      {"", PerfKind::kPlain, 1},
      {"rpm", PerfKind::kPlain, 1},
      {"S", PerfKind::kPlain, 1},
  };
  for (const auto& c : cases) {
    UnitScale s = unit_scale(c.unit);
    EXPECT_EQ(s.kind, c.kind) << c.unit;
    EXPECT_EQ(s.factor, c.factor) << c.unit;
  }
}

TEST(PerfDataOutput, SplitsLikeNagios) {
  struct Case {
    std::string_view output;
    std::string_view summary;
    std::string_view perfdata;
  } cases[] = {
      {"", "", ""},
      {"OK\n", "OK", ""},
      {"  TCP OK - 0.001 s  |time=0.001s;;;0\n", "TCP OK - 0.001 s", "time=0.001s;;;0"},
      {"OK | a=1\nlong 1\nlong 2 | b=2\nc=3\n", "OK", " a=1  b=2\nc=3\n"},
      {"OK\nlong | b=2\n", "OK", " b=2\n"},
      {"OK\r\n", "OK", ""},
      {"| a=1", "", " a=1"},
  };
  for (const auto& c : cases) {
    PluginOutput out = split_plugin_output(c.output);
    EXPECT_EQ(out.summary, c.summary) << c.output;
    EXPECT_EQ(out.perfdata, c.perfdata) << c.output;
  }
}

// ---- config ----

class Parser : public test::SpecParser {
 public:
  Parser() : SpecParser(exec_probe_type()) {}
};

std::string parse_error(const std::string& body, const std::string& target = "host") {
  Parser p;
  auto spec = p.parse(target, body);
  EXPECT_EQ(spec, nullptr) << body;
  return p.diag.render();
}

TEST(ExecProbeConfig, Valid) {
  Parser p;
  EXPECT_NE(p.parse("db1", "command = ['" + kPlugins + "check_dummy', '0']\n" +
                               "env = { FOO = 'bar' }\nworking_dir = '/tmp'\n" +
                               "max_output_bytes = 4096\n"),
            nullptr)
      << p.diag.render();
  EXPECT_FALSE(p.diag.has_errors());
}

TEST(ExecProbeConfig, Errors) {
  EXPECT_THAT(parse_error(""), HasSubstr("checks.toml:1:1: error: check 'test': 'command' is "
                                         "required"));
  EXPECT_THAT(parse_error("command = []\n"),
              HasSubstr("checks.toml:2:11: error: check 'test': 'command' must not be empty"));
  EXPECT_THAT(parse_error("command = ['/usr/lib/nagios/plugins/check_foo', '-H', 'x']\n"),
              HasSubstr("checks.toml:2:11: error: check 'test': "
                        "'/usr/lib/nagios/plugins/check_foo' does not exist"));
  EXPECT_THAT(parse_error("command = ['check_tcp']\n"),
              HasSubstr("the plugin 'check_tcp' must be an absolute path, e.g. "
                        "/usr/lib/nagios/plugins/check_tcp"));
  EXPECT_THAT(parse_error("command = ['/usr/lib']\n"),
              HasSubstr("'/usr/lib' is not a regular file"));
  const std::string text_file = test::support_path("plugins/README");
  EXPECT_THAT(parse_error("command = ['" + text_file + "']\n"),
              HasSubstr("'" + text_file + "' is not executable"));
  EXPECT_THAT(parse_error("command = '/bin/true'\n"), HasSubstr("'command'"));
  EXPECT_THAT(parse_error("command = ['/bin/true', 3]\n"), HasSubstr("must contain only strings"));
  EXPECT_THAT(parse_error("command = ['/bin/true', \"a\\u0000b\"]\n"),
              HasSubstr("must not contain NUL characters"));
  EXPECT_THAT(parse_error("command = ['/bin/true']\nenv = { '1X' = 'y' }\n"),
              HasSubstr("checks.toml:3:7: error: check 'test': '1X' is not a valid environment "
                        "variable name"));
  EXPECT_THAT(parse_error("command = ['/bin/true']\nworking_dir = '/nonexistent/dir'\n"),
              HasSubstr("'/nonexistent/dir' does not exist"));
  EXPECT_THAT(parse_error("command = ['/bin/true']\nworking_dir = 'tmp'\n"),
              HasSubstr("'working_dir' must be an absolute path"));
  EXPECT_THAT(parse_error("command = ['/bin/true']\nworking_dir = '/etc/hostname'\n"),
              HasSubstr("'/etc/hostname' is not a directory"));
  EXPECT_THAT(parse_error("command = ['/bin/true']\nmax_output_bytes = 10\n"),
              HasSubstr("max_output_bytes"));
  // Every problem at once.
  std::string all = parse_error("command = ['rel']\nworking_dir = 'x'\nenv = { 'a-b' = '' }\n");
  EXPECT_THAT(all, AllOf(HasSubstr("absolute path, e.g."), HasSubstr("'working_dir' must be"),
                         HasSubstr("'a-b' is not a valid")));
}

// ---- runs ----

class ExecProbeTest : public test::LoopTest {
 protected:
  void TearDown() override {
    probes_.clear();
    if (limiter_) {
      // Killed plugins hold their slot until reaped: wait for that rather
      // than leave handles to the fixture's bounded drain.
      EXPECT_TRUE(run_until([&] { return limiter_->running() == 0; }));
      limiter_.reset();
    }
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
    test::LoopTest::TearDown();
  }

  const std::string& dir() {
    if (dir_.empty()) dir_ = test::make_temp_dir();
    return dir_;
  }

  ExecLimiter& limiter(size_t max_running = 16) {
    if (!limiter_) limiter_ = make_exec_limiter(loop(), max_running);
    return *limiter_;
  }

  Probe& make(const std::vector<std::string>& command, const std::string& extra = "",
              const std::string& target = "127.0.0.1") {
    auto spec = parser_.parse(target, "command = " + toml_array(command) + "\n" + extra);
    EXPECT_NE(spec, nullptr) << parser_.diag.render();
    if (!spec) throw std::runtime_error("invalid exec config");
    ProbeContext ctx;
    ctx.loop = loop();
    ctx.exec = &limiter();
    probes_.push_back(
        exec_probe_type().create(ctx, CheckTarget{"test", target, std::chrono::seconds(5)}, *spec));
    return *probes_.back();
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
    EXPECT_TRUE(run_until([&] { return calls > 0; }, std::chrono::seconds(20)));
    drain();
    EXPECT_EQ(calls, 1);
    EXPECT_EQ(probe.phase(), "idle");
    return result;
  }

  ProbeResult run(const std::vector<std::string>& command, const std::string& extra = "") {
    return run(make(command, extra));
  }

  // Waits for a file the plugin writes and returns its content as a pid.
  pid_t wait_for_pid(const std::string& name) {
    std::string path = dir() + "/" + name;
    EXPECT_TRUE(run_until([&] { return std::filesystem::exists(path); }));
    std::ifstream in(path);
    pid_t pid = 0;
    in >> pid;
    return pid;
  }

  Parser parser_;
  std::string dir_;
  ExecLimiterPtr limiter_{nullptr, nullptr};
  std::vector<std::unique_ptr<Probe>> probes_;
};

// Dead and reaped: no zombie left. A grandchild (reparented to init, which
// reaps it) may show as a zombie for a moment; `reaped_by_us` says whether
// wachtd is the one that must reap it.
bool gone(pid_t pid, bool reaped_by_us = true) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  size_t paren = line.rfind(')');
  char state = paren != std::string::npos && paren + 2 < line.size() ? line[paren + 2] : '?';
  return !reaped_by_us && state == 'Z';
}

TEST_F(ExecProbeTest, ExitCodesAreStates) {
  struct Case {
    int code;
    State state;
  } cases[] = {{0, State::kOk}, {1, State::kWarning}, {2, State::kCritical}, {3, State::kUnknown}};
  for (const auto& c : cases) {
    ProbeResult r = run(
        {plugin("exit.sh"), std::to_string(c.code), "STATE " + std::to_string(c.code) + " | v=1"});
    EXPECT_EQ(r.state, c.state) << c.code;
    EXPECT_EQ(r.success, c.code == 0);
    EXPECT_EQ(r.summary, "STATE " + std::to_string(c.code));
    EXPECT_EQ(sample(r, "wacht_plugin_exit_code"), c.code);
    EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "v"), 1);
    EXPECT_GT(r.duration_seconds, 0);
    EXPECT_FALSE(r.timed_out);
  }
}

TEST_F(ExecProbeTest, ProbeIsReusable) {
  Probe& probe = make({plugin("exit.sh"), "0", "again"});
  for (int i = 0; i < 3; ++i) EXPECT_EQ(run(probe).summary, "again");
}

TEST_F(ExecProbeTest, OtherExitCodesAreUnknown) {
  ProbeResult r = run({plugin("exit.sh"), "4", "strange"});
  EXPECT_EQ(r.state, State::kUnknown);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "exit code 4 (a plugin exits with 0-3): strange");
  EXPECT_EQ(sample(r, "wacht_plugin_exit_code"), 4);

  r = run({plugin("exit.sh"), "0"});
  EXPECT_EQ(r.state, State::kOk);
  EXPECT_EQ(r.summary, "no output (exit code 0)");
}

TEST_F(ExecProbeTest, CommandNotFoundReadsStderr) {
  ProbeResult r = run({plugin("not_found.sh")});
  EXPECT_EQ(r.state, State::kUnknown);
  // sh's complaint goes to stderr, which is read with stdout.
  EXPECT_THAT(r.summary, AllOf(StartsWith("exit code 127: command not found: "),
                               HasSubstr("wacht_no_such_command: not found")));
  EXPECT_EQ(sample(r, "wacht_plugin_exit_code"), 127);
}

TEST_F(ExecProbeTest, KilledBySignal) {
  ProbeResult r = run({plugin("crash.sh")});
  EXPECT_EQ(r.state, State::kUnknown);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "killed by signal 11 (Segmentation fault): about to crash");
  EXPECT_EQ(sample(r, "wacht_plugin_exit_code"), 128 + 11);
}

TEST_F(ExecProbeTest, PluginGoneSinceConfigLoad) {
  std::string path = dir() + "/plugin.sh";
  std::filesystem::copy_file(plugin("exit.sh"), path);
  Probe& probe = make({path, "0", "ok"});
  std::filesystem::remove(path);
  ProbeResult r = run(probe);
  EXPECT_EQ(r.state, State::kUnknown);
  EXPECT_EQ(r.summary, "cannot run " + path + ": no such file or directory");
  EXPECT_EQ(sample(r, "wacht_plugin_exit_code"), -1);
}

TEST_F(ExecProbeTest, Environment) {
  ProbeResult r = run({plugin("describe.py"), "-H", "{target}", "x{target}y", "{targets}"},
                      "env = { FOO = 'bar baz', LC_ALL = 'C.UTF-8' }\nworking_dir = '/tmp'\n");
  EXPECT_TRUE(r.success) << r.summary;
  // The target is substituted; nothing else is.
  EXPECT_THAT(r.summary, StartsWith("args=-H 127.0.0.1 x127.0.0.1y {targets} "));
  // Only the minimal environment and what the config adds (LC_ALL overridden);
  // python adds nothing.
  EXPECT_THAT(r.summary,
              HasSubstr(" env=FOO=bar baz,LC_ALL=C.UTF-8,PATH=/usr/sbin:/usr/bin:/sbin:/bin "));
  EXPECT_THAT(r.summary, HasSubstr(" cwd=/tmp "));
  EXPECT_THAT(r.summary, HasSubstr(" stdin=/dev/null "));
  // No descriptor of wachtd leaks into the plugin.
  EXPECT_THAT(r.summary, HasSubstr(" fds=0 1 2 "));
  EXPECT_THAT(r.summary, HasSubstr(" leader=True"));
}

TEST_F(ExecProbeTest, PerfdataBecomesMetrics) {
  ProbeResult r = run({plugin("perfdata.sh")});
  EXPECT_EQ(r.state, State::kWarning);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "LOAD WARNING - lots to do");
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "load1"), 1.5);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_warning", "load1"), 1);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_critical", "load1"), 2);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_min", "load1"), 0);
  EXPECT_FALSE(sample(r, "wacht_plugin_perfdata_max", "load1"));
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_ratio", "disk used"), 0.5);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_warning_ratio", "disk used"), 0.8);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_critical_ratio", "disk used"), 0.9);
  EXPECT_THAT(*sample(r, "wacht_plugin_perfdata_seconds", "time"), DoubleNear(0.012, 1e-12));
  EXPECT_THAT(*sample(r, "wacht_plugin_perfdata_max_seconds", "time"), DoubleNear(1, 1e-12));
  // Perfdata from the long output, after the second '|', on later lines too.
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_bytes", "size"), 2048);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_max_bytes", "size"), 4096);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "it's"), 3);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "count"), 7);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_bytes", "mem"), 1.5 * 1024 * 1024);
  EXPECT_FALSE(sample(r, "wacht_plugin_perfdata_warning_bytes", "mem"));  // a range
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "last"), 0.5);
  // broken=;;  garbage  nan=xyz  "more" (no '=')  — "perfdata=U" is merely unknown.
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_errors"), 4);
  EXPECT_FALSE(sample(r, "wacht_plugin_perfdata_value", "perfdata"));
}

TEST_F(ExecProbeTest, FloodingPluginIsCappedAndDrained) {
  ProbeResult r = run({plugin("flood.py")}, "max_output_bytes = 4096\n");
  EXPECT_TRUE(r.success) << r.summary;
  EXPECT_THAT(r.summary, StartsWith("FLOOD OK [output truncated: "));
  EXPECT_THAT(r.summary, HasSubstr("max_output_bytes = 4096]"));
  EXPECT_GE(*sample(r, "wacht_plugin_output_bytes"), 11 * 1024 * 1024);
  EXPECT_THAT(*sample(r, "wacht_plugin_perfdata_seconds", "first"), DoubleNear(1, 0));
}

TEST_F(ExecProbeTest, PerfdataCutAtTheLimitIsDropped) {
  // The limit (1024 bytes) falls into "big=123456789", after "big=12".
  std::string text = "OK | pad=1";
  text += std::string(1018 - text.size(), ' ') + "big=123456789 end=1";
  ProbeResult r = run({plugin("exit.sh"), "0", text}, "max_output_bytes = 1024\n");
  EXPECT_THAT(r.summary, StartsWith("OK [output truncated: "));
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_value", "pad"), 1);
  EXPECT_FALSE(sample(r, "wacht_plugin_perfdata_value", "big"));
  EXPECT_FALSE(sample(r, "wacht_plugin_perfdata_value", "end"));
}

TEST_F(ExecProbeTest, LongSummaryIsCapped) {
  std::string text(2000, 'a');
  ProbeResult r = run({plugin("exit.sh"), "0", text});
  EXPECT_EQ(r.summary, std::string(512, 'a'));
}

TEST_F(ExecProbeTest, CancelKillsTheWholeProcessGroup) {
  Probe& probe = make({plugin("hang.py"), dir()});
  bool fired = false;
  probe.start([&](const ProbeResult&) { fired = true; });
  EXPECT_EQ(probe.phase(), "running " + plugin("hang.py"));
  pid_t plugin_pid = wait_for_pid("plugin.pid");
  pid_t grandchild = wait_for_pid("grandchild.pid");
  ASSERT_GT(plugin_pid, 0);
  ASSERT_GT(grandchild, 0);
  double t0 = test::now_seconds();
  probe.cancel();
  EXPECT_EQ(probe.phase(), "idle");
  // The plugin dies of SIGTERM at once; the grandchild ignores SIGTERM and is
  // killed with the rest of the group when its leader is gone.
  ASSERT_TRUE(run_until([&] { return limiter().running() == 0; }));
  EXPECT_TRUE(run_until([&] { return gone(plugin_pid) && gone(grandchild, false); }));
  EXPECT_LT(test::now_seconds() - t0, 0.9) << "waited for the SIGKILL grace";
  drain();
  EXPECT_FALSE(fired);
}

TEST_F(ExecProbeTest, PluginIgnoringSigtermIsKilledAfterGrace) {
  Probe& probe = make({plugin("hang.py"), dir(), "ignore-term"});
  bool fired = false;
  probe.start([&](const ProbeResult&) { fired = true; });
  pid_t plugin_pid = wait_for_pid("plugin.pid");
  pid_t grandchild = wait_for_pid("grandchild.pid");
  double t0 = test::now_seconds();
  probe.cancel();
  ASSERT_TRUE(run_until([&] { return limiter().running() == 0; }));
  double waited = test::now_seconds() - t0;
  EXPECT_GE(waited, 0.9);
  EXPECT_LT(waited, 3);
  EXPECT_TRUE(run_until([&] { return gone(plugin_pid) && gone(grandchild, false); }));
  EXPECT_FALSE(fired);
}

TEST_F(ExecProbeTest, DestroyingTheProbeStillReapsThePlugin) {
  Probe& probe = make({plugin("hang.py"), dir()});
  probe.start([](const ProbeResult&) { ADD_FAILURE() << "done after destruction"; });
  pid_t plugin_pid = wait_for_pid("plugin.pid");
  pid_t grandchild = wait_for_pid("grandchild.pid");
  probes_.clear();
  // And the limiter goes too, before the plugin is reaped: as at shutdown.
  limiter_.reset();
  EXPECT_TRUE(run_until([&] { return gone(plugin_pid) && gone(grandchild, false); }));
  drain();
}

TEST_F(ExecProbeTest, LimiterQueuesInOrder) {
  ExecLimiter& lim = limiter(1);
  std::string release = dir() + "/release";
  Probe& first = make({plugin("wait_for.sh"), release});
  Probe& second = make({plugin("exit.sh"), "0", "second"});
  Probe& third = make({plugin("exit.sh"), "0", "third"});
  std::vector<std::string> order;
  first.start([&](const ProbeResult& r) { order.push_back(r.summary); });
  second.start([&](const ProbeResult& r) { order.push_back(r.summary); });
  third.start([&](const ProbeResult& r) { order.push_back(r.summary); });
  EXPECT_EQ(first.phase(), "running " + plugin("wait_for.sh"));
  EXPECT_EQ(second.phase(), "waiting for a plugin slot");
  EXPECT_EQ(third.phase(), "waiting for a plugin slot");
  EXPECT_EQ(lim.running(), 1u);
  EXPECT_EQ(lim.queued(), 2u);

  // A cancelled queued run leaves the queue and never runs.
  second.cancel();
  EXPECT_EQ(second.phase(), "idle");
  EXPECT_EQ(lim.queued(), 1u);

  std::ofstream(release).close();
  ASSERT_TRUE(run_until([&] { return order.size() == 2; }));
  EXPECT_EQ(order, (std::vector<std::string>{"released " + release, "third"}));
  EXPECT_EQ(lim.running(), 0u);
  EXPECT_EQ(lim.queued(), 0u);
}

TEST_F(ExecProbeTest, SlotIsHeldUntilAKilledPluginIsReaped) {
  ExecLimiter& lim = limiter(1);
  Probe& hung = make({plugin("hang.py"), dir(), "ignore-term"});
  Probe& next = make({plugin("exit.sh"), "0", "next"});
  hung.start([](const ProbeResult&) { ADD_FAILURE() << "done after cancel"; });
  wait_for_pid("grandchild.pid");
  hung.cancel();
  ProbeResult r;
  bool fired = false;
  next.start([&](ProbeResult res) {
    r = std::move(res);
    fired = true;
  });
  EXPECT_EQ(next.phase(), "waiting for a plugin slot");
  EXPECT_EQ(lim.running(), 1u);
  ASSERT_TRUE(run_until([&] { return fired; }));
  EXPECT_EQ(r.summary, "next");
  // It waited for the SIGKILL grace of the cancelled plugin.
  EXPECT_GE(*sample(r, "wacht_plugin_slot_wait_seconds"), 0.9);
}

TEST_F(ExecProbeTest, QueuedRunsThatCannotSpawnDoNotDeepenTheStack) {
  // Each of them fails inside launch() and hands its slot on at once; that
  // used to recurse (release -> launch -> release ...) once per queued run.
  ExecLimiter& lim = limiter(1);
  std::string release = dir() + "/release";
  std::string gone = dir() + "/gone.sh";
  std::filesystem::copy_file(plugin("exit.sh"), gone);
  Probe& first = make({plugin("wait_for.sh"), release});
  std::vector<Probe*> failing;
  for (int i = 0; i < 20000; ++i) failing.push_back(&make({gone, "0", "ok"}));
  std::filesystem::remove(gone);
  int done = 0, cannot_run = 0;
  first.start([&](const ProbeResult&) { ++done; });
  for (Probe* p : failing) {
    p->start([&](const ProbeResult& r) {
      ++done;
      cannot_run += r.summary.starts_with("cannot run ");
    });
  }
  EXPECT_EQ(lim.queued(), failing.size());
  std::ofstream(release).close();
  ASSERT_TRUE(run_until([&] { return done == 20001; }, std::chrono::seconds(60)));
  EXPECT_EQ(cannot_run, 20000);
  EXPECT_EQ(lim.queued(), 0u);
}

// ---- Debian's monitoring-plugins, as they are ----

class MonitoringPluginsTest : public ExecProbeTest {
 protected:
  void SetUp() override {
    ExecProbeTest::SetUp();
    if (!std::filesystem::exists(kPlugins + "check_dummy"))
      GTEST_SKIP() << "monitoring-plugins are not installed (apt-get install "
                      "monitoring-plugins-basic monitoring-plugins-standard)";
  }
};

// A listening socket on a kernel-chosen loopback port: the kernel completes
// connections without an accept().
struct Listener {
  int fd = -1;
  int port = 0;
  explicit Listener(bool listen_too = true) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
      ADD_FAILURE() << "cannot bind a loopback port";
    if (listen_too) listen(fd, 16);
    socklen_t len = sizeof addr;
    getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    port = ntohs(addr.sin_port);
  }
  ~Listener() { close(fd); }
};

TEST_F(MonitoringPluginsTest, CheckDummy) {
  ProbeResult r = run({kPlugins + "check_dummy", "0", "all fine"});
  EXPECT_EQ(r.state, State::kOk);
  EXPECT_EQ(r.summary, "OK: all fine");
  r = run({kPlugins + "check_dummy", "3", "some text"});
  EXPECT_EQ(r.state, State::kUnknown);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "UNKNOWN: some text");
  r = run({kPlugins + "check_dummy", "1", "{target} is slow"});
  EXPECT_EQ(r.state, State::kWarning);
  EXPECT_EQ(r.summary, "WARNING: 127.0.0.1 is slow");
}

TEST_F(MonitoringPluginsTest, CheckTcp) {
  Listener open;
  ProbeResult r = run({kPlugins + "check_tcp", "-H", "{target}", "-p", std::to_string(open.port)});
  EXPECT_EQ(r.state, State::kOk) << r.summary;
  EXPECT_THAT(r.summary, AllOf(StartsWith("TCP OK - "),
                               HasSubstr("on 127.0.0.1 port " + std::to_string(open.port))));
  auto time = sample(r, "wacht_plugin_perfdata_seconds", "time");
  ASSERT_TRUE(time);
  EXPECT_GE(*time, 0);
  EXPECT_LT(*time, 1);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_max_seconds", "time"), 10);
  EXPECT_EQ(sample(r, "wacht_plugin_perfdata_errors"), 0);
}

TEST_F(MonitoringPluginsTest, CheckSshAgainstClosedPort) {
  Listener closed(false);  // bound, not listening: refused
  ProbeResult r =
      run({kPlugins + "check_ssh", "-H", "{target}", "-p", std::to_string(closed.port)});
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_FALSE(r.success);
  EXPECT_EQ(r.summary, "connect to address 127.0.0.1 and port " + std::to_string(closed.port) +
                           ": Connection refused");
}

TEST_F(MonitoringPluginsTest, CheckHttp) {
  test::ChildProcess server({"/usr/bin/python3", test::support_path("http_server.py")});
  const std::string& port = server.first_line();
  ProbeResult r = run({kPlugins + "check_http", "-H", "{target}", "-p", port, "-u", "/ok"});
  EXPECT_EQ(r.state, State::kOk) << r.summary;
  EXPECT_THAT(r.summary, StartsWith("HTTP OK: HTTP/1."));
  EXPECT_TRUE(sample(r, "wacht_plugin_perfdata_seconds", "time"));
  EXPECT_GT(*sample(r, "wacht_plugin_perfdata_bytes", "size"), 0);

  r = run({kPlugins + "check_http", "-H", "{target}", "-p", port, "-u", "/status/503"});
  EXPECT_EQ(r.state, State::kCritical);
  EXPECT_THAT(r.summary, HasSubstr("503"));
}

TEST_F(MonitoringPluginsTest, CheckDisk) {
  ProbeResult r = run({kPlugins + "check_disk", "-w", "1%", "-c", "1%", "-p", "/"});
  EXPECT_THAT(r.state, ::testing::AnyOf(State::kOk, State::kWarning, State::kCritical))
      << r.summary;
  EXPECT_THAT(r.summary, StartsWith("DISK "));
  // Used bytes of /, with the file system's size as max; 1024-based units
  // and plain B both end up in bytes.
  auto used = sample(r, "wacht_plugin_perfdata_bytes", "/");
  auto size = sample(r, "wacht_plugin_perfdata_max_bytes", "/");
  ASSERT_TRUE(used && size) << r.summary;
  EXPECT_GT(*size, 0);
  EXPECT_LE(*used, *size);
  EXPECT_TRUE(std::isfinite(*used));
}

}  // namespace
}  // namespace wacht::probes
