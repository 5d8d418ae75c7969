#include "alerts/silences.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>
#include <utility>

#include "runtime/duration.hpp"
#include "runtime/files.hpp"

namespace wacht::alerts {

namespace {

// Insertion-ordered, so silences come out in the order of Alertmanager's API.
using json = nlohmann::ordered_json;

constexpr const char* kOps[] = {"=", "!=", "=~", "!~"};

bool is_regex(Matcher::Op op) { return op == Matcher::Op::kRe || op == Matcher::Op::kNre; }

// Prometheus label names: [a-zA-Z_][a-zA-Z0-9_]*.
bool name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         (!first && c >= '0' && c <= '9');
}

bool valid_label_name(std::string_view name) {
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0)) return false;
  return !name.empty();
}

// A string as JSON spells it, for error messages: quotes and backslashes escaped.
std::string json_quoted(std::string_view s) {
  return json(std::string(s)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string_view trim(std::string_view s) {
  const char* ws = " \t\r\n";
  size_t b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) return {};
  return s.substr(b, s.find_last_not_of(ws) - b + 1);
}

std::string new_uuid() {
  std::random_device rd;
  std::array<uint8_t, 16> b;
  for (size_t i = 0; i < b.size(); i += 4) {
    uint32_t r = rd();
    std::memcpy(&b[i], &r, 4);
  }
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out += '-';
    out += fmt::format("{:02x}", b[i]);
  }
  return out;
}

bool same_content(const Silence& a, const Silence& b) {
  return a.matchers == b.matchers && a.starts_at_ms == b.starts_at_ms &&
         a.ends_at_ms == b.ends_at_ms && a.created_by == b.created_by && a.comment == b.comment;
}

// Alertmanager's canUpdate: an update that would rewrite what was silenced in
// the past (other matchers, an earlier start) replaces the silence instead.
bool can_update(const Silence& prev, const Silence& next, int64_t now) {
  if (prev.matchers != next.matchers) return false;
  Silence::State st = prev.state(now);
  if (st == Silence::State::kActive) return next.starts_at_ms == prev.starts_at_ms;
  if (st == Silence::State::kPending) return next.starts_at_ms >= now;
  return false;
}

void end_now(Silence& s, int64_t now) {
  if (s.state(now) == Silence::State::kPending) s.starts_at_ms = now;
  s.ends_at_ms = now;
  s.updated_at_ms = now;
}

std::string read_only(const std::string& id) {
  return "silence " + id + " is from the config file; change it there";
}

// Field readers for the JSON of a silence. `where` prefixes the field in
// errors: "" in a request body, "silences[2]." in the saved file.
bool field_error(std::string* error, const std::string& where, std::string_view key,
                 std::string_view why) {
  if (error) *error = fmt::format("{}{}: {}", where, key, why);
  return false;
}

// Missing and optional: `out` stays as it is.
bool read_string(const json& obj, const std::string& where, const char* key, bool required,
                 std::string* out, std::string* error) {
  auto it = obj.find(key);
  if (it == obj.end()) return !required || field_error(error, where, key, "required");
  if (!it->is_string()) return field_error(error, where, key, "must be a string");
  *out = it->get<std::string>();
  return true;
}

bool read_time(const json& obj, const std::string& where, const char* key, int64_t* out,
               std::string* error) {
  std::string text;
  if (!read_string(obj, where, key, true, &text, error)) return false;
  std::optional<int64_t> ms = parse_rfc3339(text);
  if (!ms) return field_error(error, where, key, "not an RFC 3339 time: " + json_quoted(text));
  *out = *ms;
  return true;
}

