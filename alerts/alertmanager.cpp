#include "alerts/alertmanager.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <exception>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/timer.hpp"

namespace wacht::alerts {

namespace {

// A failed URL is tried again this soon (at the latest with the next resend),
// so an Alertmanager that restarts has the alerts within seconds.
constexpr std::chrono::milliseconds kRetryAfterFailure{5000};

int64_t unix_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Alert {
  Labels labels;
  Labels annotations;
  int64_t starts_at_ms = 0;
  int64_t ends_at_ms = 0;  // 0 while firing
  std::string generator_url;
  uint64_t drop_at = 0;  // loop time (ms) when a resolved alert stops being sent
};

}  // namespace

struct AlertmanagerPusher::Impl {
  struct Target {
    Target(Impl* impl, std::string u, std::unique_ptr<Notifier> s)
        : url(std::move(u)),
          sender(std::move(s)),
          retry(impl->loop, [impl, this] { impl->guarded([&] { impl->push(*this); }); }) {}
    std::string url;  // as configured
    std::unique_ptr<Notifier> sender;
    runtime::Timer retry;
    bool in_flight = false;
    bool queued = false;  // a newer set waits for the request in flight
  };

  uv_loop_t* loop;
  AlertmanagerSettings settings;
  Observer observer;
  std::map<std::string, Alert> firing;  // by key
  std::vector<Alert> resolved;          // in the order they resolved
  std::vector<std::unique_ptr<Target>> targets;
  runtime::Timer debounce;
  runtime::Timer resend;
  bool stopped = false;

  Impl(uv_loop_t* l, runtime::CurlMulti* curl, AlertmanagerSettings s, Observer o)
      : loop(l),
        settings(std::move(s)),
        observer(std::move(o)),
        debounce(l, [this] { guarded([this] { flush(); }); }),
        resend(l, [this] { guarded([this] { flush(); }); }) {
    for (const std::string& url : settings.urls) {
      std::string base = url;
      while (!base.empty() && base.back() == '/') base.pop_back();
      WebhookSettings w;
      w.url = base + "/api/v2/alerts";
      w.bearer_token = settings.bearer_token;
      w.timeout = settings.timeout;
      w.tls_insecure = settings.tls_insecure;
      w.tls_ca_file = settings.tls_ca_file;
      targets.push_back(std::make_unique<Target>(this, url, make_webhook_notifier(loop, curl, w)));
    }
  }

  size_t size() const { return firing.size() + resolved.size(); }

  // Timer callbacks run inside libuv, which an exception must not unwind.
  template <typename F>
  static void guarded(F&& f) noexcept {
    try {
      f();
    } catch (const std::exception& e) {
      spdlog::error("alertmanager push: {}", e.what());
    }
  }

  void changed() {
    if (!stopped && !debounce.active())
      debounce.start(static_cast<uint64_t>(settings.debounce.count()));
  }

  // Ends an alert: it is sent as resolved for the retention period.
  void retire(Alert a, int64_t ends_at_ms) {
    // Alertmanager refuses an alert that ends before it starts.
    a.ends_at_ms = std::max(ends_at_ms, a.starts_at_ms);
    a.drop_at = uv_now(loop) + static_cast<uint64_t>(settings.resolved_retention.count());
    resolved.push_back(std::move(a));
  }

  void flush() {
    if (stopped) return;
    debounce.stop();
    resend.stop();
    std::erase_if(resolved, [now = uv_now(loop)](const Alert& a) { return a.drop_at <= now; });
    if (size() == 0) return;
    for (auto& t : targets) push(*t);
    resend.start(static_cast<uint64_t>(settings.resend_interval.count()));
  }

  void push(Target& t) {
    if (stopped || size() == 0) return;
    if (t.in_flight) {
      t.queued = true;
      return;
    }
    t.retry.stop();
    Notification n;
    n.body = snapshot();
    t.sender->send(n, [this, &t](Delivery d, const std::string& detail) { done(t, d, detail); });
    t.in_flight = true;  // after send(), which may throw; its result comes later
  }

  void done(Target& t, Delivery d, const std::string& detail) {
    t.in_flight = false;
    const bool ok = d == Delivery::kDelivered;
    if (t.queued) {
      t.queued = false;
      push(t);
    } else if (!ok) {
      t.retry.start(
          static_cast<uint64_t>(std::min(settings.resend_interval, kRetryAfterFailure).count()));
    }
    if (observer) observer(t.url, ok, detail);  // last: it may stop the pusher
  }

  // The JSON array of postable alerts, rendered when sent so that endsAt of
  // firing alerts counts from now.
  std::string snapshot() const {
    const int64_t now = unix_now_ms();
    const int64_t firing_ends = now + 4 * settings.resend_interval.count();
    nlohmann::json out = nlohmann::json::array();
    auto add = [&out](const Alert& a, int64_t ends_at_ms) {
      nlohmann::json alert = {
          {"labels", a.labels},
          {"annotations", a.annotations},
          {"startsAt", rfc3339(a.starts_at_ms)},
          {"endsAt", rfc3339(std::max(ends_at_ms, a.starts_at_ms))},
      };
      if (!a.generator_url.empty()) alert["generatorURL"] = a.generator_url;
      out.push_back(std::move(alert));
    };
    for (const Alert& a : resolved) add(a, a.ends_at_ms);
    for (const auto& [key, a] : firing) add(a, firing_ends);
    return out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
};

AlertmanagerPusher::AlertmanagerPusher(uv_loop_t* loop, runtime::CurlMulti* curl,
                                       AlertmanagerSettings settings, Observer observer)
    : impl_(std::make_unique<Impl>(loop, curl, std::move(settings), std::move(observer))) {}

AlertmanagerPusher::~AlertmanagerPusher() { stop(); }

void AlertmanagerPusher::firing(const std::string& key, Labels labels, Labels annotations,
                                int64_t starts_at_ms, std::string generator_url) {
  Impl& m = *impl_;
  auto it = m.firing.find(key);
  if (it != m.firing.end()) {
    Alert& a = it->second;
    if (a.labels == labels) {
      // The same alert goes on: its start stays.
      if (a.annotations == annotations && a.generator_url == generator_url) return;
      a.annotations = std::move(annotations);
      a.generator_url = std::move(generator_url);
      m.changed();
      return;
    }
    m.retire(std::move(a), unix_now_ms());
    m.firing.erase(it);
  }
  // Fires again within the retention: one array must not hold both.
  std::erase_if(m.resolved, [&](const Alert& a) { return a.labels == labels; });
  m.firing[key] = Alert{
      std::move(labels), std::move(annotations), starts_at_ms, 0, std::move(generator_url), 0};
  m.changed();
}

void AlertmanagerPusher::resolved(const std::string& key, int64_t ends_at_ms) {
  Impl& m = *impl_;
  auto it = m.firing.find(key);
  if (it == m.firing.end()) return;
  m.retire(std::move(it->second), ends_at_ms);
  m.firing.erase(it);
  m.changed();
}

void AlertmanagerPusher::stop() {
  Impl& m = *impl_;
  m.stopped = true;
  m.debounce.stop();
  m.resend.stop();
  for (auto& t : m.targets) {
    t->retry.stop();
    t->sender->cancel();
    t->in_flight = false;
    t->queued = false;
  }
}

size_t AlertmanagerPusher::size() const { return impl_->size(); }

}  // namespace wacht::alerts
