#include "alerts/silences.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "support/process.hpp"

namespace wacht::alerts {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kMinute = 60'000;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;
constexpr int64_t kT0 = 1'795'687'200'000;  // 2026-11-26T10:00:00Z

// The store takes time as an argument; this is the test's clock.
struct FakeClock {
  int64_t now = kT0;
  void advance(int64_t ms) { now += ms; }
};

Matcher matcher(std::string_view text) {
  std::string error;
  std::optional<Matcher> m = parse_matcher(text, &error);
  EXPECT_TRUE(m) << text << ": " << error;
  return m.value();
}

Silence silence(const std::vector<std::string_view>& matchers, int64_t starts, int64_t ends) {
  Silence s;
  for (auto m : matchers) s.matchers.push_back(matcher(m));
  s.starts_at_ms = starts;
  s.ends_at_ms = ends;
  s.created_by = "anna";
  s.comment = "Wartung Switch Hagenow";
  return s;
}

std::string add_ok(SilenceStore& store, Silence s, int64_t now) {
  std::string error;
  std::optional<std::string> id = store.add(std::move(s), now, &error);
  EXPECT_TRUE(id) << error;
  return id.value_or("");
}

std::string add_error(SilenceStore& store, Silence s, int64_t now) {
  std::string error;
  EXPECT_FALSE(store.add(std::move(s), now, &error));
  return error;
}

// --- matchers -------------------------------------------------------------

TEST(MatcherParse, AcceptsAmtoolSyntax) {
  using Op = Matcher::Op;
  struct Case {
    std::string_view text;
    std::string name;
    Op op;
    std::string value;
  } cases[] = {
      {R"(tenant="lup")", "tenant", Op::kEq, "lup"},
      {R"(site=~"hag.*")", "site", Op::kRe, "hag.*"},
      {R"(check!="x")", "check", Op::kNe, "x"},
      {R"(a!~"b")", "a", Op::kNre, "b"},
      {"severity=critical", "severity", Op::kEq, "critical"},
      {"  tenant =  lup  ", "tenant", Op::kEq, "lup"},
      {R"(site =~ "hag now" )", "site", Op::kRe, "hag now"},
      {"x=a=b", "x", Op::kEq, "a=b"},
      {R"(empty="")", "empty", Op::kEq, ""},
      {"empty=", "empty", Op::kEq, ""},
      {R"(msg="say \"hi\"\n")", "msg", Op::kEq, "say \"hi\"\n"},
      {R"(path="C:\\temp")", "path", Op::kEq, R"(C:\temp)"},
      // Other escapes stay as written, so regexes need no doubling.
      {R"(host=~"db\d+")", "host", Op::kRe, R"(db\d+)"},
      {"_under_1=v", "_under_1", Op::kEq, "v"},
  };
  for (const Case& c : cases) {
    std::string error;
    std::optional<Matcher> m = parse_matcher(c.text, &error);
    ASSERT_TRUE(m) << c.text << ": " << error;
    EXPECT_EQ(m->name, c.name) << c.text;
    EXPECT_EQ(m->op, c.op) << c.text;
    EXPECT_EQ(m->value, c.value) << c.text;
    EXPECT_EQ(m->regex.has_value(), c.op == Op::kRe || c.op == Op::kNre) << c.text;
    // str() is amtool's spelling and reads back as the same matcher.
    std::optional<Matcher> again = parse_matcher(m->str(), &error);
    ASSERT_TRUE(again) << m->str() << ": " << error;
    EXPECT_EQ(*again, *m) << m->str();
  }
}

