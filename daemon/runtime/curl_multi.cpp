#include "runtime/curl_multi.hpp"

#include <curl/curl.h>
#include <spdlog/spdlog.h>
#include <uv.h>

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wacht::runtime {

namespace {

// curl_global_init is not thread-safe and must run before any other curl call;
// a function-local static runs it exactly once, before the first CurlMulti.
void global_init() {
  static const CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK)
    throw std::runtime_error(std::string("curl_global_init: ") + curl_easy_strerror(rc));
}

void log_exception(const char* where) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    spdlog::error("curl multi: exception in {}: {}", where, e.what());
  } catch (...) {
    spdlog::error("curl multi: unknown exception in {}", where);
  }
}

}  // namespace

struct CurlMulti::Impl {
  // One socket curl asked us to watch. The uv handle owns it: it is freed in the
  // close callback, never earlier, because libuv still references the handle
  // until then.
  struct Watch {
    uv_poll_t poll;
    Impl* impl;
    curl_socket_t fd;
  };

  uv_loop_t* loop;
  CURLM* multi = nullptr;
  uv_timer_t* timer = nullptr;  // owned like Watch: freed in its close callback
  std::unordered_map<CURL*, Done> transfers;
  // Watches not yet closed, so the destructor can close what curl did not remove.
  std::unordered_set<Watch*> watches;
  std::vector<CURL*> idle;  // released easy handles, reset, ready for reuse
  // Set while Done callbacks run; the destructor clears it so that a Done that
  // destroys this CurlMulti stops the delivery loop (see finish_transfers).
  bool* alive = nullptr;

  explicit Impl(uv_loop_t* l) : loop(l) {}

  static void close_watch(Watch* w) {
    uv_poll_stop(&w->poll);
    uv_close(reinterpret_cast<uv_handle_t*>(&w->poll),
             [](uv_handle_t* h) { delete static_cast<Watch*>(h->data); });
  }

  // CURLMOPT_SOCKETFUNCTION: start, change or stop watching one socket.
  static int on_socket(CURL*, curl_socket_t fd, int what, void* userp, void* socketp) noexcept {
    auto* self = static_cast<Impl*>(userp);
    auto* w = static_cast<Watch*>(socketp);
    try {
      if (what == CURL_POLL_REMOVE) {
        if (w) {
          self->watches.erase(w);
          close_watch(w);
          curl_multi_assign(self->multi, fd, nullptr);
        }
        return 0;
      }
      if (!w) {
        // Tracked before the handle exists, so that nothing can throw between
        // uv_poll_init and the handle having its owner.
        auto owned = std::make_unique<Watch>(Watch{{}, self, fd});
        self->watches.insert(owned.get());
        if (int rc = uv_poll_init_socket(self->loop, &owned->poll, fd); rc != 0) {
          self->watches.erase(owned.get());
          spdlog::error("curl multi: cannot watch socket {}: {}", fd, uv_strerror(rc));
          return -1;  // curl fails the transfers using this socket
        }
        w = owned.release();
        w->poll.data = w;
        curl_multi_assign(self->multi, fd, w);
      }
      int events = 0;
      if (what == CURL_POLL_IN || what == CURL_POLL_INOUT) events |= UV_READABLE;
      if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT) events |= UV_WRITABLE;
      uv_poll_start(&w->poll, events, &Impl::on_poll);
      return 0;
    } catch (...) {
      log_exception("socket callback");
      return -1;
    }
  }

  // CURLMOPT_TIMERFUNCTION: curl wants socket_action(TIMEOUT) after `timeout_ms`,
  // or never (-1). A 0 timeout must not be acted on inside this callback; the uv
  // timer fires on the next loop iteration, which also keeps add() from ever
  // completing a transfer synchronously.
  static int on_timer_change(CURLM*, long timeout_ms, void* userp) noexcept {
    auto* self = static_cast<Impl*>(userp);
    if (timeout_ms < 0) {
      uv_timer_stop(self->timer);
    } else {
      uv_timer_start(self->timer, &Impl::on_timeout, static_cast<uint64_t>(timeout_ms), 0);
    }
    return 0;
  }

  static void on_poll(uv_poll_t* handle, int status, int events) noexcept {
    auto* w = static_cast<Watch*>(handle->data);
    int flags = 0;
    if (status < 0) {
      // libuv reports a socket error (e.g. a reset) as UV_EBADF and stops the
      // handle. Telling curl the socket is ready lets it read or write and
      // fail with the real cause ("connection reset by peer") instead of a
      // generic "select/poll returned error".
      flags = CURL_CSELECT_IN | CURL_CSELECT_OUT;
    } else {
      if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
      if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    }
    try {
      w->impl->action(w->fd, flags);
    } catch (...) {
      log_exception("poll callback");
    }
  }

  static void on_timeout(uv_timer_t* handle) noexcept {
    try {
      static_cast<Impl*>(handle->data)->action(CURL_SOCKET_TIMEOUT, 0);
    } catch (...) {
      log_exception("timer callback");
    }
  }

  void action(curl_socket_t fd, int flags) {
    int running = 0;
    curl_multi_socket_action(multi, fd, flags, &running);
    finish_transfers();
  }

  // Delivers every finished transfer's result. Each Done is taken out of the
  // table before it runs, so it fires once, and it may add or remove transfers.
  void finish_transfers() {
    bool is_alive = true;
    alive = &is_alive;
    int pending = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &pending)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode code = msg->data.result;
      auto it = transfers.find(easy);
      if (it == transfers.end()) continue;  // removed by an earlier Done in this loop
      Done done = std::move(it->second);
      transfers.erase(it);
      curl_multi_remove_handle(multi, easy);
      try {
        done(code);
      } catch (...) {
        log_exception("Done callback");
      }
      if (!is_alive) return;  // the Done destroyed the CurlMulti
    }
    alive = nullptr;
  }
};

