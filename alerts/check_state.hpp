#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <string>

#include "probes/probe.hpp"

namespace wacht::alerts {

using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;
using Millis = std::chrono::milliseconds;
using probes::State;

// How a check's results turn into soft and hard states (Icinga's model).
struct StateConfig {
  // Consecutive non-OK results before a problem becomes hard (and notifies).
  int max_attempts = 3;
  // Consecutive OK results before a hard problem recovers.
  int recover_after = 1;
  Millis interval{30000};
  // Interval between attempts while a problem is soft (confirming it).
  Millis retry_interval{10000};
  bool flap_detection = true;
  int flap_window = 20;     // results considered
  double flap_high = 0.30;  // weighted state-change ratio that starts flapping
  double flap_low = 0.25;   // ... and that ends it
};

enum class StateType { kSoft, kHard };

// What one result changed; drives notifications and log lines.
struct Transition {
  bool hard_change = false;  // the hard state changed: notify (unless flapping)
  bool soft_change = false;  // the current state changed
  bool flapping_started = false;
  bool flapping_stopped = false;
};

// The state machine of one check. A pure function of its results and the
// times they arrived: no I/O, no clock of its own, so tests feed it tables.
//
// - From hard OK, a non-OK result starts a soft problem (attempt 1); checks
//   then run at retry_interval; the max_attempts-th consecutive non-OK result
//   makes it hard. max_attempts = 1 makes every problem hard at once.
// - In a hard problem, a change between WARNING, CRITICAL and UNKNOWN is a
//   hard change too (the severity changed).
// - A soft problem that sees OK returns to OK silently. A hard problem needs
//   recover_after consecutive OKs to recover (a hard change).
// - Flapping: the share of state changes among the last flap_window results,
//   newer ones weighted more (Icinga 2's formula), above flap_high starts
//   flapping, below flap_low ends it.
class CheckState {
 public:
  explicit CheckState(const StateConfig& config = {});

  Transition observe(State result, TimePoint now);

  State state() const { return state_; }
  State hard_state() const { return hard_state_; }
  StateType state_type() const { return type_; }
  int attempt() const { return attempt_; }
  int ok_streak() const { return ok_streak_; }
  bool flapping() const { return flapping_; }
  double flap_ratio() const { return flap_ratio_; }
  TimePoint last_hard_change() const { return last_hard_change_; }
  TimePoint last_change() const { return last_change_; }
  // When the next run should happen after the latest result.
  Millis next_interval() const;
  const StateConfig& config() const { return config_; }
  void set_config(const StateConfig& c) { config_ = c; }

  // For snapshots across restarts.
  struct Saved {
    State state = State::kOk;
    State hard_state = State::kOk;
    StateType type = StateType::kHard;
    int attempt = 1;
    int ok_streak = 0;
    bool flapping = false;
    std::string history;  // '0'..'3' per remembered result, oldest first
    int64_t last_hard_change_ms = 0;
    int64_t last_change_ms = 0;
  };
  Saved save() const;
  void restore(const Saved& s);

 private:
  void update_flapping(Transition& t);

  StateConfig config_;
  State state_ = State::kOk;
  State hard_state_ = State::kOk;
  StateType type_ = StateType::kHard;
  int attempt_ = 1;
  int ok_streak_ = 0;
  bool flapping_ = false;
  double flap_ratio_ = 0;
  std::deque<State> history_;
  TimePoint last_hard_change_{};
  TimePoint last_change_{};
};

}  // namespace wacht::alerts
