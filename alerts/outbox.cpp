#include "alerts/outbox.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <stdexcept>
#include <string_view>

#include "runtime/files.hpp"
#include "runtime/timer.hpp"

namespace wacht::alerts {

namespace {

// Insertion-ordered, so every record reads "op" first.
using json = nlohmann::ordered_json;

constexpr const char* kJournalName = "outbox.journal";
constexpr const char* kCompactName = "outbox.journal.compact";
// Compaction rewrites the journal once this many done records have piled up
// and obsolete records make up more than half of it: rare enough that the
// rewrite costs nothing, often enough that replay stays fast.
constexpr size_t kCompactMinDone = 1000;
// A failing journal write is retried quickly at first, because the usual
// cause (a full disk) is often fixed by an operator within seconds.
constexpr uint64_t kJournalRetryMinMs = 100;
constexpr uint64_t kJournalRetryMaxMs = 5000;

// CRC-32 (IEEE, as zlib and gzip compute it); the journal only needs it to
// recognise torn or damaged lines, which a few lines do without linking zlib.
constexpr std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}

uint32_t crc32(std::string_view data) {
  static constexpr auto kTable = make_crc_table();
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) c = kTable[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// One journal line: "<crc32 of the JSON, 8 hex digits> <JSON>\n". Invalid
// UTF-8 (a probe's garbage output in a body) is replaced, not thrown on:
// the notification must still be stored.
std::string record_line(const json& record) {
  std::string text = record.dump(-1, ' ', false, json::error_handler_t::replace);
  return fmt::format("{:08x} {}\n", crc32(text), text);
}

std::optional<json> parse_line(std::string_view line) {
  if (line.size() < 10 || line[8] != ' ') return std::nullopt;
  uint32_t expected = 0;
  for (char c : line.substr(0, 8)) {
    int digit = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (digit < 0) return std::nullopt;
    expected = expected << 4 | static_cast<uint32_t>(digit);
  }
  std::string_view text = line.substr(9);
  if (crc32(text) != expected) return std::nullopt;
  json record = json::parse(text, nullptr, false);
  if (record.is_discarded() || !record.is_object()) return std::nullopt;
  return record;
}

json to_json(const Notification& n) {
  return {{"seq", n.seq},
          {"receiver", n.receiver},
          {"to", n.to},
          {"thread_key", n.thread_key},
          {"message_id", n.message_id},
          {"in_reply_to", n.in_reply_to},
          {"subject", n.subject},
          {"body", n.body},
          {"created_ms", n.created_ms},
          {"kind", n.kind},
          {"alert_ids", n.alert_ids}};
}

// A number field of a record, which the journal only ever writes as an
// integer. get<>() would convert a float such as 1e300 with undefined
// behaviour, so a float makes the record malformed.
template <typename T>
T integer(const json& j) {
  if (!j.is_number_integer()) throw std::invalid_argument("not an integer");
  return j.get<T>();
}

// Sequence numbers count notifications from 1 and never come near 2^53; a
// larger one is a forged record, and one at 2^64-1 would wrap the counter so
// that the next notification took a number already in use.
constexpr uint64_t kMaxSeq = uint64_t{1} << 53;

uint64_t sequence(const json& j) {
  const auto v = integer<uint64_t>(j);
  if (v >= kMaxSeq) throw std::invalid_argument("sequence number out of range");
  return v;
}

// Throws json::exception on a malformed record; the caller counts it as corrupt.
Notification from_json(const json& j) {
  Notification n;
  n.seq = sequence(j.at("seq"));
  n.receiver = j.at("receiver").get<std::string>();
  n.to = j.value("to", std::vector<std::string>{});
  n.thread_key = j.value("thread_key", "");
  n.message_id = j.at("message_id").get<std::string>();
  n.in_reply_to = j.value("in_reply_to", "");
  n.subject = j.value("subject", "");
  n.body = j.value("body", "");
  n.created_ms = integer<int64_t>(j.at("created_ms"));
  n.kind = j.value("kind", "");
  n.alert_ids = j.value("alert_ids", std::vector<std::string>{});
  if (n.seq == 0) throw std::invalid_argument("seq 0");
  return n;
}

std::string errno_text(std::string_view what, const std::string& path) {
  return fmt::format("{} {}: {}", what, path, std::strerror(errno));
}

// write() until everything is written; a short write is retried so that only
// a real error (ENOSPC, EIO, EFBIG) fails.
bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      return false;
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Runs a callback that may throw from a libuv or curl callback, where an
// exception must not escape.
template <typename F>
void guarded(const char* where, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("outbox: exception in {}: {}", where, e.what());
  } catch (...) {
    spdlog::error("outbox: unknown exception in {}", where);
  }
}

}  // namespace