TEST(MatcherParse, StrQuotesTheValue) {
  EXPECT_EQ(matcher("tenant=lup").str(), R"(tenant="lup")");
  EXPECT_EQ(matcher(R"(site=~"hag.*")").str(), R"(site=~"hag.*")");
  EXPECT_EQ(matcher(R"(a!~"b")").str(), R"(a!~"b")");
  EXPECT_EQ(matcher(R"(check!="x")").str(), R"(check!="x")");
  EXPECT_EQ(matcher(R"(host=~"db\d+")").str(), R"(host=~"db\\d+")");
  EXPECT_EQ(matcher(R"(msg="say \"hi\"\n")").str(), R"(msg="say \"hi\"\n")");
}

TEST(MatcherParse, ReportsEachErrorExactly) {
  const std::string shape = ": expected name, operator (=, !=, =~, !~) and value";
  struct Case {
    std::string_view text;
    std::string error;
  } cases[] = {
      {"x", "matcher 'x'" + shape},
      {"", "matcher ''" + shape},
      {R"(="lup")", R"(matcher '="lup"')" + shape},
      {"tenant lup", "matcher 'tenant lup'" + shape},
      {R"(1abc="x")", R"(matcher '1abc="x"')" + shape},
      {R"(a-b="x")", R"(matcher 'a-b="x"')" + shape},
      {R"(a="b)", R"(matcher 'a="b': unterminated quoted value)"},
      {R"(a="b\")", R"(matcher 'a="b\"': unterminated quoted value)"},
      {R"(a=")", R"(matcher 'a="': unterminated quoted value)"},
      {R"(a="b"c)", R"(matcher 'a="b"c': unescaped double quote in the value)"},
      {R"(a=b"c)", R"(matcher 'a=b"c': unescaped double quote in the value)"},
      {R"(site=~"hag(")", R"(invalid regex "hag(": missing closing parenthesis at offset 4)"},
      {R"(a!~"*x")",
       R"(invalid regex "*x": quantifier does not follow a repeatable item at offset 0)"},
      // Compiles alone, but \Q quotes the anchoring wrapper away.
      {R"(a=~"x\Q")",
       R"(invalid regex "x\\Q": cannot be anchored as ^(?:...)$ (an unterminated \Q?))"},
  };
  for (const Case& c : cases) {
    std::string error;
    EXPECT_FALSE(parse_matcher(c.text, &error)) << c.text;
    EXPECT_EQ(error, c.error) << c.text;
  }
}

TEST(MatcherMatch, MissingLabelsAreEmptyLikeAlertmanager) {
  const Labels with{{"tenant", "lup"}, {"site", "hagenow"}};
  const Labels without{{"tenant", "lup"}};
  struct Case {
    std::string_view matcher;
    bool with, without;
  } cases[] = {
      {R"(site="hagenow")", true, false},  {R"(site="")", false, true},
      {R"(site!="")", true, false},        {R"(site!="parchim")", true, true},
      {R"(site!="hagenow")", false, true}, {R"(site=~".*")", true, true},
      {R"(site=~".+")", true, false},      {R"(site!~"hag.*")", false, true},
      {R"(site!~".+")", false, true},
  };
  for (const Case& c : cases) {
    Matcher m = matcher(c.matcher);
    EXPECT_EQ(m.matches(with), c.with) << c.matcher;
    EXPECT_EQ(m.matches(without), c.without) << c.matcher;
  }
}

TEST(MatcherMatch, RegexesAreAnchoredAtBothEnds) {
  auto site = [](std::string v) { return Labels{{"site", std::move(v)}}; };
  EXPECT_TRUE(matcher(R"(site=~"hag")").matches(site("hag")));
  EXPECT_FALSE(matcher(R"(site=~"hag")").matches(site("hagenow")));
  EXPECT_FALSE(matcher(R"(site=~"hag")").matches(site("xhag")));
  // $ would match before a trailing line feed; the anchor does not.
  EXPECT_FALSE(matcher(R"(site=~"hag")").matches(site("hag\n")));
  // The alternation stays inside the anchors: not ^a|b$.
  EXPECT_FALSE(matcher(R"(site=~"a|b")").matches(site("ab")));
  EXPECT_TRUE(matcher(R"(site=~"a|b")").matches(site("b")));
  EXPECT_TRUE(matcher(R"(site=~"hag.*")").matches(site("hagenow")));
  EXPECT_TRUE(matcher(R"(site!~"hag")").matches(site("hagenow")));
  EXPECT_FALSE(matcher(R"(site!~"hag.*")").matches(site("hagenow")));
  EXPECT_TRUE(matcher(R"(host=~"db\d+")").matches({{"host", "db12"}}));
}

TEST(MatcherMatch, ASearchThatGivesUpNeverSilences) {
  const Labels labels{{"x", std::string(40, 'a') + "b"}};
  EXPECT_FALSE(matcher(R"(x=~"(a+)+")").matches(labels));
  EXPECT_FALSE(matcher(R"(x!~"(a+)+")").matches(labels));
}

TEST(MatcherMake, ChecksTheNameAndCompilesTheRegex) {
  std::string error;
  EXPECT_FALSE(make_matcher("a-b", Matcher::Op::kEq, "x", &error));
  EXPECT_EQ(error, R"(not a valid label name: "a-b")");
  EXPECT_FALSE(make_matcher("", Matcher::Op::kEq, "x", &error));
  EXPECT_EQ(error, R"(not a valid label name: "")");
  std::optional<Matcher> m = make_matcher("site", Matcher::Op::kNre, "hag.*", &error);
  ASSERT_TRUE(m) << error;
  EXPECT_TRUE(m->matches({{"site", "parchim"}}));
}

// --- store ----------------------------------------------------------------

TEST(SilenceStore, PendingThenActiveThenExpired) {
  FakeClock clock;
  SilenceStore store;
  const std::string id =
      add_ok(store, silence({R"(site="hagenow")"}, kT0 + kHour, kT0 + 3 * kHour), clock.now);
  const Labels alert{{"tenant", "lup"}, {"site", "hagenow"}, {"check", "switch"}};
  const Silence* s = store.find(id);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->from_config);
  EXPECT_EQ(s->updated_at_ms, kT0);

  EXPECT_EQ(s->state(clock.now), Silence::State::kPending);
  EXPECT_FALSE(store.silenced(alert, clock.now));
  EXPECT_EQ(store.counts(clock.now).pending, 1u);
  EXPECT_EQ(store.next_change(clock.now), kT0 + kHour);

  clock.advance(kHour);
  std::string by;
  EXPECT_EQ(s->state(clock.now), Silence::State::kActive);
  EXPECT_TRUE(store.silenced(alert, clock.now, &by));
  EXPECT_EQ(by, id);
  EXPECT_FALSE(store.silenced({{"site", "parchim"}}, clock.now));
  EXPECT_EQ(store.counts(clock.now).active, 1u);
  EXPECT_EQ(store.next_change(clock.now), kT0 + 3 * kHour);

  clock.advance(2 * kHour - 1);
  EXPECT_TRUE(store.silenced(alert, clock.now));
  clock.advance(1);
  EXPECT_EQ(s->state(clock.now), Silence::State::kExpired);
  EXPECT_FALSE(store.silenced(alert, clock.now));
  SilenceStore::Counts c = store.counts(clock.now);
  EXPECT_EQ(c.pending + c.active, 0u);
  EXPECT_EQ(c.expired, 1u);
  EXPECT_EQ(store.next_change(clock.now), std::nullopt);
  EXPECT_EQ(to_string(Silence::State::kExpired), std::string("expired"));
}

TEST(SilenceStore, AllMatchersMustMatch) {
  SilenceStore store;
  add_ok(store, silence({"tenant=lup", R"(check=~"sw.*")"}, kT0, kT0 + kHour), kT0);
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}, {"check", "switch"}}, kT0));
  EXPECT_FALSE(store.silenced({{"tenant", "sn"}, {"check", "switch"}}, kT0));
  EXPECT_FALSE(store.silenced({{"tenant", "lup"}, {"check", "router"}}, kT0));
}