bool read_matcher(const json& j, const std::string& where, Matcher* out, std::string* error) {
  if (!j.is_object()) return field_error(error, where, "", "must be an object");
  const std::string at = where + ".";
  auto name = j.find("name");
  if (name == j.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    return field_error(error, at, "name", "must be a non-empty string");
  if (!valid_label_name(name->get_ref<const std::string&>()))
    return field_error(error, at, "name",
                       "not a valid label name: " + json_quoted(name->get<std::string>()));
  std::string value;
  if (!read_string(j, at, "value", true, &value, error)) return false;
  auto regex = j.find("isRegex");
  if (regex == j.end() || !regex->is_boolean())
    return field_error(error, at, "isRegex", "must be a boolean");
  bool equal = true;
  if (auto it = j.find("isEqual"); it != j.end()) {
    if (!it->is_boolean()) return field_error(error, at, "isEqual", "must be a boolean");
    equal = it->get<bool>();
  }
  using Op = Matcher::Op;
  Op op = regex->get<bool>() ? (equal ? Op::kRe : Op::kNre) : (equal ? Op::kEq : Op::kNe);
  std::string why;
  std::optional<Matcher> m = make_matcher(name->get<std::string>(), op, std::move(value), &why);
  if (!m) return field_error(error, at, "value", why);
  *out = std::move(*m);
  return true;
}

// The fields PostableSilence and GettableSilence share.
bool read_silence(const json& j, const std::string& where, Silence* s, std::string* error) {
  auto matchers = j.find("matchers");
  if (matchers == j.end()) return field_error(error, where, "matchers", "required");
  if (!matchers->is_array()) return field_error(error, where, "matchers", "must be an array");
  for (size_t i = 0; i < matchers->size(); ++i) {
    Matcher m;
    if (!read_matcher((*matchers)[i], fmt::format("{}matchers[{}]", where, i), &m, error))
      return false;
    s->matchers.push_back(std::move(m));
  }
  return read_time(j, where, "startsAt", &s->starts_at_ms, error) &&
         read_time(j, where, "endsAt", &s->ends_at_ms, error) &&
         read_string(j, where, "createdBy", false, &s->created_by, error) &&
         read_string(j, where, "comment", true, &s->comment, error);
}

// nlohmann's message without its "[json.exception.parse_error.101] " prefix.
// Besides parse_error, parsing throws out_of_range for a number beyond a
// double ("1e400"): that too is a body that is not (usable) JSON.
std::string parser_message(const json::exception& e) {
  std::string what = e.what();
  if (size_t p = what.find("] "); p != std::string::npos) what.erase(0, p + 2);
  return what;
}

}  // namespace

bool Matcher::matches(const Labels& labels) const {
  auto it = labels.find(name);
  std::string_view v = it == labels.end() ? std::string_view() : std::string_view(it->second);
  switch (op) {
    case Op::kEq: return v == value;
    case Op::kNe: return v != value;
    case Op::kRe:
    case Op::kNre: {
      if (!regex) return false;
      std::string gave_up;
      bool found = regex->search(v, &gave_up);
      if (!gave_up.empty()) return false;
      return found == (op == Op::kRe);
    }
  }
  return false;
}

