#include "app.hpp"

#include <curl/curl.h>
#include <malloc.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include <signal.h>
#include <chrono>
#include <cstdlib>
#include <filesystem>

#include "alerts/grading.hpp"
#include "alerts/smtp_notifier.hpp"
#include "alerts/templates.hpp"
#include "log.hpp"
#include "state_file.hpp"
#include "version.hpp"

namespace wacht {

namespace {

// A difference between the wall clock and the monotonic clock that changes by
// more than this between two housekeeping ticks (1 s apart) is a step of the
// wall clock, not drift or slewing.
constexpr int64_t kClockJumpMs = 2000;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// Hanging targets hold a socket each until their timeout; the default soft
// limit of 1024 descriptors is too small for a few thousand checks.
void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
  }
}

void log_diagnostics(const runtime::Diagnostics& diag) {
  std::string text = diag.render();
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    spdlog::error("{}", text.substr(start, end - start));
    start = end + 1;
  }
}

}  // namespace

App::App(Options options) : options_(std::move(options)) {}

App::~App() = default;

int App::run() {
  auto loaded = config::load(options_.config_path);
  if (!loaded.config) {
    log_diagnostics(loaded.diagnostics);
    spdlog::error("{}: {} error(s), not starting", options_.config_path,
                  loaded.diagnostics.error_count());
    return kExitConfigInvalid;
  }
  if (!options_.log_level) log::set_level(loaded.config->daemon.log_level);

  std::error_code ec;
  std::filesystem::create_directories(loaded.config->daemon.state_dir, ec);
  if (ec) {
    spdlog::error("cannot create state_dir {}: {}", loaded.config->daemon.state_dir, ec.message());
    return kExitStartupFailed;
  }
  raise_fd_limit();
  // Each civetweb thread would otherwise keep its own malloc arena of freed
  // scrape buffers; two arenas bound RSS without contention on the loop.
  mallopt(M_ARENA_MAX, 2);
  // A fixed mmap threshold: glibc otherwise raises it to the largest block
  // freed so far, so after the first scrape its ~20 MB text buffers come from
  // the heap and their pages stay resident; mmapped, they go back at free().
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_ = &loop;
  bool started = start(loaded.config);
  // Loading the config built and freed a TOML document several times the size
  // of what stays: give those pages back.
  malloc_trim(0);
  if (started) {
    spdlog::info("wachtd {} started: {} checks, metrics on http://{}:{}/metrics", kVersion,
                 config_->checks.size(), config_->daemon.listen_host, http_->port());
    status_ = fmt::format("{} checks", config_->checks.size());
    sd_notifyf(0, "READY=1\nSTATUS=%s", status_.c_str());
    uv_run(&loop, UV_RUN_DEFAULT);
  } else {
    shutdown();
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  int rc = uv_loop_close(&loop);
  if (rc != 0) spdlog::error("handles left open at exit: {}", uv_strerror(rc));
  loop_ = nullptr;
  curl_global_cleanup();
  if (started) spdlog::info("stopped");
  return started ? kExitOk : kExitStartupFailed;
}

bool App::start(const std::shared_ptr<const config::Config>& cfg) {
  metrics_ = std::make_unique<exporters::Metrics>();
  curl_ = std::make_unique<runtime::CurlMulti>(loop_);
  router_ = std::make_unique<alerts::Router>();
  alerts::OutboxOptions outbox_options;
  outbox_options.dir = cfg->daemon.state_dir;
  outbox_options.initial_backoff = cfg->alerting.retry_backoff;
  outbox_options.max_backoff = cfg->alerting.retry_max_backoff;
  outbox_options.max_age = cfg->alerting.max_age;
  auto* metrics = metrics_.get();
  outbox_ = std::make_unique<alerts::Outbox>(
      loop_, outbox_options,
      alerts::OutboxObserver{[metrics](const std::string& receiver, const std::string& result) {
                               metrics->notification_attempt(receiver, result, unix_now());
                             },
                             // The outbox logs dead letters and journal errors itself.
                             nullptr,
                             [metrics](const std::string&) { metrics->journal_write_failed(); }});
  std::string error;
  if (!outbox_->open(&error)) {
    spdlog::error("cannot open the outbox in {}: {}", cfg->daemon.state_dir, error);
    return false;
  }
  if (outbox_->pending() > 0)
    spdlog::info("outbox: {} notification(s) pending from before the restart", outbox_->pending());
  flush_timer_ = std::make_unique<runtime::Timer>(loop_, [this] {
    // The snapshot before a flush must already hold the groups being flushed
    // (their threads, hence their messages' Message-IDs): if wachtd dies after
    // the outbox journal has a message but before the snapshot after the flush
    // says it went out, the restarted wachtd then produces the very same
    // message, which the outbox recognises, instead of announcing the alert
    // again in a new thread.
    if (state_dirty_) save_state();
    flush_groups();
  });
  silence_timer_ = std::make_unique<runtime::Timer>(loop_, [this] { silences_changed(); });
  guard_release_ = std::make_unique<runtime::Timer>(loop_, [this] {
    router_->wake(alerts::Clock::now());
    arm_flush();
  });
  silences_path_ = cfg->daemon.state_dir + "/silences.json";
  if (!silences_.load(silences_path_, &error)) {
    // Starting without them would page people about maintenance they announced.
    spdlog::error("cannot load silences: {}", error);
    return false;
  }
  ack_key_ = exporters::load_or_create_key(cfg->daemon.state_dir, &error);
  if (ack_key_.empty()) {
    spdlog::error("cannot create the acknowledgement key: {}", error);
    return false;
  }
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  hostname_ = host;
  exec_ = probes::make_exec_limiter(loop_, cfg->daemon.max_concurrent_plugins);
  probe_context_ = probes::ProbeContext{loop_, curl_.get(), nullptr, exec_.get()};
  if (!prepare_services(*cfg)) return false;
  scheduler_ = std::make_unique<Scheduler>(
      loop_,
      [this](const config::CheckConfig& c) {
        return c.type->create(probe_context_, probes::CheckTarget{c.id, c.target, c.timeout},
                              *c.spec);
      },
      Scheduler::Hooks{[this](const config::CheckConfig& c, const probes::ProbeResult& r,
                              const RunInfo& i) { on_result(c, r, i); },
                       [this](const config::CheckConfig& c) {
                         if (auto it = checks_.find(c.id); it != checks_.end())
                           it->second.series->skipped();
                       }});
  // Hands each result its CheckRuntime: no look-up by id per result.
  scheduler_->set_context([this](const config::CheckConfig& c) -> void* {
    auto it = checks_.find(c.id);
    return it == checks_.end() ? nullptr : &it->second;
  });

  exporters::HttpServer::Options http;
  http.host = cfg->daemon.listen_host;
  http.port = cfg->daemon.listen_port;
  http.loop = loop_;
  http.routes = api_routes();
  try {
    http_ = std::make_unique<exporters::HttpServer>(std::move(http));
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    return false;
  }

  for (int signum : {SIGHUP, SIGTERM, SIGINT}) {
    auto* s = new uv_signal_t;
    uv_signal_init(loop_, s);
    s->data = this;
    uv_signal_start(
        s,
        [](uv_signal_t* h, int sig) {
          auto* self = static_cast<App*>(h->data);
          if (sig == SIGHUP) {
            self->begin_reload();
          } else {
            spdlog::info("received {}, stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
            self->shutdown();
          }
        },
        signum);
    signals_.push_back(s);
  }
  housekeeping_ = std::make_unique<runtime::Timer>(loop_, [this] { housekeeping(); });
  housekeeping_->start(1000, 1000);
  // WatchdogSec: pinged from a loop timer, so a stuck loop misses the pings
  // and systemd restarts wachtd.
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    watchdog_ = std::make_unique<runtime::Timer>(loop_, [] { sd_notify(0, "WATCHDOG=1"); });
    uint64_t every = std::max<uint64_t>(watchdog_usec / 2000, 1);
    watchdog_->start(every, every);
  }

  apply(cfg);
  auto snapshot = load_snapshot(cfg->daemon.state_dir, &error);
  if (!snapshot) {
    spdlog::error("alert state: {}; starting without it (alerts may repeat)", error);
  } else {
    engine_.restore(snapshot->checks);
    router_->restore(snapshot->groups);
    for (const auto& [id, ack] : snapshot->acks) {
      // Only an acknowledgement of the problem that is still on holds.
      auto v = engine_.view(id);
      if (v && v->firing &&
          std::chrono::duration_cast<std::chrono::milliseconds>(v->since.time_since_epoch())
                  .count() == ack.since_ms)
        acks_[id] = ack;
    }
    arm_flush();
  }
  metrics_->config_loaded(true, unix_now());
  ready_ = true;
  return true;
}

void App::apply(std::shared_ptr<const config::Config> cfg) {
  scheduler_->set_max_concurrent(cfg->daemon.max_concurrent_probes);
  // Tokens are read again on every reload, so adding or revoking one needs no restart.
  std::shared_ptr<const exporters::Tokens> tokens;
  if (!cfg->api.tokens_file.empty()) {
    std::string error;
    if (auto file = exporters::load_tokens(cfg->api.tokens_file, &error)) {
      if (file->readable_by_others)
        spdlog::warn("API tokens file {} is readable by other users; chmod o-r it",
                     cfg->api.tokens_file);
      tokens = std::make_shared<const exporters::Tokens>(std::move(file->tokens));
    } else {
      spdlog::error("{}; the write API refuses every request", error);
    }
  }
  http_->set_auth(tokens, cfg->api.read);
  // Series follow the scheduler's diff: a changed or removed check loses its
  // series, an unchanged one keeps them.
  std::map<std::string_view, const config::CheckConfig*> wanted;
  for (const auto& c : cfg->checks) wanted[c.id] = &c;
  std::erase_if(checks_, [&](const auto& entry) {
    auto w = wanted.find(entry.first);
    return w == wanted.end() || w->second->fingerprint != entry.second.fingerprint;
  });
  std::map<std::pair<std::string, std::string>, size_t> counts;
  for (const auto& c : cfg->checks) {
    ++counts[{c.tenant, std::string(c.type->name)}];
    if (checks_.contains(c.id)) continue;
    exporters::Labels labels{{"check", c.id},
                             {"target", c.target},
                             {"type", std::string(c.type->name)},
                             {"tenant", c.tenant}};
    for (const auto& [k, v] : c.labels) labels[k] = v;
    checks_[c.id] = CheckRuntime{metrics_->add_check(std::move(labels)), c.fingerprint, {}};
  }
  metrics_->set_checks(counts);
  configure_alerting(*cfg);
  // The scheduler views the checks in `cfg` rather than copying them.
  auto stats = scheduler_->apply(cfg->checks, cfg);
  config_ = std::move(cfg);
  spdlog::debug("config applied: {} added, {} changed, {} removed, {} unchanged", stats.added,
                stats.changed, stats.removed, stats.unchanged);
  log::set_level(options_.log_level.value_or(config_->daemon.log_level));
}

bool App::prepare_services(const config::Config& cfg) {
  bool icmp = std::any_of(cfg.checks.begin(), cfg.checks.end(),
                          [](const config::CheckConfig& c) { return c.type->name == "icmp"; });
  if (icmp && !icmp_) {
    std::string error;
    icmp_ = probes::make_icmp_service(loop_, &error);
    if (!icmp_) {
      spdlog::error("ICMP checks are configured but {}", error);
      return false;
    }
    probe_context_.icmp = icmp_.get();
  }
  return true;
}

void App::begin_reload() {
  if (stopping_) return;
  if (reloading_) {
    // A SIGHUP during a reload may carry a newer file: load once more afterwards.
    reload_again_ = true;
    return;
  }
  reloading_ = true;
  sd_notify(0, "RELOADING=1");
  spdlog::info("reloading {}", options_.config_path);
  struct Work {
    uv_work_t req;
    App* app;
    std::string path;
    config::LoadResult result;
  };
  auto* w = new Work{{}, this, options_.config_path, {}};
  w->req.data = w;
  // Parsing thousands of checks takes long enough to delay probes: do it off the loop.
  uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        auto* w = static_cast<Work*>(req->data);
        w->result = config::load(w->path);
      },
      [](uv_work_t* req, int status) {
        std::unique_ptr<Work> w(static_cast<Work*>(req->data));
        if (status == UV_ECANCELED) return;
        w->app->finish_reload(std::move(w->result));
      });
}

