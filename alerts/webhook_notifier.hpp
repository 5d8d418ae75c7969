#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "alerts/notification.hpp"

typedef struct uv_loop_s uv_loop_t;
namespace wacht::runtime {
class CurlMulti;
}

namespace wacht::alerts {

using Labels = std::map<std::string, std::string>;  // as in router.hpp

struct WebhookSettings {
  std::string url;           // http:// or https://; only scheme, host and port appear in details
  std::string bearer_token;  // read from a file by the config loader; empty = none; never logged
  std::chrono::milliseconds timeout{10000};
  bool tls_insecure = false;
  std::string tls_ca_file;
  // Of the receiver's response: reading stops there (only 200 bytes are
  // quoted anyway), and a 2xx status still counts as delivered.
  int64_t max_body_bytes = 64 * 1024;
};

// POSTs Notification::body as application/json with User-Agent wacht/<version>
// and Idempotency-Key: <message_id> (omitted if empty), so a receiver can drop
// the repeat that follows a crash. Redirects are not followed (the token would
// go along). A 2xx status is kDelivered; 408, 429, 5xx, any other status, a
// connection or TLS failure or a timeout is kRetry; any other 4xx is
// kRejected. Details name scheme, host and port (the URL path of many chat
// services is itself a secret), the status and the first 200 bytes of the
// response, never the token. The notifier must be destroyed before `curl`.
std::unique_ptr<Notifier> make_webhook_notifier(uv_loop_t* loop, runtime::CurlMulti* curl,
                                                WebhookSettings settings);

// One alert of Alertmanager's webhook payload.
struct WebhookAlert {
  Labels labels;
  Labels annotations;
  int64_t starts_at_ms = 0;  // unix ms
  int64_t ends_at_ms = 0;    // unix ms; 0 while firing, set once resolved
  std::string generator_url;
};

struct WebhookMessage {
  std::string receiver;
  std::string group_key;
  std::string external_url;
  Labels group_labels;
  std::vector<WebhookAlert> alerts;
};

// Alertmanager's webhook JSON (version "4"), so receivers written for
// Alertmanager work unchanged: status "firing" while any alert fires, common
// labels and annotations are those every alert has with the same value, a
// firing alert's endsAt is "0001-01-01T00:00:00Z" as Alertmanager sends it.
// Invalid UTF-8 in labels becomes U+FFFD.
std::string webhook_payload(const WebhookMessage& m);

// Alertmanager's fingerprint of a label set (FNV-1a 64 over the sorted
// labels), as 16 hex digits: the same alert has the same fingerprint here, in
// Alertmanager and in receivers.
std::string alert_fingerprint(const Labels& labels);

// "2025-11-26T02:50:47.12Z": RFC 3339 in UTC as Go's time.RFC3339Nano writes
// it, at millisecond precision.
std::string rfc3339(int64_t unix_ms);

}  // namespace wacht::alerts
