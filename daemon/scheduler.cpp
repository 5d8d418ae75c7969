#include "scheduler.hpp"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>

#include "runtime/duration.hpp"

namespace wacht {

struct Scheduler::Entry {
  config::CheckConfig cfg;
  std::unique_ptr<probes::Probe> probe;
  std::unique_ptr<runtime::Timer> timer;     // next due run
  std::unique_ptr<runtime::Timer> deadline;  // timeout of the run in flight
  uint64_t next_due_ms = 0;                  // on uv_now's clock
  uint64_t retry_at_ms = 0;                  // an extra run (run_after), 0 if none
  bool running = false;
  bool queued = false;
  uint64_t queued_due_ns = 0;
  RunInfo run{};
  // Bumped on every start and cancel so a late callback of an old run is ignored.
  uint64_t generation = 0;
};

Scheduler::Scheduler(uv_loop_t* loop, ProbeFactory factory, Hooks hooks)
    : loop_(loop), factory_(std::move(factory)), hooks_(std::move(hooks)) {}

Scheduler::~Scheduler() { stop(); }

uint64_t Scheduler::phase_ms(const std::string& id, uint64_t interval_ms) {
  // FNV-1a: stable across builds and platforms, unlike std::hash.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return interval_ms == 0 ? 0 : h % interval_ms;
}

uint64_t Scheduler::first_due_ms(uint64_t now_ms, uint64_t interval_ms, uint64_t phase) {
  uint64_t pos = now_ms % interval_ms;
  return now_ms + (phase + interval_ms - pos) % interval_ms;
}

Scheduler::ApplyStats Scheduler::apply(const std::vector<config::CheckConfig>& checks) {
  ApplyStats stats;
  std::map<std::string_view, const config::CheckConfig*> wanted;
  for (const auto& c : checks) wanted[c.id] = &c;

  for (auto it = entries_.begin(); it != entries_.end();) {
    auto w = wanted.find(it->first);
    if (w == wanted.end()) {
      remove(*it->second);
      it = entries_.erase(it);
      ++stats.removed;
    } else if (w->second->fingerprint != it->second->cfg.fingerprint) {
      remove(*it->second);
      it = entries_.erase(it);
      ++stats.changed;
    } else {
      ++it;
      ++stats.unchanged;
    }
  }
  for (const auto& c : checks) {
    if (entries_.contains(c.id)) continue;
    add(c);
    ++stats.added;
  }
  stats.added -= stats.changed;
  start_queued();
  return stats;
}

void Scheduler::set_max_concurrent(uint32_t n) {
  max_concurrent_ = std::max<uint32_t>(1, n);
  start_queued();
}

void Scheduler::add(const config::CheckConfig& c) {
  auto e = std::make_unique<Entry>();
  Entry* raw = e.get();
  e->cfg = c;
  e->probe = factory_(c);
  e->timer = std::make_unique<runtime::Timer>(loop_, [this, raw] { on_due(*raw); });
  e->deadline = std::make_unique<runtime::Timer>(loop_, [this, raw] { on_timeout(*raw); });
  uint64_t interval = static_cast<uint64_t>(c.interval.count());
  e->next_due_ms = first_due_ms(uv_now(loop_), interval, phase_ms(c.id, interval));
  arm(*e);
  entries_.emplace(c.id, std::move(e));
}

void Scheduler::remove(Entry& e) {
  if (e.running) {
    ++e.generation;
    e.probe->cancel();
    e.running = false;
    --in_flight_;
  }
  if (e.queued) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), &e));
    e.queued = false;
  }
}

void Scheduler::arm(Entry& e) {
  uint64_t now = uv_now(loop_);
  uint64_t due = e.retry_at_ms ? std::min(e.retry_at_ms, e.next_due_ms) : e.next_due_ms;
  e.timer->start(due > now ? due - now : 0);
}