void App::finish_reload(config::LoadResult result) {
  reloading_ = false;
  if (stopping_) return;
  if (!result.config) {
    log_diagnostics(result.diagnostics);
    spdlog::error("reload failed: {} error(s); keeping the running configuration",
                  result.diagnostics.error_count());
    metrics_->config_loaded(false, unix_now());
  } else {
    const auto& d = result.config->daemon;
    if (d.listen_host != config_->daemon.listen_host ||
        d.listen_port != config_->daemon.listen_port)
      spdlog::warn("'listen' changed; the new address takes effect after a restart");
    size_t before = config_->checks.size();
    if (!prepare_services(*result.config)) {
      spdlog::error("reload failed; keeping the running configuration");
      metrics_->config_loaded(false, unix_now());
      sd_notifyf(0, "READY=1\nSTATUS=%s", status_.c_str());
      return;
    }
    apply(std::move(result.config));
    malloc_trim(0);  // the replaced config and the reload's TOML document
    metrics_->config_loaded(true, unix_now());
    spdlog::info("reloaded: {} checks (was {})", config_->checks.size(), before);
  }
  sd_notifyf(0, "READY=1\nSTATUS=%s", status_.c_str());
  if (reload_again_) {
    reload_again_ = false;
    begin_reload();
  }
}

