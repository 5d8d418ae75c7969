#include "alerts/templates.hpp"

#include <fmt/format.h>

#include <ctime>
#include <map>

#include "runtime/duration.hpp"

namespace wacht::alerts {

namespace {

const Templates kEnglish{"[wacht] [{TENANT}] {prefix}{status}: {checks}",
                         "{prefix}{status} for {tenant_name} ({tenant}): {count} "
                         "check(s).\n\n{alerts}-- \nwacht monitoring\n",
                         "{state_text}: {check}\n"
                         "  Target:   {target}\n"
                         "  Since:    {since} (for {for})\n"
                         "  Output:   {summary}\n"
                         "  About:    {description}\n"
                         "  Affected: {affected_count} dependent check(s) unreachable: {affected}\n"
                         "  Link:     {link}\n"
                         "  Acknowledged: {acknowledged}\n"
                         "  Acknowledge:  {ack_link}\n\n",
                         "en"};

const Templates kGerman{
    "[wacht] [{TENANT}] {prefix}{status}: {checks}",
    "{prefix}{status} für {tenant_name} ({tenant}): {count} Prüfung(en).\n\n{alerts}-- \nwacht "
    "Überwachung\n",
    "{state_text}: {check}\n"
    "  Ziel:       {target}\n"
    "  Seit:       {since} (seit {for})\n"
    "  Ausgabe:    {summary}\n"
    "  Info:       {description}\n"
    "  Betroffen:  {affected_count} abhängige Prüfung(en) nicht erreichbar: {affected}\n"
    "  Link:       {link}\n"
    "  Bestätigt:  {acknowledged}\n"
    "  Bestätigen: {ack_link}\n\n",
    "de"};

std::string state_text(const std::string& state, bool german) {
  static const std::map<std::string, std::pair<const char*, const char*>> kNames = {
      {"OK", {"OK", "OK"}},
      {"WARNING", {"WARNING", "WARNUNG"}},
      {"CRITICAL", {"CRITICAL", "KRITISCH"}},
      {"UNKNOWN", {"UNKNOWN", "UNBEKANNT"}},
  };
  auto it = kNames.find(state);
  if (it == kNames.end()) return state;
  return german ? it->second.second : it->second.first;
}

std::string upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string format_time(TimePoint t) {
  std::time_t s = Clock::to_time_t(t);
  std::tm tm{};
  localtime_r(&s, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", &tm);
  return buf;
}

std::string format_for(TimePoint since, TimePoint now) {
  auto d = std::chrono::duration_cast<std::chrono::seconds>(now - since);
  if (d.count() < 0) d = std::chrono::seconds(0);
  return runtime::format_duration(std::chrono::duration_cast<Millis>(d));
}

using Vars = std::map<std::string, std::string>;

// Replaces {name} with vars[name]; unknown names stay as written so a typo
// in a custom template is visible in the message rather than silently empty.
std::string substitute(const std::string& text, const Vars& vars) {
  std::string out;
  size_t i = 0;
  while (i < text.size()) {
    size_t open = text.find('{', i);
    if (open == std::string::npos) break;
    size_t close = text.find('}', open);
    if (close == std::string::npos) break;
    out.append(text, i, open - i);
    auto it = vars.find(text.substr(open + 1, close - open - 1));
    if (it == vars.end())
      out.append(text, open, close - open + 1);
    else
      out += it->second;
    i = close + 1;
  }
  out.append(text, i, std::string::npos);
  return out;
}

// Per alert line: drop lines whose placeholders all render empty.
std::string render_alert(const std::string& block, const Vars& vars) {
  std::string out;
  size_t start = 0;
  while (start < block.size()) {
    size_t end = block.find('\n', start);
    std::string line = block.substr(start, end == std::string::npos ? end : end - start + 1);
    start = end == std::string::npos ? block.size() : end + 1;
    bool has_placeholder = false, any_value = false;
    for (const auto& [k, v] : vars) {
      if (line.find("{" + k + "}") == std::string::npos) continue;
      has_placeholder = true;
      if (!v.empty() && v != "0") any_value = true;
    }
    if (has_placeholder && !any_value) continue;
    out += substitute(line, vars);
  }
  return out;
}

}  // namespace

const Templates& builtin_templates(const std::string& language) {
  return language == "de" ? kGerman : kEnglish;
}

bool known_language(const std::string& language) { return language == "de" || language == "en"; }

Rendered render(const MessageView& m, const Templates& t) {
  const bool german = t.language == "de";
  const bool firing = !m.firing.empty();
  std::string alerts;
  std::vector<std::string> names;
  auto add = [&](const AlertView& a, bool resolved) {
    Vars v{{"check", a.check},
           {"target", a.target},
           {"type", a.type},
           {"state", resolved ? "OK" : a.state},
           {"state_text",
            resolved ? (german ? "ENTWARNUNG" : "RESOLVED") : state_text(a.state, german)},
           {"since", format_time(a.since)},
           {"for", format_for(a.since, m.now)},
           {"summary", a.summary},
           {"description", a.description},
           {"affected_count", std::to_string(a.affected.size())},
           {"affected", fmt::format("{}", fmt::join(a.affected, ", "))},
           {"link", a.link},
           {"acknowledged", a.acked_by.empty()      ? ""
                            : a.ack_comment.empty() ? a.acked_by
                                                    : a.acked_by + ": " + a.ack_comment},
           {"ack_link", resolved || !a.acked_by.empty() ? "" : a.ack_link}};
    alerts += render_alert(t.alert, v);
    names.push_back(a.check);
  };
  for (const auto& a : m.firing) add(a, false);
  for (const auto& a : m.resolved) add(a, true);

  const AlertView& first = firing ? m.firing.front() : m.resolved.front();
  std::string status;
  if (firing) {
    std::string worst = "WARNING";
    for (const auto& a : m.firing)
      if (a.state == "CRITICAL" || (a.state == "UNKNOWN" && worst == "WARNING")) worst = a.state;
    status = (german ? "ALARM " : "FIRING ") + state_text(worst, german);
  } else {
    status = german ? "ENTWARNUNG" : "RESOLVED";
  }
  std::string checks;
  if (names.size() == 1) {
    checks = first.check + " (" + first.target + ")";
  } else {
    checks = fmt::format("{} {}", names.size(), german ? "Prüfungen" : "checks");
    std::string list;
    for (size_t i = 0; i < names.size() && i < 3; ++i) list += (i ? ", " : "") + names[i];
    if (names.size() > 3) list += ", …";
    checks += " (" + list + ")";
  }
  std::string prefix;
  if (m.level > 0)
    prefix = fmt::format("{} {}: ", german ? "ESKALATION Stufe" : "ESCALATION level", m.level + 1);
  if (m.digest) prefix += german ? "SAMMELMELDUNG: " : "DIGEST: ";
  Vars msg{{"prefix", prefix},
           {"tenant", m.tenant},
           {"TENANT", upper(m.tenant)},
           {"tenant_name", m.tenant_name.empty() ? m.tenant : m.tenant_name},
           {"status", status},
           {"count", std::to_string(names.size())},
           {"checks", checks},
           {"first_check", first.check},
           {"first_target", first.target},
           {"first_state", first.state},
           {"alerts", alerts}};
  return Rendered{substitute(t.subject, msg), substitute(t.body, msg)};
}

Rendered render_blind(bool blind, const std::string& reason, size_t held, const Templates& t) {
  const bool de = t.language == "de";
  Rendered r;
  if (blind) {
    r.subject = de ? "[wacht] ÜBERWACHUNG BLIND: Standort von wacht abgeschnitten"
                   : "[wacht] MONITORING BLIND: wacht's vantage point is cut off";
    r.body = fmt::format(
        fmt::runtime(de ? "wacht sieht seine Ziele nicht mehr: {}.\n\nBis die Sicht zurück ist, "
                          "hält wacht Alarme zurück, statt für jede Prüfung einzeln zu melden.\n"
                        : "wacht cannot see its targets: {}.\n\nUntil it can, wacht holds "
                          "alerts back instead of sending one for every check.\n"),
        reason);
  } else {
    r.subject = de ? "[wacht] ÜBERWACHUNG SIEHT WIEDER" : "[wacht] MONITORING CAN SEE AGAIN";
    r.body = fmt::format(
        fmt::runtime(de ? "wacht sieht seine Ziele wieder. {} zurückgehaltene Alarme werden "
                          "jetzt geprüft und gemeldet, falls sie bestehen bleiben.\n"
                        : "wacht can see its targets again. {} held alerts are now re-checked "
                          "and sent if they persist.\n"),
        held);
  }
  return r;
}

Rendered render_flapping(const AlertView& a, const std::string& tenant, bool started,
                         const Templates& t) {
  const bool de = t.language == "de";
  Rendered r;
  r.subject = fmt::format(
      "[wacht] [{}] {}: {} ({})", upper(tenant),
      started ? (de ? "FLATTERT" : "FLAPPING") : (de ? "FLATTERN VORBEI" : "FLAPPING STOPPED"),
      a.check, a.target);
  if (started) {
    r.body = fmt::format(fmt::runtime(de ? "{} ({}) wechselt häufig den Zustand; weitere "
                                           "Meldungen ruhen, bis er sich beruhigt.\nLetzte "
                                           "Ausgabe: {}\n"
                                         : "{} ({}) changes state often; further notifications "
                                           "are held until it settles.\nLast output: {}\n"),
                         a.check, a.target, a.summary);
  } else {
    r.body = fmt::format(fmt::runtime(de ? "{} ({}) ist wieder stabil: {}\nLetzte Ausgabe: {}\n"
                                         : "{} ({}) is stable again: {}\nLast output: {}\n"),
                         a.check, a.target, a.state, a.summary);
  }
  return r;
}

}  // namespace wacht::alerts
