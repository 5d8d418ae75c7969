#include "alerts/grading.hpp"

#include <gtest/gtest.h>

#include "probes/tls.hpp"

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
using probes::State;

constexpr double kNow = 1.8e9;

probes::ProbeResult ok(double seconds, double cert_days = -1) {
  probes::ProbeResult r;
  r.success = true;
  r.state = State::kOk;
  r.summary = "HTTP 200 OK";
  r.duration_seconds = seconds;
  if (cert_days >= 0) r.add(probes::tls::kEarliestCertExpiry, kNow + cert_days * 86400);
  return r;
}

TEST(Grading, ThresholdsTurnResultsIntoStates) {
  Thresholds t;
  t.latency_warning = 500ms;
  t.latency_critical = 2s;
  struct {
    probes::ProbeResult result;
    State want;
    const char* summary;
  } cases[] = {
      {ok(0.1), State::kOk, "HTTP 200 OK"},
      {ok(0.6), State::kWarning, "HTTP 200 OK; took 600ms (warning at 500ms)"},
      {ok(2.5), State::kCritical, "HTTP 200 OK; took 2s500ms (critical at 2s)"},
      {ok(0.1, 100), State::kOk, "HTTP 200 OK"},
      {ok(0.1, 20.5), State::kWarning,
       "HTTP 200 OK; certificate expires in 20 days (warning below 21)"},
      {ok(0.1, 3.2), State::kCritical,
       "HTTP 200 OK; certificate expires in 3 days (critical below 7)"},
      {ok(0.1, 0), State::kCritical,
       "HTTP 200 OK; certificate expires in 0 days (critical below 7)"},
      {ok(0.6, 3.2), State::kCritical,
       "HTTP 200 OK; took 600ms (warning at 500ms); certificate expires in 3 days (critical below "
       "7)"},
  };
  for (const auto& c : cases) {
    Grade g = grade(c.result, t, kNow);
    EXPECT_EQ(g.state, c.want) << c.summary;
    EXPECT_EQ(g.summary, c.summary);
  }
}

// An ICMP round as the probe reports it: 5 echoes 200 ms apart.
probes::ProbeResult round(double loss, double median_rtt) {
  static const probes::MetricDef kLoss{"wacht_icmp_packet_loss_ratio", ""};
  static const probes::MetricDef kRtt{"wacht_icmp_rtt_seconds", "", "stat"};
  probes::ProbeResult r = ok(0.85);
  r.summary = "replies";
  r.add(kLoss, loss);
  r.add(kRtt, median_rtt / 2, "min");
  r.add(kRtt, median_rtt, "median");
  return r;
}

TEST(Grading, IcmpRoundsAreJudgedByLossAndMedianRoundTripTime) {
  Thresholds t;
  t.latency_warning = 50ms;
  t.latency_critical = 200ms;
  t.loss_warning_percent = 20;
  t.loss_critical_percent = 60;
  struct {
    probes::ProbeResult result;
    State want;
    const char* summary;
  } cases[] = {
      {round(0, 0.010), State::kOk, "replies"},
      {round(0.2, 0.010), State::kWarning, "replies; 20% loss (warning at 20%)"},
      {round(0.8, 0.010), State::kCritical, "replies; 80% loss (critical at 60%)"},
      {round(0, 0.060), State::kWarning, "replies; round-trip time 60ms (warning at 50ms)"},
      {round(0.4, 0.250), State::kCritical,
       "replies; round-trip time 250ms (critical at 200ms); 40% loss (warning at 20%)"},
  };
  for (const auto& c : cases) {
    Grade g = grade(c.result, t, kNow);
    EXPECT_EQ(g.state, c.want) << c.summary;
    EXPECT_EQ(g.summary, c.summary);
  }
}

TEST(Grading, AFailedRunIsCriticalWhateverItsTimings) {
  probes::ProbeResult r;
  r.success = false;
  r.state = State::kOk;  // a probe that forgot to set it
  r.summary = "connection refused";
  r.duration_seconds = 0.001;
  Grade g = grade(r, Thresholds{}, kNow);
  EXPECT_EQ(g.state, State::kCritical);
  EXPECT_EQ(g.summary, "connection refused");
}

TEST(Grading, AProbesOwnWarningIsKept) {
  probes::ProbeResult r = ok(0.1);
  r.state = State::kWarning;  // e.g. a plugin's exit code 1
  EXPECT_EQ(grade(r, Thresholds{}, kNow).state, State::kWarning);
}

}  // namespace
}  // namespace wacht::alerts