TEST(SilenceStore, NamesTheMatchingSilenceThatEndsLast) {
  SilenceStore store;
  add_ok(store, silence({"tenant=lup"}, kT0, kT0 + kHour), kT0);
  const std::string longer = add_ok(store, silence({"site=hagenow"}, kT0, kT0 + 2 * kHour), kT0);
  add_ok(store, silence({"site=parchim"}, kT0, kT0 + 3 * kHour), kT0);
  std::string by;
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}, {"site", "hagenow"}}, kT0, &by));
  EXPECT_EQ(by, longer);
}

TEST(SilenceStore, NewSilencesGetRandomUuidsAndStartNoEarlierThanNow) {
  SilenceStore store;
  const std::string a = add_ok(store, silence({"tenant=lup"}, kT0 - kHour, kT0 + kHour), kT0);
  const std::string b = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + kHour), kT0);
  EXPECT_NE(a, b);
  auto uuid_v4 = runtime::Regex::compile(
      "^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  ASSERT_TRUE(uuid_v4);
  EXPECT_TRUE(uuid_v4->search(a)) << a;
  EXPECT_TRUE(uuid_v4->search(b)) << b;
  EXPECT_EQ(store.find(a)->starts_at_ms, kT0);
}

TEST(SilenceStore, AddValidatesLikeAlertmanager) {
  SilenceStore store;
  struct Case {
    const char* what;
    Silence s;
    std::string error;
  };
  Silence no_author = silence({"tenant=lup"}, kT0, kT0 + kHour);
  no_author.created_by.clear();
  Silence no_comment = silence({"tenant=lup"}, kT0, kT0 + kHour);
  no_comment.comment.clear();
  Silence unknown = silence({"tenant=lup"}, kT0, kT0 + kHour);
  unknown.id = "nope";
  Case cases[] = {
      {"no matchers", silence({}, kT0, kT0 + kHour), "matchers: at least one matcher required"},
      {"only empty", silence({R"(site="")"}, kT0, kT0 + kHour),
       "matchers: at least one matcher must not match the empty string"},
      {"only .*", silence({R"(site=~".*")", R"(x="")"}, kT0, kT0 + kHour),
       "matchers: at least one matcher must not match the empty string"},
      {"end at start", silence({"tenant=lup"}, kT0 + kHour, kT0 + kHour),
       "endsAt: must be after startsAt"},
      {"end before start", silence({"tenant=lup"}, kT0 + kHour, kT0),
       "endsAt: must be after startsAt"},
      {"in the past", silence({"tenant=lup"}, kT0 - 2 * kHour, kT0 - kHour),
       "endsAt: must be in the future"},
      {"ends now", silence({"tenant=lup"}, kT0 - kHour, kT0), "endsAt: must be in the future"},
      {"too long", silence({"tenant=lup"}, kT0, kT0 + 90 * kDay + 1),
       "endsAt: a silence may last at most 90d"},
      {"too long from now", silence({"tenant=lup"}, kT0 - kDay, kT0 + 90 * kDay + 1),
       "endsAt: a silence may last at most 90d"},
      {"no author", no_author, "createdBy: must not be empty"},
      {"no comment", no_comment, "comment: must not be empty"},
      {"unknown id", unknown, "silence nope not found"},
  };
  for (Case& c : cases) EXPECT_EQ(add_error(store, std::move(c.s), kT0), c.error) << c.what;
  EXPECT_TRUE(store.list(kT0).empty());
  EXPECT_EQ(store.version(), 0u);

  // The limits: exactly max_duration, and negative matchers alone (as Alertmanager allows).
  add_ok(store, silence({"tenant=lup"}, kT0, kT0 + 90 * kDay), kT0);
  add_ok(store, silence({R"(tenant!="sn")"}, kT0, kT0 + kHour), kT0);
  SilenceStore short_store(SilenceLimits{std::chrono::hours(2), std::chrono::days(5)});
  EXPECT_EQ(add_error(short_store, silence({"tenant=lup"}, kT0, kT0 + 3 * kHour), kT0),
            "endsAt: a silence may last at most 2h");
}

