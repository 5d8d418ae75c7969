#include "config.hpp"

#include "runtime/files.hpp"

#include <glob.h>

#include <functional>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

namespace wacht::config {

using runtime::Diagnostics;
using runtime::KeySpec;
using runtime::SourceLoc;
using runtime::TableReader;

namespace {

constexpr KeySpec kTopKeys[] = {
    {"daemon", "table", "", "Process-wide settings; only in the main file."},
    {"defaults", "table", "", "Defaults for every check; only in the main file."},
    {"tenants", "table of tables", "", "The administrations checks belong to, by id."},
    {"templates", "table of tables", "", "Named sets of check keys that checks inherit."},
    {"check", "array of tables", "", "The checks."},
    {"alerting", "table", "", "How notifications look; only in the main file."},
    {"smtp", "table", "", "The mail server email receivers send through; only in the main file."},
    {"receivers", "table of tables", "", "Where notifications go, by name."},
    {"route", "array of tables", "", "Which alerts go to which receivers, tried in order."},
    {"api", "table", "", "The HTTP API: tokens and acknowledgement links; only in the main file."},
    {"guard", "table", "",
     "The connectivity guard (one \"monitoring blind\" message when wachtd is cut off); only "
     "in the main file."},
    {"people", "table of tables", "", "People of on-call rotations, by id."},
    {"time_periods", "table of tables", "",
     "Named times (business hours, nights, holidays) that routes and maintenance use."},
    {"rotations", "table of tables", "", "On-call rotations, by name."},
    {"escalations", "table of tables", "", "Escalation chains that routes name."},
    {"maintenance", "array of tables", "",
     "Maintenance windows (one-off or recurring) during which matching alerts are silenced."},
};

constexpr KeySpec kDaemonKeys[] = {
    {"listen", "string", "\"127.0.0.1:9915\"",
     "Address and port of the HTTP server for /metrics, /-/healthy and /-/ready. "
     "Use \"[::1]:9915\" for IPv6 or \"0.0.0.0:9915\" to listen on all addresses."},
    {"state_dir", "string", "\"/var/lib/wacht\"",
     "Directory for state that must survive restarts: alert states and the outbox of "
     "undelivered notifications."},
    {"log_level", "string", "\"info\"",
     "One of trace, debug, info, warn, error. --log-level overrides it."},
    {"max_concurrent_probes", "integer", "1000",
     "Most probes in flight at once; further due runs wait (and their lag shows in "
     "wacht_scheduler_lag_seconds)."},
    {"max_concurrent_plugins", "integer", "16",
     "Most exec plugins running at once; further runs wait for a slot (their wait counts "
     "against the check's timeout)."},
    {"include", "array of strings", "[]",
     "Glob patterns of further config files, relative to this file's directory, "
     "e.g. [\"conf.d/*.toml\"]. Included files may hold tenants, templates, checks, "
     "receivers and routes."},
};

// Settings of a check that [defaults], tenant defaults and templates can carry.
constexpr KeySpec kSettingKeys[] = {
    {"interval", "duration", "\"30s\"", "How often the check runs."},
    {"timeout", "duration", "\"10s\", at most 80% of the interval",
     "How long one run may take before it is cancelled and counted as failed; "
     "must be less than the interval."},
    {"max_attempts", "integer", "3",
     "Consecutive non-OK results before a problem is hard and notified (1 = at once)."},
    {"retry_interval", "duration", "\"10s\", at most the interval",
     "Interval between runs while a problem or a recovery is being confirmed (soft)."},
    {"recover_after", "integer", "1", "Consecutive OK results before a hard problem recovers."},
    {"flap_detection", "boolean", "true",
     "Detect flapping (frequent state changes): one notice, then quiet until it settles."},
    {"flap_threshold_high", "integer", "30",
     "Weighted share of state changes among the last 20 results, in percent, above which "
     "a check is flapping."},
    {"flap_threshold_low", "integer", "25",
     "Share of state changes in percent below which flapping ends."},
    {"latency_warning", "duration", "",
     "A successful run that takes this long or longer is WARNING; for icmp, a median "
     "round-trip time this long."},
    {"latency_critical", "duration", "",
     "A successful run that takes this long or longer is CRITICAL; for icmp, a median "
     "round-trip time this long."},
    {"loss_warning", "integer", "",
     "icmp: WARNING when this share of a round's echo requests, in percent, gets no reply."},
    {"loss_critical", "integer", "", "icmp: CRITICAL at this packet loss in percent."},
    {"cert_warning_days", "integer", "21",
     "WARNING when the soonest certificate expiry of a TLS check is fewer days away."},
    {"cert_critical_days", "integer", "7",
     "CRITICAL when the soonest certificate expiry is fewer days away."},
};

constexpr KeySpec kDefaultsKeys[] = {
    {"tenant", "string", "",
     "Tenant of checks that name none (useful when one config file serves one tenant)."},
    {"labels", "table of strings", "{}",
     "Labels added to every metric of the check; merged with the labels of tenant "
     "defaults, templates and the check itself (later ones win)."},
};

constexpr KeySpec kTenantKeys[] = {
    {"name", "string", "the tenant id", "Display name, e.g. \"Landkreis Ludwigslust-Parchim\"."},
    {"defaults", "table", "{}",
     "Defaults for this tenant's checks (labels and any check setting); they override "
     "[defaults]."},
};

constexpr KeySpec kTenantDefaultsKeys[] = {kDefaultsKeys[1]};

constexpr KeySpec kCheckKeys[] = {
    {"id", "string", "",
     "Unique name of the check (letters, digits, '.', '_', '-', ':'); the 'check' label."},
    {"type", "string", "", "Probe type: http, tcp, icmp, dns or exec."},
    {"target", "string", "",
     "What to probe; its form depends on the type: a URL for http, host:port for tcp, a host "
     "for icmp, the name to query for dns, free text (passed as {target}) for exec."},
    {"tenant", "string", "from [defaults]", "Id of a tenant from [tenants]; the 'tenant' label."},
    {"template", "string", "",
     "Name of a template from [templates] whose keys this check inherits."},
    {"labels", "table of strings", "{}", "Extra labels on the check's metrics."},
    {"depends_on", "array of strings", "[]",
     "Ids of the checks this one needs (its host, the WAN link of its site). While they "
     "are down this check is UNREACHABLE and notifies nothing."},
    {"depends_mode", "string", "\"any\"",
     "\"any\": unreachable when any parent is down; \"all\": only when all are (redundant "
     "links)."},
    {"description", "string", "", "What the check watches, shown in notifications."},
};

constexpr KeySpec kAlertingKeys[] = {
    {"link", "string", "",
     "Link shown in every notification, with {check}, {target} and {tenant} replaced, e.g. "
     "\"https://grafana.example.org/d/wacht?var-check={check}\"."},
    {"timezone", "string", "the system's",
     "Time zone for times in notifications, e.g. \"Europe/Berlin\"."},
    {"hostname", "string", "the host name", "Domain part of Message-IDs."},
    {"retry_backoff", "duration", "\"5s\"",
     "First wait before a failed delivery is tried again; doubles (with jitter) up to "
     "retry_max_backoff."},
    {"retry_max_backoff", "duration", "\"10m\"", "Longest wait between delivery attempts."},
    {"max_age", "duration", "\"24h\"",
     "How long a notification is retried before it is given up (logged and counted as "
     "expired)."},
};

constexpr KeySpec kSmtpKeys[] = {
    {"smarthost", "string", "", "Mail server as host:port, e.g. \"mail.example.org:587\"."},
    {"tls", "string", "\"starttls\"",
     "\"starttls\": STARTTLS is required (the default; never falls back to plain text), "
     "\"tls\": implicit TLS (port 465), \"none\": no encryption (only for a local relay)."},
    {"tls_insecure", "boolean", "false", "Skip verification of the server's certificate."},
    {"tls_ca_file", "string", "system trust store", "PEM file with CAs to verify the server."},
    {"username", "string", "", "User for SMTP AUTH; requires password_file."},
    {"password_file", "string", "",
     "File holding the SMTP password (one trailing newline ignored); read at load, never logged."},
    {"from", "string", "", "Sender, e.g. \"wacht <wacht@example.org>\"."},
    {"reply_to", "string", "", "Reply-To header, e.g. the operations desk."},
    {"hello", "string", "the host name", "Name sent with EHLO."},
    {"timeout", "duration", "\"30s\"", "Most time for one delivery attempt."},
};

constexpr KeySpec kReceiverKeys[] = {
    {"type", "string", "",
     "\"email\" (through [smtp]), \"webhook\" (Alertmanager's webhook JSON), \"alertmanager\" "
     "(push to Alertmanager's API v2) or \"log\" (a log line per message)."},
    {"to", "array of strings", "", "Recipients of an email receiver."},
    {"rotation", "string", "",
     "Email: the rotation (from [rotations]) whose on-call person also receives each message."},
    {"url", "string", "", "Webhook: the URL the JSON is POSTed to."},
    {"urls", "array of strings", "",
     "Alertmanager: base URLs of every instance of the cluster, e.g. "
     "[\"http://127.0.0.1:9093\"]."},
    {"token_file", "string", "",
     "Webhook and alertmanager: file with a bearer token for the Authorization header."},
    {"tls_insecure", "boolean", "false",
     "Webhook and alertmanager: skip certificate verification."},
    {"tls_ca_file", "string", "system trust store", "Webhook and alertmanager: PEM file with CAs."},
    {"timeout", "duration", "\"10s\"", "Webhook and alertmanager: most time for one request."},
    {"resend_interval", "duration", "\"1m\"",
     "Alertmanager: how often firing alerts are sent again (their endsAt is 4 intervals ahead, "
     "so Alertmanager resolves them by itself if wachtd stops)."},
    {"language", "string", "\"de\"", "Language of the shipped templates: \"de\" or \"en\"."},
    {"per_minute", "integer", "0 (unlimited)",
     "Most messages per minute to this receiver; more wait in the outbox, none is dropped."},
    {"subject", "string", "the language's",
     "Subject template; placeholders as documented in docs/configuration.md."},
    {"body", "string", "the language's", "Body template; {alerts} holds the alert blocks."},
    {"alert", "string", "the language's", "Template of one alert's block in the body."},
};

constexpr KeySpec kRouteKeys[] = {
    {"tenants", "array of strings", "[] (any)", "Tenants whose alerts this route takes."},
    {"severities", "array of strings", "[] (any)",
     "Severities it takes: \"warning\", \"critical\", \"unknown\"."},
    {"match", "table of strings", "{}", "Labels an alert must have with these values."},
    {"receivers", "array of strings", "", "Receivers (names from [receivers]) to notify."},
    {"group_by", "array of strings", "[\"tenant\", \"check\"]",
     "Labels whose values form a group; alerts of one group go out in one message."},
    {"group_wait", "duration", "\"30s\"",
     "How long a new group waits before its first message, to collect a burst."},
    {"group_interval", "duration", "\"5m\"",
     "Least time between messages about a group's changes."},
    {"repeat_interval", "duration", "\"4h\"", "How often a still-firing group is sent again."},
    {"send_resolved", "boolean", "true", "Send a message when alerts of the group recover."},
    {"continue", "boolean", "false",
     "After this route takes an alert, let the routes after it try too."},
    {"routes", "array of tables", "[]",
     "Child routes ([[route.routes]]), tried in order when this one matches; they inherit "
     "receivers, grouping, escalation and storm_limit. The alert stays with this route only "
     "if no child takes it."},
    {"active_during", "array of strings", "[] (always)",
     "Time periods (from [time_periods]) during which this route takes alerts; it is "
     "decided when an alert starts firing."},
    {"inactive_during", "array of strings", "[]",
     "Time periods during which this route takes no alerts."},
    {"escalation", "string", "",
     "Escalation chain (from [escalations]) for alerts nobody acknowledges; \"\" turns an "
     "inherited one off."},
    {"storm_limit", "integer", "0 (no limit)",
     "Most messages per minute for this route; beyond it, changes go out as one digest per "
     "minute."},
};

constexpr KeySpec kApiKeys[] = {
    {"tokens_file", "string", "",
     "File of API tokens, one \"name:token\" per line; names say who silenced or acknowledged "
     "what. Without it the write API answers 401."},
    {"read_access", "string", "\"loopback\"",
     "Who may read the API without a token: \"loopback\" (clients on 127.0.0.0/8 and ::1), "
     "\"token\" (nobody) or \"open\" (everyone)."},
    {"external_url", "string", "",
     "Base URL under which people reach wachtd's HTTP server (e.g. behind a reverse proxy); "
     "emails get acknowledgement links only when it is set."},
    {"ack_link_ttl", "duration", "\"7d\"", "How long an acknowledgement link in an email works."},
};

constexpr KeySpec kGuardKeys[] = {
    {"checks", "array of strings", "[]",
     "Checks of wachtd's own vantage point (its uplinks, the core router): when all of them "
     "fail, wachtd is blind."},
    {"blind_percent", "integer", "0 (off)",
     "Also blind when this share of all checks fails at once, in percent."},
    {"min_checks", "integer", "10", "blind_percent counts only with at least this many checks."},
    {"receivers", "array of strings", "",
     "Who gets the one \"monitoring blind\" message (and the all-clear)."},
};

constexpr KeySpec kPersonKeys[] = {
    {"name", "string", "the id", "Full name, shown in notifications and `wachtd --oncall`."},
    {"email", "string", "", "Address on-call messages go to."},
};

constexpr KeySpec kTimePeriodKeys[] = {
    {"timezone", "string", "\"UTC\"",
     "IANA time zone of the times and dates, e.g. \"Europe/Berlin\"."},
    {"days", "array of strings", "[] (every day)",
     "Weekdays, e.g. [\"mon-fri\"] or [\"sat\", \"sun\"]."},
    {"times", "array of strings", "[] (all day)",
     "Local time ranges on those days, e.g. [\"07:00-16:00\"]; \"22:00-06:00\" runs past "
     "midnight."},
    {"dates", "array of strings", "[]", "Whole days that are always in, e.g. [\"2026-12-24\"]."},
    {"exclude_dates", "array of strings", "[]",
     "Whole days that are never in, e.g. public holidays."},
    {"exclude", "array of strings", "[]", "Other time periods whose times are taken out."},
};

constexpr KeySpec kRotationKeys[] = {
    {"timezone", "string", "\"UTC\"", "Time zone of start, handovers and overrides."},
    {"people", "array of strings", "", "Person ids (from [people]) in the order they take over."},
    {"start", "string", "",
     "First handover, local time, e.g. \"2026-01-05T09:00\"; the first person takes over "
     "then and the shift repeats at the same wall-clock time, across daylight saving."},
    {"shift", "duration", "\"1w\"",
     "Length of a shift: whole days (\"1w\", \"1d\") or hours (\"12h\")."},
    {"override", "array of tables", "[]",
     "Holiday cover and swaps: [[rotations.<name>.override]] with person, from, until and "
     "comment; later ones win."},
};

constexpr KeySpec kOverrideKeys[] = {
    {"person", "string", "", "Who is on call instead."},
    {"from", "string", "", "Local start, e.g. \"2026-12-24T09:00\"."},
    {"until", "string", "", "Local end."},
    {"comment", "string", "", "Why, e.g. \"swap with Bernd\"."},
};

constexpr KeySpec kEscalationKeys[] = {
    {"level", "array of tables", "",
     "The levels in order: [[escalations.<name>.level]] with after (time since the first "
     "message) and receivers."},
};

constexpr KeySpec kLevelKeys[] = {
    {"after", "duration", "", "Time after the group's first message, if nobody acknowledged."},
    {"receivers", "array of strings", "", "Who is told at this level."},
};

constexpr KeySpec kMaintenanceKeys[] = {
    {"name", "string", "", "Unique name; the silence id is \"config:<name>\"."},
    {"matchers", "array of strings", "",
     "Label matchers as amtool writes them, all of which must match: "
     "[\"tenant=\\\"lup\\\"\", \"site=~\\\"hagenow|wittenburg\\\"\"]."},
    {"comment", "string", "", "What the maintenance is; shown in the API."},
    {"timezone", "string", "\"UTC\"", "Time zone of from, until and windows."},
    {"from", "string", "", "One-off: local start, e.g. \"2026-12-01T20:00\"."},
    {"until", "string", "", "One-off: local end."},
    {"windows", "array of strings", "",
     "Recurring: weekday and time range, e.g. [\"Sun 02:00-04:00\"] or [\"mon-fri 22:00-23:00\"]."},
    {"time_period", "string", "",
     "Recurring: a time period from [time_periods] instead of windows."},
};

constexpr Millis kDefaultInterval{30000};
constexpr Millis kDefaultTimeout{10000};
constexpr Millis kDefaultRetryInterval{10000};

const std::set<std::string, std::less<>> kReservedLabels = {
    "check",  "target", "type", "tenant",   "phase",    "version", "label",
    "result", "stat",   "le",   "quantile", "instance", "job"};

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool valid_id(std::string_view id) {
  if (id.empty()) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
           c == ':';
  });
}

