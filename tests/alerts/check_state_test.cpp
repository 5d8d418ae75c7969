#include "alerts/check_state.hpp"

#include <gtest/gtest.h>

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
constexpr State O = State::kOk, W = State::kWarning, C = State::kCritical, U = State::kUnknown;

struct Step {
  State result;
  State state, hard;
  StateType type;
  int attempt;
  bool hard_change;
};

void run(const StateConfig& cfg, const std::vector<Step>& steps) {
  CheckState s(cfg);
  TimePoint t{};
  for (size_t i = 0; i < steps.size(); ++i) {
    SCOPED_TRACE("step " + std::to_string(i));
    t += 10s;
    Transition tr = s.observe(steps[i].result, t);
    EXPECT_EQ(s.state(), steps[i].state);
    EXPECT_EQ(s.hard_state(), steps[i].hard);
    EXPECT_EQ(s.state_type(), steps[i].type);
    EXPECT_EQ(s.attempt(), steps[i].attempt);
    EXPECT_EQ(tr.hard_change, steps[i].hard_change);
    if (tr.hard_change) {
      EXPECT_EQ(s.last_hard_change(), t);
    }
  }
}

constexpr auto S = StateType::kSoft;
constexpr auto H = StateType::kHard;

TEST(CheckState, ProblemBecomesHardAfterMaxAttempts) {
  StateConfig cfg;
  cfg.max_attempts = 3;
  cfg.flap_detection = false;
  run(cfg, {
               {O, O, O, H, 1, false},
               {C, C, O, S, 1, false},
               {C, C, O, S, 2, false},
               {C, C, C, H, 3, true},  // third attempt: hard, notify
               {C, C, C, H, 3, false},
               {W, W, W, H, 3, true},  // severity change while hard
               {O, O, O, H, 1, true},  // recovery
           });
}

TEST(CheckState, SoftProblemThatClearsNeverBecomesHard) {
  StateConfig cfg;
  cfg.max_attempts = 3;
  cfg.flap_detection = false;
  run(cfg, {
               {C, C, O, S, 1, false},
               {W, W, O, S, 2, false},
               {O, O, O, H, 1, false},  // silent
               {C, C, O, S, 1, false},  // attempts start over
           });
}

TEST(CheckState, MaxAttemptsOneIsHardAtOnce) {
  StateConfig cfg;
  cfg.max_attempts = 1;
  cfg.flap_detection = false;
  run(cfg, {{U, U, U, H, 1, true}, {O, O, O, H, 1, true}});
}

TEST(CheckState, RecoveryNeedsRecoverAfterConsecutiveOks) {
  StateConfig cfg;
  cfg.max_attempts = 1;
  cfg.recover_after = 3;
  cfg.flap_detection = false;
  run(cfg, {
               {C, C, C, H, 1, true},
               {O, O, C, S, 1, false},
               {O, O, C, S, 1, false},
               {C, C, C, H, 1, false},  // not recovered: the streak starts over
               {O, O, C, S, 1, false},
               {O, O, C, S, 1, false},
               {O, O, O, H, 1, true},
           });
}

TEST(CheckState, RetryIntervalWhileConfirming) {
  StateConfig cfg;
  cfg.interval = 60s;
  cfg.retry_interval = 10s;
  cfg.max_attempts = 2;
  cfg.recover_after = 2;
  CheckState s(cfg);
  TimePoint t{};
  EXPECT_EQ(s.next_interval(), 60s);
  s.observe(C, t);
  EXPECT_EQ(s.next_interval(), 10s);  // confirming the problem
  s.observe(C, t);
  EXPECT_EQ(s.next_interval(), 60s);  // hard: back to normal
  s.observe(O, t);
  EXPECT_EQ(s.next_interval(), 10s);  // confirming the recovery
  s.observe(O, t);
  EXPECT_EQ(s.next_interval(), 60s);
}

TEST(CheckState, FlappingStartsOnceAndEndsWhenItSettles) {
  StateConfig cfg;
  cfg.max_attempts = 1;
  CheckState s(cfg);
  TimePoint t{};
  int starts = 0, stops = 0;
  // Alternate for a while: flapping starts exactly once.
  for (int i = 0; i < 20; ++i) {
    auto tr = s.observe(i % 2 ? C : O, t += 10s);
    starts += tr.flapping_started;
    stops += tr.flapping_stopped;
  }
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(stops, 0);
  EXPECT_TRUE(s.flapping());
  EXPECT_GT(s.flap_ratio(), 0.9);
  // Stable again: it ends once the changes leave the window.
  for (int i = 0; i < 25; ++i) {
    auto tr = s.observe(O, t += 10s);
    starts += tr.flapping_started;
    stops += tr.flapping_stopped;
  }
  EXPECT_EQ(starts, 1);
  EXPECT_EQ(stops, 1);
  EXPECT_FALSE(s.flapping());
}

TEST(CheckState, OneOutageIsNotFlapping) {
  StateConfig cfg;
  CheckState s(cfg);
  TimePoint t{};
  for (State r : {O, O, C, C, C, C, O, O, O, O}) {
    auto tr = s.observe(r, t += 10s);
    EXPECT_FALSE(tr.flapping_started);
  }
  EXPECT_FALSE(s.flapping());
}

TEST(CheckState, SaveAndRestoreRoundTrips) {
  StateConfig cfg;
  cfg.max_attempts = 3;
  CheckState a(cfg);
  TimePoint t{};
  a.observe(C, t += 10s);
  a.observe(C, t += 10s);
  CheckState b(cfg);
  b.restore(a.save());
  EXPECT_EQ(b.state(), C);
  EXPECT_EQ(b.attempt(), 2);
  EXPECT_EQ(b.state_type(), StateType::kSoft);
  // The restored state continues where it left off: the third attempt is hard.
  EXPECT_TRUE(b.observe(C, t += 10s).hard_change);
  EXPECT_EQ(b.last_hard_change(), t);
}

}  // namespace
}  // namespace wacht::alerts
