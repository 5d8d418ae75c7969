#include "app.hpp"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <uv.h>

#include <signal.h>
#include <chrono>
#include <filesystem>

#include "log.hpp"
#include "version.hpp"

namespace wacht {

namespace {

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
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);

  uv_loop_t loop;
  uv_loop_init(&loop);
  loop_ = &loop;
  bool started = start(loaded.config);
  if (started) {
    spdlog::info("wachtd {} started: {} checks, metrics on http://{}:{}/metrics", kVersion,
                 config_->checks.size(), config_->daemon.listen_host, http_->port());
    sd_notifyf(0, "READY=1\nSTATUS=%zu checks", config_->checks.size());
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

bool App::start(std::shared_ptr<const config::Config> cfg) {
  metrics_ = std::make_unique<exporters::Metrics>();
  curl_ = std::make_unique<runtime::CurlMulti>(loop_);
  probes::ProbeContext ctx{loop_, curl_.get()};
  scheduler_ = std::make_unique<Scheduler>(
      loop_,
      [ctx](const config::CheckConfig& c) {
        return c.type->create(ctx, probes::CheckTarget{c.id, c.target, c.timeout}, *c.spec);
      },
      Scheduler::Hooks{[this](const config::CheckConfig& c, const probes::ProbeResult& r,
                              const RunInfo& i) { on_result(c, r, i); },
                       [this](const config::CheckConfig& c) {
                         if (auto it = checks_.find(c.id); it != checks_.end())
                           it->second.series->skipped();
                       }});

  auto* metrics = metrics_.get();
  std::map<std::string, exporters::HttpServer::Handler> routes = {
      {"/metrics",
       [metrics] {
         return exporters::HttpServer::Response{200, "text/plain; version=0.0.4; charset=utf-8",
                                                metrics->serialize()};
       }},
      {"/-/healthy",
       [] {
         return exporters::HttpServer::Response{200, "text/plain", "OK\n"};
       }},
      {"/-/ready",
       [this] {
         bool ready = ready_.load();
         return exporters::HttpServer::Response{ready ? 200 : 503, "text/plain",
                                                ready ? "OK\n" : "starting\n"};
       }},
      {"/",
       [] {
         return exporters::HttpServer::Response{
             200, "text/html; charset=utf-8",
             "<html><head><title>wachtd</title></head><body><h1>wachtd</h1>"
             "<p><a href=\"/metrics\">Metrics</a></p></body></html>\n"};
       }},
  };
  try {
    http_ = std::make_unique<exporters::HttpServer>(cfg->daemon.listen_host,
                                                    cfg->daemon.listen_port, std::move(routes));
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

  apply(std::move(cfg));
  metrics_->config_loaded(true, unix_now());
  ready_ = true;
  return true;
}

void App::apply(std::shared_ptr<const config::Config> cfg) {
  scheduler_->set_max_concurrent(cfg->daemon.max_concurrent_probes);
  // Series follow the scheduler's diff: a changed or removed check loses its
  // series, an unchanged one keeps them.
  std::map<std::string_view, const config::CheckConfig*> wanted;
  for (const auto& c : cfg->checks) wanted[c.id] = &c;
  for (auto it = checks_.begin(); it != checks_.end();) {
    auto w = wanted.find(it->first);
    bool keep = w != wanted.end() && config_ && [&] {
      for (const auto& old : config_->checks)
        if (old.id == it->first) return old.fingerprint == w->second->fingerprint;
      return false;
    }();
    it = keep ? std::next(it) : checks_.erase(it);
  }
  std::map<std::pair<std::string, std::string>, size_t> counts;
  for (const auto& c : cfg->checks) {
    ++counts[{c.tenant, std::string(c.type->name)}];
    if (checks_.contains(c.id)) continue;
    exporters::Labels labels{{"check", c.id},
                             {"target", c.target},
                             {"type", std::string(c.type->name)},
                             {"tenant", c.tenant}};
    for (const auto& [k, v] : c.labels) labels[k] = v;
    checks_[c.id].series = metrics_->add_check(std::move(labels));
  }
  metrics_->set_checks(counts);
  auto stats = scheduler_->apply(cfg->checks);
  config_ = std::move(cfg);
  spdlog::debug("config applied: {} added, {} changed, {} removed, {} unchanged", stats.added,
                stats.changed, stats.removed, stats.unchanged);
  log::set_level(options_.log_level.value_or(config_->daemon.log_level));
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
    apply(result.config);
    metrics_->config_loaded(true, unix_now());
    spdlog::info("reloaded: {} checks (was {})", config_->checks.size(), before);
  }
  sd_notifyf(0, "READY=1\nSTATUS=%zu checks", config_->checks.size());
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
  auto it = checks_.find(c.id);
  if (it == checks_.end()) return;
  it->second.series->update(r);
  auto& last = it->second.last_success;
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

void App::housekeeping() { metrics_->set_in_flight(scheduler_->in_flight(), scheduler_->queued()); }

void App::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  ready_ = false;
  sd_notify(0, "STOPPING=1");
  // Cancel probes before their I/O services go away.
  if (scheduler_) scheduler_->stop();
  scheduler_.reset();
  housekeeping_.reset();
  curl_.reset();
  http_.reset();
  for (auto* s : signals_) {
    uv_close(reinterpret_cast<uv_handle_t*>(s),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_signal_t*>(h); });
  }
  signals_.clear();
  checks_.clear();
}

}  // namespace wacht