bool parse_listen(std::string_view s, std::string& host, uint16_t& port) {
  size_t colon;
  if (s.starts_with("[")) {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return false;
    host = std::string(s.substr(1, close - 1));
    colon = close + 1;
  } else {
    colon = s.rfind(':');
    if (colon == std::string_view::npos || s.substr(0, colon).find(':') != std::string_view::npos)
      return false;
    host = std::string(s.substr(0, colon));
  }
  std::string_view p = s.substr(colon + 1);
  if (host.empty() || p.empty() || p.size() > 5) return false;
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v == 0 || v > 65535) return false;
  port = static_cast<uint16_t>(v);
  return true;
}

// A file named by `key`; relative paths are taken from the directory of the
// file the key is written in, as includes are.
std::optional<std::string> read_path(TableReader& r, std::string_view key) {
  auto path = r.get_string(key);
  if (!path || path->empty() || path->front() == '/') return path;
  SourceLoc at = r.loc(key);
  if (!at.file) return path;
  return (std::filesystem::path(*at.file).parent_path() / *path).lexically_normal().string();
}

std::optional<std::string> read_secret_file(TableReader& r, std::string_view key) {
  auto path = read_path(r, key);
  if (!path) return std::nullopt;
  std::string reason;
  auto secret = runtime::read_secret_file(*path, &reason);
  if (!secret) r.error(key, fmt::format("cannot read {} '{}': {}", key, *path, reason));
  return secret;
}

// A parsed file kept alive for the whole load: readers point into its nodes.
struct ParsedFile {
  std::string path;
  toml::table root;
};

class Loader {
 public:
  explicit Loader(Diagnostics& diag) : diag_(diag) {}

  std::shared_ptr<Config> run(const std::string& path);

 private:
  const toml::table* parse_file(const std::string& path, const SourceLoc& included_from);
  void read_top(const toml::table& root, bool main_file);
  void read_daemon(const toml::table& t);
  void read_tenants(const toml::node& n);
  void read_templates(const toml::node& n);
  void read_checks(const toml::node& n);
  void read_labels(const toml::table& layer, const std::string& context,
                   std::map<std::string, std::string>& out);
  void resolve_check(const toml::table& t);
  void read_settings(TableReader& r, CheckConfig& c);
  void read_alerting(const toml::table& t);
  void read_smtp(const toml::table& t);
  void read_receivers(const toml::node& n);
  void read_routes(const toml::node& n, int parent = -1);
  void collect_named(std::string_view section, const toml::node& n);
  void read_api(const toml::table& t);
  void read_guard();
  void read_oncall();
  void read_maintenance();
  std::shared_ptr<const runtime::TimeZone> read_timezone(TableReader& r);
  void check_topology();
  void check_routes();
  void check_receiver_names(const std::vector<std::string>& names, const SourceLoc& at,
                            const std::string& context);
  std::shared_ptr<const alerts::TimePeriod> find_time_period(const std::string& name,
                                                             const SourceLoc& at,
                                                             const std::string& context);

