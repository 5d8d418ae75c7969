#include "alerts/router.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>

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
  using V = std::vector<int>;
  EXPECT_EQ(r.match(alert("a", "lup"), {}), V{0});
  EXPECT_EQ(r.match(alert("a", "lup", "warning"), {}), V{1});
  Labels l = alert("a", "other");
  l["site"] = "parchim";
  EXPECT_EQ(r.match(l, {}), V{2});
  EXPECT_EQ(r.match(alert("a", "schwerin"), {}), V{3});
  EXPECT_EQ(r.match(alert("a", "nobody"), {}), V{});
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

// A tree as the config flattens it: lup (0) with children critical (1) and
// site=hagenow (2, continue), then a catch-all (3).
std::vector<RouteConfig> tree() {
  RouteConfig lup = route({"lup"}, {"check"});
  lup.children = {1, 2};
  RouteConfig crit = route({"lup"}, {"check"});
  crit.severities = {"critical"};
  crit.parent = 0;
  crit.continue_matching = true;
  crit.receivers = {"oncall"};
  RouteConfig site = route({"lup"}, {"check"});
  site.match = {{"site", "hagenow"}};
  site.parent = 0;
  site.receivers = {"hagenow"};
  return {lup, crit, site, route({}, {"check"})};
}

TEST(Router, TreeChildrenTakeAlertsAndContinueLetsSiblingsSeeThemToo) {
  Router r(tree());
  using V = std::vector<int>;
  Labels l = alert("a", "lup");
  l["site"] = "hagenow";
  EXPECT_EQ(r.match(l, {}), (V{1, 2})) << "critical continues to the site route";
  EXPECT_EQ(r.match(alert("a", "lup"), {}), V{1});
  EXPECT_EQ(r.match(alert("a", "lup", "warning"), {}), V{0}) << "no child: the parent keeps it";
  EXPECT_EQ(r.match(alert("a", "schwerin"), {}), V{3});
}

TEST(Router, AnAlertTakenByTwoRoutesGoesToBothReceivers) {
  Router r(tree());
  TimePoint t{};
  Labels l = alert("a", "lup");
  l["site"] = "hagenow";
  r.firing("a", l, t);
  auto f = r.due(t + 30s);
  ASSERT_EQ(f.size(), 2u);
  EXPECT_EQ(f[0].receivers, std::vector<std::string>{"oncall"});
  EXPECT_EQ(f[1].receivers, std::vector<std::string>{"hagenow"});
  r.resolved("a", t + 1min);
  EXPECT_EQ(r.due(t + 10min).size(), 2u) << "both threads get the resolved notice";
  EXPECT_EQ(r.groups(), 0u);
}

TEST(Router, TimePeriodsPickTheRouteWhenTheAlertFires) {
  TimePoint t{};
  RouteConfig day = route({}, {"check"});
  day.receivers = {"team"};
  day.active = [t](TimePoint now) { return now < t + 8h; };
  RouteConfig night = route({}, {"check"});
  night.receivers = {"oncall"};
  Router r({day, night});
  using V = std::vector<int>;
  EXPECT_EQ(r.match(alert("a", "lup"), t + 1h), V{0});
  EXPECT_EQ(r.match(alert("a", "lup"), t + 9h), V{1});
  EXPECT_EQ(r.match(alert("a", "lup"), std::nullopt), V{0}) << "any time: time periods ignored";
}

TEST(Router, ASilencedAlertIsHeldBackAndAnnouncedWhenTheSilenceEnds) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  bool silenced = true;
  auto mute = [&](const std::string&) { return Router::Mute{silenced, false}; };
  r.firing("a", alert("a", "lup"), t);
  EXPECT_TRUE(r.due(t + 30s, mute).empty());
  EXPECT_TRUE(r.due(t + 5h, mute).empty()) << "no repeat either";
  silenced = false;
  r.wake(t + 5h);
  auto f = r.due(t + 5h, mute);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].firing, std::vector<std::string>{"a"});
}

TEST(Router, ASilencedAlertThatResolvesBeforeAnnouncementSendsNothing) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  auto mute = [](const std::string&) { return Router::Mute{true, false}; };
  r.firing("a", alert("a", "lup"), t);
  EXPECT_TRUE(r.due(t + 30s, mute).empty());
  r.resolved("a", t + 1min);
  EXPECT_TRUE(r.due(t + 1h, mute).empty());
  EXPECT_EQ(r.groups(), 0u);
}

TEST(Router, AnAnnouncedAlertSilencedLaterStillGetsItsResolvedNotice) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  bool silenced = false;
  auto mute = [&](const std::string&) { return Router::Mute{silenced, false}; };
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s, mute).size(), 1u);
  silenced = true;
  EXPECT_TRUE(r.due(t + 30s + 4h, mute).empty()) << "silence stops repeats";
  r.resolved("a", t + 5h);
  auto f = r.due(t + 6h, mute);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].resolved, std::vector<std::string>{"a"});
}

TEST(Router, AnAcknowledgementStopsRepeatsButNotNews) {
  Router r({route({}, {"tenant"})});
  TimePoint t{};
  std::set<std::string> acked;
  auto mute = [&](const std::string& id) { return Router::Mute{false, acked.contains(id)}; };
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s, mute).size(), 1u);
  acked.insert("a");
  EXPECT_TRUE(r.due(t + 30s + 4h, mute).empty()) << "acknowledged: no repeat";
  r.firing("b", alert("b", "lup"), t + 5h);
  auto f = r.due(t + 6h, mute);
  ASSERT_EQ(f.size(), 1u) << "a new alert in the group is news";
  EXPECT_EQ(f[0].firing, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r.due(t + 6h + 4h, mute).size(), 1u) << "b is not acknowledged: repeats";
}

