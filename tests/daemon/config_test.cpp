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
