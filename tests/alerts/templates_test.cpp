#include "alerts/templates.hpp"

#include <gtest/gtest.h>

#include <cstdlib>

namespace wacht::alerts {
namespace {

using namespace std::chrono_literals;

class Templates : public ::testing::Test {
 protected:
  void SetUp() override {
    setenv("TZ", "Europe/Berlin", 1);
    tzset();
  }
  MessageView wan_down() {
    MessageView m;
    m.tenant = "lup";
    m.tenant_name = "Landkreis Ludwigslust-Parchim";
    m.now = TimePoint(std::chrono::seconds(1795000000)) + 5min;
    AlertView a;
    a.check = "wan-hagenow";
    a.target = "198.51.100.1";
    a.type = "icmp";
    a.state = "CRITICAL";
    a.summary = "100% packet loss";
    a.since = TimePoint(std::chrono::seconds(1795000000));
    a.affected = {"hagenow-dc", "hagenow-fs", "hagenow-print"};
    a.link = "https://grafana.example.org/d/wacht?var-check=wan-hagenow";
    m.firing.push_back(a);
    return m;
  }
};

TEST_F(Templates, EnglishFiringNamesTenantStateCheckTargetAndChildren) {
  Rendered r = render(wan_down(), builtin_templates("en"));
  EXPECT_EQ(r.subject, "[wacht] [LUP] FIRING CRITICAL: wan-hagenow (198.51.100.1)");
  EXPECT_EQ(r.body,
            "FIRING CRITICAL for Landkreis Ludwigslust-Parchim (lup): 1 check(s).\n\n"
            "CRITICAL: wan-hagenow\n"
            "  Target:   198.51.100.1\n"
            "  Since:    2026-11-18 12:06:40 CET (for 5m)\n"
            "  Output:   100% packet loss\n"
            "  Affected: 3 dependent check(s) unreachable: hagenow-dc, hagenow-fs, hagenow-print\n"
            "  Link:     https://grafana.example.org/d/wacht?var-check=wan-hagenow\n\n"
            "-- \nwacht monitoring\n");
}

TEST_F(Templates, GermanResolved) {
  MessageView m = wan_down();
  m.resolved = m.firing;
  m.resolved[0].affected.clear();
  m.firing.clear();
  Rendered r = render(m, builtin_templates("de"));
  EXPECT_EQ(r.subject, "[wacht] [LUP] ENTWARNUNG: wan-hagenow (198.51.100.1)");
  EXPECT_NE(r.body.find("ENTWARNUNG: wan-hagenow\n  Ziel:       198.51.100.1\n"), std::string::npos)
      << r.body;
  EXPECT_EQ(r.body.find("Betroffen"), std::string::npos) << "empty line not dropped";
}

TEST_F(Templates, SeveralAlertsAreSummarisedInTheSubject) {
  MessageView m = wan_down();
  for (const char* c : {"b", "c", "d"}) {
    AlertView a = m.firing[0];
    a.check = c;
    a.state = "WARNING";
    m.firing.push_back(a);
  }
  Rendered r = render(m, builtin_templates("de"));
  EXPECT_EQ(r.subject, "[wacht] [LUP] ALARM KRITISCH: 4 Prüfungen (wan-hagenow, b, c, …)");
}

TEST_F(Templates, CustomTemplatesKeepUnknownPlaceholdersVisible) {
  alerts::Templates t = builtin_templates("en");
  t.subject = "{TENANT} {status} {nonsense}";
  EXPECT_EQ(render(wan_down(), t).subject, "LUP FIRING CRITICAL {nonsense}");
}

}  // namespace
}  // namespace wacht::alerts