void App::on_result(const config::CheckConfig& c, const probes::ProbeResult& r,
                    const RunInfo& info) {
  metrics_->observe_lag(info.started_ns > info.due_ns
                            ? static_cast<double>(info.started_ns - info.due_ns) / 1e9
                            : 0.0);
  // apply() gives every check its CheckRuntime before the scheduler adds it
  // (set_context), and std::map keeps the pointer valid while the check lives.
  auto* rt = static_cast<CheckRuntime*>(info.context);
  rt->series->update(r);
  alerts::Grade g = alerts::grade(r, c.thresholds, unix_now());
  auto fx = engine_.observe(c.id, g.state, g.summary, alerts::Clock::now());
  if (auto v = engine_.view(c.id)) {
    rt->series->set_state(
        v->unreachable && v->state != probes::State::kOk ? 4 : static_cast<int>(v->state));
    // Confirm a suspected problem (or recovery) at the retry interval.
    if (v->next_interval < c.interval) scheduler_->run_after(c.id, v->next_interval);
  }
  handle_events(fx);
  update_guard(c.id, r.success);
  auto& last = rt->last_success;
  // One line per change; a check that starts out up is not news.
  if ((!last && !r.success) || (last && *last != r.success)) {
    if (r.success) {
      spdlog::info("check {} ({}) is up: {}", c.id, c.target, r.summary);
    } else {
      spdlog::warn("check {} ({}) is down: {}", c.id, c.target, r.summary);
    }
  }
  last = r.success;
}

