#include "scheduler.hpp"

#include <gtest/gtest.h>
#include <unistd.h>
#include <uv.h>

#include <map>

#include "probes/registry.hpp"
#include "runtime/curl_multi.hpp"
#include "support/loop_fixture.hpp"
#include "support/process.hpp"

#include <toml++/toml.h>

namespace wacht {
namespace {

using namespace std::chrono_literals;

// A probe whose run takes a set time on the loop (or never ends), counting
// starts, cancels and how many of its kind run at once. It stands in for real
// I/O: the scheduler's contract is about time, not sockets.
struct ProbeStats {
  int started = 0;
  int cancelled = 0;
  int running = 0;
  int max_running = 0;
};

class TimedProbe : public probes::Probe {
 public:
  TimedProbe(uv_loop_t* loop, ProbeStats& stats, int run_ms)
      : stats_(stats), run_ms_(run_ms), timer_(loop, [this] { complete(); }) {}
  ~TimedProbe() override {
    if (done_) --stats_.running;
  }
  void start(probes::DoneCallback done) override {
    EXPECT_FALSE(done_) << "started while running";
    done_ = std::move(done);
    ++stats_.started;
    stats_.max_running = std::max(stats_.max_running, ++stats_.running);
    if (run_ms_ >= 0) timer_.start(static_cast<uint64_t>(run_ms_));
  }
  void cancel() override {
    ++stats_.cancelled;
    --stats_.running;
    timer_.stop();
    done_ = nullptr;
  }
  std::string_view phase() const override { return "waiting for the test"; }

 private:
  void complete() {
    auto done = std::move(done_);
    done_ = nullptr;
    --stats_.running;
    probes::ProbeResult r;
    r.success = true;
    r.state = probes::State::kOk;
    done(std::move(r));
  }
  ProbeStats& stats_;
  int run_ms_;
  runtime::Timer timer_;
  probes::DoneCallback done_;
};

config::CheckConfig check(const std::string& id, int interval_ms, int timeout_ms,
                          const std::string& fingerprint = "v1") {
  config::CheckConfig c;
  c.id = id;
  c.interval = std::chrono::milliseconds(interval_ms);
  c.timeout = std::chrono::milliseconds(timeout_ms);
  c.fingerprint = fingerprint;
  return c;
}

class SchedulerTest : public test::LoopTest {
 protected:
  struct Run {
    std::string id;
    probes::ProbeResult result;
    RunInfo info;
  };

  void make(std::map<std::string, int> run_ms, int default_run_ms = 5) {
    scheduler_ = std::make_unique<Scheduler>(
        loop(),
        [this, run_ms = std::move(run_ms), default_run_ms](const config::CheckConfig& c) {
          auto it = run_ms.find(c.id);
          return std::make_unique<TimedProbe>(loop(), stats_,
                                              it == run_ms.end() ? default_run_ms : it->second);
        },
        Scheduler::Hooks{
            [this](const config::CheckConfig& c, const probes::ProbeResult& r, const RunInfo& i) {
              runs_.push_back({c.id, r, i});
            },
            [this](const config::CheckConfig& c) { ++skipped_[c.id]; }});
  }
  void TearDown() override {
    scheduler_.reset();
    LoopTest::TearDown();
  }
  size_t runs_of(const std::string& id) const {
    size_t n = 0;
    for (const auto& r : runs_) n += r.id == id;
    return n;
  }