TEST(SilenceStore, ExpireEndsAnActiveSilenceNow) {
  FakeClock clock;
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + 2 * kHour), clock.now);
  const uint64_t v = store.version();
  clock.advance(30 * kMinute);
  std::string error;
  ASSERT_TRUE(store.expire(id, clock.now, &error)) << error;
  EXPECT_GT(store.version(), v);
  const Silence* s = store.find(id);
  EXPECT_EQ(s->starts_at_ms, kT0);
  EXPECT_EQ(s->ends_at_ms, clock.now);
  EXPECT_EQ(s->updated_at_ms, clock.now);
  EXPECT_EQ(s->state(clock.now), Silence::State::kExpired);
  EXPECT_FALSE(store.silenced({{"tenant", "lup"}}, clock.now));
  EXPECT_EQ(store.list(clock.now).size(), 1u);  // kept for the history

  EXPECT_FALSE(store.expire(id, clock.now, &error));
  EXPECT_EQ(error, "silence " + id + " is already expired");
  EXPECT_FALSE(store.expire("nope", clock.now, &error));
  EXPECT_EQ(error, "silence nope not found");
}

TEST(SilenceStore, ExpireOfAPendingSilenceStartsAndEndsItNow) {
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0 + kHour, kT0 + 2 * kHour), kT0);
  ASSERT_TRUE(store.expire(id, kT0 + kMinute, nullptr));
  const Silence* s = store.find(id);
  EXPECT_EQ(s->starts_at_ms, kT0 + kMinute);
  EXPECT_EQ(s->ends_at_ms, kT0 + kMinute);
  EXPECT_EQ(s->state(kT0 + kMinute), Silence::State::kExpired);
  EXPECT_FALSE(store.silenced({{"tenant", "lup"}}, kT0 + kHour));
}

TEST(SilenceStore, UpdateOfTheEndOrCommentKeepsTheId) {
  FakeClock clock;
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + kHour), clock.now);
  clock.advance(10 * kMinute);
  Silence update = *store.find(id);
  update.ends_at_ms = kT0 + 4 * kHour;
  update.comment = "dauert länger";
  update.created_by = "bernd";
  EXPECT_EQ(add_ok(store, update, clock.now), id);
  const Silence* s = store.find(id);
  EXPECT_EQ(s->starts_at_ms, kT0);
  EXPECT_EQ(s->ends_at_ms, kT0 + 4 * kHour);
  EXPECT_EQ(s->comment, "dauert länger");
  EXPECT_EQ(s->created_by, "bernd");
  EXPECT_EQ(s->updated_at_ms, clock.now);
  EXPECT_EQ(store.list(clock.now).size(), 1u);

  // A pending silence may move to a later start in place.
  const std::string pending =
      add_ok(store, silence({"site=hagenow"}, kT0 + 2 * kHour, kT0 + 3 * kHour), clock.now);
  Silence later = *store.find(pending);
  later.starts_at_ms = kT0 + 5 * kHour;
  later.ends_at_ms = kT0 + 6 * kHour;
  EXPECT_EQ(add_ok(store, later, clock.now), pending);
  EXPECT_EQ(store.find(pending)->starts_at_ms, kT0 + 5 * kHour);
}

TEST(SilenceStore, UpdateThatRewritesHistoryReplacesTheSilence) {
  FakeClock clock;
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + 2 * kHour), clock.now);
  clock.advance(10 * kMinute);
  Silence update = *store.find(id);
  update.matchers = {matcher("tenant=lup"), matcher("site=hagenow")};
  const std::string replacement = add_ok(store, update, clock.now);
  EXPECT_NE(replacement, id);
  // The old one ended now and stays listed; the new one starts now.
  EXPECT_EQ(store.find(id)->ends_at_ms, clock.now);
  EXPECT_EQ(store.find(id)->matchers.size(), 1u);
  EXPECT_EQ(store.find(replacement)->starts_at_ms, clock.now);
  EXPECT_EQ(store.find(replacement)->ends_at_ms, kT0 + 2 * kHour);
  EXPECT_FALSE(store.silenced({{"tenant", "lup"}, {"site", "parchim"}}, clock.now));
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}, {"site", "hagenow"}}, clock.now));

  // Moving an active silence's start is a replacement too.
  Silence moved = *store.find(replacement);
  moved.starts_at_ms = clock.now + kMinute;
  const std::string third = add_ok(store, moved, clock.now);
  EXPECT_NE(third, replacement);

  // An expired silence is never changed: the update becomes a new silence.
  clock.advance(3 * kHour);
  Silence revived = *store.find(id);
  revived.ends_at_ms = clock.now + kHour;
  const std::string fourth = add_ok(store, revived, clock.now);
  EXPECT_NE(fourth, id);
  EXPECT_EQ(store.find(id)->ends_at_ms, kT0 + 10 * kMinute);
  EXPECT_EQ(store.list(clock.now).size(), 4u);
}

