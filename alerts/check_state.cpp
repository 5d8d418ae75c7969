#include "alerts/check_state.hpp"

#include <algorithm>

namespace wacht::alerts {

CheckState::CheckState(const StateConfig& config) : config_(config) {}

Transition CheckState::observe(State result, TimePoint now) {
  Transition t;
  const bool ok = result == State::kOk;
  const State before = state_;

  if (ok) {
    ++ok_streak_;
    if (hard_state_ == State::kOk) {
      // OK, or a soft problem that cleared up before it was confirmed.
      state_ = State::kOk;
      type_ = StateType::kHard;
      attempt_ = 1;
    } else if (ok_streak_ >= std::max(1, config_.recover_after)) {
      state_ = hard_state_ = State::kOk;
      type_ = StateType::kHard;
      attempt_ = 1;
      t.hard_change = true;
    } else {
      // Recovering: still the hard problem until enough OKs in a row.
      state_ = result;
      type_ = StateType::kSoft;
    }
  } else {
    ok_streak_ = 0;
    if (hard_state_ != State::kOk) {
      // Still a hard problem; a change of severity is a hard change.
      if (result != hard_state_) t.hard_change = true;
      state_ = hard_state_ = result;
      type_ = StateType::kHard;
    } else {
      attempt_ = state_ == State::kOk ? 1 : attempt_ + 1;
      state_ = result;
      if (attempt_ >= std::max(1, config_.max_attempts)) {
        hard_state_ = result;
        type_ = StateType::kHard;
        t.hard_change = true;
      } else {
        type_ = StateType::kSoft;
      }
    }
  }
  if (state_ == State::kOk && hard_state_ == State::kOk) type_ = StateType::kHard;
  t.soft_change = state_ != before;
  if (t.soft_change) last_change_ = now;
  if (t.hard_change) last_hard_change_ = now;

  history_.push_back(result);
  while (static_cast<int>(history_.size()) > std::max(2, config_.flap_window)) history_.pop_front();
  update_flapping(t);
  return t;
}

void CheckState::update_flapping(Transition& t) {
  if (!config_.flap_detection) {
    if (flapping_) {
      flapping_ = false;
      t.flapping_stopped = true;
    }
    return;
  }
  // Icinga 2: each change between consecutive results counts with a weight
  // rising from 0.8 (oldest) to 1.2 (newest), relative to the window size.
  const size_t n = history_.size();
  double changes = 0;
  for (size_t i = 1; i < n; ++i) {
    if (history_[i] != history_[i - 1])
      changes +=
          0.8 + 0.4 * static_cast<double>(i - 1) / static_cast<double>(std::max<size_t>(1, n - 2));
  }
  flap_ratio_ = n > 1 ? changes / static_cast<double>(std::max(2, config_.flap_window) - 1) : 0;
  if (!flapping_ && flap_ratio_ > config_.flap_high) {
    flapping_ = true;
    t.flapping_started = true;
  } else if (flapping_ && flap_ratio_ < config_.flap_low) {
    flapping_ = false;
    t.flapping_stopped = true;
  }
}

Millis CheckState::next_interval() const {
  // Confirm a suspected problem (or a suspected recovery) quickly.
  bool confirming = type_ == StateType::kSoft;
  return confirming ? std::min(config_.retry_interval, config_.interval) : config_.interval;
}

CheckState::Saved CheckState::save() const {
  Saved s;
  s.state = state_;
  s.hard_state = hard_state_;
  s.type = type_;
  s.attempt = attempt_;
  s.ok_streak = ok_streak_;
  s.flapping = flapping_;
  for (State h : history_) s.history += static_cast<char>('0' + static_cast<int>(h));
  s.last_hard_change_ms =
      std::chrono::duration_cast<Millis>(last_hard_change_.time_since_epoch()).count();
  s.last_change_ms = std::chrono::duration_cast<Millis>(last_change_.time_since_epoch()).count();
  return s;
}

void CheckState::restore(const Saved& s) {
  state_ = s.state;
  hard_state_ = s.hard_state;
  type_ = s.type;
  attempt_ = s.attempt;
  ok_streak_ = s.ok_streak;
  flapping_ = s.flapping;
  history_.clear();
  for (char c : s.history)
    if (c >= '0' && c <= '3') history_.push_back(static_cast<State>(c - '0'));
  last_hard_change_ = TimePoint(Millis(s.last_hard_change_ms));
  last_change_ = TimePoint(Millis(s.last_change_ms));
}

}  // namespace wacht::alerts
