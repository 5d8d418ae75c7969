#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wacht::runtime {

// A day of the proleptic Gregorian calendar.
struct Date {
  int year, month, day;
  auto operator<=>(const Date&) const = default;
};

// Days since 1970-01-01 and back (Howard Hinnant's algorithms). `day` may lie
// outside the month and carries over.
int64_t days_from_civil(int year, int month, int day);
Date civil_from_days(int64_t days);
// 0 = Monday .. 6 = Sunday.
int weekday_from_days(int64_t days);

// An IANA time zone read from its TZif file. GCC 12's libstdc++ has no tzdb and
// the process-wide TZ cannot serve tenants in different zones, so we parse the
// files ourselves. Immutable once loaded; share it freely between threads.
class TimeZone {
 public:
  // "UTC", or an IANA name ("Europe/Berlin") read from $TZDIR or
  // /usr/share/zoneinfo. TZif version 2 or later: the 64-bit data, and the
  // POSIX TZ rule of the footer for instants after the last transition.
  // Returns nullptr and sets *error on an unknown name or a bad file.
  static std::shared_ptr<const TimeZone> load(const std::string& name, std::string* error);

  const std::string& name() const { return name_; }

  struct Civil {
    int year, month, day, hour, minute, second;
    int weekday;     // 0 = Monday .. 6 = Sunday
    int utc_offset;  // seconds east of UTC
    std::string abbrev;
  };
  Civil to_local(int64_t unix_seconds) const;

  // The instant a local wall time names. `day`, `hour`, `minute` and `second`
  // may exceed their range and carry over (hour 24 is the next midnight). A
  // wall time in a spring-forward gap is moved forward by the gap (02:30 on
  // Europe/Berlin's spring day becomes 03:30 CEST), as cron and Icinga do; one
  // that occurs twice in an autumn overlap means the earlier instant.
  int64_t from_local(int year, int month, int day, int hour, int minute, int second) const;

 private:
  struct Type {
    int32_t offset = 0;
    std::string abbrev;
  };
  // A transition date of a POSIX TZ rule ("M3.5.0/2").
  struct RuleDate {
    enum Kind { kJulian, kZeroBasedDay, kMonthWeekDay } kind = kMonthWeekDay;
    int month = 0, week = 0, weekday = 0;  // kMonthWeekDay; weekday 0 = Sunday
    int day = 0;                           // kJulian (1..365, no Feb 29), kZeroBasedDay (0..365)
    int32_t time = 7200;                   // seconds after local midnight, may be <0 or >24h
  };
  // The footer's rule: standard time, and daylight saving time between start
  // (given in standard time) and end (given in daylight time).
  struct PosixRule {
    Type std_type;
    std::optional<Type> dst_type;
    RuleDate start, end;
  };

  TimeZone() = default;
  bool parse_tzif(std::string_view data, std::string* reason);
  static std::optional<PosixRule> parse_posix_rule(std::string_view text);
  static int64_t rule_instant(const RuleDate& date, int year, int32_t offset);
  const Type& type_at(int64_t unix_seconds) const;
  const Type& rule_type_at(int64_t unix_seconds) const;

  std::string name_;
  std::vector<int64_t> transitions_;      // ascending
  std::vector<uint8_t> transition_type_;  // index into types_, per transition
  std::vector<Type> types_;
  std::optional<PosixRule> rule_;  // for instants after the last transition
};

// Config values. Each returns nullopt on bad input and sets *error to a
// message naming the bad part.

// "mon" .. "sun" or "monday" .. "sunday", any case -> 0 = Monday .. 6 = Sunday.
std::optional<int> parse_weekday(std::string_view text);
// "2026-12-24"; the day must exist in that month.
std::optional<Date> parse_date(std::string_view text, std::string* error);
// "07:30" -> minutes since midnight; "24:00" (= 1440) names the end of a day.
std::optional<int> parse_clock(std::string_view text, std::string* error);

struct LocalDateTime {
  Date date;
  int minute_of_day;  // 0 .. 1440
};
// "2026-12-24T18:00" or "2026-12-24 18:00".
std::optional<LocalDateTime> parse_local_datetime(std::string_view text, std::string* error);

}  // namespace wacht::runtime
