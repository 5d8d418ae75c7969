#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "alerts/check_state.hpp"
#include "runtime/toml_reader.hpp"

namespace wacht::alerts {

// What the engine needs to know of a check.
struct EngineCheck {
  std::string id;
  std::string target;
  std::string type;
  std::string tenant;
  runtime::StringPairs labels;
  StateConfig state;
  std::vector<std::string> depends_on;
  // false: the check is unreachable while ANY parent is down (a service on its
  // host); true: only while ALL are down (a site with redundant WAN links).
  bool depends_all = false;
  std::string description;  // shown in notifications
};

// A notification-worthy change of one check.
struct AlertEvent {
  enum class Kind { kFiring, kResolved, kFlappingStarted, kFlappingStopped };
  Kind kind;
  std::string id;
};

// The alert state of every check: soft/hard states, flapping and topology. A
// pure function of the results it is fed and their times; it asks the daemon
// for fresh checks (run_now) instead of doing I/O.
//
// Topology, as operators expect and Icinga does not quite do:
// - While a parent is not OK (its latest result, or it is itself unreachable),
//   its children are UNREACHABLE and notify nothing.
// - Before a child's hard problem is notified, its parents are re-checked; the
//   child notifies only if they still look OK on those fresh results.
// - When a parent recovers, its failing children are re-checked at once and
//   notify only on that fresh result: no recovery storm, no stale alarms.
class AlertEngine {
 public:
  struct Effects {
    std::vector<std::string> run_now;  // re-check these at once
    std::vector<AlertEvent> events;
  };

  // What a check looks like now, for notifications, metrics and status pages.
  struct View {
    const EngineCheck* check;
    State state;  // of the latest result
    State hard_state;
    StateType type;
    bool has_result;
    bool flapping;
    bool unreachable;  // a parent is down
    bool firing;       // a firing notification was issued and not resolved
    State notified_state;
    TimePoint since;  // last hard change
    std::string summary;
    int attempt;
    Millis next_interval;  // until the next run: retry_interval while confirming
  };

  AlertEngine();
  ~AlertEngine();

  // Replaces the set of checks; state of checks whose id stays is kept (a
  // changed max_attempts applies from the next result).
  void configure(std::vector<EngineCheck> checks);
  Effects observe(const std::string& id, State graded, std::string summary, TimePoint now);

  std::optional<View> view(const std::string& id) const;
  std::vector<std::string> ids() const;
  // Descendants cut off by this check's outage or failing: what it took down.
  std::vector<std::string> affected_children(const std::string& id) const;

  struct Saved {
    CheckState::Saved state;
    std::string summary;
    bool has_result = false;
    State last_result = State::kOk;
    bool firing = false;
    State notified_state = State::kOk;
    bool flapping_notified = false;
  };
  std::map<std::string, Saved> save() const;
  // Restores saved checks that are configured; unknown ids are ignored.
  void restore(const std::map<std::string, Saved>& saved);

 private:
  struct Node;
  bool down(const Node& n, int depth = 0) const;
  bool blocked(const Node& n) const;
  void evaluate(Node& n, Effects& fx);

  std::map<std::string, std::unique_ptr<Node>, std::less<>> nodes_;
  uint64_t seq_ = 0;
};

}  // namespace wacht::alerts
