#include "alerts/oncall.hpp"

#include <gtest/gtest.h>

namespace wacht::alerts {
namespace {

using runtime::TimeZone;

std::shared_ptr<const TimeZone> berlin() {
  std::string err;
  auto tz = TimeZone::load("Europe/Berlin", &err);
  EXPECT_NE(tz, nullptr) << err;
  return tz;
}

// "anna 1774854000..1775458800", with " override (comment)" for overrides:
// readable in failure messages and comparable as a whole.
std::string show(const std::optional<Shift>& s) {
  if (!s) return "nobody";
  std::string out = s->person + " " + std::to_string(s->from) + ".." + std::to_string(s->until);
  if (s->override) out += " override (" + s->comment + ")";
  return out;
}

std::vector<std::string> show(const std::vector<Shift>& shifts) {
  std::vector<std::string> out;
  for (const Shift& s : shifts) out.push_back(show(s));
  return out;
}

struct AtCase {
  int64_t t;
  const char* local;  // Europe/Berlin, for the reader
  std::string want;
};

void expect_at(const Rotation& r, const std::vector<AtCase>& cases) {
  for (const auto& c : cases) EXPECT_EQ(show(r.at(c.t)), c.want) << c.local;
}

// Weekly, handover Monday 09:00 local, from Monday 9 March 2026.
Rotation weekly_team() {
  Rotation r;
  r.people = {"anna", "ben", "carla"};
  r.tz = berlin();
  r.start = {{2026, 3, 9}, 9 * 60};
  r.shift_days = 7;
  return r;
}

TEST(Rotation, WeeklyHandoverStaysAtNineLocalAcrossDst) {
  expect_at(weekly_team(),
            {
                {1772967600, "Sun 2026-03-08 12:00 CET, before the start", "nobody"},
                {1773043199, "Mon 2026-03-09 08:59:59 CET", "nobody"},
                {1773043200, "Mon 2026-03-09 09:00 CET", "anna 1773043200..1773648000"},
                // The shift across the spring change lasts 167 hours.
                {1774818000, "Sun 2026-03-29 23:00 CEST", "carla 1774252800..1774854000"},
                {1774853940, "Mon 2026-03-30 08:59 CEST", "carla 1774252800..1774854000"},
                {1774854000, "Mon 2026-03-30 09:00 CEST", "anna 1774854000..1775458800"},
                // ... and the one across the autumn change 169 hours.
                {1792965600, "Sun 2026-10-25 23:00 CET", "carla 1792393200..1793001600"},
                {1793001540, "Mon 2026-10-26 08:59 CET", "carla 1792393200..1793001600"},
                {1793001600, "Mon 2026-10-26 09:00 CET", "anna 1793001600..1793606400"},
            });
}

TEST(Rotation, TwelveHourShiftsAcrossDstNights) {
  Rotation r;
  r.people = {"erika", "frank", "gita"};
  r.tz = berlin();
  r.start = {{2026, 3, 28}, 7 * 60};
  r.shift_hours = 12;
  expect_at(r, {
                   {1774677600, "Sat 2026-03-28 07:00 CET", "erika 1774677600..1774720800"},
                   // The night of the spring change is 11 hours long ...
                   {1774720800, "Sat 2026-03-28 19:00 CET", "frank 1774720800..1774760400"},
                   {1774747800, "Sun 2026-03-29 03:30 CEST", "frank 1774720800..1774760400"},
                   {1774760340, "Sun 2026-03-29 06:59 CEST", "frank 1774720800..1774760400"},
                   {1774760400, "Sun 2026-03-29 07:00 CEST", "gita 1774760400..1774803600"},
                   {1792818000, "Sat 2026-10-24 07:00 CEST", "erika 1792818000..1792861200"},
                   // ... and that of the autumn change 13 hours.
                   {1792886400, "Sun 2026-10-25 02:00 CEST", "frank 1792861200..1792908000"},
                   {1792891800, "Sun 2026-10-25 02:30 CET", "frank 1792861200..1792908000"},
                   {1792907940, "Sun 2026-10-25 06:59 CET", "frank 1792861200..1792908000"},
                   {1792908000, "Sun 2026-10-25 07:00 CET", "gita 1792908000..1792951200"},
               });
}

// Anna's week from Monday 30 March: Ben covers two days of holiday, Dora an
// hour of that, and Carla swaps into the handover to Ben on Monday 6 April.
Rotation with_overrides() {
  Rotation r = weekly_team();
  r.overrides = {
      {"ben", 1774994400, 1775167200, "Urlaub Anna"},       // Wed 04-01 00:00 - Fri 04-03 00:00
      {"carla", 1775404800, 1775545200, "Tausch mit Ben"},  // Sun 04-05 18:00 - Tue 04-07 09:00
      {"dora", 1775109600, 1775124000, "Arzttermin Ben"},   // Thu 04-02 08:00 - 12:00
      {"ben", 1772924400, 1773043200, "Vorlauf"},           // Sun 03-08 00:00 - the start
  };
  return r;
}

TEST(Rotation, OverridesWinAndTheLatestListedFirst) {
  expect_at(
      with_overrides(),
      {
          {1774951200, "Tue 03-31 12:00, Anna until the cover starts",
           "anna 1774854000..1774994400"},
          {1775037600, "Wed 04-01 12:00, Ben covers until Dora takes over",
           "ben 1774994400..1775109600 override (Urlaub Anna)"},
          {1775116800, "Thu 04-02 10:00, Dora, listed later, wins",
           "dora 1775109600..1775124000 override (Arzttermin Ben)"},
          {1775127600, "Thu 04-02 13:00, Ben again after Dora",
           "ben 1775124000..1775167200 override (Urlaub Anna)"},
          {1775296800, "Sat 04-04 12:00, Anna back until the swap", "anna 1775167200..1775404800"},
          {1775458800, "Mon 04-06 09:00, the swap spans the handover",
           "carla 1775404800..1775545200 override (Tausch mit Ben)"},
          {1775545200, "Tue 04-07 09:00, Ben's own shift", "ben 1775545200..1776063600"},
          {1772967600, "Sun 03-08 12:00, before the start",
           "ben 1772924400..1773043200 override (Vorlauf)"},
      });
}

TEST(Rotation, ShiftsTimelineCutsOverridesInAndClips) {
  Rotation r = with_overrides();
  // Mon 03-30 00:00 .. Tue 04-14 00:00 CEST
  EXPECT_EQ(show(r.shifts(1774821600, 1776117600)),
            (std::vector<std::string>{
                "carla 1774821600..1774854000",
                "anna 1774854000..1774994400",
                "ben 1774994400..1775109600 override (Urlaub Anna)",
                "dora 1775109600..1775124000 override (Arzttermin Ben)",
                "ben 1775124000..1775167200 override (Urlaub Anna)",
                "anna 1775167200..1775404800",
                "carla 1775404800..1775545200 override (Tausch mit Ben)",
                "ben 1775545200..1776063600",
                "carla 1776063600..1776117600",
            }));
  // Before the first override nobody is on call, and nobody is listed.
  EXPECT_EQ(show(r.shifts(1772838000, 1773648000)),  // Sat 03-07 00:00 .. Mon 03-16 09:00
            (std::vector<std::string>{
                "ben 1772924400..1773043200 override (Vorlauf)",
                "anna 1773043200..1773648000",
            }));
  EXPECT_TRUE(r.shifts(1772838000, 1772924400).empty());
  EXPECT_TRUE(r.shifts(1774854000, 1774854000).empty());
}

TEST(Rotation, ShiftsMergesEqualNeighbours) {
  Rotation r;
  r.people = {"solo"};
  r.tz = berlin();
  r.start = {{2026, 3, 9}, 9 * 60};
  r.shift_days = 1;
  // Daily handovers to the same person: one piece over three weeks.
  EXPECT_EQ(show(r.shifts(1773043200, 1774854000)),
            (std::vector<std::string>{"solo 1773043200..1774854000"}));
  // at() still names the day's shift.
  EXPECT_EQ(show(r.at(1774853940)), "solo 1774767600..1774854000");
}

TEST(Rotation, NobodyWithoutPeopleOrShiftLength) {
  Rotation r = weekly_team();
  r.shift_days = 0;
  EXPECT_EQ(show(r.at(1774854000)), "nobody");
  EXPECT_TRUE(r.shifts(1773043200, 1774854000).empty());
  r = weekly_team();
  r.people.clear();
  r.overrides = {{"ben", 1774994400, 1775167200, "Urlaub Anna"}};
  EXPECT_EQ(show(r.at(1774854000)), "nobody");
  EXPECT_EQ(show(r.shifts(1773043200, 1776117600)),
            (std::vector<std::string>{"ben 1774994400..1775167200 override (Urlaub Anna)"}));
}

// Mon-Fri 07:00-16:00 without the Christmas holidays and New Year's Day.
std::shared_ptr<TimePeriod> business_hours() {
  auto p = std::make_shared<TimePeriod>();
  p->tz = berlin();
  p->weekly = {{Weekdays("0011111"), {{7 * 60, 16 * 60}}}};  // bits Sunday .. Monday
  p->exclude_dates = {{2026, 12, 24}, {2026, 12, 25}, {2026, 12, 26}, {2027, 1, 1}};
  return p;
}

struct PeriodCase {
  int64_t t;
  const char* local;  // Europe/Berlin
  bool active;
  int64_t next_change;
};

void expect_period(const TimePeriod& p, const std::vector<PeriodCase>& cases) {
  for (const auto& c : cases) {
    EXPECT_EQ(p.active(c.t), c.active) << c.local;
    EXPECT_EQ(p.next_change(c.t), c.next_change) << c.local;
  }
}

TEST(TimePeriod, BusinessHoursWithHolidays) {
  expect_period(*business_hours(),
                {
                    {1798005540, "Wed 12-23 06:59", false, 1798005600},
                    {1798005600, "Wed 12-23 07:00", true, 1798038000},
                    {1798016400, "Wed 12-23 10:00", true, 1798038000},
                    // Christmas and the weekend after it: next on Monday.
                    {1798038000, "Wed 12-23 16:00", false, 1798437600},
                    {1798102800, "Thu 12-24 10:00", false, 1798437600},
                    {1798189200, "Fri 12-25 10:00", false, 1798437600},
                    {1798729200, "Thu 12-31 16:00", false, 1799042400},
                    {1798794000, "Fri 2027-01-01 10:00", false, 1799042400},
                    {1799042400, "Mon 2027-01-04 07:00", true, 1799042400 + 9 * 3600},
                });
}

TEST(TimePeriod, NextChangeAcrossDst) {
  // Friday 16:00 CET to Monday 07:00 CEST is 62 real hours, not 63.
  expect_period(*business_hours(), {
                                       {1774623600, "Fri 03-27 16:00 CET", false, 1774846800},
                                       {1793372400, "Fri 10-30 16:00 CET", false, 1793599200},
                                   });
  auto window = std::make_shared<TimePeriod>();
  window->tz = berlin();
  window->weekly = {*parse_window("Sun 02:00-04:00", nullptr)};
  expect_period(*window,
                {
                    // 02:00 does not exist on the spring day: the window opens
                    // after the gap, at 03:00 CEST, and lasts one hour.
                    {1774695600, "Sat 03-28 12:00 CET", false, 1774746000},
                    {1774746000, "Sun 03-29 03:00 CEST", true, 1774749600},
                    // In autumn it starts at the first 02:00 and lasts three hours.
                    {1792836000, "Sat 10-24 12:00 CEST", false, 1792886400},
                    {1792886400, "Sun 10-25 02:00 CEST", true, 1792897200},
                    {1792891800, "Sun 10-25 02:30 CET", true, 1792897200},
                    {1792897200, "Sun 10-25 04:00 CET", false, 1792897200 + 7 * 86400 - 2 * 3600},
                });
}

TEST(TimePeriod, NightRangeWrapsPastMidnightAndBelongsToItsStartDay) {
  auto p = std::make_shared<TimePeriod>();
  p->tz = berlin();
  p->weekly = {
      {*parse_day_ranges("mon-fri", nullptr), {*parse_time_range("22:00-06:00", nullptr)}}};
  expect_period(*p, {
                        {1797627600, "Fri 12-18 22:00", true, 1797656400},
                        {1797656340, "Sat 12-19 05:59", true, 1797656400},
                        {1797656400, "Sat 12-19 06:00", false, 1797886800},
                        {1797714000, "Sat 12-19 22:00", false, 1797886800},
                        {1797825600, "Mon 12-21 05:00, Sunday night is off", false, 1797886800},
                        {1797890400, "Mon 12-21 23:00", true, 1797915600},
                        {1797904800, "Tue 12-22 03:00", true, 1797915600},
                    });
  // Excluded days are excluded whole, also the end of the previous night.
  p->exclude_dates = {{2026, 12, 24}};
  expect_period(*p, {
                        {1798063200, "Wed 12-23 23:00", true, 1798066800},
                        {1798077600, "Thu 12-24 03:00", false, 1798153200},
                        {1798146000, "Thu 12-24 22:00", false, 1798153200},
                        {1798164000, "Fri 12-25 03:00", true, 1798174800},
                    });
}

TEST(TimePeriod, ExcludingAnotherPeriod) {
  // After hours: always, except business hours (so holidays are after hours).
  auto after_hours = std::make_shared<TimePeriod>();
  after_hours->tz = berlin();
  after_hours->exclude = {business_hours()};
  expect_period(*after_hours, {
                                  {1798016400, "Wed 12-23 10:00", false, 1798038000},
                                  {1798041600, "Wed 12-23 17:00", true, 1798437600},
                                  {1798102800, "Thu 12-24 10:00", true, 1798437600},
                                  {1798437600, "Mon 12-28 07:00", false, 1798470000},
                              });
}

TEST(TimePeriod, WeekendsAndExtraDates) {
  auto p = std::make_shared<TimePeriod>();
  p->tz = berlin();
  p->weekly = {
      {*parse_day_ranges("sat,sun", nullptr), {*parse_time_range("00:00-24:00", nullptr)}}};
  p->dates = {{2026, 12, 24}};
  expect_period(*p, {
                        {1797591600, "Fri 12-18 12:00", false, 1797634800},
                        {1797634740, "Fri 12-18 23:59", false, 1797634800},
                        {1797634800, "Sat 12-19 00:00", true, 1797807600},
                        {1797807600, "Mon 12-21 00:00", false, 1798066800},
                        {1798102800, "Thu 12-24 10:00, an extra date", true, 1798153200},
                    });
  // Only dates: active on those days alone.
  auto silvester = std::make_shared<TimePeriod>();
  silvester->tz = berlin();
  silvester->dates = {{2026, 12, 31}};
  expect_period(*silvester,
                {
                    {1798628400, "Wed 12-30 12:00", false, 1798671600},
                    {1798671600, "Thu 12-31 00:00", true, 1798758000},
                    {1798758000, "Fri 2027-01-01 00:00", false, 1798758000 + TimePeriod::kHorizon},
                });
}

TEST(TimePeriod, WithoutRangesOrDatesIsAlways) {
  TimePeriod always;
  always.tz = berlin();
  for (int64_t t : {int64_t{0}, int64_t{1774746000}, int64_t{1798102800}}) {
    EXPECT_TRUE(always.active(t));
    EXPECT_EQ(always.next_change(t), t + TimePeriod::kHorizon);
  }
  // Holidays still apply.
  always.exclude_dates = {{2026, 12, 24}};
  EXPECT_FALSE(always.active(1798102800));
  EXPECT_EQ(always.next_change(1798016400), 1798066800);  // Thu 12-24 00:00
}

TEST(ParseDayRanges, ListsAndWrappingRanges) {
  struct {
    const char* text;
    const char* want;  // Monday first
  } cases[] = {
      {"mon-fri", "1111100"}, {"sat,sun", "0000011"},        {"sun", "0000001"},
      {"fri-mon", "1000111"}, {"Mon, Wed - Fri", "1011100"}, {"monday-sunday", "1111111"},
      {"tue-tue", "0100000"},
  };
  for (const auto& c : cases) {
    std::string err;
    auto days = parse_day_ranges(c.text, &err);
    ASSERT_TRUE(days) << c.text << ": " << err;
    std::string got;
    for (int d = 0; d < 7; ++d) got += days->test(d) ? '1' : '0';
    EXPECT_EQ(got, c.want) << c.text;
  }
}

struct ErrorCase {
  const char* text;
  const char* error;
};

TEST(ParseDayRanges, NamesTheBadPart) {
  ErrorCase cases[] = {
      {"", "empty list of days"},
      {"mon-fir", "unknown day \"fir\" (expected mon, tue, wed, thu, fri, sat or sun)"},
      {"weekend", "unknown day \"weekend\" (expected mon, tue, wed, thu, fri, sat or sun)"},
      {"mon,,fri", "empty item in list of days \"mon,,fri\""},
      {"mon-", "unknown day \"\" (expected mon, tue, wed, thu, fri, sat or sun)"},
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_FALSE(parse_day_ranges(c.text, &err)) << c.text;
    EXPECT_EQ(err, c.error) << c.text;
  }
}

TEST(ParseTimeRange, RangesAndErrors) {
  struct {
    const char* text;
    int from, to;
  } ok[] = {{"07:00-16:00", 420, 960}, {"22:00-06:00", 1320, 360}, {"00:00-24:00", 0, 1440}};
  for (const auto& c : ok) {
    std::string err;
    auto r = parse_time_range(c.text, &err);
    ASSERT_TRUE(r) << c.text << ": " << err;
    EXPECT_EQ(r->from, c.from) << c.text;
    EXPECT_EQ(r->to, c.to) << c.text;
  }
  ErrorCase cases[] = {
      {"07:00", "invalid time range \"07:00\" (expected HH:MM-HH:MM)"},
      {"07:00-16:60", "invalid minute 60 in time \"16:60\""},
      {"7-16", "invalid time \"7\" (expected HH:MM)"},
      {"24:00-06:00", "time range \"24:00-06:00\" starts at 24:00 (use 00:00)"},
      {"07:00-07:00", "empty time range \"07:00-07:00\""},
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_FALSE(parse_time_range(c.text, &err)) << c.text;
    EXPECT_EQ(err, c.error) << c.text;
  }
}

TEST(ParseWindow, DaysAndATimeRange) {
  std::string err;
  auto w = parse_window("Sun 02:00-04:00", &err);
  ASSERT_TRUE(w) << err;
  EXPECT_EQ(w->days, Weekdays("1000000"));
  ASSERT_EQ(w->times.size(), 1u);
  EXPECT_EQ(w->times[0].from, 120);
  EXPECT_EQ(w->times[0].to, 240);
  w = parse_window("mon-fri 22:00-06:00", &err);
  ASSERT_TRUE(w) << err;
  EXPECT_EQ(w->days, Weekdays("0011111"));

  ErrorCase cases[] = {
      {"02:00-04:00",
       "invalid window \"02:00-04:00\" (expected days and a time range, e.g. \"Sun 02:00-04:00\")"},
      {"Sonntag 02:00-04:00",
       "unknown day \"Sonntag\" (expected mon, tue, wed, thu, fri, sat or sun)"},
      {"Sun 02:00", "invalid time range \"02:00\" (expected HH:MM-HH:MM)"},
      {"Sun 02:00-4:60", "invalid minute 60 in time \"4:60\""},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(parse_window(c.text, &err)) << c.text;
    EXPECT_EQ(err, c.error) << c.text;
  }
}

}  // namespace
}  // namespace wacht::alerts
