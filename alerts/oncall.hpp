#pragma once

#include <bitset>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "runtime/timezone.hpp"

namespace wacht::alerts {

struct Person {
  std::string id, name, email;
};

// Someone else takes over [from, until): holiday cover, swaps.
struct Override {
  std::string person;
  int64_t from, until;  // unix seconds
  std::string comment;
};

// One piece of an on-call schedule.
struct Shift {
  std::string person;
  int64_t from, until;  // unix seconds, [from, until)
  bool override;
  std::string comment;  // the override's
};

// Who is on call when. The people take turns in list order; handovers happen
// at the same local wall time however the offset changes (a Monday 09:00
// handover stays 09:00 in CET and CEST), so shifts across a DST change are an
// hour shorter or longer. Hour-based shifts step in wall time too: 12h shifts
// from 07:00 hand over at 07:00 and 19:00 every day. A handover in a
// spring-forward gap moves forward by the gap (see TimeZone::from_local).
// Pure: time is passed in.
struct Rotation {
  std::vector<std::string> people;              // person ids
  std::shared_ptr<const runtime::TimeZone> tz;  // never null
  runtime::LocalDateTime start{};  // the first handover, local wall time; people[0] takes over then
  int shift_days = 7;
  int shift_hours = 0;  // if > 0, used instead of shift_days
  // The latest-listed override covering an instant wins over earlier ones and
  // the rotation, also before `start`.
  std::vector<Override> overrides;

  // Who is on call at `t` and over which stretch: a rotation shift cut short
  // by overrides, or the part of an override not covered by later ones.
  // nullopt before `start` (or with no people or no shift length) unless an
  // override covers `t`.
  std::optional<Shift> at(int64_t t) const;
  // The schedule within [from, until), clipped to it: overrides cut into the
  // rotation and adjacent equal pieces merged, so that a rotation of one
  // person is a single shift. Times without anyone on call are left out.
  std::vector<Shift> shifts(int64_t from, int64_t until) const;

 private:
  // Wall-clock minutes per shift; 0 if nobody rotates.
  int64_t step_minutes() const;
  int64_t handover(int64_t k) const;  // instant of the k-th handover
};

using Weekdays = std::bitset<7>;  // bit 0 = Monday .. bit 6 = Sunday

// Local wall-clock minutes [from, to); to <= from wraps past midnight.
struct TimeRange {
  int from = 0, to = 1440;
};

// The time ranges of some weekdays. A range that wraps past midnight belongs
// to the day it starts: "fri 22:00-06:00" ends on Saturday morning.
struct WeeklyRange {
  Weekdays days;
  std::vector<TimeRange> times;
};

// When something applies (Icinga's timeperiods, Alertmanager's
// time_intervals): during the weekly ranges and on `dates`, but never on
// `exclude_dates` (public holidays) nor while a period in `exclude` is active.
// With neither weekly ranges nor dates it is always active, a base for
// exclusions. Local times are turned into instants with tz->from_local, so a
// range starting in a spring-forward gap starts after it, and each local time
// is one instant even when the wall clock shows it twice.
struct TimePeriod {
  std::shared_ptr<const runtime::TimeZone> tz;  // never null
  std::vector<WeeklyRange> weekly;
  std::vector<runtime::Date> dates;                        // whole local days
  std::vector<runtime::Date> exclude_dates;                // whole local days
  std::vector<std::shared_ptr<const TimePeriod>> exclude;  // must not form a cycle

  bool active(int64_t t) const;
  // The first instant after `t` at which active() differs from active(t),
  // for arming a timer; t + kHorizon if there is none that soon (arm the timer
  // anyway and ask again then).
  int64_t next_change(int64_t t) const;
  static constexpr int64_t kHorizon = 400 * 86400;

 private:
  bool active_without_exclude(int64_t t) const;
  // The first instant after `t` at which active_without_exclude may change.
  int64_t next_boundary(int64_t t) const;
  // The instant of local `minute` (may exceed 1440) on the local day `days`.
  int64_t instant(int64_t days, int64_t minute) const;
};

// Config values; each returns nullopt on bad input and sets *error to a
// message naming the bad part.

// "mon-fri", "sat,sun", "sun"; ranges wrap around the week ("fri-mon").
std::optional<Weekdays> parse_day_ranges(std::string_view text, std::string* error);
// "07:00-16:00"; "22:00-06:00" wraps past midnight; "00:00-24:00" is a whole day.
std::optional<TimeRange> parse_time_range(std::string_view text, std::string* error);
// Days and a time range, for maintenance windows: "Sun 02:00-04:00", "mon-fri 22:00-06:00".
std::optional<WeeklyRange> parse_window(std::string_view text, std::string* error);

}  // namespace wacht::alerts
