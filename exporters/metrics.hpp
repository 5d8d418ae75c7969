#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "probes/probe.hpp"

namespace prometheus {
class Registry;
class Gauge;
class Counter;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace wacht::exporters {

using Labels = std::map<std::string, std::string>;

// Every metric family wacht exports, in one place. Probe families follow
// blackbox_exporter's names (declared as MetricDefs by the probes); what blackbox
// lacks is wacht_*. Written on the loop thread; prometheus-cpp makes scraping
// from the HTTP server's threads safe.
class Metrics {
 public:
  Metrics();
  ~Metrics();

  std::shared_ptr<prometheus::Registry> registry() const { return registry_; }
  // The full exposition text (registry plus process_* metrics).
  std::string serialize() const;

  // One check's series. Destroying it removes them, so a check removed by a
  // reload disappears from /metrics.
  class CheckSeries {
   public:
    ~CheckSeries();
    CheckSeries(const CheckSeries&) = delete;
    CheckSeries& operator=(const CheckSeries&) = delete;

    // Sets probe_success, probe_duration_seconds and the probe's samples; drops
    // series the latest result no longer reports (as blackbox, which shows only
    // the last probe's metrics).
    // Also counts the run in wacht_probes_total.
    void update(const probes::ProbeResult& result);
    // Counts a dropped run in wacht_scheduler_skipped_runs_total.
    void skipped();
    // wacht_check_state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 UNREACHABLE.
    void set_state(int state);

   private:
    friend class Metrics;
    struct Series {
      const probes::MetricDef* def;
      std::string label_value;
      prometheus::Family<prometheus::Gauge>* family;
      prometheus::Gauge* gauge;
      bool seen;
    };
    struct HistogramSeries {
      const probes::MetricDef* def;
      std::string label_value;
      prometheus::Family<prometheus::Histogram>* family;
      prometheus::Histogram* histogram;
    };
    prometheus::Histogram& histogram(const probes::MetricDef& def, const std::string& label_value);
    CheckSeries(Metrics& m, Labels labels);
    prometheus::Gauge& series(const probes::MetricDef& def, const std::string& label_value);

    Metrics& metrics_;
    Labels labels_;
    std::vector<Series> series_;
    std::vector<HistogramSeries> histograms_;
    prometheus::Counter* success_;
    prometheus::Counter* failure_;
    prometheus::Counter* timeout_;
    prometheus::Counter* skipped_;
    prometheus::Gauge* state_ = nullptr;
  };
  // `labels` must contain check, target, type and tenant.
  std::unique_ptr<CheckSeries> add_check(Labels labels);

  // Self-metrics.
  void observe_lag(double seconds);
  void set_in_flight(size_t running, size_t queued);
  // Replaces wacht_checks{tenant,type}.
  void set_checks(const std::map<std::pair<std::string, std::string>, size_t>& counts);
  void config_loaded(bool success, double unix_time);
  // Alerting.
  void set_alerts(size_t pending, size_t firing, size_t unreachable, size_t flapping);
  void notification_attempt(const std::string& receiver, const std::string& result,
                            double unix_time);
  void set_outbox(size_t pending, double oldest_age_seconds);
  void state_write_failed();
  void journal_write_failed();

 private:
  prometheus::Family<prometheus::Gauge>& probe_family(const probes::MetricDef& def);
  prometheus::Family<prometheus::Histogram>& histogram_family(const probes::MetricDef& def);
  prometheus::Counter* counter(prometheus::Family<prometheus::Counter>* fam, const Labels& labels);

  std::shared_ptr<prometheus::Registry> registry_;
  std::map<std::string, prometheus::Family<prometheus::Gauge>*, std::less<>> probe_families_;
  std::map<std::string, prometheus::Family<prometheus::Histogram>*, std::less<>>
      histogram_families_;
  std::map<std::pair<void*, Labels>, prometheus::Counter*> counters_;

  prometheus::Family<prometheus::Counter>* probes_total_;
  prometheus::Family<prometheus::Counter>* skipped_total_;
  prometheus::Family<prometheus::Gauge>* checks_;
  prometheus::Family<prometheus::Counter>* reloads_total_;
  prometheus::Histogram* lag_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* queued_;
  prometheus::Gauge* reload_ok_;
  prometheus::Gauge* reload_time_;
  std::vector<prometheus::Gauge*> check_counts_;
  prometheus::Family<prometheus::Gauge>* check_state_;
  prometheus::Family<prometheus::Gauge>* alerts_;
  prometheus::Family<prometheus::Counter>* notifications_total_;
  prometheus::Family<prometheus::Gauge>* last_success_;
  std::map<std::string, prometheus::Gauge*> last_success_by_receiver_;
  prometheus::Gauge* outbox_pending_;
  prometheus::Gauge* outbox_oldest_;
  prometheus::Counter* state_write_errors_;
  prometheus::Counter* journal_errors_;
  std::shared_ptr<class ProcessCollector> process_;
};

extern const probes::MetricDef kProbeSuccess;
extern const probes::MetricDef kProbeDuration;

}  // namespace wacht::exporters
