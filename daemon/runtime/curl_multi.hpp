#pragma once

#include <functional>
#include <memory>

typedef void CURL;
typedef void CURLM;
typedef struct uv_loop_s uv_loop_t;

namespace wacht::runtime {

// Drives libcurl's multi socket API from the libuv loop: curl tells which
// sockets to watch (uv_poll per socket) and when to time out (one uv_timer),
// and every transfer runs on the loop thread without threads of its own
// (curl's docs/examples/multi-uv.c). Shared by HTTP probes and notifiers.
class CurlMulti {
 public:
  // Called once per added transfer when it ends, with curl's result code.
  using Done = std::function<void(int curl_code)>;

  explicit CurlMulti(uv_loop_t* loop);
  ~CurlMulti();  // aborts every transfer without calling its Done
  CurlMulti(const CurlMulti&) = delete;
  CurlMulti& operator=(const CurlMulti&) = delete;

  // Starts a configured easy handle. The caller keeps owning `easy` and must
  // not clean it up before Done fires or remove() returns.
  void add(CURL* easy, Done done);
  // Aborts a transfer; its Done does not fire. No-op if it is not running.
  void remove(CURL* easy);
  size_t running() const;

  // Easy handles are pooled: a probe holds one only while it runs, so ten
  // thousand idle checks do not keep ten thousand handles (~7.5 KiB each).
  // acquire() returns a handle in its default state; release() resets it.
  CURL* acquire();
  void release(CURL* easy);

  CURLM* handle();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace wacht::runtime