CurlMulti::CurlMulti(uv_loop_t* loop) : impl_(std::make_unique<Impl>(loop)) {
  global_init();
  impl_->multi = curl_multi_init();
  if (!impl_->multi) throw std::runtime_error("curl_multi_init failed");
  impl_->timer = new uv_timer_t;
  uv_timer_init(loop, impl_->timer);
  impl_->timer->data = impl_.get();
  curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
  curl_multi_setopt(impl_->multi, CURLMOPT_SOCKETDATA, impl_.get());
  curl_multi_setopt(impl_->multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer_change);
  curl_multi_setopt(impl_->multi, CURLMOPT_TIMERDATA, impl_.get());
}

CurlMulti::~CurlMulti() {
  Impl& m = *impl_;
  if (m.alive) *m.alive = false;
  // Removing a transfer makes curl report its sockets as removed (closing their
  // watches); Done is not called.
  for (const auto& [easy, done] : m.transfers) curl_multi_remove_handle(m.multi, easy);
  m.transfers.clear();
  // Cleanup closes cached connections and may still call on_socket.
  curl_multi_cleanup(m.multi);
  for (CURL* e : m.idle) curl_easy_cleanup(e);
  m.idle.clear();
  for (Impl::Watch* w : m.watches) Impl::close_watch(w);
  m.watches.clear();
  uv_timer_stop(m.timer);
  uv_close(reinterpret_cast<uv_handle_t*>(m.timer),
           [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

// clang-tidy 14 does not see the move through try_emplace.
void CurlMulti::add(CURL* easy, Done done) {  // NOLINT(performance-unnecessary-value-param)
  auto [it, inserted] = impl_->transfers.try_emplace(easy, std::move(done));
  CURLMcode rc = inserted ? curl_multi_add_handle(impl_->multi, easy) : CURLM_ADDED_ALREADY;
  if (rc != CURLM_OK) {
    if (inserted) impl_->transfers.erase(it);
    // Adding a handle twice or from inside a curl callback is a programming
    // error, and running out of memory here is not worth a recovery path.
    throw std::logic_error(std::string("curl_multi_add_handle: ") + curl_multi_strerror(rc));
  }
}

void CurlMulti::remove(CURL* easy) {
  auto it = impl_->transfers.find(easy);
  if (it == impl_->transfers.end()) return;
  impl_->transfers.erase(it);
  curl_multi_remove_handle(impl_->multi, easy);
}

size_t CurlMulti::running() const { return impl_->transfers.size(); }

CURLM* CurlMulti::handle() { return impl_->multi; }

CURL* CurlMulti::acquire() {
  if (impl_->idle.empty()) {
    CURL* e = curl_easy_init();
    if (!e) throw std::bad_alloc();
    return e;
  }
  CURL* e = impl_->idle.back();
  impl_->idle.pop_back();
  return e;
}

void CurlMulti::release(CURL* easy) {
  // Enough idle handles for a burst of probes; beyond that memory wins.
  constexpr size_t kMaxIdle = 256;
  if (impl_->idle.size() >= kMaxIdle) {
    curl_easy_cleanup(easy);
    return;
  }
  curl_easy_reset(easy);
  impl_->idle.push_back(easy);
}

}  // namespace wacht::runtime
