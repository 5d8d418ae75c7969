#include "scheduler.hpp"

#include <fmt/format.h>
#include <uv.h>

#include <algorithm>

#include "runtime/duration.hpp"

namespace wacht {

struct Scheduler::Entry {
  Scheduler* owner;
  uint32_t slot;
  std::shared_ptr<const config::CheckConfig> cfg;
  std::unique_ptr<probes::Probe> probe;
  void* context = nullptr;            // from Hooks::context
  uint64_t next_due_ms = 0;           // on uv_now's clock
  uint64_t retry_at_ms = 0;           // an extra run (run_after), 0 if none
  uint64_t armed_at_ms = UINT64_MAX;  // the due event in the heap, if any
  uint64_t queued_due_ns = 0;
  RunInfo run{};
  // Bumped on every start and cancel so a late callback of an old run is ignored.
  uint64_t generation = 0;
  bool running = false;
  bool queued = false;
};

namespace {

constexpr uint32_t kStampMask = 0x7fffffffu;

// std::*_heap keep the largest first: inverted for a min-heap. A type, not a
// function, so that the comparison is inlined.
struct Later {
  template <typename E>
  bool operator()(const E& a, const E& b) const {
    return a.at_ms > b.at_ms;
  }
};

}  // namespace

Scheduler::Scheduler(uv_loop_t* loop, ProbeFactory factory, Hooks hooks)
    : loop_(loop), factory_(std::move(factory)), hooks_(std::move(hooks)), timer_(new uv_timer_t) {
  uv_timer_init(loop_, timer_);
  timer_->data = this;
}

Scheduler::~Scheduler() {
  stop();
  uv_timer_stop(timer_);
  timer_->data = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

uint64_t Scheduler::phase_ms(const std::string& id, uint64_t interval_ms) {
  // FNV-1a: stable across builds and platforms, unlike std::hash.
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : id) {
    h ^= c;
    h *= 1099511628211ull;
  }
  if (interval_ms == 0) return 0;
  // On a grid of kPhaseGridMs: checks that fall into the same slot start in
  // one wake-up of the loop instead of one each (at 1,000 probes/s a third of
  // the context switches), and a slot holds a handful of checks, not a herd.
  uint64_t phase = h % interval_ms;
  return phase - phase % kPhaseGridMs;
}

uint64_t Scheduler::first_due_ms(uint64_t now_ms, uint64_t interval_ms, uint64_t phase) {
  uint64_t pos = now_ms % interval_ms;
  return now_ms + (phase + interval_ms - pos) % interval_ms;
}

Scheduler::ApplyStats Scheduler::apply(const std::vector<config::CheckConfig>& checks) {
  auto copy = std::make_shared<const std::vector<config::CheckConfig>>(checks);
  return apply(*copy, copy);
}

Scheduler::ApplyStats Scheduler::apply(const std::vector<config::CheckConfig>& checks,
                                       std::shared_ptr<const void> owner) {
  ApplyStats stats;
  std::map<std::string_view, const config::CheckConfig*> wanted;
  for (const auto& c : checks) wanted[c.id] = &c;

  // Unchanged checks keep their entry but now view the new config, so the
  // previous one can be released; the map's keys view the ids it holds.
  std::map<std::string_view, uint32_t> kept;
  // A changed check with the same interval keeps its place in the schedule:
  // a run due now but not yet started must not move a whole interval away.
  std::map<std::string_view, uint64_t> due_of_changed;
  for (const auto& [id, slot] : by_id_) {
    Entry& e = *slots_[slot].entry;
    auto w = wanted.find(id);
    if (w == wanted.end()) {
      remove(slot);
      ++stats.removed;
    } else if (w->second->fingerprint != e.cfg->fingerprint) {
      if (w->second->interval == e.cfg->interval) due_of_changed.emplace(w->first, e.next_due_ms);
      remove(slot);
      ++stats.changed;
    } else {
      e.cfg = std::shared_ptr<const config::CheckConfig>(owner, w->second);
      kept.emplace(e.cfg->id, slot);
      ++stats.unchanged;
    }
  }
  by_id_ = std::move(kept);
  for (const auto& c : checks) {
    if (by_id_.contains(c.id)) continue;
    auto due = due_of_changed.find(c.id);
    add(std::shared_ptr<const config::CheckConfig>(owner, &c),
        due == due_of_changed.end() ? 0 : due->second);
    ++stats.added;
  }
  stats.added -= stats.changed;
  owner_ = std::move(owner);
  start_queued();
  return stats;
}

void Scheduler::set_max_concurrent(uint32_t n) {
  max_concurrent_ = std::max<uint32_t>(1, n);
  start_queued();
}

void Scheduler::add(std::shared_ptr<const config::CheckConfig> c, uint64_t due_ms) {
  auto e = std::make_unique<Entry>();
  e->owner = this;
  e->cfg = std::move(c);
  e->probe = factory_(*e->cfg);
  if (context_) e->context = context_(*e->cfg);
  uint64_t interval = static_cast<uint64_t>(e->cfg->interval.count());
  e->next_due_ms =
      due_ms ? due_ms : first_due_ms(uv_now(loop_), interval, phase_ms(e->cfg->id, interval));
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else {
    slot = static_cast<uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  e->slot = slot;
  Entry& ref = *e;
  slots_[slot].entry = std::move(e);
  by_id_.emplace(ref.cfg->id, slot);
  arm(ref);
}

void Scheduler::remove(uint32_t slot) {
  Slot& s = slots_[slot];
  cancel_run(*s.entry);
  s.entry.reset();
  // Events still in the heap for this slot are stale from now on.
  s.due_stamp = (s.due_stamp + 1) & kStampMask;
  s.deadline_stamp = (s.deadline_stamp + 1) & kStampMask;
  free_slots_.push_back(slot);
}

void Scheduler::cancel_run(Entry& e) {
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

Scheduler::Entry* Scheduler::find(const std::string& id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : slots_[it->second].entry.get();
}

void Scheduler::push(uint64_t at_ms, uint32_t slot, uint32_t stamp) {
  heap_.push_back(Event{at_ms, slot, stamp});
  std::push_heap(heap_.begin(), heap_.end(), Later{});
  if (at_ms < timer_at_) rearm();
}

void Scheduler::rearm() {
  if (in_timer_) return;  // on_timer re-arms once it has drained the heap
  // Superseded events on top would wake the loop for nothing: drop them here.
  while (!heap_.empty()) {
    const Event& top = heap_.front();
    const Slot& s = slots_[top.slot];
    bool live = s.entry && ((top.stamp & kDeadline) ? top.stamp == (s.deadline_stamp | kDeadline)
                                                    : top.stamp == s.due_stamp);
    if (live) break;
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    heap_.pop_back();
  }
  if (heap_.empty()) {
    if (timer_at_ != UINT64_MAX) uv_timer_stop(timer_);
    timer_at_ = UINT64_MAX;
    return;
  }
  uint64_t at = heap_.front().at_ms;
  if (at == timer_at_) return;
  uint64_t now = uv_now(loop_);
  uv_timer_start(
      timer_, [](uv_timer_t* t) { static_cast<Scheduler*>(t->data)->on_timer(); },
      at > now ? at - now : 0, 0);
  timer_at_ = at;
}

void Scheduler::on_timer() {
  timer_at_ = UINT64_MAX;
  in_timer_ = true;
  const uint64_t now = uv_now(loop_);
  while (!heap_.empty() && heap_.front().at_ms <= now) {
    std::pop_heap(heap_.begin(), heap_.end(), Later{});
    const Event ev = heap_.back();
    heap_.pop_back();
    Slot& s = slots_[ev.slot];
    if (!s.entry) continue;
    if (ev.stamp & kDeadline) {
      if (ev.stamp == (s.deadline_stamp | kDeadline)) on_timeout(*s.entry);
    } else if (ev.stamp == s.due_stamp) {
      s.entry->armed_at_ms = UINT64_MAX;
      on_due(*s.entry);
    }
  }
  in_timer_ = false;
  rearm();
}

void Scheduler::arm(Entry& e) {
  uint64_t due = e.retry_at_ms ? std::min(e.retry_at_ms, e.next_due_ms) : e.next_due_ms;
  if (due == e.armed_at_ms) return;  // already in the heap
  Slot& s = slots_[e.slot];
  s.due_stamp = (s.due_stamp + 1) & kStampMask;
  e.armed_at_ms = due;
  push(due, e.slot, s.due_stamp);
}

void Scheduler::run_after(const std::string& id, std::chrono::milliseconds delay) {
  Entry* e = find(id);
  if (!e) return;
  uint64_t at = uv_now(loop_) + static_cast<uint64_t>(delay.count());
  if (at >= e->next_due_ms) return;  // the regular run comes first anyway
  e->retry_at_ms = at;
  arm(*e);
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
  uint64_t interval = static_cast<uint64_t>(e.cfg->interval.count());
  uint64_t now = uv_now(loop_);
  // Advance from the due time, not from now, so the schedule does not drift; a
  // loop stalled past whole intervals skips those runs rather than bunching them.
  e.next_due_ms += interval;
  while (e.next_due_ms <= now) {
    e.next_due_ms += interval;
    if (hooks_.on_skip) hooks_.on_skip(*e.cfg);
  }
  arm(e);
  if (e.running || e.queued) {
    if (hooks_.on_skip) hooks_.on_skip(*e.cfg);
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
  Entry* e = find(id);
  if (!e || e->running || e->queued) return false;
  dispatch(*e, uv_hrtime());
  return true;
}

void Scheduler::start_run(Entry& e, uint64_t due_ns) {
  e.running = true;
  ++in_flight_;
  uint64_t gen = ++e.generation;
  e.run = RunInfo{due_ns, uv_hrtime(), e.context};
  // The loop's cached time may be a few ms old; the timeout counts from now.
  uv_update_time(loop_);
  Slot& s = slots_[e.slot];
  s.deadline_stamp = (s.deadline_stamp + 1) & kStampMask;
  push(uv_now(loop_) + static_cast<uint64_t>(e.cfg->timeout.count()), e.slot,
       s.deadline_stamp | kDeadline);
  Entry* raw = &e;
  // Two words: std::function keeps them without an allocation per run.
  e.probe->start([raw, gen](probes::ProbeResult r) {
    if (raw->generation != gen || !raw->running) return;
    raw->owner->finish(*raw, std::move(r));
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
  r.summary = fmt::format("timeout after {}{}", runtime::format_duration(e.cfg->timeout),
                          phase.empty() ? "" : " while " + phase);
  finish(e, std::move(r));
}

void Scheduler::finish(Entry& e, probes::ProbeResult result) {
  e.running = false;
  --in_flight_;
  // The run's deadline event is stale now; rearm() drops it when it is on top.
  Slot& s = slots_[e.slot];
  s.deadline_stamp = (s.deadline_stamp + 1) & kStampMask;
  uint64_t end = uv_hrtime();
  if (result.duration_seconds <= 0 || result.timed_out)
    result.duration_seconds = static_cast<double>(end - e.run.started_ns) / 1e9;
  if (hooks_.on_result) hooks_.on_result(*e.cfg, result, e.run);
  start_queued();
  rearm();
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
  for (Slot& s : slots_)
    if (s.entry) cancel_run(*s.entry);
  slots_.clear();
  free_slots_.clear();
  by_id_.clear();
  heap_.clear();
  queue_.clear();
  in_flight_ = 0;
  owner_.reset();
  if (timer_at_ != UINT64_MAX) uv_timer_stop(timer_);
  timer_at_ = UINT64_MAX;
}

}  // namespace wacht
