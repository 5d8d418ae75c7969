#include "exporters/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <fmt/format.h>
#include <algorithm>
#include <cmath>
#include <iterator>

#include "exporters/process_collector.hpp"
#include "version.hpp"

namespace wacht::exporters {

// One metric family of the per-check series while a scrape renders it.
struct FamilyText {
  std::string_view help;
  bool histogram = false;
  std::string body;
};

namespace {

void append_escaped(std::string& out, std::string_view v) {
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
}

void append_value(std::string& out, double v) {
  if (std::isnan(v))
    out += "NaN";
  else if (std::isinf(v))
    out += v > 0 ? "+Inf" : "-Inf";
  else
    fmt::format_to(std::back_inserter(out), "{}", v);
}

// name{labels} value, with the check's labels and up to two more merged in
// name order (as prometheus-cpp orders them).
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   const std::vector<std::pair<std::string, std::string>>& labels,
                   std::string_view extra_name, std::string_view extra_value, std::string_view le,
                   double value) {
  out.append(name).append(suffix).push_back('{');
  bool first = true;
  auto emit = [&](std::string_view k, std::string_view v) {
    if (!first) out.push_back(',');
    first = false;
    out.append(k).append("=\"");
    append_escaped(out, v);
    out.push_back('"');
  };
  bool extra_done = extra_name.empty();
  for (const auto& [k, v] : labels) {
    if (!extra_done && extra_name < k) {
      emit(extra_name, extra_value);
      extra_done = true;
    }
    emit(k, v);
  }
  if (!extra_done) emit(extra_name, extra_value);
  if (!le.empty()) emit("le", le);
  out.append("} ");
  append_value(out, value);
  out.push_back('\n');
}

}  // namespace

void Metrics::CheckSeries::render(std::map<std::string_view, FamilyText>& out) const {
  std::lock_guard lock(mutex_);
  for (const auto& g : gauges_) {
    FamilyText& f = out[g.def->name];
    f.help = g.def->help;
    append_sample(f.body, g.def->name, "", labels_, g.def->label, g.label_value, {}, g.value);
  }
  for (const auto& h : histograms_) {
    FamilyText& f = out[h.def->name];
    f.help = h.def->help;
    f.histogram = true;
    uint64_t cumulative = 0;
    std::string le;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      le.clear();
      if (i < h.def->buckets.size())
        append_value(le, h.def->buckets[i]);
      else
        le = "+Inf";
      append_sample(f.body, h.def->name, "_bucket", labels_, h.def->label, h.label_value, le,
                    static_cast<double>(cumulative));
    }
    append_sample(f.body, h.def->name, "_sum", labels_, h.def->label, h.label_value, {}, h.sum);
    append_sample(f.body, h.def->name, "_count", labels_, h.def->label, h.label_value, {},
                  static_cast<double>(h.count));
  }
  if (state_ >= 0) {
    FamilyText& f = out["wacht_check_state"];
    f.help =
        "State of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 UNREACHABLE (a parent is "
        "down).";
    append_sample(f.body, "wacht_check_state", "", labels_, {}, {}, {}, state_);
  }
}

std::string Metrics::render_checks() const {
  std::map<std::string_view, FamilyText> families;
  {
    std::lock_guard lock(series_mutex_);
    for (const CheckSeries* c : series_) c->render(families);
  }
  std::string out;
  for (const auto& [name, f] : families) {
    out.append("# HELP ").append(name).push_back(' ');
    out.append(f.help).push_back('\n');
    out.append("# TYPE ").append(name).append(f.histogram ? " histogram\n" : " gauge\n");
    out += f.body;
  }
  return out;
}

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
  alerts_ = &BuildGauge()
                 .Name("wacht_alerts")
                 .Help(
                     "Checks by alert state: pending (soft problem), firing, unreachable, "
                     "flapping; of the firing ones, acknowledged and silenced.")
                 .Register(*registry_);
  for (const char* st :
       {"pending", "firing", "unreachable", "flapping", "acknowledged", "silenced"})
    alerts_->Add({{"state", st}});
  silences_ = &BuildGauge()
                   .Name("wacht_silences")
                   .Help(
                       "Silences by state (pending, active, expired), from the API and "
                       "maintenance windows.")
                   .Register(*registry_);
  for (const char* st : {"pending", "active", "expired"}) silences_->Add({{"state", st}});
  blind_ = &BuildGauge()
                .Name("wacht_blind")
                .Help("1 while the connectivity guard finds wachtd cut off and holds alerts back.")
                .Register(*registry_)
                .Add({});
  escalations_total_ = &BuildCounter()
                            .Name("wacht_escalations_total")
                            .Help("Messages that escalated an unacknowledged alert, by route.")
                            .Register(*registry_);
  digests_total_ = &BuildCounter()
                        .Name("wacht_storm_digests_total")
                        .Help("Digests the storm guard sent instead of single messages, by route.")
                        .Register(*registry_);
  pushes_total_ = &BuildCounter()
                       .Name("wacht_alertmanager_pushes_total")
                       .Help("Pushes to Alertmanager instances by receiver, URL and result.")
                       .Register(*registry_);
  acks_total_ = &BuildCounter()
                     .Name("wacht_acknowledgements_total")
                     .Help("Alerts acknowledged, by channel (api, link).")
                     .Register(*registry_);
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

