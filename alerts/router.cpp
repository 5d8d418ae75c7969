#include "alerts/router.hpp"

#include <algorithm>
#include <cassert>
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

std::optional<TimePoint> from_ms(int64_t ms) {
  if (ms < 0) return std::nullopt;
  return TimePoint(Millis(ms));
}

std::string new_thread_token(uint64_t counter) {
  static std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("{:x}.{:x}", rng(), counter);
}

void append_unique(std::vector<std::string>& to, const std::vector<std::string>& from) {
  for (const auto& x : from)
    if (!contains(to, x)) to.push_back(x);
}

constexpr auto kStormWindow = std::chrono::minutes(1);

}  // namespace

Router::Router(std::vector<RouteConfig> routes) : routes_(std::move(routes)) {}

void Router::set_routes(std::vector<RouteConfig> routes) {
  routes_ = std::move(routes);
  for (auto it = groups_.begin(); it != groups_.end();) {
    if (it->second.route >= static_cast<int>(routes_.size())) {
      for (const auto& [id, a] : it->second.alerts) {
        auto w = where_.find(id);
        if (w == where_.end()) continue;
        w->second.erase(it->first);
        if (w->second.empty()) where_.erase(w);
      }
      it = groups_.erase(it);
    } else {
      ++it;
    }
  }
  storms_.clear();
}

bool Router::matches(const RouteConfig& r, const Labels& labels,
                     std::optional<TimePoint> now) const {
  auto get = [&](const char* k) {
    auto it = labels.find(k);
    return it == labels.end() ? std::string() : it->second;
  };
  if (!r.tenants.empty() && !contains(r.tenants, get("tenant"))) return false;
  if (!r.severities.empty() && !contains(r.severities, get("severity"))) return false;
  for (const auto& [k, v] : r.match) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return !now || !r.active || r.active(*now);
}

bool Router::match_node(int i, const Labels& labels, std::optional<TimePoint> now,
                        std::vector<int>& out) const {
  const RouteConfig& r = routes_[static_cast<size_t>(i)];
  if (!matches(r, labels, now)) return false;
  bool taken = false;
  for (int c : r.children) {
    if (!match_node(c, labels, now, out)) continue;
    taken = true;
    if (!routes_[static_cast<size_t>(c)].continue_matching) break;
  }
  if (!taken) out.push_back(i);
  return true;
}

std::vector<int> Router::match(const Labels& labels, std::optional<TimePoint> now) const {
  std::vector<int> out;
  for (size_t i = 0; i < routes_.size(); ++i) {
    if (routes_[i].parent >= 0) continue;
    if (match_node(static_cast<int>(i), labels, now, out) && !routes_[i].continue_matching) break;
  }
  return out;
}

void Router::schedule_change(Group& g, TimePoint now) {
  g.changed = true;
  // Before the first notification the group_wait deadline stands; afterwards a
  // change goes out with the next group_interval tick.
  if (g.last_flush) g.next_flush = std::max(now, *g.last_flush + routes_[g.route].group_interval);
}

void Router::firing(const std::string& id, const Labels& labels, TimePoint now) {
  std::set<std::string> keys;
  for (int route : match(labels, now)) {
    const RouteConfig& r = routes_[static_cast<size_t>(route)];
    std::string key = std::to_string(route);
    Labels group_labels;
    for (const auto& name : r.group_by) {
      auto it = labels.find(name);
      std::string v = it == labels.end() ? "" : it->second;
      group_labels[name] = v;
      key += "\x1f" + name + "=" + v;
    }
    keys.insert(key);
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
    Alert& a = g.alerts[id];
    a.resolved = false;
    a.news = true;
    schedule_change(g, now);
  }
  // An alert that moved (its labels or severity now pick other groups)
  // resolves in the old ones.
  if (auto w = where_.find(id); w != where_.end()) {
    for (const auto& old : w->second)
      if (!keys.contains(old)) remove_from_group(id, old, now);
  }
  if (keys.empty())
    where_.erase(id);
  else
    where_[id] = std::move(keys);
}

void Router::remove_from_group(const std::string& id, const std::string& key, TimePoint now) {
  auto g = groups_.find(key);
  if (g == groups_.end()) return;
  auto a = g->second.alerts.find(id);
  if (a == g->second.alerts.end()) return;
  if (!a->second.notified) {
    // Never announced: nothing to take back.
    g->second.alerts.erase(a);
    if (g->second.alerts.empty()) groups_.erase(g);
    return;
  }
  a->second.resolved = true;
  schedule_change(g->second, now);
}

