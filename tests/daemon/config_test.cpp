#include "config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/process.hpp"

namespace wacht::config {
namespace {

namespace fs = std::filesystem;

void write_file(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t pos = 0; (pos = s.find(from, pos)) != std::string::npos; pos += to.size())
    s.replace(pos, from.size(), to);
  return s;
}

// Golden files, one per validation rule (blackbox_exporter's testdata/invalid-*):
// invalid-NAME.toml (or invalid-NAME/wacht.toml) must fail with exactly the
// diagnostics in invalid-NAME.err. WACHT_UPDATE_GOLDEN=1 rewrites the .err files.
std::vector<fs::path> golden_cases() {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(WACHT_TESTDATA_DIR) / "config")) {
    std::string name = e.path().filename();
    if (!name.starts_with("invalid-")) continue;
    if (e.is_directory())
      out.push_back(e.path() / "wacht.toml");
    else if (e.path().extension() == ".toml")
      out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(ConfigGolden, EveryInvalidConfigFailsWithItsExactDiagnostics) {
  const std::string dir = std::string(WACHT_TESTDATA_DIR) + "/config/";
  auto cases = golden_cases();
  ASSERT_GE(cases.size(), 20u);
  for (const auto& path : cases) {
    SCOPED_TRACE(path.string());
    LoadResult r = load(path.string());
    EXPECT_EQ(r.config, nullptr);
    EXPECT_TRUE(r.diagnostics.has_errors());
    std::string got = replace_all(r.diagnostics.render(), dir, "");
    fs::path golden = path.filename() == "wacht.toml"
                          ? fs::path(path.parent_path().string() + ".err")
                          : fs::path(path).replace_extension(".err");
    if (std::getenv("WACHT_UPDATE_GOLDEN")) {
      write_file(golden, got);
      continue;
    }
    ASSERT_TRUE(fs::exists(golden)) << "missing golden file; run with WACHT_UPDATE_GOLDEN=1";
    EXPECT_EQ(got, test::read_text(golden));
  }
}

TEST(ConfigGolden, EveryErrorNamesFileLineColumn) {
  for (const auto& path : golden_cases()) {
    LoadResult r = load(path.string());
    for (const auto& d : r.diagnostics.all()) {
      EXPECT_TRUE(d.loc.valid()) << path << ": " << d.message;
    }
  }
}

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = test::make_temp_dir(); }
  void TearDown() override { fs::remove_all(dir_); }
  LoadResult load_text(const std::string& text) {
    write_file(dir_ + "/wacht.toml", text);
    return load(dir_ + "/wacht.toml");
  }
  std::string dir_;
};

const CheckConfig* find(const Config& c, const std::string& id) {
  for (const auto& check : c.checks)
    if (check.id == id) return &check;
  return nullptr;
}

TEST_F(ConfigTest, ShippedDefaultConfigIsValid) {
  LoadResult r = load(std::string(WACHT_SOURCE_DIR) + "/etc/wacht.toml");
  ASSERT_NE(r.config, nullptr) << r.diagnostics.render();
  EXPECT_GE(r.config->checks.size(), 3u);
  EXPECT_EQ(r.config->daemon.listen_host, "127.0.0.1");
}

TEST_F(ConfigTest, DefaultsTenantDefaultsTemplateAndCheckLayerInThatOrder) {
  auto r = load_text(R"(
[daemon]
listen = "[::1]:19915"
max_concurrent_probes = 7

[defaults]
interval = "1m"
timeout = "20s"
tenant = "lup"
labels = { region = "west", team = "net" }

[tenants.lup]
name = "Landkreis Ludwigslust-Parchim"
defaults = { interval = "2m", labels = { team = "lup-net" } }

[tenants.schwerin]

[templates.fast]
interval = "10s"
timeout = "3s"
type = "tcp"
labels = { tier = "1" }

[[check]]
id = "plain"
type = "tcp"
target = "127.0.0.1:22"

[[check]]
id = "templated"
template = "fast"
target = "127.0.0.1:22"
labels = { site = "parchim", tier = "0" }

[[check]]
id = "city"
tenant = "schwerin"
type = "tcp"
target = "127.0.0.1:22"
timeout = "5s"
)");
  ASSERT_NE(r.config, nullptr) << r.diagnostics.render();
  const Config& c = *r.config;
  EXPECT_EQ(c.daemon.listen_host, "::1");
  EXPECT_EQ(c.daemon.listen_port, 19915);
  EXPECT_EQ(c.daemon.max_concurrent_probes, 7u);
  ASSERT_EQ(c.tenants.size(), 2u);

  const auto* plain = find(c, "plain");
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->tenant, "lup");
  EXPECT_EQ(plain->interval, std::chrono::minutes(2));  // tenant default beats [defaults]
  EXPECT_EQ(plain->timeout, std::chrono::seconds(20));
  EXPECT_EQ(plain->labels, (runtime::StringPairs{{"region", "west"}, {"team", "lup-net"}}));

  const auto* templated = find(c, "templated");
  ASSERT_NE(templated, nullptr);
  EXPECT_EQ(std::string(templated->type->name), "tcp");  // from the template
  EXPECT_EQ(templated->interval, std::chrono::seconds(10));
  EXPECT_EQ(templated->timeout, std::chrono::seconds(3));
  EXPECT_EQ(templated->labels,
            (runtime::StringPairs{
                {"region", "west"}, {"site", "parchim"}, {"team", "lup-net"}, {"tier", "0"}}));

  const auto* city = find(c, "city");
  ASSERT_NE(city, nullptr);
  EXPECT_EQ(city->tenant, "schwerin");
  EXPECT_EQ(city->interval, std::chrono::minutes(1));  // no schwerin defaults
  EXPECT_EQ(city->timeout, std::chrono::seconds(5));
}

