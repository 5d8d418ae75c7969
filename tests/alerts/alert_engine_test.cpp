#include "alerts/alert_engine.hpp"

#include <gtest/gtest.h>

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;
using Kind = AlertEvent::Kind;
constexpr State O = State::kOk, C = State::kCritical, W = State::kWarning;

EngineCheck check(const std::string& id, int max_attempts = 1,
                  std::vector<std::string> parents = {}, bool all = false) {
  EngineCheck c;
  c.id = id;
  c.state.max_attempts = max_attempts;
  c.state.flap_detection = false;
  c.depends_on = std::move(parents);
  c.depends_all = all;
  return c;
}

class Engine : public ::testing::Test {
 protected:
  AlertEngine::Effects feed(const std::string& id, State s) {
    t_ += 10s;
    auto fx = engine_.observe(id, s, id + " result", t_);
    for (const auto& e : fx.events) events_.push_back(e);
    for (const auto& r : fx.run_now) run_now_.push_back(r);
    return fx;
  }
  int count(Kind k, const std::string& id) const {
    int n = 0;
    for (const auto& e : events_) n += e.kind == k && e.id == id;
    return n;
  }
  int total(Kind k) const {
    int n = 0;
    for (const auto& e : events_) n += e.kind == k;
    return n;
  }
  bool asked(const std::string& id) const {
    return std::find(run_now_.begin(), run_now_.end(), id) != run_now_.end();
  }

  AlertEngine engine_;
  TimePoint t_{};
  std::vector<AlertEvent> events_;
  std::vector<std::string> run_now_;
};

TEST_F(Engine, FiresOnceWhenHardAndResolvesOnce) {
  engine_.configure({check("web", 3)});
  feed("web", C);
  feed("web", C);
  EXPECT_EQ(total(Kind::kFiring), 0);  // still soft
  feed("web", C);
  EXPECT_EQ(count(Kind::kFiring, "web"), 1);
  feed("web", C);
  feed("web", C);
  EXPECT_EQ(count(Kind::kFiring, "web"), 1);  // no repeats from the engine
  feed("web", W);
  EXPECT_EQ(count(Kind::kFiring, "web"), 2);  // severity changed
  feed("web", O);
  EXPECT_EQ(count(Kind::kResolved, "web"), 1);
  feed("web", O);
  EXPECT_EQ(count(Kind::kResolved, "web"), 1);
}

TEST_F(Engine, SoftProblemsNeverNotify) {
  engine_.configure({check("web", 3)});
  for (int i = 0; i < 5; ++i) {
    feed("web", C);
    feed("web", O);
  }
  EXPECT_TRUE(events_.empty());
}

TEST_F(Engine, ChildFailureIsHeldUntilItsParentIsCheckedAfresh) {
  engine_.configure({check("wan"), check("server", 1, {"wan"})});
  feed("wan", O);
  feed("server", C);
  EXPECT_TRUE(asked("wan"));
  EXPECT_EQ(total(Kind::kFiring), 0) << "notified before the parent was confirmed";
  feed("wan", O);  // the fresh parent result: it is fine, so the server's problem is its own
  EXPECT_EQ(count(Kind::kFiring, "server"), 1);
}

TEST_F(Engine, ChildrenOfADownParentAreUnreachableAndSilent) {
  std::vector<EngineCheck> checks = {check("wan", 2)};
  for (int i = 0; i < 20; ++i) checks.push_back(check("host" + std::to_string(i), 1, {"wan"}));
  engine_.configure(checks);
  feed("wan", O);
  // The link breaks: children fail first, the link's own first failure is soft.
  for (int i = 0; i < 20; ++i) feed("host" + std::to_string(i), C);
  feed("wan", C);
  feed("wan", C);
  for (int i = 0; i < 20; ++i) feed("host" + std::to_string(i), C);
  EXPECT_EQ(count(Kind::kFiring, "wan"), 1);
  EXPECT_EQ(total(Kind::kFiring), 1) << "a child notified while its parent was down";
  EXPECT_TRUE(engine_.view("host3")->unreachable);
  EXPECT_EQ(engine_.affected_children("wan").size(), 20u);

  // The link recovers: children are re-checked at once and stay silent when fine.
  run_now_.clear();
  feed("wan", O);
  EXPECT_EQ(count(Kind::kResolved, "wan"), 1);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(asked("host" + std::to_string(i)));
  for (int i = 0; i < 20; ++i) feed("host" + std::to_string(i), O);
  EXPECT_EQ(total(Kind::kFiring), 1);
  EXPECT_EQ(total(Kind::kResolved), 1) << "recovery storm";
}

