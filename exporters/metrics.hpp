#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
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
    // the last probe's metrics); histogram samples accumulate. Also counts the
    // run in wacht_probes_total.
    void update(const probes::ProbeResult& result);
    // Counts a dropped run in wacht_scheduler_skipped_runs_total.
    void skipped();
    // wacht_check_state: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 UNREACHABLE.
    void set_state(int state);

   private:
    friend class Metrics;
    // 24 bytes: the label value is shared through Metrics' label pool.
    struct Gauge {
      const probes::MetricDef* def;
      const std::string* label;  // from the pool; null: no label value
      double value;
    };
    struct Histogram {
      const probes::MetricDef* def;
      std::string label_value;
      std::vector<uint64_t> counts;  // per bucket, not cumulative
      double sum = 0;
      uint64_t count = 0;
    };
    CheckSeries(Metrics& m, Labels labels);
    void observe(const probes::MetricDef& def, const std::string& label_value, double value);
    // Appends this check's samples of `family`.
    void render(std::string_view family, std::string& out) const;

    Metrics& metrics_;
    // The check's labels rendered once, sorted by name: k1="v1",k2="v2"; and
    // where each label starts in it, so a sample's own label (phase, le) can be
    // merged in name order without rendering the others again.
    std::string labels_;
    std::vector<uint32_t> label_starts_;
    // Per-check series live here rather than in prometheus-cpp families: they
    // cost a fraction of the memory, and removing a check is O(1) instead of
    // a linear search per series (quadratic over a reload or shutdown).
    mutable std::mutex mutex_;  // the loop writes, scrapes read
    std::vector<Gauge> gauges_;
    std::vector<Histogram> histograms_;
    int state_ = -1;
    prometheus::Counter* success_;
    prometheus::Counter* failure_;
    prometheus::Counter* timeout_;
    prometheus::Counter* skipped_;
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
  // On-call layer.
  void set_acked_silenced(size_t acknowledged, size_t silenced);
  void set_silences(size_t pending, size_t active, size_t expired);
  void set_blind(bool blind);
  void escalated(const std::string& route);
  void digest_sent(const std::string& route);
  void alertmanager_push(const std::string& receiver, const std::string& url, bool ok);
  void acknowledged(const std::string& channel);

 private:
  std::string render_checks() const;
  // Label values of per-check gauges ("connect", "TLS 1.3", perfdata labels)
  // kept once for all checks, with a count of the gauges using each.
  const std::string* acquire_label(const std::string& value);
  void release_label(const std::string* label);
  prometheus::Counter* counter(prometheus::Family<prometheus::Counter>* fam, const Labels& labels);

  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex series_mutex_;  // guards series_, not the series themselves
  std::unordered_set<CheckSeries*> series_;
  std::map<std::pair<void*, Labels>, prometheus::Counter*> counters_;
  std::mutex label_pool_mutex_;
  std::unordered_map<std::string, size_t> label_pool_;

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
  prometheus::Family<prometheus::Gauge>* alerts_;
  prometheus::Family<prometheus::Counter>* notifications_total_;
  prometheus::Family<prometheus::Gauge>* last_success_;
  std::map<std::string, prometheus::Gauge*> last_success_by_receiver_;
  prometheus::Gauge* outbox_pending_;
  prometheus::Gauge* outbox_oldest_;
  prometheus::Counter* state_write_errors_;
  prometheus::Counter* journal_errors_;
  prometheus::Family<prometheus::Gauge>* silences_;
  prometheus::Gauge* blind_;
  prometheus::Family<prometheus::Counter>* escalations_total_;
  prometheus::Family<prometheus::Counter>* digests_total_;
  prometheus::Family<prometheus::Counter>* pushes_total_;
  prometheus::Family<prometheus::Counter>* acks_total_;
  std::shared_ptr<class ProcessCollector> process_;
};

extern const probes::MetricDef kProbeSuccess;
extern const probes::MetricDef kProbeDuration;

}  // namespace wacht::exporters