RouteConfig escalating() {
  RouteConfig rc = route({}, {"tenant"});
  rc.receivers = {"oncall"};
  rc.escalation = {{15min, {"lead"}}, {45min, {"head"}}};
  return rc;
}

TEST(Router, AnUnacknowledgedAlertClimbsTheEscalationChainOnTime) {
  Router r({escalating()});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  auto first = r.due(t + 30s);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(*r.next_due(), t + 30s + 15min);
  EXPECT_TRUE(r.due(t + 30s + 15min - 1ms).empty()) << "not before the delay";
  auto f = r.due(t + 30s + 15min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].level, 1);
  EXPECT_EQ(f[0].receivers, std::vector<std::string>{"lead"});
  EXPECT_EQ(f[0].thread, first[0].thread);
  f = r.due(t + 30s + 45min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].level, 2);
  EXPECT_EQ(f[0].receivers, std::vector<std::string>{"head"});
  r.resolved("a", t + 1h);
  f = r.due(t + 1h + 5min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].receivers, (std::vector<std::string>{"oncall", "lead", "head"}))
      << "everyone who was paged hears it is over";
}

TEST(Router, AnAcknowledgementStopsTheEscalationChain) {
  Router r({escalating()});
  TimePoint t{};
  bool acked = false;
  auto mute = [&](const std::string&) { return Router::Mute{false, acked}; };
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s, mute).size(), 1u);
  acked = true;
  EXPECT_TRUE(r.due(t + 30s + 15min, mute).empty());
  EXPECT_TRUE(r.due(t + 30s + 45min, mute).empty());
  EXPECT_GT(*r.next_due(), t + 4h) << "only the repeat timer remains, and it is muted";
}

TEST(Router, AResolveBeforeTheDelayStopsTheEscalationChain) {
  Router r({escalating()});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s).size(), 1u);
  r.resolved("a", t + 10min);
  auto f = r.due(t + 10min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].receivers, std::vector<std::string>{"oncall"});
  EXPECT_TRUE(r.due(t + 2h).empty());
  EXPECT_FALSE(r.next_due().has_value());
}

TEST(Router, AStormBeyondTheLimitBecomesOneDigestPerMinute) {
  RouteConfig rc = route({}, {"check"});
  rc.storm_limit = 5;
  Router r({rc});
  TimePoint t{};
  // 40 checks fail over 10 s, as they would within one check interval.
  for (int i = 0; i < 40; ++i) {
    std::string id = fmt::format("c{:02}", i);
    r.firing(id, alert(id, "lup"), t + 250ms * i);
  }
  std::vector<Router::Flush> sent;
  for (auto at = t; at <= t + 2min; at += 1s)
    for (auto& f : r.due(at)) sent.push_back(std::move(f));
  ASSERT_EQ(sent.size(), 6u) << "5 single messages and one digest collecting the rest";
  EXPECT_TRUE(sent[5].digest);
  EXPECT_EQ(sent[5].firing.size(), 35u);
  // A second wave: the limit counts every message of the last minute, the
  // digest too, and the rest waits for one more digest.
  for (int i = 0; i < 20; ++i) {
    std::string id = fmt::format("d{:02}", i);
    r.firing(id, alert(id, "lup"), t + 2min);
  }
  sent.clear();
  for (auto at = t + 2min; at <= t + 5min; at += 1s)
    for (auto& f : r.due(at)) sent.push_back(std::move(f));
  size_t singles = 0, in_digests = 0, digests = 0;
  for (const auto& f : sent) {
    if (f.digest) {
      ++digests;
      in_digests += f.firing.size();
    } else {
      ++singles;
    }
  }
  EXPECT_EQ(singles + in_digests, 20u) << "nothing is lost";
  EXPECT_LE(singles, 5u);
  EXPECT_EQ(digests, 1u);
  // The recovery of all 60 is a storm too.
  for (int i = 0; i < 40; ++i) r.resolved(fmt::format("c{:02}", i), t + 1h);
  for (int i = 0; i < 20; ++i) r.resolved(fmt::format("d{:02}", i), t + 1h);
  sent.clear();
  for (auto at = t + 1h; at <= t + 1h + 10min; at += 1s)
    for (auto& f : r.due(at)) sent.push_back(std::move(f));
  ASSERT_EQ(sent.size(), 6u);
  EXPECT_EQ(sent[5].resolved.size(), 55u);
}

TEST(Router, EscalationAndSilenceSurviveARestart) {
  Router r({escalating()});
  TimePoint t{};
  r.firing("a", alert("a", "lup"), t);
  ASSERT_EQ(r.due(t + 30s).size(), 1u);
  ASSERT_EQ(r.due(t + 30s + 15min).size(), 1u);
  Router again({escalating()});
  again.restore(r.save());
  auto f = again.due(t + 30s + 45min);
  ASSERT_EQ(f.size(), 1u);
  EXPECT_EQ(f[0].level, 2);
}

}  // namespace
}  // namespace wacht::alerts
