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

// name{labels} value: the check's pre-rendered labels with up to two more
// merged in name order (as prometheus-cpp orders them).
void append_sample(std::string& out, std::string_view name, std::string_view suffix,
                   std::string_view labels, const std::vector<uint32_t>& starts,
                   std::string_view extra_name, std::string_view extra_value, std::string_view le,
                   double value) {
  out.append(name).append(suffix).push_back('{');
  auto emit_extra = [&](std::string_view k, std::string_view v, bool comma_after) {
    out.append(k).append("=\"");
    append_escaped(out, v);
    out.push_back('"');
    if (comma_after) out.push_back(',');
  };
  size_t split = labels.size();  // where the extra label goes
  if (!extra_name.empty()) {
    for (uint32_t at : starts) {
      std::string_view key = labels.substr(at, labels.find('=', at) - at);
      if (extra_name < key) {
        split = at;
        break;
      }
    }
  }
  if (extra_name.empty()) {
    out.append(labels);
  } else {
    out.append(labels.substr(0, split));
    if (split > 0 && split == labels.size()) out.push_back(',');
    emit_extra(extra_name, extra_value, split < labels.size());
    out.append(labels.substr(split));
  }
  if (!le.empty()) {
    if (!labels.empty() || !extra_name.empty()) out.push_back(',');
    emit_extra("le", le, false);
  }
  out.append("} ");
  append_value(out, value);
  out.push_back('\n');
}

}  // namespace

namespace {
constexpr std::string_view kCheckState = "wacht_check_state";
constexpr std::string_view kCheckStateHelp =
    "State of the check: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, 4 UNREACHABLE (a parent is "
    "down).";
}  // namespace

void Metrics::CheckSeries::render(std::string_view family, std::string& out) const {
  std::lock_guard lock(mutex_);
  for (const auto& g : gauges_) {
    if (g.def->name != family) continue;
    append_sample(out, g.def->name, "", labels_, label_starts_, g.def->label,
                  g.label ? std::string_view(*g.label) : std::string_view(), {}, g.value);
  }
  for (const auto& h : histograms_) {
    if (h.def->name != family) continue;
    uint64_t cumulative = 0;
    std::string le;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      le.clear();
      if (i < h.def->buckets.size())
        append_value(le, h.def->buckets[i]);
      else
        le = "+Inf";
      append_sample(out, h.def->name, "_bucket", labels_, label_starts_, h.def->label,
                    h.label_value, le, static_cast<double>(cumulative));
    }
    append_sample(out, h.def->name, "_sum", labels_, label_starts_, h.def->label, h.label_value, {},
                  h.sum);
    append_sample(out, h.def->name, "_count", labels_, label_starts_, h.def->label, h.label_value,
                  {}, static_cast<double>(h.count));
  }
  if (state_ >= 0 && family == kCheckState)
    append_sample(out, kCheckState, "", labels_, label_starts_, {}, {}, {}, state_);
}

