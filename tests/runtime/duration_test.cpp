#include "runtime/duration.hpp"

#include <gtest/gtest.h>

namespace wacht::runtime {
namespace {

using namespace std::chrono_literals;

TEST(Duration, ParsesWhatAdminsWrite) {
  struct {
    const char* text;
    Millis want;
  } cases[] = {
      {"30s", 30s},     {"5m", 5min}, {"1h", 1h},  {"250ms", 250ms},  {"1m30s", 90s},
      {"1.5s", 1500ms}, {"2d", 48h},  {"0s", 0ms}, {"1h0m1s", 3601s}, {"1w", 168h},
  };
  for (const auto& c : cases) {
    std::string err;
    auto d = parse_duration(c.text, &err);
    ASSERT_TRUE(d.has_value()) << c.text << ": " << err;
    EXPECT_EQ(*d, c.want) << c.text;
  }
}

TEST(Duration, RejectsWithAReason) {
  struct {
    const char* text;
    const char* why;
  } cases[] = {
      {"", "empty duration"},
      {"30", "missing unit after '30' (use ms, s, m, h, d or w)"},
      {"30 s", "missing unit after '30' (use ms, s, m, h, d or w)"},
      {"30sec", "unknown unit 'sec' (use ms, s, m, h, d or w)"},
      {"-5s", "expected a number at '-5s'"},
      {"s", "expected a number at 's'"},
      {"1.5ms", "durations are limited to whole milliseconds"},
      {"99999999999999d", "duration too large"},
  };
  for (const auto& c : cases) {
    std::string err;
    EXPECT_FALSE(parse_duration(c.text, &err).has_value()) << c.text;
    EXPECT_EQ(err, c.why) << c.text;
  }
}

TEST(Duration, FormatsTheShortestExactSpelling) {
  EXPECT_EQ(format_duration(90s), "1m30s");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(0ms), "0s");
  EXPECT_EQ(format_duration(3601s), "1h1s");
  for (auto d : {1ms, 999ms, 1000ms, 61001ms, Millis(86400000 + 1)}) {
    EXPECT_EQ(parse_duration(format_duration(d)), d);
  }
}

}  // namespace
}  // namespace wacht::runtime