void Router::resolved(const std::string& id, TimePoint now) {
  auto w = where_.find(id);
  if (w == where_.end()) return;
  auto keys = std::move(w->second);
  where_.erase(w);
  for (const auto& key : keys) remove_from_group(id, key, now);
}

void Router::forget(const std::string& id) {
  auto w = where_.find(id);
  if (w == where_.end()) return;
  for (const auto& key : w->second) {
    if (auto g = groups_.find(key); g != groups_.end()) {
      g->second.alerts.erase(id);
      if (g->second.alerts.empty()) groups_.erase(g);
    }
  }
  where_.erase(w);
}

void Router::wake(TimePoint now) {
  for (auto& [key, g] : groups_) {
    bool held = std::any_of(g.alerts.begin(), g.alerts.end(),
                            [](const auto& a) { return !a.second.resolved && a.second.news; });
    if (!held) continue;
    g.changed = true;
    // A group still in its group_wait keeps it; otherwise held news goes out now.
    if (g.last_flush) g.next_flush = std::min(g.next_flush, now);
  }
}

std::optional<TimePoint> Router::escalation_due(const Group& g) const {
  const auto& levels = routes_[g.route].escalation;
  if (!g.escalation_start || g.level >= static_cast<int>(levels.size())) return std::nullopt;
  return *g.escalation_start + levels[static_cast<size_t>(g.level)].after;
}

std::vector<std::string> Router::receivers_of(const Group& g) const {
  const RouteConfig& r = routes_[g.route];
  std::vector<std::string> out = r.receivers;
  for (int i = 0; i < g.level && i < static_cast<int>(r.escalation.size()); ++i)
    append_unique(out, r.escalation[static_cast<size_t>(i)].receivers);
  return out;
}

