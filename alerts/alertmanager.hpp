#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "alerts/webhook_notifier.hpp"

typedef struct uv_loop_s uv_loop_t;
namespace wacht::runtime {
class CurlMulti;
}

namespace wacht::alerts {

struct AlertmanagerSettings {
  // Base URLs (http://127.0.0.1:9093, or with a route prefix). Several are the
  // members of one cluster: each gets every alert, as from Prometheus.
  std::vector<std::string> urls;
  std::chrono::milliseconds resend_interval{60000};
  std::chrono::milliseconds timeout{10000};
  std::string bearer_token;  // read from a file by the config loader; empty = none; never logged
  bool tls_insecure = false;
  std::string tls_ca_file;
  // Only tests shorten these.
  std::chrono::milliseconds debounce{1000};
  std::chrono::milliseconds resolved_retention{15 * 60 * 1000};
};

// Pushes wacht's alerts to Alertmanager's API v2 the way Prometheus' notifier
// does: the whole current set is POSTed as one JSON array to
// <url>/api/v2/alerts after each change (one POST per burst: changes within
// `debounce` of the first are sent together) and every resend_interval while
// the set is not empty. A firing alert carries endsAt = now +
// 4 * resend_interval, so Alertmanager resolves it by itself if wachtd dies; a
// resolved alert carries its real endsAt and is sent for resolved_retention
// after it resolved, then dropped.
//
// Each URL is sent on its own: at most one request in flight per URL, a
// change meanwhile sends the then current set once that request ends, and a
// failed URL is tried again after min(resend_interval, 5 s) without delaying
// the others. Everything runs on the loop; nothing blocks. The pusher must be
// destroyed before `curl`.
class AlertmanagerPusher {
 public:
  // One call per finished request, on the loop thread; `url` as configured,
  // `detail` ("http://host:port: HTTP 400: <response>") never holds the token.
  // It may call stop() but must not destroy the pusher.
  using Observer = std::function<void(const std::string& url, bool ok, const std::string& detail)>;

  AlertmanagerPusher(uv_loop_t* loop, runtime::CurlMulti* curl, AlertmanagerSettings settings,
                     Observer observer = nullptr);
  ~AlertmanagerPusher();
  AlertmanagerPusher(const AlertmanagerPusher&) = delete;
  AlertmanagerPusher& operator=(const AlertmanagerPusher&) = delete;

  // `key` names the alert for resolved() (a check id). Calling it again for a
  // firing key updates annotations and generator URL; new labels make a new
  // alert in Alertmanager, so the old label set is resolved now.
  void firing(const std::string& key, Labels labels, Labels annotations, int64_t starts_at_ms,
              std::string generator_url);
  // No-op unless `key` fires. `ends_at_ms` is unix ms.
  void resolved(const std::string& key, int64_t ends_at_ms);
  // Cancels requests in flight and sends nothing more; for shutdown.
  void stop();
  // Alerts being sent: firing ones and recently resolved ones.
  size_t size() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wacht::alerts