  ProbeStats stats_;
  std::unique_ptr<Scheduler> scheduler_;
  std::vector<Run> runs_;
  std::map<std::string, int> skipped_;
};

TEST(SchedulerPhase, IsStableAndSpreadsChecksOverTheInterval) {
  EXPECT_EQ(Scheduler::phase_ms("lup-portal", 30000), Scheduler::phase_ms("lup-portal", 30000));
  // 2,000 checks at 10 s: no one-second slice gets more than 1.5x its share.
  std::vector<int> per_second(10);
  for (int i = 0; i < 2000; ++i) {
    uint64_t p = Scheduler::phase_ms("check-" + std::to_string(i), 10000);
    ASSERT_LT(p, 10000u);
    ++per_second[p / 1000];
  }
  for (int n : per_second) {
    EXPECT_GT(n, 200 / 2);
    EXPECT_LT(n, 200 * 3 / 2);
  }
}

TEST(SchedulerPhase, FirstDueIsTheNextSlotAtThePhase) {
  EXPECT_EQ(Scheduler::first_due_ms(1000, 100, 30), 1030u);
  EXPECT_EQ(Scheduler::first_due_ms(1031, 100, 30), 1130u);
  EXPECT_EQ(Scheduler::first_due_ms(1030, 100, 30), 1030u);
  EXPECT_EQ(Scheduler::first_due_ms(999, 100, 0), 1000u);
}

TEST_F(SchedulerTest, RunsEveryIntervalAtItsPhaseWithoutDrift) {
  make({{"a", 30}});
  scheduler_->apply({check("a", 100, 90)});
  ASSERT_TRUE(run_until([&] { return runs_of("a") >= 6; }, 3s));
  uint64_t phase = Scheduler::phase_ms("a", 100);
  for (size_t i = 0; i < runs_.size(); ++i) {
    EXPECT_EQ(runs_[i].info.due_ns / 1000000 % 100, phase);
    EXPECT_GE(runs_[i].info.started_ns, runs_[i].info.due_ns);
    // Due times advance by exactly one interval although each run took 30 ms.
    if (i > 0) {
      EXPECT_EQ(runs_[i].info.due_ns - runs_[i - 1].info.due_ns, 100000000u);
    }
    EXPECT_TRUE(runs_[i].result.success);
  }
}

TEST_F(SchedulerTest, TimeoutCancelsTheProbeAndReportsATimeout) {
  make({{"hang", -1}});
  scheduler_->apply({check("hang", 1000, 50)});
  ASSERT_TRUE(run_until([&] { return !runs_.empty(); }, 3s));
  const auto& r = runs_[0].result;
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.state, probes::State::kCritical);
  EXPECT_EQ(r.summary, "timeout after 50ms while waiting for the test");
  // libuv's loop clock may be CLOCK_MONOTONIC_COARSE (1 ms steps) while the
  // duration is measured with uv_hrtime: allow that one step.
  EXPECT_GE(r.duration_seconds, 0.049);
  EXPECT_LT(r.duration_seconds, 0.5);
  EXPECT_EQ(stats_.cancelled, 1);
  EXPECT_EQ(scheduler_->in_flight(), 0u);
}

TEST_F(SchedulerTest, NeverRunsOneCheckTwiceAtOnceAndCountsSkippedRuns) {
  // A run that outlasts its interval (possible only if timeout > interval,
  // which config validation forbids, or when the loop stalls).
  make({{"slow", 250}});
  scheduler_->apply({check("slow", 100, 1000)});
  ASSERT_TRUE(run_until([&] { return runs_of("slow") >= 3; }, 5s));
  EXPECT_EQ(stats_.max_running, 1);
  EXPECT_GE(skipped_["slow"], 4);
}

TEST_F(SchedulerTest, GlobalCapLimitsProbesInFlightAndQueuesTheRest) {
  make({}, 40);
  scheduler_->set_max_concurrent(2);
  std::vector<config::CheckConfig> checks;
  for (int i = 0; i < 10; ++i) checks.push_back(check("c" + std::to_string(i), 1000, 500));
  scheduler_->apply(checks);
  ASSERT_TRUE(run_until([&] { return runs_.size() >= 10; }, 5s));
  EXPECT_LE(stats_.max_running, 2);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(runs_of("c" + std::to_string(i)), 1u);
}

TEST_F(SchedulerTest, ApplyDiffsByIdAndKeepsUnchangedSchedules) {
  make({}, 1);
  scheduler_->apply({check("keep", 100, 50), check("change", 100, 50), check("drop", 100, 50)});
  ASSERT_TRUE(run_until([&] { return runs_of("keep") >= 2; }, 3s));
  uint64_t last_due = 0;
  for (const auto& r : runs_)
    if (r.id == "keep") last_due = r.info.due_ns;

  auto stats = scheduler_->apply(
      {check("keep", 100, 50), check("change", 100, 50, "v2"), check("new", 100, 50)});
  EXPECT_EQ(stats.unchanged, 1u);
  EXPECT_EQ(stats.changed, 1u);
  EXPECT_EQ(stats.removed, 1u);
  EXPECT_EQ(stats.added, 1u);
  size_t dropped_runs = runs_of("drop");
  runs_.clear();
  ASSERT_TRUE(run_until([&] { return runs_of("keep") >= 2 && runs_of("new") >= 1; }, 3s));
  EXPECT_EQ(runs_of("drop"), 0u) << "removed check still ran (" << dropped_runs << " before)";
  // The unchanged check continued its grid: its next due time is one interval on.
  for (const auto& r : runs_) {
    if (r.id != "keep") continue;
    EXPECT_EQ((r.info.due_ns - last_due) % 100000000u, 0u);
    break;
  }
}

TEST_F(SchedulerTest, AChangedCheckKeepsARunThatCameDueBeforeTheReload) {
  make({}, 1);
  scheduler_->apply({check("c", 100, 50)});
  ASSERT_TRUE(run_until([&] { return runs_of("c") >= 1; }, 3s));
  const uint64_t last_due = runs_.back().info.due_ns;
  // The loop is busy past the next due time, then a reload changes the check
  // before the loop has started that run.
  while (uv_hrtime() < last_due + 150000000u) usleep(1000);
  uv_update_time(loop());
  runs_.clear();
  auto stats = scheduler_->apply({check("c", 100, 50, "v2")});
  ASSERT_EQ(stats.changed, 1u);
  ASSERT_TRUE(run_until([&] { return runs_of("c") >= 1; }, 3s));
  EXPECT_EQ(runs_.front().info.due_ns, last_due + 100000000u) << "the due run was skipped";
}

TEST_F(SchedulerTest, RemovingACheckCancelsItsRunInFlight) {
  make({{"hang", -1}});
  scheduler_->apply({check("hang", 100, 90)});
  ASSERT_TRUE(run_until([&] { return stats_.started == 1; }, 3s));
  scheduler_->apply({});
  EXPECT_EQ(stats_.cancelled, 1);
  EXPECT_EQ(scheduler_->in_flight(), 0u);
  EXPECT_EQ(scheduler_->size(), 0u);
  EXPECT_TRUE(runs_.empty());
}

TEST_F(SchedulerTest, StopCancelsEverythingInFlight) {
  make({}, -1);
  std::vector<config::CheckConfig> checks;
  for (int i = 0; i < 50; ++i) checks.push_back(check("c" + std::to_string(i), 1000, 900));
  scheduler_->apply(checks);
  // Stop well before the first timeout (900 ms after the first start).
  ASSERT_TRUE(run_until([&] { return stats_.started >= 10; }, 3s));
  scheduler_->stop();
  EXPECT_EQ(stats_.cancelled, stats_.started);
  EXPECT_EQ(stats_.running, 0);
  EXPECT_TRUE(runs_.empty());
}

TEST_F(SchedulerTest, RunNowStartsOutsideTheSchedule) {
  make({}, 1);
  scheduler_->apply({check("a", 60000, 1000)});
  EXPECT_TRUE(scheduler_->run_now("a"));
  EXPECT_FALSE(scheduler_->run_now("a"));  // already running
  EXPECT_FALSE(scheduler_->run_now("unknown"));
  ASSERT_TRUE(run_until([&] { return runs_of("a") == 1; }, 3s));
}

// The real HTTP and TCP probes against a server that accepts and never
// answers: the scheduler's timeout cancels them within 100 ms of the limit.
TEST_F(SchedulerTest, HangingTargetsTimeOutWithin100msOfTheTimeout) {
  test::ChildProcess http({"python3", test::support_path("http_server.py")});
  test::ChildProcess stall({"python3", test::support_path("tcp_server.py"), "--mode", "stall"});
  runtime::CurlMulti curl(loop());
  probes::ProbeContext ctx{loop(), &curl};
  runtime::Diagnostics diag;
  std::vector<config::CheckConfig> checks;
  std::vector<std::unique_ptr<toml::table>> tables;
  for (const char* type : {"http", "tcp"}) {
    config::CheckConfig c = check(type, 2000, 300);
    c.type = probes::find_probe_type(type);
    c.target = std::string(type) == "http" ? "http://127.0.0.1:" + http.first_line() + "/hang"
                                           : "127.0.0.1:" + stall.first_line();
    tables.push_back(std::make_unique<toml::table>());
    if (std::string(type) == "tcp") {
      // A TLS handshake the server never answers.
      tables.back()->insert("tls", true);
    }
    runtime::TableReader reader(diag, type, {});
    reader.declare(c.type->keys);
    reader.add_layer(*tables.back());
    c.spec = c.type->parse(reader, c.target);
    ASSERT_NE(c.spec, nullptr) << diag.render();
    checks.push_back(c);
  }
  scheduler_ = std::make_unique<Scheduler>(
      loop(),
      [&](const config::CheckConfig& c) {
        return c.type->create(ctx, probes::CheckTarget{c.id, c.target, c.timeout}, *c.spec);
      },
      Scheduler::Hooks{
          [this](const config::CheckConfig& c, const probes::ProbeResult& r, const RunInfo& i) {
            runs_.push_back({c.id, r, i});
          },
          nullptr});
  scheduler_->apply(checks);
  ASSERT_TRUE(run_until([&] { return runs_of("http") >= 1 && runs_of("tcp") >= 1; }, 5s));
  for (const auto& r : runs_) {
    SCOPED_TRACE(r.id);
    EXPECT_TRUE(r.result.timed_out);
    EXPECT_GE(r.result.duration_seconds, 0.299);
    EXPECT_LT(r.result.duration_seconds, 0.400);
    EXPECT_NE(r.result.summary.find("timeout after 300ms while "), std::string::npos)
        << r.result.summary;
  }
  scheduler_.reset();
}

}  // namespace
}  // namespace wacht