std::vector<Router::Flush> Router::due(TimePoint now, const MuteFn& mute) {
  auto muted = [&](const std::string& id) { return mute ? mute(id) : Mute{}; };
  struct Candidate {
    std::string key;
    Flush flush;
  };
  // Per route, what would go out, so a storm can be turned into a digest.
  std::map<int, std::vector<Candidate>> planned;
  std::vector<Flush> out;
  std::vector<std::string> finished;

  for (auto& [key, g] : groups_) {
    const RouteConfig& r = routes_[g.route];
    if (auto esc = escalation_due(g); esc && *esc <= now) {
      std::vector<std::string> firing;
      bool unacked = false;
      for (const auto& [id, a] : g.alerts) {
        if (a.resolved || !a.notified) continue;
        Mute m = muted(id);
        if (m.silenced) continue;
        firing.push_back(id);
        unacked = unacked || !m.acked;
      }
      if (!unacked) {
        g.escalation_start.reset();  // acknowledged, silenced or over: the chain stops
      } else {
        ++g.level;
        planned[g.route].push_back(
            {key, Flush{g.route,
                        key,
                        g.group_labels,
                        std::move(firing),
                        {},
                        g.number++,
                        g.thread,
                        r.escalation[static_cast<size_t>(g.level - 1)].receivers,
                        g.level,
                        false}});
      }
    }
    if (g.next_flush > now) continue;
    Flush f{g.route, key, g.group_labels, {}, {}, g.number, g.thread, receivers_of(g), 0, false};
    bool news = false, unacked = false;
    for (const auto& [id, a] : g.alerts) {
      if (a.resolved) {
        if (r.send_resolved) f.resolved.push_back(id);
        continue;
      }
      Mute m = muted(id);
      if (m.silenced) continue;
      f.firing.push_back(id);
      news = news || a.news;
      unacked = unacked || !m.acked;
    }
    bool repeat = !news && !g.changed && unacked && g.last_flush;
    if (news || !f.resolved.empty() || repeat) {
      planned[g.route].push_back({key, std::move(f)});
      continue;
    }
    // Nothing to say (held back or acknowledged): wait for a change or the next repeat.
    for (auto a = g.alerts.begin(); a != g.alerts.end();)
      a = a->second.resolved ? g.alerts.erase(a) : std::next(a);
    g.last_flush = now;
    g.changed = false;
    g.next_flush = now + r.repeat_interval;
    if (g.alerts.empty()) finished.push_back(key);
  }
  for (const auto& key : finished) groups_.erase(key);

  // Marks a group's message as sent (or covered by a digest).
  auto commit = [&](const std::string& key, const Flush& f, bool own_message) {
    Group& g = groups_.at(key);
    const RouteConfig& r = routes_[g.route];
    for (const auto& id : f.firing) {
      Alert& a = g.alerts[id];
      a.notified = true;
      a.news = false;
    }
    for (auto a = g.alerts.begin(); a != g.alerts.end();)
      a = a->second.resolved ? g.alerts.erase(a) : std::next(a);
    if (own_message) ++g.number;
    g.last_flush = now;
    g.changed = false;
    if (g.alerts.empty()) {
      // The thread ends; a new problem starts a new one. (Resolved alerts
      // already left where_.)
      groups_.erase(key);
      return;
    }
    if (!r.escalation.empty() && !g.escalation_start && !f.firing.empty()) g.escalation_start = now;
    g.next_flush = now + r.repeat_interval;
  };

  for (auto& [route, candidates] : planned) {
    const RouteConfig& r = routes_[static_cast<size_t>(route)];
    size_t allowed = candidates.size();
    Storm* storm = nullptr;
    if (r.storm_limit > 0) {
      storm = &storms_[route];
      while (!storm->sent.empty() && storm->sent.front() <= now - kStormWindow)
        storm->sent.pop_front();
      size_t used = storm->sent.size();
      allowed = used >= static_cast<size_t>(r.storm_limit)
                    ? 0
                    : static_cast<size_t>(r.storm_limit) - used;
    }
    std::map<int, Flush> digests;  // by escalation level
    for (size_t i = 0; i < candidates.size(); ++i) {
      auto& [key, f] = candidates[i];
      if (i < allowed) {
        if (storm) storm->sent.push_back(now);
        if (f.level == 0) commit(key, f, true);
        out.push_back(std::move(f));
        continue;
      }
      assert(storm);  // without a storm limit every candidate is allowed
      // The overflow of a storm is collected for group_wait (a storm's alerts
      // come due over a whole check interval), then sent as one digest.
      // Escalations are never held back: they join a digest at once.
      if (f.level == 0) {
        if (!storm->digest_at) storm->digest_at = std::max(now + r.group_wait, storm->quiet_until);
        if (now < *storm->digest_at) {
          groups_.at(key).next_flush = *storm->digest_at;
          continue;
        }
      }
      auto [d, created] = digests.try_emplace(f.level);
      Flush& digest = d->second;
      if (created) {
        digest =
            Flush{route, "digest", {},  {}, {}, 0, "digest." + new_thread_token(++thread_counter_),
                  {},    f.level,  true};
      }
      append_unique(digest.receivers, f.receivers);
      digest.firing.insert(digest.firing.end(), f.firing.begin(), f.firing.end());
      digest.resolved.insert(digest.resolved.end(), f.resolved.begin(), f.resolved.end());
      if (f.level == 0) commit(key, f, false);
    }
    for (auto& [level, digest] : digests) {
      assert(storm);  // digests hold only a storm's overflow
      storm->sent.push_back(now);
      if (level == 0) {
        storm->digest_at.reset();
        storm->quiet_until = now + kStormWindow;
      }
      out.push_back(std::move(digest));
    }
  }
  return out;
}

std::optional<TimePoint> Router::next_due() const {
  std::optional<TimePoint> next;
  for (const auto& [key, g] : groups_) {
    if (!next || g.next_flush < *next) next = g.next_flush;
    if (auto esc = escalation_due(g); esc && *esc < *next) next = esc;
  }
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
                 g.last_flush ? to_ms(*g.last_flush) : -1,
                 to_ms(g.next_flush),
                 g.changed,
                 g.level,
                 g.escalation_start ? to_ms(*g.escalation_start) : -1,
                 {}};
    for (const auto& [id, a] : g.alerts) s.alerts.push_back({id, a.notified, a.resolved, a.news});
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
    g.last_flush = from_ms(s.last_flush_ms);
    g.next_flush = TimePoint(Millis(s.next_flush_ms));
    g.changed = s.changed;
    g.level = s.level;
    g.escalation_start = from_ms(s.escalation_start_ms);
    for (const auto& a : s.alerts) {
      g.alerts[a.id] = Alert{a.notified, a.resolved, a.news};
      where_[a.id].insert(s.key);
    }
    groups_[s.key] = std::move(g);
  }
}

}  // namespace wacht::alerts