void Metrics::set_acked_silenced(size_t acknowledged, size_t silenced) {
  alerts_->Add({{"state", "acknowledged"}}).Set(static_cast<double>(acknowledged));
  alerts_->Add({{"state", "silenced"}}).Set(static_cast<double>(silenced));
}

void Metrics::set_silences(size_t pending, size_t active, size_t expired) {
  silences_->Add({{"state", "pending"}}).Set(static_cast<double>(pending));
  silences_->Add({{"state", "active"}}).Set(static_cast<double>(active));
  silences_->Add({{"state", "expired"}}).Set(static_cast<double>(expired));
}

void Metrics::set_blind(bool blind) { blind_->Set(blind ? 1 : 0); }

void Metrics::escalated(const std::string& route) {
  counter(escalations_total_, {{"route", route}})->Increment();
}

void Metrics::digest_sent(const std::string& route) {
  counter(digests_total_, {{"route", route}})->Increment();
}

void Metrics::alertmanager_push(const std::string& receiver, const std::string& url, bool ok) {
  counter(pushes_total_, {{"receiver", receiver}, {"url", url}, {"result", ok ? "ok" : "error"}})
      ->Increment();
}

void Metrics::acknowledged(const std::string& channel) {
  counter(acks_total_, {{"channel", channel}})->Increment();
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
  return render_checks() + prometheus::TextSerializer().Serialize(families);
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
  std::unique_ptr<CheckSeries> s(new CheckSeries(*this, std::move(labels)));
  std::lock_guard lock(series_mutex_);
  series_.insert(s.get());
  return s;
}

Metrics::CheckSeries::CheckSeries(Metrics& m, Labels labels)
    : metrics_(m), labels_(labels.begin(), labels.end()) {
  Labels base{{"tenant", labels["tenant"]}, {"type", labels["type"]}};
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
  std::lock_guard lock(metrics_.series_mutex_);
  metrics_.series_.erase(this);
}

void Metrics::CheckSeries::set(const probes::MetricDef& def, const std::string& label_value,
                               double value) {
  for (auto& g : gauges_) {
    if ((g.def == &def || g.def->name == def.name) && g.label_value == label_value) {
      g.value = value;
      g.seen = true;
      return;
    }
  }
  gauges_.push_back(Gauge{&def, label_value, value, true});
}

void Metrics::CheckSeries::observe(const probes::MetricDef& def, const std::string& label_value,
                                   double value) {
  Histogram* h = nullptr;
  for (auto& x : histograms_)
    if ((x.def == &def || x.def->name == def.name) && x.label_value == label_value) h = &x;
  if (!h) {
    histograms_.push_back(
        Histogram{&def, label_value, std::vector<uint64_t>(def.buckets.size() + 1)});
    h = &histograms_.back();
  }
  size_t i = 0;
  while (i < def.buckets.size() && value > def.buckets[i]) ++i;
  ++h->counts[i];
  h->sum += value;
  ++h->count;
}

void Metrics::CheckSeries::set_state(int state) {
  std::lock_guard lock(mutex_);
  state_ = state;
}

void Metrics::CheckSeries::update(const probes::ProbeResult& result) {
  {
    std::lock_guard lock(mutex_);
    for (auto& g : gauges_) g.seen = false;
    set(kProbeSuccess, {}, result.success ? 1 : 0);
    set(kProbeDuration, {}, result.duration_seconds);
    for (const auto& sample : result.samples) {
      if (!sample.def->buckets.empty())
        observe(*sample.def, sample.label_value, sample.value);
      else
        set(*sample.def, sample.label_value, sample.value);
    }
    std::erase_if(gauges_, [](const Gauge& g) { return !g.seen; });
  }
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
