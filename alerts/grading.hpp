#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "probes/probe.hpp"

namespace wacht::alerts {

// Thresholds a check declares on top of what its probe decides. A probe
// result's own state (CRITICAL on failure, a plugin's exit code) is the
// starting point; thresholds can only make it worse.
struct Thresholds {
  // The run's duration; for ICMP rounds the median round-trip time instead
  // (the round's length is mostly the spacing between echoes).
  std::optional<std::chrono::milliseconds> latency_warning;
  std::optional<std::chrono::milliseconds> latency_critical;
  // Packet loss of an ICMP round, in percent: a WAN link that drops a third
  // of its packets is a problem even though some replies come back.
  std::optional<int> loss_warning_percent;
  std::optional<int> loss_critical_percent;
  // Days before the soonest certificate expiry; apply to checks that see TLS.
  int cert_warning_days = 21;
  int cert_critical_days = 7;
};

struct Grade {
  probes::State state;
  std::string summary;  // the probe's summary, plus why a threshold changed it
};

// `now_unix` is the wall clock in seconds (certificate dates are wall-clock).
Grade grade(const probes::ProbeResult& result, const Thresholds& t, double now_unix);

}  // namespace wacht::alerts