// Family by family straight into one string: the first pass finds the
// families and the size, the second writes each family's samples from every
// check. No per-family copies of the text (which at 10,000 HTTP checks were
// another 19 MB per scrape, left in malloc's arenas afterwards).
std::string Metrics::render_checks() const {
  struct Family {
    std::string_view help;
    bool histogram;
  };
  std::map<std::string_view, Family> families;
  size_t estimate = 0;
  std::lock_guard lock(series_mutex_);
  for (const CheckSeries* c : series_) {
    std::lock_guard series_lock(c->mutex_);
    const size_t per_sample = c->labels_.size() + 48;
    for (const auto& g : c->gauges_) {
      families.try_emplace(g.def->name, Family{g.def->help, false});
      estimate += g.def->name.size() + per_sample;
    }
    for (const auto& h : c->histograms_) {
      families.try_emplace(h.def->name, Family{h.def->help, true});
      estimate += (h.counts.size() + 2) * (h.def->name.size() + per_sample + 16);
    }
    if (c->state_ >= 0) {
      families.try_emplace(kCheckState, Family{kCheckStateHelp, false});
      estimate += kCheckState.size() + per_sample;
    }
  }
  std::string out;
  out.reserve(estimate + families.size() * 256);
  for (const auto& [name, f] : families) {
    out.append("# HELP ").append(name).push_back(' ');
    out.append(f.help).push_back('\n');
    out.append("# TYPE ").append(name).append(f.histogram ? " histogram\n" : " gauge\n");
    for (const CheckSeries* c : series_) c->render(name, out);
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
  // cppcheck-suppress danglingLifetime ; ~CheckSeries takes itself out of series_
  series_.insert(s.get());
  return s;
}

Metrics::CheckSeries::CheckSeries(Metrics& m, Labels labels) : metrics_(m) {
  for (const auto& [k, v] : labels) {  // a std::map: sorted by name
    if (!labels_.empty()) labels_.push_back(',');
    label_starts_.push_back(static_cast<uint32_t>(labels_.size()));
    labels_.append(k).append("=\"");
    append_escaped(labels_, v);
    labels_.push_back('"');
  }
  labels_.shrink_to_fit();
  label_starts_.shrink_to_fit();
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
  {
    std::lock_guard lock(metrics_.series_mutex_);
    metrics_.series_.erase(this);
  }
  for (const Gauge& g : gauges_) metrics_.release_label(g.label);
}

const std::string* Metrics::acquire_label(const std::string& value) {
  if (value.empty()) return nullptr;
  std::lock_guard lock(label_pool_mutex_);
  auto it = label_pool_.try_emplace(value, 0).first;
  ++it->second;
  return &it->first;
}

void Metrics::release_label(const std::string* label) {
  if (!label) return;
  std::lock_guard lock(label_pool_mutex_);
  auto it = label_pool_.find(*label);
  if (it != label_pool_.end() && --it->second == 0) label_pool_.erase(it);
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
    // A probe reports the same samples in the same order run after run, so the
    // gauge at the next position is almost always the one. Only when it is not
    // (a sample came or went) are the gauges searched, and those the result
    // no longer reports are dropped (as blackbox shows the last probe's only).
    size_t next = 0;
    std::vector<char> seen;  // empty while every sample was in order
    auto same = [](const Gauge& g, const probes::MetricDef& def, const std::string& label) {
      return (g.def == &def || g.def->name == def.name) &&
             (g.label ? *g.label == label : label.empty());
    };
    auto put = [&](const probes::MetricDef& def, const std::string& label, double value) {
      if (seen.empty()) {
        if (next < gauges_.size() && gauges_[next].def == &def &&
            (gauges_[next].label ? *gauges_[next].label == label : label.empty())) {
          gauges_[next++].value = value;
          return;
        }
        seen.assign(gauges_.size(), 0);
        std::fill(seen.begin(), seen.begin() + static_cast<std::ptrdiff_t>(next), 1);
      }
      for (size_t i = 0; i < gauges_.size(); ++i) {
        if (same(gauges_[i], def, label)) {
          gauges_[i].value = value;
          seen[i] = 1;
          return;
        }
      }
      gauges_.push_back(Gauge{&def, metrics_.acquire_label(label), value});
      seen.push_back(1);
    };
    static const std::string kNoLabel;
    put(kProbeSuccess, kNoLabel, result.success ? 1 : 0);
    put(kProbeDuration, kNoLabel, result.duration_seconds);
    for (const auto& sample : result.samples) {
      if (!sample.def->buckets.empty())
        observe(*sample.def, sample.label_value, sample.value);
      else
        put(*sample.def, sample.label_value, sample.value);
    }
    if (seen.empty()) {
      for (size_t i = next; i < gauges_.size(); ++i) metrics_.release_label(gauges_[i].label);
      gauges_.resize(next);
    } else {
      size_t keep = 0;
      for (size_t i = 0; i < gauges_.size(); ++i) {
        if (seen[i])
          gauges_[keep++] = gauges_[i];
        else
          metrics_.release_label(gauges_[i].label);
      }
      gauges_.resize(keep);
    }
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
