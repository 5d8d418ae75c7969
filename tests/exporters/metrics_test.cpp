#include "exporters/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "exporters/http_server.hpp"
#include "support/process.hpp"

namespace wacht::exporters {
namespace {

const probes::MetricDef kStatus{"probe_http_status_code", "Response HTTP status code"};
const probes::MetricDef kPhase{"probe_http_duration_seconds",
                               "Duration of http request by phase, summed over all redirects",
                               "phase"};

Labels labels(const std::string& id) {
  return {{"check", id},
          {"target", "http://127.0.0.1/"},
          {"type", "http"},
          {"tenant", "lup"},
          {"site", "parchim"}};
}

bool contains(const std::string& text, const std::string& what) {
  return text.find(what) != std::string::npos;
}

// Runs `promtool check metrics` on the text; returns its exit status and output.
std::pair<int, std::string> promtool(const std::string& text) {
  std::string dir = test::make_temp_dir();
  std::ofstream(dir + "/m.txt") << text;
  std::string cmd = "promtool check metrics < " + dir + "/m.txt 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  int status = pclose(p);
  std::remove((dir + "/m.txt").c_str());
  std::remove(dir.c_str());
  return {status, out};
}

TEST(Metrics, CheckSeriesUseBlackboxNamesAndCheckLabels) {
  Metrics m;
  auto s = m.add_check(labels("portal"));
  probes::ProbeResult r;
  r.success = true;
  r.duration_seconds = 0.25;
  r.add(kStatus, 200);
  r.add(kPhase, 0.01, "connect");
  r.add(kPhase, 0.02, "processing");
  s->update(r);
  std::string text = m.serialize();
  const std::string l =
      "check=\"portal\",site=\"parchim\",target=\"http://127.0.0.1/\",tenant=\"lup\",type=\"http\"";
  EXPECT_TRUE(contains(text, "probe_success{" + l + "} 1\n")) << text;
  EXPECT_TRUE(contains(text, "probe_duration_seconds{" + l + "} 0.25\n")) << text;
  EXPECT_TRUE(contains(text, "probe_http_status_code{" + l + "} 200\n")) << text;
  EXPECT_TRUE(
      contains(text,
               "probe_http_duration_seconds{check=\"portal\",phase=\"connect\",site=\"parchim\","
               "target=\"http://127.0.0.1/\",tenant=\"lup\",type=\"http\"} 0.01\n"))
      << text;
  EXPECT_TRUE(
      contains(text, "wacht_probes_total{result=\"success\",tenant=\"lup\",type=\"http\"} 1\n"))
      << text;
}

TEST(Metrics, SeriesTheLatestResultLacksDisappear) {
  Metrics m;
  auto s = m.add_check(labels("portal"));
  probes::ProbeResult ok;
  ok.success = true;
  ok.add(kStatus, 200);
  s->update(ok);
  probes::ProbeResult timeout;
  timeout.timed_out = true;
  s->update(timeout);
  std::string text = m.serialize();
  EXPECT_FALSE(contains(text, "probe_http_status_code{")) << text;
  EXPECT_TRUE(contains(text, "probe_success{check=\"portal\"")) << text;
  EXPECT_TRUE(
      contains(text, "wacht_probes_total{result=\"timeout\",tenant=\"lup\",type=\"http\"} 1"));
}

TEST(Metrics, RemovedCheckLosesItsSeries) {
  Metrics m;
  auto a = m.add_check(labels("a"));
  auto b = m.add_check(labels("b"));
  probes::ProbeResult r;
  r.success = true;
  r.add(kStatus, 200);
  a->update(r);
  b->update(r);
  a.reset();
  std::string text = m.serialize();
  EXPECT_FALSE(contains(text, "check=\"a\"")) << text;
  EXPECT_TRUE(contains(text, "probe_success{check=\"b\"")) << text;
}

TEST(Metrics, HistogramSamplesAccumulateAcrossRuns) {
  static constexpr double kBounds[] = {0.001, 0.01, 0.1};
  static const probes::MetricDef kRtt{"wacht_icmp_round_trip_seconds", "Round trips.", {}, kBounds};
  Metrics m;
  auto s = m.add_check(labels("wan"));
  for (double v : {0.0005, 0.005}) {
    probes::ProbeResult r;
    r.success = true;
    r.add(kRtt, v);
    s->update(r);
  }
  std::string text = m.serialize();
  EXPECT_TRUE(contains(text, "wacht_icmp_round_trip_seconds_count{check=\"wan\"")) << text;
  EXPECT_TRUE(contains(text, "le=\"0.001\"} 1\n")) << text;
  EXPECT_TRUE(contains(text, "le=\"0.01\"} 2\n")) << text;
  EXPECT_TRUE(contains(text, "le=\"+Inf\"} 2\n")) << text;
  s.reset();
  EXPECT_FALSE(contains(m.serialize(), "wacht_icmp_round_trip_seconds_count{"))
      << "kept after removal";
}

TEST(Metrics, ExpositionPassesPromtool) {
  Metrics m;
  auto s = m.add_check(labels("portal"));
  probes::ProbeResult r;
  r.success = true;
  r.add(kStatus, 200);
  r.add(kPhase, 0.01, "connect");
  s->update(r);
  s->skipped();
  m.observe_lag(0.002);
  m.set_in_flight(3, 1);
  m.set_checks({{{"lup", "http"}, 1}});
  m.config_loaded(true, 1.7e9);
  std::string text = m.serialize();
  for (const char* name :
       {"wacht_build_info", "wacht_scheduler_lag_seconds_bucket",
        "wacht_scheduler_skipped_runs_total", "wacht_config_reloads_total",
        "wacht_config_last_reload_successful", "wacht_checks{", "process_cpu_seconds_total",
        "process_resident_memory_bytes", "process_open_fds"}) {
    EXPECT_TRUE(contains(text, name)) << name;
  }
  auto [status, out] = promtool(text);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out, "") << out;
}

TEST(HttpServer, ServesRoutesAnd404sTheRest) {
  HttpServer server("127.0.0.1", 0,
                    {{"/hello",
                      [] {
                        return HttpServer::Response{200, "text/plain", "hi\n"};
                      }},
                     {"/unready", [] {
                        return HttpServer::Response{503, "text/plain", "no\n"};
                      }}});
  ASSERT_GT(server.port(), 0);
  auto ok = test::http_get(server.port(), "/hello");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body, "hi\n");
  EXPECT_EQ(test::http_get(server.port(), "/unready").status, 503);
  EXPECT_EQ(test::http_get(server.port(), "/nope").status, 404);
}

TEST(HttpServer, ABusyPortIsAClearError) {
  HttpServer first("127.0.0.1", 0, {});
  try {
    HttpServer second("127.0.0.1", first.port(), {});
    FAIL() << "bound a port that is in use";
  } catch (const std::runtime_error& e) {
    EXPECT_TRUE(contains(e.what(), "cannot listen on 127.0.0.1:" + std::to_string(first.port())))
        << e.what();
  }
}

}  // namespace
}  // namespace wacht::exporters