std::string Matcher::str() const {
  std::string out = name + kOps[static_cast<int>(op)] + '"';
  for (char c : value) {
    if (c == '"' || c == '\\')
      out += {'\\', c};
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out + '"';
}

std::optional<Matcher> make_matcher(std::string name, Matcher::Op op, std::string value,
                                    std::string* error) {
  if (!valid_label_name(name)) {
    if (error) *error = "not a valid label name: " + json_quoted(name);
    return std::nullopt;
  }
  Matcher m{std::move(name), op, std::move(value), std::nullopt};
  if (!is_regex(op)) return m;
  auto fail = [&](std::string_view why) -> std::optional<Matcher> {
    if (error) *error = fmt::format("invalid regex {}: {}", json_quoted(m.value), why);
    return std::nullopt;
  };
  // Compiled as written first, so an error's offset points into the user's pattern.
  std::string why;
  if (!runtime::Regex::compile(m.value, &why)) return fail(why);
  // \z, not $: $ would also match before a final line feed.
  m.regex = runtime::Regex::compile("^(?:" + m.value + ")\\z");
  if (!m.regex) return fail("cannot be anchored as ^(?:...)$ (an unterminated \\Q?)");
  return m;
}

std::optional<Matcher> parse_matcher(std::string_view text, std::string* error) {
  auto fail = [&](std::string_view why) -> std::optional<Matcher> {
    if (error) *error = fmt::format("matcher '{}': {}", text, why);
    return std::nullopt;
  };
  constexpr std::string_view kShape = "expected name, operator (=, !=, =~, !~) and value";
  std::string_view s = trim(text);
  size_t n = 0;
  while (n < s.size() && name_char(s[n], n == 0)) ++n;
  std::string_view rest = trim(s.substr(n));
  // =~ and != before =, which would take their first character.
  static constexpr std::pair<std::string_view, Matcher::Op> kParse[] = {{"=~", Matcher::Op::kRe},
                                                                        {"!~", Matcher::Op::kNre},
                                                                        {"!=", Matcher::Op::kNe},
                                                                        {"=", Matcher::Op::kEq}};
  auto op = std::find_if(std::begin(kParse), std::end(kParse),
                         [&](const auto& p) { return rest.starts_with(p.first); });
  if (n == 0 || op == std::end(kParse)) return fail(kShape);
  std::string_view raw = trim(rest.substr(op->first.size()));

  const bool quoted_value = raw.starts_with('"');
  if (quoted_value) raw.remove_prefix(1);
  bool closed = !quoted_value;
  std::string value;
  for (size_t i = 0; i < raw.size(); ++i) {
    char c = raw[i];
    if (c == '\\' && i + 1 < raw.size()) {
      char next = raw[++i];
      if (next == 'n')
        value += '\n';
      else if (next == '"' || next == '\\')
        value += next;
      else
        value += {'\\', next};  // amtool keeps other escapes: "host\d+" stays as written
    } else if (c == '"') {
      if (!quoted_value || i + 1 != raw.size()) return fail("unescaped double quote in the value");
      closed = true;
    } else {
      value += c;
    }
  }
  if (!closed) return fail("unterminated quoted value");
  return make_matcher(std::string(s.substr(0, n)), op->second, std::move(value), error);
}

bool validate_matchers(const std::vector<Matcher>& matchers, std::string* error) {
  auto matches_empty = [](const Matcher& m) {
    if (m.op == Matcher::Op::kEq) return m.value.empty();
    return m.op == Matcher::Op::kRe && m.matches({});
  };
  const char* why = nullptr;
  if (matchers.empty())
    why = "at least one matcher required";
  else if (std::all_of(matchers.begin(), matchers.end(), matches_empty))
    why = "at least one matcher must not match the empty string";
  if (why && error) *error = why;
  return !why;
}

Silence::State Silence::state(int64_t now_ms) const {
  if (now_ms < starts_at_ms) return State::kPending;
  if (now_ms < ends_at_ms) return State::kActive;
  return State::kExpired;
}

bool Silence::matches(const Labels& labels) const {
  // Without matchers all_of is true: a silence that reached here unvalidated
  // (a hand-edited state file) must not silence everything.
  return !matchers.empty() && std::all_of(matchers.begin(), matchers.end(),
                                          [&](const Matcher& m) { return m.matches(labels); });
}

const char* to_string(Silence::State state) {
  static constexpr const char* kNames[] = {"pending", "active", "expired"};
  return kNames[static_cast<int>(state)];
}

std::optional<int64_t> parse_rfc3339(std::string_view t) {
  size_t i = 0;
  auto number = [&](size_t width, int* out) {
    if (t.size() - i < width) return false;
    int v = 0;
    for (size_t k = 0; k < width; ++k) {
      char c = t[i + k];
      if (c < '0' || c > '9') return false;
      v = v * 10 + (c - '0');
    }
    i += width;
    *out = v;
    return true;
  };
  auto take = [&](char a, char b = '\0') {
    if (i == t.size() || (t[i] != a && (!b || t[i] != b))) return false;
    ++i;
    return true;
  };
  int y, mo, d, h, mi, s;
  if (!number(4, &y) || !take('-') || !number(2, &mo) || !take('-') || !number(2, &d) ||
      !take('T', 't') || !number(2, &h) || !take(':') || !number(2, &mi) || !take(':') ||
      !number(2, &s))
    return std::nullopt;
  int64_t frac_ms = 0;
  if (take('.')) {
    const size_t start = i;
    for (int scale = 100; i < t.size() && t[i] >= '0' && t[i] <= '9'; ++i, scale /= 10)
      frac_ms += (t[i] - '0') * scale;  // digits past milliseconds add 0
    if (i == start) return std::nullopt;
  }
  int offset_min = 0;
  if (!take('Z', 'z')) {
    const int sign = take('+') ? 1 : take('-') ? -1 : 0;
    int oh, om;
    if (!sign || !number(2, &oh) || !take(':') || !number(2, &om) || oh > 23 || om > 59)
      return std::nullopt;
    offset_min = sign * (oh * 60 + om);
  }
  if (i != t.size() || h > 23 || mi > 59 || s > 59) return std::nullopt;
  using namespace std::chrono;
  year_month_day ymd{year(y), month(static_cast<unsigned>(mo)), day(static_cast<unsigned>(d))};
  if (!ymd.ok()) return std::nullopt;
  int64_t days_since_epoch = sys_days(ymd).time_since_epoch().count();
  return ((days_since_epoch * 24 + h) * 60 + mi - offset_min) * 60'000 + s * 1000 + frac_ms;
}

std::string format_rfc3339(int64_t ms) {
  using namespace std::chrono;
  sys_time<milliseconds> tp{milliseconds(ms)};
  auto date = floor<days>(tp);
  year_month_day ymd{date};
  hh_mm_ss hms{tp - date};
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", static_cast<int>(ymd.year()),
                     static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                     hms.hours().count(), hms.minutes().count(), hms.seconds().count(),
                     hms.subseconds().count());
}

