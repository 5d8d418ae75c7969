#pragma once

#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

typedef struct uv_loop_s uv_loop_t;

namespace wacht::runtime {
class CurlMulti;
}
namespace wacht::probes {
class IcmpService;
class ExecLimiter;
}  // namespace wacht::probes

namespace wacht::probes {

// Nagios states; the numeric values are the plugin exit codes and the value of
// wacht_check_state.
enum class State : int { kOk = 0, kWarning = 1, kCritical = 2, kUnknown = 3 };
std::string_view state_name(State s);

// A gauge a probe reports, defined once as a static constant next to the probe
// that fills it. The exporter turns each definition into a Prometheus family.
struct MetricDef {
  std::string_view name;
  std::string_view help;
  std::string_view label = {};  // name of one extra label (e.g. "phase"), or empty
  // Non-empty: a histogram with these upper bounds; each sample is one
  // observation and the series accumulate over runs (e.g. ICMP round trips).
  std::span<const double> buckets = {};
};

struct Sample {
  const MetricDef* def;
  double value;
  std::string label_value = {};
};

// The outcome of one probe run. A failure is data, not an exception: a refused
// connection is success=false with a summary saying so.
struct ProbeResult {
  bool success = false;
  State state = State::kCritical;
  std::string summary;  // one line for logs and notifications
  double duration_seconds = 0;
  bool timed_out = false;
  std::vector<Sample> samples;

  void add(const MetricDef& def, double value, std::string label_value = {}) {
    samples.push_back(Sample{&def, value, std::move(label_value)});
  }
};

using DoneCallback = std::function<void(ProbeResult)>;

// One check's prober. The scheduler owns it, calls start() once per run and
// never starts a run while one is in progress. `done` fires exactly once per
// start, asynchronously, on the loop thread, unless cancel() comes first; after
// cancel() or destruction it never fires. The scheduler, not the probe, owns
// interval and timeout.
class Probe {
 public:
  virtual ~Probe() = default;
  virtual void start(DoneCallback done) = 0;
  virtual void cancel() = 0;
  // What the running run is waiting for ("connecting", "waiting for response"),
  // for the summary of a timeout.
  virtual std::string_view phase() const = 0;
};

// Loop-wide services probes share.
struct ProbeContext {
  uv_loop_t* loop = nullptr;
  runtime::CurlMulti* curl = nullptr;
  IcmpService* icmp = nullptr;  // shared ICMP sockets; set when icmp checks exist
  ExecLimiter* exec = nullptr;  // cap on plugins running at once
};

// Type-specific settings parsed from a check's config. Each probe type derives
// its own; the registry's parse function creates it and its create function
// receives it back.
struct ProbeSpec {
  virtual ~ProbeSpec() = default;
};

}  // namespace wacht::probes