TEST(SilenceStore, ConfigSilencesAreReplacedOnReloadAndReadOnly) {
  FakeClock clock;
  SilenceStore store;
  Silence maint = silence({"tenant=lup", "site=hagenow"}, kT0 + kHour, kT0 + 5 * kHour);
  maint.id = "config:hagenow-switch";
  maint.created_by = "config";
  store.set_config_silences({maint}, clock.now);
  EXPECT_EQ(store.version(), 1u);
  const Silence* s = store.find("config:hagenow-switch");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->from_config);
  EXPECT_EQ(s->updated_at_ms, kT0);
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}, {"site", "hagenow"}}, kT0 + kHour));

  std::string error;
  EXPECT_FALSE(store.expire("config:hagenow-switch", clock.now, &error));
  EXPECT_EQ(error, "silence config:hagenow-switch is from the config file; change it there");
  Silence update = maint;
  update.ends_at_ms = kT0 + 6 * kHour;
  EXPECT_EQ(add_error(store, update, clock.now),
            "silence config:hagenow-switch is from the config file; change it there");

  // A reload with the same silence changes nothing; a changed one is news.
  clock.advance(kMinute);
  store.set_config_silences({maint}, clock.now);
  EXPECT_EQ(store.version(), 1u);
  EXPECT_EQ(store.find("config:hagenow-switch")->updated_at_ms, kT0);
  maint.comment = "verschoben";
  store.set_config_silences({maint}, clock.now);
  EXPECT_EQ(store.version(), 2u);
  EXPECT_EQ(store.find("config:hagenow-switch")->updated_at_ms, kT0 + kMinute);

  // API silences survive a reload; removed config silences are gone.
  const std::string api = add_ok(store, silence({"tenant=sn"}, kT0, kT0 + kHour), clock.now);
  store.set_config_silences({}, clock.now);
  EXPECT_EQ(store.find("config:hagenow-switch"), nullptr);
  EXPECT_NE(store.find(api), nullptr);
  EXPECT_FALSE(store.silenced({{"tenant", "lup"}, {"site", "hagenow"}}, kT0 + kHour));
}

TEST(SilenceStore, ListsActiveByEndThenPendingByStartThenExpiredNewestFirst) {
  FakeClock clock;
  SilenceStore store;
  const std::string old_expired = add_ok(store, silence({"a=1"}, kT0, kT0 + kHour), clock.now);
  const std::string new_expired = add_ok(store, silence({"a=2"}, kT0, kT0 + 2 * kHour), clock.now);
  clock.advance(3 * kHour);
  const std::string long_active =
      add_ok(store, silence({"a=3"}, 0, clock.now + 5 * kHour), clock.now);
  const std::string short_active = add_ok(store, silence({"a=4"}, 0, clock.now + kHour), clock.now);
  const std::string late =
      add_ok(store, silence({"a=5"}, clock.now + 3 * kHour, clock.now + 4 * kHour), clock.now);
  const std::string soon =
      add_ok(store, silence({"a=6"}, clock.now + kHour, clock.now + 4 * kHour), clock.now);
  Silence maint = silence({"a=7"}, clock.now, clock.now + 2 * kHour);
  maint.id = "config:maint";
  store.set_config_silences({maint}, clock.now);

  std::vector<std::string> ids;
  for (const Silence& s : store.list(clock.now)) ids.push_back(s.id);
  EXPECT_EQ(ids, (std::vector<std::string>{short_active, "config:maint", long_active, soon, late,
                                           new_expired, old_expired}));
  SilenceStore::Counts c = store.counts(clock.now);
  EXPECT_EQ(c.active, 3u);
  EXPECT_EQ(c.pending, 2u);
  EXPECT_EQ(c.expired, 2u);
}

TEST(SilenceStore, GcDropsExpiredApiSilencesAfterRetention) {
  SilenceStore store;  // retention 5 days
  const std::string id = add_ok(store, silence({"a=1"}, kT0, kT0 + kHour), kT0);
  const std::string active = add_ok(store, silence({"a=2"}, kT0, kT0 + 30 * kDay), kT0);
  Silence maint = silence({"a=3"}, kT0, kT0 + kHour);
  maint.id = "config:maint";
  store.set_config_silences({maint}, kT0);
  const uint64_t v = store.version();

  EXPECT_EQ(store.gc(kT0 + kHour + 5 * kDay - 1), 0u);
  EXPECT_EQ(store.version(), v);
  EXPECT_NE(store.find(id), nullptr);
  EXPECT_EQ(store.gc(kT0 + kHour + 5 * kDay), 1u);
  EXPECT_GT(store.version(), v);
  EXPECT_EQ(store.find(id), nullptr);
  EXPECT_NE(store.find(active), nullptr);
  // Config silences stay as long as the config names them.
  EXPECT_NE(store.find("config:maint"), nullptr);

  SilenceStore brief(SilenceLimits{std::chrono::days(90), std::chrono::hours(1)});
  add_ok(brief, silence({"a=1"}, kT0, kT0 + kHour), kT0);
  EXPECT_EQ(brief.gc(kT0 + 2 * kHour - 1), 0u);
  EXPECT_EQ(brief.gc(kT0 + 2 * kHour), 1u);
}

TEST(SilenceStore, VersionCountsChanges) {
  SilenceStore store;
  EXPECT_EQ(store.version(), 0u);
  const std::string id = add_ok(store, silence({"a=1"}, kT0, kT0 + kHour), kT0);
  EXPECT_EQ(store.version(), 1u);
  add_error(store, silence({}, kT0, kT0 + kHour), kT0);
  EXPECT_FALSE(store.expire("nope", kT0, nullptr));
  EXPECT_EQ(store.version(), 1u);
  ASSERT_TRUE(store.expire(id, kT0 + 1, nullptr));
  EXPECT_EQ(store.version(), 2u);
}

// --- persistence ------------------------------------------------------------

class SilencePersistence : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir(); }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path() const { return dir_ + "/silences.json"; }
  void write(const std::string& text) { std::ofstream(path(), std::ios::binary) << text; }

  std::string dir_;
};