std::optional<Silence> parse_postable_silence(std::string_view body, std::string* error) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    if (error) *error = "body is not JSON: " + parser_message(e);
    return std::nullopt;
  }
  if (!j.is_object()) {
    if (error) *error = "body: must be a JSON object";
    return std::nullopt;
  }
  Silence s;
  if (!read_string(j, "", "id", false, &s.id, error) || !read_silence(j, "", &s, error))
    return std::nullopt;
  return s;
}

nlohmann::ordered_json to_json(const Silence& s, int64_t now_ms) {
  json matchers = json::array();
  for (const Matcher& m : s.matchers) {
    matchers.push_back({{"name", m.name},
                        {"value", m.value},
                        {"isRegex", is_regex(m.op)},
                        {"isEqual", m.op == Matcher::Op::kEq || m.op == Matcher::Op::kRe}});
  }
  return {{"id", s.id},
          {"status", {{"state", to_string(s.state(now_ms))}}},
          {"updatedAt", format_rfc3339(s.updated_at_ms)},
          {"matchers", std::move(matchers)},
          {"startsAt", format_rfc3339(s.starts_at_ms)},
          {"endsAt", format_rfc3339(s.ends_at_ms)},
          {"createdBy", s.created_by},
          {"comment", s.comment}};
}

SilenceStore::SilenceStore(SilenceLimits limits) : limits_(limits) {}

std::optional<std::string> SilenceStore::add(Silence s, int64_t now, std::string* error) {
  auto fail = [&](std::string why) -> std::optional<std::string> {
    if (error) *error = std::move(why);
    return std::nullopt;
  };
  std::string why;
  if (!validate_matchers(s.matchers, &why)) return fail("matchers: " + why);
  if (s.ends_at_ms <= s.starts_at_ms) return fail("endsAt: must be after startsAt");
  if (s.ends_at_ms <= now) return fail("endsAt: must be in the future");
  if (s.ends_at_ms - std::max(s.starts_at_ms, now) > limits_.max_duration.count())
    return fail("endsAt: a silence may last at most " +
                runtime::format_duration(limits_.max_duration));
  if (s.created_by.empty()) return fail("createdBy: must not be empty");
  if (s.comment.empty()) return fail("comment: must not be empty");

  Silence* prev = nullptr;
  if (!s.id.empty()) {
    if (config_.contains(s.id)) return fail(read_only(s.id));
    auto it = api_.find(s.id);
    if (it == api_.end()) return fail("silence " + s.id + " not found");
    prev = &it->second;
  }
  s.from_config = false;
  s.updated_at_ms = now;
  ++version_;
  if (prev && can_update(*prev, s, now)) {
    *prev = std::move(s);
    return prev->id;
  }
  // The old silence stays listed as it was, ended now, like Alertmanager's.
  if (prev && prev->state(now) != Silence::State::kExpired) end_now(*prev, now);
  s.id = new_uuid();
  s.starts_at_ms = std::max(s.starts_at_ms, now);
  std::string id = s.id;
  api_.emplace(id, std::move(s));
  return id;
}

bool SilenceStore::expire(const std::string& id, int64_t now, std::string* error) {
  auto fail = [&](std::string why) {
    if (error) *error = std::move(why);
    return false;
  };
  if (config_.contains(id)) return fail(read_only(id));
  auto it = api_.find(id);
  if (it == api_.end()) return fail("silence " + id + " not found");
  if (it->second.state(now) == Silence::State::kExpired)
    return fail("silence " + id + " is already expired");
  end_now(it->second, now);
  ++version_;
  return true;
}

void SilenceStore::set_config_silences(std::vector<Silence> silences, int64_t now) {
  std::map<std::string, Silence> next;
  bool changed = false;
  for (Silence& s : silences) {
    s.from_config = true;
    auto old = config_.find(s.id);
    if (old != config_.end() && same_content(old->second, s)) {
      s.updated_at_ms = old->second.updated_at_ms;
    } else {
      s.updated_at_ms = now;
      changed = true;
    }
    std::string id = s.id;
    next.insert_or_assign(std::move(id), std::move(s));
  }
  if (changed || next.size() != config_.size()) ++version_;
  config_ = std::move(next);
}