void App::housekeeping() {
  // Schedules run on the monotonic clock and do not notice a stepped wall
  // clock; silences, maintenance windows and the router's group timers work
  // in wall-clock time and must.
  const int64_t offset = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count() -
                         std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::steady_clock::now().time_since_epoch())
                             .count();
  if (wall_offset_ms_ && std::abs(offset - *wall_offset_ms_) > kClockJumpMs)
    wall_clock_jumped(offset - *wall_offset_ms_);
  wall_offset_ms_ = offset;
  metrics_->set_in_flight(scheduler_->in_flight(), scheduler_->queued());
  metrics_->set_outbox(outbox_->pending(), outbox_->oldest_age_seconds());
  if (state_dirty_) save_state();
  // Counting alert states walks every check: every 5 s is fresh enough for a
  // gauge and keeps the loop free of a 10,000-check scan each second.
  if (++housekeeping_ticks_ % 5 != 0) return;
  size_t pending = 0, firing = 0, unreachable = 0, flapping = 0, silenced = 0, acked = 0;
  for (const auto& id : engine_.ids()) {
    auto v = engine_.view(id);
    if (v->flapping) ++flapping;
    if (v->firing) {
      ++firing;
      auto m = mute(id);
      if (m.silenced) ++silenced;
      if (m.acked) ++acked;
    } else if (v->hard_state != probes::State::kOk && v->unreachable)
      ++unreachable;
    else if (v->state != probes::State::kOk && v->type == alerts::StateType::kSoft)
      ++pending;
  }
  metrics_->set_alerts(pending, firing, unreachable, flapping);
  metrics_->set_acked_silenced(acked, silenced);
  std::string status =
      fmt::format("{} checks, {} firing ({} acknowledged, {} silenced){}", checks_.size(), firing,
                  acked, silenced, blind_ ? ", BLIND" : "");
  if (status != status_) {
    status_ = status;
    sd_notifyf(0, "STATUS=%s", status_.c_str());
  }
}