TEST_F(SilencePersistence, RoundTripKeepsEverything) {
  FakeClock clock;
  SilenceStore store;
  const std::string a =
      add_ok(store, silence({"tenant=lup", R"(site=~"hag.*")"}, kT0, kT0 + 2 * kHour), clock.now);
  Silence b = silence({R"(check!="ping")", R"(host!~"db\d+")"}, kT0 + kDay, kT0 + 2 * kDay);
  b.comment = "Umzug \"RZ\"\nzweite Zeile";
  const std::string b_id = add_ok(store, b, clock.now);
  clock.advance(kMinute);
  ASSERT_TRUE(store.expire(a, clock.now, nullptr));
  Silence maint = silence({"a=1"}, kT0, kT0 + kHour);
  maint.id = "config:maint";
  store.set_config_silences({maint}, clock.now);

  std::string error;
  ASSERT_TRUE(store.save(path(), &error)) << error;
  SilenceStore loaded;
  ASSERT_TRUE(loaded.load(path(), &error)) << error;
  EXPECT_EQ(loaded.version(), 1u);

  std::vector<Silence> before = store.list(clock.now), after = loaded.list(clock.now);
  std::erase_if(before, [](const Silence& s) { return s.from_config; });  // not saved
  ASSERT_EQ(after.size(), 2u);
  ASSERT_EQ(before.size(), 2u);
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].id, before[i].id);
    EXPECT_EQ(after[i].matchers, before[i].matchers);
    EXPECT_EQ(after[i].starts_at_ms, before[i].starts_at_ms);
    EXPECT_EQ(after[i].ends_at_ms, before[i].ends_at_ms);
    EXPECT_EQ(after[i].updated_at_ms, before[i].updated_at_ms);
    EXPECT_EQ(after[i].created_by, before[i].created_by);
    EXPECT_EQ(after[i].comment, before[i].comment);
    EXPECT_FALSE(after[i].from_config);
  }
  // The regexes work again after loading.
  std::string by;
  EXPECT_TRUE(loaded.silenced({{"check", "http"}, {"host", "web1"}}, kT0 + kDay, &by));
  EXPECT_EQ(by, b_id);
  EXPECT_FALSE(loaded.silenced({{"check", "http"}, {"host", "db1"}}, kT0 + kDay));
}

TEST_F(SilencePersistence, SavedFileIsGettableSilencesWithoutStatus) {
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + kHour), kT0);
  ASSERT_TRUE(store.save(path(), nullptr));
  EXPECT_EQ(test::read_text(path()), R"({
  "silences": [
    {
      "id": ")" + id + R"(",
      "updatedAt": "2026-11-26T10:00:00.000Z",
      "matchers": [
        {
          "name": "tenant",
          "value": "lup",
          "isRegex": false,
          "isEqual": true
        }
      ],
      "startsAt": "2026-11-26T10:00:00.000Z",
      "endsAt": "2026-11-26T11:00:00.000Z",
      "createdBy": "anna",
      "comment": "Wartung Switch Hagenow"
    }
  ]
}
)");
}

TEST_F(SilencePersistence, MissingFileHoldsNoSilences) {
  SilenceStore store;
  std::string error;
  EXPECT_TRUE(store.load(path(), &error)) << error;
  EXPECT_TRUE(store.list(kT0).empty());
}

TEST_F(SilencePersistence, CorruptOrTruncatedFileIsAnErrorAndChangesNothing) {
  SilenceStore store;
  const std::string id = add_ok(store, silence({"tenant=lup"}, kT0, kT0 + kHour), kT0);
  ASSERT_TRUE(store.save(path(), nullptr));
  const std::string whole = test::read_text(path());
  const uint64_t v = store.version();

  std::string error;
  write("\x01\x02 garbage");
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() +
                       ": not JSON: parse error at line 1, column 1: syntax error while parsing "
                       "value - invalid literal; last read: '<U+0001>'");

  write(whole.substr(0, whole.size() / 2));
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_TRUE(error.starts_with(path() + ": not JSON: parse error at line ")) << error;

  write("");
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_TRUE(error.starts_with(path() + ": not JSON: ")) << error;

  write(R"([1, 2])");
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() + ": silences: must be an array");

  write(R"({"silences": [{"id": "x", "updatedAt": "2026-11-26T10:00:00Z", "matchers": [],
            "startsAt": "yesterday", "endsAt": "2026-11-26T10:00:00Z", "comment": ""}]})");
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() + R"(: silences[0].startsAt: not an RFC 3339 time: "yesterday")");

  write(R"({"silences": [7]})");
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() + ": silences[0]: must be an object");

  EXPECT_EQ(store.version(), v);
  ASSERT_EQ(store.list(kT0).size(), 1u);
  EXPECT_EQ(store.list(kT0)[0].id, id);
}

TEST_F(SilencePersistence, UnreadableFileIsAnError) {
  fs::create_directory(path());
  SilenceStore store;
  std::string error;
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() + ": Is a directory");
}

TEST_F(SilencePersistence, UnknownFieldsAreIgnored) {
  write(R"({"format": 2, "silences": [{"id": "abc", "status": {"state": "active"},
      "updatedAt": "2026-11-26T10:00:00Z", "future": [1, 2],
      "matchers": [{"name": "tenant", "value": "lup", "isRegex": false, "weight": 3}],
      "startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26T12:00:00+01:00",
      "createdBy": "anna", "comment": "x"}]})");
  SilenceStore store;
  std::string error;
  ASSERT_TRUE(store.load(path(), &error)) << error;
  const Silence* s = store.find("abc");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->ends_at_ms, kT0 + kHour);
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}}, kT0));
}

// --- API bodies ---------------------------------------------------------------