void Scheduler::run_after(const std::string& id, std::chrono::milliseconds delay) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = *it->second;
  uint64_t at = uv_now(loop_) + static_cast<uint64_t>(delay.count());
  if (at >= e.next_due_ms) return;  // the regular run comes first anyway
  e.retry_at_ms = at;
  arm(e);
}

void Scheduler::on_due(Entry& e) {
  if (e.retry_at_ms && e.retry_at_ms < e.next_due_ms && e.retry_at_ms <= uv_now(loop_)) {
    uint64_t due_ns = e.retry_at_ms * 1000000ull;
    e.retry_at_ms = 0;
    arm(e);
    if (e.running || e.queued) return;
    dispatch(e, due_ns);
    return;
  }
  e.retry_at_ms = 0;
  uint64_t due_ns = e.next_due_ms * 1000000ull;
  uint64_t interval = static_cast<uint64_t>(e.cfg.interval.count());
  uint64_t now = uv_now(loop_);
  // Advance from the due time, not from now, so the schedule does not drift; a
  // loop stalled past whole intervals skips those runs rather than bunching them.
  e.next_due_ms += interval;
  while (e.next_due_ms <= now) {
    e.next_due_ms += interval;
    if (hooks_.on_skip) hooks_.on_skip(e.cfg);
  }
  arm(e);
  if (e.running || e.queued) {
    if (hooks_.on_skip) hooks_.on_skip(e.cfg);
    return;
  }
  dispatch(e, due_ns);
}

void Scheduler::dispatch(Entry& e, uint64_t due_ns) {
  if (in_flight_ >= max_concurrent_) {
    e.queued = true;
    e.queued_due_ns = due_ns;
    queue_.push_back(&e);
    return;
  }
  start_run(e, due_ns);
}

bool Scheduler::run_now(const std::string& id) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return false;
  Entry& e = *it->second;
  if (e.running || e.queued) return false;
  dispatch(e, uv_hrtime());
  return true;
}

void Scheduler::start_run(Entry& e, uint64_t due_ns) {
  e.running = true;
  ++in_flight_;
  uint64_t gen = ++e.generation;
  e.run = RunInfo{due_ns, uv_hrtime()};
  // The loop's cached time may be a few ms old; the timeout counts from now.
  uv_update_time(loop_);
  e.deadline->start(static_cast<uint64_t>(e.cfg.timeout.count()));
  Entry* raw = &e;
  e.probe->start([this, raw, gen](probes::ProbeResult r) {
    if (raw->generation != gen || !raw->running) return;
    finish(*raw, std::move(r));
  });
}

void Scheduler::on_timeout(Entry& e) {
  if (!e.running) return;
  std::string phase(e.probe->phase());
  ++e.generation;
  e.probe->cancel();
  probes::ProbeResult r;
  r.success = false;
  r.timed_out = true;
  r.state = probes::State::kCritical;
  r.summary = fmt::format("timeout after {}{}", runtime::format_duration(e.cfg.timeout),
                          phase.empty() ? "" : " while " + phase);
  finish(e, std::move(r));
}

void Scheduler::finish(Entry& e, probes::ProbeResult result) {
  e.running = false;
  --in_flight_;
  e.deadline->stop();
  uint64_t end = uv_hrtime();
  if (result.duration_seconds <= 0 || result.timed_out)
    result.duration_seconds = static_cast<double>(end - e.run.started_ns) / 1e9;
  if (hooks_.on_result) hooks_.on_result(e.cfg, result, e.run);
  start_queued();
}

void Scheduler::start_queued() {
  while (in_flight_ < max_concurrent_ && !queue_.empty()) {
    Entry* e = queue_.front();
    queue_.pop_front();
    e->queued = false;
    start_run(*e, e->queued_due_ns);
  }
}

void Scheduler::stop() {
  for (auto& [id, e] : entries_) remove(*e);
  entries_.clear();
  queue_.clear();
  in_flight_ = 0;
}

}  // namespace wacht
