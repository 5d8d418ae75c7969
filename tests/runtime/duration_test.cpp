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

// Found by fuzz/duration_fuzzer: the sum was a double, in which 4.1m is
// 245999.99999999997 ms, so such durations were refused as not whole
// milliseconds.
TEST(Duration, DecimalsAreExact) {
  struct {
    const char* text;
    Millis want;
  } cases[] = {
      {"4.1m", 246000ms},   {"1.001s", 1001ms},
      {"8.3m", 498000ms},   {"0.5ms0.5ms", 1ms},
      {"16.9m", 1014000ms}, {".25s", 250ms},
      {"1.s", 1000ms},      {"0.00001d", 864ms},
      {"007.100s", 7100ms}, {"1.0000000000000000000000s", 1000ms},
  };
  for (const auto& c : cases) {
    std::string err;
    auto d = parse_duration(c.text, &err);
    ASSERT_TRUE(d.has_value()) << c.text << ": " << err;
    EXPECT_EQ(*d, c.want) << c.text;
  }
  for (int64_t ms = 0; ms < 200000; ms += 7) {
    const std::string text =
        std::to_string(ms / 1000) + "." + std::to_string(1000 + ms % 1000).substr(1) + "s";
    EXPECT_EQ(parse_duration(text), Millis(ms)) << text;
  }
  std::string err;
  EXPECT_FALSE(parse_duration("1.0000000000000000001s", &err));
  EXPECT_EQ(err, "durations are limited to whole milliseconds");
  EXPECT_FALSE(parse_duration("0.0005s", &err));
  EXPECT_EQ(err, "durations are limited to whole milliseconds");
  EXPECT_FALSE(parse_duration("1000000000000.001s", &err));
  EXPECT_EQ(err, "duration too large");
  EXPECT_EQ(parse_duration("1000000000000s"), Millis(1'000'000'000'000'000));
}

}  // namespace
}  // namespace wacht::runtime
