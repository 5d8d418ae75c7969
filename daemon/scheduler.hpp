#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "probes/probe.hpp"
#include "runtime/timer.hpp"

namespace wacht {

// When a run was due and when it really started, for the lag histogram and tests.
struct RunInfo {
  uint64_t due_ns;      // on uv_hrtime's clock
  uint64_t started_ns;  // on uv_hrtime's clock
};

// Owns time for every check (Envoy's health checker base, Icinga's checker):
// each check runs every interval at a fixed phase derived from its id, so runs
// neither drift nor bunch up after a start or reload; a run is cancelled at its
// timeout; a check never runs twice at once; at most max_concurrent probes are
// in flight and further due runs wait in FIFO order. Probes own only their I/O.
// Everything happens on the loop thread.
class Scheduler {
 public:
  struct Hooks {
    // Every finished run, including timeouts. Must not call back into the scheduler
    // synchronously except run_now().
    std::function<void(const config::CheckConfig&, const probes::ProbeResult&, const RunInfo&)>
        on_result;
    // A due run that was dropped because the previous one was still running or waiting.
    std::function<void(const config::CheckConfig&)> on_skip;
  };
  using ProbeFactory = std::function<std::unique_ptr<probes::Probe>(const config::CheckConfig&)>;

  struct ApplyStats {
    size_t added = 0, changed = 0, removed = 0, unchanged = 0;
  };

  Scheduler(uv_loop_t* loop, ProbeFactory factory, Hooks hooks);
  ~Scheduler();  // cancels in-flight probes; no hook fires afterwards

  // Makes `checks` the running set, diffing by id: unchanged checks (same
  // fingerprint) keep their schedule and any run in flight; changed ones are
  // replaced; removed ones stop (a run in flight is cancelled); new ones start
  // at their phase.
  ApplyStats apply(const std::vector<config::CheckConfig>& checks);
  void set_max_concurrent(uint32_t n);
  // Runs a check as soon as a slot is free, outside its schedule (re-checks).
  // Returns false if the id is unknown or a run is already pending.
  bool run_now(const std::string& id);
  // Runs a check once after `delay` unless a run is due sooner (retries while a
  // problem is being confirmed); its regular schedule is unchanged.
  void run_after(const std::string& id, std::chrono::milliseconds delay);
  // Cancels everything; the scheduler is empty afterwards.
  void stop();

  size_t size() const { return entries_.size(); }
  size_t in_flight() const { return in_flight_; }
  size_t queued() const { return queue_.size(); }

  // The phase of a check within its interval: a stable hash of the id, so the
  // same config spreads the same way on every start and every instance.
  static uint64_t phase_ms(const std::string& id, uint64_t interval_ms);
  // The first time >= now_ms at which a check with this phase is due.
  static uint64_t first_due_ms(uint64_t now_ms, uint64_t interval_ms, uint64_t phase);

 private:
  struct Entry;
  void add(const config::CheckConfig& c);
  void remove(Entry& e);
  void on_due(Entry& e);
  void arm(Entry& e);
  // Starts the run now, or queues it while max_concurrent probes are in flight.
  void dispatch(Entry& e, uint64_t due_ns);
  void start_run(Entry& e, uint64_t due_ns);
  void finish(Entry& e, probes::ProbeResult result);
  void on_timeout(Entry& e);
  void start_queued();

  uv_loop_t* loop_;
  ProbeFactory factory_;
  Hooks hooks_;
  uint32_t max_concurrent_ = 1000;
  size_t in_flight_ = 0;
  std::map<std::string, std::unique_ptr<Entry>, std::less<>> entries_;
  std::deque<Entry*> queue_;
};

}  // namespace wacht