TEST_F(Engine, AChildStillFailingAfterItsParentRecoveredNotifiesOnItsFreshResult) {
  engine_.configure({check("wan"), check("db", 1, {"wan"})});
  feed("wan", C);
  feed("db", C);
  feed("wan", O);
  EXPECT_TRUE(asked("db"));
  EXPECT_EQ(count(Kind::kFiring, "db"), 0) << "notified on a result from before the recovery";
  feed("db", C);
  EXPECT_EQ(count(Kind::kFiring, "db"), 1);
}

TEST_F(Engine, AnyParentDownBlocksByDefaultAllParentsWithDependsAll) {
  engine_.configure({check("wan-a"), check("wan-b"), check("svc", 1, {"wan-a", "wan-b"}),
                     check("site", 1, {"wan-a", "wan-b"}, true)});
  feed("wan-a", C);
  feed("wan-b", O);
  EXPECT_TRUE(engine_.view("svc")->unreachable);
  EXPECT_FALSE(engine_.view("site")->unreachable);  // the redundant link still works
  feed("wan-b", C);
  EXPECT_TRUE(engine_.view("site")->unreachable);
}

TEST_F(Engine, GrandchildrenOfADownLinkAreUnreachableToo) {
  engine_.configure({check("wan"), check("host", 1, {"wan"}), check("web", 1, {"host"})});
  feed("wan", C);
  feed("web", C);
  EXPECT_TRUE(engine_.view("web")->unreachable);
  EXPECT_EQ(count(Kind::kFiring, "web"), 0);
  // Both are cut off, although only web has failed a probe so far.
  EXPECT_EQ(engine_.affected_children("wan"), (std::vector<std::string>{"host", "web"}));
}

TEST_F(Engine, FlappingSendsOneNoticeAndSilencesUntilItSettles) {
  EngineCheck c = check("web");
  c.state.flap_detection = true;
  engine_.configure({c});
  for (int i = 0; i < 20; ++i) feed("web", i % 2 ? C : O);
  EXPECT_EQ(count(Kind::kFlappingStarted, "web"), 1);
  int firings = count(Kind::kFiring, "web");
  EXPECT_LT(firings, 5) << "kept notifying while flapping";
  int before = static_cast<int>(events_.size());
  for (int i = 0; i < 6; ++i) feed("web", i % 2 ? C : O);
  EXPECT_EQ(static_cast<int>(events_.size()), before) << "notified while flapping";
  for (int i = 0; i < 25; ++i) feed("web", O);
  EXPECT_EQ(count(Kind::kFlappingStopped, "web"), 1);
  // Settled OK: any open firing is resolved, nothing is left dangling.
  EXPECT_FALSE(engine_.view("web")->firing);
}

TEST_F(Engine, SavedStateSurvivesARestartWithoutRenotifying) {
  engine_.configure({check("web")});
  feed("web", C);
  ASSERT_EQ(count(Kind::kFiring, "web"), 1);
  auto saved = engine_.save();

  AlertEngine restarted;
  restarted.configure({check("web")});
  restarted.restore(saved);
  auto fx = restarted.observe("web", C, "still down", t_ + 10s);
  EXPECT_TRUE(fx.events.empty()) << "re-notified an alert already notified";
  fx = restarted.observe("web", O, "back", t_ + 20s);
  ASSERT_EQ(fx.events.size(), 1u);
  EXPECT_EQ(fx.events[0].kind, Kind::kResolved);
}

}  // namespace
}  // namespace wacht::alerts