TEST_F(ConfigTest, IncludesAreReadInNameOrderRelativeToTheMainFile) {
  write_file(dir_ + "/conf.d/20-schwerin.toml", R"(
[tenants.schwerin]
[[check]]
id = "sn-dns"
tenant = "schwerin"
type = "tcp"
target = "127.0.0.1:53"
)");
  write_file(dir_ + "/conf.d/10-lup.toml", R"(
[tenants.lup]
[templates.lup-web]
tenant = "lup"
type = "tcp"
[[check]]
id = "lup-web"
template = "lup-web"
target = "127.0.0.1:443"
)");
  write_file(dir_ + "/conf.d/ignored.txt", "not toml");
  auto r = load_text("[daemon]\ninclude = [\"conf.d/*.toml\"]\n");
  ASSERT_NE(r.config, nullptr) << r.diagnostics.render();
  ASSERT_EQ(r.config->files.size(), 3u);
  EXPECT_NE(r.config->files[1].find("10-lup.toml"), std::string::npos);
  EXPECT_NE(r.config->files[2].find("20-schwerin.toml"), std::string::npos);
  EXPECT_EQ(r.config->checks.size(), 2u);
}

TEST_F(ConfigTest, FingerprintChangesOnlyForTheCheckThatChanged) {
  const std::string base = R"(
[defaults]
tenant = "lup"
[tenants.lup]
[[check]]
id = "a"
type = "tcp"
target = "127.0.0.1:22"
[[check]]
id = "b"
type = "tcp"
target = "127.0.0.1:80"
)";
  auto r1 = load_text(base);
  auto r2 = load_text(base);
  auto r3 = load_text(base + "labels = { site = \"x\" }\n");
  ASSERT_NE(r1.config, nullptr);
  ASSERT_NE(r3.config, nullptr) << r3.diagnostics.render();
  EXPECT_EQ(find(*r1.config, "a")->fingerprint, find(*r2.config, "a")->fingerprint);
  EXPECT_EQ(find(*r1.config, "b")->fingerprint, find(*r2.config, "b")->fingerprint);
  EXPECT_EQ(find(*r1.config, "a")->fingerprint, find(*r3.config, "a")->fingerprint);
  EXPECT_NE(find(*r1.config, "b")->fingerprint, find(*r3.config, "b")->fingerprint);
}

TEST_F(ConfigTest, RouteTreeFlattensInOrderAndChildrenInheritSettings) {
  auto r = load_text(R"(
[tenants.lup]
[receivers.team]
type = "log"
[receivers.oncall]
type = "log"
[escalations.lup]
[[escalations.lup.level]]
after = "15m"
receivers = ["team"]

[[route]]
tenants = ["lup"]
receivers = ["team"]
group_wait = "10s"
escalation = "lup"
storm_limit = 20

  [[route.routes]]
  severities = ["critical"]
  receivers = ["oncall"]
  continue = true

    [[route.routes.routes]]
    match = { site = "hagenow" }
    escalation = ""

  [[route.routes]]
  match = { site = "hagenow" }
  group_wait = "1m"

[[route]]
receivers = ["team"]
)");
  ASSERT_NE(r.config, nullptr) << r.diagnostics.render();
  const auto& routes = r.config->routes;
  ASSERT_EQ(routes.size(), 5u);
  EXPECT_EQ(routes[0].name, "route 1");
  EXPECT_EQ(routes[1].name, "route 1.1");
  EXPECT_EQ(routes[2].name, "route 1.1.1");
  EXPECT_EQ(routes[3].name, "route 1.2");
  EXPECT_EQ(routes[4].name, "route 2");
  EXPECT_EQ(routes[0].children, (std::vector<int>{1, 3}));
  EXPECT_EQ(routes[2].parent, 1);
  EXPECT_TRUE(routes[1].continue_matching);
  // Inherited: receivers, group_wait, escalation, storm_limit; matching criteria are not.
  EXPECT_EQ(routes[2].receivers, std::vector<std::string>{"oncall"});
  EXPECT_EQ(routes[2].group_wait, std::chrono::seconds(10));
  EXPECT_TRUE(routes[2].severities.empty());
  EXPECT_TRUE(routes[2].escalation.empty()) << "escalation = \"\" turns the inherited one off";
  EXPECT_EQ(routes[1].escalation.size(), 1u);
  EXPECT_EQ(routes[3].group_wait, std::chrono::minutes(1));
  EXPECT_EQ(routes[3].receivers, std::vector<std::string>{"team"});
  EXPECT_EQ(routes[3].storm_limit, 20);
}

