#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"
#include "probes/probe.hpp"
#include "runtime/timer.hpp"

typedef struct uv_timer_s uv_timer_t;

namespace wacht {

// When a run was due and when it really started, for the lag histogram and tests.
struct RunInfo {
  uint64_t due_ns;      // on uv_hrtime's clock
  uint64_t started_ns;  // on uv_hrtime's clock
  // What Hooks::context returned for the check when it was added (null without
  // that hook): lets the owner find its per-check state without a look-up by id.
  void* context = nullptr;
};

// Owns time for every check (Envoy's health checker base, Icinga's checker):
// each check runs every interval at a fixed phase derived from its id, so runs
// neither drift nor bunch up after a start or reload; a run is cancelled at its
// timeout; a check never runs twice at once; at most max_concurrent probes are
// in flight and further due runs wait in FIFO order. Probes own only their I/O.
// Everything happens on the loop thread.
//
// Time is kept in one array-based min-heap of (time, check) events driven by a
// single libuv timer, not in two libuv timers per check: libuv's timer heap
// links nodes inside separately allocated handles, and at 10,000 checks every
// start/stop walked ~15 cold cache lines. Superseded events stay in the heap and
// are recognised as stale by a stamp when they come due.
class Scheduler {
 public:
  struct Hooks {
    // Every finished run, including timeouts. Must not call back into the scheduler
    // synchronously except run_now() and run_after().
    std::function<void(const config::CheckConfig&, const probes::ProbeResult&, const RunInfo&)>
        on_result;
    // A due run that was dropped because the previous one was still running or waiting.
    std::function<void(const config::CheckConfig&)> on_skip;
  };
  // Optional, set before the first apply(): called once when a check is
  // added; the pointer comes back in RunInfo::context of each of its results.
  using ContextFn = std::function<void*(const config::CheckConfig&)>;
  using ProbeFactory = std::function<std::unique_ptr<probes::Probe>(const config::CheckConfig&)>;

  struct ApplyStats {
    size_t added = 0, changed = 0, removed = 0, unchanged = 0;
  };

  Scheduler(uv_loop_t* loop, ProbeFactory factory, Hooks hooks);
  ~Scheduler();  // cancels in-flight probes; no hook fires afterwards
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Makes `checks` the running set, diffing by id: unchanged checks (same
  // fingerprint) keep their schedule and any run in flight; changed ones are
  // replaced; removed ones stop (a run in flight is cancelled); new ones start
  // at their phase. The scheduler keeps a copy of `checks`.
  ApplyStats apply(const std::vector<config::CheckConfig>& checks);
  // The same without a copy: `checks` must live as long as `owner` does, and
  // the scheduler keeps `owner` until the next apply (App passes its config).
  ApplyStats apply(const std::vector<config::CheckConfig>& checks,
                   std::shared_ptr<const void> owner);
  void set_context(ContextFn fn) { context_ = std::move(fn); }
  void set_max_concurrent(uint32_t n);
  // Runs a check as soon as a slot is free, outside its schedule (re-checks).
  // Returns false if the id is unknown or a run is already pending.
  bool run_now(const std::string& id);
  // Runs a check once after `delay` unless a run is due sooner (retries while a
  // problem is being confirmed); its regular schedule is unchanged.
  void run_after(const std::string& id, std::chrono::milliseconds delay);
  // Cancels everything; the scheduler is empty afterwards.
  void stop();

  size_t size() const { return by_id_.size(); }
  size_t in_flight() const { return in_flight_; }
  size_t queued() const { return queue_.size(); }

  // The phase of a check within its interval: a stable hash of the id, so the
  // same config spreads the same way on every start and every instance,
  // rounded down to a multiple of kPhaseGridMs.
  static constexpr uint64_t kPhaseGridMs = 5;
  static uint64_t phase_ms(const std::string& id, uint64_t interval_ms);
  // The first time >= now_ms at which a check with this phase is due.
  static uint64_t first_due_ms(uint64_t now_ms, uint64_t interval_ms, uint64_t phase);

 private:
  struct Entry;
  // One slot per check; a slot outlives its entry's events in the heap, which
  // carry the slot's stamp at the time they were pushed.
  struct Slot {
    std::unique_ptr<Entry> entry;
    uint32_t due_stamp = 0;
    uint32_t deadline_stamp = 0;
  };
  struct Event {
    uint64_t at_ms;  // on uv_now's clock
    uint32_t slot;
    uint32_t stamp;  // high bit set: the deadline of a run, else a due run
  };
  static constexpr uint32_t kDeadline = 0x80000000u;

  // `due_ms` (uv_now's clock) is the first run, 0 for the check's phase.
  void add(std::shared_ptr<const config::CheckConfig> c, uint64_t due_ms = 0);
  void remove(uint32_t slot);
  void cancel_run(Entry& e);
  void on_due(Entry& e);
  void arm(Entry& e);
  // Starts the run now, or queues it while max_concurrent probes are in flight.
  void dispatch(Entry& e, uint64_t due_ns);
  void start_run(Entry& e, uint64_t due_ns);
  void finish(Entry& e, probes::ProbeResult result);
  void on_timeout(Entry& e);
  void start_queued();
  Entry* find(const std::string& id);

  void push(uint64_t at_ms, uint32_t slot, uint32_t stamp);
  void on_timer();
  void rearm();
  void compact();

  uv_loop_t* loop_;
  ProbeFactory factory_;
  Hooks hooks_;
  ContextFn context_;
  uint32_t max_concurrent_ = 1000;
  size_t in_flight_ = 0;
  uv_timer_t* timer_;               // freed in its close callback
  uint64_t timer_at_ = UINT64_MAX;  // when timer_ fires, UINT64_MAX if stopped
  bool in_timer_ = false;           // on_timer is draining the heap; it re-arms at the end
  std::vector<Event> heap_;         // min-heap by at_ms
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  // Keys view the ids in the entries' configs; apply() rebuilds the map.
  std::map<std::string_view, uint32_t> by_id_;
  std::deque<Entry*> queue_;
  std::shared_ptr<const void> owner_;  // keeps the applied checks alive
};

}  // namespace wacht
