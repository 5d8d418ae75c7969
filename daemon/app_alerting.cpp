// The alerting half of App: engine events into the router, router messages
// into the outbox (or Alertmanager), and the on-call layer around them:
// silences and maintenance windows, acknowledgements, escalation, the storm
// and connectivity guards.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <cstdlib>

#include "alerts/smtp_notifier.hpp"
#include "alerts/webhook_notifier.hpp"
#include "app.hpp"
#include "exporters/api_auth.hpp"

namespace wacht {

namespace {

// The least time between two flushes of the router (see arm_flush).
constexpr uint64_t kFlushSpacingMs = 250;

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t to_ms(alerts::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

void App::configure_alerting(const config::Config& cfg) {
  // setenv races with getenv on other threads (curl's resolver threads call
  // getaddrinfo, which reads the environment): a reload that keeps the zone,
  // nearly every one, must leave the environment alone.
  const char* tz = std::getenv("TZ");
  if (!cfg.alerting.timezone.empty() && (!tz || cfg.alerting.timezone != tz)) {
    setenv("TZ", cfg.alerting.timezone.c_str(), 1);
    tzset();
  }
  std::set<std::string> wanted;
  std::vector<alerts::EngineCheck> checks;
  for (const auto& c : cfg.checks) {
    wanted.insert(c.id);
    checks.push_back(alerts::EngineCheck{c.id, c.target, std::string(c.type->name), c.tenant,
                                         c.labels, c.state, c.depends_on, c.depends_all,
                                         c.description});
  }
  // A removed check that had announced a problem closes its thread.
  for (const auto& id : engine_.ids()) {
    if (wanted.contains(id)) continue;
    auto v = engine_.view(id);
    if (v && v->firing)
      router_->resolved(id, alerts::Clock::now());
    else
      router_->forget(id);
    acks_.erase(id);
    failing_.erase(id);
  }
  engine_.configure(std::move(checks));

  std::vector<alerts::RouteConfig> routes = cfg.routes;
  std::vector<config::ReceiverConfig> receivers = cfg.receivers;
  if (routes.empty()) {
    // Without routes every alert is still written to the log, never dropped.
    config::ReceiverConfig log;
    log.name = "log";
    log.type = config::ReceiverConfig::Type::kLog;
    log.templates = alerts::builtin_templates("en");
    receivers.push_back(log);
    alerts::RouteConfig all;
    all.name = "route 1";
    all.receivers = {"log"};
    routes.push_back(all);
  }
  router_->set_routes(std::move(routes));
  std::map<std::string, std::unique_ptr<alerts::AlertmanagerPusher>> pushers;
  for (const auto& r : receivers) {
    using Type = config::ReceiverConfig::Type;
    switch (r.type) {
      case Type::kEmail: {
        alerts::SmtpSettings smtp = cfg.smtp;
        smtp.to = r.to;
        outbox_->add_receiver(r.name, alerts::make_smtp_notifier(loop_, curl_.get(), smtp),
                              r.per_minute);
        break;
      }
      case Type::kWebhook:
        outbox_->add_receiver(r.name,
                              alerts::make_webhook_notifier(
                                  loop_, curl_.get(),
                                  alerts::WebhookSettings{r.urls.front(), r.token, r.timeout,
                                                          r.tls_insecure, r.tls_ca_file}),
                              r.per_minute);
        break;
      case Type::kAlertmanager: {
        alerts::AlertmanagerSettings am;
        am.urls = r.urls;
        am.resend_interval = r.resend_interval;
        am.timeout = r.timeout;
        am.bearer_token = r.token;
        am.tls_insecure = r.tls_insecure;
        am.tls_ca_file = r.tls_ca_file;
        auto* metrics = metrics_.get();
        std::string name = r.name;
        // Firing alerts are re-sent every resend_interval anyway, so a pusher
        // may be replaced on reload without losing anything.
        pushers[r.name] = std::make_unique<alerts::AlertmanagerPusher>(
            loop_, curl_.get(), am,
            [metrics, name](const std::string& url, bool ok, const std::string& detail) {
              metrics->alertmanager_push(name, url, ok);
              if (!ok) spdlog::warn("receiver {}: push failed: {}", name, detail);
            });
        break;
      }
      case Type::kLog:
        outbox_->add_receiver(r.name, alerts::make_log_notifier(loop_), r.per_minute);
        break;
    }
  }
  for (auto& [name, p] : pushers_) p->stop();
  pushers_ = std::move(pushers);
  // Alerts already announced to a (new) Alertmanager receiver are pushed again.
  for (const auto& id : engine_.ids()) {
    auto v = engine_.view(id);
    if (!v || !v->firing) continue;
    for (int route : router_->match(alert_labels(id), std::nullopt)) {
      for (const auto& name : router_->routes()[static_cast<size_t>(route)].receivers) {
        auto p = pushers_.find(name);
        if (p == pushers_.end()) continue;
        p->second->firing(id, alert_labels(id), {{"summary", v->summary}}, to_ms(v->since),
                          alert_view(id, false).link);
      }
    }
  }
  receivers_ = std::move(receivers);
  configure_silences(cfg);
  arm_flush();
}

alerts::Labels App::alert_labels(const std::string& id) {
  auto v = engine_.view(id);
  alerts::Labels l;
  if (!v) return l;
  for (const auto& [k, val] : v->check->labels) l[k] = val;
  l["check"] = v->check->id;
  l["target"] = v->check->target;
  l["type"] = v->check->type;
  l["tenant"] = v->check->tenant;
  std::string sev(probes::state_name(v->hard_state));
  for (char& ch : sev) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  l["severity"] = sev;
  return l;
}

void App::handle_events(const alerts::AlertEngine::Effects& fx) {
  for (const auto& id : fx.run_now) scheduler_->run_now(id);
  if (fx.events.empty()) return;
  auto now = alerts::Clock::now();
  for (const auto& e : fx.events) {
    auto v = engine_.view(e.id);
    switch (e.kind) {
      case alerts::AlertEvent::Kind::kFiring:
        spdlog::warn("alert firing: {} {} ({})", e.id, probes::state_name(v->hard_state),
                     v->summary);
        // A new problem or a new severity: an acknowledgement of the old one no longer holds.
        acks_.erase(e.id);
        router_->firing(e.id, alert_labels(e.id), now);
        break;
      case alerts::AlertEvent::Kind::kResolved:
        spdlog::info("alert resolved: {}", e.id);
        // The acknowledgement stays until the next problem, so the resolved
        // message can still say who took care of it.
        router_->resolved(e.id, now);
        break;
      case alerts::AlertEvent::Kind::kFlappingStarted: notify_flapping(e.id, true); break;
      case alerts::AlertEvent::Kind::kFlappingStopped: notify_flapping(e.id, false); break;
    }
  }
  state_dirty_ = true;
  arm_flush();
}

void App::arm_flush() {
  if (!flush_timer_) return;
  auto next = router_->next_due();
  if (!next) {
    flush_timer_->stop();
    return;
  }
  auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(*next - alerts::Clock::now());
  // Flushes are kFlushSpacingMs apart at least: alerts that fire across one
  // check interval come due a few ms apart, and each flush saves the whole
  // state (600 groups flushed one by one blocked the loop for a second).
  // Also never 0 ms: a 0 ms timer re-armed from its own callback runs again
  // in the same loop pass, without polling I/O.
  const uint64_t now = uv_now(loop_);
  const int64_t spacing = last_flush_ms_ + kFlushSpacingMs > now
                              ? static_cast<int64_t>(last_flush_ms_ + kFlushSpacingMs - now)
                              : 1;
  flush_timer_->start(static_cast<uint64_t>(std::max<int64_t>(spacing, delay.count())));
}

alerts::AlertView App::alert_view(const std::string& id, bool resolved) {
  alerts::AlertView a;
  auto v = engine_.view(id);
  a.check = id;
  if (!v) return a;
  a.target = v->check->target;
  a.type = v->check->type;
  a.state = std::string(probes::state_name(resolved ? probes::State::kOk : v->hard_state));
  a.summary = v->summary;
  a.since = v->since;
  if (!resolved) a.affected = engine_.affected_children(id);
  a.description = v->check->description;
  if (!config_->alerting.link.empty()) {
    std::string link = config_->alerting.link;
    const std::pair<std::string, std::string> vars[] = {
        {"{check}", id}, {"{target}", a.target}, {"{tenant}", v->check->tenant}};
    for (const auto& [key, value] : vars) {
      for (size_t p; (p = link.find(key)) != std::string::npos;) link.replace(p, key.size(), value);
    }
    a.link = link;
  }
  if (auto ack = acks_.find(id); ack != acks_.end()) {
    a.acked_by = ack->second.by;
    a.ack_comment = ack->second.comment;
  } else if (!resolved && v->firing) {
    a.ack_link = ack_link(id);
  }
  return a;
}

std::string App::ack_link(const std::string& id) {
  const auto& api = config_->api;
  auto v = engine_.view(id);
  if (api.external_url.empty() || ack_key_.empty() || !v) return "";
  int64_t expires = std::chrono::duration_cast<std::chrono::seconds>(
                        (alerts::Clock::now() + api.ack_link_ttl).time_since_epoch())
                        .count();
  // The link names the problem, not only the check: it cannot acknowledge a
  // later problem of the same check.
  std::string payload = id + "\n" + std::to_string(to_ms(v->since));
  return api.external_url + "/ack?t=" + exporters::sign_token(ack_key_, payload, expires);
}

App::AckError App::acknowledge(const std::string& id, const std::string& by,
                               const std::string& comment, const std::string& channel,
                               std::optional<int64_t> since_ms) {
  auto v = engine_.view(id);
  if (!v) return AckError::kUnknownCheck;
  if (!v->firing) return AckError::kNotFiring;
  if (since_ms && *since_ms != to_ms(v->since)) return AckError::kStale;
  acks_[id] = Ack{by, comment, now_ms(), to_ms(v->since)};
  spdlog::info("alert {} acknowledged by {} via {}{}{}", id, by, channel,
               comment.empty() ? "" : ": ", comment);
  metrics_->acknowledged(channel);
  state_dirty_ = true;
  arm_flush();
  return AckError::kNone;
}

alerts::Router::Mute App::mute(const std::string& id) {
  alerts::Router::Mute m;
  m.acked = acks_.contains(id);
  // While blind, every alert is held: the guard's one message says why.
  if (blind_) {
    m.silenced = true;
    return m;
  }
  alerts::Labels labels = alert_labels(id);
  int64_t now = now_ms();
  m.silenced = silences_.silenced(labels, now) || in_maintenance(labels, now / 1000);
  return m;
}

bool App::in_maintenance(const alerts::Labels& labels, int64_t now_s) const {
  for (const auto& m : config_->maintenance) {
    if (!m.windows || !m.windows->active(now_s)) continue;
    if (std::all_of(m.matchers.begin(), m.matchers.end(),
                    [&](const alerts::Matcher& x) { return x.matches(labels); }))
      return true;
  }
  return false;
}

void App::configure_silences(const config::Config& cfg) {
  std::vector<alerts::Silence> configured;
  for (const auto& m : cfg.maintenance) {
    if (m.windows) continue;  // recurring: evaluated by in_maintenance
    alerts::Silence s;
    s.id = "config:" + m.name;
    s.matchers = m.matchers;
    s.starts_at_ms = m.from_ms;
    s.ends_at_ms = m.until_ms;
    s.created_by = "config";
    s.comment = m.comment;
    s.from_config = true;
    configured.push_back(std::move(s));
  }
  silences_.set_config_silences(std::move(configured), now_ms());
  silences_changed();
}

void App::silences_changed() {
  int64_t now = now_ms();
  silences_.gc(now);
  if (silences_.version() != silences_version_) {
    silences_version_ = silences_.version();
    std::string error;
    if (!silences_path_.empty() && !silences_.save(silences_path_, &error)) {
      metrics_->state_write_failed();
      spdlog::error("cannot save silences: {}", error);
    }
  }
  auto c = silences_.counts(now);
  size_t active = c.active, pending = c.pending;
  for (const auto& m : config_ ? config_->maintenance : std::vector<config::MaintenanceConfig>{}) {
    if (!m.windows) continue;
    m.windows->active(now / 1000) ? ++active : ++pending;
  }
  metrics_->set_silences(pending, active, c.expired);
  // Alerts held back by a silence that ended are news now.
  router_->wake(alerts::Clock::now());
  arm_flush();
  arm_silence_timer();
}

void App::arm_silence_timer() {
  if (!silence_timer_) return;
  int64_t now = now_ms();
  std::optional<int64_t> next = silences_.next_change(now);
  for (const auto& m : config_ ? config_->maintenance : std::vector<config::MaintenanceConfig>{}) {
    if (!m.windows) continue;
    int64_t change = m.windows->next_change(now / 1000) * 1000;
    if (!next || change < *next) next = change;
  }
  if (!next) {
    silence_timer_->stop();
    return;
  }
  silence_timer_->start(static_cast<uint64_t>(std::max<int64_t>(0, *next - now)));
}

void App::update_guard(const std::string& id, bool success) {
  if (success)
    failing_.erase(id);
  else
    failing_.insert(id);
  const auto& g = config_->guard;
  if (g.receivers.empty()) return;
  bool guard_down =
      !g.checks.empty() && std::all_of(g.checks.begin(), g.checks.end(),
                                       [&](const auto& c) { return failing_.contains(c); });
  size_t total = checks_.size();
  bool mass = g.blind_percent > 0 && total >= static_cast<size_t>(g.min_checks) &&
              failing_.size() * 100 >= static_cast<size_t>(g.blind_percent) * total;
  if (!blind_ && (guard_down || mass)) {
    set_blind(true, guard_down ? fmt::format("guard checks {} fail", fmt::join(g.checks, ", "))
                               : fmt::format("{} of {} checks fail", failing_.size(), total));
  } else if (blind_ && !guard_down &&
             (g.blind_percent == 0 ||
              failing_.size() * 100 <
                  static_cast<size_t>(std::max(0, g.blind_percent - 10)) * total)) {
    // Ten points of hysteresis, so a ratio hovering at the threshold does not flap.
    set_blind(false, "");
  }
}

void App::set_blind(bool blind, const std::string& reason) {
  blind_ = blind;
  metrics_->set_blind(blind);
  if (blind) {
    ++blind_episodes_;
    spdlog::error("monitoring blind: {}; holding alerts back", reason);
  } else {
    spdlog::warn("monitoring can see again; releasing held alerts");
  }
  size_t held = 0;
  for (const auto& id : engine_.ids()) {
    auto v = engine_.view(id);
    if (v && v->hard_state != probes::State::kOk && !v->firing) ++held;
  }
  // The all-clear belongs to the thread of the episode's first message.
  if (blind || blind_thread_.empty())
    blind_thread_ = fmt::format("blind.{}.{}", blind_episodes_, to_ms(alerts::Clock::now()));
  for (const auto& name : config_->guard.receivers) {
    const auto* r = find_receiver(name);
    if (!r || r->type == config::ReceiverConfig::Type::kAlertmanager) continue;
    enqueue(*r, blind_thread_, blind ? 0 : 1, blind ? "blind" : "blind_resolved", {},
            alerts::render_blind(blind, reason, held, r->templates));
  }
  if (blind) {
    guard_release_->stop();
    return;
  }
  // Failing checks are run again at once, and held alerts are released only
  // once those results can have arrived: what recovered with the vantage
  // point then resolves silently instead of being announced late.
  config::Millis hold{1000};
  for (const auto& c : config_->checks)
    hold = std::max(hold, c.timeout + c.state.retry_interval * (c.state.recover_after - 1));
  hold = std::min<config::Millis>(hold + std::chrono::seconds(1), std::chrono::minutes(5));
  for (const auto& id : failing_) scheduler_->run_now(id);
  guard_release_->start(static_cast<uint64_t>(hold.count()));
}

void App::enqueue(const config::ReceiverConfig& receiver, const std::string& thread,
                  uint64_t number, const std::string& kind, std::vector<std::string> ids,
                  alerts::Rendered text) {
  const std::string& host =
      config_->alerting.hostname.empty() ? hostname_ : config_->alerting.hostname;
  alerts::Notification n;
  n.receiver = receiver.name;
  n.thread_key = receiver.name + "/" + thread;
  n.message_id = fmt::format("<wacht.{}.{}.{}@{}>", thread, number, receiver.name, host);
  if (number > 0) n.in_reply_to = fmt::format("<wacht.{}.0.{}@{}>", thread, receiver.name, host);
  if (!receiver.rotation.empty()) {
    const auto& oc = config_->oncall;
    int64_t now = now_ms() / 1000;
    if (auto shift = oc.rotations.at(receiver.rotation)->at(now)) {
      n.to.push_back(oc.people.at(shift->person).email);
    } else if (receiver.to.empty()) {
      spdlog::error("receiver {}: nobody is on call in rotation {} and 'to' is empty",
                    receiver.name, receiver.rotation);
    }
  }
  n.subject = std::move(text.subject);
  n.body = std::move(text.body);
  n.kind = kind;
  n.alert_ids = std::move(ids);
  outbox_->enqueue(std::move(n));
}

void App::deliver(const alerts::Router::Flush& f) {
  auto now = alerts::Clock::now();
  alerts::MessageView m;
  m.now = now;
  m.level = f.level;
  m.digest = f.digest;
  for (const auto& id : f.firing) m.firing.push_back(alert_view(id, false));
  for (const auto& id : f.resolved) m.resolved.push_back(alert_view(id, true));
  std::vector<std::string> ids = f.firing;
  ids.insert(ids.end(), f.resolved.begin(), f.resolved.end());
  if (ids.empty()) return;
  const auto& route = router_->routes()[static_cast<size_t>(f.route)];
  if (f.level > 0) {
    spdlog::warn("{}: not acknowledged, escalating to level {}: {}", route.name, f.level + 1,
                 fmt::join(f.receivers, ", "));
    metrics_->escalated(route.name);
  }
  if (f.digest) {
    spdlog::warn("{}: storm, {} changes in one digest", route.name, ids.size());
    metrics_->digest_sent(route.name);
  }
  auto first = engine_.view(ids.front());
  m.tenant = first ? first->check->tenant : "";
  for (const auto& t : config_->tenants)
    if (t.id == m.tenant) m.tenant_name = t.name;
  const std::string kind = f.firing.empty() ? "resolved" : "firing";
  for (const auto& name : f.receivers) {
    const auto* r = find_receiver(name);
    if (!r) continue;
    using Type = config::ReceiverConfig::Type;
    if (r->type == Type::kAlertmanager) {
      auto& pusher = *pushers_.at(name);
      for (const auto& a : m.firing) {
        pusher.firing(a.check, alert_labels(a.check),
                      {{"summary", a.summary}, {"description", a.description}}, to_ms(a.since),
                      a.link);
      }
      for (const auto& a : m.resolved) pusher.resolved(a.check, to_ms(now));
      continue;
    }
    alerts::Rendered text;
    if (r->type == Type::kWebhook) {
      alerts::WebhookMessage w;
      w.receiver = name;
      w.group_key = f.key;
      w.external_url = config_->api.external_url;
      w.group_labels = f.group_labels;
      auto add = [&](const alerts::AlertView& a, bool resolved) {
        alerts::Labels annotations{{"summary", a.summary}};
        if (!a.description.empty()) annotations["description"] = a.description;
        if (!a.acked_by.empty()) annotations["acknowledged_by"] = a.acked_by;
        w.alerts.push_back({alert_labels(a.check), annotations, to_ms(a.since),
                            resolved ? to_ms(now) : 0, a.link});
      };
      for (const auto& a : m.firing) add(a, false);
      for (const auto& a : m.resolved) add(a, true);
      text.body = alerts::webhook_payload(w);
      text.subject = alerts::render(m, r->templates).subject;
    } else {
      text = alerts::render(m, r->templates);
    }
    enqueue(*r, f.thread, f.number, kind, ids, std::move(text));
  }
}

void App::flush_groups() {
  last_flush_ms_ = uv_now(loop_);
  auto flushes =
      router_->due(alerts::Clock::now(), [this](const std::string& id) { return mute(id); });
  for (const auto& f : flushes) deliver(f);
  // The outbox holds the messages now; the snapshot must say they were sent
  // before anything else happens, or a crash would announce them twice.
  if (!flushes.empty()) save_state();
  arm_flush();
}

const config::ReceiverConfig* App::find_receiver(const std::string& name) const {
  for (const auto& r : receivers_)
    if (r.name == name) return &r;
  return nullptr;
}

void App::notify_flapping(const std::string& id, bool started) {
  auto v = engine_.view(id);
  if (!v) return;
  spdlog::warn("check {} {} flapping", id, started ? "started" : "stopped");
  if (mute(id).silenced) return;
  auto routes = router_->match(alert_labels(id), alerts::Clock::now());
  if (routes.empty()) return;
  const auto& route = router_->routes()[static_cast<size_t>(routes.front())];
  alerts::AlertView a;
  a.check = id;
  a.target = v->check->target;
  a.type = v->check->type;
  a.state = std::string(probes::state_name(v->state));
  a.summary = v->summary;
  for (const auto& name : route.receivers) {
    const auto* r = find_receiver(name);
    if (!r || r->type == config::ReceiverConfig::Type::kAlertmanager) continue;
    alerts::Rendered text = alerts::render_flapping(a, v->check->tenant, started, r->templates);
    // The time keeps the Message-ID unique across restarts, where the counter starts again.
    enqueue(*r, fmt::format("flap.{}.{}.{}", id, to_ms(alerts::Clock::now()), ++flap_notices_), 0,
            started ? "flapping" : "flapping_stopped", {id}, std::move(text));
  }
}

}  // namespace wacht