const Silence* SilenceStore::find(const std::string& id) const {
  for (const auto* m : {&config_, &api_})
    if (auto it = m->find(id); it != m->end()) return &it->second;
  return nullptr;
}

bool SilenceStore::silenced(const Labels& labels, int64_t now, std::string* by_id) const {
  const Silence* best = nullptr;
  for (const auto* m : {&config_, &api_}) {
    for (const auto& [id, s] : *m) {
      if (s.state(now) == Silence::State::kActive && (!best || s.ends_at_ms > best->ends_at_ms) &&
          s.matches(labels))
        best = &s;
    }
  }
  if (best && by_id) *by_id = best->id;
  return best != nullptr;
}

std::vector<Silence> SilenceStore::list(int64_t now) const {
  std::vector<Silence> out;
  for (const auto* m : {&config_, &api_})
    for (const auto& [id, s] : *m) out.push_back(s);
  auto key = [now](const Silence& s) {
    Silence::State st = s.state(now);
    if (st == Silence::State::kActive) return std::pair(0, s.ends_at_ms);
    if (st == Silence::State::kPending) return std::pair(1, s.starts_at_ms);
    return std::pair(2, -s.ends_at_ms);
  };
  std::stable_sort(out.begin(), out.end(),
                   [&](const Silence& a, const Silence& b) { return key(a) < key(b); });
  return out;
}

SilenceStore::Counts SilenceStore::counts(int64_t now) const {
  Counts c;
  for (const auto* m : {&config_, &api_}) {
    for (const auto& [id, s] : *m) {
      switch (s.state(now)) {
        case Silence::State::kPending: ++c.pending; break;
        case Silence::State::kActive: ++c.active; break;
        case Silence::State::kExpired: ++c.expired; break;
      }
    }
  }
  return c;
}

size_t SilenceStore::gc(int64_t now) {
  size_t n = std::erase_if(
      api_, [&](const auto& e) { return e.second.ends_at_ms + limits_.retention.count() <= now; });
  if (n) ++version_;
  return n;
}

std::optional<int64_t> SilenceStore::next_change(int64_t now) const {
  std::optional<int64_t> next;
  auto consider = [&](int64_t t) {
    if (t > now && (!next || t < *next)) next = t;
  };
  for (const auto* m : {&config_, &api_}) {
    for (const auto& [id, s] : *m) {
      consider(s.starts_at_ms);
      consider(s.ends_at_ms);
    }
  }
  return next;
}

bool SilenceStore::save(const std::string& path, std::string* error) const {
  json silences = json::array();
  for (const auto& [id, s] : api_) {
    json j = to_json(s, 0);
    j.erase("status");  // derived from the times
    silences.push_back(std::move(j));
  }
  json doc = {{"silences", std::move(silences)}};
  return runtime::write_file_atomically(
      path, doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n", error);
}

bool SilenceStore::load(const std::string& path, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error) *error = path + ": " + why;
    return false;
  };
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    if (errno != ENOENT) return fail(std::strerror(errno));
    if (!api_.empty()) ++version_;
    api_.clear();
    return true;
  }
  // fread, not an ifstream: libstdc++'s throws on a read error (EISDIR, EIO).
  std::string text;
  char buf[8192];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  const int read_errno = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (read_errno) return fail(std::strerror(read_errno));
  json doc;
  try {
    doc = json::parse(text);
  } catch (const json::exception& e) {
    return fail("not JSON: " + parser_message(e));
  }
  auto list = doc.find("silences");  // end() unless doc is an object
  if (list == doc.end() || !list->is_array()) return fail("silences: must be an array");
  std::string why;
  std::map<std::string, Silence> loaded;
  for (size_t i = 0; i < list->size(); ++i) {
    const json& j = (*list)[i];
    const std::string where = fmt::format("silences[{}].", i);
    Silence s;
    if (!j.is_object()) return fail(where.substr(0, where.size() - 1) + ": must be an object");
    if (!read_string(j, where, "id", true, &s.id, &why) ||
        !read_time(j, where, "updatedAt", &s.updated_at_ms, &why) ||
        !read_silence(j, where, &s, &why))
      return fail(why);
    std::string id = s.id;
    loaded.insert_or_assign(std::move(id), std::move(s));
  }
  api_ = std::move(loaded);
  ++version_;
  return true;
}

}  // namespace wacht::alerts