struct Outbox::Impl {
  struct Entry {
    Notification n;
    bool durable = false;     // its enqueue record is fsync'd: only then may it be sent
    int retries = 0;          // kRetry results so far, for the backoff
    uint64_t not_before = 0;  // monotonic ms (mono_ms()) of the next attempt
  };

  struct Receiver {
    std::unique_ptr<Notifier> notifier;  // null until add_receiver(): entries wait
    int per_minute = 0;
    std::deque<uint64_t> recent_sends;  // loop times of sends inside the rate window
    uint64_t in_flight = 0;             // seq being sent, 0 when idle
    std::map<uint64_t, Entry> queue;    // pending entries in seq order
  };

  Impl(uv_loop_t* loop, OutboxOptions options, OutboxObserver observer)
      : loop_(loop),
        options_(std::move(options)),
        observer_(std::move(observer)),
        rng_(std::random_device{}()),
        tick_(std::make_unique<runtime::Timer>(loop, [this] { on_tick(); })),
        wake_(std::make_unique<runtime::Timer>(loop, [this] { on_tick(); })),
        journal_retry_(std::make_unique<runtime::Timer>(loop, [this] { on_journal_retry(); })) {
    if (!options_.now_ms) {
      options_.now_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
      };
    }
    path_ = options_.dir + "/" + kJournalName;
  }

  // stop() throws only when memory or an observer callback fails; terminating
  // then beats returning with the loop's handles still open.
  ~Impl() {  // NOLINT(bugprone-exception-escape)
    stop();
    if (fd_ >= 0) ::close(fd_);
  }

  // --- journal ------------------------------------------------------------

  bool open(std::string* error) {
    auto fail = [&](std::string text) {
      if (error) *error = std::move(text);
      if (fd_ >= 0) ::close(fd_);
      fd_ = -1;
      return false;
    };
    if (fd_ >= 0) return fail("outbox already open");
    if (::mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(errno_text("cannot create", options_.dir));
    // A compaction that crashed before its rename left only a partial copy.
    ::unlink((options_.dir + "/" + kCompactName).c_str());
    struct stat st {};
    const bool created = ::stat(path_.c_str(), &st) != 0;
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) return fail(errno_text("cannot open", path_));
    // Two daemons on one state directory would send everything twice and
    // interleave their records.
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      return fail(errno == EWOULDBLOCK ? path_ + " is in use by another process"
                                       : errno_text("cannot lock", path_));
    }
    std::string content;
    if (!read_all(&content)) return fail(errno_text("cannot read", path_));
    replay(content);
    durable_size_ = static_cast<off_t>(content.size());
    if (!content.empty() && content.back() != '\n') {
      // A torn last record: cut it off so the next append starts a clean line.
      durable_size_ = static_cast<off_t>(content.rfind('\n') + 1);
      repair_tail_ = true;
      repair_tail();
    }
    if (created && !runtime::fsync_dir(options_.dir)) dir_sync_pending_ = true;
    size_t pending = pending_count();
    if (corrupt_ > 0) {
      spdlog::warn("outbox: {} damaged journal records skipped in {}", corrupt_, path_);
    }
    if (pending > 0) spdlog::info("outbox: {} undelivered notifications recovered", pending);
    kick();
    return true;
  }

  bool read_all(std::string* out) {
    char buf[65536];
    off_t offset = 0;
    for (;;) {
      ssize_t n = ::pread(fd_, buf, sizeof buf, offset);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return false;
      if (n == 0) return true;
      out->append(buf, static_cast<size_t>(n));
      offset += n;
    }
  }

  // Rebuilds the pending entries: enqueued minus done. A record that fails
  // its checksum or does not parse is skipped alone, so the damage of a torn
  // write or a bad sector never costs the intact records around it.
  void replay(std::string_view content) {
    size_t pos = 0;
    while (pos < content.size()) {
      size_t nl = content.find('\n', pos);
      if (nl == std::string_view::npos) {
        ++corrupt_;  // the torn tail of a write that never completed
        break;
      }
      std::string_view line = content.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty()) continue;  // the separator written after a failed write
      std::optional<json> record = parse_line(line);
      if (!record || !apply(*record)) {
        ++corrupt_;
        continue;
      }
      ++records_in_file_;
    }
  }

  bool apply(const json& record) {
    try {
      const std::string op = record.at("op").get<std::string>();
      if (op == "enqueue") {
        Notification n = from_json(record.at("n"));
        next_seq_ = std::max(next_seq_, n.seq + 1);
        uint64_t seq = n.seq;
        std::string receiver = n.receiver;
        journal_ids_.insert(n.message_id);
        // emplace keeps the first copy: a record repeated after a failed
        // fsync is the same notification.
        receivers_[receiver].queue.emplace(seq, Entry{std::move(n), true});
      } else if (op == "done") {
        uint64_t seq = sequence(record.at("seq"));
        next_seq_ = std::max(next_seq_, seq + 1);
        for (auto& [name, r] : receivers_) r.queue.erase(seq);
        ++done_in_file_;
      } else if (op == "meta") {
        next_seq_ = std::max(next_seq_, sequence(record.at("next_seq")));
      } else {
        return false;
      }
      return true;
    } catch (const json::exception&) {
      return false;
    } catch (const std::invalid_argument&) {
      return false;
    }
  }

  void append(const json& record) {
    unwritten_ += record_line(record);
    ++unwritten_records_;
  }

  void append_done(uint64_t seq, const char* result) {
    append({{"op", "done"}, {"seq", seq}, {"result", result}});
    ++unwritten_done_;
  }

  // Writes and fsyncs every buffered record in one go (one fdatasync per loop
  // iteration however many notifications were queued); only then do the
  // entries they enqueue become sendable.
  void flush() {
    if (unwritten_.empty() || fd_ < 0) return;
    repair_tail();
    // If the partial record of a failed write could not be cut off, a newline
    // ends it so that it fails its checksum alone.
    std::string data = repair_tail_ ? "\n" + unwritten_ : unwritten_;
    if (!write_all(fd_, data) || ::fdatasync(fd_) != 0) {
      journal_failed(errno_text("cannot write", path_));
      return;
    }
    if (dir_sync_pending_) {
      if (!runtime::fsync_dir(options_.dir)) {
        journal_failed(errno_text("cannot sync directory", options_.dir));
        return;
      }
      dir_sync_pending_ = false;
    }
    struct stat st {};
    durable_size_ = ::fstat(fd_, &st) == 0 ? st.st_size : durable_size_ + data.size();
    repair_tail_ = false;
    records_in_file_ += unwritten_records_;
    done_in_file_ += unwritten_done_;
    unwritten_.clear();
    unwritten_records_ = unwritten_done_ = 0;
    for (const auto& [receiver, seq] : undurable_) {
      auto r = receivers_.find(receiver);
      if (r == receivers_.end()) continue;
      auto e = r->second.queue.find(seq);
      if (e != r->second.queue.end()) e->second.durable = true;
    }
    undurable_.clear();
    if (journal_backoff_ms_ > 0) spdlog::info("outbox: journal {} writable again", path_);
    journal_backoff_ms_ = 0;
    maybe_compact();
  }

  bool sync() {
    // While the journal is failing its retry timer paces the attempts; one
    // more try now would only repeat the error.
    if (!stopped_ && journal_retry_->active()) return unwritten_.empty();
    flush();
    return unwritten_.empty();
  }

  // The records stay buffered (and their entries unsent) and are written
  // again later; a full disk delays notifications but loses none.
  void journal_failed(const std::string& error) {
    repair_tail_ = true;
    repair_tail();
    journal_backoff_ms_ = journal_backoff_ms_ == 0
                              ? kJournalRetryMinMs
                              : std::min(journal_backoff_ms_ * 2, kJournalRetryMaxMs);
    spdlog::error("outbox: {}; {} records kept in memory, retrying in {} ms", error,
                  unwritten_records_, journal_backoff_ms_);
    if (observer_.on_journal_error) observer_.on_journal_error(error);
    if (!stopped_) journal_retry_->start(journal_backoff_ms_);
  }

  // Cuts a partially written record off the journal, so that the retried
  // write does not continue a torn line.
  void repair_tail() {
    if (repair_tail_ && ::ftruncate(fd_, durable_size_) == 0) repair_tail_ = false;
  }

  // Rewrites the journal with only the pending entries once obsolete records
  // dominate it: temp file, fsync, rename over the journal, fsync the directory.
  void maybe_compact() {
    size_t live = pending_count();
    if (done_in_file_ <= compact_at_done_ || live * 2 >= records_in_file_) return;
    const std::string tmp = options_.dir + "/" + kCompactName;
    std::string data = record_line({{"op", "meta"}, {"next_seq", next_seq_}});
    for (const Notification& n : pending_notifications()) {
      data += record_line({{"op", "enqueue"}, {"n", to_json(n)}});
    }
    int fd = ::open(tmp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    // Locked before the rename, so the journal is never unlocked under its name.
    bool ok = fd >= 0 && ::flock(fd, LOCK_EX | LOCK_NB) == 0 && write_all(fd, data) &&
              ::fdatasync(fd) == 0 && ::rename(tmp.c_str(), path_.c_str()) == 0;
    if (!ok) {
      std::string error = errno_text("cannot compact", path_);
      if (fd >= 0) ::close(fd);
      ::unlink(tmp.c_str());
      // Not retried on every flush: the old journal is still complete and valid.
      compact_at_done_ = done_in_file_ + kCompactMinDone;
      spdlog::error("outbox: {}; keeping the uncompacted journal", error);
      if (observer_.on_journal_error) observer_.on_journal_error(error);
      return;
    }
    ::close(fd_);
    fd_ = fd;
    // Until the directory is synced a crash may bring back the old journal
    // without the records appended from now on; flush() syncs it first.
    dir_sync_pending_ = !runtime::fsync_dir(options_.dir);
    spdlog::info("outbox: compacted {} ({} records, {} pending)", path_, records_in_file_, live);
    durable_size_ = static_cast<off_t>(data.size());
    records_in_file_ = live + 1;
    journal_ids_.clear();
    for (const auto& [name, r] : receivers_)
      for (const auto& [seq, e] : r.queue) journal_ids_.insert(e.n.message_id);
    done_in_file_ = 0;
    compact_at_done_ = kCompactMinDone;
  }

  // --- delivery -----------------------------------------------------------

  // Monotonic milliseconds, on uv_now's clock but current.
  static uint64_t mono_ms() { return uv_hrtime() / 1000000; }

  void enqueue(Notification n) {
    if (fd_ < 0) throw std::logic_error("Outbox::enqueue before a successful open()");
    // An alert message's Message-ID follows from the alert state (its group's
    // thread and number). If wachtd died after this message reached the
    // journal but before the state snapshot recorded it, the restarted wachtd
    // produces the very same message again: it is already queued or sent.
    if ((n.kind == "firing" || n.kind == "resolved") && journal_ids_.contains(n.message_id)) {
      spdlog::info("outbox: {} to {} is already in the journal; not queueing it twice",
                   n.message_id, n.receiver);
      return;
    }
    journal_ids_.insert(n.message_id);
    n.seq = next_seq_++;
    if (n.created_ms == 0) n.created_ms = options_.now_ms();
    append({{"op", "enqueue"}, {"n", to_json(n)}});
    undurable_.emplace_back(n.receiver, n.seq);
    uint64_t seq = n.seq;
    auto& queue = receivers_[n.receiver].queue;  // before `n` is moved from
    queue.emplace(seq, Entry{std::move(n)});
    // After stop() no tick runs; the record is made durable right away and
    // sent by the next process.
    if (stopped_) {
      flush();
    } else {
      kick();
    }
  }

  void add_receiver(const std::string& name, std::unique_ptr<Notifier> notifier, int per_minute) {
    if (stopped_) return;
    Receiver& r = receivers_[name];
    if (r.notifier && r.in_flight != 0) {
      r.notifier->cancel();
      r.in_flight = 0;
    }
    r.notifier = std::move(notifier);
    r.per_minute = std::max(per_minute, 0);
    kick();
  }

  // Deliveries start from a zero timer: on the next loop iteration, after
  // everything queued in this one was made durable by a single flush.
  void kick() {
    if (!stopped_ && !tick_->active()) tick_->start(0);
  }

  void on_tick() {
    guarded("tick", [this] {
      // While the journal is failing its own timer paces the write attempts.
      if (!journal_retry_->active()) flush();
      pump();
    });
  }

  void on_journal_retry() {
    guarded("journal retry", [this] {
      flush();
      pump();
    });
  }

  bool expired(const Entry& e, int64_t now) const {
    return now >= e.n.created_ms + options_.max_age.count();
  }

  // Starts every send that may start now and arms the wake timer for the
  // earliest moment another one may: a backoff ending, a rate-limit slot
  // freeing, an entry reaching max_age.
  void pump() {
    if (stopped_) return;
    // The loop time was cached before this iteration's fsync; rate windows
    // and backoffs are measured from the moment of the send. Not through
    // uv_update_time: advancing the loop's time inside a timer callback lets
    // libuv (before 1.46) run every timer that has become due since in the
    // same pass, without polling for I/O in between.
    const uint64_t now = mono_ms();
    const int64_t wall = options_.now_ms();
    uint64_t wake_in = std::numeric_limits<uint64_t>::max();
    auto wake_at = [&](uint64_t t) { wake_in = std::min(wake_in, t > now ? t - now : 0); };
    for (auto& [name, r] : receivers_) {
      for (auto it = r.queue.begin(); it != r.queue.end();) {
        Entry& e = it->second;
        if (it->first != r.in_flight && expired(e, wall)) {
          it = dead_letter(name, r, it, "expired",
                           fmt::format("expired after {} attempts: not delivered within {} s",
                                       e.retries, options_.max_age.count() / 1000));
          continue;
        }
        const int64_t deadline = e.n.created_ms + options_.max_age.count();
        if (deadline > wall) wake_in = std::min(wake_in, static_cast<uint64_t>(deadline - wall));
        ++it;
      }
      if (stopped_) return;  // an observer called stop()
      if (!r.notifier || r.in_flight != 0) continue;
      Entry* next = nullptr;
      // An entry waits only for earlier entries of its own thread.
      std::set<std::string_view> blocked;
      for (auto& [seq, e] : r.queue) {
        if (!blocked.insert(e.n.thread_key).second) continue;
        if (!e.durable) continue;
        if (e.not_before > now) {
          wake_at(e.not_before);
          continue;
        }
        next = &e;
        break;
      }
      if (!next) continue;
      if (r.per_minute > 0) {
        const uint64_t window = static_cast<uint64_t>(options_.rate_limit_window.count());
        while (!r.recent_sends.empty() && r.recent_sends.front() + window <= now) {
          r.recent_sends.pop_front();
        }
        if (r.recent_sends.size() >= static_cast<size_t>(r.per_minute)) {
          wake_at(r.recent_sends.front() + window);
          continue;
        }
        r.recent_sends.push_back(now);
      }
      start_send(name, r, *next);
      if (stopped_) return;
    }
    if (wake_in == std::numeric_limits<uint64_t>::max()) {
      wake_->stop();
    } else {
      wake_->start(wake_in);
    }
  }

  void start_send(const std::string& name, Receiver& r, Entry& e) {
    const uint64_t seq = e.n.seq;
    r.in_flight = seq;
    std::weak_ptr<int> alive = alive_;
    try {
      r.notifier->send(e.n, [this, alive, name, seq](Delivery d, std::string detail) {
        if (alive.expired()) return;  // the outbox stopped; the entry stays pending
        guarded("send result", [&] { finish_send(name, seq, d, std::move(detail)); });
      });
    } catch (const std::exception& ex) {
      // A transport that cannot even start is a failed attempt like any other.
      finish_send(name, seq, Delivery::kRetry, ex.what());
    }
  }

  void finish_send(const std::string& name, uint64_t seq, Delivery d, std::string detail) {
    auto rit = receivers_.find(name);
    if (rit == receivers_.end() || rit->second.in_flight != seq) return;
    Receiver& r = rit->second;
    r.in_flight = 0;
    kick();
    auto it = r.queue.find(seq);
    if (it == r.queue.end()) return;
    Entry& e = it->second;
    switch (d) {
      case Delivery::kDelivered:
        spdlog::info("outbox: delivered #{} {} to {}: {}", seq, e.n.message_id, name, detail);
        report(name, "delivered");
        append_done(seq, "delivered");
        r.queue.erase(it);
        break;
      case Delivery::kRejected: dead_letter(name, r, it, "rejected", "rejected: " + detail); break;
      case Delivery::kRetry: {
        ++e.retries;
        if (expired(e, options_.now_ms())) {
          dead_letter(name, r, it, "expired",
                      fmt::format("expired after {} attempts: {}", e.retries, detail));
          break;
        }
        const uint64_t delay = backoff_ms(e.retries);
        e.not_before = mono_ms() + delay;
        spdlog::warn("outbox: #{} {} to {} failed (attempt {}), retrying in {} ms: {}", seq,
                     e.n.message_id, name, e.retries, delay, detail);
        report(name, "retry");
        break;
      }
    }
  }

  // Gives up on an entry: a done record (so a restart does not resend it),
  // the observer's dead letter and an error line for the operator.
  std::map<uint64_t, Entry>::iterator dead_letter(const std::string& name, Receiver& r,
                                                  std::map<uint64_t, Entry>::iterator it,
                                                  const char* result, const std::string& reason) {
    Notification n = std::move(it->second.n);
    append_done(n.seq, result);
    auto next = r.queue.erase(it);
    kick();
    spdlog::error("outbox: dead letter #{} {} to {} ({}): {}", n.seq, n.message_id, name, n.subject,
                  reason);
    report(name, result);
    if (observer_.on_dead_letter) observer_.on_dead_letter(n, reason);
    return next;
  }

  void report(const std::string& receiver, const char* result) {
    if (observer_.on_attempt) observer_.on_attempt(receiver, result);
  }

  // initial_backoff doubling per retry up to max_backoff, ±20% jitter so that
  // receivers recovering from an outage are not hit by every entry at once.
  uint64_t backoff_ms(int retries) {
    const double base = std::min(static_cast<double>(options_.initial_backoff.count()) *
                                     std::pow(2.0, std::min(retries - 1, 62)),
                                 static_cast<double>(options_.max_backoff.count()));
    std::uniform_real_distribution<double> jitter(0.8, 1.2);
    return static_cast<uint64_t>(std::max(1.0, base * jitter(rng_)));
  }

  void stop() {
    if (stopped_) return;
    // The last records of this run get one synchronous chance to become durable.
    flush();
    stopped_ = true;
    alive_.reset();
    for (auto& [name, r] : receivers_) {
      if (r.notifier && r.in_flight != 0) r.notifier->cancel();
      r.in_flight = 0;
      r.notifier.reset();  // a transport may own handles; stop() leaves none open
    }
    tick_.reset();
    wake_.reset();
    journal_retry_.reset();
  }

  // --- queries ------------------------------------------------------------

  size_t pending_count() const {
    size_t n = 0;
    for (const auto& [name, r] : receivers_) n += r.queue.size();
    return n;
  }

  std::vector<Notification> pending_notifications() const {
    std::vector<Notification> out;
    for (const auto& [name, r] : receivers_) {
      for (const auto& [seq, e] : r.queue) out.push_back(e.n);
    }
    std::sort(out.begin(), out.end(),
              [](const Notification& a, const Notification& b) { return a.seq < b.seq; });
    return out;
  }

  double oldest_age_seconds() const {
    int64_t oldest = std::numeric_limits<int64_t>::max();
    for (const auto& [name, r] : receivers_) {
      for (const auto& [seq, e] : r.queue) oldest = std::min(oldest, e.n.created_ms);
    }
    if (oldest == std::numeric_limits<int64_t>::max()) return 0;
    return std::max<double>(0, static_cast<double>(options_.now_ms() - oldest) / 1000.0);
  }

  uv_loop_t* loop_;
  OutboxOptions options_;
  OutboxObserver observer_;
  std::string path_;
  int fd_ = -1;
  bool stopped_ = false;
  uint64_t next_seq_ = 1;
  size_t corrupt_ = 0;
  std::map<std::string, Receiver> receivers_;
  // Message-IDs of the enqueue records in the journal file (since its last
  // compaction), to recognise an alert message produced again after a crash.
  std::set<std::string> journal_ids_;

  // Records appended since the last successful flush, and the entries whose
  // enqueue records are among them.
  std::string unwritten_;
  size_t unwritten_records_ = 0;
  size_t unwritten_done_ = 0;
  std::vector<std::pair<std::string, uint64_t>> undurable_;
  off_t durable_size_ = 0;           // journal length up to its last durable record
  bool repair_tail_ = false;         // bytes past durable_size_ may be a torn record
  bool dir_sync_pending_ = false;    // the journal's directory entry is not yet durable
  uint64_t journal_backoff_ms_ = 0;  // 0 while the journal is healthy
  size_t records_in_file_ = 0;
  size_t done_in_file_ = 0;
  size_t compact_at_done_ = kCompactMinDone;

  std::mt19937_64 rng_;
  // Send callbacks hold a weak_ptr to this: a result arriving after stop()
  // (from a transport that ignored cancel()) is dropped instead of touching
  // a stopped or destroyed outbox.
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);
  std::unique_ptr<runtime::Timer> tick_;
  std::unique_ptr<runtime::Timer> wake_;
  std::unique_ptr<runtime::Timer> journal_retry_;
};

Outbox::Outbox(uv_loop_t* loop, OutboxOptions options, OutboxObserver observer)
    : impl_(std::make_unique<Impl>(loop, std::move(options), std::move(observer))) {}

Outbox::~Outbox() = default;

bool Outbox::open(std::string* error) { return impl_->open(error); }

void Outbox::add_receiver(const std::string& name, std::unique_ptr<Notifier> notifier,
                          int per_minute) {
  impl_->add_receiver(name, std::move(notifier), per_minute);
}

void Outbox::enqueue(Notification n) { impl_->enqueue(std::move(n)); }

bool Outbox::sync() { return impl_->sync(); }

void Outbox::stop() { impl_->stop(); }

size_t Outbox::pending() const { return impl_->pending_count(); }

double Outbox::oldest_age_seconds() const { return impl_->oldest_age_seconds(); }

size_t Outbox::corrupt_entries_skipped() const { return impl_->corrupt_; }

std::vector<Notification> Outbox::pending_list() const { return impl_->pending_notifications(); }

}  // namespace wacht::alerts
