#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "alerts/notification.hpp"

typedef struct uv_loop_s uv_loop_t;

namespace wacht::alerts {

// What the outbox reports, so the daemon can turn it into metrics and logs
// without alerts/ depending on exporters/. All calls on the loop thread.
struct OutboxObserver {
  // result: "delivered", "retry", "rejected", "expired" (dead letter after max_age)
  std::function<void(const std::string& receiver, const std::string& result)> on_attempt;
  std::function<void(const Notification&, const std::string& reason)> on_dead_letter;
  // A journal write or fsync failed (disk full, I/O error); the outbox keeps
  // the entry in memory and retries the write.
  std::function<void(const std::string& error)> on_journal_error;
};

struct OutboxOptions {
  std::string dir;                                      // the state directory
  std::chrono::milliseconds max_age{24 * 3600 * 1000};  // then dead-letter
  std::chrono::milliseconds initial_backoff{5000};
  std::chrono::milliseconds max_backoff{600000};
  // The period add_receiver's per_minute limit counts sends over (a sliding
  // window); only tests shorten it.
  std::chrono::milliseconds rate_limit_window{60000};
  // Returns unix ms; tests pass a fake.
  std::function<int64_t()> now_ms;
};

// The durable outbox: every notification is appended to an fsync'd journal
// in the state directory before any send; deliveries are retried with
// exponential backoff and jitter until max_age; order is kept per thread key;
// after a crash or restart pending notifications are sent again (with the same
// Message-ID), delivered ones are not; a truncated or corrupt journal tail is
// skipped without losing intact entries; the journal is compacted.
class Outbox {
 public:
  Outbox(uv_loop_t* loop, OutboxOptions options, OutboxObserver observer);
  ~Outbox();

  // Replays the journal. Returns false (with `error`) only if the directory or
  // journal cannot be opened at all; corrupt entries are skipped and counted.
  bool open(std::string* error);
  // Registers the transport for a receiver name. `per_minute` limits how many
  // notifications it is sent per minute (0 = unlimited).
  void add_receiver(const std::string& name, std::unique_ptr<Notifier> notifier,
                    int per_minute = 0);
  // Queues a notification: assigns seq (and created_ms if 0), makes it
  // durable, then delivers. Notifications for receivers never registered wait.
  void enqueue(Notification n);
  // Writes and fsyncs the records buffered in this loop iteration now instead
  // of on the next tick. Returns true when everything enqueued so far is
  // durable. Callers that record elsewhere that a notification was sent (the
  // alert state snapshot) call it first, so that a crash in between can
  // never leave a notification marked sent but missing from the journal.
  bool sync();
  // Stops timers and in-flight sends; pending entries stay in the journal.
  void stop();

  size_t pending() const;
  double oldest_age_seconds() const;
  size_t corrupt_entries_skipped() const;
  // Pending notifications, oldest first (for status pages and tests).
  std::vector<Notification> pending_list() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wacht::alerts
