#include "exporters/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>

#include "exporters/process_collector.hpp"
#include "version.hpp"

namespace wacht::exporters {

const probes::MetricDef kProbeSuccess{"probe_success",
                                      "Displays whether or not the probe was a success"};
const probes::MetricDef kProbeDuration{"probe_duration_seconds",
                                       "Returns how long the probe took to complete in seconds"};

Metrics::Metrics()
    : registry_(std::make_shared<prometheus::Registry>()),
      process_(std::make_shared<ProcessCollector>()) {
  using namespace prometheus;
  BuildGauge()
      .Name("wacht_build_info")
      .Help("A metric with a constant '1' value labeled by version and revision of wachtd.")
      .Register(*registry_)
      .Add({{"version", kVersion}, {"revision", kRevision}})
      .Set(1);
  probes_total_ = &BuildCounter()
                       .Name("wacht_probes_total")
                       .Help("Probe runs finished, by result (success, failure, timeout).")
                       .Register(*registry_);
  skipped_total_ = &BuildCounter()
                        .Name("wacht_scheduler_skipped_runs_total")
                        .Help(
                            "Due runs dropped because the check's previous run was still in "
                            "flight or waiting for a slot.")
                        .Register(*registry_);
  checks_ = &BuildGauge()
                 .Name("wacht_checks")
                 .Help("Checks configured, by tenant and type.")
                 .Register(*registry_);
  reloads_total_ = &BuildCounter()
                        .Name("wacht_config_reloads_total")
                        .Help("Config loads (start and reloads), by result.")
                        .Register(*registry_);
  lag_ = &BuildHistogram()
              .Name("wacht_scheduler_lag_seconds")
              .Help("Delay between when a run was due and when its probe started.")
              .Register(*registry_)
              .Add({}, Histogram::BucketBoundaries{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  auto& scheduler = BuildGauge()
                        .Name("wacht_scheduler_probes")
                        .Help(
                            "Probes in flight (running) and due but waiting for a slot "
                            "under max_concurrent_probes (queued).")
                        .Register(*registry_);
  in_flight_ = &scheduler.Add({{"state", "running"}});
  queued_ = &scheduler.Add({{"state", "queued"}});
  reload_ok_ = &BuildGauge()
                    .Name("wacht_config_last_reload_successful")
                    .Help("Whether the last configuration reload attempt was successful.")
                    .Register(*registry_)
                    .Add({});
  reload_time_ = &BuildGauge()
                      .Name("wacht_config_last_reload_success_timestamp_seconds")
                      .Help("Timestamp of the last successful configuration reload.")
                      .Register(*registry_)
                      .Add({});
  check_state_ = &BuildGauge()
                      .Name("wacht_check_state")
                      .Help(
                          "State of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, "
                          "4 UNREACHABLE (a parent is down).")
                      .Register(*registry_);
  alerts_ = &BuildGauge()
                 .Name("wacht_alerts")
                 .Help(
                     "Checks by alert state: pending (soft problem), firing, unreachable, "
                     "flapping.")
                 .Register(*registry_);
  for (const char* st : {"pending", "firing", "unreachable", "flapping"})
    alerts_->Add({{"state", st}});
  notifications_total_ = &BuildCounter()
                              .Name("wacht_notifications_total")
                              .Help(
                                  "Delivery attempts by receiver and result (delivered, retry, "
                                  "rejected, expired).")
                              .Register(*registry_);
  last_success_ = &BuildGauge()
                       .Name("wacht_notification_last_success_timestamp_seconds")
                       .Help("When a notification was last delivered to the receiver.")
                       .Register(*registry_);
  outbox_pending_ = &BuildGauge()
                         .Name("wacht_outbox_pending")
                         .Help("Notifications in the outbox not yet delivered.")
                         .Register(*registry_)
                         .Add({});
  outbox_oldest_ = &BuildGauge()
                        .Name("wacht_outbox_oldest_age_seconds")
                        .Help("Age of the oldest undelivered notification, 0 if none.")
                        .Register(*registry_)
                        .Add({});
  state_write_errors_ = &BuildCounter()
                             .Name("wacht_state_write_errors_total")
                             .Help("Failed writes of the alert state snapshot (e.g. disk full).")
                             .Register(*registry_)
                             .Add({});
  journal_errors_ = &BuildCounter()
                         .Name("wacht_outbox_journal_errors_total")
                         .Help(
                             "Failed writes of the outbox journal; entries are kept in memory "
                             "and written again.")
                         .Register(*registry_)
                         .Add({});
}

Metrics::~Metrics() = default;

void Metrics::set_alerts(size_t pending, size_t firing, size_t unreachable, size_t flapping) {
  alerts_->Add({{"state", "pending"}}).Set(static_cast<double>(pending));
  alerts_->Add({{"state", "firing"}}).Set(static_cast<double>(firing));
  alerts_->Add({{"state", "unreachable"}}).Set(static_cast<double>(unreachable));
  alerts_->Add({{"state", "flapping"}}).Set(static_cast<double>(flapping));
}

void Metrics::notification_attempt(const std::string& receiver, const std::string& result,
                                   double unix_time) {
  counter(notifications_total_, {{"receiver", receiver}, {"result", result}})->Increment();
  if (result != "delivered") return;
  auto& g = last_success_by_receiver_[receiver];
  if (!g) g = &last_success_->Add({{"receiver", receiver}});
  g->Set(unix_time);
}

void Metrics::set_outbox(size_t pending, double oldest_age_seconds) {
  outbox_pending_->Set(static_cast<double>(pending));
  outbox_oldest_->Set(oldest_age_seconds);
}

void Metrics::state_write_failed() { state_write_errors_->Increment(); }
void Metrics::journal_write_failed() { journal_errors_->Increment(); }

std::string Metrics::serialize() const {
  auto families = registry_->Collect();
  auto more = process_->Collect();
  families.insert(families.end(), std::make_move_iterator(more.begin()),
                  std::make_move_iterator(more.end()));
  return prometheus::TextSerializer().Serialize(families);
}

prometheus::Family<prometheus::Gauge>& Metrics::probe_family(const probes::MetricDef& def) {
  auto it = probe_families_.find(def.name);
  if (it != probe_families_.end()) return *it->second;
  auto& fam = prometheus::BuildGauge()
                  .Name(std::string(def.name))
                  .Help(std::string(def.help))
                  .Register(*registry_);
  probe_families_.emplace(std::string(def.name), &fam);
  return fam;
}

prometheus::Family<prometheus::Histogram>& Metrics::histogram_family(const probes::MetricDef& def) {
  auto it = histogram_families_.find(def.name);
  if (it != histogram_families_.end()) return *it->second;
  auto& fam = prometheus::BuildHistogram()
                  .Name(std::string(def.name))
                  .Help(std::string(def.help))
                  .Register(*registry_);
  histogram_families_.emplace(std::string(def.name), &fam);
  return fam;
}

prometheus::Counter* Metrics::counter(prometheus::Family<prometheus::Counter>* fam,
                                      const Labels& labels) {
  auto key = std::make_pair(static_cast<void*>(fam), labels);
  auto it = counters_.find(key);
  if (it != counters_.end()) return it->second;
  auto* c = &fam->Add(labels);
  counters_.emplace(std::move(key), c);
  return c;
}

std::unique_ptr<Metrics::CheckSeries> Metrics::add_check(Labels labels) {
  return std::unique_ptr<CheckSeries>(new CheckSeries(*this, std::move(labels)));
}

Metrics::CheckSeries::CheckSeries(Metrics& m, Labels labels)
    : metrics_(m), labels_(std::move(labels)) {
  Labels base{{"tenant", labels_["tenant"]}, {"type", labels_["type"]}};
  auto with = [&](const char* result) {
    Labels l = base;
    l["result"] = result;
    return l;
  };
  success_ = m.counter(m.probes_total_, with("success"));
  failure_ = m.counter(m.probes_total_, with("failure"));
  timeout_ = m.counter(m.probes_total_, with("timeout"));
  skipped_ = m.counter(m.skipped_total_, base);
}

Metrics::CheckSeries::~CheckSeries() {
  for (auto& s : series_) s.family->Remove(s.gauge);
  for (auto& h : histograms_) h.family->Remove(h.histogram);
  if (state_) metrics_.check_state_->Remove(state_);
}

void Metrics::CheckSeries::set_state(int state) {
  if (!state_) state_ = &metrics_.check_state_->Add(labels_);
  state_->Set(state);
}

prometheus::Gauge& Metrics::CheckSeries::series(const probes::MetricDef& def,
                                                const std::string& label_value) {
  for (auto& s : series_) {
    if ((s.def == &def || s.def->name == def.name) && s.label_value == label_value) {
      s.seen = true;
      return *s.gauge;
    }
  }
  auto& fam = metrics_.probe_family(def);
  Labels l = labels_;
  if (!def.label.empty()) l[std::string(def.label)] = label_value;
  auto* g = &fam.Add(l);
  series_.push_back(Series{&def, label_value, &fam, g, true});
  return *g;
}

prometheus::Histogram& Metrics::CheckSeries::histogram(const probes::MetricDef& def,
                                                       const std::string& label_value) {
  for (auto& h : histograms_) {
    if ((h.def == &def || h.def->name == def.name) && h.label_value == label_value)
      return *h.histogram;
  }
  auto& fam = metrics_.histogram_family(def);
  Labels l = labels_;
  if (!def.label.empty()) l[std::string(def.label)] = label_value;
  auto* h =
      &fam.Add(l, prometheus::Histogram::BucketBoundaries(def.buckets.begin(), def.buckets.end()));
  histograms_.push_back(HistogramSeries{&def, label_value, &fam, h});
  return *h;
}

void Metrics::CheckSeries::update(const probes::ProbeResult& result) {
  for (auto& s : series_) s.seen = false;
  series(kProbeSuccess, {}).Set(result.success ? 1 : 0);
  series(kProbeDuration, {}).Set(result.duration_seconds);
  for (const auto& sample : result.samples) {
    // Histograms accumulate across runs; gauges show the latest run only.
    if (!sample.def->buckets.empty())
      histogram(*sample.def, sample.label_value).Observe(sample.value);
    else
      series(*sample.def, sample.label_value).Set(sample.value);
  }
  auto stale =
      std::partition(series_.begin(), series_.end(), [](const Series& s) { return s.seen; });
  for (auto it = stale; it != series_.end(); ++it) it->family->Remove(it->gauge);
  series_.erase(stale, series_.end());
  (result.timed_out ? timeout_ : result.success ? success_ : failure_)->Increment();
}

void Metrics::CheckSeries::skipped() { skipped_->Increment(); }

void Metrics::observe_lag(double seconds) { lag_->Observe(seconds); }

void Metrics::set_in_flight(size_t running, size_t queued) {
  in_flight_->Set(static_cast<double>(running));
  queued_->Set(static_cast<double>(queued));
}

void Metrics::set_checks(const std::map<std::pair<std::string, std::string>, size_t>& counts) {
  for (auto* g : check_counts_) checks_->Remove(g);
  check_counts_.clear();
  for (const auto& [key, n] : counts) {
    auto* g = &checks_->Add({{"tenant", key.first}, {"type", key.second}});
    g->Set(static_cast<double>(n));
    check_counts_.push_back(g);
  }
}

void Metrics::config_loaded(bool success, double unix_time) {
  reload_ok_->Set(success ? 1 : 0);
  if (success) reload_time_->Set(unix_time);
  counter(reloads_total_, {{"result", success ? "success" : "failure"}})->Increment();
}

}  // namespace wacht::exporters
