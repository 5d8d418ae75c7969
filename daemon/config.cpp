#include "config.hpp"

#include "runtime/files.hpp"

#include <glob.h>

#include <functional>

#include <fmt/format.h>
#include <toml++/toml.h>
#include <algorithm>
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
     "A successful run that takes this long or longer is WARNING."},
    {"latency_critical", "duration", "",
     "A successful run that takes this long or longer is CRITICAL."},
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
    {"type", "string", "", "\"email\" (through [smtp]) or \"log\" (a log line per message)."},
    {"to", "array of strings", "", "Recipients of an email receiver."},
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
  void read_routes(const toml::node& n);
  void check_topology();
  void check_routes();

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
    } else if (key == "alerting" || key == "smtp") {
      if (!main_file) {
        diag_.error(runtime::key_loc(k),
                    fmt::format("[{}] is only allowed in the main config file", key));
      } else if (const auto* t = v.as_table()) {
        key == "alerting" ? read_alerting(*t) : read_smtp(*t);
      } else {
        diag_.error(runtime::to_loc(v.source()), fmt::format("'{}' must be a table", key));
      }
    } else if (key == "receivers") {
      read_receivers(v);
    } else if (key == "route") {
      read_routes(v);
    }
  }
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

std::optional<std::string> read_secret_file(TableReader& r, std::string_view key) {
  auto path = r.get_string(key);
  if (!path) return std::nullopt;
  std::string reason;
  auto secret = runtime::read_secret_file(*path, &reason);
  if (!secret) r.error(key, fmt::format("cannot read {} '{}': {}", key, *path, reason));
  return secret;
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
    if (type == "email")
      rc.type = ReceiverConfig::Type::kEmail;
    else if (type == "log")
      rc.type = ReceiverConfig::Type::kLog;
    else if (!r.has("type"))
      diag_.error(rc.loc,
                  fmt::format("receiver '{}': missing 'type' (\"email\" or \"log\")", name));
    else
      r.error("type", fmt::format("type must be \"email\" or \"log\", not \"{}\"", type));
    if (auto v = r.get_string_array("to")) rc.to = *v;
    if (rc.type == ReceiverConfig::Type::kEmail && rc.to.empty())
      r.error(r.has("to") ? "to" : "type", "an email receiver needs at least one address in 'to'");
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

void Loader::read_routes(const toml::node& n) {
  const auto* arr = n.as_array();
  if (!arr) {
    diag_.error(runtime::to_loc(n.source()), "'route' must be an array of tables: write [[route]]");
    return;
  }
  for (const auto& el : *arr) {
    const auto* t = el.as_table();
    if (!t) {
      diag_.error(runtime::to_loc(el.source()), "each [[route]] entry must be a table");
      continue;
    }
    size_t index = config_->routes.size() + 1;
    TableReader r(diag_, fmt::format("route {}", index), runtime::to_loc(t->source()));
    r.declare(kRouteKeys);
    r.add_layer(*t);
    alerts::RouteConfig rc;
    rc.loc = runtime::to_loc(t->source());
    if (auto v = r.get_string_array("tenants")) rc.tenants = *v;
    if (auto v = r.get_string_array("severities")) {
      for (const auto& sev : *v) {
        if (sev != "warning" && sev != "critical" && sev != "unknown")
          r.error("severities",
                  fmt::format("unknown severity \"{}\"; use warning, critical or unknown", sev));
      }
      rc.severities = *v;
    }
    if (auto v = r.get_string_table("match")) rc.match.insert(v->begin(), v->end());
    if (auto v = r.get_string_array("receivers")) rc.receivers = *v;
    if (rc.receivers.empty())
      diag_.error(r.loc("receivers"), fmt::format("route {}: needs at least one receiver", index));
    if (auto v = r.get_string_array("group_by")) rc.group_by = *v;
    if (auto v = r.get_duration("group_wait")) rc.group_wait = *v;
    if (auto v = r.get_duration("group_interval")) rc.group_interval = *v;
    if (auto v = r.get_duration("repeat_interval")) rc.repeat_interval = *v;
    if (auto v = r.get_bool("send_resolved")) rc.send_resolved = *v;
    r.finish();
    config_->routes.push_back(std::move(rc));
  }
}

void Loader::check_routes() {
  for (size_t i = 0; i < config_->routes.size(); ++i) {
    const auto& rc = config_->routes[i];
    for (const auto& name : rc.receivers) {
      if (!receiver_locs_.contains(name)) {
        std::vector<std::string_view> names;
        for (const auto& [n, _] : receiver_locs_) names.push_back(n);
        std::string hint = runtime::closest_match(name, names);
        diag_.error(rc.loc, fmt::format("route {}: unknown receiver '{}'{}", i + 1, name,
                                        hint.empty() ? "" : "; did you mean '" + hint + "'?"));
      }
    }
    for (const auto& tenant : rc.tenants) {
      if (!tenants_.contains(tenant))
        diag_.error(rc.loc, fmt::format("route {}: unknown tenant '{}'", i + 1, tenant));
    }
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
  // A tenant whose alerts no route takes would page nobody: say so.
  for (const auto& tenant : config_->tenants) {
    alerts::Router router(config_->routes);
    bool any = false;
    for (const char* sev : {"warning", "critical", "unknown"})
      any = any || router.match({{"tenant", tenant.id}, {"severity", sev}}) >= 0;
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
  };
  for (const auto& t : probes::probe_types()) out.push_back({t.name, t.summary, t.keys});
  return out;
}

}  // namespace wacht::config
