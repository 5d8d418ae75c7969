#include "config.hpp"

#include <glob.h>

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
    {"defaults", "table", "", "Defaults for every check: interval, timeout, tenant, labels."},
    {"tenants", "table of tables", "", "The administrations checks belong to, by id."},
    {"templates", "table of tables", "", "Named sets of check keys that checks inherit."},
    {"check", "array of tables", "", "The checks."},
};

constexpr KeySpec kDaemonKeys[] = {
    {"listen", "string", "\"127.0.0.1:9915\"",
     "Address and port of the HTTP server for /metrics, /-/healthy and /-/ready. "
     "Use \"[::1]:9915\" for IPv6 or \"0.0.0.0:9915\" to listen on all addresses."},
    {"state_dir", "string", "\"/var/lib/wacht\"",
     "Directory for state that must survive restarts."},
    {"log_level", "string", "\"info\"",
     "One of trace, debug, info, warn, error. --log-level overrides it."},
    {"max_concurrent_probes", "integer", "1000",
     "Most probes in flight at once; further due runs wait (and their lag shows in "
     "wacht_scheduler_lag_seconds)."},
    {"include", "array of strings", "[]",
     "Glob patterns of further config files, relative to this file's directory, "
     "e.g. [\"conf.d/*.toml\"]. Included files may hold tenants, templates and checks."},
};

constexpr KeySpec kDefaultsKeys[] = {
    {"interval", "duration", "\"30s\"", "How often each check runs."},
    {"timeout", "duration", "\"10s\", at most 80% of the interval",
     "How long one run may take before it is cancelled and counted as failed; "
     "must be less than the interval."},
    {"tenant", "string", "",
     "Tenant of checks that name none (useful when one config file serves one tenant)."},
    {"labels", "table of strings", "{}",
     "Labels added to every metric of the check; merged with the labels of tenant "
     "defaults, templates and the check itself (later ones win)."},
};

constexpr KeySpec kTenantKeys[] = {
    {"name", "string", "the tenant id", "Display name, e.g. \"Landkreis Ludwigslust-Parchim\"."},
    {"defaults", "table", "{}",
     "Defaults for this tenant's checks (interval, timeout, labels); they override [defaults]."},
};

constexpr KeySpec kTenantDefaultsKeys[] = {
    kDefaultsKeys[0],
    kDefaultsKeys[1],
    kDefaultsKeys[3],
};

constexpr KeySpec kCheckKeys[] = {
    {"id", "string", "",
     "Unique name of the check (letters, digits, '.', '_', '-', ':'); the 'check' label."},
    {"type", "string", "", "Probe type: http, tcp."},
    {"target", "string", "",
     "What to probe; its form depends on the type (a URL for http, host:port for tcp)."},
    {"tenant", "string", "from [defaults]", "Id of a tenant from [tenants]; the 'tenant' label."},
    {"template", "string", "",
     "Name of a template from [templates] whose keys this check inherits."},
    {"interval", "duration", "from [defaults]", "How often the check runs."},
    {"timeout", "duration", "from [defaults]", "Most time one run may take; less than interval."},
    {"labels", "table of strings", "{}", "Extra labels on the check's metrics."},
};

constexpr Millis kDefaultInterval{30000};
constexpr Millis kDefaultTimeout{10000};

const std::set<std::string, std::less<>> kReservedLabels = {
    "check",  "target", "type", "tenant",   "phase",    "version",
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

  Diagnostics& diag_;
  std::vector<std::unique_ptr<ParsedFile>> files_;
  std::shared_ptr<Config> config_ = std::make_shared<Config>();
  const toml::table* defaults_ = nullptr;
  std::map<std::string, const toml::table*, std::less<>> tenant_defaults_;
  std::map<std::string, std::pair<const toml::table*, SourceLoc>, std::less<>> tenants_;
  std::map<std::string, const toml::table*, std::less<>> templates_;
  std::vector<const toml::table*> checks_;
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
        r.add_layer(*t);
        r.get_duration("interval");
        r.get_duration("timeout");
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
        dr.add_layer(*dt);
        dr.get_duration("interval");
        dr.get_duration("timeout");
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
  std::map<std::string, std::string> labels;
  for (const toml::table* layer : {defaults_, tenant_defaults, tmpl, &t}) {
    if (!layer) continue;
    // The defaults sections were validated on their own; their interval and
    // timeout are looked up below, and only the template and check are read here.
    if (layer == tmpl || layer == &t) r.add_layer(*layer);
    read_labels(*layer, context, labels);
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

  // Durations: the check and its template first, then tenant defaults, then [defaults].
  auto inherited_duration = [&](std::string_view key,
                                Millis fallback) -> std::pair<Millis, SourceLoc> {
    if (r.has(key)) {
      auto d = r.get_duration(key);
      return {d.value_or(fallback), r.loc(key)};
    }
    for (const toml::table* layer : {tenant_defaults, defaults_}) {
      if (!layer) continue;
      if (const toml::node* n = layer->get(key); n && n->is_string()) {
        if (auto d = runtime::parse_duration(*n->value<std::string_view>())) {
          return {*d, runtime::to_loc(n->source())};
        }
        return {fallback, runtime::to_loc(n->source())};  // already reported there
      }
    }
    return {fallback, SourceLoc{}};  // the built-in default: nowhere to point at
  };
  auto [interval, interval_loc] = inherited_duration("interval", kDefaultInterval);
  auto [timeout, timeout_loc] = inherited_duration("timeout", kDefaultTimeout);
  c.interval = interval;
  c.timeout = timeout;
  // Like Prometheus' scrape_timeout: an unset timeout never exceeds the interval.
  if (!timeout_loc.valid()) c.timeout = std::min(timeout, interval * 8 / 10);
  if (c.interval < Millis(100)) {
    diag_.error(interval_loc, fmt::format("{}: interval must be at least 100ms", context));
  } else if (c.timeout <= Millis(0)) {
    diag_.error(timeout_loc, fmt::format("{}: timeout must be positive", context));
  } else if (c.timeout >= c.interval) {
    diag_.error(timeout_loc, fmt::format("{}: timeout ({}) must be less than interval ({})",
                                         context, runtime::format_duration(c.timeout),
                                         runtime::format_duration(c.interval)));
    if (interval_loc.valid()) diag_.note(interval_loc, "interval set here");
  }

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
  };
  for (const auto& t : probes::probe_types()) out.push_back({t.name, t.summary, t.keys});
  return out;
}

}  // namespace wacht::config
