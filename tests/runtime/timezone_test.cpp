#include "runtime/timezone.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <optional>

#include "support/process.hpp"

namespace wacht::runtime {
namespace {

std::shared_ptr<const TimeZone> must_load(const std::string& name) {
  std::string err;
  auto tz = TimeZone::load(name, &err);
  EXPECT_NE(tz, nullptr) << name << ": " << err;
  return tz;
}

// Sets an environment variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(name_, old_->c_str(), 1);
    else
      unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

struct LocalCase {
  const char* zone;
  int64_t t;
  int year, month, day, hour, minute, second, weekday, offset;
  const char* abbrev;
};

void expect_local(const LocalCase& c) {
  auto tz = must_load(c.zone);
  ASSERT_NE(tz, nullptr);
  TimeZone::Civil l = tz->to_local(c.t);
  std::string what = std::string(c.zone) + " @" + std::to_string(c.t);
  EXPECT_EQ(l.year, c.year) << what;
  EXPECT_EQ(l.month, c.month) << what;
  EXPECT_EQ(l.day, c.day) << what;
  EXPECT_EQ(l.hour, c.hour) << what;
  EXPECT_EQ(l.minute, c.minute) << what;
  EXPECT_EQ(l.second, c.second) << what;
  EXPECT_EQ(l.weekday, c.weekday) << what;
  EXPECT_EQ(l.utc_offset, c.offset) << what;
  EXPECT_EQ(l.abbrev, c.abbrev) << what;
}

TEST(TimeZone, BerlinAroundTheDstChangesOf2026And2027) {
  LocalCase cases[] = {
      // 29 March 2026, 01:00 UTC: 02:00 CET becomes 03:00 CEST.
      {"Europe/Berlin", 1774745999, 2026, 3, 29, 1, 59, 59, 6, 3600, "CET"},
      {"Europe/Berlin", 1774746000, 2026, 3, 29, 3, 0, 0, 6, 7200, "CEST"},
      {"Europe/Berlin", 1774767600, 2026, 3, 29, 9, 0, 0, 6, 7200, "CEST"},
      // 25 October 2026, 01:00 UTC: 03:00 CEST becomes 02:00 CET; 02:xx happens twice.
      {"Europe/Berlin", 1792886400, 2026, 10, 25, 2, 0, 0, 6, 7200, "CEST"},
      {"Europe/Berlin", 1792889999, 2026, 10, 25, 2, 59, 59, 6, 7200, "CEST"},
      {"Europe/Berlin", 1792890000, 2026, 10, 25, 2, 0, 0, 6, 3600, "CET"},
      {"Europe/Berlin", 1806195599, 2027, 3, 28, 1, 59, 59, 6, 3600, "CET"},
      {"Europe/Berlin", 1806195600, 2027, 3, 28, 3, 0, 0, 6, 7200, "CEST"},
      {"Europe/Berlin", 1824944399, 2027, 10, 31, 2, 59, 59, 6, 7200, "CEST"},
      {"Europe/Berlin", 1824944400, 2027, 10, 31, 2, 0, 0, 6, 3600, "CET"},
      // New Year's Eve: the local date is ahead of UTC's.
      {"Europe/Berlin", 1798758000, 2027, 1, 1, 0, 0, 0, 4, 3600, "CET"},
  };
  for (const auto& c : cases) expect_local(c);
}

TEST(TimeZone, FarFutureUsesTheFooterRule) {
  // Past the last transition in the file (2037), the POSIX TZ footer decides.
  LocalCase cases[] = {
      {"Europe/Berlin", 2216249999, 2040, 3, 25, 1, 59, 59, 6, 3600, "CET"},
      {"Europe/Berlin", 2216250000, 2040, 3, 25, 3, 0, 0, 6, 7200, "CEST"},
      {"Europe/Berlin", 2234998799, 2040, 10, 28, 2, 59, 59, 6, 7200, "CEST"},
      {"Europe/Berlin", 2234998800, 2040, 10, 28, 2, 0, 0, 6, 3600, "CET"},
      {"Europe/Berlin", 4102444800, 2100, 1, 1, 1, 0, 0, 4, 3600, "CET"},
      // Southern hemisphere: daylight time spans the turn of the year.
      {"Australia/Sydney", 2216822399, 2040, 4, 1, 2, 59, 59, 6, 39600, "AEDT"},
      {"Australia/Sydney", 2216822400, 2040, 4, 1, 2, 0, 0, 6, 36000, "AEST"},
      {"Australia/Sydney", 2233151999, 2040, 10, 7, 1, 59, 59, 6, 36000, "AEST"},
      {"Australia/Sydney", 2233152000, 2040, 10, 7, 3, 0, 0, 6, 39600, "AEDT"},
      {"Australia/Sydney", 2240575200, 2041, 1, 1, 1, 0, 0, 1, 39600, "AEDT"},
      // Negative daylight saving: Irish Standard Time is the summer time.
      {"Europe/Dublin", 2224756800, 2040, 7, 1, 13, 0, 0, 6, 3600, "IST"},
      {"Europe/Dublin", 2209032000, 2040, 1, 1, 12, 0, 0, 6, 0, "GMT"},
      {"Asia/Kolkata", 2224756800, 2040, 7, 1, 17, 30, 0, 6, 19800, "IST"},
  };
  for (const auto& c : cases) expect_local(c);
}

TEST(TimeZone, UtcIsBuiltIn) {
  auto tz = must_load("UTC");
  ASSERT_NE(tz, nullptr);
  EXPECT_EQ(tz->name(), "UTC");
  expect_local({"UTC", 0, 1970, 1, 1, 0, 0, 0, 3, 0, "UTC"});
  expect_local({"UTC", 1774746000, 2026, 3, 29, 1, 0, 0, 6, 0, "UTC"});
  expect_local({"UTC", -1, 1969, 12, 31, 23, 59, 59, 2, 0, "UTC"});
  EXPECT_EQ(tz->from_local(2026, 3, 29, 2, 30, 0), 1774751400);  // no gap in UTC
}

TEST(TimeZone, FromLocalMovesGapsForwardAndTakesTheEarlierOverlap) {
  auto tz = must_load("Europe/Berlin");
  ASSERT_NE(tz, nullptr);
  struct {
    int year, month, day, hour, minute, second;
    int64_t want;
  } cases[] = {
      {2026, 3, 29, 1, 59, 0, 1774745940},
      {2026, 3, 29, 2, 0, 0, 1774746000},   // gap: 03:00 CEST
      {2026, 3, 29, 2, 30, 0, 1774747800},  // gap: 03:30 CEST
      {2026, 3, 29, 3, 0, 0, 1774746000},
      {2026, 3, 29, 3, 30, 0, 1774747800},
      {2026, 10, 25, 1, 59, 59, 1792886399},
      {2026, 10, 25, 2, 0, 0, 1792886400},   // twice: the CEST one
      {2026, 10, 25, 2, 30, 0, 1792888200},  // twice: the CEST one
      {2026, 10, 25, 3, 0, 0, 1792893600},
      {2027, 3, 28, 2, 15, 0, 1806195600 + 900},  // 03:15 CEST
      {2027, 10, 31, 2, 15, 0, 1824944400 - 3600 + 900},
      {2040, 3, 25, 2, 30, 0, 2216251800},
      {2040, 10, 28, 2, 30, 0, 2234997000},
      // Out-of-range fields carry over.
      {2026, 12, 31, 24, 0, 0, 1798758000},
      {2026, 12, 32, 0, 0, 0, 1798758000},
      {2027, 1, 1, 0, -60, 0, 1798758000 - 3600},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(tz->from_local(c.year, c.month, c.day, c.hour, c.minute, c.second), c.want)
        << c.year << "-" << c.month << "-" << c.day << " " << c.hour << ":" << c.minute;
  }
}

TEST(TimeZone, FromLocalInvertsToLocalExceptForTheRepeatedHour) {
  auto tz = must_load("Europe/Berlin");
  ASSERT_NE(tz, nullptr);
  struct {
    int64_t change;
    bool autumn;
  } changes[] = {{1774746000, false}, {1792890000, true}, {2216250000, false}, {2234998800, true}};
  for (const auto& c : changes) {
    for (int64_t t = c.change - 2 * 86400; t < c.change + 2 * 86400; t += 599) {
      TimeZone::Civil l = tz->to_local(t);
      int64_t back = tz->from_local(l.year, l.month, l.day, l.hour, l.minute, l.second);
      // The second (CET) 02:xx of an autumn night maps to the first (CEST) one.
      bool repeated = c.autumn && t >= c.change && t < c.change + 3600;
      EXPECT_EQ(back, repeated ? t - 3600 : t) << t;
    }
  }
}

// glibc reads the same files independently; both must agree on every instant.
TEST(TimeZone, AgreesWithGlibc) {
  const char* zones[] = {"Europe/Berlin",      "America/New_York",  "Australia/Sydney",
                         "Europe/Dublin",      "Pacific/Chatham",   "America/Santiago",
                         "Asia/Kolkata",       "America/Sao_Paulo", "Africa/Casablanca",
                         "Australia/Lord_Howe"};
  for (const char* zone : zones) {
    auto tz = must_load(zone);
    ASSERT_NE(tz, nullptr);
    ScopedEnv env("TZ", zone);
    tzset();
    // 1950 .. 2100, every 3 days and 1 h 7 s so that all times of day occur.
    for (int64_t t = -631152000; t < 4102444800; t += 3 * 86400 + 3607) {
      time_t tt = t;
      struct tm want {};
      localtime_r(&tt, &want);
      TimeZone::Civil got = tz->to_local(t);
      ASSERT_EQ(got.utc_offset, want.tm_gmtoff) << zone << " @" << t;
      ASSERT_EQ(got.abbrev, want.tm_zone) << zone << " @" << t;
      ASSERT_EQ(got.year, want.tm_year + 1900) << zone << " @" << t;
      ASSERT_EQ(got.month, want.tm_mon + 1) << zone << " @" << t;
      ASSERT_EQ(got.day, want.tm_mday) << zone << " @" << t;
      ASSERT_EQ(got.hour * 3600 + got.minute * 60 + got.second,
                want.tm_hour * 3600 + want.tm_min * 60 + want.tm_sec)
          << zone << " @" << t;
      ASSERT_EQ(got.weekday, (want.tm_wday + 6) % 7) << zone << " @" << t;
    }
  }
  tzset();
}

TEST(TimeZone, RejectsUnknownAndUnsafeNames) {
  ScopedEnv env("TZDIR", "/usr/share/zoneinfo");
  struct {
    const char* name;
    const char* error;
  } cases[] = {
      {"Europe/Berlinn", "unknown time zone \"Europe/Berlinn\" (see /usr/share/zoneinfo)"},
      {"Europe", "unknown time zone \"Europe\" (see /usr/share/zoneinfo)"},
      {"", "invalid time zone name \"\""},
      {"/etc/passwd", "invalid time zone name \"/etc/passwd\""},
      {"Europe/../../../etc/passwd", "invalid time zone name \"Europe/../../../etc/passwd\""},
      {"right/Europe/Berlin",
       "time zone \"right/Europe/Berlin\": /usr/share/zoneinfo/right/Europe/Berlin: zones with "
       "leap seconds (right/...) are not supported"},
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_EQ(TimeZone::load(c.name, &err), nullptr) << c.name;
    EXPECT_EQ(err, c.error) << c.name;
  }
}

TEST(TimeZone, TzdirOverridesTheZoneDirectory) {
  namespace fs = std::filesystem;
  fs::path dir = test::make_temp_dir();
  fs::create_directories(dir / "Test");
  fs::copy_file("/usr/share/zoneinfo/Europe/Berlin", dir / "Test/Berlin");
  std::string berlin = test::read_text("/usr/share/zoneinfo/Europe/Berlin");
  struct {
    const char* name;
    std::string content;
  } broken[] = {
      {"Test/Garbage", "this is not a zone file, but long enough to have a header......"},
      {"Test/Truncated", berlin.substr(0, 100)},
      {"Test/Version1", "TZif" + std::string(40, '\0')},
      {"Test/BadFooter", berlin.substr(0, berlin.rfind('\n', berlin.size() - 2)) + "\nCET\n"},
  };
  for (const auto& b : broken) {
    std::ofstream(dir / b.name, std::ios::binary) << b.content;
  }
  ScopedEnv env("TZDIR", dir.string());

  auto tz = must_load("Test/Berlin");
  ASSERT_NE(tz, nullptr);
  EXPECT_EQ(tz->name(), "Test/Berlin");
  EXPECT_EQ(tz->to_local(1774746000).abbrev, "CEST");

  std::string err;
  EXPECT_EQ(TimeZone::load("Europe/Berlin", &err), nullptr);
  EXPECT_EQ(err, "unknown time zone \"Europe/Berlin\" (see " + dir.string() + ")");
  struct {
    const char* name;
    const char* reason;
  } cases[] = {
      {"Test/Garbage", "not a TZif file"},
      {"Test/Truncated", "truncated"},
      {"Test/Version1", "TZif version 1 is not supported"},
      {"Test/BadFooter", "bad TZ rule \"CET\" in footer"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(TimeZone::load(c.name, &err), nullptr) << c.name;
    EXPECT_EQ(err, "time zone \"" + std::string(c.name) + "\": " + (dir / c.name).string() + ": " +
                       c.reason);
  }
  fs::remove_all(dir);
}

TEST(CivilDays, RoundTripsAndKnowsWeekdays) {
  struct {
    Date date;
    int64_t days;
    int weekday;
  } cases[] = {
      {{1970, 1, 1}, 0, 3},      {{1969, 12, 31}, -1, 2},    {{2000, 2, 29}, 11016, 1},
      {{2026, 3, 30}, 20542, 0}, {{2026, 12, 24}, 20811, 3}, {{2100, 3, 1}, 47541, 0},
      {{1900, 3, 1}, -25508, 3},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(days_from_civil(c.date.year, c.date.month, c.date.day), c.days);
    EXPECT_EQ(civil_from_days(c.days), c.date) << c.days;
    EXPECT_EQ(weekday_from_days(c.days), c.weekday) << c.days;
  }
}

TEST(ParseWeekday, AcceptsShortAndLongNamesInAnyCase) {
  struct {
    const char* text;
    std::optional<int> want;
  } cases[] = {
      {"mon", 0},
      {"Monday", 0},
      {"TUE", 1},
      {"wednesday", 2},
      {"thu", 3},
      {"Fri", 4},
      {"saturday", 5},
      {"sun", 6},
      {"SUNDAY", 6},
      {"mo", std::nullopt},
      {"", std::nullopt},
      {"sunday ", std::nullopt},
      {"mond", std::nullopt},
  };
  for (const auto& c : cases) EXPECT_EQ(parse_weekday(c.text), c.want) << c.text;
}

TEST(ParseDate, ValidatesDaysInMonth) {
  std::string err;
  EXPECT_EQ(parse_date("2026-12-24", &err), (Date{2026, 12, 24}));
  EXPECT_EQ(parse_date("2028-02-29", &err), (Date{2028, 2, 29}));
  EXPECT_EQ(parse_date("2000-02-29", &err), (Date{2000, 2, 29}));
  struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"2026-1-05", "invalid date \"2026-1-05\" (expected YYYY-MM-DD)"},
      {"24.12.2026", "invalid date \"24.12.2026\" (expected YYYY-MM-DD)"},
      {"2026-12-24T", "invalid date \"2026-12-24T\" (expected YYYY-MM-DD)"},
      {"2026-13-01", "invalid month 13 in date \"2026-13-01\""},
      {"2026-00-01", "invalid month 0 in date \"2026-00-01\""},
      {"2026-02-29", "invalid day 29 in date \"2026-02-29\" (February 2026 has 28 days)"},
      {"2100-02-29", "invalid day 29 in date \"2100-02-29\" (February 2100 has 28 days)"},
      {"2026-04-31", "invalid day 31 in date \"2026-04-31\" (April 2026 has 30 days)"},
      {"2026-04-00", "invalid day 0 in date \"2026-04-00\" (April 2026 has 30 days)"},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(parse_date(c.text, &err)) << c.text;
    EXPECT_EQ(err, c.error);
  }
}

TEST(ParseClock, MinutesSinceMidnight) {
  struct {
    const char* text;
    std::optional<int> want;
    const char* error;
  } cases[] = {
      {"07:30", 450, ""},
      {"7:30", 450, ""},
      {"00:00", 0, ""},
      {"23:59", 1439, ""},
      {"24:00", 1440, ""},
      {"24:01", std::nullopt, "invalid time \"24:01\" (24:00 is the latest)"},
      {"25:00", std::nullopt, "invalid hour 25 in time \"25:00\""},
      {"07:60", std::nullopt, "invalid minute 60 in time \"07:60\""},
      {"0730", std::nullopt, "invalid time \"0730\" (expected HH:MM)"},
      {"07:3", std::nullopt, "invalid time \"07:3\" (expected HH:MM)"},
      {":30", std::nullopt, "invalid time \":30\" (expected HH:MM)"},
      {"07:30:00", std::nullopt, "invalid time \"07:30:00\" (expected HH:MM)"},
      {"-1:00", std::nullopt, "invalid time \"-1:00\" (expected HH:MM)"},
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_EQ(parse_clock(c.text, &err), c.want) << c.text;
    EXPECT_EQ(err, c.error) << c.text;
  }
}

TEST(ParseLocalDateTime, DateAndClockWithTOrSpace) {
  std::string err;
  for (const char* text : {"2026-12-24T18:00", "2026-12-24 18:00"}) {
    auto dt = parse_local_datetime(text, &err);
    ASSERT_TRUE(dt) << text << ": " << err;
    EXPECT_EQ(dt->date, (Date{2026, 12, 24}));
    EXPECT_EQ(dt->minute_of_day, 18 * 60);
  }
  struct {
    const char* text;
    const char* error;
  } cases[] = {
      {"2026-12-24", "invalid date and time \"2026-12-24\" (expected YYYY-MM-DDTHH:MM)"},
      {"2026-12-24_18:00",
       "invalid date and time \"2026-12-24_18:00\" (expected YYYY-MM-DDTHH:MM)"},
      {"2026-12-32T18:00", "invalid day 32 in date \"2026-12-32\" (December 2026 has 31 days)"},
      {"2026-12-24T18:0", "invalid time \"18:0\" (expected HH:MM)"},
      {"2026-12-24T18:00Z", "invalid time \"18:00Z\" (expected HH:MM)"},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(parse_local_datetime(c.text, &err)) << c.text;
    EXPECT_EQ(err, c.error);
  }
}

}  // namespace
}  // namespace wacht::runtime
