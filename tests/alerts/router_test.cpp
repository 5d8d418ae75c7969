#include "alerts/router.hpp"

#include <gtest/gtest.h>

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;

RouteConfig route(std::vector<std::string> tenants, std::vector<std::string> group_by) {
  RouteConfig r;
  r.tenants = std::move(tenants);
  r.receivers = {"x"};
  r.group_by = std::move(group_by);
  r.group_wait = 30s;
  r.group_interval = 5min;
  r.repeat_interval = 4h;
  return r;
}

Labels alert(const std::string& check, const std::string& tenant,
             const std::string& severity = "critical") {
  return {{"check", check}, {"tenant", tenant}, {"severity", severity}};
}

TEST(Router, FirstMatchingRouteWinsByTenantSeverityAndLabels) {
  RouteConfig crit = route({"lup"}, {"check"});
  crit.severities = {"critical"};
  RouteConfig site = route({}, {"check"});
  site.match = {{"site", "parchim"}};
  Router r({crit, route({"lup"}, {"check"}), site, route({"schwerin"}, {"check"})});
  EXPECT_EQ(r.match(alert("a", "lup")), 0);
  EXPECT_EQ(r.match(alert("a", "lup", "warning")), 1);
  Labels l = alert("a", "other");
  l["site"] = "parchim";
  EXPECT_EQ(r.match(l), 2);
  EXPECT_EQ(r.match(alert("a", "schwerin")), 3);
  EXPECT_EQ(r.match(alert("a", "nobody")), -1);
}

TEST(Router, ABurstInOneGroupBecomesOneNotificationAfterGroupWait) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  for (int i = 0; i < 10; ++i)
    r.firing("c" + std::to_string(i), alert("c" + std::to_string(i), "lup"), t + 1s * i);
  EXPECT_TRUE(r.due(t + 29s).empty());
  auto f = r.due(t + 30s);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].firing.size(), 10u);
  EXPECT_EQ(f[0].number, 0u);
  EXPECT_TRUE(r.due(t + 31s).empty());
}

TEST(Router, ChangesWaitForGroupIntervalAndRepeatsComeEveryRepeatInterval) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s).size(), 1u);
  r.firing("b", alert("b", "lup"), t + 40s);
  EXPECT_TRUE(r.due(t + 5min).empty());
  auto f = r.due(t + 30s + 5min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].firing, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(f[0].number, 1u);
  // Nothing new: the next one is the repeat.
  EXPECT_TRUE(r.due(t + 30s + 5min + 3h).empty());
  f = r.due(t + 30s + 5min + 4h);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].firing.size(), 2u);
}

TEST(Router, ResolvedGoesOutOnceAndEndsTheGroup) {
  Router r({route({}, {"check"})});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  auto first = r.due(t + 30s);
  ASSERT_EQ(first.size(), 1u);
  r.resolved("a", t + 1min);
  auto f = r.due(t + 30s + 5min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_TRUE(f[0].firing.empty());
  EXPECT_EQ(f[0].resolved, std::vector<std::string>{"a"});
  EXPECT_EQ(f[0].thread, first[0].thread);  // threads under the firing mail
  EXPECT_EQ(r.groups(), 0u);
  EXPECT_FALSE(r.next_due().has_value());
}

TEST(Router, AnAlertResolvedBeforeItWasAnnouncedSendsNothing) {
  Router r({route({}, {"check"})});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  r.resolved("a", t + 10s);
  EXPECT_TRUE(r.due(t + 1h).empty());
  EXPECT_EQ(r.groups(), 0u);
}

TEST(Router, SendResolvedFalseStaysQuietOnRecovery) {
  RouteConfig rc = route({}, {"check"});
  rc.send_resolved = false;
  Router r({rc});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s).size(), 1u);
  r.resolved("a", t + 1min);
  EXPECT_TRUE(r.due(t + 1h).empty());
  EXPECT_EQ(r.groups(), 0u);
}

TEST(Router, SavedGroupsContinueAfterARestart) {
  Router r({route({}, {"check"})});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  auto first = r.due(t + 30s);
  ASSERT_EQ(first.size(), 1u);
  Router again({route({}, {"check"})});
  again.restore(r.save());
  EXPECT_TRUE(again.due(t + 1h).empty()) << "re-announced after restart";
  again.resolved("a", t + 1h);
  auto f = again.due(t + 2h);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].resolved, std::vector<std::string>{"a"});
  EXPECT_EQ(f[0].thread, first[0].thread);
}

}  // namespace
}  // namespace wacht::alerts