void App::wall_clock_jumped(int64_t delta_ms) {
  spdlog::warn(
      "the wall clock jumped {} by {:.1f} s; re-evaluating silences and maintenance windows",
      delta_ms > 0 ? "forward" : "back", std::abs(static_cast<double>(delta_ms)) / 1000);
  // group_wait, group_interval, repeat_interval and escalation delays are
  // durations: a group due in 30 s is still due in 30 s, not in 30 s plus
  // the hour the clock went back (nor all at once after it went forward).
  auto groups = router_->save();
  for (auto& g : groups) {
    if (g.last_flush_ms >= 0) g.last_flush_ms += delta_ms;
    g.next_flush_ms += delta_ms;
    if (g.escalation_start_ms >= 0) g.escalation_start_ms += delta_ms;
  }
  auto router = std::make_unique<alerts::Router>(router_->routes());
  router->restore(groups);
  router_ = std::move(router);
  state_dirty_ = true;
  // Re-arms the silence timer for the new time and releases alerts whose
  // silence or maintenance window is over now; arms the flush timer.
  silences_changed();
}

void App::save_state() {
  // The snapshot records which messages went out; those messages must be in
  // the outbox journal first, or a crash right after the snapshot would lose
  // them. While the journal cannot be written the snapshot waits too (a crash
  // then repeats an alert rather than losing it).
  if (outbox_ && !outbox_->sync()) {
    state_dirty_ = true;
    return;
  }
  Snapshot s{engine_.save(), router_->save(), acks_};
  std::string error;
  if (save_snapshot(config_->daemon.state_dir, s, &error)) {
    state_dirty_ = false;
  } else {
    // Housekeeping retries while the flag is set.
    state_dirty_ = true;
    metrics_->state_write_failed();
    spdlog::error("cannot save alert state: {}; retrying", error);
  }
}

void App::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  ready_ = false;
  sd_notify(0, "STOPPING=1");
  // Cancel probes and sends before their I/O services go away; keep the state.
  if (scheduler_) scheduler_->stop();
  scheduler_.reset();
  housekeeping_.reset();
  watchdog_.reset();
  flush_timer_.reset();
  silence_timer_.reset();
  guard_release_.reset();
  for (auto& [name, p] : pushers_) p->stop();
  pushers_.clear();
  if (config_ && router_) save_state();
  if (outbox_) outbox_->stop();
  outbox_.reset();
  curl_.reset();
  icmp_.reset();
  exec_.reset();
  http_.reset();
  for (auto* s : signals_) {
    uv_close(reinterpret_cast<uv_handle_t*>(s),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
  }
  signals_.clear();
  checks_.clear();
}

}  // namespace wacht
