#include "alerts/grading.hpp"

#include <fmt/format.h>

#include <cmath>

#include "probes/tls.hpp"
#include "runtime/duration.hpp"

namespace wacht::alerts {

namespace {

using probes::State;

int rank(State s) {
  // Worse states rank higher; UNKNOWN sits between WARNING and CRITICAL as in
  // Icinga's severity order for services.
  switch (s) {
    case State::kOk: return 0;
    case State::kWarning: return 1;
    case State::kUnknown: return 2;
    case State::kCritical: return 3;
  }
  return 3;
}

void worsen(Grade& g, State s, const std::string& why) {
  if (rank(s) > rank(g.state)) g.state = s;
  g.summary += (g.summary.empty() ? "" : "; ") + why;
}

}  // namespace

Grade grade(const probes::ProbeResult& result, const Thresholds& t, double now_unix) {
  Grade g{result.state, result.summary};
  if (result.success && g.state == State::kCritical) g.state = State::kOk;
  if (!result.success && g.state == State::kOk) g.state = State::kCritical;
  if (!result.success) return g;  // a failed run has no meaningful latency or certificate

  // ICMP rounds report their own loss and round-trip statistics.
  std::optional<double> loss, median_rtt;
  for (const auto& s : result.samples) {
    if (s.def->name == "wacht_icmp_packet_loss_ratio") loss = s.value;
    if (s.def->name == "wacht_icmp_rtt_seconds" && s.label_value == "median") median_rtt = s.value;
  }
  double seconds = median_rtt.value_or(result.duration_seconds);
  const char* what = median_rtt ? "round-trip time" : "took";
  auto ms = std::chrono::milliseconds(static_cast<int64_t>(std::llround(seconds * 1000)));
  if (t.latency_critical && ms >= *t.latency_critical) {
    worsen(g, State::kCritical,
           fmt::format("{} {} (critical at {})", what, runtime::format_duration(ms),
                       runtime::format_duration(*t.latency_critical)));
  } else if (t.latency_warning && ms >= *t.latency_warning) {
    worsen(g, State::kWarning,
           fmt::format("{} {} (warning at {})", what, runtime::format_duration(ms),
                       runtime::format_duration(*t.latency_warning)));
  }
  if (loss) {
    double percent = *loss * 100;
    if (t.loss_critical_percent && percent >= *t.loss_critical_percent) {
      worsen(g, State::kCritical,
             fmt::format("{:.3g}% loss (critical at {}%)", percent, *t.loss_critical_percent));
    } else if (t.loss_warning_percent && percent >= *t.loss_warning_percent) {
      worsen(g, State::kWarning,
             fmt::format("{:.3g}% loss (warning at {}%)", percent, *t.loss_warning_percent));
    }
  }

  for (const auto& s : result.samples) {
    if (s.def != &probes::tls::kEarliestCertExpiry &&
        s.def->name != probes::tls::kEarliestCertExpiry.name)
      continue;
    double days = (s.value - now_unix) / 86400.0;
    int whole = static_cast<int>(std::floor(days));
    if (days < t.cert_critical_days) {
      worsen(g, State::kCritical,
             days < 0 ? fmt::format("certificate expired {} days ago", -whole)
                      : fmt::format("certificate expires in {} days (critical below {})", whole,
                                    t.cert_critical_days));
    } else if (days < t.cert_warning_days) {
      worsen(g, State::kWarning,
             fmt::format("certificate expires in {} days (warning below {})", whole,
                         t.cert_warning_days));
    }
    break;
  }
  return g;
}

}  // namespace wacht::alerts