TEST(SilenceBody, ParsesAPostableSilence) {
  std::string error;
  std::optional<Silence> s = parse_postable_silence(R"({
    "matchers": [
      {"name": "tenant", "value": "lup", "isRegex": false, "isEqual": true},
      {"name": "site", "value": "hag.*", "isRegex": true},
      {"name": "check", "value": "ping", "isRegex": false, "isEqual": false},
      {"name": "host", "value": "db\\d+", "isRegex": true, "isEqual": false}
    ],
    "startsAt": "2026-11-26T11:00:00+01:00",
    "endsAt": "2026-11-26T14:00:00.250+02:00",
    "createdBy": "somebody",
    "comment": "Switch-Tausch",
    "status": {"state": "ignored"}
  })",
                                                    &error);
  ASSERT_TRUE(s) << error;
  EXPECT_EQ(s->id, "");
  std::vector<std::string> matchers;
  for (const Matcher& m : s->matchers) matchers.push_back(m.str());
  EXPECT_EQ(matchers, (std::vector<std::string>{R"(tenant="lup")", R"(site=~"hag.*")",
                                                R"(check!="ping")", R"(host!~"db\\d+")"}));
  EXPECT_EQ(s->starts_at_ms, kT0);
  EXPECT_EQ(s->ends_at_ms, kT0 + 2 * kHour + 250);
  EXPECT_EQ(s->comment, "Switch-Tausch");

  // The daemon names the author from the caller's token, whatever the body says.
  s->created_by = "token:anna";
  SilenceStore store;
  const std::string id = add_ok(store, *s, kT0);
  EXPECT_EQ(store.find(id)->created_by, "token:anna");
  EXPECT_TRUE(store.silenced({{"tenant", "lup"}, {"site", "hagenow"}, {"check", "http"}}, kT0));

  // With an id it is an update, and createdBy may be left to the daemon.
  std::optional<Silence> update = parse_postable_silence(
      R"({"id": ")" + id + R"(", "matchers": [], "startsAt": "2026-11-26T10:00:00Z",
          "endsAt": "2026-11-26T10:30:00Z", "comment": "x"})",
      &error);
  ASSERT_TRUE(update) << error;
  EXPECT_EQ(update->id, id);
  EXPECT_EQ(update->created_by, "");
}

TEST(SilenceBody, ErrorsNameTheField) {
  const std::string m0 = R"({"name": "tenant", "value": "lup", "isRegex": false})";
  const std::string times =
      R"("startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26T12:00:00Z")";
  auto body = [&](const std::string& matchers, const std::string& rest = "") {
    return R"({"matchers": [)" + matchers + "], " + times + R"(, "comment": "c")" + rest + "}";
  };
  struct Case {
    std::string body;
    std::string error;
  } cases[] = {
      {"tomorrow",
       "body is not JSON: parse error at line 1, column 2: syntax error while parsing value - "
       "invalid literal; last read: 'to'"},
      {"",
       "body is not JSON: parse error at line 1, column 1: syntax error while parsing value - "
       "unexpected end of input; expected '[', '{', or a literal"},
      {"[]", "body: must be a JSON object"},
      {"{}", "matchers: required"},
      {R"({"matchers": {}})", "matchers: must be an array"},
      {body("1"), "matchers[0]: must be an object"},
      {body(m0 + R"(, {"name": "", "value": "x", "isRegex": false})"),
       "matchers[1].name: must be a non-empty string"},
      {body(m0 + R"(, {"value": "x", "isRegex": false})"),
       "matchers[1].name: must be a non-empty string"},
      {body(R"({"name": 5, "value": "x", "isRegex": false})"),
       "matchers[0].name: must be a non-empty string"},
      {body(R"({"name": "a-b", "value": "x", "isRegex": false})"),
       R"(matchers[0].name: not a valid label name: "a-b")"},
      {body(R"({"name": "a", "isRegex": false})"), "matchers[0].value: required"},
      {body(R"({"name": "a", "value": 5, "isRegex": false})"),
       "matchers[0].value: must be a string"},
      {body(R"({"name": "a", "value": "x"})"), "matchers[0].isRegex: must be a boolean"},
      {body(R"({"name": "a", "value": "x", "isRegex": "no"})"),
       "matchers[0].isRegex: must be a boolean"},
      {body(R"({"name": "a", "value": "x", "isRegex": false, "isEqual": "yes"})"),
       "matchers[0].isEqual: must be a boolean"},
      {body(R"({"name": "a", "value": "(", "isRegex": true})"),
       R"(matchers[0].value: invalid regex "(": missing closing parenthesis at offset 1)"},
      {R"({"matchers": [], "endsAt": "2026-11-26T12:00:00Z", "comment": "c"})",
       "startsAt: required"},
      {R"({"matchers": [], "startsAt": 5, "endsAt": "2026-11-26T12:00:00Z", "comment": "c"})",
       "startsAt: must be a string"},
      {R"({"matchers": [], "startsAt": "2026-11-26T10:00:00Z", "endsAt": "tomorrow"})",
       R"(endsAt: not an RFC 3339 time: "tomorrow")"},
      {R"({"matchers": [], "startsAt": "2026-11-26T10:00:00Z", "endsAt": "2026-11-26 12:00:00"})",
       R"(endsAt: not an RFC 3339 time: "2026-11-26 12:00:00")"},
      {R"({"matchers": [], )" + times + "}", "comment: required"},
      {R"({"matchers": [], )" + times + R"(, "comment": null})", "comment: must be a string"},
      {body(m0, R"(, "createdBy": 5)"), "createdBy: must be a string"},
      {body(m0, R"(, "id": 5)"), "id: must be a string"},
  };
  for (const Case& c : cases) {
    std::string error;
    EXPECT_FALSE(parse_postable_silence(c.body, &error)) << c.body;
    EXPECT_EQ(error, c.error) << c.body;
  }
  std::string error;
  EXPECT_TRUE(parse_postable_silence(body(m0), &error)) << error;
}

TEST(SilenceBody, ToJsonIsAGettableSilence) {
  SilenceStore store;
  const std::string id = add_ok(
      store, silence({"tenant=lup", R"(site!~"hag.*")"}, kT0 + kHour, kT0 + 2 * kHour + 5), kT0);
  const Silence* s = store.find(id);
  EXPECT_EQ(to_json(*s, kT0).dump(),
            R"({"id":")" + id +
                R"(","status":{"state":"pending"},"updatedAt":"2026-11-26T10:00:00.000Z",)"
                R"("matchers":[{"name":"tenant","value":"lup","isRegex":false,"isEqual":true},)"
                R"({"name":"site","value":"hag.*","isRegex":true,"isEqual":false}],)"
                R"("startsAt":"2026-11-26T11:00:00.000Z","endsAt":"2026-11-26T12:00:00.005Z",)"
                R"("createdBy":"anna","comment":"Wartung Switch Hagenow"})");
  EXPECT_EQ(to_json(*s, kT0 + kHour)["status"]["state"], "active");
  EXPECT_EQ(to_json(*s, kT0 + 3 * kHour)["status"]["state"], "expired");
}