TEST_F(ConfigTest, OnCallSectionsResolveRotationsPeriodsAndMaintenance) {
  auto r = load_text(R"(
[tenants.lup]
[smtp]
smarthost = "127.0.0.1:25"
from = "wacht@example.org"
tls = "none"
[receivers.oncall]
type = "email"
rotation = "lup"
[receivers.am]
type = "alertmanager"
urls = ["http://127.0.0.1:9093"]
[people.anna]
name = "Anna Schmidt"
email = "anna@lup.example.org"
[people.bernd]
email = "bernd@lup.example.org"
[rotations.lup]
timezone = "Europe/Berlin"
people = ["anna", "bernd"]
start = "2026-01-05T09:00"
[[rotations.lup.override]]
person = "anna"
from = "2026-12-24T09:00"
until = "2026-12-27T09:00"
comment = "swap"
[time_periods.business_hours]
timezone = "Europe/Berlin"
days = ["mon-fri"]
times = ["07:00-16:00"]
exclude_dates = ["2026-12-24"]
[[maintenance]]
name = "patchnight"
matchers = ['tenant="lup"']
windows = ["Sun 02:00-04:00"]
timezone = "Europe/Berlin"
[[maintenance]]
name = "switch"
matchers = ['site=~"rathaus|stadthaus"']
from = "2026-12-01T20:00"
until = "2026-12-01T23:00"
timezone = "Europe/Berlin"
[[route]]
receivers = ["oncall", "am"]
active_during = ["business_hours"]
)");
  ASSERT_NE(r.config, nullptr) << r.diagnostics.render();
  const auto& oc = r.config->oncall;
  EXPECT_EQ(oc.people.at("bernd").name, "bernd") << "the name defaults to the id";
  // 2026-12-14 (Mon) 09:00 CET is week 49 since 5 January: bernd (odd weeks).
  auto shift = oc.rotations.at("lup")->at(1'797'235'200);
  ASSERT_TRUE(shift);
  EXPECT_EQ(shift->person, "bernd");
  // 2026-12-25 12:00 CET: the override.
  EXPECT_EQ(oc.rotations.at("lup")->at(1'798'196'400)->person, "anna");
  // Route time condition: Tuesday 2026-12-01 10:00 CET is business hours, 17:00 is not.
  const auto& route = r.config->routes.at(0);
  ASSERT_TRUE(route.active);
  EXPECT_TRUE(route.active(alerts::TimePoint(std::chrono::seconds(1'796'115'600))));
  EXPECT_FALSE(route.active(alerts::TimePoint(std::chrono::seconds(1'796'140'800))));
  ASSERT_EQ(r.config->maintenance.size(), 2u);
  const auto& night = r.config->maintenance[0];
  ASSERT_TRUE(night.windows);
  EXPECT_TRUE(night.windows->active(1'795'917'600)) << "Sun 2026-11-29 03:00 CET";
  const auto& once = r.config->maintenance[1];
  EXPECT_EQ(once.from_ms, 1'796'151'600'000) << "20:00 CET is 19:00 UTC";
  EXPECT_EQ(once.until_ms - once.from_ms, 3 * 3600 * 1000);
  for (const auto& rc : r.config->receivers) {
    if (rc.name == "am")
      EXPECT_EQ(rc.urls, std::vector<std::string>{"http://127.0.0.1:9093"});
    else
      EXPECT_EQ(rc.rotation, "lup");
  }
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  auto r = load(dir_ + "/nope.toml");
  EXPECT_EQ(r.config, nullptr);
  EXPECT_NE(r.diagnostics.render().find("cannot read config file"), std::string::npos);
}

TEST_F(ConfigTest, EveryDocumentedSectionHasHelpForEveryKey) {
  for (const auto& s : sections()) {
    EXPECT_FALSE(s.keys.empty()) << s.name;
    for (const auto& k : s.keys) {
      EXPECT_FALSE(k.type.empty()) << s.name << "." << k.name;
      EXPECT_FALSE(k.help.empty()) << s.name << "." << k.name;
    }
  }
}

}  // namespace
}  // namespace wacht::config
