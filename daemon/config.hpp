#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "alerts/check_state.hpp"
#include "alerts/grading.hpp"
#include "alerts/oncall.hpp"
#include "alerts/router.hpp"
#include "alerts/silences.hpp"
#include "alerts/smtp_notifier.hpp"
#include "alerts/templates.hpp"
#include "exporters/api_auth.hpp"
#include "probes/registry.hpp"
#include "runtime/diagnostics.hpp"
#include "runtime/toml_reader.hpp"

namespace wacht::config {

using Millis = std::chrono::milliseconds;

struct DaemonConfig {
  std::string listen_host = "127.0.0.1";
  uint16_t listen_port = 9915;
  std::string state_dir = "/var/lib/wacht";
  std::string log_level = "info";
  uint32_t max_concurrent_probes = 1000;
  uint32_t max_concurrent_plugins = 16;
  std::vector<std::string> include;
};

struct TenantConfig {
  std::string id;
  std::string name;
};

// One check with every default, tenant default and template applied.
struct CheckConfig {
  std::string id;
  const probes::ProbeType* type = nullptr;
  std::string target;
  std::string tenant;
  Millis interval{0};
  Millis timeout{0};
  runtime::StringPairs labels;  // the check's own labels, sorted by name
  std::shared_ptr<const probes::ProbeSpec> spec;
  alerts::StateConfig state;
  alerts::Thresholds thresholds;
  std::vector<std::string> depends_on;
  runtime::SourceLoc depends_loc;
  bool depends_all = false;
  std::string description;
  // Equal fingerprints mean an identical effective definition, so a reload
  // can keep the running check and its schedule.
  std::string fingerprint;
  runtime::SourceLoc loc;
};

struct AlertingConfig {
  std::string link;  // with {check}, {target}, {tenant}
  std::string timezone;
  std::string hostname;
  Millis retry_backoff{5000};
  Millis retry_max_backoff{600000};
  Millis max_age{24 * 3600 * 1000};
};

struct ReceiverConfig {
  std::string name;
  enum class Type { kEmail, kLog, kWebhook, kAlertmanager } type = Type::kLog;
  std::vector<std::string> to;
  // Email: the on-call person of this rotation is added to `to` when a
  // message is queued.
  std::string rotation;
  std::vector<std::string> urls;  // webhook: one; alertmanager: each instance of the cluster
  std::string token;              // bearer token, read from token_file
  bool tls_insecure = false;
  std::string tls_ca_file;
  Millis timeout{10000};
  Millis resend_interval{60000};  // alertmanager
  alerts::Templates templates;
  int per_minute = 0;
  runtime::SourceLoc loc;
};

struct ApiConfig {
  std::string tokens_file;  // empty: no write API
  exporters::ReadAccess read = exporters::ReadAccess::loopback;
  std::string external_url;  // where people reach wachtd, for acknowledgement links
  Millis ack_link_ttl{7 * 24 * 3600 * 1000LL};
  runtime::SourceLoc tokens_loc;
};

// The connectivity guard: when wachtd itself is cut off, one "monitoring
// blind" message instead of hundreds of alarms.
struct GuardConfig {
  std::vector<std::string> checks;  // all failing: blind
  int blind_percent = 0;            // this share of all checks failing: blind; 0 = off
  int min_checks = 10;              // ... counted only with at least this many checks
  std::vector<std::string> receivers;
  runtime::SourceLoc loc;
};

// A configured maintenance window: one-off (from/until) or recurring (windows).
struct MaintenanceConfig {
  std::string name;
  std::vector<alerts::Matcher> matchers;
  std::string comment;
  int64_t from_ms = 0, until_ms = 0;                  // one-off
  std::shared_ptr<const alerts::TimePeriod> windows;  // recurring
  runtime::SourceLoc loc;
};

struct OnCallConfig {
  std::map<std::string, alerts::Person> people;
  std::map<std::string, std::shared_ptr<const alerts::TimePeriod>> time_periods;
  std::map<std::string, std::shared_ptr<const alerts::Rotation>> rotations;
  std::map<std::string, std::vector<alerts::EscalationLevel>> escalations;
};

// Immutable once loaded; a reload builds a new one and swaps it in.
struct Config {
  std::string path;
  std::vector<std::string> files;  // the main file and every included file
  DaemonConfig daemon;
  std::vector<TenantConfig> tenants;
  std::vector<CheckConfig> checks;
  AlertingConfig alerting;
  alerts::SmtpSettings smtp;  // shared by every email receiver
  std::vector<ReceiverConfig> receivers;
  std::vector<alerts::RouteConfig> routes;  // the tree, flattened in order
  ApiConfig api;
  GuardConfig guard;
  OnCallConfig oncall;
  std::vector<MaintenanceConfig> maintenance;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null if there was any error
  runtime::Diagnostics diagnostics;
};

// Reads, validates and resolves a config file and its includes. Every problem
// is collected in the diagnostics (file:line:col with the offending line), not
// just the first one.
LoadResult load(const std::string& path);

// The documented keys of each config section, for the configuration reference.
struct Section {
  std::string_view name;  // "daemon", "check", "check (http)", ...
  std::string_view help;
  std::span<const runtime::KeySpec> keys;
};
std::vector<Section> sections();

}  // namespace wacht::config
