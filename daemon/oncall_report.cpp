#include "oncall_report.hpp"

#include <fmt/format.h>

#include "alerts/silences.hpp"
#include "runtime/duration.hpp"

namespace wacht {

namespace {

std::string local_time(const runtime::TimeZone& tz, int64_t t) {
  auto c = tz.to_local(t);
  static const char* kDays[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
  return fmt::format("{} {:04}-{:02}-{:02} {:02}:{:02} {}", kDays[c.weekday], c.year, c.month,
                     c.day, c.hour, c.minute, c.abbrev);
}

const char* type_name(config::ReceiverConfig::Type t) {
  switch (t) {
    case config::ReceiverConfig::Type::kEmail: return "email";
    case config::ReceiverConfig::Type::kWebhook: return "webhook";
    case config::ReceiverConfig::Type::kAlertmanager: return "alertmanager";
    case config::ReceiverConfig::Type::kLog: return "log";
  }
  return "";
}

}  // namespace

std::optional<OnCallReport> oncall_report(const config::Config& cfg, const std::string& tenant,
                                          const std::string& rotation, int64_t at,
                                          std::string* error, int days) {
  OnCallReport r;
  r.at = at;
  r.tenant = tenant;
  r.rotation = rotation;
  std::string tz_error;
  r.tz = runtime::TimeZone::load(cfg.alerting.timezone.empty() ? "UTC" : cfg.alerting.timezone,
                                 &tz_error);
  if (!r.tz) r.tz = runtime::TimeZone::load("UTC", &tz_error);
  if (tenant.empty() == rotation.empty()) {
    *error = "give either a tenant or a rotation";
    return std::nullopt;
  }
  if (!rotation.empty()) {
    auto it = cfg.oncall.rotations.find(rotation);
    if (it == cfg.oncall.rotations.end()) {
      *error = "unknown rotation '" + rotation + "'";
      return std::nullopt;
    }
    r.tz = it->second->tz;
    r.current = it->second->at(at);
    r.upcoming = it->second->shifts(at, at + int64_t{days} * 86400);
    return r;
  }
  if (std::none_of(cfg.tenants.begin(), cfg.tenants.end(),
                   [&](const config::TenantConfig& t) { return t.id == tenant; })) {
    *error = "unknown tenant '" + tenant + "'";
    return std::nullopt;
  }
  alerts::Router router(cfg.routes);
  alerts::TimePoint now{std::chrono::seconds(at)};
  for (const char* severity : {"critical", "warning"}) {
    for (int index : router.match({{"tenant", tenant}, {"severity", severity}}, now)) {
      const auto& route = cfg.routes[static_cast<size_t>(index)];
      auto add = [&](const std::string& name, int level, config::Millis after) {
        OnCallReport::Recipient p{severity, route.name, level, after, name, "", {}, {}, ""};
        for (const auto& rc : cfg.receivers) {
          if (rc.name != name) continue;
          p.type = type_name(rc.type);
          p.addresses = rc.type == config::ReceiverConfig::Type::kAlertmanager ? rc.urls : rc.to;
          if (rc.type == config::ReceiverConfig::Type::kWebhook) p.addresses = rc.urls;
          if (!rc.rotation.empty()) {
            p.shift = cfg.oncall.rotations.at(rc.rotation)->at(at);
            if (p.shift) {
              const auto& person = cfg.oncall.people.at(p.shift->person);
              p.person_name = person.name;
              p.addresses.push_back(person.email);
            }
          }
        }
        r.recipients.push_back(std::move(p));
      };
      for (const auto& name : route.receivers) add(name, 1, config::Millis(0));
      for (size_t l = 0; l < route.escalation.size(); ++l)
        for (const auto& name : route.escalation[l].receivers)
          add(name, static_cast<int>(l) + 2, route.escalation[l].after);
    }
  }
  return r;
}

nlohmann::ordered_json oncall_json(const OnCallReport& r) {
  using json = nlohmann::ordered_json;
  auto shift = [](const alerts::Shift& s) {
    json j{{"person", s.person},
           {"from", alerts::format_rfc3339(s.from * 1000)},
           {"until", alerts::format_rfc3339(s.until * 1000)},
           {"override", s.override}};
    if (!s.comment.empty()) j["comment"] = s.comment;
    return j;
  };
  json out{{"at", alerts::format_rfc3339(r.at * 1000)}};
  if (!r.rotation.empty()) {
    out["rotation"] = r.rotation;
    out["on_call"] = r.current ? shift(*r.current) : json(nullptr);
    json upcoming = json::array();
    for (const auto& s : r.upcoming) upcoming.push_back(shift(s));
    out["shifts"] = upcoming;
    return out;
  }
  out["tenant"] = r.tenant;
  json list = json::array();
  for (const auto& p : r.recipients) {
    json j{{"severity", p.severity},  {"route", p.route},
           {"level", p.level},        {"after", runtime::format_duration(p.after)},
           {"receiver", p.receiver},  {"type", p.type},
           {"addresses", p.addresses}};
    if (p.shift) j["on_call"] = shift(*p.shift);
    list.push_back(std::move(j));
  }
  out["recipients"] = list;
  return out;
}

std::string oncall_text(const config::Config& cfg, const OnCallReport& r) {
  const runtime::TimeZone& tz = *r.tz;
  auto person = [&](const std::string& id) {
    auto it = cfg.oncall.people.find(id);
    return it == cfg.oncall.people.end()
               ? id
               : fmt::format("{} <{}>", it->second.name, it->second.email);
  };
  std::string out;
  if (!r.rotation.empty()) {
    out += fmt::format("Rotation {} at {}:\n", r.rotation, local_time(tz, r.at));
    if (r.current)
      out += fmt::format("  on call: {} until {}{}\n", person(r.current->person),
                         local_time(tz, r.current->until),
                         r.current->override ? " (override: " + r.current->comment + ")" : "");
    else
      out += "  on call: nobody\n";
    out += "Shifts:\n";
    for (const auto& s : r.upcoming)
      out += fmt::format("  {} – {}  {}{}\n", local_time(tz, s.from), local_time(tz, s.until),
                         person(s.person), s.override ? "  (override: " + s.comment + ")" : "");
    return out;
  }
  out += fmt::format("Tenant {} at {}:\n", r.tenant, local_time(tz, r.at));
  if (r.recipients.empty()) out += "  no route takes its alerts: they are only logged\n";
  for (const auto& p : r.recipients) {
    std::string when = p.level == 1 ? "at once"
                                    : fmt::format("level {} after {} unacknowledged", p.level,
                                                  runtime::format_duration(p.after));
    out +=
        fmt::format("  {} alerts, {}, {}: {} ({})", p.severity, p.route, when, p.receiver, p.type);
    if (!p.addresses.empty()) out += fmt::format(" -> {}", fmt::join(p.addresses, ", "));
    if (p.shift)
      out += fmt::format("\n      on call: {} until {}", person(p.shift->person),
                         local_time(tz, p.shift->until));
    out += "\n";
  }
  return out;
}

}  // namespace wacht
