#pragma once

#include <cstddef>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "probes/registry.hpp"

namespace wacht::probes {

// Runs a Nagios-compatible plugin (monitoring-plugins, or any program following
// the plugin API): exit code 0-3 is the state, the first output line the
// summary, performance data becomes metrics.
ProbeType exec_probe_type();

class ExecRun;  // one run of a plugin, defined in exec_probe.cpp

// Caps how many plugins run at once across all exec checks. Starts beyond the
// cap wait in FIFO order; a run holds its slot until its process is reaped,
// also after a timeout (a plugin being killed still occupies the machine).
// Loop thread only. Destroy it after the exec probes: runs still reaping
// killed plugins then finish without it.
class ExecLimiter {
 public:
  explicit ExecLimiter(size_t max_running) : max_running_(max_running) {}
  ~ExecLimiter();
  ExecLimiter(const ExecLimiter&) = delete;
  ExecLimiter& operator=(const ExecLimiter&) = delete;

  size_t running() const { return running_.size(); }
  size_t queued() const { return queue_.size(); }

 private:
  friend class ExecRun;
  // Starts `run` now if a slot is free, else queues it.
  void submit(ExecRun* run);
  // A queued run that was cancelled leaves the queue.
  void withdraw(ExecRun* run);
  // A running run's process is gone: its slot goes to the first queued run.
  void release(ExecRun* run);

  size_t max_running_;
  std::vector<ExecRun*> running_;
  std::deque<ExecRun*> queue_;
  bool refilling_ = false;  // release() is filling free slots
};
using ExecLimiterPtr = std::unique_ptr<ExecLimiter, void (*)(ExecLimiter*)>;
ExecLimiterPtr make_exec_limiter(uv_loop_t* loop, size_t max_running);

// ---- Plugin output, pure functions (table-tested, and a fuzzing target) ----

// One performance data item, 'label'=value[UOM];[warn];[crit];[min];[max], as
// written: value and limits in the plugin's unit. A threshold is set only when
// it is a plain number (Nagios "alert outside 0..N"); a range such as
// "10:20" or "@5:" is valid but not exported.
struct PerfData {
  std::string label;
  double value = 0;
  std::string unit;
  std::optional<double> warning, critical, min, max;

  bool operator==(const PerfData&) const = default;
};

struct PerfDataList {
  std::vector<PerfData> items;
  size_t errors = 0;  // items skipped: malformed, duplicate label, or beyond kMaxPerfDataItems
};

// Bounds the number of series one plugin can create.
inline constexpr size_t kMaxPerfDataItems = 100;
inline constexpr size_t kMaxPerfDataLabelBytes = 128;

// Parses the perfdata part of a plugin's output: space-separated items, quoted
// labels with '' for a quote, "U" as an unknown value (skipped, not an error).
// Never throws on any input except std::bad_alloc.
PerfDataList parse_perfdata(std::string_view text);

// How a unit of measurement is exported.
enum class PerfKind { kSeconds, kBytes, kRatio, kPlain };
struct UnitScale {
  PerfKind kind;
  double factor;  // multiply to get the base unit
};
// s/ms/us → seconds; B/KB/MB/GB/TB (and KiB..TiB) → bytes, 1024-based as the
// monitoring-plugins compute them; % → ratio (/100); c, none and any other unit
// → plain, unconverted.
UnitScale unit_scale(std::string_view unit);

// A plugin's output split as Nagios does: the first line's text before '|' is
// the summary; perfdata follows that '|' and, in long output, the first '|' of
// a later line, up to the end.
struct PluginOutput {
  std::string_view summary;  // trimmed, not yet capped
  std::string perfdata;
};
PluginOutput split_plugin_output(std::string_view output);

}  // namespace wacht::probes