  Diagnostics& diag_;
  std::vector<std::unique_ptr<ParsedFile>> files_;
  std::shared_ptr<Config> config_ = std::make_shared<Config>();
  const toml::table* defaults_ = nullptr;
  std::map<std::string, const toml::table*, std::less<>> tenant_defaults_;
  std::map<std::string, std::pair<const toml::table*, SourceLoc>, std::less<>> tenants_;
  std::map<std::string, const toml::table*, std::less<>> templates_;
  std::vector<const toml::table*> checks_;
  std::map<std::string, SourceLoc> receiver_locs_;
  const toml::table* smtp_ = nullptr;
  // What routes name, resolved once every file is read.
  struct RouteMeta {
    std::string name;
    std::string escalation;
    SourceLoc escalation_loc, receivers_loc, tenants_loc, active_loc, inactive_loc;
    std::vector<std::string> active, inactive;
  };
  std::vector<RouteMeta> routes_meta_;
  // [people], [time_periods], [rotations], [escalations] from every file, by section and name.
  std::map<std::string, std::map<std::string, std::pair<const toml::table*, SourceLoc>>> named_;
  std::vector<const toml::table*> maintenance_;
  const toml::table* guard_ = nullptr;
  std::map<std::string, std::shared_ptr<const runtime::TimeZone>> zones_;
  std::map<std::string, std::vector<SourceLoc>> escalation_level_locs_;
  int top_routes_ = 0;
};

const toml::table* Loader::parse_file(const std::string& path, const SourceLoc& included_from) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    diag_.error(included_from,
                fmt::format("cannot read config file '{}': {}", path, std::strerror(errno)));
    return nullptr;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  auto file = std::make_unique<ParsedFile>();
  file->path = path;
  try {
    file->root = toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    diag_.add_source(e.source().path, text);
    diag_.error(runtime::to_loc(e.source()), fmt::format("syntax: {}", e.description()));
    return nullptr;
  }
  // Register the text under the path object toml++ put into every region.
  diag_.add_source(file->root.source().path ? file->root.source().path
                                            : std::make_shared<const std::string>(path),
                   std::move(text));
  config_->files.push_back(path);
  files_.push_back(std::move(file));
  return &files_.back()->root;
}

void Loader::read_top(const toml::table& root, bool main_file) {
  TableReader top(diag_, "top level", runtime::to_loc(root.source()));
  top.declare(kTopKeys);
  top.add_layer(root);
  top.finish();
  for (const auto& [k, v] : root) {
    std::string_view key = k.str();
    if (key == "daemon") {
      if (!main_file) {
        diag_.error(runtime::key_loc(k), "[daemon] is only allowed in the main config file");
      } else if (const auto* t = v.as_table()) {
        read_daemon(*t);
      } else {
        diag_.error(runtime::to_loc(v.source()), "'daemon' must be a table");
      }
    } else if (key == "defaults") {
      if (!main_file) {
        diag_.error(runtime::key_loc(k), "[defaults] is only allowed in the main config file");
      } else if (const auto* t = v.as_table()) {
        defaults_ = t;
        TableReader r(diag_, "[defaults]", runtime::to_loc(t->source()));
        r.declare(kDefaultsKeys);
        r.declare(kSettingKeys);
        r.add_layer(*t);
        CheckConfig scratch;
        read_settings(r, scratch);
        r.get_string("tenant");
        r.finish();
      } else {
        diag_.error(runtime::to_loc(v.source()), "'defaults' must be a table");
      }
    } else if (key == "tenants") {
      read_tenants(v);
    } else if (key == "templates") {
      read_templates(v);
    } else if (key == "check") {
      read_checks(v);
    } else if (key == "alerting" || key == "smtp" || key == "api" || key == "guard") {
      if (!main_file) {
        diag_.error(runtime::key_loc(k),
                    fmt::format("[{}] is only allowed in the main config file", key));
      } else if (const auto* t = v.as_table()) {
        if (key == "alerting") read_alerting(*t);
        if (key == "smtp") read_smtp(*t);
        if (key == "api") read_api(*t);
        if (key == "guard") guard_ = t;
      } else {
        diag_.error(runtime::to_loc(v.source()), fmt::format("'{}' must be a table", key));
      }
    } else if (key == "receivers") {
      read_receivers(v);
    } else if (key == "route") {
      read_routes(v);
    } else if (key == "people" || key == "time_periods" || key == "rotations" ||
               key == "escalations") {
      collect_named(key, v);
    } else if (key == "maintenance") {
      if (const auto* arr = v.as_array()) {
        for (const auto& el : *arr) {
          if (const auto* t = el.as_table())
            maintenance_.push_back(t);
          else
            diag_.error(runtime::to_loc(el.source()), "each [[maintenance]] must be a table");
        }
      } else {
        diag_.error(runtime::to_loc(v.source()),
                    "'maintenance' must be an array of tables: write [[maintenance]]");
      }
    }
  }
}

void Loader::collect_named(std::string_view section, const toml::node& n) {
  const auto* t = n.as_table();
  if (!t) {
    diag_.error(runtime::to_loc(n.source()),
                fmt::format("'{}' must be a table of tables: write [{}.<name>]", section, section));
    return;
  }
  auto& into = named_[std::string(section)];
  for (const auto& [k, v] : *t) {
    std::string name(k.str());
    const auto* tt = v.as_table();
    if (!tt) {
      diag_.error(runtime::to_loc(v.source()), fmt::format("{}.{} must be a table", section, name));
      continue;
    }
    if (!valid_id(name)) {
      diag_.error(runtime::key_loc(k),
                  fmt::format("name '{}' in [{}] may only contain letters, digits, '.', '_', '-' "
                              "and ':'",
                              name, section));
      continue;
    }
    if (auto prev = into.find(name); prev != into.end()) {
      diag_.error(runtime::key_loc(k), fmt::format("duplicate {}.{}", section, name));
      diag_.note(prev->second.second, "first defined here");
      continue;
    }
    into[name] = {tt, runtime::key_loc(k)};
  }
}

void Loader::read_api(const toml::table& t) {
  TableReader r(diag_, "[api]", runtime::to_loc(t.source()));
  r.declare(kApiKeys);
  r.add_layer(t);
  ApiConfig& a = config_->api;
  if (auto v = read_path(r, "tokens_file")) {
    a.tokens_file = *v;
    a.tokens_loc = r.loc("tokens_file");
    std::string error;
    if (!exporters::load_tokens(*v, &error)) r.error("tokens_file", error);
  }
  if (auto v = r.get_string("read_access")) {
    if (auto access = exporters::parse_read_access(*v))
      a.read = *access;
    else
      r.error("read_access", fmt::format("read_access must be \"loopback\", \"token\" or "
                                         "\"open\", not \"{}\"",
                                         *v));
  }
  if (auto v = r.get_string("external_url")) {
    if (!v->starts_with("http://") && !v->starts_with("https://"))
      r.error("external_url",
              fmt::format("external_url must be an http:// or https:// URL, not \"{}\"", *v));
    a.external_url = *v;
    while (a.external_url.ends_with('/')) a.external_url.pop_back();
  }
  if (auto v = r.get_duration("ack_link_ttl")) a.ack_link_ttl = *v;
  r.finish();
}

void Loader::read_guard() {
  if (!guard_) return;
  const toml::table& t = *guard_;
  TableReader r(diag_, "[guard]", runtime::to_loc(t.source()));
  r.declare(kGuardKeys);
  r.add_layer(t);
  GuardConfig& g = config_->guard;
  g.loc = runtime::to_loc(t.source());
  if (auto v = r.get_string_array("checks")) {
    std::set<std::string> ids;
    for (const auto& c : config_->checks) ids.insert(c.id);
    for (const auto& id : *v)
      if (!ids.contains(id)) r.error("checks", fmt::format("unknown check '{}'", id));
    g.checks = *v;
  }
  if (auto v = r.get_int("blind_percent", 0, 100)) g.blind_percent = static_cast<int>(*v);
  if (auto v = r.get_int("min_checks", 1, 1000000)) g.min_checks = static_cast<int>(*v);
  if (auto v = r.get_string_array("receivers")) {
    g.receivers = *v;
    g.loc = r.loc("receivers");
  }
  if (g.receivers.empty() && (!g.checks.empty() || g.blind_percent > 0))
    r.error(r.has("receivers") ? "receivers" : "checks",
            "needs 'receivers' for its \"monitoring blind\" message");
  r.finish();
}

void Loader::read_daemon(const toml::table& t) {
  TableReader r(diag_, "[daemon]", runtime::to_loc(t.source()));
  r.declare(kDaemonKeys);
  r.add_layer(t);
  DaemonConfig& d = config_->daemon;
  if (auto v = r.get_string("listen")) {
    if (!parse_listen(*v, d.listen_host, d.listen_port))
      r.error("listen", fmt::format("'listen' must be host:port or [ipv6]:port, not \"{}\"", *v));
  }
  if (auto v = r.get_string("state_dir")) {
    if (v->empty())
      r.error("state_dir", "'state_dir' must not be empty");
    else
      d.state_dir = *v;
  }
  if (auto v = r.get_string("log_level")) {
    static const std::vector<std::string_view> kLevels = {"trace", "debug", "info", "warn",
                                                          "error"};
    if (std::find(kLevels.begin(), kLevels.end(), *v) == kLevels.end()) {
      std::string hint = runtime::closest_match(*v, kLevels);
      r.error("log_level",
              fmt::format("unknown log level \"{}\"{}; use trace, debug, info, warn "
                          "or error",
                          *v, hint.empty() ? "" : " (did you mean \"" + hint + "\"?)"));
    } else {
      d.log_level = *v;
    }
  }
  if (auto v = r.get_int("max_concurrent_probes", 1, 1000000))
    d.max_concurrent_probes = static_cast<uint32_t>(*v);
  if (auto v = r.get_int("max_concurrent_plugins", 1, 10000))
    d.max_concurrent_plugins = static_cast<uint32_t>(*v);
  if (auto v = r.get_string_array("include")) d.include = *v;
  r.finish();
}

