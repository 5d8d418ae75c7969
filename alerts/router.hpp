#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "alerts/check_state.hpp"
#include "runtime/diagnostics.hpp"

namespace wacht::alerts {

using Labels = std::map<std::string, std::string>;

// One [[route]]: which alerts it takes and how it batches them. Routes are
// tried in order; the first that matches takes the alert.
struct RouteConfig {
  std::vector<std::string> tenants;     // empty: any tenant
  std::vector<std::string> severities;  // "warning", "critical", "unknown"; empty: any
  Labels match;                         // labels that must be equal
  std::vector<std::string> receivers;
  std::vector<std::string> group_by = {"tenant", "check"};
  Millis group_wait{30000};
  Millis group_interval{300000};
  Millis repeat_interval{4 * 3600 * 1000};
  bool send_resolved = true;
  runtime::SourceLoc loc;
};

// Alertmanager's grouping, for one process: alerts that match the same route
// and agree on its group_by labels form a group. A new group waits group_wait
// before its first notification (so a burst becomes one message), later
// changes go out at most every group_interval, and while anything fires the
// notification is repeated every repeat_interval. Resolved alerts go out once
// if send_resolved. Pure: time is passed in.
class Router {
 public:
  explicit Router(std::vector<RouteConfig> routes = {});
  // New routes; groups of routes that still exist (same index and group key) stay.
  void set_routes(std::vector<RouteConfig> routes);
  const std::vector<RouteConfig>& routes() const { return routes_; }

  // Index of the first route that matches, or -1.
  int match(const Labels& labels) const;

  // `labels` must hold tenant, severity, check and the check's labels.
  void firing(const std::string& id, const Labels& labels, TimePoint now);
  void resolved(const std::string& id, TimePoint now);
  // Forgets an alert without notifying (its check was removed from the config).
  void forget(const std::string& id);

  struct Flush {
    int route;
    std::string key;      // the group's identity: route index and group_by values
    Labels group_labels;  // the group_by values
    std::vector<std::string> firing;
    std::vector<std::string> resolved;
    uint64_t number;     // 0 for the group's first notification, then 1, 2, ...
    std::string thread;  // stable token of the group, for Message-IDs and threading
  };
  // The groups due at `now`, each marked as sent.
  std::vector<Flush> due(TimePoint now);
  std::optional<TimePoint> next_due() const;
  size_t groups() const { return groups_.size(); }

  struct SavedAlert {
    std::string id;
    bool notified;  // went out as firing
    bool resolved;  // resolved, not yet sent
  };
  struct SavedGroup {
    int route;
    std::string key;
    Labels group_labels;
    std::string thread;
    uint64_t number;
    int64_t created_ms, last_flush_ms, next_flush_ms;  // -1 when unset
    bool changed;
    std::vector<SavedAlert> alerts;
  };
  std::vector<SavedGroup> save() const;
  void restore(const std::vector<SavedGroup>& groups);

 private:
  struct Alert {
    bool notified = false;
    bool resolved = false;
  };
  struct Group {
    int route;
    Labels group_labels;
    std::string thread;
    uint64_t number = 0;
    std::optional<TimePoint> last_flush;
    TimePoint next_flush;
    bool changed = true;
    std::map<std::string, Alert> alerts;
  };
  void schedule_change(Group& g, TimePoint now);

  std::vector<RouteConfig> routes_;
  std::map<std::string, Group> groups_;       // by key
  std::map<std::string, std::string> where_;  // alert id -> group key
  uint64_t thread_counter_ = 0;
};

}  // namespace wacht::alerts
