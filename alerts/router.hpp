#pragma once

#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "alerts/check_state.hpp"
#include "runtime/diagnostics.hpp"

namespace wacht::alerts {

using Labels = std::map<std::string, std::string>;

// One level of an escalation chain: who is told when the alert is still not
// acknowledged `after` its first notification.
struct EscalationLevel {
  Millis after{0};
  std::vector<std::string> receivers;
};

// One route of the tree, flattened: the config resolves inheritance, so every
// setting here is effective. Top-level routes are tried in order; a matching
// route tries its children in order, and the alert stays with the route itself
// only if no child takes it. A route that takes an alert stops its siblings
// from trying unless it says `continue_matching`.
struct RouteConfig {
  std::string name;                     // "route 2.1", for messages
  std::vector<std::string> tenants;     // empty: any tenant
  std::vector<std::string> severities;  // "warning", "critical", "unknown"; empty: any
  Labels match;                         // labels that must be equal
  // Whether the route takes alerts at a moment (its active_during and
  // inactive_during time periods); empty: always.
  std::function<bool(TimePoint)> active;
  bool continue_matching = false;
  int parent = -1;
  std::vector<int> children;

  std::vector<std::string> receivers;
  std::vector<std::string> group_by = {"tenant", "check"};
  Millis group_wait{30000};
  Millis group_interval{300000};
  Millis repeat_interval{4 * 3600 * 1000};
  bool send_resolved = true;
  std::vector<EscalationLevel> escalation;
  // Most messages per minute for this route; beyond it changes are batched
  // into one digest per minute. 0: no limit.
  int storm_limit = 0;
  runtime::SourceLoc loc;
};

// Alertmanager's grouping, for one process: alerts that a route takes and that
// agree on its group_by labels form a group. A new group waits group_wait
// before its first notification (so a burst becomes one message), later
// changes go out at most every group_interval, and while anything fires the
// notification is repeated every repeat_interval. Resolved alerts go out once
// if send_resolved. On top of Alertmanager: silenced alerts are held back
// (their resolved notice still goes out if they were announced),
// acknowledged alerts stop repeats and escalation, an unacknowledged group
// climbs the route's escalation chain, and a storm becomes a digest. Pure:
// time and the silence/ack state are passed in.
class Router {
 public:
  explicit Router(std::vector<RouteConfig> routes = {});
  // New routes; groups of routes that still exist (same index and group key) stay.
  void set_routes(std::vector<RouteConfig> routes);
  const std::vector<RouteConfig>& routes() const { return routes_; }

  // The routes that take an alert with these labels at `now` (nullopt: at any
  // time, ignoring time periods), in tree order.
  std::vector<int> match(const Labels& labels, std::optional<TimePoint> now) const;

  // `labels` must hold tenant, severity, check and the check's labels. A
  // repeated call (a changed severity) is news for the alert's groups.
  void firing(const std::string& id, const Labels& labels, TimePoint now);
  void resolved(const std::string& id, TimePoint now);
  // Forgets an alert without notifying (its check was removed from the config).
  void forget(const std::string& id);
  // Silences ended or acknowledgements were withdrawn: held-back alerts are
  // news again and go out with their group's next message.
  void wake(TimePoint now);

  struct Mute {
    bool silenced = false;  // held back entirely
    bool acked = false;     // no repeats, no escalation
  };
  using MuteFn = std::function<Mute(const std::string& id)>;

  struct Flush {
    int route;
    std::string key;      // the group's identity: route index and group_by values
    Labels group_labels;  // the group_by values
    std::vector<std::string> firing;
    std::vector<std::string> resolved;
    uint64_t number;     // 0 for the group's first notification, then 1, 2, ...
    std::string thread;  // stable token of the group, for Message-IDs and threading
    std::vector<std::string> receivers;
    int level = 0;        // > 0: this message escalates to that level's receivers
    bool digest = false;  // a storm digest covering several groups
  };
  // The messages due at `now`, each marked as sent.
  std::vector<Flush> due(TimePoint now, const MuteFn& mute = {});
  std::optional<TimePoint> next_due() const;
  size_t groups() const { return groups_.size(); }

  struct SavedAlert {
    std::string id;
    bool notified;  // went out as firing
    bool resolved;  // resolved, not yet sent
    bool news;      // not yet announced in its current state
  };
  struct SavedGroup {
    int route;
    std::string key;
    Labels group_labels;
    std::string thread;
    uint64_t number;
    int64_t last_flush_ms, next_flush_ms;  // -1 when unset
    bool changed;
    int level = 0;
    int64_t escalation_start_ms = -1;
    std::vector<SavedAlert> alerts;
  };
  std::vector<SavedGroup> save() const;
  void restore(const std::vector<SavedGroup>& groups);

 private:
  struct Alert {
    bool notified = false;
    bool resolved = false;
    bool news = true;
  };
  struct Group {
    int route;
    Labels group_labels;
    std::string thread;
    uint64_t number = 0;
    std::optional<TimePoint> last_flush;
    TimePoint next_flush;
    bool changed = true;
    int level = 0;  // escalation levels reached
    std::optional<TimePoint> escalation_start;
    std::map<std::string, Alert> alerts;
  };
  struct Storm {
    std::deque<TimePoint> sent;  // messages of the last minute
    // A digest collecting the overflow is due then; after one, the next
    // waits at least a minute.
    std::optional<TimePoint> digest_at;
    TimePoint quiet_until{};
  };
  bool matches(const RouteConfig& r, const Labels& labels, std::optional<TimePoint> now) const;
  bool match_node(int i, const Labels& labels, std::optional<TimePoint> now,
                  std::vector<int>& out) const;
  std::optional<TimePoint> escalation_due(const Group& g) const;
  std::vector<std::string> receivers_of(const Group& g) const;
  void schedule_change(Group& g, TimePoint now);
  void remove_from_group(const std::string& id, const std::string& key, TimePoint now);

  std::vector<RouteConfig> routes_;
  std::map<std::string, Group> groups_;                 // by key
  std::map<std::string, std::set<std::string>> where_;  // alert id -> group keys
  std::map<int, Storm> storms_;                         // by route
  uint64_t thread_counter_ = 0;
};

}  // namespace wacht::alerts