void Loader::read_tenants(const toml::node& n) {
  const auto* t = n.as_table();
  if (!t) {
    diag_.error(runtime::to_loc(n.source()), "'tenants' must be a table of tenant tables");
    return;
  }
  for (const auto& [k, v] : *t) {
    std::string id(k.str());
    SourceLoc at = runtime::key_loc(k);
    const auto* tt = v.as_table();
    if (!tt) {
      diag_.error(runtime::to_loc(v.source()), fmt::format("tenant '{}' must be a table", id));
      continue;
    }
    if (!valid_id(id)) {
      diag_.error(at, fmt::format("tenant id '{}' may only contain letters, digits, '.', '_', "
                                  "'-' and ':'",
                                  id));
      continue;
    }
    if (auto prev = tenants_.find(id); prev != tenants_.end()) {
      diag_.error(at, fmt::format("duplicate tenant '{}'", id));
      diag_.note(prev->second.second, "first defined here");
      continue;
    }
    TableReader r(diag_, fmt::format("tenant '{}'", id), runtime::to_loc(tt->source()));
    r.declare(kTenantKeys);
    r.add_layer(*tt);
    TenantConfig tenant{id, id};
    if (auto name = r.get_string("name")) tenant.name = *name;
    r.finish();
    if (const auto* d = tt->get("defaults")) {
      if (const auto* dt = d->as_table()) {
        TableReader dr(diag_, fmt::format("defaults of tenant '{}'", id),
                       runtime::to_loc(dt->source()));
        dr.declare(kTenantDefaultsKeys);
        dr.declare(kSettingKeys);
        dr.add_layer(*dt);
        CheckConfig scratch;
        read_settings(dr, scratch);
        dr.finish();
        tenant_defaults_[id] = dt;
      } else {
        diag_.error(runtime::to_loc(d->source()),
                    fmt::format("tenant '{}': 'defaults' must be a table", id));
      }
    }
    tenants_[id] = {tt, at};
    config_->tenants.push_back(std::move(tenant));
  }
}

void Loader::read_templates(const toml::node& n) {
  const auto* t = n.as_table();
  if (!t) {
    diag_.error(runtime::to_loc(n.source()), "'templates' must be a table of template tables");
    return;
  }
  for (const auto& [k, v] : *t) {
    std::string name(k.str());
    const auto* tt = v.as_table();
    if (!tt) {
      diag_.error(runtime::to_loc(v.source()), fmt::format("template '{}' must be a table", name));
      continue;
    }
    if (templates_.contains(name)) {
      diag_.error(runtime::key_loc(k), fmt::format("duplicate template '{}'", name));
      diag_.note(runtime::to_loc(templates_[name]->source()), "first defined here");
      continue;
    }
    // Validated in the context of each check that uses it: its keys depend on the type.
    templates_[name] = tt;
  }
}

void Loader::read_checks(const toml::node& n) {
  const auto* arr = n.as_array();
  if (!arr) {
    diag_.error(runtime::to_loc(n.source()),
                "'check' must be an array of tables: write each check as [[check]]");
    return;
  }
  for (const auto& el : *arr) {
    if (const auto* t = el.as_table())
      checks_.push_back(t);
    else
      diag_.error(runtime::to_loc(el.source()), "each [[check]] entry must be a table");
  }
}

void Loader::read_labels(const toml::table& layer, const std::string& context,
                         std::map<std::string, std::string>& out) {
  const toml::node* n = layer.get("labels");
  if (!n) return;
  const toml::table* t = n->as_table();
  if (!t) {
    diag_.error(runtime::to_loc(n->source()),
                fmt::format("{}: 'labels' must be a table of strings, e.g. labels = {{ site = "
                            "\"parchim\" }}",
                            context));
    return;
  }
  for (const auto& [k, v] : *t) {
    std::string name(k.str());
    if (!valid_label_name(name)) {
      diag_.error(
          runtime::key_loc(k),
          fmt::format("{}: '{}' is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, "
                      "not starting with '__')",
                      context, name));
      continue;
    }
    if (kReservedLabels.contains(name)) {
      diag_.error(runtime::key_loc(k),
                  fmt::format("{}: label '{}' is reserved; wacht sets it itself", context, name));
      continue;
    }
    if (!v.is_string()) {
      diag_.error(runtime::to_loc(v.source()),
                  fmt::format("{}: label '{}' must be a string", context, name));
      continue;
    }
    out[name] = *v.value<std::string>();
  }
}

