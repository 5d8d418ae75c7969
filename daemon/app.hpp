#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "alerts/alert_engine.hpp"
#include "alerts/alertmanager.hpp"
#include "alerts/outbox.hpp"
#include "alerts/router.hpp"
#include "alerts/silences.hpp"
#include "config.hpp"
#include "exporters/http_server.hpp"
#include "exporters/metrics.hpp"
#include "probes/exec_probe.hpp"
#include "probes/icmp_probe.hpp"
#include "runtime/curl_multi.hpp"
#include "runtime/timer.hpp"
#include "scheduler.hpp"
#include "state_file.hpp"

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

  bool start(const std::shared_ptr<const config::Config>& cfg);
  void apply(std::shared_ptr<const config::Config> cfg);
  // Opens shared probe services the config needs (ICMP sockets); false with
  // the reason logged if it cannot.
  bool prepare_services(const config::Config& cfg);
  void begin_reload();
  void finish_reload(config::LoadResult result);
  void shutdown();
  void on_result(const config::CheckConfig& c, const probes::ProbeResult& r, const RunInfo& info);
  void housekeeping();
  // After the wall clock jumped by `delta_ms`: the router's pending times keep
  // their distance from now, silences and maintenance windows are evaluated
  // at the new time.
  void wall_clock_jumped(int64_t delta_ms);
  // Alerting: events from the engine into the router, router flushes into the outbox.
  void configure_alerting(const config::Config& cfg);
  void handle_events(const alerts::AlertEngine::Effects& fx);
  alerts::Labels alert_labels(const std::string& id);
  void flush_groups();
  void arm_flush();
  void notify_flapping(const std::string& id, bool started);
  const config::ReceiverConfig* find_receiver(const std::string& name) const;
  alerts::AlertView alert_view(const std::string& id, bool resolved);
  void enqueue(const config::ReceiverConfig& receiver, const std::string& thread, uint64_t number,
               const std::string& kind, std::vector<std::string> ids, alerts::Rendered text);
  void deliver(const alerts::Router::Flush& f);
  void save_state();
  // On-call layer (app_alerting.cpp).
  alerts::Router::Mute mute(const std::string& id);
  bool in_maintenance(const alerts::Labels& labels, int64_t now_s) const;
  void configure_silences(const config::Config& cfg);
  void silences_changed();
  void arm_silence_timer();
  void update_guard(const std::string& id, bool success);
  void set_blind(bool blind, const std::string& reason);
  std::string ack_link(const std::string& id);
  // Why acknowledging failed: the check is unknown (404) or has no firing alert (409).
  enum class AckError { kNone, kUnknownCheck, kNotFiring, kStale };
  AckError acknowledge(const std::string& id, const std::string& by, const std::string& comment,
                       const std::string& channel, std::optional<int64_t> since_ms = {});
  // HTTP API (api.cpp).
  std::vector<exporters::HttpServer::Route> api_routes();

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
  std::unique_ptr<runtime::Timer> watchdog_;
  std::string status_;  // last STATUS= sent to systemd
  alerts::AlertEngine engine_;
  std::unique_ptr<alerts::Router> router_;
  std::unique_ptr<alerts::Outbox> outbox_;
  std::unique_ptr<runtime::Timer> flush_timer_;
  uint64_t last_flush_ms_ = 0;  // uv_now of the last flush_groups()
  std::string hostname_;
  alerts::SilenceStore silences_;
  std::string silences_path_;
  uint64_t silences_version_ = 0;
  std::unique_ptr<runtime::Timer> silence_timer_;
  std::map<std::string, Ack> acks_;  // by check id
  std::string ack_key_;
  std::map<std::string, std::unique_ptr<alerts::AlertmanagerPusher>> pushers_;  // by receiver
  // The connectivity guard: checks whose latest result failed.
  std::set<std::string> failing_;
  bool blind_ = false;
  std::unique_ptr<runtime::Timer> guard_release_;  // releases held alerts after blindness
  uint64_t blind_episodes_ = 0;
  std::string blind_thread_;  // of the current episode: the all-clear replies to its message
  std::vector<config::ReceiverConfig> receivers_;
  bool state_dirty_ = false;
  uint64_t flap_notices_ = 0;
  uint64_t housekeeping_ticks_ = 0;
  // Wall clock minus monotonic clock at the last housekeeping tick, to notice
  // when the wall clock is stepped (NTP, an operator, a VM resume).
  std::optional<int64_t> wall_offset_ms_;
  std::map<std::string, CheckRuntime, std::less<>> checks_;
  std::vector<uv_signal_t*> signals_;
  std::atomic<bool> ready_{false};
  bool reloading_ = false;
  bool reload_again_ = false;
  bool stopping_ = false;
};

}  // namespace wacht