TEST(SilenceTime, ParsesRfc3339WithOffsetsAndFractions) {
  struct Case {
    std::string_view text;
    int64_t ms;
  } cases[] = {
      {"2026-11-26T10:00:00Z", kT0},
      {"2026-11-26T11:00:00+01:00", kT0},
      {"2026-11-26T12:00:00+02:00", kT0},
      {"2026-11-26T05:30:00-04:30", kT0},
      {"2026-11-26t10:00:00z", kT0},
      {"2026-11-26T10:00:00.123Z", kT0 + 123},
      {"2026-11-26T10:00:00.5Z", kT0 + 500},
      {"2026-11-26T11:00:00.123456789+01:00", kT0 + 123},
      {"2026-11-26T10:00:00.000999Z", kT0},
      {"2026-11-27T00:30:00+02:00", kT0 + 12 * kHour + 30 * kMinute},  // the day before in UTC
      {"2028-02-29T00:00:00Z", 1'835'395'200'000},
      {"1970-01-01T00:00:00Z", 0},
      {"1970-01-01T00:59:59.999+01:00", -1},
  };
  for (const Case& c : cases) EXPECT_EQ(parse_rfc3339(c.text), c.ms) << c.text;

  for (std::string_view bad : {"tomorrow",
                               "",
                               "2026-11-26",
                               "2026-11-26T10:00:00",
                               "2026-11-26 10:00:00Z",
                               "2026-11-26T10:00Z",
                               "2026-13-01T00:00:00Z",
                               "2026-00-01T00:00:00Z",
                               "2026-11-31T00:00:00Z",
                               "2026-02-29T00:00:00Z",
                               "2026-11-26T24:00:00Z",
                               "2026-11-26T10:60:00Z",
                               "2026-11-26T10:00:60Z",
                               "2026-11-26T10:00:00.Z",
                               "2026-11-26T10:00:00+0100",
                               "2026-11-26T10:00:00+01",
                               "2026-11-26T10:00:00+24:00",
                               "2026-11-26T10:00:00Zjunk",
                               "+2026-11-26T10:00:00Z",
                               "2026-1-26T10:00:00Z"})
    EXPECT_EQ(parse_rfc3339(bad), std::nullopt) << bad;
}

TEST(SilenceTime, FormatsUtcWithMilliseconds) {
  EXPECT_EQ(format_rfc3339(kT0), "2026-11-26T10:00:00.000Z");
  EXPECT_EQ(format_rfc3339(kT0 + 12 * kHour + 123), "2026-11-26T22:00:00.123Z");
  EXPECT_EQ(format_rfc3339(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339(-1), "1969-12-31T23:59:59.999Z");
  EXPECT_EQ(parse_rfc3339(format_rfc3339(kT0 + 7)), kT0 + 7);
}

// Found by fuzz/silence_fuzzer: nlohmann throws out_of_range, not parse_error,
// for a number beyond a double, which escaped as an exception: a 500 instead
// of a 400 from the API, and for such a silences file wachtd's start ended in
// main's catch-all instead of "cannot load silences: <path>: ...".
TEST(SilenceBody, NumberBeyondADoubleIsAnErrorNotAnException) {
  std::string error;
  EXPECT_FALSE(parse_postable_silence(R"({"matchers": [], "startsAt": 1e400})", &error));
  EXPECT_EQ(error, "body is not JSON: number overflow parsing '1e400'");
}

TEST_F(SilencePersistence, NumberBeyondADoubleIsAnErrorNotAnException) {
  SilenceStore store;
  write(R"({"silences": [], "saved": -1e999})");
  std::string error;
  EXPECT_FALSE(store.load(path(), &error));
  EXPECT_EQ(error, path() + ": not JSON: number overflow parsing '-1e999'");
}

}  // namespace
}  // namespace wacht::alerts
