#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "alerts/alert_engine.hpp"
#include "alerts/outbox.hpp"
#include "alerts/router.hpp"
#include "config.hpp"
#include "exporters/http_server.hpp"
#include "exporters/metrics.hpp"
#include "probes/exec_probe.hpp"
#include "probes/icmp_probe.hpp"
#include "runtime/curl_multi.hpp"
#include "runtime/timer.hpp"
#include "scheduler.hpp"

typedef struct uv_signal_s uv_signal_t;

namespace wacht {

// Exit codes of wachtd, as documented in wachtd(8).
enum ExitCode : int {
  kExitOk = 0,
  kExitConfigInvalid = 1,
  kExitUsage = 2,
  kExitStartupFailed = 3,
};

// Owns the loop and everything on it: config, scheduler, probes, metrics and
// the HTTP server. Started with a valid config; SIGHUP reloads it (parsed on the
// thread pool, applied on the loop), SIGTERM/SIGINT stop it.
class App {
 public:
  struct Options {
    std::string config_path;
    std::optional<std::string> log_level;  // overrides the config's
  };

  explicit App(Options options);
  ~App();

  // Runs until stopped; returns the process exit code.
  int run();

 private:
  struct CheckRuntime {
    std::unique_ptr<exporters::Metrics::CheckSeries> series;
    std::string fingerprint;  // of the config the series belong to
    std::optional<bool> last_success;
  };

  bool start(std::shared_ptr<const config::Config> cfg);
  void apply(std::shared_ptr<const config::Config> cfg);
  // Opens shared probe services the config needs (ICMP sockets); false with
  // the reason logged if it cannot.
  bool prepare_services(const config::Config& cfg);
  void begin_reload();
  void finish_reload(config::LoadResult result);
  void shutdown();
  void on_result(const config::CheckConfig& c, const probes::ProbeResult& r, const RunInfo& info);
  void housekeeping();
  // Alerting: events from the engine into the router, router flushes into the outbox.
  void configure_alerting(const config::Config& cfg);
  void handle_events(const alerts::AlertEngine::Effects& fx);
  alerts::Labels alert_labels(const std::string& id);
  void flush_groups();
  void arm_flush();
  void notify_flapping(const std::string& id, bool started);
  const config::ReceiverConfig* find_receiver(const std::string& name) const;
  alerts::AlertView alert_view(const std::string& id, bool resolved);
  void enqueue(const std::string& receiver, const std::string& thread, uint64_t number,
               const std::string& kind, std::vector<std::string> ids, alerts::Rendered text);
  void save_state();

  Options options_;
  uv_loop_t* loop_ = nullptr;
  std::shared_ptr<const config::Config> config_;
  std::unique_ptr<exporters::Metrics> metrics_;
  std::unique_ptr<runtime::CurlMulti> curl_;
  probes::IcmpServicePtr icmp_{nullptr, nullptr};
  probes::ExecLimiterPtr exec_{nullptr, nullptr};
  probes::ProbeContext probe_context_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<exporters::HttpServer> http_;
  std::unique_ptr<runtime::Timer> housekeeping_;
  alerts::AlertEngine engine_;
  std::unique_ptr<alerts::Router> router_;
  std::unique_ptr<alerts::Outbox> outbox_;
  std::unique_ptr<runtime::Timer> flush_timer_;
  std::string hostname_;
  std::vector<config::ReceiverConfig> receivers_;
  bool state_dirty_ = false;
  uint64_t flap_notices_ = 0;
  uint64_t housekeeping_ticks_ = 0;
  std::map<std::string, CheckRuntime, std::less<>> checks_;
  std::vector<uv_signal_t*> signals_;
  std::atomic<bool> ready_{false};
  bool reloading_ = false;
  bool reload_again_ = false;
  bool stopping_ = false;
};

}  // namespace wacht
