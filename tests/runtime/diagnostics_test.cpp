#include "runtime/diagnostics.hpp"

#include <gtest/gtest.h>

namespace wacht::runtime {
namespace {

TEST(Diagnostics, RendersGccStyleWithLineAndCaret) {
  Diagnostics d;
  auto file = std::make_shared<const std::string>("etc/wacht.toml");
  d.add_source(file, "[daemon]\nlisten = \"x\"\n\tintervall = \"30s\"\n");
  d.error(SourceLoc{file, 3, 2, 9}, "unknown key 'intervall'; did you mean 'interval'?");
  d.note(SourceLoc{file, 2, 10, 3}, "see here");
  EXPECT_EQ(d.render(),
            "etc/wacht.toml:3:2: error: unknown key 'intervall'; did you mean 'interval'?\n"
            "    3 | \tintervall = \"30s\"\n"
            "      | \t^~~~~~~~~\n"
            "etc/wacht.toml:2:10: note: see here\n"
            "    2 | listen = \"x\"\n"
            "      |          ^~~\n");
  EXPECT_EQ(d.error_count(), 1u);
  EXPECT_TRUE(d.has_errors());
}

TEST(Diagnostics, ReportsTheSameProblemAtTheSamePlaceOnce) {
  Diagnostics d;
  auto file = std::make_shared<const std::string>("a.toml");
  d.error(SourceLoc{file, 1, 1}, "x");
  d.error(SourceLoc{file, 1, 1}, "x");
  d.error(SourceLoc{file, 2, 1}, "x");
  EXPECT_EQ(d.error_count(), 2u);
}

TEST(Diagnostics, WithoutLocationStillNamesTheFile) {
  Diagnostics d;
  d.error(SourceLoc{std::make_shared<const std::string>("a.toml")}, "cannot read");
  EXPECT_EQ(d.render(), "a.toml: error: cannot read\n");
}

TEST(ClosestMatch, SuggestsPlausibleTyposOnly) {
  std::vector<std::string_view> keys = {"interval", "timeout", "target", "tenant", "labels"};
  EXPECT_EQ(closest_match("intervall", keys), "interval");
  EXPECT_EQ(closest_match("timout", keys), "timeout");
  EXPECT_EQ(closest_match("tennant", keys), "tenant");
  EXPECT_EQ(closest_match("xyz", keys), "");
  EXPECT_EQ(closest_match("completely_different", keys), "");
}

}  // namespace
}  // namespace wacht::runtime
