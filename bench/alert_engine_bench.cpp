// Alert-engine cost per probe result at 10,000 checks: grading, the soft/hard
// state machine, flapping, topology and routing, as wachtd runs them for
// every result. Prints figures; asserts nothing.
//
//   build/release/bench/alert_engine_bench [checks] [results]
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "alerts/alert_engine.hpp"
#include "alerts/grading.hpp"
#include "alerts/router.hpp"

using namespace wacht;
using namespace std::chrono_literals;

// argv[i] as a positive count, `fallback` if absent. atoi made "abc" 0 checks,
// and pick(0, -1) below undefined.
int count_arg(int argc, char** argv, int i, int fallback) {
  if (argc <= i) return fallback;
  int v = 0;
  auto [end, ec] = std::from_chars(argv[i], argv[i] + std::strlen(argv[i]), v);
  if (ec != std::errc() || *end != '\0' || v < 1) {
    std::fprintf(stderr, "usage: alert_engine_bench [checks] [results] (positive numbers)\n");
    std::exit(2);
  }
  return v;
}

int main(int argc, char** argv) {
  const int checks = count_arg(argc, argv, 1, 10000);
  const int results = count_arg(argc, argv, 2, 2000000);
  // 100 WAN links, each with the rest of the checks spread behind them.
  const int links = std::max(1, checks / 100);
  std::vector<alerts::EngineCheck> cfg;
  for (int i = 0; i < checks; ++i) {
    alerts::EngineCheck c;
    c.id = "check-" + std::to_string(i);
    c.tenant = i % 2 ? "lup" : "schwerin";
    c.target = "http://198.51.100." + std::to_string(i % 250) + "/";
    c.type = "http";
    c.labels = {{"site", "site-" + std::to_string(i % links)}};
    if (i >= links) c.depends_on = {"check-" + std::to_string(i % links)};
    cfg.push_back(std::move(c));
  }
  alerts::AlertEngine engine;
  engine.configure(cfg);
  alerts::RouteConfig route;
  route.receivers = {"x"};
  alerts::Router router({route});
  alerts::Thresholds thresholds;
  thresholds.latency_warning = 500ms;

  std::mt19937 rng(42);
  std::uniform_int_distribution<int> pick(0, checks - 1);
  std::uniform_real_distribution<double> coin(0, 1);
  probes::ProbeResult ok;
  ok.success = true;
  ok.state = probes::State::kOk;
  ok.summary = "HTTP 200 OK in 1 ms";
  ok.duration_seconds = 0.001;
  probes::ProbeResult bad = ok;
  bad.success = false;
  bad.state = probes::State::kCritical;
  bad.summary = "connection refused";

  auto t = alerts::Clock::now();
  size_t events = 0, run_now = 0;
  auto start = std::chrono::steady_clock::now();
  for (int n = 0; n < results; ++n) {
    int i = pick(rng);
    // 2% of results fail; links fail in bursts so topology paths run too.
    const probes::ProbeResult& r = coin(rng) < 0.02 ? bad : ok;
    t += 1ms;
    alerts::Grade g = alerts::grade(r, thresholds, 1.8e9);
    auto fx = engine.observe(cfg[static_cast<size_t>(i)].id, g.state, g.summary, t);
    run_now += fx.run_now.size();
    for (const auto& e : fx.events) {
      ++events;
      if (e.kind == alerts::AlertEvent::Kind::kFiring)
        router.firing(e.id, {{"tenant", "lup"}, {"check", e.id}, {"severity", "critical"}}, t);
      else if (e.kind == alerts::AlertEvent::Kind::kResolved)
        router.resolved(e.id, t);
    }
    if (n % 1000 == 0) router.due(t);
  }
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("checks=%d results=%d events=%zu re-checks=%zu\n", checks, results, events, run_now);
  std::printf("alert engine: %.2f us per result (%.0f results/s on one core)\n",
              seconds / results * 1e6, results / seconds);
  std::printf("at 10,000 checks every 10 s (1,000 results/s): %.2f%% of one core\n",
              seconds / results * 1000 * 100);
  return 0;
}
