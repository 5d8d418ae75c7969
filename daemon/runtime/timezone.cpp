#include "runtime/timezone.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace wacht::runtime {

namespace {

constexpr int64_t kDay = 86400;

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool is_leap(int year) { return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0; }

int days_in_month(int year, int month) {
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return month == 2 && is_leap(year) ? 29 : kDays[month - 1];
}

// Big-endian integer of `n` bytes at `at`; the caller has checked the bounds.
uint64_t read_be(std::string_view data, size_t at, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(data[at + i]);
  return v;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int to_int(std::string_view digits) {
  int v = 0;
  for (char c : digits) v = v * 10 + (c - '0');
  return v;
}

// A cursor over a POSIX TZ string ("CET-1CEST,M3.5.0,M10.5.0/3").
struct RuleCursor {
  std::string_view s;
  size_t i = 0;

  bool done() const { return i >= s.size(); }
  bool peek(char c) const { return i < s.size() && s[i] == c; }
  bool eat(char c) {
    if (!peek(c)) return false;
    ++i;
    return true;
  }
  bool digit() const { return i < s.size() && s[i] >= '0' && s[i] <= '9'; }
  std::optional<int> number(int max) {
    if (!digit()) return std::nullopt;
    int v = 0;
    while (digit()) {
      v = v * 10 + (s[i++] - '0');
      if (v > max) return std::nullopt;
    }
    return v;
  }
  // "CET" or "<+03>".
  std::optional<std::string> abbrev() {
    size_t start = i;
    if (eat('<')) {
      size_t close = s.find('>', i);
      if (close == std::string_view::npos || close == i) return std::nullopt;
      i = close + 1;
      return std::string(s.substr(start + 1, close - start - 1));
    }
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    if (i - start < 3) return std::nullopt;
    return std::string(s.substr(start, i - start));
  }
  // [+-]hh[:mm[:ss]] in seconds.
  std::optional<int32_t> hms(int max_hours) {
    int sign = 1;
    if (eat('-'))
      sign = -1;
    else
      eat('+');
    auto h = number(max_hours);
    if (!h) return std::nullopt;
    int m = 0, sec = 0;
    if (eat(':')) {
      auto v = number(59);
      if (!v) return std::nullopt;
      m = *v;
      if (eat(':')) {
        auto w = number(59);
        if (!w) return std::nullopt;
        sec = *w;
      }
    }
    return sign * (*h * 3600 + m * 60 + sec);
  }
};

}  // namespace

int64_t days_from_civil(int year, int month, int day) {
  int64_t y = year - (month <= 2);
  int64_t era = floor_div(y, 400);
  int64_t yoe = y - era * 400;
  int64_t doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1;
  int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

Date civil_from_days(int64_t days) {
  days += 719468;
  int64_t era = floor_div(days, 146097);
  int64_t doe = days - era * 146097;
  int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  int64_t mp = (5 * doy + 2) / 153;
  int day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  int month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  return {static_cast<int>(yoe + era * 400 + (month <= 2)), month, day};
}

// 1970-01-01 was a Thursday.
int weekday_from_days(int64_t days) {
  return static_cast<int>(days + 3 - floor_div(days + 3, 7) * 7);
}

std::shared_ptr<const TimeZone> TimeZone::load(const std::string& name, std::string* error) {
  auto fail = [&](std::string msg) -> std::shared_ptr<const TimeZone> {
    if (error) *error = std::move(msg);
    return nullptr;
  };
  std::shared_ptr<TimeZone> zone(new TimeZone());
  zone->name_ = name;
  // Built in, so that UTC works without tzdata installed.
  if (name == "UTC") {
    zone->types_.push_back({0, "UTC"});
    return zone;
  }
  // The name becomes a path: keep it inside the zoneinfo directory.
  if (name.empty() || name.front() == '/' || name.find("..") != std::string::npos)
    return fail("invalid time zone name \"" + name + "\"");
  const char* tzdir = std::getenv("TZDIR");
  std::string dir = tzdir && *tzdir ? tzdir : "/usr/share/zoneinfo";
  std::string path = dir + "/" + name;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    return fail("unknown time zone \"" + name + "\" (see " + dir + ")");
  std::ifstream in(path, std::ios::binary);
  std::string data;
  if (in) data.assign(std::istreambuf_iterator<char>(in), {});
  if (!in)
    return fail("time zone \"" + name + "\": cannot read " + path + ": " + std::strerror(errno));
  std::string reason;
  if (!zone->parse_tzif(data, &reason))
    return fail("time zone \"" + name + "\": " + path + ": " + reason);
  return zone;
}

// RFC 8536. Version 1 data (32-bit) is skipped; the 64-bit block follows it.
bool TimeZone::parse_tzif(std::string_view data, std::string* reason) {
  struct Counts {
    uint64_t isut, isstd, leap, time, type, chars;
  };
  auto header = [&](size_t at, Counts* c) {
    if (data.size() < at + 44) {
      *reason = "truncated";
      return false;
    }
    if (data.substr(at, 4) != "TZif") {
      *reason = "not a TZif file";
      return false;
    }
    if (data[at + 4] == '\0') {
      *reason = "TZif version 1 is not supported";
      return false;
    }
    uint64_t* fields[] = {&c->isut, &c->isstd, &c->leap, &c->time, &c->type, &c->chars};
    for (int i = 0; i < 6; ++i) *fields[i] = read_be(data, at + 20 + 4 * i, 4);
    return true;
  };
  Counts v1, c;
  if (!header(0, &v1)) return false;
  size_t at = 44 + v1.time * 5 + v1.type * 6 + v1.chars + v1.leap * 8 + v1.isstd + v1.isut;
  if (!header(at, &c)) return false;
  at += 44;
  uint64_t size = c.time * 9 + c.type * 6 + c.chars + c.leap * 12 + c.isstd + c.isut;
  if (data.size() - at < size) {
    *reason = "truncated";
    return false;
  }
  if (c.type == 0) {
    *reason = "no local time types";
    return false;
  }
  // Their timestamps count leap seconds, unlike every clock we compare with.
  if (c.leap > 0) {
    *reason = "zones with leap seconds (right/...) are not supported";
    return false;
  }
  size_t index_at = at + c.time * 8, types_at = index_at + c.time, chars_at = types_at + c.type * 6;
  std::string_view chars = data.substr(chars_at, c.chars);
  for (uint64_t i = 0; i < c.time; ++i) {
    auto t = static_cast<int64_t>(read_be(data, at + i * 8, 8));
    auto type = static_cast<uint8_t>(data[index_at + i]);
    if ((!transitions_.empty() && t <= transitions_.back()) || type >= c.type) {
      *reason = "bad transition " + std::to_string(i);
      return false;
    }
    transitions_.push_back(t);
    transition_type_.push_back(type);
  }
  for (uint64_t i = 0; i < c.type; ++i) {
    size_t p = types_at + i * 6;
    auto abbrev_index = static_cast<uint8_t>(data[p + 5]);
    if (abbrev_index >= c.chars) {
      *reason = "bad local time type " + std::to_string(i);
      return false;
    }
    std::string_view abbrev = chars.substr(abbrev_index);
    abbrev = abbrev.substr(0, abbrev.find('\0'));
    types_.push_back({static_cast<int32_t>(read_be(data, p, 4)), std::string(abbrev)});
  }
  // Footer: "\n<POSIX TZ string>\n"; an empty string means no rule.
  at += size;
  if (at < data.size()) {
    size_t end = data.find('\n', at + 1);
    if (data[at] != '\n' || end == std::string_view::npos) {
      *reason = "bad footer";
      return false;
    }
    std::string_view text = data.substr(at + 1, end - at - 1);
    if (!text.empty()) {
      rule_ = parse_posix_rule(text);
      if (!rule_) {
        *reason = "bad TZ rule \"" + std::string(text) + "\" in footer";
        return false;
      }
    }
  }
  return true;
}

// std offset [dst [offset] [,start[/time],end[/time]]]; offsets count west.
std::optional<TimeZone::PosixRule> TimeZone::parse_posix_rule(std::string_view text) {
  RuleCursor cur{text};
  PosixRule rule;
  auto std_name = cur.abbrev();
  auto std_offset = cur.hms(24);
  if (!std_name || !std_offset) return std::nullopt;
  rule.std_type = {-*std_offset, *std_name};
  if (cur.done()) return rule;
  auto dst_name = cur.abbrev();
  if (!dst_name) return std::nullopt;
  int32_t dst_offset = rule.std_type.offset + 3600;
  if (!cur.done() && !cur.peek(',')) {
    auto v = cur.hms(24);
    if (!v) return std::nullopt;
    dst_offset = -*v;
  }
  rule.dst_type = Type{dst_offset, *dst_name};
  if (cur.done()) {
    // No dates: POSIX leaves them to the implementation; glibc uses the US rule.
    rule.start = {RuleDate::kMonthWeekDay, 3, 2, 0, 0, 7200};
    rule.end = {RuleDate::kMonthWeekDay, 11, 1, 0, 0, 7200};
    return rule;
  }
  auto date = [&](RuleDate* d) {
    if (!cur.eat(',')) return false;
    if (cur.eat('M')) {
      auto m = cur.number(12);
      if (!m || *m < 1 || !cur.eat('.')) return false;
      auto w = cur.number(5);
      if (!w || *w < 1 || !cur.eat('.')) return false;
      auto wd = cur.number(6);
      if (!wd) return false;
      *d = {RuleDate::kMonthWeekDay, *m, *w, *wd, 0, 7200};
    } else {
      bool julian = cur.eat('J');
      auto n = cur.number(365);
      if (!n || (julian && *n < 1)) return false;
      *d = {julian ? RuleDate::kJulian : RuleDate::kZeroBasedDay, 0, 0, 0, *n, 7200};
    }
    // RFC 8536 extends the time to -167..167 hours.
    if (cur.eat('/')) {
      auto t = cur.hms(167);
      if (!t) return false;
      d->time = *t;
    }
    return true;
  };
  if (!date(&rule.start) || !date(&rule.end) || !cur.done()) return std::nullopt;
  return rule;
}

int64_t TimeZone::rule_instant(const RuleDate& date, int year, int32_t offset) {
  int64_t jan1 = days_from_civil(year, 1, 1);
  int64_t days = 0;  // every kind is a case below; GCC -O2 cannot tell
  switch (date.kind) {
    case RuleDate::kJulian: days = jan1 + date.day - 1 + (is_leap(year) && date.day >= 60); break;
    case RuleDate::kZeroBasedDay: days = jan1 + date.day; break;
    case RuleDate::kMonthWeekDay: {
      int64_t first = days_from_civil(year, date.month, 1);
      int first_weekday = (weekday_from_days(first) + 1) % 7;  // 0 = Sunday, as in the rule
      days = first + (date.weekday - first_weekday + 7) % 7 + (date.week - 1) * 7;
      // Week 5 means the last such weekday of the month.
      while (days >= first + days_in_month(year, date.month)) days -= 7;
      break;
    }
  }
  return days * kDay + date.time - offset;
}

const TimeZone::Type& TimeZone::rule_type_at(int64_t t) const {
  if (!rule_->dst_type) return rule_->std_type;
  int year = civil_from_days(floor_div(t + rule_->std_type.offset, kDay)).year;
  int64_t start = rule_instant(rule_->start, year, rule_->std_type.offset);
  int64_t end = rule_instant(rule_->end, year, rule_->dst_type->offset);
  // Southern hemisphere: daylight time spans the turn of the year.
  bool dst = start < end ? start <= t && t < end : !(end <= t && t < start);
  return dst ? *rule_->dst_type : rule_->std_type;
}

const TimeZone::Type& TimeZone::type_at(int64_t t) const {
  if (transitions_.empty()) return rule_ ? rule_type_at(t) : types_.front();
  if (t >= transitions_.back() && rule_) return rule_type_at(t);
  auto it = std::upper_bound(transitions_.begin(), transitions_.end(), t);
  if (it == transitions_.begin()) return types_.front();
  return types_[transition_type_[it - transitions_.begin() - 1]];
}

TimeZone::Civil TimeZone::to_local(int64_t t) const {
  const Type& type = type_at(t);
  int64_t local = t + type.offset;
  int64_t days = floor_div(local, kDay);
  auto secs = static_cast<int>(local - days * kDay);
  Date d = civil_from_days(days);
  return {d.year,
          d.month,
          d.day,
          secs / 3600,
          secs / 60 % 60,
          secs % 60,
          weekday_from_days(days),
          type.offset,
          type.abbrev};
}

int64_t TimeZone::from_local(int year, int month, int day, int hour, int minute, int second) const {
  int64_t local = days_from_civil(year, month, day) * kDay + int64_t{hour} * 3600 +
                  int64_t{minute} * 60 + second;
  // The offsets on either side of a transition near this wall time; no zone
  // changes its offset twice within a day.
  int32_t before = type_at(local - kDay).offset;
  int32_t after = type_at(local + kDay).offset;
  auto valid = [&](int32_t offset) { return type_at(local - offset).offset == offset; };
  bool before_valid = valid(before), after_valid = valid(after);
  if (before_valid && after_valid) return std::min(local - before, local - after);
  if (after_valid) return local - after;
  // Valid before, or a gap: read with the old offset, which lands past the gap.
  return local - before;
}

std::optional<int> parse_weekday(std::string_view text) {
  static constexpr const char* kNames[] = {"monday", "tuesday",  "wednesday", "thursday",
                                           "friday", "saturday", "sunday"};
  std::string lower;
  for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (int i = 0; i < 7; ++i) {
    std::string_view name = kNames[i];
    if (lower == name || lower == name.substr(0, 3)) return i;
  }
  return std::nullopt;
}

std::optional<Date> parse_date(std::string_view text, std::string* error) {
  static constexpr const char* kMonths[] = {"January",   "February", "March",    "April",
                                            "May",       "June",     "July",     "August",
                                            "September", "October",  "November", "December"};
  auto fail = [&](std::string msg) -> std::optional<Date> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  std::string quoted = "\"" + std::string(text) + "\"";
  if (text.size() != 10 || text[4] != '-' || text[7] != '-' || !all_digits(text.substr(0, 4)) ||
      !all_digits(text.substr(5, 2)) || !all_digits(text.substr(8, 2)))
    return fail("invalid date " + quoted + " (expected YYYY-MM-DD)");
  Date d{to_int(text.substr(0, 4)), to_int(text.substr(5, 2)), to_int(text.substr(8, 2))};
  if (d.month < 1 || d.month > 12)
    return fail("invalid month " + std::to_string(d.month) + " in date " + quoted);
  int days = days_in_month(d.year, d.month);
  if (d.day < 1 || d.day > days)
    return fail("invalid day " + std::to_string(d.day) + " in date " + quoted + " (" +
                kMonths[d.month - 1] + " " + std::to_string(d.year) + " has " +
                std::to_string(days) + " days)");
  return d;
}

std::optional<int> parse_clock(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<int> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  std::string quoted = "\"" + std::string(text) + "\"";
  size_t colon = text.find(':');
  // A missing colon is npos, which is > 2 as well.
  if (colon > 2 || !all_digits(text.substr(0, colon)) || text.size() != colon + 3 ||
      !all_digits(text.substr(colon + 1)))
    return fail("invalid time " + quoted + " (expected HH:MM)");
  int hour = to_int(text.substr(0, colon)), minute = to_int(text.substr(colon + 1));
  if (minute > 59) return fail("invalid minute " + std::to_string(minute) + " in time " + quoted);
  if (hour > 24) return fail("invalid hour " + std::to_string(hour) + " in time " + quoted);
  if (hour == 24 && minute > 0) return fail("invalid time " + quoted + " (24:00 is the latest)");
  return hour * 60 + minute;
}

std::optional<LocalDateTime> parse_local_datetime(std::string_view text, std::string* error) {
  if (text.size() < 11 || (text[10] != 'T' && text[10] != ' ')) {
    if (error)
      *error = "invalid date and time \"" + std::string(text) + "\" (expected YYYY-MM-DDTHH:MM)";
    return std::nullopt;
  }
  auto date = parse_date(text.substr(0, 10), error);
  if (!date) return std::nullopt;
  auto minute = parse_clock(text.substr(11), error);
  if (!minute) return std::nullopt;
  return LocalDateTime{*date, *minute};
}

}  // namespace wacht::runtime
