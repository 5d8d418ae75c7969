#include "alerts/router.hpp"

#include <algorithm>
#include <random>

#include <fmt/format.h>

namespace wacht::alerts {

namespace {

bool contains(const std::vector<std::string>& v, const std::string& x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

int64_t to_ms(TimePoint t) {
  return std::chrono::duration_cast<Millis>(t.time_since_epoch()).count();
}

std::string new_thread_token(uint64_t counter) {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:x}.{:x}", rng(), counter);
}

}  // namespace

Router::Router(std::vector<RouteConfig> routes) : routes_(std::move(routes)) {}

void Router::set_routes(std::vector<RouteConfig> routes) {
  routes_ = std::move(routes);
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (it->second.route >= static_cast<int>(routes_.size())) {
      for (const auto& [id, a] : it->second.alerts) where_.erase(id);
      it = groups_.erase(it);
    } else {
      ++it;
    }
  }
}

int Router::match(const Labels& labels) const {
  auto get = [&](const char* k) {
    auto it = labels.find(k);
    return it == labels.end() ? std::string() : it->second;
  };
  for (size_t i = 0; i < routes_.size(); ++i) {
    const RouteConfig& r = routes_[i];
    if (!r.tenants.empty() && !contains(r.tenants, get("tenant"))) continue;
    if (!r.severities.empty() && !contains(r.severities, get("severity"))) continue;
    bool ok = true;
    for (const auto& [k, v] : r.match) {
      auto it = labels.find(k);
      if (it == labels.end() || it->second != v) ok = false;
    }
    if (ok) return static_cast<int>(i);
  }
  return -1;
}

void Router::schedule_change(Group& g, TimePoint now) {
  g.changed = true;
  // Before the first notification the group_wait deadline stands; afterwards a
  // change goes out with the next group_interval tick.
  if (g.last_flush) {
    g.next_flush = std::max(now, *g.last_flush + routes_[g.route].group_interval);
  }
}

void Router::firing(const std::string& id, const Labels& labels, TimePoint now) {
  int route = match(labels);
  if (route < 0) return;
  const RouteConfig& r = routes_[route];
  std::string key = std::to_string(route);
  Labels group_labels;
  for (const auto& name : r.group_by) {
    auto it = labels.find(name);
    std::string v = it == labels.end() ? "" : it->second;
    group_labels[name] = v;
    key += "\x1f" + name + "=" + v;
  }
  // An alert that moved (its labels or severity now pick another group)
  // resolves in the old group first.
  if (auto w = where_.find(id); w != where_.end() && w->second != key) resolved(id, now);

  auto [it, created] = groups_.try_emplace(key);
  Group& g = it->second;
  if (created) {
    g.route = route;
    g.group_labels = std::move(group_labels);
    g.thread = new_thread_token(++thread_counter_);
    g.next_flush = now + r.group_wait;
  }
  // The engine fires once per hard problem and again on a severity change:
  // each call is news for the group.
  g.alerts[id].resolved = false;
  where_[id] = key;
  schedule_change(g, now);
}

void Router::resolved(const std::string& id, TimePoint now) {
  auto w = where_.find(id);
  if (w == where_.end()) return;
  auto g = groups_.find(w->second);
  where_.erase(w);
  if (g == groups_.end()) return;
  auto a = g->second.alerts.find(id);
  if (a == g->second.alerts.end()) return;
  if (!a->second.notified) {
    // Never announced: nothing to take back.
    g->second.alerts.erase(a);
    if (g->second.alerts.empty() && !g->second.last_flush) groups_.erase(g);
    return;
  }
  a->second.resolved = true;
  schedule_change(g->second, now);
}

void Router::forget(const std::string& id) {
  auto w = where_.find(id);
  if (w == where_.end()) return;
  if (auto g = groups_.find(w->second); g != groups_.end()) {
    g->second.alerts.erase(id);
    if (g->second.alerts.empty()) groups_.erase(g);
  }
  where_.erase(w);
}

std::vector<Router::Flush> Router::due(TimePoint now) {
  std::vector<Flush> out;
  for (auto it = groups_.begin(); it != groups_.end();) {
    Group& g = it->second;
    if (g.next_flush > now) {
      ++it;
      continue;
    }
    const RouteConfig& r = routes_[g.route];
    Flush f{g.route, it->first, g.group_labels, {}, {}, g.number, g.thread};
    for (auto& [id, a] : g.alerts) {
      if (a.resolved)
        f.resolved.push_back(id);
      else
        f.firing.push_back(id);
    }
    bool send = !f.firing.empty() || (r.send_resolved && !f.resolved.empty());
    for (auto a = g.alerts.begin(); a != g.alerts.end();) {
      if (a->second.resolved) {
        a = g.alerts.erase(a);
      } else {
        a->second.notified = true;
        ++a;
      }
    }
    if (!r.send_resolved) f.resolved.clear();
    if (send) {
      ++g.number;
      out.push_back(std::move(f));
    }
    g.last_flush = now;
    g.changed = false;
    if (g.alerts.empty()) {
      it = groups_.erase(it);  // the thread ends; a new problem starts a new one
      continue;
    }
    g.next_flush = now + r.repeat_interval;
    ++it;
  }
  return out;
}

std::optional<TimePoint> Router::next_due() const {
  std::optional<TimePoint> next;
  for (const auto& [key, g] : groups_)
    if (!next || g.next_flush < *next) next = g.next_flush;
  return next;
}

std::vector<Router::SavedGroup> Router::save() const {
  std::vector<SavedGroup> out;
  for (const auto& [key, g] : groups_) {
    SavedGroup s{g.route,
                 key,
                 g.group_labels,
                 g.thread,
                 g.number,
                 -1,
                 g.last_flush ? to_ms(*g.last_flush) : -1,
                 to_ms(g.next_flush),
                 g.changed,
                 {}};
    for (const auto& [id, a] : g.alerts) s.alerts.push_back({id, a.notified, a.resolved});
    out.push_back(std::move(s));
  }
  return out;
}

void Router::restore(const std::vector<SavedGroup>& saved) {
  for (const auto& s : saved) {
    if (s.route < 0 || s.route >= static_cast<int>(routes_.size())) continue;
    Group g;
    g.route = s.route;
    g.group_labels = s.group_labels;
    g.thread = s.thread;
    g.number = s.number;
    if (s.last_flush_ms >= 0) g.last_flush = TimePoint(Millis(s.last_flush_ms));
    g.next_flush = TimePoint(Millis(s.next_flush_ms));
    g.changed = s.changed;
    for (const auto& a : s.alerts) {
      g.alerts[a.id] = Alert{a.notified, a.resolved};
      where_[a.id] = s.key;
    }
    groups_[s.key] = std::move(g);
  }
}

}  // namespace wacht::alerts
