#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace wacht::alerts {

// One message to one receiver, fully rendered when it is queued: the durable
// outbox stores exactly this and a restart sends exactly this. Plain data,
// serialised to the journal as JSON.
struct Notification {
  uint64_t seq = 0;      // assigned by the outbox, increasing, never reused
  std::string receiver;  // receiver name from the config
  // Addresses on top of the receiver's own: the on-call person when the
  // message was queued, so a handover later does not redirect it.
  std::vector<std::string> to;
  // Notifications with the same thread key are delivered in the order they
  // were queued (the firing mail before its resolved mail); different keys
  // are independent.
  std::string thread_key;
  std::string message_id;   // "<...@host>", unique; the idempotency key
  std::string in_reply_to;  // Message-ID of the thread's first mail, or empty
  std::string subject;      // UTF-8
  std::string body;         // UTF-8 plain text
  int64_t created_ms = 0;   // unix ms when queued
  // Structured copy for receivers that send JSON (webhook, Alertmanager) and
  // for restoring alert state on replay: "firing" or "resolved" etc.
  std::string kind;
  std::vector<std::string> alert_ids;  // checks this notification is about
};

enum class Delivery { kDelivered, kRetry, kRejected };

// A receiver's transport (SMTP, log, webhook, ...). The outbox owns retries,
// backoff and durability; a notifier makes one attempt per send().
class Notifier {
 public:
  using Done = std::function<void(Delivery, std::string detail)>;
  virtual ~Notifier() = default;
  // One delivery attempt; `done` fires exactly once, asynchronously on the
  // loop thread, unless cancel() comes first. At most one send at a time.
  virtual void send(const Notification& n, Done done) = 0;
  virtual void cancel() = 0;
};

}  // namespace wacht::alerts
