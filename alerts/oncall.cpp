#include "alerts/oncall.hpp"

#include <algorithm>

namespace wacht::alerts {

using runtime::civil_from_days;
using runtime::Date;
using runtime::days_from_civil;
using runtime::weekday_from_days;

namespace {

int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

bool valid(const Override& o) { return o.from < o.until; }

bool contains(const std::vector<Date>& dates, int64_t days) {
  return std::any_of(dates.begin(), dates.end(), [&](const Date& d) {
    return days_from_civil(d.year, d.month, d.day) == days;
  });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

}  // namespace

int64_t Rotation::step_minutes() const {
  // static_cast rather than int64_t{...}: cppcheck 2.10 aborts on the latter here.
  int64_t step = shift_hours > 0 ? static_cast<int64_t>(shift_hours) * 60
                                 : static_cast<int64_t>(shift_days) * 1440;
  return people.empty() || step <= 0 ? 0 : step;
}

int64_t Rotation::handover(int64_t k) const {
  int64_t minute = start.minute_of_day + k * step_minutes();
  Date d = civil_from_days(days_from_civil(start.date.year, start.date.month, start.date.day) +
                           floor_div(minute, 1440));
  return tz->from_local(d.year, d.month, d.day, 0,
                        static_cast<int>(minute - floor_div(minute, 1440) * 1440), 0);
}

std::optional<Shift> Rotation::at(int64_t t) const {
  for (size_t i = overrides.size(); i-- > 0;) {
    const Override& o = overrides[i];
    if (!valid(o) || t < o.from || t >= o.until) continue;
    Shift s{o.person, o.from, o.until, true, o.comment};
    // Later overrides win where they overlap this one.
    for (size_t j = i + 1; j < overrides.size(); ++j) {
      const Override& later = overrides[j];
      if (!valid(later)) continue;
      if (later.until <= t) s.from = std::max(s.from, later.until);
      if (later.from > t) s.until = std::min(s.until, later.from);
    }
    return s;
  }
  const int64_t step = step_minutes();
  if (step == 0) return std::nullopt;
  int64_t first = handover(0);
  if (t < first) return std::nullopt;
  // Estimated in real time, then corrected for the hours DST adds or removes.
  int64_t k = (t - first) / (step * 60);
  while (k > 0 && handover(k) > t) --k;
  while (handover(k + 1) <= t) ++k;
  Shift s{people[k % people.size()], handover(k), handover(k + 1), false, ""};
  for (const Override& o : overrides) {
    if (!valid(o)) continue;
    if (o.until <= t) s.from = std::max(s.from, o.until);
    if (o.from > t) s.until = std::min(s.until, o.from);
  }
  return s;
}

std::vector<Shift> Rotation::shifts(int64_t from, int64_t until) const {
  std::vector<Shift> out;
  int64_t t = from;
  while (t < until) {
    std::optional<Shift> s = at(t);
    if (!s) {
      // Skip to where someone is on call: the first handover or an override.
      int64_t next = until;
      if (step_minutes() > 0) next = std::min(next, handover(0));
      for (const Override& o : overrides)
        if (valid(o) && o.from > t) next = std::min(next, o.from);
      t = next;
      continue;
    }
    s->from = std::max(s->from, from);
    s->until = std::min(s->until, until);
    t = s->until;
    if (!out.empty()) {
      Shift& last = out.back();
      if (last.until == s->from && last.person == s->person && last.override == s->override &&
          last.comment == s->comment) {
        last.until = s->until;
        continue;
      }
    }
    out.push_back(std::move(*s));
  }
  return out;
}

int64_t TimePeriod::instant(int64_t days, int64_t minute) const {
  Date d = civil_from_days(days);
  return tz->from_local(d.year, d.month, d.day, 0, static_cast<int>(minute), 0);
}

bool TimePeriod::active_without_exclude(int64_t t) const {
  runtime::TimeZone::Civil local = tz->to_local(t);
  int64_t day = days_from_civil(local.year, local.month, local.day);
  // Days are [instant(day, 0), instant(day + 1, 0)), like every boundary here;
  // the wall clock disagrees only where a transition crosses midnight.
  if (t < instant(day, 0))
    --day;
  else if (t >= instant(day + 1, 0))
    ++day;
  if (contains(exclude_dates, day)) return false;
  if (contains(dates, day)) return true;
  if (weekly.empty() && dates.empty()) return true;
  for (const WeeklyRange& w : weekly) {
    // Yesterday's ranges may wrap into today.
    for (int64_t d : {day - 1, day}) {
      if (!w.days.test(weekday_from_days(d))) continue;
      for (const TimeRange& r : w.times) {
        int end = r.to > r.from ? r.to : r.to + 1440;
        if (instant(d, r.from) <= t && t < instant(d, end)) return true;
      }
    }
  }
  return false;
}

bool TimePeriod::active(int64_t t) const {
  if (!active_without_exclude(t)) return false;
  return std::none_of(exclude.begin(), exclude.end(),
                      [&](const auto& period) { return period->active(t); });
}

int64_t TimePeriod::next_boundary(int64_t t) const {
  runtime::TimeZone::Civil local = tz->to_local(t);
  int64_t day = days_from_civil(local.year, local.month, local.day);
  int64_t best = instant(day + 2, 0);
  auto consider = [&](int64_t candidate) {
    if (candidate > t) best = std::min(best, candidate);
  };
  for (int64_t d = day - 1; d <= day + 1; ++d) {
    consider(instant(d, 0));
    for (const WeeklyRange& w : weekly) {
      if (!w.days.test(weekday_from_days(d))) continue;
      for (const TimeRange& r : w.times) {
        consider(instant(d, r.from));
        consider(instant(d, r.to > r.from ? r.to : r.to + 1440));
      }
    }
  }
  return best;
}

int64_t TimePeriod::next_change(int64_t t) const {
  const bool now = active(t);
  const int64_t limit = t + kHorizon;
  // Between consecutive boundaries of this period and of the excluded ones
  // nothing changes, so only those instants need a look.
  std::vector<int64_t> excluded_next;
  for (const auto& period : exclude) excluded_next.push_back(period->next_change(t));
  for (int64_t cur = t;;) {
    int64_t candidate = next_boundary(cur);
    for (int64_t n : excluded_next) candidate = std::min(candidate, n);
    if (candidate >= limit) return limit;
    if (active(candidate) != now) return candidate;
    for (size_t i = 0; i < exclude.size(); ++i)
      if (excluded_next[i] <= candidate) excluded_next[i] = exclude[i]->next_change(candidate);
    cur = candidate;
  }
}

std::optional<Weekdays> parse_day_ranges(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<Weekdays> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  if (trim(text).empty()) return fail("empty list of days");
  auto day = [&](std::string_view name) {
    auto d = runtime::parse_weekday(trim(name));
    if (!d && error)
      *error =
          "unknown day " + quote(trim(name)) + " (expected mon, tue, wed, thu, fri, sat or sun)";
    return d;
  };
  Weekdays days;
  for (size_t pos = 0; pos <= text.size();) {
    size_t comma = std::min(text.find(',', pos), text.size());
    std::string_view item = trim(text.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) return fail("empty item in list of days " + quote(text));
    size_t dash = item.find('-');
    auto first = day(item.substr(0, dash));
    if (!first) return std::nullopt;
    auto last = dash == std::string_view::npos ? first : day(item.substr(dash + 1));
    if (!last) return std::nullopt;
    // "fri-mon" wraps around the end of the week.
    for (int d = *first;; d = (d + 1) % 7) {
      days.set(d);
      if (d == *last) break;
    }
  }
  return days;
}

std::optional<TimeRange> parse_time_range(std::string_view text, std::string* error) {
  auto fail = [&](std::string msg) -> std::optional<TimeRange> {
    if (error) *error = std::move(msg);
    return std::nullopt;
  };
  size_t dash = text.find('-');
  if (dash == std::string_view::npos)
    return fail("invalid time range " + quote(text) + " (expected HH:MM-HH:MM)");
  auto from = runtime::parse_clock(trim(text.substr(0, dash)), error);
  if (!from) return std::nullopt;
  auto to = runtime::parse_clock(trim(text.substr(dash + 1)), error);
  if (!to) return std::nullopt;
  if (*from == 1440) return fail("time range " + quote(text) + " starts at 24:00 (use 00:00)");
  if (*from == *to) return fail("empty time range " + quote(text));
  return TimeRange{*from, *to};
}

std::optional<WeeklyRange> parse_window(std::string_view text, std::string* error) {
  std::string_view trimmed = trim(text);
  size_t space = trimmed.find_last_of(" \t");
  if (space == std::string_view::npos) {
    if (error)
      *error = "invalid window " + quote(text) +
               " (expected days and a time range, e.g. \"Sun 02:00-04:00\")";
    return std::nullopt;
  }
  auto days = parse_day_ranges(trimmed.substr(0, space), error);
  if (!days) return std::nullopt;
  auto range = parse_time_range(trimmed.substr(space + 1), error);
  if (!range) return std::nullopt;
  return WeeklyRange{*days, {*range}};
}

}  // namespace wacht::alerts