void Loader::resolve_check(const toml::table& t) {
  SourceLoc at = runtime::to_loc(t.source());
  const toml::node* id_node = t.get("id");
  std::string id = id_node && id_node->is_string() ? *id_node->value<std::string>() : "";
  std::string context = id.empty() ? "check" : fmt::format("check '{}'", id);

  // Layers, lowest priority first: [defaults], tenant defaults, template, the check.
  const toml::table* tmpl = nullptr;
  if (const toml::node* tn = t.get("template")) {
    if (auto name = tn->value<std::string>(); name && tn->is_string()) {
      auto it = templates_.find(*name);
      if (it == templates_.end()) {
        std::vector<std::string_view> names;
        for (const auto& [n, _] : templates_) names.push_back(n);
        std::string hint = runtime::closest_match(*name, names);
        diag_.error(runtime::to_loc(tn->source(), static_cast<unsigned>(name->size() + 2)),
                    fmt::format("{}: unknown template '{}'{}", context, *name,
                                hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      } else {
        tmpl = it->second;
        if (tmpl->contains("template"))
          diag_.error(runtime::to_loc(tmpl->get("template")->source()),
                      "templates cannot inherit from other templates");
        if (tmpl->contains("id"))
          diag_.error(runtime::to_loc(tmpl->get("id")->source()),
                      "a template cannot set 'id'; every check needs its own");
      }
    }
  }

  auto string_from = [](const toml::table* layer, std::string_view key) -> const toml::node* {
    if (!layer) return nullptr;
    const toml::node* n = layer->get(key);
    return n && n->is_string() ? n : nullptr;
  };
  const toml::node* tenant_node = string_from(&t, "tenant");
  if (!tenant_node) tenant_node = string_from(tmpl, "tenant");
  if (!tenant_node) tenant_node = string_from(defaults_, "tenant");
  const toml::table* tenant_defaults = nullptr;
  std::string tenant;
  if (tenant_node) {
    tenant = *tenant_node->value<std::string>();
    if (auto it = tenant_defaults_.find(tenant); it != tenant_defaults_.end())
      tenant_defaults = it->second;
  }

  TableReader r(diag_, context, at);
  r.declare(kCheckKeys);
  r.declare(kSettingKeys);
  // Layers, lowest priority first, each named as its problems are reported:
  // once, where they were written, however many checks inherit them.
  const std::pair<const toml::table*, std::string> layers[] = {
      {defaults_, "[defaults]"},
      {tenant_defaults, fmt::format("defaults of tenant '{}'", tenant)},
      {tmpl, tmpl ? fmt::format("template '{}'", *t.get("template")->value<std::string>()) : ""},
      {&t, context}};
  std::map<std::string, std::string> labels;
  for (const auto& [layer, origin] : layers) {
    if (!layer) continue;
    if (layer == &t)
      r.add_layer(t);
    else if (layer == tmpl)
      r.add_layer(*tmpl, origin);
    else
      r.add_layer(*layer, kSettingKeys, origin);
    read_labels(*layer, origin, labels);
  }

  CheckConfig c;
  c.loc = at;
  c.id = id;
  if (!t.contains("id")) {
    diag_.error(at, "check: missing 'id'");
  } else if (auto v = r.get_string("id")) {
    if (!valid_id(*v))
      r.error("id",
              fmt::format("id \"{}\" may only contain letters, digits, '.', '_', '-' and ':'", *v));
  }
  read_settings(r, c);
  if (auto v = r.get_string_array("depends_on")) c.depends_on = *v;
  c.depends_loc = r.loc("depends_on");
  if (auto v = r.get_string("depends_mode")) {
    if (*v == "all")
      c.depends_all = true;
    else if (*v != "any")
      r.error("depends_mode",
              fmt::format("depends_mode must be \"any\" or \"all\", not \"{}\"", *v));
  }
  if (auto v = r.get_string("description")) c.description = *v;

  r.get_string("template");
  r.get_string_table("labels");  // type-checked here; merged across layers above
  c.labels.assign(labels.begin(), labels.end());

  if (tenant_node) {
    r.get_string("tenant");
    if (!tenants_.contains(tenant)) {
      std::vector<std::string_view> names;
      for (const auto& [n, _] : tenants_) names.push_back(n);
      std::string hint = runtime::closest_match(tenant, names);
      diag_.error(runtime::to_loc(tenant_node->source(), static_cast<unsigned>(tenant.size() + 2)),
                  fmt::format("{}: unknown tenant '{}'{}", context, tenant,
                              hint.empty() ? "; declare it under [tenants." + tenant + "]"
                                           : "; did you mean '" + hint + "'?"));
    }
    c.tenant = tenant;
  } else if (r.has("tenant")) {
    r.get_string("tenant");  // reports the type error
  } else {
    diag_.error(at, fmt::format("{}: missing 'tenant' (set it here, in the template or in "
                                "[defaults])",
                                context));
  }

  std::optional<std::string> target = r.get_string("target");
  if (!target) {
    if (!r.has("target")) diag_.error(at, fmt::format("{}: missing 'target'", context));
  } else {
    c.target = *target;
  }

  std::optional<std::string> type = r.get_string("type");
  if (!type) {
    if (!r.has("type")) diag_.error(at, fmt::format("{}: missing 'type'", context));
    r.finish();
    return;
  }
  c.type = probes::find_probe_type(*type);
  if (!c.type) {
    std::vector<std::string_view> names;
    for (const auto& pt : probes::probe_types()) names.push_back(pt.name);
    std::string hint = runtime::closest_match(*type, names);
    std::string all;
    for (auto n : names) all += (all.empty() ? "" : ", ") + std::string(n);
    r.error("type", fmt::format("unknown probe type \"{}\"{}", *type,
                                hint.empty() ? "; known types: " + all
                                             : "; did you mean \"" + hint + "\"?"));
    r.finish();
    return;
  }
  r.declare(c.type->keys);
  if (target) c.spec = c.type->parse(r, *target);
  r.finish();

  std::string labels_text;
  for (const auto& [k, v] : c.labels) labels_text += k + "=" + v + ";";
  c.fingerprint = fmt::format("{}|{}|{}|{}|{}\n{}", c.tenant, c.interval.count(), c.timeout.count(),
                              labels_text, c.target, r.fingerprint());
  if (c.spec) config_->checks.push_back(std::move(c));
}

void Loader::read_settings(TableReader& r, CheckConfig& c) {
  // Interval and timeout come from the most specific layer that sets them; an
  // unset timeout follows Prometheus' scrape_timeout: never beyond the interval.
  c.interval = r.get_duration("interval").value_or(kDefaultInterval);
  auto timeout = r.get_duration("timeout");
  c.timeout = timeout.value_or(std::min(kDefaultTimeout, c.interval * 8 / 10));
  if (c.interval < Millis(100)) {
    r.error("interval", "interval must be at least 100ms");
  } else if (c.timeout <= Millis(0)) {
    r.error("timeout", "timeout must be positive");
  } else if (c.timeout >= c.interval) {
    r.error(r.has("timeout") ? "timeout" : "interval",
            fmt::format("timeout ({}) must be less than interval ({})",
                        runtime::format_duration(c.timeout), runtime::format_duration(c.interval)));
    if (r.has("timeout") && r.has("interval")) diag_.note(r.loc("interval"), "interval set here");
  }
  c.state.interval = c.interval;
  c.state.retry_interval =
      std::min(r.get_duration("retry_interval").value_or(kDefaultRetryInterval), c.interval);
  if (c.state.retry_interval < Millis(100))
    r.error("retry_interval", "retry_interval must be at least 100ms");
  if (auto v = r.get_int("max_attempts", 1, 100)) c.state.max_attempts = static_cast<int>(*v);
  if (auto v = r.get_int("recover_after", 1, 100)) c.state.recover_after = static_cast<int>(*v);
  if (auto v = r.get_bool("flap_detection")) c.state.flap_detection = *v;
  auto high = r.get_int("flap_threshold_high", 1, 100);
  auto low = r.get_int("flap_threshold_low", 0, 100);
  if (high) c.state.flap_high = static_cast<double>(*high) / 100;
  if (low) c.state.flap_low = static_cast<double>(*low) / 100;
  if (c.state.flap_low > c.state.flap_high)
    r.error(low ? "flap_threshold_low" : "flap_threshold_high",
            "flap_threshold_low must not be above flap_threshold_high");
  c.thresholds.latency_warning = r.get_duration("latency_warning");
  c.thresholds.latency_critical = r.get_duration("latency_critical");
  if (c.thresholds.latency_warning && c.thresholds.latency_critical &&
      *c.thresholds.latency_warning > *c.thresholds.latency_critical)
    r.error("latency_warning", "latency_warning must not be above latency_critical");
  if (auto v = r.get_int("loss_warning", 1, 100))
    c.thresholds.loss_warning_percent = static_cast<int>(*v);
  if (auto v = r.get_int("loss_critical", 1, 100))
    c.thresholds.loss_critical_percent = static_cast<int>(*v);
  if (c.thresholds.loss_warning_percent && c.thresholds.loss_critical_percent &&
      *c.thresholds.loss_warning_percent > *c.thresholds.loss_critical_percent)
    r.error("loss_warning", "loss_warning must not be above loss_critical");
  if (auto v = r.get_int("cert_warning_days", 0, 3650))
    c.thresholds.cert_warning_days = static_cast<int>(*v);
  if (auto v = r.get_int("cert_critical_days", 0, 3650))
    c.thresholds.cert_critical_days = static_cast<int>(*v);
  if (c.thresholds.cert_critical_days > c.thresholds.cert_warning_days)
    r.error(r.has("cert_critical_days") ? "cert_critical_days" : "cert_warning_days",
            "cert_critical_days must not be above cert_warning_days");
}

void Loader::read_alerting(const toml::table& t) {
  TableReader r(diag_, "[alerting]", runtime::to_loc(t.source()));
  r.declare(kAlertingKeys);
  r.add_layer(t);
  if (auto v = r.get_string("link")) config_->alerting.link = *v;
  if (auto v = r.get_string("timezone")) {
    if (v->empty() || (!std::filesystem::exists("/usr/share/zoneinfo/" + *v) && *v != "UTC"))
      r.error("timezone", fmt::format("unknown time zone \"{}\" (see /usr/share/zoneinfo)", *v));
    else
      config_->alerting.timezone = *v;
  }
  if (auto v = r.get_string("hostname")) config_->alerting.hostname = *v;
  if (auto v = r.get_duration("retry_backoff")) config_->alerting.retry_backoff = *v;
  if (auto v = r.get_duration("retry_max_backoff")) config_->alerting.retry_max_backoff = *v;
  if (auto v = r.get_duration("max_age")) config_->alerting.max_age = *v;
  if (config_->alerting.retry_backoff < Millis(10))
    r.error("retry_backoff", "retry_backoff must be at least 10ms");
  if (config_->alerting.retry_max_backoff < config_->alerting.retry_backoff)
    r.error("retry_max_backoff", "retry_max_backoff must not be below retry_backoff");
  r.finish();
}

void Loader::read_smtp(const toml::table& t) {
  smtp_ = &t;
  TableReader r(diag_, "[smtp]", runtime::to_loc(t.source()));
  r.declare(kSmtpKeys);
  r.add_layer(t);
  alerts::SmtpSettings& s = config_->smtp;
  if (auto v = r.get_string("smarthost")) {
    std::string host;
    uint16_t port = 0;
    if (!parse_listen(*v, host, port))
      r.error("smarthost", fmt::format("smarthost must be host:port, not \"{}\"", *v));
    s.host = host;
    s.port = port;
  }
  if (auto v = r.get_string("tls")) {
    if (*v == "starttls")
      s.tls = alerts::SmtpSettings::Tls::kStartTls;
    else if (*v == "tls")
      s.tls = alerts::SmtpSettings::Tls::kImplicit;
    else if (*v == "none")
      s.tls = alerts::SmtpSettings::Tls::kNone;
    else
      r.error("tls", fmt::format("tls must be \"starttls\", \"tls\" or \"none\", not \"{}\"", *v));
  }
  if (auto v = r.get_bool("tls_insecure")) s.tls_insecure = *v;
  if (auto v = r.get_string("tls_ca_file")) s.tls_ca_file = *v;
  if (auto v = r.get_string("username")) s.username = *v;
  if (auto v = read_secret_file(r, "password_file")) s.password = *v;
  if (!s.username.empty() && !r.has("password_file"))
    r.error("username", "username needs password_file");
  if (auto v = r.get_string("from")) s.from = *v;
  if (auto v = r.get_string("reply_to")) s.reply_to = *v;
  if (auto v = r.get_string("hello")) s.hello_name = *v;
  if (auto v = r.get_duration("timeout")) s.timeout = *v;
  r.finish();
}

void Loader::read_receivers(const toml::node& n) {
  const auto* t = n.as_table();
  if (!t) {
    diag_.error(runtime::to_loc(n.source()), "'receivers' must be a table of receiver tables");
    return;
  }
  for (const auto& [k, v] : *t) {
    std::string name(k.str());
    const auto* rt = v.as_table();
    if (!rt) {
      diag_.error(runtime::to_loc(v.source()), fmt::format("receiver '{}' must be a table", name));
      continue;
    }
    if (receiver_locs_.contains(name)) {
      diag_.error(runtime::key_loc(k), fmt::format("duplicate receiver '{}'", name));
      diag_.note(receiver_locs_[name], "first defined here");
      continue;
    }
    receiver_locs_[name] = runtime::key_loc(k);
    TableReader r(diag_, fmt::format("receiver '{}'", name), runtime::to_loc(rt->source()));
    r.declare(kReceiverKeys);
    r.add_layer(*rt);
    ReceiverConfig rc;
    rc.name = name;
    rc.loc = runtime::key_loc(k);
    std::string type = r.get_string("type").value_or("");
    using Type = ReceiverConfig::Type;
    static const std::map<std::string, Type, std::less<>> kTypes = {
        {"email", Type::kEmail},
        {"log", Type::kLog},
        {"webhook", Type::kWebhook},
        {"alertmanager", Type::kAlertmanager}};
    if (auto it = kTypes.find(type); it != kTypes.end())
      rc.type = it->second;
    else if (!r.has("type"))
      diag_.error(rc.loc, fmt::format("receiver '{}': missing 'type' (\"email\", \"webhook\", "
                                      "\"alertmanager\" or \"log\")",
                                      name));
    else
      r.error("type", fmt::format("type must be \"email\", \"webhook\", \"alertmanager\" or "
                                  "\"log\", not \"{}\"",
                                  type));
    // Each key belongs to some types; one given to another type is a mistake.
    auto only_for = [&](std::string_view key, std::initializer_list<Type> types,
                        std::string_view what) {
      if (r.has(key) && r.has("type") &&
          std::find(types.begin(), types.end(), rc.type) == types.end())
        r.error(key, fmt::format("'{}' is only for {} receivers", key, what));
    };
    only_for("to", {Type::kEmail}, "email");
    only_for("rotation", {Type::kEmail}, "email");
    only_for("url", {Type::kWebhook}, "webhook");
    only_for("urls", {Type::kAlertmanager}, "alertmanager");
    for (const char* key : {"token_file", "tls_insecure", "tls_ca_file", "timeout"})
      only_for(key, {Type::kWebhook, Type::kAlertmanager}, "webhook and alertmanager");
    only_for("resend_interval", {Type::kAlertmanager}, "alertmanager");
    if (auto v = r.get_string_array("to")) rc.to = *v;
    if (auto v = r.get_string("rotation")) rc.rotation = *v;
    if (rc.type == Type::kEmail && rc.to.empty() && rc.rotation.empty())
      r.error(r.has("to") ? "to" : "type",
              "an email receiver needs an address in 'to' or a 'rotation'");
    auto check_url = [&](std::string_view key, const std::string& url) {
      if (!url.starts_with("http://") && !url.starts_with("https://"))
        r.error(key, fmt::format("'{}' must be an http:// or https:// URL, not \"{}\"", key, url));
    };
    if (auto v = r.get_string("url")) {
      check_url("url", *v);
      rc.urls = {*v};
    } else if (rc.type == Type::kWebhook) {
      r.error("type", "a webhook receiver needs a 'url'");
    }
    if (auto v = r.get_string_array("urls")) {
      for (const auto& u : *v) check_url("urls", u);
      rc.urls = *v;
      if (v->empty()) r.error("urls", "'urls' needs at least one Alertmanager URL");
    } else if (rc.type == Type::kAlertmanager) {
      r.error("type", "an alertmanager receiver needs 'urls'");
    }
    if (auto v = read_secret_file(r, "token_file")) rc.token = *v;
    if (auto v = r.get_bool("tls_insecure")) rc.tls_insecure = *v;
    if (auto v = r.get_string("tls_ca_file")) rc.tls_ca_file = *v;
    if (auto v = r.get_duration("timeout")) rc.timeout = *v;
    if (auto v = r.get_duration("resend_interval")) {
      rc.resend_interval = *v;
      if (*v < Millis(1000)) r.error("resend_interval", "resend_interval must be at least 1s");
    }
    std::string lang = r.get_string("language").value_or("de");
    if (!alerts::known_language(lang)) {
      r.error("language", fmt::format("language must be \"de\" or \"en\", not \"{}\"", lang));
      lang = "de";
    }
    rc.templates = alerts::builtin_templates(lang);
    if (auto v = r.get_string("subject")) rc.templates.subject = *v;
    if (auto v = r.get_string("body")) rc.templates.body = *v;
    if (auto v = r.get_string("alert")) rc.templates.alert = *v;
    if (auto v = r.get_int("per_minute", 0, 100000)) rc.per_minute = static_cast<int>(*v);
    r.finish();
    config_->receivers.push_back(std::move(rc));
  }
}

void Loader::read_routes(const toml::node& n, int parent) {
  const auto* arr = n.as_array();
  std::string where = parent < 0 ? "route" : routes_meta_[static_cast<size_t>(parent)].name;
  if (!arr) {
    diag_.error(runtime::to_loc(n.source()),
                parent < 0 ? "'route' must be an array of tables: write [[route]]"
                           : fmt::format("{}: 'routes' must be an array of tables: write "
                                         "[[route.routes]]",
                                         where));
    return;
  }
  int sibling = 0;
  for (const auto& el : *arr) {
    const auto* t = el.as_table();
    if (!t) {
      diag_.error(runtime::to_loc(el.source()), "each route must be a table");
      continue;
    }
    ++sibling;
    std::string name =
        parent < 0 ? fmt::format("route {}", ++top_routes_) : fmt::format("{}.{}", where, sibling);
    TableReader r(diag_, name, runtime::to_loc(t->source()));
    r.declare(kRouteKeys);
    r.add_layer(*t);
    // Settings are inherited from the parent; matching criteria are not (a
    // child is only tried when its parent matched).
    alerts::RouteConfig rc;
    RouteMeta meta;
    if (parent >= 0) {
      const auto& p = config_->routes[static_cast<size_t>(parent)];
      rc.receivers = p.receivers;
      rc.group_by = p.group_by;
      rc.group_wait = p.group_wait;
      rc.group_interval = p.group_interval;
      rc.repeat_interval = p.repeat_interval;
      rc.send_resolved = p.send_resolved;
      rc.storm_limit = p.storm_limit;
      meta.escalation = routes_meta_[static_cast<size_t>(parent)].escalation;
      meta.escalation_loc = routes_meta_[static_cast<size_t>(parent)].escalation_loc;
    }
    rc.name = name;
    rc.parent = parent;
    rc.loc = runtime::to_loc(t->source());
    meta.name = name;
    if (auto v = r.get_string_array("tenants")) rc.tenants = *v;
    meta.tenants_loc = r.loc("tenants");
    if (auto v = r.get_string_array("severities")) {
      for (const auto& sev : *v) {
        if (sev != "warning" && sev != "critical" && sev != "unknown")
          r.error("severities",
                  fmt::format("unknown severity \"{}\"; use warning, critical or unknown", sev));
      }
      rc.severities = *v;
    }
    if (auto v = r.get_string_table("match")) rc.match.insert(v->begin(), v->end());
    if (auto v = r.get_string_array("receivers")) {
      rc.receivers = *v;
      meta.receivers_loc = r.loc("receivers");
    } else if (parent >= 0) {
      meta.receivers_loc = routes_meta_[static_cast<size_t>(parent)].receivers_loc;
    }
    if (rc.receivers.empty())
      diag_.error(r.loc("receivers"),
                  fmt::format("{}: needs at least one receiver (its own or its parent's)", name));
    if (auto v = r.get_string_array("group_by")) rc.group_by = *v;
    if (auto v = r.get_duration("group_wait")) rc.group_wait = *v;
    if (auto v = r.get_duration("group_interval")) rc.group_interval = *v;
    if (auto v = r.get_duration("repeat_interval")) rc.repeat_interval = *v;
    if (auto v = r.get_bool("send_resolved")) rc.send_resolved = *v;
    if (auto v = r.get_bool("continue")) rc.continue_matching = *v;
    if (auto v = r.get_int("storm_limit", 0, 100000)) rc.storm_limit = static_cast<int>(*v);
    if (auto v = r.get_string("escalation")) {
      meta.escalation = *v;
      meta.escalation_loc = r.loc("escalation");
    }
    if (auto v = r.get_string_array("active_during")) meta.active = *v;
    meta.active_loc = r.loc("active_during");
    if (auto v = r.get_string_array("inactive_during")) meta.inactive = *v;
    meta.inactive_loc = r.loc("inactive_during");
    const toml::node* children = t->get("routes");
    r.finish();
    int index = static_cast<int>(config_->routes.size());
    if (parent >= 0) config_->routes[static_cast<size_t>(parent)].children.push_back(index);
    config_->routes.push_back(std::move(rc));
    routes_meta_.push_back(std::move(meta));
    if (children) read_routes(*children, index);
  }
}

std::shared_ptr<const runtime::TimeZone> Loader::read_timezone(TableReader& r) {
  std::string name = r.get_string("timezone").value_or("UTC");
  if (auto it = zones_.find(name); it != zones_.end()) return it->second;
  std::string error;
  auto tz = runtime::TimeZone::load(name, &error);
  if (!tz) {
    r.error("timezone", error);
    tz = runtime::TimeZone::load("UTC", &error);
  }
  return zones_[name] = tz;
}

namespace {

// A local date and time of `key` in `tz`, as unix seconds.
std::optional<int64_t> read_local_time(TableReader& r, std::string_view key,
                                       const runtime::TimeZone& tz) {
  auto v = r.get_string(key);
  if (!v) return std::nullopt;
  std::string error;
  auto dt = runtime::parse_local_datetime(*v, &error);
  if (!dt) {
    r.error(key, fmt::format("{}: {}", key, error));
    return std::nullopt;
  }
  return tz.from_local(dt->date.year, dt->date.month, dt->date.day, 0, dt->minute_of_day, 0);
}

std::vector<runtime::Date> read_dates(TableReader& r, std::string_view key) {
  std::vector<runtime::Date> out;
  for (const auto& text : r.get_string_array(key).value_or(std::vector<std::string>{})) {
    std::string error;
    if (auto d = runtime::parse_date(text, &error))
      out.push_back(*d);
    else
      r.error(key, fmt::format("{}: {}", key, error));
  }
  return out;
}

}  // namespace

void Loader::read_oncall() {
  OnCallConfig& oc = config_->oncall;
  for (const auto& [id, entry] : named_["people"]) {
    TableReader r(diag_, fmt::format("person '{}'", id), runtime::to_loc(entry.first->source()));
    r.declare(kPersonKeys);
    r.add_layer(*entry.first);
    alerts::Person p{id, r.get_string("name").value_or(id), r.get_string("email").value_or("")};
    if (p.email.find('@') == std::string::npos)
      r.error(r.has("email") ? "email" : "name", "needs an 'email' address");
    r.finish();
    oc.people[id] = std::move(p);
  }

  // Time periods may exclude each other: resolve depth first, refusing cycles.
  auto& periods = named_["time_periods"];
  std::map<std::string, int> state;  // 1 resolving, 2 done
  std::function<std::shared_ptr<const alerts::TimePeriod>(const std::string&)> resolve =
      [&](const std::string& name) -> std::shared_ptr<const alerts::TimePeriod> {
    if (state[name] == 2) return oc.time_periods.at(name);
    const auto& [t, at] = periods.at(name);
    state[name] = 1;
    TableReader r(diag_, fmt::format("time period '{}'", name), runtime::to_loc(t->source()));
    r.declare(kTimePeriodKeys);
    r.add_layer(*t);
    auto p = std::make_shared<alerts::TimePeriod>();
    p->tz = read_timezone(r);
    alerts::WeeklyRange weekly;
    std::string error;
    auto days = r.get_string_array("days");
    for (const auto& d : days.value_or(std::vector<std::string>{})) {
      if (auto w = alerts::parse_day_ranges(d, &error))
        weekly.days |= *w;
      else
        r.error("days", fmt::format("days: {}", error));
    }
    if (!days) weekly.days.set();
    auto times = r.get_string_array("times");
    for (const auto& text : times.value_or(std::vector<std::string>{})) {
      if (auto range = alerts::parse_time_range(text, &error))
        weekly.times.push_back(*range);
      else
        r.error("times", fmt::format("times: {}", error));
    }
    if (!times) weekly.times.push_back({0, 1440});
    if (days || times) p->weekly.push_back(std::move(weekly));
    p->dates = read_dates(r, "dates");
    p->exclude_dates = read_dates(r, "exclude_dates");
    for (const auto& other : r.get_string_array("exclude").value_or(std::vector<std::string>{})) {
      if (!periods.contains(other)) {
        r.error("exclude", fmt::format("unknown time period '{}'", other));
      } else if (state[other] == 1) {
        r.error("exclude", fmt::format("time periods '{}' and '{}' exclude each other in a cycle",
                                       name, other));
      } else {
        p->exclude.push_back(resolve(other));
      }
    }
    r.finish();
    state[name] = 2;
    return oc.time_periods[name] = p;
  };
  for (const auto& [name, entry] : periods)
    if (state[name] != 2) resolve(name);

  for (const auto& [name, entry] : named_["rotations"]) {
    const toml::table& t = *entry.first;
    TableReader r(diag_, fmt::format("rotation '{}'", name), runtime::to_loc(t.source()));
    r.declare(kRotationKeys);
    r.add_layer(t);
    auto rot = std::make_shared<alerts::Rotation>();
    rot->tz = read_timezone(r);
    rot->people = r.get_string_array("people").value_or(std::vector<std::string>{});
    if (rot->people.empty())
      r.error(r.has("people") ? "people" : "timezone",
              fmt::format("rotation '{}' needs 'people'", name));
    for (const auto& p : rot->people)
      if (!oc.people.contains(p)) r.error("people", fmt::format("unknown person '{}'", p));
    if (auto v = r.get_string("start")) {
      std::string error;
      if (auto dt = runtime::parse_local_datetime(*v, &error))
        rot->start = *dt;
      else
        r.error("start", fmt::format("start: {}", error));
    } else {
      diag_.error(entry.second, fmt::format("rotation '{}' needs a 'start' (the first handover, "
                                            "e.g. \"2026-01-05T09:00\")",
                                            name));
    }
    Millis shift = r.get_duration("shift").value_or(Millis(7 * 86400000LL));
    constexpr int64_t kHour = 3600000, kDay = 24 * kHour;
    if (shift.count() <= 0 || shift.count() % kHour != 0)
      r.error("shift", "shift must be a whole number of hours, e.g. \"1w\", \"1d\" or \"12h\"");
    else if (shift.count() % kDay == 0)
      rot->shift_days = static_cast<int>(shift.count() / kDay);
    else
      rot->shift_hours = static_cast<int>(shift.count() / kHour);
    if (const auto* ov = t.get("override")) {
      const auto* arr = ov->as_array();
      if (!arr) r.error("override", "write overrides as [[rotations.<name>.override]]");
      for (size_t i = 0; arr && i < arr->size(); ++i) {
        const auto* ot = (*arr)[i].as_table();
        if (!ot) continue;
        TableReader o(diag_, fmt::format("override {} of rotation '{}'", i + 1, name),
                      runtime::to_loc(ot->source()));
        o.declare(kOverrideKeys);
        o.add_layer(*ot);
        alerts::Override item;
        item.person = o.get_string("person").value_or("");
        if (!oc.people.contains(item.person))
          o.error(o.has("person") ? "person" : "from",
                  item.person.empty() ? "an override needs a 'person'"
                                      : fmt::format("unknown person '{}'", item.person));
        auto from = read_local_time(o, "from", *rot->tz);
        auto until = read_local_time(o, "until", *rot->tz);
        if (!from || !until)
          o.error(from ? "until" : "from", "an override needs 'from' and 'until'");
        else if (*until <= *from)
          o.error("until", "'until' must be after 'from'");
        item.from = from.value_or(0);
        item.until = until.value_or(0);
        item.comment = o.get_string("comment").value_or("");
        o.finish();
        rot->overrides.push_back(std::move(item));
      }
    }
    r.finish();
    oc.rotations[name] = rot;
  }

  for (const auto& [name, entry] : named_["escalations"]) {
    const toml::table& t = *entry.first;
    TableReader r(diag_, fmt::format("escalation '{}'", name), runtime::to_loc(t.source()));
    r.declare(kEscalationKeys);
    r.add_layer(t);
    std::vector<alerts::EscalationLevel> levels;
    const auto* arr = t.get("level") ? t.get("level")->as_array() : nullptr;
    if (!arr || arr->empty())
      diag_.error(entry.second, fmt::format("escalation '{}' needs levels: write "
                                            "[[escalations.{}.level]]",
                                            name, name));
    for (size_t i = 0; arr && i < arr->size(); ++i) {
      const auto* lt = (*arr)[i].as_table();
      if (!lt) continue;
      TableReader l(diag_, fmt::format("level {} of escalation '{}'", i + 1, name),
                    runtime::to_loc(lt->source()));
      l.declare(kLevelKeys);
      l.add_layer(*lt);
      alerts::EscalationLevel level;
      if (auto v = l.get_duration("after"))
        level.after = *v;
      else
        diag_.error(l.table_loc(), "a level needs 'after'");
      if (!levels.empty() && level.after <= levels.back().after)
        l.error("after", "'after' must grow from level to level");
      level.receivers = l.get_string_array("receivers").value_or(std::vector<std::string>{});
      escalation_level_locs_[name].push_back(l.loc("receivers"));
      if (level.receivers.empty()) diag_.error(l.loc("receivers"), "a level needs 'receivers'");
      l.finish();
      levels.push_back(std::move(level));
    }
    r.finish();
    oc.escalations[name] = std::move(levels);
  }
}

void Loader::read_maintenance() {
  std::set<std::string> names;
  for (const toml::table* t : maintenance_) {
    TableReader r(diag_, "[[maintenance]]", runtime::to_loc(t->source()));
    r.declare(kMaintenanceKeys);
    r.add_layer(*t);
    MaintenanceConfig m;
    m.loc = runtime::to_loc(t->source());
    m.name = r.get_string("name").value_or("");
    if (m.name.empty() || !valid_id(m.name))
      diag_.error(r.loc("name"), "maintenance needs a 'name' of letters, digits, '.', '_', '-'");
    else if (!names.insert(m.name).second)
      r.error("name", fmt::format("duplicate maintenance '{}'", m.name));
    for (const auto& text : r.get_string_array("matchers").value_or(std::vector<std::string>{})) {
      std::string error;
      if (auto matcher = alerts::parse_matcher(text, &error))
        m.matchers.push_back(std::move(*matcher));
      else
        r.error("matchers", error);
    }
    std::string error;
    if (!alerts::validate_matchers(m.matchers, &error))
      diag_.error(r.loc("matchers"), fmt::format("maintenance '{}': {}", m.name, error));
    m.comment = r.get_string("comment").value_or("");
    auto tz = read_timezone(r);
    auto from = read_local_time(r, "from", *tz);
    auto until = read_local_time(r, "until", *tz);
    bool one_off = r.has("from") || r.has("until");
    bool recurring = r.has("windows") || r.has("time_period");
    if (one_off == recurring)
      diag_.error(m.loc, fmt::format("maintenance '{}' needs either 'from' and 'until' (once) or "
                                     "'windows' or 'time_period' (recurring)",
                                     m.name));
    if (one_off) {
      if (!from || !until)
        r.error(from ? "until" : "from", "a one-off maintenance needs 'from' and 'until'");
      else if (*until <= *from)
        r.error("until", "'until' must be after 'from'");
      m.from_ms = from.value_or(0) * 1000;
      m.until_ms = until.value_or(0) * 1000;
      if (until && *until < std::time(nullptr))
        diag_.warning(r.loc("until"),
                      fmt::format("maintenance '{}' is over; it silences nothing", m.name));
    }
    if (auto windows = r.get_string_array("windows")) {
      auto p = std::make_shared<alerts::TimePeriod>();
      p->tz = tz;
      for (const auto& text : *windows) {
        if (auto w = alerts::parse_window(text, &error))
          p->weekly.push_back(*w);
        else
          r.error("windows", fmt::format("windows: {}", error));
      }
      if (windows->empty()) r.error("windows", "'windows' needs at least one window");
      m.windows = p;
    }
    if (auto v = r.get_string("time_period")) {
      if (r.has("windows")) r.error("time_period", "give 'windows' or 'time_period', not both");
      m.windows =
          find_time_period(*v, r.loc("time_period"),
                           m.name.empty() ? "[[maintenance]]" : "maintenance '" + m.name + "'");
    }
    r.finish();
    config_->maintenance.push_back(std::move(m));
  }
}

void Loader::check_receiver_names(const std::vector<std::string>& names, const SourceLoc& at,
                                  const std::string& context) {
  for (const auto& name : names) {
    if (receiver_locs_.contains(name)) continue;
    std::vector<std::string_view> known;
    for (const auto& [n, _] : receiver_locs_) known.push_back(n);
    std::string hint = runtime::closest_match(name, known);
    diag_.error(at, fmt::format("{}: unknown receiver '{}'{}", context, name,
                                hint.empty() ? "" : "; did you mean '" + hint + "'?"));
  }
}

std::shared_ptr<const alerts::TimePeriod> Loader::find_time_period(const std::string& name,
                                                                   const SourceLoc& at,
                                                                   const std::string& context) {
  auto it = config_->oncall.time_periods.find(name);
  if (it != config_->oncall.time_periods.end()) return it->second;
  std::vector<std::string_view> known;
  for (const auto& [n, _] : config_->oncall.time_periods) known.push_back(n);
  std::string hint = runtime::closest_match(name, known);
  diag_.error(at, fmt::format("{}: unknown time period '{}'{}", context, name,
                              hint.empty() ? "" : "; did you mean '" + hint + "'?"));
  return nullptr;
}

void Loader::check_routes() {
  for (size_t i = 0; i < config_->routes.size(); ++i) {
    auto& rc = config_->routes[i];
    const RouteMeta& meta = routes_meta_[i];
    check_receiver_names(rc.receivers, meta.receivers_loc, rc.name);
    for (const auto& tenant : rc.tenants) {
      if (!tenants_.contains(tenant))
        diag_.error(meta.tenants_loc, fmt::format("{}: unknown tenant '{}'", rc.name, tenant));
    }
    if (!meta.escalation.empty()) {
      auto it = config_->oncall.escalations.find(meta.escalation);
      if (it == config_->oncall.escalations.end())
        diag_.error(meta.escalation_loc,
                    fmt::format("{}: unknown escalation '{}'", rc.name, meta.escalation));
      else
        rc.escalation = it->second;
    }
    std::vector<std::shared_ptr<const alerts::TimePeriod>> active, inactive;
    for (const auto& name : meta.active)
      if (auto p = find_time_period(name, meta.active_loc, rc.name)) active.push_back(p);
    for (const auto& name : meta.inactive)
      if (auto p = find_time_period(name, meta.inactive_loc, rc.name)) inactive.push_back(p);
    if (!active.empty() || !inactive.empty()) {
      rc.active = [active, inactive](alerts::TimePoint now) {
        int64_t t =
            std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
        for (const auto& p : inactive)
          if (p->active(t)) return false;
        if (active.empty()) return true;
        return std::any_of(active.begin(), active.end(),
                           [t](const auto& p) { return p->active(t); });
      };
    }
  }
  for (const auto& [name, levels] : config_->oncall.escalations)
    for (size_t i = 0; i < levels.size(); ++i)
      check_receiver_names(levels[i].receivers, escalation_level_locs_[name][i],
                           fmt::format("level {} of escalation '{}'", i + 1, name));
  check_receiver_names(config_->guard.receivers, config_->guard.loc, "[guard]");
  for (const auto& r : config_->receivers) {
    if (!r.rotation.empty() && !config_->oncall.rotations.contains(r.rotation))
      diag_.error(r.loc, fmt::format("receiver '{}': unknown rotation '{}'", r.name, r.rotation));
  }
  bool email = false;
  for (const auto& r : config_->receivers) email = email || r.type == ReceiverConfig::Type::kEmail;
  if (email && (config_->smtp.host.empty() || config_->smtp.from.empty())) {
    const auto& r = *std::find_if(
        config_->receivers.begin(), config_->receivers.end(),
        [](const ReceiverConfig& r) { return r.type == ReceiverConfig::Type::kEmail; });
    diag_.error(r.loc, fmt::format("receiver '{}' sends email: [smtp] needs 'smarthost' and 'from'",
                                   r.name));
  }
  // A route after a sibling that takes everything (and does not continue) is never tried.
  for (size_t i = 0; i < config_->routes.size(); ++i) {
    const auto& rc = config_->routes[i];
    bool takes_all = rc.tenants.empty() && rc.severities.empty() && rc.match.empty() &&
                     !rc.active && !rc.continue_matching;
    if (!takes_all) continue;
    for (size_t j = i + 1; j < config_->routes.size(); ++j) {
      if (config_->routes[j].parent != rc.parent) continue;
      diag_.warning(config_->routes[j].loc,
                    fmt::format("{} is never tried: {} before it takes every alert",
                                config_->routes[j].name, rc.name));
    }
  }
  // A tenant whose alerts no route takes would page nobody: say so.
  alerts::Router router(config_->routes);
  for (const auto& tenant : config_->tenants) {
    bool any = false;
    for (const char* sev : {"warning", "critical", "unknown"})
      any = any || !router.match({{"tenant", tenant.id}, {"severity", sev}}, std::nullopt).empty();
    if (!any && !config_->routes.empty())
      diag_.warning(
          tenants_[tenant.id].second,
          fmt::format("no [[route]] takes alerts of tenant '{}'; they are only logged", tenant.id));
  }
}

void Loader::check_topology() {
  std::map<std::string, const CheckConfig*> by_id;
  for (const auto& c : config_->checks) by_id[c.id] = &c;
  for (const auto& c : config_->checks) {
    for (const auto& p : c.depends_on) {
      if (p == c.id) {
        diag_.error(c.depends_loc, fmt::format("check '{}' depends on itself", c.id));
      } else if (!by_id.contains(p)) {
        std::vector<std::string_view> names;
        for (const auto& [n, _] : by_id) names.push_back(n);
        std::string hint = runtime::closest_match(p, names);
        diag_.error(c.depends_loc,
                    fmt::format("check '{}': depends_on names unknown check '{}'{}", c.id, p,
                                hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
    }
  }
  // Cycles: depth-first search, reporting each cycle once at its first check.
  std::map<std::string, int> color;  // 0 new, 1 on the stack, 2 done
  std::vector<std::string> path;
  std::function<void(const CheckConfig&)> visit = [&](const CheckConfig& c) {
    color[c.id] = 1;
    path.push_back(c.id);
    for (const auto& p : c.depends_on) {
      auto it = by_id.find(p);
      if (it == by_id.end() || p == c.id) continue;
      if (color[p] == 1) {
        auto from = std::find(path.begin(), path.end(), p);
        std::string cycle;
        for (auto i = from; i != path.end(); ++i) cycle += *i + " -> ";
        diag_.error(c.depends_loc, fmt::format("dependency cycle: {}{}", cycle, p));
      } else if (color[p] == 0) {
        visit(*it->second);
      }
    }
    path.pop_back();
    color[c.id] = 2;
  };
  for (const auto& c : config_->checks)
    if (color[c.id] == 0) visit(c);
}

std::shared_ptr<Config> Loader::run(const std::string& path) {
  config_->path = path;
  const toml::table* root = parse_file(path, SourceLoc{std::make_shared<const std::string>(path)});
  if (!root) return nullptr;
  read_top(*root, true);

  std::filesystem::path base = std::filesystem::path(path).parent_path();
  const toml::node* include_node = nullptr;
  if (const auto* d = root->get_as<toml::table>("daemon")) include_node = d->get("include");
  for (size_t i = 0; i < config_->daemon.include.size(); ++i) {
    const std::string& pattern = config_->daemon.include[i];
    SourceLoc at = include_node ? runtime::to_loc(include_node->source()) : SourceLoc{};
    if (const auto* arr = include_node ? include_node->as_array() : nullptr; arr && i < arr->size())
      at = runtime::to_loc((*arr)[i].source());
    std::filesystem::path full = std::filesystem::path(pattern).is_absolute()
                                     ? std::filesystem::path(pattern)
                                     : base / pattern;
    glob_t g{};
    int rc = glob(full.c_str(), 0, nullptr, &g);
    if (rc != 0 && rc != GLOB_NOMATCH) {
      diag_.error(at, fmt::format("cannot expand include pattern \"{}\"", pattern));
    }
    for (size_t j = 0; rc == 0 && j < g.gl_pathc; ++j) {
      std::string file = g.gl_pathv[j];
      if (std::find(config_->files.begin(), config_->files.end(), file) != config_->files.end())
        continue;
      if (const toml::table* inc = parse_file(file, at)) read_top(*inc, false);
    }
    globfree(&g);
  }

  std::map<std::string, SourceLoc> seen;
  for (const toml::table* t : checks_) {
    resolve_check(*t);
  }
  for (const auto& c : config_->checks) {
    if (c.id.empty()) continue;
    auto [it, inserted] = seen.emplace(c.id, c.loc);
    if (!inserted) {
      diag_.error(c.loc, fmt::format("duplicate check id '{}'", c.id));
      diag_.note(it->second, "first defined here");
    }
  }
  check_topology();
  read_oncall();
  read_maintenance();
  read_guard();
  check_routes();
  if (diag_.has_errors()) return nullptr;
  return config_;
}

}  // namespace

LoadResult load(const std::string& path) {
  LoadResult result;
  Loader loader(result.diagnostics);
  result.config = loader.run(path);
  return result;
}

std::vector<Section> sections() {
  std::vector<Section> out = {
      {"top level", "The sections of a config file.", kTopKeys},
      {"daemon", "[daemon]: process-wide settings.", kDaemonKeys},
      {"defaults", "[defaults]: defaults for every check.", kDefaultsKeys},
      {"tenants.<id>", "[tenants.<id>]: one administration.", kTenantKeys},
      {"tenants.<id>.defaults", "Defaults for one tenant's checks.", kTenantDefaultsKeys},
      {"check",
       "[[check]]: keys every check has, whatever its type. Templates "
       "([templates.<name>]) take the same keys except id and template.",
       kCheckKeys},
      {"check settings",
       "Settings of a check that [defaults], tenant defaults, templates and the check itself "
       "can carry.",
       kSettingKeys},
      {"alerting", "[alerting]: how notifications look.", kAlertingKeys},
      {"smtp", "[smtp]: the mail server.", kSmtpKeys},
      {"receivers.<name>", "[receivers.<name>]: where notifications go.", kReceiverKeys},
      {"route", "[[route]]: which alerts go where.", kRouteKeys},
      {"api", "[api]: the HTTP API.", kApiKeys},
      {"guard", "[guard]: the connectivity guard.", kGuardKeys},
      {"people.<id>", "[people.<id>]: one person of on-call rotations.", kPersonKeys},
      {"time_periods.<name>", "[time_periods.<name>]: business hours, nights, holidays.",
       kTimePeriodKeys},
      {"rotations.<name>", "[rotations.<name>]: an on-call rotation.", kRotationKeys},
      {"rotations.<name>.override", "[[rotations.<name>.override]]: holiday cover and swaps.",
       kOverrideKeys},
      {"escalations.<name>", "[escalations.<name>]: an escalation chain.", kEscalationKeys},
      {"escalations.<name>.level", "[[escalations.<name>.level]]: one level of it.", kLevelKeys},
      {"maintenance", "[[maintenance]]: a maintenance window.", kMaintenanceKeys},
  };
  for (const auto& t : probes::probe_types()) out.push_back({t.name, t.summary, t.keys});
  return out;
}

}  // namespace wacht::config
